import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// Plain SGD on a product's gradient, `P ← P − s·(A·B)`, runs as one product that adds into P
/// (`Lowering.lowerGradientStep`). Checked against the interpreter over two steps with different
/// rates (the rate is read at run time), for both weight layouts, and bit-identical on 1, 2 and 3
/// threads.
@Suite("A gradient step fused into its product")
struct GradientStepTests {
    /// x·W (W is in × out) then tanh, then ·Vᵀ (V is out × in, PyTorch's layout); mean square loss.
    /// dW = xᵀ·dh is 300 × 120 × 32 (big enough for two threads), dV = dyᵀ·h 50 × 120 × 32.
    static func graph() throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", [32, 300]), lr = g.input("lr", .scalar)
        let w = g.parameter("w", [300, 120], initializer: .uniform(low: -0.1, high: 0.1))
        let v = g.parameter("v", [50, 120], initializer: .uniform(low: -0.1, high: 0.1))
        let y = tanh(x.matmul(w)).matmul(v, transposeOther: true)
        let loss = (y * y).mean()
        let grads = g.gradients(of: loss, withRespectTo: [w, v])
        g.update(w, to: w - lr * grads[0])
        g.update(v, to: v - lr * grads[1])
        g.output("loss", loss)
        return try g.build()
    }

    static let xs: [Float] = (0..<(32 * 300)).map { (i: Int) -> Float in
        let r: Int = (i * 37) % 101
        return Float(r) / 50 - 1
    }

    /// Both updates are lowered as fused steps, and two steps match the interpreter's.
    @Test("both weight gradients fuse; two steps with different rates match the interpreter")
    func matchesInterpreter() throws {
        let graph = try Self.graph()
        var program = Program(graph: graph)
        try standardPipeline().run(&program)
        let fused = program.schedule.filter { Lowering.gradientStep($0, in: program.graph) != nil }
        #expect(fused.count == 2, "expected both updates as fused gradient steps, found \(fused.count)")

        let store = ParameterStore(seed: 5)
        try store.register(graph)
        var parameters = ["w": HostTensor(shape: [300, 120], scalars: store["w"]!.values.map(Double.init)),
                          "v": HostTensor(shape: [50, 120], scalars: store["v"]!.values.map(Double.init))]
        let executable = try Executable(program: program, store: store, threads: 2)
        try executable.setInput("x", Self.xs)
        let interpreter = Interpreter(graph: graph)
        for rate in [0.5, 0.25] as [Float] {
            try executable.setInput("lr", [rate])
            try executable.run()
            let reference = try interpreter.outputs(
                inputs: ["x": HostTensor(shape: [32, 300], scalars: Self.xs.map(Double.init)),
                         "lr": HostTensor(shape: .scalar, scalars: [Double(rate)])],
                parameters: parameters)
            for name in ["w", "v"] {
                let theirs = reference["update:\(name)"]!
                let mine = store[name]!.values
                let error = zip(mine, theirs.scalars).map { abs(Double($0) - $1) }.max()!
                #expect(error <= 1e-5 * max(1, theirs.scalars.map(abs).max()!), "\(name) at rate \(rate): max error \(error)")
                parameters[name] = theirs
            }
        }
        // The step moved the parameters: a test of an update that does nothing would pass above.
        let initial = ParameterStore(seed: 5)
        try initial.register(graph)
        #expect(store["w"]!.values != initial["w"]!.values && store["v"]!.values != initial["v"]!.values)
    }

    @Test("the fused step gives the same bits on 1, 2 and 3 threads")
    func threadCounts() throws {
        let graph = try Self.graph()
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
            let store = ParameterStore(seed: 5)
            let executable = try Executable(graph: graph, store: store, threads: threads, pipeline: standardPipeline())
            try executable.setInput("x", Self.xs)
            for rate in [0.5, 0.25] as [Float] {
                try executable.setInput("lr", [rate])
                try executable.run()
            }
            results.append(store["w"]!.values + store["v"]!.values)
        }
        #expect(results[0] == results[1] && results[1] == results[2])
    }
}
