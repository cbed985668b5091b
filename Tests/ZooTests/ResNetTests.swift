import Testing
import KilnGraph
import KilnPasses
import KilnRuntime
@testable import KilnZoo

/// The CIFAR ResNets: their shapes and parameter counts, and, at reduced width and size (the
/// full networks take too long on the reference interpreter), one compiled training step
/// against the interpreter and bit-identical training on 1, 2 and 3 threads.
@Suite("ResNets")
struct ResNetTests {
    /// Two stages of one basic block with more than 32 channels, so every convolution except the
    /// 3-channel stem takes the GEMM path, with a 1×1 stride-2 projection shortcut.
    static func reduced(side: Int = 8) -> ClassifierModel {
        cifarResNet(name: "resnet-reduced", summary: "reduced", inputShape: [3, side, side], classes: 5,
                    widths: [36, 40], blocksPerStage: 1)
    }

    @Test("resnet18 and resnet20: logits shape and the parameter counts of their PyTorch forms")
    func parameterCounts() throws {
        for (name, expected) in [("resnet18", 11_173_962), ("resnet20", 272_474)] {
            let model = try Zoo.classifier(name, inputShape: Zoo.defaultInputShape(name), classes: 10)
            let graph = try ClassifierTrainer.forwardGraph(model: model, batch: 2)
            let count = graph.parameterIDs.reduce(0) { $0 + graph.nodes[$1].type.shape.count }
            #expect(count == expected, "\(name)")
            #expect(graph[graph.outputs[0].value].type.shape == [2, 10])
            // Batch-norm running statistics are state; the training graph updates them.
            let training = try ClassifierTrainer.trainingGraph(model: model, batch: 2, optimizer: .sgd(momentum: 0.9))
            #expect(training.stateIDs.contains { training.leafName($0) == "layer1.0.bn1.running_mean" })
        }
    }

    @Test("a compiled ResNet training step (batch norm in training mode) equals the interpreter's")
    func compiledStepMatchesInterpreter() throws {
        let model = Self.reduced()
        let batch = 2
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9),
                                                        gradientOutputs: true)
        let store = ParameterStore(seed: 4)
        let compiled = try Executable(graph: graph, store: store, threads: 2, seed: 5)
        var rng = SplitMix64(seed: 21)
        let pixels = (0..<(batch * 3 * 8 * 8)).map { _ in Float(rng.uniform(0, 1)) }
        // Nonzero momentum and running statistics, so their reads are checked too.
        for name in store.names where name.hasSuffix(".momentum") || name.hasSuffix("running_mean") {
            try store.set(name, (0..<store[name]!.type.shape.count).map { _ in Float(rng.uniform(-0.1, 0.1)) })
        }
        var parameters: [String: HostTensor] = [:], state: [String: HostTensor] = [:]
        for id in graph.parameterIDs + graph.stateIDs {
            let name = graph.leafName(id)!
            let tensor = HostTensor(graph[id].type, store[name]!.values.map(Double.init))
            if graph.parameterIDs.contains(id) { parameters[name] = tensor } else { state[name] = tensor }
        }
        let labels: [Int32] = [1, 4]
        try compiled.setInput("x", pixels)
        try compiled.setInput("labels", labels)
        try compiled.setInput("lr", [0.1])
        try compiled.run()
        let expected = try Interpreter(graph: graph).outputs(
            inputs: ["x": HostTensor(shape: [batch, 3, 8, 8], scalars: pixels.map(Double.init)),
                     "labels": HostTensor(shape: [batch], dtype: .int32, scalars: labels.map(Double.init)),
                     "lr": HostTensor(shape: .scalar, scalars: [0.1])],
            parameters: parameters, state: state, seed: 5)
        var checked = 0
        for (key, value) in expected {
            let got: [Float]
            if key.hasPrefix("update:") { got = store[String(key.dropFirst("update:".count))]!.values } else { got = try compiled.output(key) }
            let scale = max(1e-3, value.scalars.map { Swift.abs($0) }.max() ?? 0)
            let error = zip(value.scalars, got).map { Swift.abs($0 - Double($1)) }.max() ?? 0
            #expect(error <= 2e-5 * scale, "\(key): max error \(error) at scale \(scale)")
            checked += 1
        }
        #expect(checked > 40 && expected.keys.contains("grad.layer2.0.shortcut.0.weight")
                && expected.keys.contains("update:layer1.0.bn1.running_var"))
    }

    @Test("reduced ResNet: three compiled steps with the inputs set once, each against the interpreter",
          arguments: [1, 2])
    func differential(threads: Int) throws {
        let graph = try ClassifierTrainer.trainingGraph(model: Self.reduced(), batch: 3, optimizer: .sgd(momentum: 0.9))
        let network = RandomNetwork(seed: 21, summary: "resnet-reduced", graph: graph,
                                    feeds: RandomNetworks.feeds(for: graph, classes: 5, seed: 4))
        try DifferentialCheck.check(network, threads: threads, runs: 3)
    }

    @Test("ResNet training steps give the same parameter bytes on 1, 2 and 3 threads")
    func threadCountInvariant() throws {
        let side = 12, count = 16
        var rng = SplitMix64(seed: 8)
        let data = ImageDataset(images: (0..<(count * 3 * side * side)).map { _ in UInt8(rng.next() % 256) },
                                labels: (0..<count).map { Int32($0 % 5) }, count: count, channels: 3, height: side, width: side,
                                classNames: (0..<5).map { "c\($0)" })
        var results: [[String: [UInt32]]] = []
        for threads in [1, 2, 3] {
            let trainer = ClassifierTrainer(model: Self.reduced(side: side), optimizer: .sgd(momentum: 0.9), seed: 3, threads: threads)
            _ = try trainer.trainEpoch(data, order: Array(0..<count), batchSize: 8, learningRate: 0.05)
            var bytes: [String: [UInt32]] = [:]
            for name in trainer.store.names { bytes[name] = trainer.store[name]!.values.map(\.bitPattern) }
            results.append(bytes)
        }
        #expect(results[0] == results[1], "1 and 2 threads differ")
        #expect(results[0] == results[2], "1 and 3 threads differ")
        #expect(results[0].count > 20)
    }

    @Test("the synthetic CIFAR-shaped set: 3x32x32, balanced, deterministic")
    func syntheticSet() {
        let a = SyntheticCIFAR.make(count: 40, seed: 3), b = SyntheticCIFAR.make(count: 40, seed: 3)
        #expect(a == b)
        #expect(a.channels == 3 && a.height == 32 && a.width == 32)
        #expect(a.classCounts() == [Int](repeating: 4, count: 10))
    }
}
