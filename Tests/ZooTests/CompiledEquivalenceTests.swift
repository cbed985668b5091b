import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime
@testable import KilnZoo

/// The compiled pipeline (simplification, fusion, memory planning) must not change what a
/// training step computes: every zoo classifier's step is run unoptimised (each node its own
/// kernel and buffer) and through the standard pipeline, from the same parameters and batch,
/// and compared output by output and parameter by parameter.
@Suite("Compiled pipeline equals the unoptimised step on every zoo model")
struct CompiledEquivalenceTests {
    // The ResNets are checked at reduced size in ResNetTests (at full size a step takes too long unoptimised).
    static let models = Zoo.classifierNames.filter { !$0.hasPrefix("resnet") } + ["mlp-dropout"]

    @Test("one training step: loss, logits, gradients and updated parameters", arguments: models)
    func trainingStep(_ name: String) throws {
        let model = try Zoo.classifier(name, classes: 5)
        let batch = 3
        let graph = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9), gradientOutputs: true)
        let plainStore = ParameterStore(seed: 11), compiledStore = ParameterStore(seed: 11)
        let plain = try Executable(graph: graph, store: plainStore, threads: 1, seed: 5, pipeline: nil)
        let compiled = try Executable(graph: graph, store: compiledStore, threads: 2, seed: 5)
        #expect(compiled.program.kernelCount < plain.program.kernelCount)

        var state: UInt64 = 99
        let pixels = (0..<(batch * 784)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        for executable in [plain, compiled] {
            try executable.setInput("x", pixels)
            try executable.setInput("labels", [Int32(0), 3, 4])
            try executable.setInput("lr", [0.1])
            try executable.run()
        }
        for output in graph.outputs {
            let a = try plain.output(output.name), b = try compiled.output(output.name)
            let scale = max(1e-3, a.map { abs(Double($0)) }.max() ?? 0)
            let error = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            #expect(error <= 1e-5 * scale, "\(name) \(output.name): max error \(error) at scale \(scale)")
        }
        for parameter in plainStore.names {
            let a = plainStore[parameter]!.values, b = compiledStore[parameter]!.values
            let error = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            #expect(error <= 1e-6, "\(name) \(parameter): max error \(error)")
        }
    }

    /// Without gradient outputs a weight gradient lives only inside its kernel (the optimizer
    /// update fuses into the matmul's epilogue), which is what training runs; every optimizer
    /// is checked that way, after two steps so the state (momentum, Adam's m and v) is read too.
    @Test("training steps without gradient outputs, every optimizer", arguments: ["sgd", "momentum", "adam", "adagrad"])
    func optimizerSteps(_ optimizerName: String) throws {
        let optimizer: Optimizer
        switch optimizerName {
        case "sgd": optimizer = .sgd()
        case "momentum": optimizer = .sgd(momentum: 0.9)
        case "adam": optimizer = .adam()
        default: optimizer = .adagrad()
        }
        let model = try Zoo.generative("vae")
        let batch = 4
        let graph = try GenerativeTrainer.vaeTrainingGraph(model: model, batch: batch, optimizer: optimizer, noiseInput: true)
        let plainStore = ParameterStore(seed: 3), compiledStore = ParameterStore(seed: 3)
        let plain = try Executable(graph: graph, store: plainStore, threads: 1, seed: 5, pipeline: nil)
        let compiled = try Executable(graph: graph, store: compiledStore, threads: 2, seed: 5)
        var state: UInt64 = 7
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        let pixels = (0..<(batch * 784)).map { _ in next() }
        let noise = (0..<(batch * model.latentSize)).map { _ in next() - 0.5 }
        for executable in [plain, compiled] {
            for _ in 0..<2 {
                try executable.setInput("x", pixels)
                try executable.setInput("noise", noise)
                try executable.setInput("lr", [0.01])
                try executable.run()
            }
        }
        let lossError = abs(Double(try plain.output("loss")[0]) - Double(try compiled.output("loss")[0]))
        #expect(lossError <= 1e-4 * abs(Double(try plain.output("loss")[0])), "\(optimizerName) loss differs by \(lossError)")
        for parameter in plainStore.names {
            let a = plainStore[parameter]!.values, b = compiledStore[parameter]!.values
            let error = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            #expect(error <= 1e-5, "\(optimizerName) \(parameter): max error \(error)")
        }
    }

    /// Inference graphs pool straight out of the convolution kernels (`KernelKind.pooled`), a
    /// slice of images at a time: logits must equal the unoptimised program's, for a batch
    /// that splits into several slices and one that is prime (slices of one image).
    @Test("forward pass with pooled convolution kernels", arguments: ["lenet5", "glyph-cnn"], [12, 7])
    func pooledForward(_ name: String, _ batch: Int) throws {
        let model = try Zoo.classifier(name, classes: 5)
        let graph = try ClassifierTrainer.forwardGraph(model: model, batch: batch)
        let plainStore = ParameterStore(seed: 4), compiledStore = ParameterStore(seed: 4)
        let plain = try Executable(graph: graph, store: plainStore, threads: 1, pipeline: nil)
        let compiled = try Executable(graph: graph, store: compiledStore, threads: 2)
        let pooled = compiled.program.schedule.filter { $0.kind == .pooled }
        #expect(pooled.count == 2, "\(name): \(pooled.count) pooled kernels")
        var state: UInt64 = 5
        let side = model.inputShape.reduce(1, *)
        let pixels = (0..<(batch * side)).map { _ -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        for executable in [plain, compiled] {
            try executable.setInput("x", pixels)
            try executable.run()
        }
        for output in graph.outputs {
            let a = try plain.output(output.name), b = try compiled.output(output.name)
            let scale = max(1e-3, a.map { abs(Double($0)) }.max() ?? 0)
            let error = zip(a, b).map { abs(Double($0) - Double($1)) }.max() ?? 0
            #expect(error <= 1e-5 * scale, "\(name) batch \(batch) \(output.name): max error \(error) at scale \(scale)")
        }
        // Training reads the activations again in the backward pass: nothing is pooled there.
        let training = try Executable(graph: try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd()),
                                      store: ParameterStore(seed: 4), threads: 1)
        #expect(!training.program.schedule.contains { $0.kind == .pooled })
    }

    /// Adam's update is three `adamUpdate` ops the compiler owns: fused, a parameter's m′, v′ and
    /// p′ run in one kernel; unfused, each is its own kernel. Both must give the same bits, and the
    /// fused form must really be one kernel per parameter for the VAE's weights.
    @Test("Adam's update ops: fused into one kernel per parameter, bit for bit the unfused result")
    func adamUpdateOps() throws {
        let model = try Zoo.generative("vae")
        let batch = 8
        let graph = try GenerativeTrainer.vaeTrainingGraph(model: model, batch: batch, optimizer: .adam(), noiseInput: true)
        var state: UInt64 = 11
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24)
        }
        let pixels = (0..<(batch * 784)).map { _ in next() }
        let noise = (0..<(batch * model.latentSize)).map { _ in next() - 0.5 }
        func train(fuse: Bool) throws -> (ParameterStore, Executable) {
            let store = ParameterStore(seed: 3)
            let options = CompileOptions(threads: 2, seed: 5, disabledPasses: fuse ? [] : ["fuse"])
            let executable = try Executable(graph: graph, store: store, options: options)
            for _ in 0..<3 {
                try executable.setInput("x", pixels)
                try executable.setInput("noise", noise)
                try executable.setInput("lr", [0.01])
                try executable.run()
            }
            return (store, executable)
        }
        let (separate, _) = try train(fuse: false)
        let (fused, executable) = try train(fuse: true)
        let program = executable.program, g = program.graph
        func isAdam(_ id: ValueID) -> Bool { if case .adamUpdate = g.nodes[id].op { return true } else { return false } }
        let parameters = g.parameterIDs.count
        let adamKernels = program.schedule.filter { $0.members.contains(where: isAdam) }
        #expect(g.nodes.indices.filter(isAdam).count == 3 * parameters)
        #expect(adamKernels.count == parameters, "\(adamKernels.count) kernels hold the updates of \(parameters) parameters")
        #expect(adamKernels.allSatisfy { $0.members.filter(isAdam).count == 3 })
        for name in separate.names {
            let a = separate[name]!.values, b = fused[name]!.values
            #expect(a.map(\.bitPattern) == b.map(\.bitPattern), "\(name) differs")
        }
    }
}
