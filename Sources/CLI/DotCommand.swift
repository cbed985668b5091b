import Foundation
import Kiln
import KilnCommandLine

func dotCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--stage", "--batch", "--gan-step", "-o"], flags: [], command: "dot")
    guard args.positionals.count == 1 else { throw KilnError.argument("dot: give exactly one MODEL (see `kiln zoo`)") }
    let name = args.positionals[0]
    let batch = try args.int("--batch", default: 64, in: Limits.batch)
    let stage = args.options["--stage"] ?? "forward"
    let stages = ["forward", "training", "simplified", "fused", "planned"]
    guard stages.contains(stage) else {
        throw KilnError.argument("dot: unknown stage \"\(excerpt(stage))\"; known: \(stages.joined(separator: ", "))")
    }
    // forward: the inference graph as built; training: the training step as built (forward,
    // backward, optimizer update); the later stages show the training step after those passes.
    let graph = try zooGraph(name, batch: batch, training: stage != "forward", ganStep: args.options["--gan-step"])
    try flagsChecked()
    var program = Program(graph: graph)
    if stage != "forward" && stage != "training" {
        var manager = standardPipeline()
        let stopAt: [String: String] = ["simplified": "fuse", "fused": "plan-memory", "planned": ""]
        if let first = stopAt[stage], let index = manager.passes.firstIndex(where: { $0.name == first }) {
            manager.stopAfter = manager.passes[..<index].filter { !manager.disabled.contains($0.name) }.count
        }
        try manager.run(&program)
    }
    let text = program.dot(title: "\(name) \(stage)")
    if let path = args.options["-o"] {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw KilnError.file(path: path, message: "cannot write: \(error.localizedDescription)")
        }
        printError("wrote \(path) (\(program.graph.nodes.count) nodes, \(program.kernelCount) kernels); render with: dot -Tsvg \(path) -o \(name).svg")
    } else {
        print(text, terminator: "")
    }
}
