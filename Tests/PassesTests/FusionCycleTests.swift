import Testing
@testable import KilnPasses
import KilnGraph

/// A kernel can gain a member after nodes that read it were placed; a later join must still see
/// the path through that member. The VAE's loss (reparameterised z and the KL term share mu and
/// log σ²) made such a path and once crashed fusion with "fusion produced a cycle".
@Suite("Fusion keeps kernels acyclic")
struct FusionCycleTests {
    @Test("every kernel reads only kernels placed before it, on the VAE's loss and its gradient")
    func vaeLossOrder() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 6]), eps = g.input("noise", [4, 3])
        let w1 = g.parameter("w1", [6, 3], initializer: .zeros), w2 = g.parameter("w2", [6, 3], initializer: .zeros)
        let mu = x.matmul(w1), logVariance = x.matmul(w2)
        let z = mu + exp(logVariance * 0.5) * eps
        let loss = z.sum() + (-0.5 * (1 + logVariance - square(mu) - exp(logVariance)).sum())
        for (i, gradient) in g.gradients(of: loss, withRespectTo: [w1, w2]).enumerated() { g.output("g\(i)", gradient) }
        g.output("loss", loss)
        let graph = try g.build()
        let kernels = Fusion.groups(for: graph)
        var kernelOf = [Int](repeating: -1, count: graph.nodes.count)
        for (k, kernel) in kernels.enumerated() { for member in kernel.members { kernelOf[member] = k } }
        func producer(_ id: ValueID) -> Int {
            var id = id
            while graph.nodes[id].op.isView { id = graph.nodes[id].inputs[0] }
            return kernelOf[id]
        }
        for (k, kernel) in kernels.enumerated() {
            for member in kernel.members {
                for input in graph.nodes[member].inputs {
                    #expect(producer(input) <= k, "kernel \(k) (%\(member)) reads %\(input) from later kernel \(producer(input))")
                }
            }
        }
    }
}
