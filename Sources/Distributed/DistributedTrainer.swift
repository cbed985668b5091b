import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime
import KilnZoo

/// One epoch of a distributed fit, the same figures on every rank.
public struct DistributedEpochReport: Sendable {
    /// 1-based, counting resumed epochs.
    public var epoch: Int
    /// Mean loss and accuracy over the epoch's global batches (before each step's update).
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var seconds: Double
    /// Of `seconds`, the time in the gradient all-reduce after backward (`ReductionStatistics.seconds`).
    public var reductionSeconds: Double
}

/// Data-parallel training of a classifier over a `Communicator` (MPI processes, or threads in
/// tests), as Horovod and PyTorch's DistributedDataParallel do it.
///
/// Every rank holds the whole model. A global batch (the same size and the same examples, in the
/// same order, as a one-process run's) is cut into `size` contiguous shards; each rank runs forward
/// and backward on its shard (a program with no optimizer updates, whose outputs are the
/// gradients), scales its gradients by its share of the batch (n_r / B), and the ranks sum them in
/// fixed-size buckets, in rank order: every rank then holds the gradient of the global batch's
/// mean loss, the same bytes on each. A second program applies the optimizer to those gradients,
/// so every rank ends every step with identical parameters and optimizer state.
///
/// Batch-norm running statistics (updated by each rank from its own shard) are averaged with the
/// same weights in the same all-reduce, so they stay identical too; the running mean then equals
/// a one-process run's, while the running variance and the normalisation itself use the shard's
/// statistics (as DistributedDataParallel without SyncBatchNorm does).
///
/// **Overlap** (`overlap`, on by default): gradients are packed last layer first, as backward
/// produces them; as soon as the kernel that finishes a bucket's last gradient has run
/// (`Executable.run(checkpoints:reached:)`) the bucket is packed and its reduction started with
/// non-blocking collectives, and after every later kernel the same thread tests it (one
/// `MPI_Test`, which moves Open MPI's progress engine on) and starts the next step or bucket.
/// There is no communication thread: on a machine whose cores all compute (2 ranks on 2 cores, or
/// a cluster node whose rank uses every core) a thread that polls MPI takes core time from
/// backward, and one that sleeps between polls moves the data slowly (measured, issue 18: the
/// wait after backward grew from 34.5 to 347 ms for ResNet-18). Between kernels the tests cost
/// microseconds, and what is not finished when backward ends is finished by `MPI_Wait` as fast
/// as a blocking all-reduce, so overlap costs about nothing when it hides nothing. The bucket
/// that holds the batch-norm statistics, loss and accuracy goes last, after the program. Buckets
/// are reduced in the same order on every rank, and every element is still the rank-ordered sum,
/// so the bytes do not depend on overlap, bucket size or timing.
public final class DistributedTrainer {
    public let trainer: ClassifierTrainer
    public let communicator: Communicator
    let engine: DataParallelEngine
    /// Floats per all-reduce bucket (default 1 Mi floats, 4 MiB: small enough that ResNet-18's
    /// 45 MB make 11 buckets, of which backward finishes all but the last before it ends). Read at
    /// the first step.
    public var bucketElements: Int { get { engine.bucketElements } set { engine.bucketElements = newValue } }
    /// Start reducing each bucket as soon as backward has produced it and progress it between
    /// kernels (with more than one rank). Off: every bucket is reduced with blocking collectives
    /// after backward. Read at the first step; every rank must choose the same.
    public var overlap: Bool { get { engine.overlap } set { engine.overlap = newValue } }
    /// Check after every epoch that all ranks hold the same bytes (a 64-bit digest of every
    /// stored tensor, gathered); throws if not.
    public var verifyReplicas: Bool { get { engine.verifyReplicas } set { engine.verifyReplicas = newValue } }
    /// Put a barrier before each step's reduction and count its time apart (`statistics.waitSeconds`),
    /// so that `statistics.seconds` is the transfer alone and not the wait for a slower rank. Costs one
    /// more collective per step and turns overlap off; for measurements (`kiln train --time-allreduce`).
    public var separateWaiting: Bool { get { engine.separateWaiting } set { engine.separateWaiting = newValue } }
    public var statistics: ReductionStatistics { engine.statistics }
    /// Whether steps overlap the reduction with backward (known after the first step).
    public var overlapping: Bool { engine.overlapping }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    public var isRoot: Bool { communicator.rank == 0 }

    public init(trainer: ClassifierTrainer, communicator: Communicator) {
        self.trainer = trainer
        self.communicator = communicator
        let model = trainer.model
        engine = DataParallelEngine(communicator: communicator, store: trainer.store, optimizer: trainer.optimizer, threads: trainer.threads,
                                    seed: trainer.seed, disabledPasses: { [unowned trainer] in trainer.disabledPasses }, name: model.name, extras: 2) { batch in
            try Self.gradientGraph(model: model, batch: batch)
        }
    }

    /// The forward and backward graph for one shard size: inputs `x`, `labels`; outputs `loss`,
    /// `logits` and `grad.NAME` per parameter; updates only batch-norm running statistics.
    public static func gradientGraph(model: ClassifierModel, batch: Int) throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.inputShape))
        let labels = g.input("labels", [batch], dtype: .int32)
        let logits = model.forward(x, true)
        let loss = softmaxCrossEntropy(logits, labels: labels).mean()
        let parameters = g.parameters
        let grads = g.gradients(of: loss, withRespectTo: parameters)
        g.output("loss", loss)
        g.output("logits", logits)
        for (p, grad) in zip(parameters, grads) { g.output("grad.\(g.graph.leafName(p.id)!)", grad) }
        return try g.build()
    }

    /// The optimizer step alone: inputs `lr` and `grad.NAME`; updates the parameters and the optimizer's state.
    public static func updateGraph(parameters: [(name: String, shape: Shape)], optimizer: Optimizer) throws -> Graph {
        try DataParallelEngine.updateGraph(parameters: parameters, optimizer: optimizer)
    }

    /// The rank's contiguous share of a global batch of `count` examples (sizes differ by at most one).
    public static func shard(count: Int, rank: Int, size: Int) -> Range<Int> {
        (count * rank / size) ..< (count * (rank + 1) / size)
    }

    /// Compiles the programs and gives every rank rank 0's parameters and optimizer state (as
    /// DistributedDataParallel does at construction), so that ranks agree even when they were
    /// initialised or resumed differently. Called by the first step; collective.
    public func synchronize(batch: Int = 1) throws { try engine.synchronize(batch: batch) }

    /// One optimizer step on a global batch (`indices` into `data`, the same on every rank): this
    /// rank computes its shard. Returns the global batch's mean loss and correct predictions.
    @discardableResult
    public func trainStep(_ data: ImageDataset, indices: ArraySlice<Int>, learningRate: Double,
                          augmentation: Augmentation = .none, seed: UInt64 = 0, epoch: Int = 0) throws -> (loss: Double, correct: Int) {
        let global = indices.count
        guard global > 0 else { throw KilnError.argument("a training step needs at least one example") }
        let mine = Self.shard(count: global, rank: rank, size: size)
        let share = Float(Double(mine.count) / Double(global))
        var batch: ImageDataset?
        if !mine.isEmpty {
            let shardIndices = indices[(indices.startIndex + mine.lowerBound) ..< (indices.startIndex + mine.upperBound)]
            batch = augmentation.apply(to: data, indices: shardIndices, seed: seed, epoch: epoch)
        }
        let classes = trainer.model.classes
        let sums = try engine.step(count: mine.count, share: share, learningRate: learningRate, fill: { program in
            try batch!.fillBatch(indices: Array(0..<batch!.count)[...], into: program.inputPointer("x").assumingMemoryBound(to: Float.self),
                                 labels: program.inputPointer("labels").assumingMemoryBound(to: Int32.self))
        }, finish: { program in
            let loss = try program.outputPointer("loss").pointee
            let logits = try program.outputPointer("logits")
            var correct = 0
            for row in 0..<batch!.count {
                var predicted = 0
                for k in 1..<classes where logits[row * classes + k] > logits[row * classes + predicted] { predicted = k }
                if predicted == Int(batch!.labels[row]) { correct += 1 }
            }
            return [loss * share, Float(correct)]
        })
        return (Double(sums[0]), Int(sums[1].rounded()))
    }

    /// Trains for `options.epochs` epochs with the same epoch orders, batches, learning-rate
    /// schedule and augmentation as `ClassifierTrainer.fit` without a validation set. `report` is
    /// called on every rank after every epoch (print on rank 0 only).
    @discardableResult
    public func fit(_ train: ImageDataset, options: FitOptions,
                    report: (DistributedEpochReport) throws -> Void = { _ in }) throws -> [DistributedEpochReport] {
        precondition(train.isLabelled, "training needs labels")
        guard options.patience == nil else {
            throw KilnError.argument("distributed training has no validation set, so no early stopping (--patience)")
        }
        guard options.batchSize >= 1, options.epochs >= 0, options.firstEpoch >= 0 else {
            throw KilnError.argument("training needs a batch size of at least 1 and non-negative epoch counts")
        }
        try engine.synchronize(batch: Swift.max(1, Self.shard(count: Swift.min(options.batchSize, train.count), rank: rank, size: size).count))
        var history: [DistributedEpochReport] = []
        for epoch in options.firstEpoch ..< options.firstEpoch + options.epochs {
            let start = Date()
            let reductionBefore = statistics.seconds
            let order = options.order(train.count, options.seed, epoch)
            let stepsPerEpoch = (order.count + options.batchSize - 1) / options.batchSize
            var totalLoss = 0.0, correct = 0, position = 0
            while position < order.count {
                let end = Swift.min(order.count, position + options.batchSize)
                let rate = options.schedule.rate(base: options.learningRate, step: epoch * stepsPerEpoch + position / options.batchSize,
                                                 stepsPerEpoch: stepsPerEpoch, totalSteps: (options.firstEpoch + options.epochs) * stepsPerEpoch)
                let result = try trainStep(train, indices: order[position..<end], learningRate: rate,
                                           augmentation: options.augmentation, seed: options.seed, epoch: epoch)
                totalLoss += result.loss * Double(end - position)
                correct += result.correct
                position = end
            }
            if verifyReplicas { try checkReplicasIdentical(after: "epoch \(epoch + 1)") }
            let record = DistributedEpochReport(epoch: epoch + 1, trainLoss: totalLoss / Double(Swift.max(order.count, 1)),
                                                trainAccuracy: Double(correct) / Double(Swift.max(order.count, 1)),
                                                seconds: Date().timeIntervalSince(start),
                                                reductionSeconds: statistics.seconds - reductionBefore)
            history.append(record)
            try report(record)
        }
        return history
    }

    /// A 64-bit FNV-1a digest of every stored tensor's bytes (parameters, optimizer and batch-norm state), in name order.
    public func digest() -> UInt64 { engine.digest() }

    /// Throws unless every rank's parameters and state are byte-identical (compares digests).
    public func checkReplicasIdentical(after when: String) throws { try engine.checkReplicasIdentical(after: when) }
}
