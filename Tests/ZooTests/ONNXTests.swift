import Foundation
import Testing
import KilnGraph
import KilnRuntime
@testable import KilnZoo

/// ONNX import and export (issue 15). The fixtures in `Tests/Fixtures/onnx` were exported by
/// PyTorch (`make_onnx_fixtures.py`, see its README) with a batch of inputs and PyTorch's outputs.
///
/// Tolerance: Kiln's output `a` matches PyTorch's `b` when max|a − b| ≤ 1e-5 · max|b| over the
/// whole output tensor (relative to the output's largest magnitude; no absolute term).
@Suite struct ONNXTests {
    static let directory = fixtureDirectory + "/onnx"
    static let relativeTolerance: Float = 1e-5

    struct Fixture {
        var model: ONNXModel
        var input: Safetensors.Entry
        var output: Safetensors.Entry
    }

    static func fixture(_ name: String) throws -> Fixture {
        let model = try ONNXModel.load(path: "\(directory)/\(name).onnx")
        let (tensors, _) = try Safetensors.read(path: "\(directory)/\(name).io.safetensors")
        return Fixture(model: model, input: tensors["input"]!, output: tensors["output"]!)
    }

    /// Runs an inference graph (compiled, full pipeline) with its store on one input.
    static func run(_ graph: Graph, store: ParameterStore, input: [Float]) throws -> [Float] {
        let program = try Executable(graph: graph, store: store, threads: 2)
        try program.setInput(graph.leafName(graph.inputIDs[0])!, input)
        try program.run()
        return try program.output(graph.outputs[0].name)
    }

    /// An imported model's output on the fixture's input, compiled.
    static func importedOutput(_ f: Fixture) throws -> [Float] {
        let graph = try f.model.forwardGraph(batch: f.input.shape[0])
        let store = ParameterStore()
        try store.register(graph)
        try f.model.loadWeights(into: store)
        return try run(graph, store: store, input: f.input.floats())
    }

    /// A store for `graph`'s parameters holding the fixture's weights: PyTorch's tensor names must
    /// be the graph's parameter names, no more and no fewer.
    static func storeWithWeights(of f: Fixture, for graph: Graph) throws -> ParameterStore {
        let store = ParameterStore()
        try store.register(graph)
        #expect(Set(store.names) == Set(f.model.weights.keys), "the graph's parameter names are PyTorch's tensor names")
        try f.model.loadWeights(into: store)
        return store
    }

    /// A store's values as the reference interpreter takes them (float64).
    static func interpreterValues(_ store: ParameterStore) -> [String: HostTensor] {
        var values: [String: HostTensor] = [:]
        for name in store.names {
            let t = store[name]!
            values[name] = HostTensor(t.type, t.values.map(Double.init))
        }
        return values
    }

    /// max|a − b| / max|b|.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        let scale = b.map(Swift.abs).max() ?? 0
        let diff = zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
        return diff / Swift.max(scale, .leastNormalMagnitude)
    }

    @Test(arguments: ["mlp", "lenet5", "resnet20", "vae-decoder", "ops", "handmade", "deconv-decoder"])
    func importedModelMatchesPyTorch(_ name: String) throws {
        let f = try Self.fixture(name)
        let out = try Self.importedOutput(f)
        #expect(out.count == f.output.elementCount)
        let error = Self.relativeError(out, f.output.floats())
        print("ONNX import \(name): max |Kiln − reference| / max |reference| = \(error)")
        #expect(error <= Self.relativeTolerance, "\(name): relative error \(error)")
    }

    /// The same files run through the reference interpreter (no passes): the importer's graph,
    /// not the compiler, is what matches PyTorch.
    @Test(arguments: ["lenet5", "ops", "handmade"])
    func interpreterMatchesPyTorch(_ name: String) throws {
        let f = try Self.fixture(name)
        let graph = try f.model.forwardGraph(batch: f.input.shape[0])
        let store = ParameterStore()
        try store.register(graph)
        try f.model.loadWeights(into: store)
        let weights = Self.interpreterValues(store)
        let input = HostTensor(shape: Shape(f.input.shape), scalars: f.input.floats().map(Double.init))
        let result = try Interpreter(graph: graph).outputs(inputs: [graph.leafName(graph.inputIDs[0])!: input],
                                                           parameters: weights, state: weights)
        let out = result[graph.outputs[0].name]!.scalars.map(Float.init)
        #expect(Self.relativeError(out, f.output.floats()) <= Self.relativeTolerance)
    }

    /// PyTorch's files carry the zoo's parameter names: the zoo's own LeNet-5 and ResNet-20 with
    /// the imported weights give PyTorch's outputs.
    @Test(arguments: ["lenet5", "resnet20", "mlp"])
    func zooModelWithImportedWeightsMatchesPyTorch(_ name: String) throws {
        let f = try Self.fixture(name)
        let zoo = try Zoo.classifier(name, inputShape: Array(f.input.shape.dropFirst()), classes: 10)
        let graph = try ClassifierTrainer.forwardGraph(model: zoo, batch: f.input.shape[0])
        let store = try Self.storeWithWeights(of: f, for: graph)
        let out = try Self.run(graph, store: store, input: f.input.floats())
        #expect(Self.relativeError(out, f.output.floats()) <= Self.relativeTolerance)
    }

    /// PyTorch's DCGAN-style decoder written with Kiln's own `convTranspose2d` layers (PyTorch's
    /// names and weight layout), loaded with PyTorch's weights, gives PyTorch's outputs, compiled
    /// and in the reference interpreter.
    @Test func convTransposeLayersMatchPyTorch() throws {
        let f = try Self.fixture("deconv-decoder")
        let batch = f.input.shape[0]
        let g = GraphBuilder()
        let z = g.input("input", [batch, 8])
        var h = relu(g.dense(z, 16 * 4 * 4, name: "fc")).reshaped([batch, 16, 4, 4])
        h = relu(g.convTranspose2d(h, outChannels: 8, kernel: 4, stride: 2, padding: 1, name: "deconv1"))
        g.output("output", sigmoid(g.convTranspose2d(h, outChannels: 1, kernel: 3, stride: 2, padding: 1, outputPadding: 1,
                                                     name: "deconv2")))
        let graph = try g.build()
        let store = try Self.storeWithWeights(of: f, for: graph)
        let compiled = try Self.run(graph, store: store, input: f.input.floats())
        #expect(Self.relativeError(compiled, f.output.floats()) <= Self.relativeTolerance)
        let weights = Self.interpreterValues(store)
        let input = HostTensor(shape: Shape(f.input.shape), scalars: f.input.floats().map(Double.init))
        let interpreted = try Interpreter(graph: graph).outputs(inputs: ["input": input], parameters: weights, state: weights)
        #expect(Self.relativeError(interpreted["output"]!.scalars.map(Float.init), f.output.floats()) <= Self.relativeTolerance)
    }

    /// Imported batch size follows the caller: a batch of 1 gives the fixture's first row.
    @Test func importedModelTakesAnyBatch() throws {
        for name in ["lenet5", "vae-decoder"] {
            let f = try Self.fixture(name)
            let graph = try f.model.forwardGraph(batch: 1)
            let store = ParameterStore()
            try store.register(graph)
            try f.model.loadWeights(into: store)
            let perExample = f.input.elementCount / f.input.shape[0]
            let out = try Self.run(graph, store: store, input: Array(f.input.floats()[..<perExample]))
            let expected = Array(f.output.floats()[..<out.count])
            #expect(Self.relativeError(out, expected) <= Self.relativeTolerance, "\(name)")
        }
    }

    // MARK: Export

    /// Export a graph with its store's values, parse the bytes back, import, run at `batch`.
    static func roundTrip(_ graphAt: (Int) throws -> Graph, store: ParameterStore, batch: Int, input: [Float]) throws
        -> (kiln: [Float], imported: [Float], onnx: ONNXModel) {
        let proto = try ONNXExport.model(graph: try graphAt(1), weights: { store[$0]?.values }, graphName: "test")
        let onnx = try ONNXModel.parse(proto.serialized(), path: "exported.onnx")
        let kiln = try run(try graphAt(batch), store: store, input: input)
        let graph = try onnx.forwardGraph(batch: batch)
        let importedStore = ParameterStore()
        try importedStore.register(graph)
        try onnx.loadWeights(into: importedStore)
        return (kiln, try run(graph, store: importedStore, input: input), onnx)
    }

    static func randomInput(_ count: Int, seed: UInt64, normal: Bool = false) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(normal ? rng.normal() : rng.uniform(0, 1)) }
    }

    /// Every zoo classifier and the unconditional decoders: export → import gives the same
    /// outputs bit for bit (the re-imported graph is the same Kiln graph), at a batch other
    /// than the exported graph's.
    @Test(arguments: ["mlp", "lenet5", "mnist-cnn", "glyph-cnn", "logreg", "resnet20"])
    func exportedClassifierRoundTrips(_ name: String) throws {
        let shape = Zoo.defaultInputShape(name)
        let model = try Zoo.classifier(name, inputShape: shape, classes: name == "glyph-cnn" ? 3 : 10)
        let store = ParameterStore(seed: 5)
        try store.register(ClassifierTrainer.forwardGraph(model: model, batch: 1))
        // Non-trivial running statistics, so that batch norm's export is exercised.
        for n in store.names where n.hasSuffix("running_mean") || n.hasSuffix("running_var") {
            let t = store[n]!
            t.values = Self.randomInput(t.type.shape.count, seed: 9).map { n.hasSuffix("var") ? 0.5 + $0 : $0 - 0.5 }
        }
        let batch = 3
        let r = try Self.roundTrip({ try ClassifierTrainer.forwardGraph(model: model, batch: $0) }, store: store, batch: batch,
                                   input: Self.randomInput(batch * shape.reduce(1, *), seed: 1))
        #expect(r.kiln == r.imported, "\(name): relative error \(Self.relativeError(r.imported, r.kiln))")
        #expect(r.onnx.inputs.map(\.name) == ["x"] && r.onnx.outputNames == ["logits"])
    }

    @Test(arguments: ["vae", "conv-vae", "gan", "dcgan"])
    func exportedDecoderRoundTrips(_ name: String) throws {
        let model = try Zoo.generative(name)
        let store = ParameterStore(seed: 6)
        try store.register(GenerativeTrainer.samplingGraph(model: model, batch: 1))
        let batch = 2
        let r = try Self.roundTrip({ try GenerativeTrainer.samplingGraph(model: model, batch: $0) }, store: store, batch: batch,
                                   input: Self.randomInput(batch * model.latentSize, seed: 2, normal: true))
        #expect(r.kiln == r.imported, "\(name): relative error \(Self.relativeError(r.imported, r.kiln))")
    }

    /// A PyTorch file imported, exported and imported again computes what PyTorch computed.
    @Test(arguments: ["lenet5", "resnet20", "vae-decoder", "deconv-decoder"])
    func importedThenExportedMatchesPyTorch(_ name: String) throws {
        let f = try Self.fixture(name)
        let store = ParameterStore()
        try store.register(try f.model.forwardGraph(batch: 1))
        try f.model.loadWeights(into: store)
        let r = try Self.roundTrip({ try f.model.forwardGraph(batch: $0) }, store: store, batch: f.input.shape[0],
                                   input: f.input.floats())
        #expect(r.kiln == r.imported)
        #expect(Self.relativeError(r.imported, f.output.floats()) <= Self.relativeTolerance)
    }

    /// `kiln import -o`: a Kiln model file holds the weights and the graph; it loads back as a
    /// trainer whose logits are the import's.
    @Test func importedModelFileRoundTrips() throws {
        let f = try Self.fixture("resnet20")
        let trainer = try ClassifierTrainer.importing(f.model, threads: 1)
        let dir = TemporaryDirectory()
        let path = dir.file("resnet20.safetensors")
        try Checkpoint.save(trainer, classNames: (0..<10).map(String.init), epochs: 0, to: path)
        let checkpoint = try Checkpoint.read(path: path)
        #expect(checkpoint.description.modelName == "onnx")
        let loaded = try checkpoint.makeTrainer(threads: 1)
        let graph = try ClassifierTrainer.forwardGraph(model: loaded.model, batch: 4)
        let out = try Self.run(graph, store: loaded.store, input: f.input.floats())
        #expect(Self.relativeError(out, f.output.floats()) <= Self.relativeTolerance)
        // Fine-tuning: the imported ResNet-20's training step builds (batch norm in training mode) and lowers the loss.
        let training = try ClassifierTrainer.trainingGraph(model: loaded.model, batch: 4, optimizer: .sgd())
        #expect(training.updates.count > 0)
    }

    // MARK: Bad input

    static func minimalModel(op: String = "Relu", opset: Int64 = 17, name: String = "the_node") -> ONNXModelProto {
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImports = [("", opset)]
        m.hasGraph = true
        m.graph.nodes = [ONNXNode(op, ["x"], ["y"], name: name)]
        m.graph.inputs = [ONNXValueInfo(name: "x", dims: [.parameter("N"), .value(3)])]
        m.graph.outputs = [ONNXValueInfo(name: "y", dims: [.parameter("N"), .value(3)])]
        return m
    }

    static func importError(_ bytes: [UInt8]) -> String? {
        do { _ = try ONNXModel.parse(bytes, path: "m.onnx"); return nil } catch { return "\(error)" }
    }

    @Test func unsupportedOpIsOneErrorNamingOpNodeAndOpset() throws {
        #expect(Self.importError(Self.minimalModel().serialized()) == nil)
        let message = try #require(Self.importError(Self.minimalModel(op: "Gelu", opset: 20, name: "/act/Gelu").serialized()))
        #expect(message.hasPrefix("m.onnx: unsupported op Gelu (node \"/act/Gelu\", opset 20)"), "\(message)")
        // A name from the file with a newline and 5,000 characters: still one line of bounded length.
        let long = try #require(Self.importError(Self.minimalModel(op: "Bad\nOp" + String(repeating: "x", count: 5000)).serialized()))
        #expect(!long.contains("\n") && long.utf8.count < 1600 && long.hasPrefix("m.onnx: unsupported op Bad?Op"), "\(long.prefix(100))")
        let old = try #require(Self.importError(Self.minimalModel(opset: 11).serialized()))
        #expect(old.contains("operator set 11"), "\(old)")
    }

    @Test func wireFormatRoundTrips() throws {
        for name in ["lenet5", "handmade", "ops"] {
            let proto = try ONNXModelProto.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.directory)/\(name).onnx"))))
            let again = try ONNXModelProto.parse(proto.serialized())
            #expect(again.graph.nodes == proto.graph.nodes)
            #expect(again.graph.inputs == proto.graph.inputs && again.graph.outputs == proto.graph.outputs)
            #expect(try again.graph.initializers.map { try $0.floats() } == proto.graph.initializers.map { try $0.floats() })
        }
        var w = ProtobufWriter()
        w.int64(1, -5)
        w.int64(2, Int64.max)
        var r = ProtobufReader(w.bytes)
        #expect(try r.nextField()?.number == 1)
        #expect(try r.int64() == -5)
        #expect(try r.nextField()?.number == 2)
        #expect(try r.int64() == Int64.max)
        #expect(try r.nextField() == nil)
    }

    /// Every prefix of a small file, and seeded byte mutations of it: a clean error or a model, never a crash.
    @Test func truncatedAndMutatedFilesGiveCleanErrors() throws {
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.directory)/handmade.onnx")))
        var errors = 0
        for length in 0..<bytes.count {
            if let message = Self.importError(Array(bytes[..<length])) {
                errors += 1
                #expect(message.hasPrefix("m.onnx: "))
            }
        }
        #expect(errors > bytes.count / 2)
        var rng = SplitMix64(seed: 15)
        for _ in 0..<3000 {
            var mutated = bytes
            for _ in 0...(rng.next() % 4) {
                let i = Int(rng.next() % UInt64(mutated.count))
                mutated[i] = rng.next() % 3 == 0 ? 0xff : UInt8(truncatingIfNeeded: rng.next())
            }
            _ = Self.importError(mutated)
        }
    }

    @Test func hostileSizesAreRefusedBeforeAllocating() throws {
        // A length of 2^62 bytes.
        var w = ProtobufWriter()
        w.key(7, .lengthDelimited)
        w.appendVarint(1 << 62)
        #expect(Self.importError(w.bytes)?.contains("runs past the end") == true)
        // An initializer claiming 2^40 floats with 4 bytes of data.
        var m = Self.minimalModel(op: "Add")
        m.graph.nodes[0].inputs = ["x", "w"]
        var t = ONNXTensor(name: "w", dims: [3], floats: [1, 2, 3])
        t.dims = [1 << 20, 1 << 20]
        m.graph.initializers = [t]
        #expect(Self.importError(m.serialized())?.contains("too large") == true)
        // Negative dimension, a varint of 11 bytes, a wire type of 3.
        t.dims = [-1]
        m.graph.initializers = [t]
        #expect(Self.importError(m.serialized())?.contains("dimension -1") == true)
        #expect(Self.importError([0x08] + [UInt8](repeating: 0xff, count: 10) + [0x01])?.contains("varint") == true)
        #expect(Self.importError([0x0b])?.contains("wire type 3") == true)
        // Shape values at the ends of Int64 (found by a mutation run: abs(Int.min) trapped), and
        // targets whose product overflows.
        for target: [Int64] in [[Int64.min, 3], [Int64.max], [1 << 40, 1 << 40, 1 << 40], [-1, 1 << 40]] {
            var r = Self.minimalModel(op: "Reshape")
            r.graph.nodes[0].inputs = ["x", "shape"]
            r.graph.initializers = [ONNXTensor(name: "shape", dims: [target.count], int64s: target)]
            let message = Self.importError(r.serialized())
            #expect(message?.contains("Reshape node \"the_node\"") == true, "\(target): \(message ?? "accepted")")
        }
        var p = Self.minimalModel(op: "Pad")
        p.graph.nodes[0].inputs = ["x", "pads"]
        p.graph.initializers = [ONNXTensor(name: "pads", dims: [4], int64s: [0, 1 << 30, 0, 1 << 30])]
        #expect(Self.importError(p.serialized())?.contains("Pad node") == true)
    }

    @Test func shapeErrorsNameTheNode() throws {
        var m = Self.minimalModel(op: "MatMul", name: "/fc/MatMul")
        m.graph.nodes[0].inputs = ["x", "w"]
        m.graph.initializers = [ONNXTensor(name: "w", dims: [4, 2], floats: [Float](repeating: 1, count: 8))]
        let message = try #require(Self.importError(m.serialized()))
        #expect(message.contains("MatMul node \"/fc/MatMul\" (opset 17): matmul"), "\(message)")
    }
}
