import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// A parameter's three Adam formulas in one fused kernel run as one pass (`AdamKernel.step`)
/// when its streams have unit stride and its scalars stride 0, and as the three formulas one
/// after another otherwise. Both must give the bits of the unfused program, over several tiles
/// and a ragged tail, with the moments and the parameter updated in place.
@Suite("Adam's combined step")
struct AdamStepTests {
    @Test("one pass per tile, and the fallback for a per-element step size: bit for bit the unfused program",
          arguments: [false, true])
    func combinedStep(perElementStepSize: Bool) throws {
        let shape: Shape = [37, 19]  // 703 elements: two full 256-element tiles and a tail
        func graph() throws -> Graph {
            let g = GraphBuilder()
            let gradient = g.input("g", shape)
            let c1 = g.input("c1", []), beta2 = g.input("beta2", []), c2 = g.input("c2", [])
            let alpha = g.input("alpha", perElementStepSize ? shape : [])
            let r = g.input("r", []), epsilon = g.input("eps", [])
            let p = g.parameter("p", shape, initializer: .uniform(low: -1, high: 1))
            let m = g.state("m", shape), v = g.state("v", shape)
            let newM = adamUpdate(.firstMoment, [m, gradient, c1])
            let newV = adamUpdate(.secondMoment, [v, gradient, beta2, c2])
            let newP = adamUpdate(.parameter, [p, newM, newV, alpha, r, epsilon])
            g.update(m, to: newM)
            g.update(v, to: newV)
            g.update(p, to: newP)
            return try g.build()
        }
        func train(fuse: Bool) throws -> (ParameterStore, Executable) {
            let store = ParameterStore(seed: 7)
            let executable = try Executable(graph: try graph(), store: store,
                                            options: CompileOptions(threads: 2, seed: 1, disabledPasses: fuse ? [] : ["fuse"]))
            for step in 1...3 {
                let gradient = (0..<shape.count).map { Float(($0 * 7 + step * 13) % 23) / 11 - 1 }
                try executable.setInput("g", gradient)
                try executable.setInput("c1", [0.1])
                try executable.setInput("beta2", [0.999])
                try executable.setInput("c2", [0.001])
                try executable.setInput("alpha", perElementStepSize ? (0..<shape.count).map { 0.001 * Float(1 + $0 % 5) } : [0.001])
                let decay = (0..<step).reduce(Float(1)) { product, _ in product * 0.999 }
                try executable.setInput("r", [1 / (1 - decay).squareRoot()])
                try executable.setInput("eps", [1e-8])
                try executable.run()
            }
            return (store, executable)
        }
        let (separate, _) = try train(fuse: false)
        let (fused, executable) = try train(fuse: true)
        let adamKernels = executable.program.schedule.filter { group in
            group.members.contains { if case .adamUpdate = executable.program.graph.nodes[$0].op { return true } else { return false } }
        }
        #expect(adamKernels.count == 1 && adamKernels[0].members.count == 3)
        let initial = ParameterStore(seed: 7)
        try initial.register(try graph())
        for name in ["p", "m", "v"] {
            let a = separate[name]!.values, b = fused[name]!.values
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(name) differs")
            #expect(a != initial[name]!.values, "\(name) was not updated")
        }
    }
}
