import Testing
@testable import KilnPasses
import KilnGraph
import KilnRuntime

/// Renders kernels as one line each: `kind root: members -> outputs` with op names.
private func describe(_ kernels: [KernelGroup], _ graph: Graph) -> String {
    kernels.map { k in
        let members = k.members.map { "\(graph.nodes[$0].op.name)%\($0)" }.joined(separator: " ")
        return "\(k.kind.rawValue) %\(k.root): \(members) -> \(k.outputs.map { "%\($0)" }.joined(separator: ","))"
    }.joined(separator: "\n")
}

@Suite("Fusion")
struct FusionTests {
    @Test("an elementwise chain becomes one kernel with one output")
    func elementwiseChain() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let y = relu(exp(x) * 2 + 1)
        g.output("y", y)
        let graph = try g.build()
        var program = Program(graph: graph)
        #expect(try Fusion().run(&program))
        let kernels = program.kernels!
        #expect(describe(kernels, graph) == "elementwise %6: exp%1 mul%3 add%5 relu%6 -> %6")
        #expect(program.kernelCount == 1 && graph.unfusedKernelCount == 4)
    }

    @Test("bias add and activation join the matmul as its epilogue; the bias broadcast is a strided load")
    func matmulEpilogue() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 3], initializer: .zeros)
        let b = g.parameter("b", [3], initializer: .zeros)
        let y = relu(x.matmul(w) + b.broadcast(to: [4, 3]))
        g.output("y", y)
        let graph = try g.build()
        let kernels = Fusion.groups(for: graph)
        #expect(describe(kernels, graph) == "epilogue %3: matmul%3 broadcast%4 add%5 relu%6 -> %6")
    }

    @Test("a value read outside the kernel becomes one of its outputs")
    func multiOutput() throws {
        let g = GraphBuilder()
        let x = g.input("x", [16])
        let a = exp(x)
        let b = a * a
        g.output("a", a)
        g.output("b", b)
        let graph = try g.build()
        let kernels = Fusion.groups(for: graph)
        #expect(kernels.count == 1)
        #expect(kernels[0].outputs == [a.id, b.id])
    }

    @Test("a reduction of an elementwise value read by nothing else fuses as a prologue")
    func reductionPrologue() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let s = (x * x).sum(axes: [1])
        g.output("s", s)
        let graph = try g.build()
        let kernels = Fusion.groups(for: graph)
        #expect(describe(kernels, graph) == "reduction %2: mul%1 reduce_sum%2 -> %2")
    }

    @Test("elementwise nodes over a reduction's input join it unless they read the reduced value")
    func reductionSideOutputs() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let magnitude = abs(x)
        let loss = softplus(magnitude).sum()
        let gradient = sigmoid(magnitude) * 0.25             // does not read the sum: joins its kernel
        let scaled = magnitude * loss.broadcast(to: [4, 8])  // reads the sum: another kernel
        g.output("loss", loss)
        g.output("gradient", gradient)
        g.output("scaled", scaled)
        let graph = try g.build()
        let lines = describe(Fusion.groups(for: graph), graph).split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].hasPrefix("reduction %3: abs%1 softplus%2 reduce_sum%3 sigmoid%4"), "\(lines)")
        #expect(lines[1].contains("mul") && !lines[1].contains("sigmoid"), "\(lines)")
        // And the fused kernel computes what the interpreter does.
        let store = ParameterStore(seed: 1)
        let executable = try Executable(graph: graph, store: store, threads: 2)
        let values = (0..<32).map { Float($0) / 8 - 2 }
        try executable.setInput("x", values)
        try executable.run()
        let reference = try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(graph[graph.inputIDs[0]].type, values.map(Double.init))],
                                                              parameters: [:], state: [:], seed: 0, step: 0)
        for name in ["loss", "gradient", "scaled"] {
            let mine = try executable.output(name), theirs = reference[name]!.scalars
            #expect(zip(mine, theirs).allSatisfy { abs(Double($0) - $1) <= 1e-5 * max(1, abs($1)) }, "\(name)")
        }
    }

    @Test("several reductions over one kernel's values run in one pass: each equals the interpreter, same bits on 1, 2 and 3 threads",
          arguments: [[16, 6, 26, 27], [3, 4, 5, 5]])
    func severalReductions(_ dims: [Int]) throws {
        // Batch norm's backward shape: the sums of dy and of dy·x per channel over N, H, W, a mean
        // of squares and a max, with dy also leaving the kernel.
        func build() throws -> Graph {
            let g = GraphBuilder()
            let x = g.input("x", Shape(dims))
            let d = g.input("d", Shape(dims))
            let dy = d * x.greater(0)
            g.output("dy", dy)
            g.output("sum", dy.sum(axes: [0, 2, 3]))
            let p = dy * x
            g.output("dot", p.sum(axes: [0, 2, 3]))
            g.output("squares", square(p - 0.25).mean(axes: [0, 2, 3], keepDims: true))
            g.output("max", (dy * 3).max(axes: [0, 2, 3]))
            return try g.build()
        }
        let graph = try build()
        let reductions = Fusion.groups(for: graph).filter { $0.kind == .reduction }
        #expect(reductions.count == 1, "\(describe(Fusion.groups(for: graph), graph))")
        #expect(reductions.first.map { $0.members.filter { graph.nodes[$0].op.fusionCategory == .reduction }.count } == 4)
        let count = dims.reduce(1, *)
        // Deterministic values in [-2.5, 2.5] and [-1.75, 1.25] (a linear congruential generator).
        var state: UInt64 = 2024
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 40) / Double(1 << 24)
        }
        var xs: [Float] = [], ds: [Float] = []
        for _ in 0..<count {
            xs.append(Float(next() * 5 - 2.5))
            ds.append(Float(next() * 3 - 1.75))
        }
        let expected = try Interpreter(graph: graph).outputs(
            inputs: ["x": HostTensor(TensorType(Shape(dims)), xs.map(Double.init)), "d": HostTensor(TensorType(Shape(dims)), ds.map(Double.init))],
            parameters: [:])
        var bits: [[UInt32]] = []
        for threads in [1, 2, 3] {
            let executable = try Executable(graph: try build(), store: ParameterStore(seed: 1), threads: threads)
            try executable.setInput("x", xs)
            try executable.setInput("d", ds)
            try executable.run()
            var all: [UInt32] = []
            for name in ["dy", "sum", "dot", "squares", "max"] {
                let got = try executable.output(name), want = expected[name]!.scalars
                #expect(got.count == want.count, "\(name)")
                // Sums: float lanes over count / C terms of magnitude at most 5, then float64.
                let largest: Double = want.map(abs).max()!
                let terms = Double(count / dims[1])
                let bound: Double = name == "sum" || name == "dot" ? 5e-6 * terms : 1e-6 * max(1, largest)
                let error = zip(got, want).map { abs(Double($0) - $1) }.max()!
                #expect(error <= bound, "\(dims) \(name) on \(threads) threads: max error \(error), bound \(bound)")
                all += got.map(\.bitPattern)
            }
            bits.append(all)
        }
        #expect(bits[0] == bits[1] && bits[0] == bits[2], "\(dims): results differ between 1, 2 and 3 threads")
    }

    @Test("a node does not join a kernel when an outside path would come back into it")
    func noCycles() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 4])
        let a = exp(x)                       // kernel K
        let t = a.transposed([1, 0])         // outside K, depends on K
        let c = a + t                        // may not join K: it reads t, which depends on K
        g.output("c", c)
        let graph = try g.build()
        var program = Program(graph: graph)
        _ = try Fusion().run(&program)
        #expect(program.kernels!.count == 3)
        try PassManager(passes: []).verify(program, after: "fuse")
    }

    @Test("fusion reports no change when run twice")
    func idempotent() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4])
        g.output("y", sigmoid(x) * x)
        var program = Program(graph: try g.build())
        #expect(try Fusion().run(&program))
        #expect(try !Fusion().run(&program))
    }

    @Test("fused programs compute what the reference interpreter computes", arguments: [1, 2])
    func fusedMatchesInterpreter(threads: Int) throws {
        let g = GraphBuilder()
        let x = g.input("x", [7, 13])
        let w = g.parameter("w", [13, 5], initializer: .uniform(low: -1, high: 1))
        let b = g.parameter("b", [5], initializer: .uniform(low: -1, high: 1))
        let h = tanh(x.matmul(w) + b)
        let loss = (h * h).mean() + softplus(h).sum(axes: [0]).max()
        let grads = g.gradients(of: loss, withRespectTo: [w, b])
        g.output("loss", loss)
        g.output("gw", grads[0])
        g.output("gb", grads[1])
        g.update(w, to: w - grads[0] * 0.1)
        let graph = try g.build()
        var program = Program(graph: graph)
        _ = try Fusion().run(&program)
        #expect(program.kernelCount < graph.unfusedKernelCount)

        let store = ParameterStore(seed: 3)
        let executable = try Executable(program: program, store: store, threads: threads)
        var values: [Double] = []
        var state: UInt64 = 12345
        for _ in 0..<(7 * 13) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            values.append(Double(Int(state >> 40) % 2001 - 1000) / 500)
        }
        try executable.setInput("x", values.map { Float($0) })
        let parameters = ["w": HostTensor(TensorType([13, 5]), store["w"]!.values.map(Double.init)),
                          "b": HostTensor(TensorType([5]), store["b"]!.values.map(Double.init))]
        let expected = try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(TensorType([7, 13]), values)],
                                                             parameters: parameters)
        try executable.run()
        for name in ["loss", "gw", "gb"] {
            let got = try executable.output(name), want = expected[name]!.scalars
            let scale = max(1e-6, want.map(abs).max()!)
            let error = zip(got, want).map { abs(Double($0) - $1) }.max()!
            #expect(error <= 1e-5 * scale, "\(name): max error \(error) at scale \(scale)")
        }
        let updated = store["w"]!.values, want = expected["update:w"]!.scalars
        #expect(zip(updated, want).allSatisfy { abs(Double($0) - $1) <= 1e-5 })
    }
}
