import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

/// The public helpers the course examples (`examples/*`) are written with.
@Suite("Example support")
struct ExampleSupportTests {
    @Test("example options: defaults, every flag, and clear errors")
    func options() throws {
        let plain = try ExampleOptions(name: "fgsm", arguments: [])
        #expect(plain.outputDirectory == "out/fgsm" && !plain.quick && !plain.full && plain.dataDirectory == nil && plain.seed == 0)
        let all = try ExampleOptions(name: "x", arguments: ["--out", "o", "--quick", "--data", "d", "--seed", "7"])
        #expect(all.outputDirectory == "o" && all.quick && all.dataDirectory == "d" && all.seed == 7)
        for bad in [["--out"], ["--seed", "-1"], ["--frobnicate"], ["--quick", "--full"], ["--data", "--quick"]] {
            #expect(throws: KilnError.self) { try ExampleOptions(name: "x", arguments: bad) }
        }
    }

    @Test("text table right-aligns every column after the first")
    func table() {
        var t = TextTable(["model", "acc"])
        t.add(["perceptron", "0.61"])
        t.add(["mlp", "0.8610"])
        #expect(t.description == "model          acc\n----------  ------\nperceptron    0.61\nmlp         0.8610")
    }

    @Test("line plot: log ticks at powers of ten, gaps at unusable points; rsvg-convert renders it")
    func linePlot() throws {
        var plot = LinePlot(title: "a < b", xLabel: "step size", yLabel: "accuracy", logX: true)
        plot.series = [LinePlot.Series("sgd", [(0.001, 0.5), (0.01, 0.7), (0.1, .nan), (1, 0.2)]),
                       LinePlot.Series("adam", [(0.001, 0.8), (0.01, 0.1)], dashed: true)]
        #expect(LinePlot.ticks([-3, 0], log: true) == [-3, -2, -1, 0])
        #expect(LinePlot.label(-3, ticks: [-3, -2], log: true) == "1e-3" && LinePlot.label(1, ticks: [0, 1], log: true) == "10")
        let svg = plot.svg
        // sgd breaks at NaN into two runs; adam is one: three polylines plus the axes.
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 4)
        #expect(svg.contains("a &lt; b") && svg.contains("stroke-dasharray"))
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/rsvg-convert") else { return }
        let directory = TemporaryDirectory()
        try plot.write(path: directory.file("plot.svg"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/rsvg-convert")
        process.arguments = [directory.file("plot.svg"), "-o", directory.file("plot.png")]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "rsvg-convert: \(message)")
        let png = try DecodedPNGHeader(Array(try Data(contentsOf: URL(fileURLWithPath: directory.file("plot.png")))))
        #expect(png.width == Int(plot.width) && png.height == Int(plot.height))
    }

    @Test("perceptron criterion: max score minus the label's, gradient e_argmax − e_label")
    func perceptron() throws {
        let g = GraphBuilder()
        let s = g.input("s", [2, 3], dtype: .float64)
        let y = g.input("y", [2], dtype: .int32)
        let loss = perceptronLoss(logits: s, labels: y)
        g.output("loss", loss)
        g.output("grad", g.gradients(of: loss.sum(), withRespectTo: [s])[0])
        let out = try Interpreter(graph: try g.build()).outputs(inputs: [
            "s": HostTensor(shape: [2, 3], dtype: .float64, scalars: [0.5, 2, -1, 3, 1, 0]),
            "y": HostTensor(shape: [2], dtype: .int32, scalars: [0, 0])])
        #expect(out["loss"]!.scalars == [1.5, 0])
        #expect(out["grad"]!.scalars == [-1, 1, 0, 0, 0, 0])
    }

    @Test("input gradients: the compiled program equals the interpreter, and finite differences agree")
    func inputGradients() throws {
        let model = lenet5(inputShape: [1, 12, 12], classes: 4)
        let store = ParameterStore(seed: 3)
        let gradients = InputGradients(model: model, store: store, threads: 2)
        var random = SplitMix64(seed: 11)
        let batch = 3
        let images = (0..<(batch * 144)).map { _ in Float.random(in: 0..<1, using: &random) }
        let labels: [Int32] = [0, 3, 1]
        let compiled = try gradients.compute(images: images, labels: labels)

        let graph = try InputGradients.graph(model: model, batch: batch)
        let parameters = Dictionary(uniqueKeysWithValues: store.parameterNames.map { name in
            (name, HostTensor(store[name]!.type, store[name]!.values.map(Double.init)))
        })
        let reference = try Interpreter(graph: graph).outputs(inputs: [
            "x": HostTensor(shape: [batch, 1, 12, 12], scalars: images.map(Double.init)),
            "labels": HostTensor(shape: [batch], dtype: .int32, scalars: labels.map(Double.init))], parameters: parameters)
        let expected = reference["grad.x"]!.scalars
        let scale = expected.map(abs).max()!
        #expect(scale > 0)
        for (a, b) in zip(compiled.gradient, expected) { #expect(abs(Double(a) - b) <= 1e-4 * scale) }
        for (a, b) in zip(compiled.loss, reference["loss"]!.scalars) { #expect(abs(Double(a) - b) <= 1e-5 * max(1, abs(b))) }

        // A step of length δ along each example's own gradient raises its loss by about δ‖g‖.
        let delta = 0.05
        let norms = (0..<batch).map { i in compiled.gradient[(i * 144)..<((i + 1) * 144)].reduce(0.0) { $0 + Double($1 * $1) }.squareRoot() }
        let moved = try gradients.compute(images: images.indices.map { images[$0] + Float(delta / norms[$0 / 144]) * compiled.gradient[$0] },
                                          labels: labels)
        for i in 0..<batch {
            let predicted = delta * norms[i], change = Double(moved.loss[i] - compiled.loss[i])
            #expect(abs(change - predicted) <= 0.2 * predicted, "example \(i): loss rose \(change), predicted \(predicted)")
        }
    }
}

@Suite("Example support: Matrix")
struct MatrixTests {
    @Test("solve, determinant, product and Gram–Schmidt on matrices with known answers")
    func basics() {
        let a = Matrix(rows: 3, columns: 3, values: [0, 2, 1, 1, 1, 0, 3, 0, 1])   // needs a row swap
        #expect(abs(a.determinant - (-5)) < 1e-12)
        let b = Matrix(rows: 3, columns: 1, values: [5, 3, 6])
        let x = a.solve(b)!
        #expect(((a * x) - b).norm < 1e-12)
        #expect(Matrix(rows: 2, columns: 2, values: [1, 2, 2, 4]).solve(Matrix(rows: 2, columns: 1, values: [1, 1])) == nil)
        #expect(Matrix(rows: 2, columns: 2, values: [1, 2, 2, 4]).determinant == 0)
        var random = SplitMix64(seed: 5)
        let q = Matrix(rows: 5, columns: 3, using: &random).orthonormalized
        #expect(((q.transposed * q) - Matrix(rows: 3, columns: 3, diagonal: 1)).norm < 1e-12)
        let samples = gaussianSamples(20_000, using: &random)
        let mean = samples.reduce(0, +) / 20_000, variance = samples.reduce(0) { $0 + $1 * $1 } / 20_000 - mean * mean
        #expect(abs(mean) < 0.03 && abs(variance - 1) < 0.05)
    }
}
