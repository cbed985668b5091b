import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime
import KilnZoo

/// Data-parallel training of a VAE (vae, cvae, conv-vae, conv-cvae) or a diffusion model (ddpm)
/// over a `Communicator`, as `DistributedTrainer` does for classifiers: each rank runs forward
/// and backward on its contiguous shard of every global batch (the same batches, in the same
/// order, as `GenerativeTrainer.trainEpoch`), the share-weighted gradients are summed in rank
/// order (overlapped with backward, see `DistributedTrainer`), and one update program applies the
/// trainer's optimizer, so every rank ends every step with the same bytes.
///
/// The random draws are the global batch's, not a rank's: the noise (a VAE's ε [B, latent], a
/// diffusion model's ε [B, C, H, W]) is drawn for the whole global batch from
/// `CounterRandom(seed: trainer.seed)`, stream `noiseStream`, keyed by `trainer.stepsTaken`, and
/// each rank feeds its rows; a diffusion model's step t of example i is drawn as
/// `GenerativeTrainer` draws it, with i the example's place in the global batch. So a run does not
/// depend on the number of ranks, and equals one process fed the same noise
/// (`GenerativeTrainer.noiseInput`, `noise(model:seed:step:count:)`); a one-process `kiln train`
/// draws its ε inside the graph instead (the same distribution, other values).
///
/// GANs are not covered: a GAN step is two programs with two optimizers (discriminator, then
/// generator on the updated discriminator), so it needs two reductions per step; `init` throws.
public final class DistributedGenerativeTrainer {
    public let trainer: GenerativeTrainer
    public let communicator: Communicator
    let engine: DataParallelEngine
    /// The `CounterRandom` stream the noise is drawn from (sampling uses 0 and 1, a diffusion step's t 2).
    public static let noiseStream = 3

    /// Floats per all-reduce bucket (default 1 Mi). Read at the first step.
    public var bucketElements: Int { get { engine.bucketElements } set { engine.bucketElements = newValue } }
    /// Reduce buckets during backward (see `DistributedTrainer.overlap`). Read at the first step.
    public var overlap: Bool { get { engine.overlap } set { engine.overlap = newValue } }
    /// A barrier before each reduction, its time counted apart (see `DistributedTrainer.separateWaiting`).
    public var separateWaiting: Bool { get { engine.separateWaiting } set { engine.separateWaiting = newValue } }
    public var statistics: ReductionStatistics { engine.statistics }
    public var overlapping: Bool { engine.overlapping }
    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }

    /// The one line for a GAN.
    public static func ganMessage(_ name: String) -> String {
        "\(name) is a GAN, which does not train data-parallel yet (its step is two programs with two optimizers, "
            + "discriminator then generator); distributed training covers the VAEs (vae, cvae, conv-vae, conv-cvae) and ddpm: run \(name) in one process (without mpirun)"
    }

    public init(trainer: GenerativeTrainer, communicator: Communicator) throws {
        let model = trainer.model
        guard model.family != .gan else { throw KilnError.argument(Self.ganMessage(model.name)) }
        self.trainer = trainer
        self.communicator = communicator
        engine = DataParallelEngine(communicator: communicator, store: trainer.store, optimizer: trainer.optimizer, threads: trainer.threads,
                                    seed: trainer.seed, disabledPasses: { [unowned trainer] in trainer.disabledPasses }, name: model.name,
                                    extras: 1) { batch in
            model.family == .vae
                ? try GenerativeTrainer.vaeTrainingGraph(model: model, batch: batch, optimizer: nil, noiseInput: true)
                : try GenerativeTrainer.diffusionTrainingGraph(model: model, batch: batch, optimizer: nil, noiseInput: true)
        }
    }

    /// The noise of a global batch of `count` examples at optimizer step `step` (row i: example i's).
    public static func noise(model: GenerativeModel, seed: UInt64, step: Int, count: Int) -> [Float] {
        let row = model.family == .diffusion ? model.imageShape.reduce(1, *) : model.latentSize
        var values = [Float](repeating: 0, count: count * row)
        values.withUnsafeMutableBufferPointer { CounterRandom(seed: seed).fillNormal($0, stream: noiseStream, step: UInt64(step)) }
        return values
    }

    /// Compiles the programs and gives every rank rank 0's parameters and optimizer state; collective.
    public func synchronize(batch: Int = 1) throws { try engine.synchronize(batch: batch) }

    /// One optimizer step on a global batch (`indices` into `data`, the same on every rank): this
    /// rank computes its shard. Returns the global batch's mean loss (before the update).
    @discardableResult
    public func trainStep(_ data: ImageDataset, indices: ArraySlice<Int>, learningRate: Double) throws -> Double {
        let model = trainer.model
        if model.isConditional && !data.isLabelled {
            throw KilnError.argument("\(model.name) is conditional and needs labelled images")
        }
        let global = indices.count
        guard global > 0 else { throw KilnError.argument("a training step needs at least one example") }
        let mine = DistributedTrainer.shard(count: global, rank: rank, size: size)
        let share = Float(Double(mine.count) / Double(global))
        let step = trainer.stepsTaken
        let seed = trainer.seed
        let sums = try engine.step(count: mine.count, share: share, learningRate: learningRate, fill: { program in
            let shard = indices[(indices.startIndex + mine.lowerBound) ..< (indices.startIndex + mine.upperBound)]
            let labels = model.isConditional ? try program.inputPointer("labels").assumingMemoryBound(to: Int32.self) : nil
            data.fillBatch(indices: shard, into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: labels)
            let noise = Self.noise(model: model, seed: seed, step: step, count: global)
            let row = noise.count / global
            try program.inputPointer("noise").assumingMemoryBound(to: Float.self)
                .update(from: Array(noise[(mine.lowerBound * row) ..< (mine.upperBound * row)]), count: mine.count * row)
            if model.family == .diffusion { try trainer.fillDiffusionSteps(program, positions: mine) }
        }, finish: { program in
            [try program.outputPointer("loss").pointee * share]
        })
        trainer.stepsTaken += 1
        return Double(sums[0])
    }

    /// One pass over `data` in `order` with `GenerativeTrainer.trainEpoch`'s batches (a final
    /// batch of one joins the previous one); `learningRate` maps `trainer.stepsTaken` to a rate.
    /// Checks afterwards that all ranks hold the same bytes. Returns the mean loss.
    public func trainEpoch(_ data: ImageDataset, order: [Int], batchSize: Int, learningRate: (Int) -> Double,
                           progress: ((_ done: Int, _ total: Int, _ loss: Double) -> Void)? = nil) throws -> Double {
        guard batchSize >= size else {
            throw KilnError.argument("the global batch (\(batchSize)) is smaller than the number of ranks (\(size)); every rank needs an example")
        }
        try synchronize(batch: Swift.max(1, DistributedTrainer.shard(count: Swift.min(batchSize, order.count), rank: rank, size: size).count))
        var total = 0.0, seen = 0
        for batch in TrainingCore.batches(count: order.count, batchSize: batchSize, foldSingleton: true) {
            let loss = try trainStep(data, indices: order[batch], learningRate: learningRate(trainer.stepsTaken))
            total += loss * Double(batch.count)
            seen += batch.count
            progress?(seen, order.count, total / Double(seen))
        }
        try checkReplicasIdentical(after: "an epoch")
        return total / Double(Swift.max(seen, 1))
    }

    /// A 64-bit FNV-1a digest of every stored tensor's bytes, in name order.
    public func digest() -> UInt64 { engine.digest() }

    /// Throws unless every rank's parameters and state are byte-identical (compares digests).
    public func checkReplicasIdentical(after when: String) throws { try engine.checkReplicasIdentical(after: when) }
}
