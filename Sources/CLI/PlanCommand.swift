import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln plan MODEL`: runs the compiler pipeline and prints, per pass, wall time and node and
/// kernel counts, then the memory plan. `--why A B` then says which fusion rule put nodes %A and
/// %B (ids of the compiled graph, as `--kernels` lists them) in one kernel, or kept them apart.
func planCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--batch", "--disable", "--gan-step", "--why"], flags: ["--training", "--json", "--kernels"], command: "plan")
    // `--why A B`: A is the option's value, B the word after it.
    var why: (ValueID, ValueID)?
    if let first = args.options["--why"] {
        guard args.positionals.count == 2 else { throw KilnError.argument("plan: --why takes two node ids: --why A B") }
        func node(_ word: String) throws -> ValueID {
            let digits = word.hasPrefix("%") ? String(word.dropFirst()) : word
            guard let id = Int(digits), id >= 0 else { throw KilnError.argument("plan: --why needs node ids such as %12 or 12, found \"\(excerpt(word))\"") }
            return id
        }
        why = (try node(first), try node(args.positionals[1]))
    } else {
        guard args.positionals.count == 1 else { throw KilnError.argument("plan: give exactly one MODEL (see `kiln zoo`)") }
    }
    let name = args.positionals[0]
    let batch = try args.int("--batch", default: 64, in: Limits.batch)
    let training = args.flags.contains("--training")
    let start = Date()
    let graph = try zooGraph(name, batch: batch, training: training, ganStep: args.options["--gan-step"])
    let buildSeconds = Date().timeIntervalSince(start)
    var manager = standardPipeline()
    if let disabled = args.options["--disable"] {
        let names = disabled.split(separator: ",").map(String.init)
        let known = manager.passes.map(\.name)
        if let unknown = names.first(where: { !known.contains($0) }) {
            throw KilnError.argument("plan: --disable names unknown pass \"\(excerpt(unknown))\"; known: \(known.joined(separator: ", "))")
        }
        manager.disabled = Set(names)
    }
    try flagsChecked()
    let timer = PassTimer()
    manager.instruments.append(timer)
    var program = Program(graph: graph)
    let compileStart = Date()
    try manager.run(&program)
    let compileSeconds = Date().timeIntervalSince(compileStart)
    let unfused = graph.unfusedKernelCount
    if !args.flags.contains("--json") {
        print("\(name) \(training ? "training step" : "forward"), batch \(batch): \(graph.nodes.count) nodes, \(unfused) kernels unfused")
        print("pass                  ms     nodes        kernels")
        for r in timer.records {
            let name = r.name.padding(toLength: 18, withPad: " ", startingAt: 0)
            let nodes = "\(r.nodesBefore)→\(r.nodesAfter)".leftPadded(10)
            let kernels = "\(r.kernelsBefore)→\(r.kernelsAfter)".leftPadded(10)
            let note = r.changed ? "" : "  (no change)"
            print(name + String(format: "%7.2f", r.seconds * 1000) + "  " + nodes + "  " + kernels + note)
        }
        if args.flags.contains("--kernels") {
            for (k, group) in program.schedule.enumerated() {
                let members = group.members.map { "%\($0) \(program.graph.nodes[$0].op.name)" }.joined(separator: ", ")
                let outputs = group.outputs.map { "%\($0)" }.joined(separator: ", ")
                print("kernel \(k) \(group.kind.rawValue) root %\(group.root): \(members) → [\(outputs)]")
            }
        }
        if let memory = program.memory {
            print(String(format: "memory: naive %d B, lower bound %d B, arena %d B (%@), arena/lower bound %.3f, arena/naive %.3f",
                         memory.naiveBytes, memory.lowerBoundBytes, memory.arenaBytes, memory.strategy,
                         Double(memory.arenaBytes) / Double(max(memory.lowerBoundBytes, 1)),
                         Double(memory.arenaBytes) / Double(max(memory.naiveBytes, 1))))
        }
        print(String(format: "build %.1f ms, passes %.1f ms", buildSeconds * 1000, compileSeconds * 1000))
        if let (a, b) = why { print(try Fusion.explain(a, b, in: program.graph)) }
    } else {
        let memory = program.memory
        let explanation: [(String, Any)] = try why.map { [("why", try Fusion.explain($0.0, $0.1, in: program.graph))] } ?? []
        print(jsonObject([("model", name), ("training", training), ("batch", batch), ("nodes", graph.nodes.count),
                          ("kernels_unfused", unfused), ("kernels_fused", program.kernelCount),
                          ("naive_bytes", memory?.naiveBytes ?? 0), ("lower_bound_bytes", memory?.lowerBoundBytes ?? 0),
                          ("arena_bytes", memory?.arenaBytes ?? 0), ("strategy", memory?.strategy ?? ""),
                          ("build_ms", buildSeconds * 1000), ("compile_ms", (buildSeconds + compileSeconds) * 1000),
                          ("passes", timer.records.map { r -> [(String, Any)] in
                              [("name", r.name), ("ms", r.seconds * 1000), ("nodes_before", r.nodesBefore), ("nodes_after", r.nodesAfter),
                               ("kernels_before", r.kernelsBefore), ("kernels_after", r.kernelsAfter), ("changed", r.changed)] })]
                         + explanation))
    }
}
