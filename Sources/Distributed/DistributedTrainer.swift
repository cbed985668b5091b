import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime
import KilnZoo

/// Time and traffic of the gradient all-reduce, summed over steps.
public struct ReductionStatistics: Sendable {
    public var steps = 0
    /// Seconds the step spent on the all-reduce after its backward pass: without overlap, the
    /// whole reduction (all buckets); with overlap, the wait for what was not finished when
    /// backward ended (the exposed part).
    public var seconds = 0.0
    /// Each step's share of `seconds`, in order (their sum is `seconds`).
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
    /// Steps whose reduction overlapped backward (`DistributedTrainer.overlap`).
    public var overlappedSteps = 0
    /// With overlap: seconds the communication thread spent packing and reducing buckets (waits
    /// for slower peers included), summed over steps.
    public var communicationSeconds = 0.0
    /// With overlap: bytes whose reduction had finished when backward ended, summed over steps.
    public var bytesReducedDuringBackward = 0
}

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
/// produces them, and each bucket's reduction starts on a communication thread as soon as the
/// kernel that finishes its last gradient has run (`Executable.run(checkpoints:reached:)`), while
/// the main thread goes on with backward. The bucket that holds the batch-norm statistics, loss
/// and accuracy goes last, after the program. Buckets are reduced in the same order on every
/// rank, and every element is still the rank-ordered sum, so the bytes do not depend on overlap,
/// bucket size or timing.
public final class DistributedTrainer {
    public let trainer: ClassifierTrainer
    public let communicator: Communicator
    /// Floats per all-reduce bucket (default 1 Mi floats, 4 MiB: small enough that ResNet-18's
    /// 45 MB make 11 buckets, of which backward finishes all but the last before it ends). Read at
    /// the first step.
    public var bucketElements = 1 << 20
    /// Reduce each bucket on a communication thread as soon as backward has produced it (when
    /// the communicator allows calls from another thread and there is more than one rank).
    /// Off: every bucket is reduced on the calling thread after backward. Read at the first step.
    public var overlap = true
    /// Check after every epoch that all ranks hold the same bytes (a 64-bit digest of every
    /// stored tensor, gathered); throws if not.
    public var verifyReplicas = true
    /// Put a barrier before each step's reduction and count its time apart (`statistics.waitSeconds`),
    /// so that `statistics.seconds` is the transfer alone and not the wait for a slower rank. Costs one
    /// more collective per step and turns overlap off; for measurements (`kiln train --time-allreduce`).
    public var separateWaiting = false
    public private(set) var statistics = ReductionStatistics()
    /// Whether steps overlap the reduction with backward (known after the first step).
    public var overlapping: Bool { worker != nil }
    private var overlapsReduction: Bool {
        overlap && !separateWaiting && size > 1 && communicator.allowsCallsFromAnotherThread
    }

    private var plans: [Int: GradientPlan] = [:]
    private var updateProgram: Executable?
    /// Parameters in graph order (the update program's), with their element counts and the
    /// offset of their gradient in the reduced buffer (reverse graph order: last layers first).
    private var parameters: [(name: String, count: Int, offset: Int)] = []
    private var shapes: [(name: String, shape: Shape)] = []
    /// State the gradient program updates (batch-norm running statistics), after the gradients.
    private var averagedState: [(name: String, count: Int, offset: Int)] = []
    /// Where the gradients end (the state starts), and where the loss and the correct count go
    /// (after the state); the buffer ends after them.
    private var gradientEnd = 0
    private var tail = 0
    private var flat: ReducedBuffer?
    private var buckets: [Range<Int>] = []
    private var worker: ReductionWorker?
    private var synchronized = false

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    public var isRoot: Bool { communicator.rank == 0 }

    public init(trainer: ClassifierTrainer, communicator: Communicator) {
        self.trainer = trainer
        self.communicator = communicator
    }

    deinit { worker?.stop() }

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

    /// The buffer layout, the same on every rank (it follows the graph's parameter order, not a
    /// rank's schedule): gradients in reverse parameter order (backward finishes the last layers
    /// first), then the averaged state, the loss and the correct count; cut into buckets.
    private func layOut(_ graph: Graph) {
        let ids = graph.parameterIDs
        shapes = ids.map { (graph.leafName($0)!, graph.nodes[$0].type.shape) }
        var offset = 0
        var offsets = [Int](repeating: 0, count: ids.count)
        for index in ids.indices.reversed() {
            offsets[index] = offset
            offset += graph.nodes[ids[index]].type.shape.count
        }
        parameters = ids.indices.map { (shapes[$0].name, shapes[$0].shape.count, offsets[$0]) }
        gradientEnd = offset
        let stateIDs = Set(graph.stateIDs)
        averagedState = []
        for id in graph.updates.map(\.target) where stateIDs.contains(id) {
            let count = graph.nodes[id].type.shape.count
            averagedState.append((graph.leafName(id)!, count, offset))
            offset += count
        }
        tail = offset
        let total = offset + 2
        flat = ReducedBuffer(count: total)
        let step = Swift.max(1, bucketElements)
        buckets = stride(from: 0, to: total, by: step).map { $0 ..< Swift.min(total, $0 + step) }
    }

    private func plan(batch: Int) throws -> GradientPlan {
        if let plan = plans[batch] { return plan }
        let graph = try Self.gradientGraph(model: trainer.model, batch: batch)
        // Dropout draws differ per rank (the seed has the rank in it), as they differ per example in one process.
        let options = CompileOptions(threads: trainer.threads, seed: trainer.seed &+ UInt64(batch) &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15,
                                     disabledPasses: trainer.disabledPasses)
        let program = try Executable(graph: graph, store: trainer.store, options: options)
        if parameters.isEmpty { layOut(graph) }
        // Per bucket, the gradient pieces it holds and the kernel after which the last is final.
        var pieces = [[GradientPlan.Piece]](repeating: [], count: buckets.count)
        var complete = [Int](repeating: -1, count: buckets.count)
        for (name, count, offset) in parameters {
            let source = try program.outputPointer("grad.\(name)")
            let kernel = try program.completionKernel(ofOutput: "grad.\(name)")
            for (b, bucket) in buckets.enumerated() {
                let lower = Swift.max(bucket.lowerBound, offset), upper = Swift.min(bucket.upperBound, offset + count)
                guard lower < upper else { continue }
                pieces[b].append(.init(source: source + (lower - offset), offset: lower, count: upper - lower))
                complete[b] = Swift.max(complete[b], kernel)
            }
        }
        // Buckets are reduced in order: one waits for every earlier one, so its checkpoint is the
        // latest so far. Buckets that reach the state, loss and count are posted after the program
        // (the state is written by its updates, after the last kernel).
        var checkpoints: [Int] = []
        var latest = -1
        for (b, bucket) in buckets.enumerated() where bucket.upperBound <= gradientEnd {
            latest = Swift.max(latest, complete[b])
            checkpoints.append(latest)
        }
        let plan = GradientPlan(program: program, pieces: pieces, checkpoints: checkpoints)
        plans[batch] = plan
        return plan
    }

    /// Compiles the programs and gives every rank rank 0's parameters and optimizer state (as
    /// DistributedDataParallel does at construction), so that ranks agree even when they were
    /// initialised or resumed differently. Called by the first step; collective.
    public func synchronize(batch: Int = 1) throws {
        if synchronized { return }
        _ = try plan(batch: Swift.max(1, batch))
        updateProgram = try Executable(graph: Self.updateGraph(parameters: shapes, optimizer: trainer.optimizer), store: trainer.store,
                                       options: CompileOptions(threads: trainer.threads, seed: trainer.seed))
        let names = trainer.store.names
        let listing = Array(names.map { "\($0):\(trainer.store[$0]!.type.shape.count)" }.joined(separator: ",").utf8)
            // Overlapped steps reduce with non-blocking collectives, the others with blocking ones,
            // which MPI does not match with each other: every rank must choose the same.
            + Array("buckets \(bucketElements) separate waiting \(separateWaiting) overlap \(overlapsReduction)".utf8)
        let digest = Self.fnv1a(listing)
        let all = try communicator.allGather(withUnsafeBytes(of: digest.littleEndian) { Array($0) })
        guard all.allSatisfy({ $0 == all[0] }) else {
            throw KilnError.feed("rank \(rank): the ranks hold different sets of parameters, or differ in bucket size or overlap (different models or options, or MPI thread levels?)")
        }
        for name in names {
            let tensor = trainer.store[name]!
            try communicator.broadcast(UnsafeMutableRawBufferPointer(start: tensor.pointer, count: tensor.type.shape.count * 4), root: 0)
        }
        statistics.bytesPerStep = (tail + 2) * 4
        statistics.bucketsPerStep = buckets.count
        if overlapsReduction {
            worker = ReductionWorker(flat: flat!, buckets: buckets, communicator: communicator)
        }
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
        let flat = self.flat!.pointer
        let start = Date()
        var plan: GradientPlan?
        var loss: Float = 0
        if mine.isEmpty {
            flat.update(repeating: 0, count: tail + 2)
            worker?.begin(plan: nil, share: 0)
        } else {
            let shardIndices = indices[(indices.startIndex + mine.lowerBound) ..< (indices.startIndex + mine.upperBound)]
            let batch = augmentation.apply(to: data, indices: shardIndices, seed: seed, epoch: epoch)
            let current = try self.plan(batch: batch.count)
            plan = current
            let program = current.program
            try batch.fillBatch(indices: Array(0..<batch.count)[...], into: program.inputPointer("x").assumingMemoryBound(to: Float.self),
                                labels: program.inputPointer("labels").assumingMemoryBound(to: Int32.self))
            if let worker {
                worker.begin(plan: current, share: share)
                // Each bucket goes to the communication thread once backward has finished it.
                try current.checkpoints.withUnsafeBufferPointer { checkpoints in
                    try program.run(checkpoints: checkpoints) { worker.post(upTo: $0 + 1) }
                }
            } else {
                try program.run()
            }
            loss = try program.outputPointer("loss").pointee
            // The state, loss and count (the last bucket or buckets, not yet posted).
            for (name, count, offset) in averagedState {
                let s = trainer.store[name]!.pointer
                for i in 0..<count { flat[offset + i] = s[i] * share }
            }
            let classes = trainer.model.classes
            let logits = try program.outputPointer("logits")
            var correct = 0
            for row in 0..<batch.count {
                var predicted = 0
                for k in 1..<classes where logits[row * classes + k] > logits[row * classes + predicted] { predicted = k }
                if predicted == Int(batch.labels[row]) { correct += 1 }
            }
            flat[tail] = loss * share
            flat[tail + 1] = Float(correct)
        }
        var reduceStart = Date()
        statistics.computeSeconds += reduceStart.timeIntervalSince(start)
        if let worker {
            statistics.bytesReducedDuringBackward += worker.finishedElements * 4
            let communication = try worker.finishStep()
            statistics.communicationSeconds += communication
            statistics.overlappedSteps += 1
        } else {
            if let plan {
                for pieces in plan.pieces { for piece in pieces { piece.pack(into: flat, share: share) } }
            }
            if separateWaiting {
                try communicator.barrier()
                let now = Date()
                statistics.waitSeconds += now.timeIntervalSince(reduceStart)
                reduceStart = now
            }
            for bucket in buckets {
                try communicator.allReduceSum(UnsafeMutableBufferPointer(start: flat + bucket.lowerBound, count: bucket.count))
            }
        }
        let updateStart = Date()
        statistics.seconds += updateStart.timeIntervalSince(reduceStart)
        statistics.stepSeconds.append(updateStart.timeIntervalSince(reduceStart))
        if !mine.isEmpty, !loss.isFinite {
            throw KilnError.feed("\(trainer.model.name): rank \(rank): the training loss became \(loss.isNaN ? "NaN" : "\(loss)") in step \(plan!.program.step - 1); training stopped and nothing was saved")
        }
        let update = updateProgram!
        for (name, count, offset) in parameters {
            try update.inputPointer("grad.\(name)").assumingMemoryBound(to: Float.self).update(from: flat + offset, count: count)
        }
        for (name, count, offset) in averagedState {
            trainer.store[name]!.pointer.update(from: flat + offset, count: count)
        }
        try update.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(learningRate)
        try update.run()
        statistics.updateSeconds += Date().timeIntervalSince(updateStart)
        statistics.steps += 1
        return (Double(flat[tail]), Int(flat[tail + 1].rounded()))
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

/// The buffer every step all-reduces (allocated once; the main and communication threads write
/// disjoint parts of it).
final class ReducedBuffer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: Swift.max(count, 1))
        pointer.initialize(repeating: 0, count: Swift.max(count, 1))
    }
    deinit { pointer.deallocate() }
}

/// One gradient program and how its outputs fill the buckets.
final class GradientPlan: @unchecked Sendable {
    struct Piece {
        /// Part of a `grad.NAME` output, and where it goes in the reduced buffer.
        let source: UnsafePointer<Float>
        let offset: Int
        let count: Int
        /// Writes the piece scaled by the rank's share of the batch.
        func pack(into flat: UnsafeMutablePointer<Float>, share: Float) {
            for i in 0..<count { flat[offset + i] = source[i] * share }
        }
    }
    let program: Executable
    /// Per bucket, its gradient pieces.
    let pieces: [[Piece]]
    /// For bucket b (those before the state, loss and count), the kernel after which it and every
    /// earlier bucket are complete: non-decreasing, for `Executable.run(checkpoints:reached:)`.
    let checkpoints: [Int]
    init(program: Executable, pieces: [[Piece]], checkpoints: [Int]) {
        self.program = program; self.pieces = pieces; self.checkpoints = checkpoints
    }
}

/// The communication thread: packs and reduces buckets in order, each once it has been posted.
/// The step's thread posts buckets as backward finishes them and waits for all before the update;
/// it makes no communicator call meanwhile, so calls never come from two threads at once.
final class ReductionWorker: @unchecked Sendable {
    private let condition = NSCondition()
    private let flat: ReducedBuffer
    private let buckets: [Range<Int>]
    private let communicator: Communicator
    private var posted = 0
    private var finished = 0
    private var stopping = false
    private var failure: Error?
    private var plan: GradientPlan?
    private var share: Float = 0
    private var seconds = 0.0
    /// Set while the step's thread reduces the last buckets itself.
    private var callerReduces = false

    init(flat: ReducedBuffer, buckets: [Range<Int>], communicator: Communicator) {
        self.flat = flat
        self.buckets = buckets
        self.communicator = communicator
        let thread = Thread { [self] in loop() }
        thread.name = "kiln-allreduce"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Starts a step: nothing posted yet; pieces from `plan` (nil: the buffer is already filled).
    func begin(plan: GradientPlan?, share: Float) {
        condition.lock()
        precondition(posted == finished, "a step began while buckets were still being reduced")
        posted = 0; finished = 0; failure = nil; seconds = 0
        self.plan = plan; self.share = share
        condition.unlock()
    }

    /// Lets the thread reduce buckets 0..<count (allocates nothing; called between kernels).
    func post(upTo count: Int) {
        condition.lock()
        if count > posted { posted = count; condition.broadcast() }
        condition.unlock()
    }

    /// Elements of the buckets already reduced this step.
    var finishedElements: Int {
        condition.lock(); defer { condition.unlock() }
        return buckets[..<finished].reduce(0) { $0 + $1.count }
    }

    /// Ends the step once backward is over: when the thread has reduced every posted bucket, the
    /// caller reduces the rest itself (handing them over would add a thread wake-up to the step);
    /// else it posts them and waits. Returns the thread's seconds on this step's buckets. The
    /// caller uses the same non-blocking calls as the thread: MPI never matches a blocking
    /// collective on one rank with a non-blocking one on another (they deadlock).
    func finishStep() throws -> Double {
        condition.lock()
        if posted == finished && failure == nil {
            callerReduces = true
            let first = finished, plan = self.plan, share = self.share
            condition.unlock()
            var error: Error?
            do {
                let flat = self.flat.pointer
                for b in first..<buckets.count {
                    if let plan { for piece in plan.pieces[b] { piece.pack(into: flat, share: share) } }
                    try communicator.backgroundAllReduceSum(UnsafeMutableBufferPointer(start: flat + buckets[b].lowerBound, count: buckets[b].count))
                }
            } catch let thrown { error = thrown }
            condition.lock()
            callerReduces = false
            posted = buckets.count
            finished = buckets.count
            if let error { failure = error }
        } else {
            if buckets.count > posted { posted = buckets.count; condition.broadcast() }
            while finished < buckets.count { condition.wait() }
        }
        let failure = self.failure, seconds = self.seconds
        condition.unlock()
        if let failure { throw failure }
        return seconds
    }

    func stop() {
        condition.lock(); stopping = true; condition.broadcast(); condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while (posted <= finished || callerReduces) && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let b = finished, plan = self.plan, share = self.share, failed = failure != nil
            condition.unlock()
            let start = Date()
            var error: Error?
            if !failed {
                do {
                    let flat = self.flat.pointer
                    if let plan { for piece in plan.pieces[b] { piece.pack(into: flat, share: share) } }
                    try communicator.backgroundAllReduceSum(UnsafeMutableBufferPointer(start: flat + buckets[b].lowerBound, count: buckets[b].count))
                } catch let thrown { error = thrown }
            }
            let elapsed = Date().timeIntervalSince(start)
            condition.lock()
            finished += 1
            seconds += elapsed
            if let error, failure == nil { failure = error }
            condition.broadcast()
            condition.unlock()
        }
    }
}
