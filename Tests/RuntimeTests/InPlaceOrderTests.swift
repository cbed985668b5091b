import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// In the VAE's step, BCE-with-logits and its gradient fuse into one kernel that computes
/// softplus(−|x|) before it reads sign(x) (abs's VJP), sign coming from an earlier kernel. The
/// memory plan once wrote softplus into sign's buffer (a later id, which also crashed placing
/// the buffers); the fused evaluator reads operands as each member runs, so the gradient read
/// softplus values. Reuse now needs every reader of the buffer to run no later than the writer.
@Suite("In-place reuse respects the order of a fused kernel's members")
struct InPlaceOrderTests {
    @Test("a VAE-shaped step: no member reads a buffer after an earlier member overwrote it; results match the interpreter")
    func vaeShapedStep() throws {
        let g = GraphBuilder()
        // The VAE's shape in miniature: encoder, reparameterisation, decoder, BCE + KL, SGD update.
        let x = g.input("x", [3, 5]), target = g.input("t", [3, 5]), eps = g.input("eps", [3, 2])
        let w = g.parameter("w", [5, 4], initializer: .uniform(low: -1, high: 1))
        let v = g.parameter("v", [2, 5], initializer: .uniform(low: -1, high: 1))
        let h = x.matmul(w)
        let mu = h.slice(axis: 1, 0..<2), logVariance = h.slice(axis: 1, 2..<4)
        let logits = (mu + exp(logVariance * 0.5) * eps).matmul(v)
        let loss = binaryCrossEntropy(logits: logits, targets: target).sum()
            + -0.5 * (1 + logVariance - square(mu) - exp(logVariance)).sum()
        let grads = g.gradients(of: loss, withRespectTo: [w, v])
        g.update(w, to: w - 0.1 * grads[0])
        g.update(v, to: v - 0.1 * grads[1])
        g.output("loss", loss)
        g.output("grad", grads[1])
        let graph = try g.build()
        var program = Program(graph: graph)
        try standardPipeline().run(&program)
        for (step, group) in program.schedule.enumerated() {
            for output in group.outputs {
                guard let owner = program.memory!.aliases[output], !program.graph.nodes[output].op.isView else { continue }
                for member in group.members where member > output && program.graph.nodes[member].inputs.contains(owner) {
                    Issue.record("step \(step): %\(member) reads %\(owner) after %\(output) overwrote it")
                }
            }
        }

        let store = ParameterStore(seed: 3)
        try store.register(graph)
        let initial = (store["w"]!.values, store["v"]!.values)
        let executable = try Executable(program: program, store: store, threads: 1)
        let xs = (0..<15).map { Float($0 % 7) / 3 - 1 }, ts = (0..<15).map { Float($0 % 2) }
        try executable.setInput("x", xs)
        try executable.setInput("t", ts)
        let es = (0..<6).map { Float($0) / 6 - 0.4 }
        try executable.setInput("eps", es)
        try executable.run()
        let reference = try Interpreter(graph: graph).outputs(
            inputs: ["x": HostTensor(shape: [3, 5], scalars: xs.map(Double.init)), "t": HostTensor(shape: [3, 5], scalars: ts.map(Double.init)),
                     "eps": HostTensor(shape: [3, 2], scalars: es.map(Double.init))],
            parameters: ["w": HostTensor(shape: [5, 4], scalars: initial.0.map(Double.init)),
                         "v": HostTensor(shape: [2, 5], scalars: initial.1.map(Double.init))])
        for name in ["loss", "grad"] {
            let mine = try executable.output(name), theirs = reference[name]!.scalars
            let error = zip(mine, theirs).map { abs(Double($0) - $1) }.max()!
            #expect(error <= 1e-4 * max(1, theirs.map(abs).max()!), "\(name): max error \(error)")
        }
    }
}
