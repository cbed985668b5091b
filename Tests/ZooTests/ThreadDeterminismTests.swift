import Testing
import KilnGraph
import KilnRuntime
@testable import KilnZoo

/// Kernels chunk work by problem size, never by thread count, and reduce chunks in a fixed
/// order, so a training run is bit-identical whatever the number of threads.
@Suite("Results do not depend on the thread count")
struct ThreadDeterminismTests {
    @Test("a few training steps of LeNet-5 and the dropout MLP give the same parameter bytes on 1, 2 and 3 threads",
          arguments: ["lenet5", "mlp-dropout"])
    func sameBytes(_ name: String) throws {
        let data = Glyphs.make(count: 192, seed: 5)
        var results: [[String: [UInt32]]] = []
        for threads in [1, 2, 3] {
            let trainer = ClassifierTrainer(model: try Zoo.classifier(name, classes: 3), optimizer: .sgd(momentum: 0.9),
                                            seed: 9, threads: threads)
            let order = epochOrder(count: data.count, seed: 9, epoch: 0)
            _ = try trainer.trainEpoch(data, order: order, batchSize: 64, learningRate: 0.05)
            var bytes: [String: [UInt32]] = [:]
            for parameter in trainer.store.names { bytes[parameter] = trainer.store[parameter]!.values.map(\.bitPattern) }
            results.append(bytes)
        }
        #expect(results[0] == results[1], "\(name): 1 and 2 threads differ")
        #expect(results[0] == results[2], "\(name): 1 and 3 threads differ")
        #expect(!results[0].isEmpty)
    }
}
