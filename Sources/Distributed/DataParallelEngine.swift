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
    /// With overlap: seconds the step's thread spent during backward packing buckets and
    /// progressing their reduction (starting collectives, testing them, summing chunks), summed over steps.
    public var communicationSeconds = 0.0
    /// With overlap: bytes whose reduction had finished when backward ended, summed over steps.
    public var bytesReducedDuringBackward = 0
}

/// The model-independent part of data-parallel training (`DistributedTrainer` for classifiers,
/// `DistributedGenerativeTrainer` for VAEs and diffusion models): a gradient program per shard
/// size (inputs filled by the caller; outputs `loss` and `grad.NAME` per parameter; updates only
/// state such as batch-norm running statistics), the bucketed rank-ordered all-reduce of the
/// share-weighted gradients, averaged state and the caller's `extras` summed values (loss first),
/// and an update program that applies the optimizer to the reduced gradients.
final class DataParallelEngine {
    let communicator: Communicator
    let store: ParameterStore
    let optimizer: Optimizer
    let threads: Int
    let seed: UInt64
    /// Read when a program is compiled.
    let disabledPasses: () -> Set<String>
    /// The model's name, for errors.
    let name: String
    /// Summed values after the state: `step`'s `finish` returns them (loss times share first).
    let extras: Int
    let makeGraph: (Int) throws -> Graph
    var bucketElements = 1 << 20
    var overlap = true
    var verifyReplicas = true
    var separateWaiting = false
    var statistics = ReductionStatistics()
    var overlapping: Bool { reduction != nil }
    private var overlapsReduction: Bool { overlap && !separateWaiting && size > 1 }

    private var plans: [Int: GradientPlan] = [:]
    private var updateProgram: Executable?
    /// Parameters in graph order (the update program's), with their element counts and the
    /// offset of their gradient in the reduced buffer (reverse graph order: last layers first).
    private var parameters: [(name: String, count: Int, offset: Int)] = []
    private var shapes: [(name: String, shape: Shape)] = []
    /// State the gradient program updates (batch-norm running statistics), after the gradients.
    private var averagedState: [(name: String, count: Int, offset: Int)] = []
    /// Where the gradients end (the state starts), and where the extras go (after the state);
    /// the buffer ends after them.
    private var gradientEnd = 0
    private var tail = 0
    private var flat: ReducedBuffer?
    private var buckets: [Range<Int>] = []
    private var reduction: BucketReduction?
    private var synchronized = false

    var rank: Int { communicator.rank }
    var size: Int { communicator.size }

    init(communicator: Communicator, store: ParameterStore, optimizer: Optimizer, threads: Int, seed: UInt64,
         disabledPasses: @escaping () -> Set<String>, name: String, extras: Int, makeGraph: @escaping (Int) throws -> Graph) {
        self.communicator = communicator; self.store = store; self.optimizer = optimizer; self.threads = threads
        self.seed = seed; self.disabledPasses = disabledPasses; self.name = name; self.extras = extras; self.makeGraph = makeGraph
    }

    /// The optimizer step alone: inputs `lr` and `grad.NAME`; updates the parameters and the optimizer's state.
    static func updateGraph(parameters: [(name: String, shape: Shape)], optimizer: Optimizer) throws -> Graph {
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
        let total = offset + extras
        flat = ReducedBuffer(count: total)
        let step = Swift.max(1, bucketElements)
        buckets = stride(from: 0, to: total, by: step).map { $0 ..< Swift.min(total, $0 + step) }
    }

    func plan(batch: Int) throws -> GradientPlan {
        if let plan = plans[batch] { return plan }
        let graph = try makeGraph(batch)
        // Dropout draws differ per rank (the seed has the rank in it), as they differ per example in one process.
        let options = CompileOptions(threads: threads, seed: seed &+ UInt64(batch) &+ UInt64(rank) &* 0x9E37_79B9_7F4A_7C15,
                                     disabledPasses: disabledPasses())
        let program = try Executable(graph: graph, store: store, options: options)
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
        var ready = [Int](repeating: 0, count: program.kernelCount)
        var latest = -1, count = 0
        for (b, bucket) in buckets.enumerated() where bucket.upperBound <= gradientEnd {
            latest = Swift.max(latest, complete[b])
            count = b + 1
            for k in Swift.max(latest, 0)..<ready.count { ready[k] = count }
        }
        let plan = GradientPlan(program: program, pieces: pieces, readyAfterKernel: ready)
        plans[batch] = plan
        return plan
    }

    /// Compiles the programs and gives every rank rank 0's parameters and optimizer state (as
    /// DistributedDataParallel does at construction), so that ranks agree even when they were
    /// initialised or resumed differently. Called by the first step; collective.
    func synchronize(batch: Int = 1) throws {
        if synchronized { return }
        _ = try plan(batch: Swift.max(1, batch))
        updateProgram = try Executable(graph: Self.updateGraph(parameters: shapes, optimizer: optimizer), store: store,
                                       options: CompileOptions(threads: threads, seed: seed))
        let names = store.names
        let listing = Array(names.map { "\($0):\(store[$0]!.type.shape.count)" }.joined(separator: ",").utf8)
            // Overlapped steps reduce with non-blocking collectives, the others with blocking ones,
            // which MPI does not match with each other: every rank must choose the same.
            + Array("buckets \(bucketElements) separate waiting \(separateWaiting) overlap \(overlapsReduction)".utf8)
        let digest = Self.fnv1a(listing)
        let all = try communicator.allGather(withUnsafeBytes(of: digest.littleEndian) { Array($0) })
        guard all.allSatisfy({ $0 == all[0] }) else {
            throw KilnError.feed("rank \(rank): the ranks hold different sets of parameters, or differ in bucket size or overlap (different models or options, or MPI thread levels?)")
        }
        for name in names {
            let tensor = store[name]!
            try communicator.broadcast(UnsafeMutableRawBufferPointer(start: tensor.pointer, count: tensor.type.shape.count * 4), root: 0)
        }
        statistics.bytesPerStep = (tail + extras) * 4
        statistics.bucketsPerStep = buckets.count
        if overlapsReduction {
            reduction = communicator.makeBucketReduction(buffer: flat!.pointer, buckets: buckets)
        }
        synchronized = true
    }

    /// One optimizer step of which this rank computes `count` examples, `share` (= count / the
    /// global batch) of the batch. `fill` writes the program's inputs; `finish` returns this rank's
    /// `extras` values (after the program ran; loss times share first), which every rank gets
    /// back summed over ranks. `count` 0: this rank adds zeros.
    func step(count: Int, share: Float, learningRate: Double, fill: (Executable) throws -> Void,
              finish: (Executable) throws -> [Float]) throws -> [Float] {
        try synchronize(batch: Swift.max(count, 1))
        let flat = self.flat!.pointer
        let start = Date()
        var plan: GradientPlan?
        var loss: Float = 0
        var packed = 0
        var progressSeconds = 0.0
        reduction?.begin()
        if count == 0 {
            flat.update(repeating: 0, count: tail + extras)
        } else {
            let current = try self.plan(batch: count)
            plan = current
            let program = current.program
            try fill(program)
            if let reduction {
                // After every kernel: pack and post the buckets backward has finished, or test the
                // one in flight. An error is kept and thrown after the kernels (the hook cannot throw).
                var failure: Error?
                try current.everyKernel.withUnsafeBufferPointer { kernels in
                    try program.run(checkpoints: kernels) { kernel in
                        guard failure == nil else { return }
                        let tick = DispatchTime.now().uptimeNanoseconds
                        do {
                            let ready = current.readyAfterKernel[kernel]
                            if ready > packed {
                                for b in packed..<ready { for piece in current.pieces[b] { piece.pack(into: flat, share: share) } }
                                packed = ready
                                try reduction.post(upTo: ready)
                            } else if ready > 0 {
                                try reduction.progress()
                            }
                        } catch { failure = error }
                        progressSeconds += Double(DispatchTime.now().uptimeNanoseconds - tick) / 1e9
                    }
                }
                if let failure { throw failure }
            } else {
                try program.run()
            }
            loss = try program.outputPointer("loss").pointee
            // The state, loss and count (the last bucket or buckets, not yet posted).
            for (name, count, offset) in averagedState {
                let s = store[name]!.pointer
                for i in 0..<count { flat[offset + i] = s[i] * share }
            }
            let values = try finish(program)
            precondition(values.count == extras, "finish returned \(values.count) values, not \(extras)")
            for (i, v) in values.enumerated() { flat[tail + i] = v }
        }
        var reduceStart = Date()
        statistics.computeSeconds += reduceStart.timeIntervalSince(start)
        if let reduction {
            statistics.bytesReducedDuringBackward += buckets[..<reduction.finishedBuckets].reduce(0) { $0 + $1.count } * 4
            if let plan {
                for b in packed..<buckets.count { for piece in plan.pieces[b] { piece.pack(into: flat, share: share) } }
            }
            try reduction.finish()
            statistics.communicationSeconds += progressSeconds
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
        if count > 0, !loss.isFinite {
            throw KilnError.feed("\(name): rank \(rank): the training loss became \(loss.isNaN ? "NaN" : "\(loss)") in step \(plan!.program.step - 1); training stopped and nothing was saved")
        }
        let update = updateProgram!
        for (name, count, offset) in parameters {
            try update.inputPointer("grad.\(name)").assumingMemoryBound(to: Float.self).update(from: flat + offset, count: count)
        }
        for (name, count, offset) in averagedState {
            store[name]!.pointer.update(from: flat + offset, count: count)
        }
        try update.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(learningRate)
        try update.run()
        statistics.updateSeconds += Date().timeIntervalSince(updateStart)
        statistics.steps += 1
        return (0..<extras).map { flat[tail + $0] }
    }

    /// A 64-bit FNV-1a digest of every stored tensor's bytes (parameters, optimizer and batch-norm state), in name order.
    func digest() -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for name in store.names {
            let tensor = store[name]!
            for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let bytes = UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.type.shape.count * 4)
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        }
        return hash
    }

    /// Throws unless every rank's parameters and state are byte-identical (compares digests).
    func checkReplicasIdentical(after when: String) throws {
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

/// The buffer every step all-reduces (allocated once).
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
    /// After kernel k, backward has finished buckets 0..<readyAfterKernel[k] (of those before the
    /// state, loss and count): non-decreasing.
    let readyAfterKernel: [Int]
    /// 0..<kernelCount, for `Executable.run(checkpoints:reached:)` (a call after every kernel).
    let everyKernel: [Int]
    init(program: Executable, pieces: [[Piece]], readyAfterKernel: [Int]) {
        self.program = program; self.pieces = pieces; self.readyAfterKernel = readyAfterKernel
        everyKernel = Array(0..<program.kernelCount)
    }
}
