import Testing
@testable import KilnPasses
import KilnGraph

@Suite("Scheduling")
struct SchedulingTests {
    /// Two layers: the update of w2 must wait for the backward matmul that reads w2, so that
    /// memory planning may write it in place.
    @Test("an update kernel runs after every other reader of its parameter")
    func updatesEarly() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 3])
        let w1 = g.parameter("w1", [3, 3], initializer: .zeros)
        let w2 = g.parameter("w2", [3, 2], initializer: .zeros)
        let h = tanh(x.matmul(w1))
        let loss = (h.matmul(w2) * h.matmul(w2)).sum()
        let grads = g.gradients(of: loss, withRespectTo: [w2, w1])
        g.update(w2, to: w2 - grads[0] * 0.1)
        g.update(w1, to: w1 - grads[1] * 0.1)
        let graph = try g.build()
        var program = Program(graph: graph)
        _ = try Fusion().run(&program)
        let before = program.kernels!
        #expect(try Scheduling().run(&program))
        let after = program.kernels!
        try PassManager(passes: []).verify(program, after: "schedule")
        #expect(Set(after) == Set(before))
        let w2Update = graph.updates.first { $0.target == w2.id }!.value
        let position = after.firstIndex { $0.members.contains(w2Update) }!
        // Every kernel that reads w2 runs before the kernel that writes its new value.
        for (k, group) in after.enumerated() where group.members.contains(where: { graph.nodes[$0].inputs.contains(w2.id) }) {
            #expect(k <= position)
        }
        #expect(try !Scheduling().run(&program))
    }
}
