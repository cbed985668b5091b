import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// Invalid data stops a step with an error naming the op, the row and the value, instead of a
/// NaN that surfaces steps later; `checkNumerics` names the first node holding NaN or ±Inf.
@Suite("Runtime checks: bad labels and numerics")
struct RuntimeChecksTests {
    /// logits = x·w, loss = mean softmax cross-entropy, one SGD step on w.
    static func classifier(batch: Int = 4, classes: Int = 3) throws -> (Graph, line: Int) {
        let g = GraphBuilder()
        let x = g.input("x", [batch, 5])
        let labels = g.input("labels", [batch], dtype: .int32)
        let w = g.parameter("w", [5, classes], initializer: .uniform(low: -1, high: 1))
        let line = #line + 1
        let loss = softmaxCrossEntropy(x.matmul(w), labels: labels).mean()
        g.update(w, to: w - 0.1 * g.gradients(of: loss, withRespectTo: [w])[0])
        g.output("loss", loss)
        return (try g.build(), line)
    }

    @Test("a label outside 0..<classes stops the step before any update, on every pipeline",
          arguments: [true, false])
    func badLabel(optimised: Bool) throws {
        let (graph, line) = try Self.classifier()
        let store = ParameterStore(seed: 1)
        let executable = try Executable(graph: graph, store: store, threads: 2, pipeline: optimised ? standardPipeline() : nil)
        try executable.setInput("x", (0..<20).map { Float($0) / 20 } as [Float])
        try executable.setInput("labels", [0, 2, 7, 1] as [Int32])
        let before = store["w"]!.values
        let id = graph.nodes.indices.first { if case .softmaxCrossEntropy = graph.nodes[$0].op { return true } else { return false } }!
        #expect(throws: KilnError.feed("softmax_cross_entropy %\(id) (RuntimeTests/RuntimeChecksTests.swift:\(line)): label 7 of example 2 is outside 0..<3 (step 0)")) {
            try executable.run()
        }
        #expect(store["w"]!.values == before, "the failed step must not update the parameters")
        #expect(executable.step == 0)
        // A corrected batch runs, and the program is usable again.
        try executable.setInput("labels", [0, 2, 1, 1] as [Int32])
        try executable.run()
        #expect(try executable.output("loss")[0].isFinite)
        #expect(store["w"]!.values != before)
        try executable.setInput("labels", [-1, 0, 0, 0] as [Int32])
        #expect(throws: KilnError.feed("softmax_cross_entropy %\(id) (RuntimeTests/RuntimeChecksTests.swift:\(line)): label -1 of example 0 is outside 0..<3 (step 1)")) {
            try executable.run()
        }
    }

    @Test("one-hot of a label outside its depth is an error naming the index and value")
    func badOneHot() throws {
        let g = GraphBuilder()
        let labels = g.input("labels", [3], dtype: .int32)
        let line = #line + 1
        let hot = oneHot(labels, depth: 4)
        g.output("y", hot * 2)
        let graph = try g.build()
        let executable = try Executable(graph: graph, store: ParameterStore(seed: 1), threads: 1)
        try executable.setInput("labels", [1, 3, 4] as [Int32])
        #expect(throws: KilnError.feed("one_hot %\(hot.id) (RuntimeTests/RuntimeChecksTests.swift:\(line)): label 4 at index 2 is outside 0..<4 (step 0)")) { try executable.run() }
        try executable.setInput("labels", [1, 3, 0] as [Int32])
        try executable.run()
        #expect(try executable.output("y") == [0, 2, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0])
        // The reference interpreter refuses the same value.
        #expect(throws: KilnError.self) {
            _ = try Interpreter(graph: graph).run(inputs: ["labels": HostTensor(shape: [3], dtype: .int32, scalars: [1, 3, 4])])
        }
    }

    @Test("checkNumerics names the first node whose result is NaN or infinite, with its inputs' ranges")
    func numerics() throws {
        let g = GraphBuilder()
        let x = g.input("x", [2, 3])
        let a = x * 2                                                     // finite
        let line = #line + 1
        let b = log(a)                                                    // log of a negative: NaN
        let c = exp(b) + 1
        g.output("y", c)
        let graph = try g.build()
        var pipeline = standardPipeline()
        pipeline.disabled = ["fuse", "plan-memory"]
        let executable = try Executable(graph: graph, store: ParameterStore(seed: 1), threads: 1, pipeline: pipeline)
        executable.checkNumerics = true
        try executable.setInput("x", [1, 2, 3, 4, 5, 6] as [Float])
        try executable.run()                                              // all finite: no error
        try executable.setInput("x", [1, 2, -3, 4, 5, 6] as [Float])
        let expected = """
            numerics check: log %\(b.id) (NumericsCheckLine:\(line)) produced nan at flat index 2 of f32[2, 3] in step 1
              graph line: \(graph.line(b.id))
              input %\(a.id) mul : f32[2, 3] range [-6.0, 12.0]
            """.replacingOccurrences(of: "NumericsCheckLine", with: "RuntimeTests/RuntimeChecksTests.swift")
        #expect(throws: KilnError.feed(expected)) { try executable.run() }
        // Without the check the same step runs and the NaN reaches the output.
        executable.checkNumerics = false
        try executable.run()
        #expect(try executable.output("y")[2].isNaN)
    }

    @Test("checkNumerics in a fused program names the kernel's offending member and says it is fused")
    func numericsFused() throws {
        let g = GraphBuilder()
        let x = g.input("x", [8])
        let y = exp(x * 100)                                              // overflows to +Inf for x ≥ 0.9
        g.output("y", y)
        let executable = try Executable(graph: try g.build(), store: ParameterStore(seed: 1), threads: 1)
        executable.checkNumerics = true
        try executable.setInput("x", [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1] as [Float])
        do {
            try executable.run()
            Issue.record("expected a numerics error")
        } catch let KilnError.feed(message) {
            #expect(message.hasPrefix("numerics check: exp %\(y.id)"))
            #expect(message.contains("produced inf at flat index 7 of f32[8] in step 0"))
            // mul and exp run as one kernel (the constant 100 is a scalar operand); the product
            // lives only inside it, so it is named without a range.
            #expect(message.contains("in a fused kernel of 2 nodes"))
            #expect(message.hasSuffix("input %\(y.id - 1) mul : f32[8]"))
        }
    }
}
