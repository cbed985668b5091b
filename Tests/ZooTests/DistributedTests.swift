import Foundation
import Testing
import Kiln

private final class ResultsBox: @unchecked Sendable {
    var results: [Result<[String: [Float]], Error>?]
    init(size: Int) { results = Array(repeating: nil, count: size) }
}

/// Data-parallel training (issue 18) with ranks as threads of this process (`LocalGroup`), so the
/// arithmetic is checked by `swift test` without MPI. The same checks over Open MPI processes run
/// under mpirun in scripts/distributed-check.sh (from .ci/run).
@Suite("Data-parallel training")
struct DistributedTests {
    /// Runs `body` once per rank, each on its own thread, and returns the results in rank order.
    func onRanks(_ size: Int, _ body: @escaping @Sendable (Communicator) throws -> [String: [Float]]) throws -> [[String: [Float]]] {
        let group = LocalGroup(size: size)
        let communicators = group.communicators
        let box = ResultsBox(size: size)
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let all = communicators
        for rank in 0..<size {
            let thread = Thread {
                box.results[rank] = Result { try body(all[rank]) }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<size { done.wait() }
        return try box.results.map { try $0!.get() }
    }

    static func values(_ trainer: ClassifierTrainer) -> [String: [Float]] {
        var result: [String: [Float]] = [:]
        for name in trainer.store.names { result[name] = trainer.store[name]!.values }
        return result
    }

    /// Largest |a − b| over a parameter, relative to the largest |b|.
    static func worstRelative(_ a: [String: [Float]], _ b: [String: [Float]], names: [String]) -> Double {
        names.map { name in
            let x = a[name]!, y = b[name]!
            let scale = Double(y.map { abs($0) }.max() ?? 0)
            let difference = Double(zip(x, y).map { abs($0 - $1) }.max() ?? 0)
            return scale > 0 ? difference / scale : difference
        }.max() ?? 0
    }

    /// Trains `epochs` epochs of `model` on ranks of a LocalGroup; returns every rank's stored values.
    func distributed(ranks: Int, model: @escaping @Sendable () -> ClassifierModel, data: ImageDataset, batch: Int,
                     epochs: Int, bucket: Int = 4096, overlap: Bool = true) throws -> [[String: [Float]]] {
        try onRanks(ranks) { communicator in
            let trainer = ClassifierTrainer(model: model(), optimizer: .sgd(momentum: 0.9), seed: 3, threads: 1)
            let distributed = DistributedTrainer(trainer: trainer, communicator: communicator)
            distributed.bucketElements = bucket
            distributed.overlap = overlap
            try distributed.fit(data, options: FitOptions(epochs: epochs, batchSize: batch, learningRate: 0.05, seed: 3))
            guard distributed.overlapping == overlap else { throw KilnError.feed("overlap \(overlap) asked, \(distributed.overlapping) used") }
            return Self.values(trainer)
        }
    }

    func oneProcess(model: ClassifierModel, data: ImageDataset, batch: Int, epochs: Int) throws -> [String: [Float]] {
        let trainer = ClassifierTrainer(model: model, optimizer: .sgd(momentum: 0.9), seed: 3, threads: 1)
        try trainer.fit(data, options: FitOptions(epochs: epochs, batchSize: batch, learningRate: 0.05, seed: 3))
        return Self.values(trainer)
    }

    // 8 steps here (debug build); the 20-step check over MPI processes is scripts/distributed-check.sh's.
    @Test("2 ranks × 32 match 1 process × 64 within 1e-5 after 8 LeNet-5 steps; ranks byte-identical; runs repeat bytes")
    func lenetEquivalence() throws {
        let data = Glyphs.make(count: 256, seed: 4)
        let model: @Sendable () -> ClassifierModel = { lenet5(classes: 3) }
        let ranks = try distributed(ranks: 2, model: model, data: data, batch: 64, epochs: 2)
        let again = try distributed(ranks: 2, model: model, data: data, batch: 64, epochs: 2)
        let reference = try oneProcess(model: model(), data: data, batch: 64, epochs: 2)
        let trainer = ClassifierTrainer(model: model(), optimizer: .sgd(momentum: 0.9), seed: 3, threads: 1)
        try trainer.initializeParameters()
        let names = trainer.store.parameterNames
        #expect(ranks[0] == ranks[1], "the two ranks' parameters differ")
        #expect(ranks[0] == again[0], "a repeated run gave other bytes")
        let worst = Self.worstRelative(ranks[0], reference, names: names)
        #expect(worst <= 1e-5, "2 ranks differ from 1 process by \(worst)")
        // The comparison can fail: training moved the parameters far more than the tolerance.
        #expect(Self.worstRelative(Self.values(trainer), reference, names: names) > 1e-3)
    }

    // Overlap changes when each bucket is reduced and on which thread, never what is added in which order.
    @Test("reducing buckets during backward (overlap) gives the bytes of reducing after it: 2 and 3 ranks, many buckets, batch norm")
    func overlapSameBytes() throws {
        let data = Glyphs.make(count: 130, seed: 9)
        let model: @Sendable () -> ClassifierModel = { lenet5(classes: 3) }
        for ranks in [2, 3] {
            let overlapped = try distributed(ranks: ranks, model: model, data: data, batch: 64, epochs: 1, bucket: 2000)
            let after = try distributed(ranks: ranks, model: model, data: data, batch: 64, epochs: 1, bucket: 2000, overlap: false)
            let oneBucket = try distributed(ranks: ranks, model: model, data: data, batch: 64, epochs: 1, bucket: 1 << 22)
            #expect(overlapped[0] == after[0] && overlapped[0] == oneBucket[0], "\(ranks) ranks: overlap or bucket size changed the bytes")
            #expect(overlapped.allSatisfy { $0 == overlapped[0] }, "\(ranks) ranks: ranks differ")
        }
    }

    @Test("3 ranks with uneven shards and an empty one (last batch of 2) match 1 process; bucket edges anywhere")
    func unevenShards() throws {
        let data = Glyphs.make(count: 130, seed: 6)
        let model: @Sendable () -> ClassifierModel = { glyphCNN() }
        let ranks = try distributed(ranks: 3, model: model, data: data, batch: 64, epochs: 1, bucket: 1000)
        let reference = try oneProcess(model: model(), data: data, batch: 64, epochs: 1)
        #expect(ranks[0] == ranks[1] && ranks[0] == ranks[2], "ranks' parameters differ")
        let worst = Self.worstRelative(ranks[0], reference, names: Array(reference.keys))
        #expect(worst <= 1e-5, "3 ranks differ from 1 process by \(worst)")
        #expect(DistributedTrainer.shard(count: 2, rank: 0, size: 3).isEmpty)
        #expect((0..<4).map { DistributedTrainer.shard(count: 63, rank: $0, size: 4).count } == [15, 16, 16, 16])
    }

    // Each rank normalises with its shard's statistics (as DistributedDataParallel without SyncBatchNorm),
    // so after the first step the parameters, and then the statistics, differ from 1 process's.
    @Test("batch norm: running statistics averaged, so ranks stay byte-identical; after one step the running mean is 1 process's")
    func batchNormReplicas() throws {
        let data = Glyphs.make(count: 64, seed: 8)
        let model: @Sendable () -> ClassifierModel = {
            ClassifierModel(name: "bn-cnn", summary: "conv, batch norm, dense", inputShape: [1, 28, 28], classes: 3) { images, training in
                let g = images.builder
                let h = maxPool(relu(g.batchNorm(g.conv2d(images, outChannels: 4, kernel: 3, padding: 1, name: "conv"),
                                                 name: "bn", training: training)), 4)
                return g.dense(h.flatten(), 3, name: "fc")
            }
        }
        let ranks = try distributed(ranks: 2, model: model, data: data, batch: 64, epochs: 1)
        let reference = try oneProcess(model: model(), data: data, batch: 64, epochs: 1)
        let longer = try distributed(ranks: 2, model: model, data: data, batch: 32, epochs: 3)
        #expect(ranks[0] == ranks[1] && longer[0] == longer[1], "the ranks' parameters or statistics differ")
        #expect(longer[0]["bn.running_var"] != longer[0]["bn.running_var"].map { $0.map { _ in Float(1) } }, "statistics never updated")
        let worst = Self.worstRelative(ranks[0], reference, names: ["bn.running_mean"])
        #expect(worst <= 1e-5, "running mean differs from 1 process by \(worst): \(ranks[0]["bn.running_mean"]!) vs \(reference["bn.running_mean"]!); var \(ranks[0]["bn.running_var"]!) vs \(reference["bn.running_var"]!)")
    }

    @Test("a distributed run in a build without MPI says so in one line, with the install command",
          .enabled(if: !MPIWorld.isAvailable, "this build has MPI: scripts/distributed-check.sh runs the MPI checks under mpirun"))
    func missingMPI() throws {
        #expect(throws: (any Error).self) { _ = try MPIWorld.communicator() }
        #expect(MPIWorld.missingMessage.contains("apt-get install openmpi-bin libopenmpi-dev"))
        #expect(!MPIWorld.missingMessage.contains("\n"))
    }
}
