// Compiled out under scripts/sanitize.sh: a sanitizer's malloc replaces the counting one.
#if !KILN_SANITIZING
import KilnAllocationCounter
import KilnGraph
import KilnPasses
import Testing
@testable import KilnRuntime

/// A dense layer as the zoo builds it (y = x·Wᵀ + b), without importing the zoo.
private func dense(_ g: GraphBuilder, _ x: Tensor, _ out: Int, _ name: String) -> Tensor {
    let bound = 1 / Double(x.shape[1]).squareRoot()
    let w = g.parameter("\(name).weight", [out, x.shape[1]], initializer: .uniform(low: -bound, high: bound))
    let b = g.parameter("\(name).bias", [out], initializer: .uniform(low: -bound, high: bound))
    return x.matmul(w, transposeOther: true).adding(b)
}

/// A convolution layer with a bias per output channel.
private func convolution(_ g: GraphBuilder, _ x: Tensor, _ out: Int, kernel: Int, padding: Int, _ name: String) -> Tensor {
    let bound = 1 / Double(x.shape[1] * kernel * kernel).squareRoot()
    let w = g.parameter("\(name).weight", [out, x.shape[1], kernel, kernel], initializer: .uniform(low: -bound, high: bound))
    let b = g.parameter("\(name).bias", [out], initializer: .uniform(low: -bound, high: bound))
    return conv2d(x, w, padding: padding).adding(b.reshaped([out, 1, 1]))
}

/// Loss, gradients and SGD-with-momentum updates around `forward`, as the trainer builds them.
private func trainingGraph(batch: Int, image: [Int], _ forward: (GraphBuilder, Tensor) -> Tensor) throws -> Graph {
    let g = GraphBuilder()
    let x = g.input("x", Shape([batch] + image))
    let labels = g.input("labels", [batch], dtype: .int32)
    let lr = g.input("lr", .scalar)
    let loss = softmaxCrossEntropy(forward(g, x), labels: labels).mean()
    let parameters = g.parameters
    for (p, grad) in zip(parameters, gradients(of: loss, withRespectTo: parameters)) {
        let v = g.state("\(g.graph.leafName(p.id)!).momentum", p.shape)
        let newV = 0.9 * v + grad
        g.update(v, to: newV)
        g.update(p, to: p - lr * newV)
    }
    g.output("loss", loss)
    return try g.build()
}

private func mlpGraph() throws -> Graph {
    try trainingGraph(batch: 16, image: [784]) { g, x in
        var h = dropout(relu(dense(g, x, 200, "fc1")), rate: 0.3)
        h = dropout(relu(dense(g, h, 200, "fc2")), rate: 0.3)
        return dense(g, h, 10, "fc3")
    }
}

private func lenetGraph() throws -> Graph {
    try trainingGraph(batch: 4, image: [1, 28, 28]) { g, x in
        var h = maxPool(relu(convolution(g, x, 6, kernel: 5, padding: 2, "conv1")), 2)
        h = maxPool(relu(convolution(g, h, 16, kernel: 5, padding: 0, "conv2")), 2)
        h = relu(dense(g, h.flatten(), 120, "fc1"))
        h = relu(dense(g, h, 84, "fc2"))
        return dense(g, h, 10, "fc3")
    }
}

/// Compiles `graph`, feeds seeded inputs, runs 3 warm-up steps, then counts allocations over
/// 10 steps: (this thread's count, the smallest process-wide count over several tries).
///
/// Swift Testing runs other tests concurrently in this process, so a process-wide window can
/// catch their allocations; a step that allocates shows up in every window, hence the minimum.
private func stepAllocations(_ graph: Graph, threads: Int) throws -> (thread: Int, process: Int) {
    let executable = try Executable(graph: graph, store: ParameterStore(seed: 3), threads: threads, seed: 5)
    let batch = graph.nodes[graph.inputIDs.first { graph.leafName($0) == "labels" }!].type.shape[0]
    let pixels = graph.nodes[graph.inputIDs.first { graph.leafName($0) == "x" }!].type.shape.count
    try executable.setInput("x", (0..<pixels).map { Float(($0 * 37) % 101) / 101 })
    try executable.setInput("labels", (0..<batch).map { Int32($0 % 10) })
    try executable.setInput("lr", [0.01])
    for _ in 0..<3 { try executable.run() }

    let threadBefore = kiln_thread_allocation_count()
    for _ in 0..<10 { try executable.run() }
    let thread = kiln_thread_allocation_count() - threadBefore

    var process = Int.max
    for _ in 0..<20 where process > 0 {
        let before = kiln_allocation_count()
        for _ in 0..<10 { try executable.run() }
        process = min(process, kiln_allocation_count() - before)
    }
    return (thread, process)
}

@Suite("Steady-state allocation", .serialized)
struct SteadyStateAllocationTests {
    @Test("the allocation counter sees Swift allocations")
    func counterCounts() {
        let before = kiln_thread_allocation_count()
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        let array = [Int](repeating: 1, count: Int(before % 7) + 100)
        let after = kiln_thread_allocation_count()
        pointer.deallocate()
        #expect(after - before >= 2, "allocation counter missed allocations (saw \(after - before))")
        #expect(array.count >= 100)
    }

    /// Unoptimised builds allocate in generic standard-library code (coroutine frames of
    /// array iteration, reabstraction thunks), so the step is only allocation-free when
    /// optimised: `swift test -c release -Xswiftc -enable-testing --filter Steady`.
    @Test("a training step of the MLP and of LeNet-5 allocates nothing after warm-up, on 1 and 2 threads",
          .enabled(if: optimizedBuild, "allocation-free only when optimised (-c release -Xswiftc -enable-testing)"),
          arguments: ["mlp", "lenet"], [1, 2])
    func trainingStepAllocatesNothing(model: String, threads: Int) throws {
        let graph = model == "mlp" ? try mlpGraph() : try lenetGraph()
        let counts = try stepAllocations(graph, threads: threads)
        #expect(counts.thread == 0, "\(model), \(threads) threads: \(counts.thread) allocations on the stepping thread in 10 steps")
        #expect(counts.process == 0, "\(model), \(threads) threads: \(counts.process) allocations process-wide in 10 steps")
    }
}

#if DEBUG
private let optimizedBuild = false
#else
private let optimizedBuild = true
#endif
#endif
