import Foundation
import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime
@testable import KilnZoo

/// Programs driven the way the README shows: inputs set once, `run()` called again and again.
/// Every step must read the inputs as fed (the planner once gave an input's bytes to a later
/// value, so the second step trained on garbage labels and the loss went NaN).
@Suite("Inputs set once, run() many times")
struct InputsSetOnceTests {
    /// The user's network from the report: a small CNN written through the public API.
    static func tinyCNN() -> ClassifierModel {
        ClassifierModel(name: "tiny", summary: "", inputShape: [3, 32, 32], classes: 10) { x, _ in
            let g = x.builder
            let h = relu(g.conv2d(x, outChannels: 16, kernel: 3, padding: 1, name: "c1"))
            return g.dense(h.flatten(), 10, name: "fc")
        }
    }

    @Test("the reported CNN trains: loss falls over 10 steps with inputs set once, inputs unchanged", arguments: [1, 2, 3])
    func reportedRepro(threads: Int) throws {
        let trainer = ClassifierTrainer(model: Self.tinyCNN(), optimizer: .sgd(momentum: 0.9), threads: threads)
        let step = try trainer.trainingProgram(batch: 16)
        var random = SplitMix64(seed: 5)
        let images = (0..<(16 * 3 * 32 * 32)).map { _ in Float(random.uniform(-1, 1)) }
        let labels = (0..<16).map { Int32($0 % 10) }
        try step.setInput("x", images)
        try step.setInput("labels", labels)
        try step.setInput("lr", [Float(0.01)])
        var losses: [Float] = []
        for _ in 0..<10 {
            try step.run()
            losses.append(try step.output("loss")[0])
            #expect(step.value(step.graph.inputIDs.first { step.graph.leafName($0) == "labels" }!) == labels.map(Float.init))
            #expect(Array(UnsafeBufferPointer(start: try step.inputPointer("x").assumingMemoryBound(to: Float.self), count: images.count)) == images)
        }
        #expect(losses.allSatisfy { $0.isFinite }, "\(losses)")
        #expect(losses[9] < losses[0] * 0.5, "\(losses)")
        for i in 1..<10 { #expect(losses[i] < losses[i - 1], "step \(i): \(losses)") }
    }

    /// Every zoo model's training step, compiled through the full pipeline, three steps with the
    /// inputs set once, each against the reference interpreter from the same parameters.
    /// The full ResNets take minutes per step on the interpreter; ResNetTests runs this check on
    /// a reduced ResNet (the same blocks, GEMM-path convolutions).
    @Test("every zoo classifier's training step", arguments: Zoo.classifierNames.filter { !$0.hasPrefix("resnet") } + ["mlp-dropout"])
    func zooClassifier(_ name: String) throws {
        let model = try Zoo.classifier(name, classes: 5)
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: 3, optimizer: .sgd(momentum: 0.9))
        let network = RandomNetwork(seed: 21, summary: name, graph: graph, feeds: RandomNetworks.feeds(for: graph, classes: 5, seed: 4))
        try DifferentialCheck.check(network, threads: 2, runs: 3)
    }

    /// The node-by-node diagnosis of a later step (`kiln selftest` prints it for a failing run): the
    /// steps before run compiled, and the interpreter's step number matches (dropout draws a new
    /// mask each step, so a wrong step would differ at the first dropout).
    @Test("the first divergent node of a later step: none for a model that agrees")
    func divergentNodeLaterStep() throws {
        let model = try Zoo.classifier("mlp-dropout", classes: 5)
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: 3, optimizer: .sgd(momentum: 0.9))
        let network = RandomNetwork(seed: 21, summary: "mlp-dropout", graph: graph, feeds: RandomNetworks.feeds(for: graph, classes: 5, seed: 4))
        for step in 0..<3 {
            let node = try DifferentialCheck.firstDivergentNode(network, step: step)
            #expect(node == nil, "step \(step): \(node ?? "")")
        }
    }

    /// The ResNets on small images, so the float64 interpreter stays quick (their convolutions
    /// take the same im2col+GEMM paths as at 32×32). ResNet-18 needs 16×16: at 8×8 its last
    /// stage is 1×1, its batch norms see 3 values per channel at batch 3, and the float32
    /// gradient there differs from float64 by 0.2% whatever the pipeline (all passes disabled
    /// gives the same difference): conditioning, not a miscompile.
    @Test("the zoo ResNets' training steps on small images", arguments: [("resnet20", 8), ("resnet18", 16)])
    func zooResNet(_ name: String, _ side: Int) throws {
        let model = try Zoo.classifier(name, inputShape: [3, side, side], classes: 5)
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: 3, optimizer: .sgd(momentum: 0.9))
        let network = RandomNetwork(seed: 24, summary: name, graph: graph, feeds: RandomNetworks.feeds(for: graph, classes: 5, seed: 9))
        try DifferentialCheck.check(network, threads: 2, runs: 2)
    }

    @Test("every zoo generative model's training steps", arguments: Zoo.generativeNames)
    func zooGenerative(_ name: String) throws {
        // 12×12 images keep the interpreter quick. Adam's ε is 1e-3 rather than 1e-8: with 1e-8 a
        // weight whose gradient is rounding noise (a pixel that is nearly constant) takes a step of
        // ±lr whose sign no two summation orders agree on (see `RandomNetworks`).
        // The DDPM narrower than the zoo's (same code paths): its 512-unit layers on the float64 interpreter take minutes.
        let model = name == "ddpm" ? ddpm(imageShape: [1, 12, 12], hidden: 48, embedding: 8, timesteps: 20, classes: 3)
            : try Zoo.generative(name, imageShape: [1, 12, 12], classes: 3)
        let adam = Optimizer.adam(beta1: 0.5, beta2: 0.999, epsilon: 1e-3)
        let graphs: [Graph]
        switch model.family {
        case .vae: graphs = [try GenerativeTrainer.vaeTrainingGraph(model: model, batch: 3, optimizer: adam)]
        case .gan:
            let pair = try GenerativeTrainer.ganTrainingGraphs(model: model, batch: 3, generatorOptimizer: adam,
                                                               discriminatorOptimizer: adam)
            graphs = [pair.discriminator, pair.generator]
        case .diffusion: graphs = [try GenerativeTrainer.diffusionTrainingGraph(model: model, batch: 3, optimizer: adam)]
        }
        for graph in graphs {
            let network = RandomNetwork(seed: 22, summary: name, graph: graph, feeds: RandomNetworks.feeds(for: graph, classes: 3, seed: 6))
            try DifferentialCheck.check(network, threads: 2, runs: 3)
        }
    }

    /// The README's tour (also `examples/tour`): an MLP with a Hessian-vector product.
    @Test("the README tour, inputs set once, three runs")
    func tour() throws {
        let g = GraphBuilder()
        let x = g.input("x", [8, 784])
        let labels = g.input("labels", [8], dtype: .int32)
        let w1 = g.parameter("w1", [784, 20], initializer: .uniform(low: -0.035, high: 0.035))
        let b1 = g.parameter("b1", [20], initializer: .zeros)
        let h = relu(x.matmul(w1) + b1)
        let logits = g.dense(h, 10, name: "fc2")
        let loss = softmaxCrossEntropy(logits, labels: labels).mean()
        let grads = g.gradients(of: loss, withRespectTo: g.parameters)
        let v = g.input("v", [784, 20])
        let hv = g.gradients(of: (grads[0] * v).sum(), withRespectTo: [w1])
        g.output("loss", loss)
        g.output("hv", hv[0])
        let graph = try g.build()
        let network = RandomNetwork(seed: 23, summary: "tour", graph: graph, feeds: RandomNetworks.feeds(for: graph, classes: 10, seed: 8))
        try DifferentialCheck.check(network, threads: 2, runs: 3)
    }

    /// Random networks of the kind users write (`kiln selftest` runs thousands).
    @Test("random user-style networks: compiled, two runs with inputs set once, against the interpreter",
          arguments: 0..<48)
    func randomNetworks(seed: UInt64) throws {
        let network = try RandomNetworks.make(seed: seed)
        try DifferentialCheck.check(network, threads: Int(seed % 3) + 1, runs: 2)
    }

    @Test("the differential check reports a written input and a wrong value")
    func checkCanFail() throws {
        let network = try RandomNetworks.make(seed: 1)
        #expect(throws: DifferentialMismatch.self) {
            try DifferentialCheck.check(network, threads: 1, runs: 2) { executable in
                try executable.inputPointer("x").assumingMemoryBound(to: Float.self)[0] += 1
            }
        }
        do {
            try DifferentialCheck.check(network, threads: 1, runs: 2) { executable in
                try executable.inputPointer("x").assumingMemoryBound(to: Float.self)[0] += 1
            }
        } catch let mismatch as DifferentialMismatch {
            #expect(mismatch.message == "run 1 wrote input \"x\"")
        }
        do {
            try DifferentialCheck.check(network, threads: 1, runs: 2) { executable in
                let name = executable.store.parameterNames[0]
                executable.store[name]!.pointer[0] += 0.01
            }
            Issue.record("a changed parameter went unnoticed")
        } catch let mismatch as DifferentialMismatch {
            #expect(mismatch.message.hasPrefix("run 1: update:"), "\(mismatch.message)")
        }
    }

    @Test("a trainer whose loss turns NaN stops with an error naming the step")
    func nanLossStops() throws {
        let trainer = ClassifierTrainer(model: try Zoo.classifier("mlp", classes: 3), optimizer: .sgd(), threads: 1)
        var random = SplitMix64(seed: 3)
        let data = ImageDataset(images: (0..<(8 * 784)).map { _ in UInt8(random.next() % 256) }, labels: (0..<8).map { Int32($0 % 3) }, count: 8,
                                channels: 1, height: 28, width: 28, classNames: ["a", "b", "c"])
        #expect(throws: KilnError.feed("mlp: the training loss became NaN in step 1; training stopped and nothing was saved. Try a lower learning rate, or run with --check-numerics (ClassifierTrainer.checkNumerics) to name the first node that produced NaN or Inf")) {
            for _ in 0..<4 { try trainer.trainStep(data, indices: [0, 1, 2, 3], learningRate: 1e30) }
        }
    }
}
