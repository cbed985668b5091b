import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// The memory plan may write a value into the buffer of one with a larger id (kernels run in
/// schedule order, not id order): BCE-with-logits and its gradient made softplus reuse the
/// buffer of the `sign` from abs's VJP, and compiling it once indexed past the pointers built so far.
@Suite("Executables place aliases whose owner has a larger id")
struct AliasOrderTests {
    @Test("BCE-with-logits and its gradient: an alias to a later id compiles and matches the interpreter")
    func laterOwner() throws {
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
        let aliases = program.memory!.aliases
        #expect(aliases.contains { $0.value > $0.key }, "the plan no longer aliases to a later id; pick another graph")

        let store = ParameterStore(seed: 3)
        try store.register(graph)
        let initial = (store["w"]!.values, store["v"]!.values)
        let executable = try Executable(program: program, store: store, threads: 1)
        let xs = (0..<15).map { Float($0 % 7) / 3 - 1 }, ts = (0..<15).map { Float($0 % 2) }
        try executable.setInput("x", xs)
        try executable.setInput("t", ts)
        let es = (0..<6).map { Float($0) / 6 - 0.4 }
        try executable.setInput("eps", es)
        executable.run()
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
