// Every zoo model's compiled programs allocate nothing in a steady-state step (issue 13): each
// classifier's training step (SGD with momentum, and Adam) and inference, each generative
// model's training step (both of a GAN's) and sampling, on 1 and 2 threads, built optimised.
// Unoptimised builds allocate in generic standard-library code, so this is an executable run
// in release by .ci/run (`swift run -c release allocation-check`), not a `swift test` case.
// The counting malloc (KilnAllocationCounter) is linked into this program only.
import Foundation
import Kiln
import KilnAllocationCounter

#if DEBUG
print("allocation-check: build with -c release (unoptimised code allocates in generic library code)")
exit(2)
#endif

/// Deterministic feeds: int32 inputs (labels, classes) alternate 0 and 1, the learning rate is
/// 0.01, other floats lie in [0, 1) (noise in [-0.5, 0.5)).
func feed(_ executable: Executable) throws {
    let graph = executable.graph
    for id in graph.inputIDs {
        let name = graph.leafName(id)!, type = graph.nodes[id].type
        let count = type.shape.count
        if type.dtype == .int32 {
            try executable.setInput(name, (0..<count).map { Int32($0 % 2) })
        } else if name == "lr" {
            try executable.setInput(name, [Float](repeating: 0.01, count: count))
        } else {
            let shift: Float = name.contains("noise") ? 0.5 : 0
            try executable.setInput(name, (0..<count).map { Float(($0 * 37) % 101) / 101 - shift })
        }
    }
}

/// Allocations in 10 steps after 3 warm-up steps: on the stepping thread, and process-wide
/// (the smallest of several windows; nothing else runs in this process).
/// With `checkpoints`, the steps run through `run(checkpoints:reached:)` with one checkpoint per
/// output (where data-parallel training starts a bucket's reduction).
func stepAllocations(_ graph: Graph, threads: Int, checkpoints: Bool = false) throws -> (thread: Int, process: Int) {
    let executable = try Executable(graph: graph, store: ParameterStore(seed: 3), threads: threads, seed: 5)
    try feed(executable)
    let kernels = try graph.outputs.map { try executable.completionKernel(ofOutput: $0.name) }.sorted()
    var reached = 0
    func step() throws {
        if checkpoints {
            try kernels.withUnsafeBufferPointer { try executable.run(checkpoints: $0) { reached &+= $0 } }
        } else {
            try executable.run()
        }
    }
    for _ in 0..<3 { try step() }
    let before = kiln_thread_allocation_count()
    for _ in 0..<10 { try step() }
    let thread = kiln_thread_allocation_count() - before
    var process = Int.max
    for _ in 0..<5 where process > 0 {
        let start = kiln_allocation_count()
        for _ in 0..<10 { try step() }
        process = min(process, kiln_allocation_count() - start)
    }
    if checkpoints && reached == 0 && kernels.count > 1 { print("checkpoints were never reached"); exit(1) }
    return (thread, process)
}

var programs: [(String, () throws -> Graph)] = []
/// Programs stepped with completion checkpoints (data-parallel training's gradient programs).
var checkpointed: Set<String> = []
for name in Zoo.classifierNames {
    let resnet = name.hasPrefix("resnet")
    let model = try Zoo.classifier(name, inputShape: resnet ? [3, 32, 32] : [1, 28, 28], classes: 10)
    let batch = resnet ? 2 : 4
    programs.append(("\(name) training step, sgd momentum", {
        try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9)) }))
    programs.append(("\(name) training step, adam", {
        try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .adam()) }))
    programs.append(("\(name) inference", { try ClassifierTrainer.forwardGraph(model: model, batch: batch) }))
    programs.append(("\(name) gradients, checkpoints", { try DistributedTrainer.gradientGraph(model: model, batch: batch) }))
    checkpointed.insert("\(name) gradients, checkpoints")
}
for name in Zoo.generativeNames {
    let model = try Zoo.generative(name)
    programs.append(("\(name) training step", { try GenerativeTrainer.graph(of: model, batch: 4, training: true) }))
    if model.family == .gan {
        programs.append(("\(name) generator step", {
            try GenerativeTrainer.graph(of: model, batch: 4, training: true, generatorStep: true) }))
    }
    programs.append(("\(name) sampling", { try GenerativeTrainer.samplingGraph(model: model, batch: 4) }))
}

var failures = 0
print("program                                         threads  allocations in 10 steps (thread / process)")
for (label, make) in programs {
    let graph = try make()
    for threads in [1, 2] {
        let counts = try stepAllocations(graph, threads: threads, checkpoints: checkpointed.contains(label))
        let ok = counts.thread == 0 && counts.process == 0
        if !ok { failures += 1 }
        print(label.padding(toLength: 48, withPad: " ", startingAt: 0) + "  \(threads)        \(counts.thread) / \(counts.process)"
              + (ok ? "" : "   ALLOCATES"))
    }
}
print(failures == 0 ? "allocation-check: \(programs.count * 2) programs, none allocates in a steady-state step"
                    : "allocation-check: \(failures) of \(programs.count * 2) programs allocate in a steady-state step")
exit(failures == 0 ? 0 : 1)
