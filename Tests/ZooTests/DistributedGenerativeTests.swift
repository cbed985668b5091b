import Foundation
import Testing
import Kiln

private final class ValuesBox: @unchecked Sendable {
    var results: [Result<[String: [Float]], Error>?]
    init(size: Int) { results = Array(repeating: nil, count: size) }
}

/// Data-parallel training of generative models (`DistributedGenerativeTrainer`) with ranks as
/// threads (`LocalGroup`), so `swift test` checks it without MPI; scripts/distributed-check.sh
/// runs the same comparison over Open MPI processes.
@Suite("Data-parallel generative training")
struct DistributedGenerativeTests {
    static func images(count: Int, seed: UInt64) -> ImageDataset {
        let random = CounterRandom(seed: seed)
        let bytes = (0..<(count * 64)).map { UInt8(255 * random.uniform(stream: 0, step: 0, index: $0)) }
        return ImageDataset(images: bytes, labels: (0..<count).map { Int32($0 % 3) }, count: count, channels: 1, height: 8, width: 8,
                            classNames: ["a", "b", "c"])
    }

    static func values(_ trainer: GenerativeTrainer) -> [String: [Float]] {
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

    /// `ranks` threads train `epochs` epochs; every rank's stored values.
    func distributed(ranks: Int, model: @escaping @Sendable () -> GenerativeModel, data: ImageDataset, batch: Int, epochs: Int,
                     overlap: Bool = true) throws -> [[String: [Float]]] {
        let group = LocalGroup(size: ranks)
        nonisolated(unsafe) let communicators = group.communicators
        let box = ValuesBox(size: ranks)
        let done = DispatchSemaphore(value: 0)
        for rank in 0..<ranks {
            let thread = Thread {
                box.results[rank] = Result {
                    let trainer = GenerativeTrainer(model: model(), optimizer: .sgd(momentum: 0.9), seed: 5, threads: 1)
                    let distributed = try DistributedGenerativeTrainer(trainer: trainer, communicator: communicators[rank])
                    distributed.bucketElements = 300
                    distributed.overlap = overlap
                    for epoch in 0..<epochs {
                        _ = try distributed.trainEpoch(data, order: epochOrder(count: data.count, seed: 5, epoch: epoch), batchSize: batch,
                                                   learningRate: { _ in 0.05 })
                    }
                    return Self.values(trainer)
                }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<ranks { done.wait() }
        return try box.results.map { try $0!.get() }
    }

    /// One process fed the distributed run's noise.
    func oneProcess(model: GenerativeModel, data: ImageDataset, batch: Int, epochs: Int) throws -> (initial: [String: [Float]], final: [String: [Float]], names: [String]) {
        let trainer = GenerativeTrainer(model: model, optimizer: .sgd(momentum: 0.9), seed: 5, threads: 1)
        trainer.noiseInput = true
        try trainer.initializeParameters()
        let initial = Self.values(trainer)
        for epoch in 0..<epochs {
            let order = epochOrder(count: data.count, seed: 5, epoch: epoch)
            for range in TrainingCore.batches(count: order.count, batchSize: batch, foldSingleton: true) {
                let noise = DistributedGenerativeTrainer.noise(model: model, seed: 5, step: trainer.stepsTaken, count: range.count)
                try trainer.trainStep(data, indices: order[range], learningRate: 0.05, noise: noise)
            }
        }
        return (initial, Self.values(trainer), trainer.store.parameterNames)
    }

    // 25 images in batches of 10 (10, 10, 5) over 3 ranks: shards of 3, 3, 4 and 1, 2, 2.
    @Test("VAE and conditional ddpm: 3 ranks with uneven shards match 1 process fed the same noise within 1e-5; ranks byte-identical; overlap changes no byte",
          arguments: ["vae", "ddpm"])
    func equivalence(_ name: String) throws {
        let data = Self.images(count: 25, seed: 2)
        let isVAE = name == "vae"
        let model: @Sendable () -> GenerativeModel = {
            isVAE ? vae(imageShape: [1, 8, 8], hidden: 24, latent: 4) : ddpm(imageShape: [1, 8, 8], hidden: 24, embedding: 8, timesteps: 20, classes: 3)
        }
        let ranks = try distributed(ranks: 3, model: model, data: data, batch: 10, epochs: 2)
        let after = try distributed(ranks: 3, model: model, data: data, batch: 10, epochs: 2, overlap: false)
        let reference = try oneProcess(model: model(), data: data, batch: 10, epochs: 2)
        #expect(ranks[0] == ranks[1] && ranks[0] == ranks[2], "\(name): ranks differ")
        #expect(ranks[0] == after[0], "\(name): overlap changed the bytes")
        let worst = Self.worstRelative(ranks[0], reference.final, names: reference.names)
        #expect(worst <= 1e-5, "\(name): 3 ranks differ from 1 process by \(worst)")
        // The comparison can fail: training moved the parameters far more than the tolerance.
        #expect(Self.worstRelative(reference.initial, reference.final, names: reference.names) > 1e-3)
    }

    @Test("a GAN is refused in one line")
    func ganRefused() throws {
        let trainer = GenerativeTrainer(model: gan(imageShape: [1, 8, 8], latent: 4), threads: 1)
        #expect(throws: KilnError.self) { try DistributedGenerativeTrainer(trainer: trainer, communicator: SingleProcess()) }
    }
}
