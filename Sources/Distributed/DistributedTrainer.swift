import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime
import KilnZoo

/// Time and traffic of the gradient all-reduce, summed over steps.
public struct ReductionStatistics: Sendable {
    public var steps = 0
    /// Seconds inside `allReduceSum` (all buckets of all steps).
    public var seconds = 0.0
    /// Each step's seconds in `allReduceSum`, in order (their sum is `seconds`).
    public var stepSeconds: [Double] = []
    /// The median of `stepSeconds` (0 before the first step).
    public var medianStepSeconds: Double { stepSeconds.isEmpty ? 0 : stepSeconds.sorted()[stepSeconds.count / 2] }
    /// Gradient (and batch-norm statistic) bytes reduced per step.
    public var bytesPerStep = 0
    /// Buckets per step.
    public var bucketsPerStep = 0
    /// With `DistributedTrainer.separateWaiting`: seconds in a barrier before each step's
    /// reduction (waiting for the slowest rank's backward), not counted in `seconds`.
    public var waitSeconds = 0.0
    /// Seconds in the gradient step (forward and backward) and in the update step, summed.
    public var computeSeconds = 0.0
    public var updateSeconds = 0.0
}

/// One epoch of a distributed fit, the same figures on every rank.
public struct DistributedEpochReport: Sendable {
    /// 1-based, counting resumed epochs.
    public var epoch: Int
    /// Mean loss and accuracy over the epoch's global batches (before each step's update).
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var seconds: Double
    /// Of `seconds`, the time in the gradient all-reduce.
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
/// The reduction runs after the whole backward pass, not overlapped with it (see README,
/// "Training on several machines").
public final class DistributedTrainer {
    public let trainer: ClassifierTrainer
    public let communicator: Communicator
    /// Floats per all-reduce bucket (default 4 Mi floats, 16 MiB).
    public var bucketElements = 4 << 20
    /// Check after every epoch that all ranks hold the same bytes (a 64-bit digest of every
    /// stored tensor, gathered); throws if not.
    public var verifyReplicas = true
    /// Put a barrier before each step's reduction and count its time apart (`statistics.waitSeconds`),
    /// so that `statistics.seconds` is the transfer alone and not the wait for a slower rank. Costs one
    /// more collective per step; for measurements (`kiln train --time-allreduce`).
    public var separateWaiting = false
    public private(set) var statistics = ReductionStatistics()

    private var gradientPrograms: [Int: Executable] = [:]
    private var updateProgram: Executable?
    /// Parameters in graph order, with their element counts.
    private var parameters: [(name: String, count: Int)] = []
    private var shapes: [(name: String, shape: Shape)] = []
    /// State the gradient program updates (batch-norm running statistics).
    private var averagedState: [(name: String, count: Int)] = []
    private var flat: [Float] = []
    private var synchronized = false

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    public var isRoot: Bool { communicator.rank == 0 }

    public init(trainer: ClassifierTrainer, communicator: Communicator) {
        self.trainer = trainer
        self.communicator = communicator
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
        let g = GraphBuilder()
        let lr = g.input("lr", .scalar)
        var values: [Tensor] = [], grads: [Tensor] = []
        for (name, shape) in parameters {
            values.append(g.parameter(name, shape, initializer: .zeros))
            grads.append(g.input("grad.\(name)", shape))
        }
        optimizer.appendUpdates(to: g, parameters: values, gradients: grads, learningRate: lr)
        return try g.build()
    }

    /// The rank's contiguous share of a global batch of `count` examples (sizes differ by at most one).
    public static func shard(count: Int, rank: Int, size: Int) -> Range<Int> {
        (count * rank / size) ..< (count * (rank + 1) / size)
    }

    private func gradientProgram(batch: Int) throws -> Executable {
        if let program = gradientPrograms[batch] { return program }
        let graph = try Self.gradientGraph(model: trainer.model, batch: batch)
        // Dropout draws differ per rank (the seed has the rank in it), as they differ per example in one process.
        let options = CompileOptions(threads: trainer.threads, seed: trainer.seed &+ UInt64(batch) &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15,
                                     disabledPasses: trainer.disabledPasses)
        let program = try Executable(graph: graph, store: trainer.store, options: options)
        if parameters.isEmpty {
            parameters = graph.parameterIDs.map { (graph.leafName($0)!, graph.nodes[$0].type.shape.count) }
            shapes = graph.parameterIDs.map { (graph.leafName($0)!, graph.nodes[$0].type.shape) }
            let stateIDs = Set(graph.stateIDs)
            averagedState = graph.updates.map(\.target).filter { stateIDs.contains($0) }
                .map { (graph.leafName($0)!, graph.nodes[$0].type.shape.count) }
        }
        gradientPrograms[batch] = program
        return program
    }

    /// Compiles the programs and gives every rank rank 0's parameters and optimizer state (as
    /// DistributedDataParallel does at construction), so that ranks agree even when they were
    /// initialised or resumed differently. Called by the first step; collective.
    public func synchronize(batch: Int = 1) throws {
        if synchronized { return }
        _ = try gradientProgram(batch: Swift.max(1, batch))
        updateProgram = try Executable(graph: Self.updateGraph(parameters: shapes, optimizer: trainer.optimizer), store: trainer.store,
                                       options: CompileOptions(threads: trainer.threads, seed: trainer.seed))
        let names = trainer.store.names
        let listing = Array(names.map { "\($0):\(trainer.store[$0]!.type.shape.count)" }.joined(separator: ",").utf8)
        let digest = Self.fnv1a(listing)
        let all = try communicator.allGather(withUnsafeBytes(of: digest.littleEndian) { Array($0) })
        guard all.allSatisfy({ $0 == all[0] }) else {
            throw KilnError.feed("rank \(rank): the ranks hold different sets of parameters (different models or options?)")
        }
        for name in names {
            let tensor = trainer.store[name]!
            try communicator.broadcast(UnsafeMutableRawBufferPointer(start: tensor.pointer, count: tensor.type.shape.count * 4), root: 0)
        }
        let total = parameters.reduce(0) { $0 + $1.count } + averagedState.reduce(0) { $0 + $1.count }
        flat = [Float](repeating: 0, count: total + 2)
        statistics.bytesPerStep = total * 4
        statistics.bucketsPerStep = (flat.count + bucketElements - 1) / bucketElements
        synchronized = true
    }

    /// One optimizer step on a global batch (`indices` into `data`, the same on every rank): this
    /// rank computes its shard. Returns the global batch's mean loss and correct predictions.
    @discardableResult
    public func trainStep(_ data: ImageDataset, indices: ArraySlice<Int>, learningRate: Double,
                          augmentation: Augmentation = .none, seed: UInt64 = 0, epoch: Int = 0) throws -> (loss: Double, correct: Int) {
        let global = indices.count
        guard global > 0 else { throw KilnError.argument("a training step needs at least one example") }
        let mine = Self.shard(count: global, rank: rank, size: size)
        try synchronize(batch: mine.count)
        let share = Float(Double(mine.count) / Double(global))
        var offset = 0
        let start = Date()
        if mine.isEmpty {
            for i in flat.indices { flat[i] = 0 }
        } else {
            let shardIndices = indices[(indices.startIndex + mine.lowerBound) ..< (indices.startIndex + mine.upperBound)]
            let batch = augmentation.apply(to: data, indices: shardIndices, seed: seed, epoch: epoch)
            let program = try gradientProgram(batch: batch.count)
            try batch.fillBatch(indices: Array(0..<batch.count)[...], into: program.inputPointer("x").assumingMemoryBound(to: Float.self),
                                labels: program.inputPointer("labels").assumingMemoryBound(to: Int32.self))
            try program.run()
            let loss = try program.outputPointer("loss").pointee
            guard loss.isFinite else {
                throw KilnError.feed("\(trainer.model.name): rank \(rank): the training loss became \(loss.isNaN ? "NaN" : "\(loss)") in step \(program.step - 1); training stopped and nothing was saved")
            }
            try flat.withUnsafeMutableBufferPointer { flat in
                for (name, count) in parameters {
                    let g = try program.outputPointer("grad.\(name)")
                    for i in 0..<count { flat[offset + i] = g[i] * share }
                    offset += count
                }
                for (name, count) in averagedState {
                    let s = trainer.store[name]!.pointer
                    for i in 0..<count { flat[offset + i] = s[i] * share }
                    offset += count
                }
                let classes = trainer.model.classes
                let logits = try program.outputPointer("logits")
                var correct = 0
                for row in 0..<batch.count {
                    var predicted = 0
                    for k in 1..<classes where logits[row * classes + k] > logits[row * classes + predicted] { predicted = k }
                    if predicted == Int(batch.labels[row]) { correct += 1 }
                }
                flat[offset] = loss * share
                flat[offset + 1] = Float(correct)
            }
        }
        var reduceStart = Date()
        statistics.computeSeconds += reduceStart.timeIntervalSince(start)
        if separateWaiting {
            try communicator.barrier()
            let now = Date()
            statistics.waitSeconds += now.timeIntervalSince(reduceStart)
            reduceStart = now
        }
        try flat.withUnsafeMutableBufferPointer { flat in
            var first = 0
            while first < flat.count {
                let end = Swift.min(flat.count, first + bucketElements)
                try communicator.allReduceSum(UnsafeMutableBufferPointer(rebasing: flat[first..<end]))
                first = end
            }
        }
        let updateStart = Date()
        statistics.seconds += updateStart.timeIntervalSince(reduceStart)
        statistics.stepSeconds.append(updateStart.timeIntervalSince(reduceStart))
        let update = updateProgram!
        offset = 0
        try flat.withUnsafeBufferPointer { flat in
            for (name, count) in parameters {
                try update.inputPointer("grad.\(name)").assumingMemoryBound(to: Float.self).update(from: flat.baseAddress! + offset, count: count)
                offset += count
            }
            for (name, count) in averagedState {
                trainer.store[name]!.pointer.update(from: flat.baseAddress! + offset, count: count)
                offset += count
            }
        }
        try update.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(learningRate)
        try update.run()
        statistics.updateSeconds += Date().timeIntervalSince(updateStart)
        statistics.steps += 1
        return (Double(flat[offset]), Int(flat[offset + 1].rounded()))
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
        try synchronize(batch: Self.shard(count: Swift.min(options.batchSize, train.count), rank: rank, size: size).count)
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
    public func digest() -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for name in trainer.store.names {
            let tensor = trainer.store[name]!
            for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let bytes = UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.type.shape.count * 4)
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        return hash
    }

    /// Throws unless every rank's parameters and state are byte-identical (compares digests).
    public func checkReplicasIdentical(after when: String) throws {
        let all = try communicator.allGather(withUnsafeBytes(of: digest().littleEndian) { Array($0) })
        guard all.allSatisfy({ $0 == all[0] }) else {
            let differing = all.indices.filter { all[$0] != all[0] }
            throw KilnError.feed("after \(when) ranks \(differing) hold parameters that differ from rank 0's (digests differ)")
        }
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }
}
