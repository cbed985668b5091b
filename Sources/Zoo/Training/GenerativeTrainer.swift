import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime

/// Mean losses of one step or one epoch of generative training.
public struct GenerativeLosses: Sendable, Equatable {
    /// VAE: the negative ELBO per example; GAN: the generator's loss.
    public var main: Double
    /// GAN only: the discriminator's loss (BCE on real plus BCE on fake).
    public var discriminator: Double?

    public init(main: Double, discriminator: Double? = nil) { self.main = main; self.discriminator = discriminator }
}

/// Trains a `GenerativeModel` and samples from it. As with `ClassifierTrainer`, programs are
/// compiled per batch size on first use and share one `ParameterStore`, so the sampling program
/// sees the training program's weights without copies.
///
/// A VAE step minimises [Σ BCE-with-logits(decoder logits, x) + KL(q(z|x) ‖ N(0, I))] / B with
/// z = μ + exp(½ log σ²)·ε (Kingma & Welling 2014). A GAN step is two programs run one after the
/// other on the same batch: the discriminator's (BCE(D(x), 1) + BCE(D(G(z)), 0), updating only
/// `disc.*`) and the generator's (non-saturating BCE(D(G(z)), 1), updating only `gen.*`), each
/// with its own optimizer state and step counter (Goodfellow et al. 2014). A diffusion step draws a
/// step t per image (uniform over the schedule's T, from the trainer's seed and `stepsTaken`) and
/// noise ε, and minimises the mean of (ε̂(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t) − ε)² over every pixel with
/// x₀ = 2x − 1 (Ho et al. 2020, Algorithm 1).
public final class GenerativeTrainer {
    public let model: GenerativeModel
    /// The VAE's optimizer, or the GAN generator's.
    public let optimizer: Optimizer
    /// The GAN discriminator's optimizer (unused for a VAE).
    public let discriminatorOptimizer: Optimizer
    /// The program cache, compile timer and epoch loop shared with `ClassifierTrainer`.
    public let core: TrainingCore
    public var store: ParameterStore { core.store }
    public var threads: Int { core.threads }
    public var seed: UInt64 { core.seed }
    /// Whether the noise (ε of a VAE, z of a GAN) is an input `noise` fed by the caller instead of
    /// drawn by the graph's generator; lets a test replay PyTorch's ε. Set before the first step.
    public var noiseInput = false
    /// Whether training programs also output `grad.NAME` for every trained parameter (for checks).
    public var gradientOutputs = false
    /// Compiler passes to skip (e.g. `fuse`, `plan-memory`), set before the first step.
    public var disabledPasses: Set<String> {
        get { core.disabledPasses }
        set { core.disabledPasses = newValue }
    }
    /// Check every node's result for NaN and ±Inf in every step (see `ClassifierTrainer.checkNumerics`).
    public var checkNumerics: Bool {
        get { core.checkNumerics }
        set { core.checkNumerics = newValue }
    }
    /// Optimizer steps taken so far (GAN: one per discriminator/generator pair); a checkpoint
    /// stores it, so a resumed learning-rate schedule continues where it was.
    public var stepsTaken = 0
    /// Seconds spent compiling programs so far.
    public var compileSeconds: Double { core.compileSeconds }
    /// A VAE's latent Gaussians fitted after training (`fitLatentPrior`): sampling draws z from
    /// the stated class's instead of N(0, I). Saved in the model file.
    public var latentPrior: LatentPrior?

    /// A trainer with the usual defaults: Adam(0.9, 0.999) for a VAE, Adam(0.5, 0.999) for both GAN
    /// networks (Radford et al. 2016 §4).
    public init(model: GenerativeModel, optimizer: Optimizer? = nil, discriminatorOptimizer: Optimizer? = nil,
                seed: UInt64 = 0, threads: Int = defaultThreadCount(), store: ParameterStore? = nil) {
        self.model = model
        let ganDefault = Optimizer.adam(beta1: 0.5, beta2: 0.999)
        self.optimizer = optimizer ?? (model.family == .gan ? ganDefault : .adam())
        self.discriminatorOptimizer = discriminatorOptimizer ?? ganDefault
        self.core = TrainingCore(store: store ?? ParameterStore(seed: seed), threads: threads, seed: seed)
    }

    /// The usual learning rate for the model's family: 1e-3 for a VAE or a diffusion model, 2e-4 for a GAN.
    public var defaultLearningRate: Double { model.family == .gan ? 2e-4 : 1e-3 }

    // MARK: Graphs

    /// The condition of a conditional model: input `labels` i32 [batch] as one-hot rows.
    private static func condition(_ g: GraphBuilder, _ model: GenerativeModel, batch: Int) -> Tensor? {
        guard model.isConditional else { return nil }
        return oneHot(g.input("labels", [batch], dtype: .int32), depth: model.classes)
    }

    /// Σ over the batch of the negative ELBO: BCE-with-logits over every pixel plus the KL term.
    static func negativeELBOSum(logits: Tensor, images: Tensor, mean: Tensor, logVariance: Tensor) -> Tensor {
        let reconstruction = binaryCrossEntropy(logits: logits, targets: images).sum()
        let kl = -0.5 * (1 + logVariance - square(mean) - exp(logVariance)).sum()
        return reconstruction + kl
    }

    /// The VAE training step: inputs `x` [B, C, H, W], `lr`, `labels` (conditional), `noise` [B, latent]
    /// (with `noiseInput`); output `loss` (batch mean); updates every parameter (`optimizer` nil:
    /// none, and outputs `grad.NAME`, the gradient step of data-parallel training).
    public static func vaeTrainingGraph(model: GenerativeModel, batch: Int, optimizer: Optimizer?,
                                        noiseInput: Bool = false, gradientOutputs: Bool = false) throws -> Graph {
        precondition(model.family == .vae, "\(model.name) is not a VAE")
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.imageShape))
        let lr = g.input("lr", .scalar)
        let condition = Self.condition(g, model, batch: batch)
        let (mean, logVariance) = model.encode!(x, condition, true)
        let eps = noiseInput ? g.input("noise", [batch, model.latentSize]) : g.randomNormal([batch, model.latentSize])
        let z = mean + exp(logVariance * 0.5) * eps
        let logits = model.decode(z, condition, true)
        let loss = negativeELBOSum(logits: logits, images: x, mean: mean, logVariance: logVariance) / Double(batch)
        return try finishTrainingGraph(g, loss: loss, optimizer: optimizer, learningRate: lr,
                                       gradientOutputs: gradientOutputs)
    }

    /// The end of a generative training graph: gradients of `loss` with respect to every
    /// parameter, the optimizer's updates, output `loss`, and with `gradientOutputs` (or without
    /// an optimizer) one `grad.NAME` output per parameter.
    static func finishTrainingGraph(_ g: GraphBuilder, loss: Tensor, optimizer: Optimizer?, learningRate lr: Tensor,
                                    gradientOutputs: Bool) throws -> Graph {
        let parameters = g.parameters
        let grads = g.gradients(of: loss, withRespectTo: parameters)
        optimizer?.appendUpdates(to: g, parameters: parameters, gradients: grads, learningRate: lr)
        g.output("loss", loss)
        if gradientOutputs || optimizer == nil {
            for (p, grad) in zip(parameters, grads) { g.output("grad.\(g.graph.leafName(p.id)!)", grad) }
        }
        return try g.build()
    }

    /// The VAE's loss without updates (evaluation mode): inputs `x`, `noise`, `labels` (conditional);
    /// output `loss_sum` (Σ of the negative ELBO over the batch).
    public static func vaeEvaluationGraph(model: GenerativeModel, batch: Int) throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.imageShape))
        let condition = Self.condition(g, model, batch: batch)
        let (mean, logVariance) = model.encode!(x, condition, false)
        let z = mean + exp(logVariance * 0.5) * g.input("noise", [batch, model.latentSize])
        g.output("loss_sum", negativeELBOSum(logits: model.decode(z, condition, false), images: x, mean: mean, logVariance: logVariance))
        return try g.build()
    }

    /// The GAN's two training steps for one batch size. The discriminator sees the real batch and
    /// the generated one joined along the batch axis (one call, so its parameters are created once).
    public static func ganTrainingGraphs(model: GenerativeModel, batch: Int, generatorOptimizer: Optimizer,
                                         discriminatorOptimizer: Optimizer, noiseInput: Bool = false) throws
        -> (discriminator: Graph, generator: Graph) {
        precondition(model.family == .gan, "\(model.name) is not a GAN")
        func build(trainingGenerator: Bool) throws -> Graph {
            let g = GraphBuilder()
            let x = g.input("x", Shape([batch] + model.imageShape))
            let lr = g.input("lr", .scalar)
            let condition = Self.condition(g, model, batch: batch)
            let z = noiseInput ? g.input("noise", [batch, model.latentSize]) : g.randomNormal([batch, model.latentSize])
            let fake = sigmoid(model.decode(z, condition, true))
            let loss: Tensor
            if trainingGenerator {
                // Non-saturating generator loss: −log D(G(z)) (Goodfellow et al. 2014, §3).
                let fakeLogits = model.discriminate!(fake, condition, true)
                loss = binaryCrossEntropy(logits: fakeLogits, targets: g.constant(1)).mean()
            } else {
                let both = concat([x, fake], axis: 0)
                let joined = condition.map { concat([$0, $0], axis: 0) }
                let logits = model.discriminate!(both, joined, true)
                let real = logits.slice(axis: 0, 0..<batch), generated = logits.slice(axis: 0, batch..<(2 * batch))
                loss = binaryCrossEntropy(logits: real, targets: g.constant(1)).mean()
                    + binaryCrossEntropy(logits: generated, targets: g.constant(0)).mean()
            }
            let trained = g.parameters.filter {
                g.graph.leafName($0.id)!.hasPrefix(GenerativeModel.generatorPrefix) == trainingGenerator
            }
            let grads = g.gradients(of: loss, withRespectTo: trained)
            let optimizer = trainingGenerator ? generatorOptimizer : discriminatorOptimizer
            optimizer.appendUpdates(to: g, parameters: trained, gradients: grads, learningRate: lr,
                                    counterName: trainingGenerator ? "gen.optimizer.step" : "disc.optimizer.step")
            g.output("loss", loss)
            return try g.build()
        }
        return (try build(trainingGenerator: false), try build(trainingGenerator: true))
    }

    /// The diffusion training step: inputs `x` [B, C, H, W] in [0, 1], `lr`, `labels` (conditional),
    /// `signal` and `spread` [B, 1, 1, 1] (√ᾱ_t and √(1−ᾱ_t) of each image's step), `time` [B, E]
    /// (each step's embedding), `noise` [B, C, H, W] (with `noiseInput`; else drawn in the graph);
    /// output `loss` (mean squared error of the predicted noise); updates every parameter (`optimizer`
    /// nil: none, and outputs `grad.NAME`).
    public static func diffusionTrainingGraph(model: GenerativeModel, batch: Int, optimizer: Optimizer?,
                                              noiseInput: Bool = false, gradientOutputs: Bool = false) throws -> Graph {
        precondition(model.family == .diffusion, "\(model.name) is not a diffusion model")
        let g = GraphBuilder()
        let shape = Shape([batch] + model.imageShape)
        let x = g.input("x", shape)
        let lr = g.input("lr", .scalar)
        let condition = Self.condition(g, model, batch: batch)
        let signal = g.input("signal", [batch, 1, 1, 1]), spread = g.input("spread", [batch, 1, 1, 1])
        let time = g.input("time", [batch, model.latentSize])
        let eps = noiseInput ? g.input("noise", shape) : g.randomNormal(shape)
        let noisy = signal * (x * 2 - 1) + spread * eps
        let loss = square(model.denoise!(noisy, time, condition, true) - eps).mean()
        return try finishTrainingGraph(g, loss: loss, optimizer: optimizer, learningRate: lr,
                                       gradientOutputs: gradientOutputs)
    }

    /// A diffusion model's denoiser (evaluation mode): inputs `noisy` [B, C, H, W], `time` [B, E] and
    /// `labels` (conditional); output `noise`, the predicted ε [B, C, H, W].
    public static func denoisingGraph(model: GenerativeModel, batch: Int) throws -> Graph {
        precondition(model.family == .diffusion, "\(model.name) is not a diffusion model")
        let g = GraphBuilder()
        let noisy = g.input("noisy", Shape([batch] + model.imageShape))
        let time = g.input("time", [batch, model.latentSize])
        g.output("noise", model.denoise!(noisy, time, Self.condition(g, model, batch: batch), false))
        return try g.build()
    }

    /// Sampling (evaluation mode): inputs `z` [B, latent] and `labels` (conditional); output
    /// `images` = sigmoid(decoder logits) [B, C, H, W] in [0, 1]. For a diffusion model, which
    /// samples by running its denoiser T times, the denoiser (`denoisingGraph`).
    public static func samplingGraph(model: GenerativeModel, batch: Int) throws -> Graph {
        if model.family == .diffusion { return try denoisingGraph(model: model, batch: batch) }
        let g = GraphBuilder()
        let z = g.input("z", [batch, model.latentSize])
        let condition = Self.condition(g, model, batch: batch)
        g.output("images", sigmoid(model.decode(z, condition, false)))
        return try g.build()
    }

    /// The graph `kiln dot` and `kiln zoo` show: with `training` false the sampling graph, else the
    /// training step (a GAN's discriminator step, or its generator step with `generatorStep`),
    /// built with the trainer's default optimizers.
    public static func graph(of model: GenerativeModel, batch: Int, training: Bool, generatorStep: Bool = false) throws -> Graph {
        guard training else { return try samplingGraph(model: model, batch: batch) }
        let trainer = GenerativeTrainer(model: model, threads: 1)
        switch model.family {
        case .vae: return try vaeTrainingGraph(model: model, batch: batch, optimizer: trainer.optimizer)
        case .gan:
            let graphs = try ganTrainingGraphs(model: model, batch: batch, generatorOptimizer: trainer.optimizer,
                                               discriminatorOptimizer: trainer.discriminatorOptimizer)
            return generatorStep ? graphs.generator : graphs.discriminator
        case .diffusion: return try diffusionTrainingGraph(model: model, batch: batch, optimizer: trainer.optimizer)
        }
    }

    // MARK: Programs

    private func program(_ key: String, seedOffset: UInt64, _ make: () throws -> Graph) throws -> Executable {
        try core.program(key, seedOffset: seedOffset, make)
    }

    /// The compiled VAE training step for a batch size.
    public func vaeTrainingProgram(batch: Int) throws -> Executable {
        try program("vae-train-\(batch)", seedOffset: UInt64(batch)) {
            try Self.vaeTrainingGraph(model: model, batch: batch, optimizer: optimizer, noiseInput: noiseInput,
                                      gradientOutputs: gradientOutputs)
        }
    }

    /// The compiled diffusion training step for a batch size.
    public func diffusionTrainingProgram(batch: Int) throws -> Executable {
        try program("diffusion-train-\(batch)", seedOffset: UInt64(batch)) {
            try Self.diffusionTrainingGraph(model: model, batch: batch, optimizer: optimizer, noiseInput: noiseInput,
                                            gradientOutputs: gradientOutputs)
        }
    }

    /// The compiled GAN steps (discriminator, generator) for a batch size.
    public func ganTrainingPrograms(batch: Int) throws -> (discriminator: Executable, generator: Executable) {
        var graphs: (discriminator: Graph, generator: Graph)?
        func make() throws -> (discriminator: Graph, generator: Graph) {
            if let graphs { return graphs }
            let made = try Self.ganTrainingGraphs(model: model, batch: batch, generatorOptimizer: optimizer,
                                                  discriminatorOptimizer: discriminatorOptimizer, noiseInput: noiseInput)
            graphs = made
            return made
        }
        let d = try program("gan-disc-\(batch)", seedOffset: 0x1_0000 &+ UInt64(batch)) { try make().discriminator }
        let g = try program("gan-gen-\(batch)", seedOffset: 0x2_0000 &+ UInt64(batch)) { try make().generator }
        return (d, g)
    }

    /// Creates the parameters and state (if the store lacks them) without training.
    public func initializeParameters() throws {
        switch model.family {
        case .vae: _ = try vaeTrainingProgram(batch: 2)
        case .gan: _ = try ganTrainingPrograms(batch: 2)
        case .diffusion: _ = try diffusionTrainingProgram(batch: 2)
        }
    }

    // MARK: Training

    /// One optimizer step on the images (and labels, for a conditional model) at `indices`;
    /// returns the losses computed before the update. `noise` feeds ε or z when `noiseInput` is set.
    /// A diffusion step draws each image's step t from `CounterRandom(seed: seed)` keyed by `stepsTaken`
    /// (stream `diffusionStepStream`), so a resumed run draws the same steps.
    @discardableResult
    public func trainStep(_ data: ImageDataset, indices: ArraySlice<Int>, learningRate: Double,
                          noise: [Float]? = nil) throws -> GenerativeLosses {
        if model.isConditional && !data.isLabelled {
            throw KilnError.argument("\(model.name) is conditional and needs labelled images")
        }
        let programs: [Executable]
        switch model.family {
        case .vae: programs = [try vaeTrainingProgram(batch: indices.count)]
        case .gan:
            let pair = try ganTrainingPrograms(batch: indices.count)
            programs = [pair.discriminator, pair.generator]
        case .diffusion:
            let program = try diffusionTrainingProgram(batch: indices.count)
            try fillDiffusionSteps(program, positions: 0..<indices.count)
            programs = [program]
        }
        var losses: [Double] = []
        for program in programs {
            let labels = model.isConditional ? try program.inputPointer("labels").assumingMemoryBound(to: Int32.self) : nil
            data.fillBatch(indices: indices, into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: labels)
            try program.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(learningRate)
            if noiseInput {
                guard let noise else { throw KilnError.feed("noiseInput is set: trainStep needs noise") }
                try program.setInput("noise", noise)
            }
            try program.run()
            let loss = try program.outputPointer("loss").pointee
            try checkFiniteLoss(loss, model: model.name, step: program.step - 1,
                                what: program === programs.first && programs.count > 1 ? "discriminator loss" : "loss")
            losses.append(Double(loss))
        }
        stepsTaken += 1
        return model.family == .gan ? GenerativeLosses(main: losses[1], discriminator: losses[0]) : GenerativeLosses(main: losses[0])
    }

    /// The stream of `CounterRandom` a diffusion step's t is drawn from (sampling noise uses 0 and 1).
    public static let diffusionStepStream = 2

    /// Draws t uniform over the schedule's steps for the images at `positions` of the global batch
    /// of step `stepsTaken` and fills the training program's `signal`, `spread` and `time` inputs
    /// (row i for position `positions.lowerBound + i`). A data-parallel rank passes its shard's
    /// positions, so every rank count draws the one-process run's values.
    public func fillDiffusionSteps(_ program: Executable, positions: Range<Int>) throws {
        let schedule = model.schedule!
        let random = CounterRandom(seed: seed)
        let signal = try program.inputPointer("signal").assumingMemoryBound(to: Float.self)
        let spread = try program.inputPointer("spread").assumingMemoryBound(to: Float.self)
        let time = try program.inputPointer("time").assumingMemoryBound(to: Float.self)
        let size = model.latentSize
        for (i, position) in positions.enumerated() {
            let u = random.uniform(stream: Self.diffusionStepStream, step: UInt64(stepsTaken), index: position)
            let t = Swift.min(schedule.steps - 1, Int(Double(u) * Double(schedule.steps)))
            signal[i] = Float(schedule.alphaBars[t].squareRoot())
            spread[i] = Float((1 - schedule.alphaBars[t]).squareRoot())
            for (j, v) in DiffusionSchedule.embedding(step: t, size: size).enumerated() { time[i * size + j] = v }
        }
    }

    /// One pass over `data` in `order` (last partial batch kept); `learningRate` maps the global
    /// step number (`stepsTaken`) to a rate, so schedules apply per step. Returns mean losses.
    public func trainEpoch(_ data: ImageDataset, order: [Int], batchSize: Int, learningRate: (Int) -> Double,
                           progress: ((_ done: Int, _ total: Int, _ losses: GenerativeLosses) -> Void)? = nil) throws -> GenerativeLosses {
        var main = 0.0, discriminator = 0.0, seen = 0
        // Batch statistics (GAN) need two values per channel: a final batch of one joins the previous one.
        for batch in TrainingCore.batches(count: order.count, batchSize: batchSize, foldSingleton: true) {
            let losses = try trainStep(data, indices: order[batch], learningRate: learningRate(stepsTaken))
            main += losses.main * Double(batch.count)
            discriminator += (losses.discriminator ?? 0) * Double(batch.count)
            seen += batch.count
            progress?(seen, order.count, GenerativeLosses(main: main / Double(seen),
                                                          discriminator: model.family == .gan ? discriminator / Double(seen) : nil))
        }
        let n = Double(Swift.max(seen, 1))
        return GenerativeLosses(main: main / n, discriminator: model.family == .gan ? discriminator / n : nil)
    }

    /// A VAE's negative ELBO per example on `data`, with one fixed ε row per image drawn from
    /// `CounterRandom(seed: noiseSeed)` (or `noise`, `data.count × latentSize` values, if given).
    public func negativeELBO(_ data: ImageDataset, noise: [Float]? = nil, noiseSeed: UInt64 = 1234, batchSize: Int = 1000) throws -> Double {
        precondition(model.family == .vae, "\(model.name) is not a VAE")
        let latent = model.latentSize
        var eps = noise ?? [Float](repeating: 0, count: data.count * latent)
        if noise == nil {
            eps.withUnsafeMutableBufferPointer { CounterRandom(seed: noiseSeed).fillNormal($0, stream: 0, step: 0) }
        }
        var total = 0.0, start = 0
        let indices = Array(0..<data.count)
        while start < data.count {
            let end = Swift.min(data.count, start + batchSize)
            let program = try self.program("vae-eval-\(end - start)", seedOffset: 0) {
                try Self.vaeEvaluationGraph(model: model, batch: end - start)
            }
            let labels = model.isConditional ? try program.inputPointer("labels").assumingMemoryBound(to: Int32.self) : nil
            data.fillBatch(indices: indices[start..<end], into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: labels)
            try program.setInput("noise", Array(eps[(start * latent)..<(end * latent)]))
            try program.run()
            total += Double(try program.outputPointer("loss_sum").pointee)
            start = end
        }
        return total / Double(Swift.max(data.count, 1))
    }

    // MARK: Sampling

    /// Generates one image per entry of `labels` (conditional models) or `count` images
    /// (unconditional), with z drawn from `CounterRandom(seed:)`, as bytes 0–255 (round to nearest).
    /// The result carries `labels` and `classNames`. A `temperature` below 1 draws z from
    /// N(0, temperature²): samples nearer the prior's mode, more typical and less varied
    /// (the "reduced temperature" sampling of Kingma & Dhariwal 2018, §5).
    /// A diffusion model samples ancestrally (Ho et al. 2020, Algorithm 2, with x̂₀ clipped to [−1, 1]):
    /// x_T ~ N(0, I), then T denoising steps (`DiffusionSchedule.denoiseStep`); its `temperature`
    /// scales x_T and every step's added noise.
    public func sample(labels: [Int32]? = nil, count: Int? = nil, seed: UInt64, classNames: [String] = [],
                       temperature: Double = 1, batchSize: Int = 500) throws -> ImageDataset {
        guard temperature > 0, temperature.isFinite else { throw KilnError.argument("temperature must be positive, found \(temperature)") }
        if model.isConditional && labels == nil { throw KilnError.argument("\(model.name) is conditional: sampling needs labels") }
        if let labels {
            for label in labels where label < 0 || Int(label) >= Swift.max(model.classes, 1) {
                throw KilnError.argument("label \(label) is outside the model's \(model.classes) classes")
            }
        }
        let total = labels?.count ?? count ?? 0
        let latent = model.latentSize
        let (channels, height, width) = (model.imageShape[0], model.imageShape[1], model.imageShape[2])
        let pixels = channels * height * width
        guard total >= 0 else { throw KilnError.argument("cannot sample \(total) images") }
        try MemoryBudget.check([total, pixels], for: "\(total) samples of \(channels)x\(height)x\(width)")
        var bytes = [UInt8](repeating: 0, count: total * pixels)
        let random = CounterRandom(seed: seed)
        var start = 0, chunk: UInt64 = 0
        while start < total && model.family == .diffusion {
            let end = Swift.min(total, start + batchSize)
            let images = try diffusionSample(batch: end - start, labels: labels.map { Array($0[start..<end]) }, random: random,
                                             chunk: chunk, temperature: temperature)
            let plane = height * width
            for i in 0..<(end - start) {
                for c in 0..<channels {
                    for p in 0..<plane {
                        let v = (images[i * pixels + c * plane + p] + 1) / 2
                        bytes[(start + i) * pixels + p * channels + c] = UInt8(Swift.max(0, Swift.min(255, (v * 255).rounded())))
                    }
                }
            }
            start = end
            chunk += 1
        }
        while start < total {
            let end = Swift.min(total, start + batchSize)
            let program = try self.program("sample-\(end - start)", seedOffset: 0) { try Self.samplingGraph(model: model, batch: end - start) }
            let z = try program.inputPointer("z").assumingMemoryBound(to: Float.self)
            random.fillNormal(UnsafeMutableBufferPointer(start: z, count: (end - start) * latent), stream: 0, step: chunk)
            if temperature != 1 { for i in 0..<((end - start) * latent) { z[i] *= Float(temperature) } }
            if let labels, model.isConditional { try program.setInput("labels", Array(labels[start..<end])) }
            if let latentPrior {
                for i in 0..<(end - start) {
                    latentPrior.transform(z + i * latent, row: model.isConditional && latentPrior.rows > 1 ? Int(labels![start + i]) : 0)
                }
            }
            try program.run()
            let images = try program.outputPointer("images")
            let plane = height * width
            for i in 0..<(end - start) {
                // NCHW floats to NHWC bytes.
                for c in 0..<channels {
                    for p in 0..<plane {
                        let v = images[i * pixels + c * plane + p]
                        bytes[(start + i) * pixels + p * channels + c] = UInt8(Swift.max(0, Swift.min(255, (v * 255).rounded())))
                    }
                }
            }
            start = end
            chunk += 1
        }
        return ImageDataset(images: bytes, labels: labels ?? [], count: total, channels: channels, height: height, width: width,
                            classNames: classNames)
    }

    /// One batch of diffusion samples, NCHW floats in [−1, 1]: x_T from stream 0 of `random` at step
    /// `chunk`·(T + 1), the noise of denoising step t from stream 1 at step `chunk`·(T + 1) + t.
    private func diffusionSample(batch: Int, labels: [Int32]?, random: CounterRandom, chunk: UInt64, temperature: Double) throws -> [Float] {
        let schedule = model.schedule!
        let steps = schedule.steps
        let program = try self.program("denoise-\(batch)", seedOffset: 0) { try Self.denoisingGraph(model: model, batch: batch) }
        if let labels, model.isConditional { try program.setInput("labels", labels) }
        let count = batch * model.imageShape.reduce(1, *)
        let base = chunk &* UInt64(steps + 1)
        var x = [Float](repeating: 0, count: count), noise = [Float](repeating: 0, count: count)
        x.withUnsafeMutableBufferPointer { random.fillNormal($0, stream: 0, step: base) }
        if temperature != 1 { for i in x.indices { x[i] *= Float(temperature) } }
        let size = model.latentSize
        for t in stride(from: steps - 1, through: 0, by: -1) {
            let embedding = DiffusionSchedule.embedding(step: t, size: size)
            try program.setInput("time", (0..<batch).flatMap { _ in embedding })
            try program.setInput("noisy", x)
            try program.run()
            let predicted = try program.output("noise")
            if t > 0 { noise.withUnsafeMutableBufferPointer { random.fillNormal($0, stream: 1, step: base &+ UInt64(t)) } }
            schedule.denoiseStep(&x, predictedNoise: predicted, step: t, noise: noise, temperature: temperature)
        }
        return x
    }

    /// `perClass` images of every class, class 0 first (conditional models only).
    public func samplePerClass(_ perClass: Int, seed: UInt64, classNames: [String], temperature: Double = 1) throws -> ImageDataset {
        guard model.isConditional else {
            throw KilnError.argument("\(model.name) is unconditional: it cannot produce images of a stated class (use cvae, conv-cvae, cgan or ddpm)")
        }
        guard perClass >= 0 else { throw KilnError.argument("cannot sample \(perClass) images per class") }
        try MemoryBudget.check([perClass, model.classes, 4 + model.imageShape.reduce(1, *)],
                               for: "\(perClass) samples of each of \(model.classes) classes")
        let labels = (0..<model.classes).flatMap { [Int32](repeating: Int32($0), count: perClass) }
        return try sample(labels: labels, seed: seed, classNames: classNames, temperature: temperature)
    }
}
