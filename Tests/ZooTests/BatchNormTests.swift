import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

@Suite("Batch normalisation")
struct BatchNormTests {
    /// x [4, 2]: feature 0 = 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3); feature 1 = 0, 0, 4, 4 (mean 2, var 4, unbiased 16/3).
    static let x: [Double] = [1, 0, 2, 0, 3, 4, 6, 4]

    @Test("training mode normalises with batch statistics and moves the running ones by momentum 0.1 (unbiased variance)")
    func trainingMode() throws {
        let g = GraphBuilder()
        let input = g.input("x", [4, 2], dtype: .float64)
        g.output("y", g.batchNorm(input, name: "bn", training: true))
        let graph = try g.build()
        let gamma = HostTensor(shape: [2], dtype: .float64, scalars: [2, 0.5]), beta = HostTensor(shape: [2], dtype: .float64, scalars: [1, -1])
        let out = try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(shape: [4, 2], dtype: .float64, scalars: Self.x)],
                                                        parameters: ["bn.weight": gamma, "bn.bias": beta])
        let eps = 1e-5
        let expected = [0, 1, 2, 3].flatMap { i -> [Double] in
            [2 * (Self.x[2 * i] - 3) / (3.5 + eps).squareRoot() + 1, 0.5 * (Self.x[2 * i + 1] - 2) / (4 + eps).squareRoot() - 1]
        }
        #expect(zip(out["y"]!.scalars, expected).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(zip(out["update:bn.running_mean"]!.scalars, [0.3, 0.2]).allSatisfy { abs($0 - $1) < 1e-12 })
        #expect(zip(out["update:bn.running_var"]!.scalars, [0.9 + 0.1 * 14 / 3, 0.9 + 0.1 * 16 / 3]).allSatisfy { abs($0 - $1) < 1e-12 })
    }

    @Test("evaluation mode normalises with the running statistics and updates nothing; channels of NCHW are per channel")
    func evaluationMode() throws {
        let g = GraphBuilder()
        let input = g.input("x", [2, 2, 1, 2], dtype: .float64)
        g.output("y", g.batchNorm(input, name: "bn", training: false))
        let graph = try g.build()
        #expect(graph.updates.isEmpty)
        let values: [Double] = [1, 2, 3, 4, 5, 6, 7, 8]   // n0: c0 = 1, 2; c1 = 3, 4; n1: c0 = 5, 6; c1 = 7, 8
        let out = try Interpreter(graph: graph).outputs(
            inputs: ["x": HostTensor(shape: [2, 2, 1, 2], dtype: .float64, scalars: values)],
            state: ["bn.running_mean": HostTensor(shape: [2], dtype: .float64, scalars: [1, 2]),
                    "bn.running_var": HostTensor(shape: [2], dtype: .float64, scalars: [4, 9])])
        let expected = [0, 1, 2, 3, 4, 5, 6, 7].map { i -> Double in
            let channel = (i / 2) % 2
            return (values[i] - [1.0, 2][channel]) / ([4.0, 9][channel] + 1e-5).squareRoot()
        }
        #expect(zip(out["y"]!.scalars, expected).allSatisfy { abs($0 - $1) < 1e-12 })
    }

    @Test("per-channel statistics of NCHW in training mode, compiled, equal the reference interpreter")
    func compiledMatchesInterpreter() throws {
        let g = GraphBuilder()
        let input = g.input("x", [3, 4, 5, 5])
        let y = relu(g.batchNorm(input, name: "bn", training: true))
        g.output("loss", (y * y).sum())
        let graph = try g.build()
        let values = (0..<300).map { Float(sin(Double($0) * 0.37) * 2 + Double($0 % 4)) }
        let store = ParameterStore(seed: 1)
        let program = try Executable(graph: graph, store: store, threads: 2)
        try program.setInput("x", values)
        try program.run()
        let reference = try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(shape: [3, 4, 5, 5], scalars: values.map(Double.init))])
        #expect(abs(Double(try program.output("loss")[0]) - reference["loss"]!.scalars[0]) <= 1e-4 * abs(reference["loss"]!.scalars[0]))
        for name in ["running_mean", "running_var"] {
            let mine = store["bn.\(name)"]!.values, theirs = reference["update:bn.\(name)"]!.scalars
            #expect(zip(mine, theirs).allSatisfy { abs(Double($0) - $1) <= 1e-5 }, "\(name): \(mine) vs \(theirs)")
        }
    }

    @Test("gradients through training-mode batch norm match central differences in float64", arguments: [[5, 3], [2, 3, 2, 2]])
    func gradients(_ dims: [Int]) throws {
        let shape = Shape(dims)
        let g = GraphBuilder()
        let x = g.input("x", shape, dtype: .float64)
        let weights = g.input("w", shape, dtype: .float64)
        let loss = (tanh(g.batchNorm(x, name: "bn", training: true)) * weights).sum()
        let gamma = g.parameter(named: "bn.weight")!, beta = g.parameter(named: "bn.bias")!
        let grads = g.gradients(of: loss, withRespectTo: [x, gamma, beta])
        g.output("loss", loss)
        for (i, grad) in grads.enumerated() { g.output("g\(i)", grad) }
        let graph = try g.build()
        let n = shape.count, features = dims[1]
        let xs = (0..<n).map { sin(Double($0) * 1.3) + 0.1 * Double($0) }, ws = (0..<n).map { cos(Double($0) * 0.7) }
        var parameters = ["bn.weight": HostTensor(shape: [features], dtype: .float64, scalars: (0..<features).map { 0.5 + Double($0) }),
                          "bn.bias": HostTensor(shape: [features], dtype: .float64, scalars: (0..<features).map { 0.1 * Double($0) })]
        func evaluate(_ xs: [Double]) throws -> [String: HostTensor] {
            try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(shape: shape, dtype: .float64, scalars: xs),
                                                           "w": HostTensor(shape: shape, dtype: .float64, scalars: ws)], parameters: parameters)
        }
        let analytic = try evaluate(xs)
        let h = 1e-6
        for i in 0..<n {
            var plus = xs, minus = xs
            plus[i] += h; minus[i] -= h
            let numeric = (try evaluate(plus)["loss"]!.scalars[0] - evaluate(minus)["loss"]!.scalars[0]) / (2 * h)
            #expect(abs(numeric - analytic["g0"]!.scalars[i]) <= 1e-6 * max(1, abs(numeric)), "dx[\(i)]")
        }
        for (k, name) in ["bn.weight", "bn.bias"].enumerated() {
            for c in 0..<features {
                let original = parameters[name]!
                var shifted = original
                shifted.scalars[c] += h
                parameters[name] = shifted
                let up = try evaluate(xs)["loss"]!.scalars[0]
                shifted.scalars[c] -= 2 * h
                parameters[name] = shifted
                let down = try evaluate(xs)["loss"]!.scalars[0]
                parameters[name] = original
                let numeric = (up - down) / (2 * h)
                #expect(abs(numeric - analytic["g\(k + 1)"]!.scalars[c]) <= 1e-6 * max(1, abs(numeric)), "d\(name)[\(c)]")
            }
        }
    }

    @Test("float32 training mode with a mean 10⁵ standard deviations from 0: float64's statistics; a constant channel gives zeros, not NaN")
    func largeMeanFirstStep() throws {
        let g = GraphBuilder()
        let input = g.input("x", [8, 2, 4, 4])
        g.output("y", g.batchNorm(input, name: "bn", training: true))
        let graph = try g.build()
        // Channel 0: 4000 + a spread of std ~0.035 (E[x²] − E[x]² in float32 would be all
        // rounding); channel 1: 1000 everywhere.
        var values = [Float](repeating: 1000, count: 256)
        for n in 0..<8 { for i in 0..<16 { values[n * 32 + i] = 4000 + Float(0.05 * sin(Double(n * 16 + i) * 0.9)) } }
        let program = try Executable(graph: graph, store: ParameterStore(seed: 1), threads: 2)
        try program.setInput("x", values)
        try program.run()
        let y = try program.output("y")
        let channel0 = (0..<8).flatMap { n in (0..<16).map { Double(values[n * 32 + $0]) } }
        let mean = channel0.reduce(0, +) / 128
        let variance = channel0.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 128
        for n in 0..<8 {
            for i in 0..<16 {
                let expected = (Double(values[n * 32 + i]) - mean) / (variance + 1e-5).squareRoot()
                #expect(abs(Double(y[n * 32 + i]) - expected) <= 1e-3, "y[\(n), 0, \(i)]")
                #expect(y[n * 32 + 16 + i] == 0, "constant channel: y[\(n), 1, \(i)] = \(y[n * 32 + 16 + i])")
            }
        }
    }

    @Test("training needs more than one value per channel")
    func singleValue() {
        let g = GraphBuilder()
        _ = g.batchNorm(g.input("x", [1, 3]), name: "bn", training: true)
        #expect(throws: KilnError.self) { try g.build() }
    }
}
