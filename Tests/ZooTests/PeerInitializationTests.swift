import Foundation
import Testing
import KilnGraph
@testable import KilnZoo
@testable import KilnBench

/// The fixtures' `init.*` tensors are the peers' seed-0 initial weights: Kiln must draw the same bits.
@Suite("Peer initial weights")
struct PeerInitializationTests {
    @Test("lenet5, mlp and vae initial weights equal the fixtures' bit for bit",
          arguments: [("lenet5", "lenet5-sgdm"), ("mlp", "mlp-sgd"), ("vae", "vae-adam")])
    func matchesFixtures(_ model: String, _ fixture: String) throws {
        let tensors = try Safetensors.read(path: "\(fixtureDirectory)/\(fixture).safetensors").tensors
        let parameters = try #require(PeerInitialization.parameters(model: model, seed: 0))
        for (name, values) in parameters {
            let reference = try #require(tensors["init.\(name)"], "fixture lacks init.\(name)").floats()
            #expect(values == reference, "\(model) \(name)")
        }
        #expect(parameters.count == tensors.keys.filter { $0.hasPrefix("init.") }.count)
    }

    /// No fixture holds the MNIST example CNN (1.2 M weights): its draws are checked at both ends of
    /// every tensor against numpy's (`bench/common.py`'s `mnist_cnn_weights(0)`, printed with numpy
    /// 2.4), and its names and sizes against the zoo model's parameters.
    @Test("mnist-cnn initial weights are numpy's draws, in the zoo model's names and sizes")
    func mnistCNNMatchesNumpy() throws {
        let parameters = try #require(PeerInitialization.parameters(model: "mnist-cnn", seed: 0))
        let numpy: [(String, Int, [Float], Float)] = [
            ("conv1.weight", 288, [0.2768380343914032, -0.06972616165876389], -0.12586291134357452),
            ("conv1.bias", 32, [0.04545365646481514, -0.0758708044886589], -0.1218670979142189),
            ("conv2.weight", 18432, [0.0561261847615242, 0.028377410024404526], 0.048387281596660614),
            ("conv2.bias", 64, [0.004747828934341669, 0.01695333607494831], -0.033969905227422714),
            ("fc1.weight", 1_179_648, [-0.006866367068141699, 0.00035484478576108813], 0.005594462156295776),
            ("fc1.bias", 128, [-0.0010222631972283125, -0.0020358674228191376], 0.006775259040296078),
            ("fc2.weight", 1280, [0.07588814198970795, -0.028486449271440506], -0.07075747102499008),
            ("fc2.bias", 10, [-0.04566989094018936, 0.0646342933177948], -0.00283669400960207),
        ]
        #expect(parameters.map(\.name) == numpy.map(\.0))
        for ((name, values), (_, count, first, last)) in zip(parameters, numpy) {
            #expect(values.count == count, "\(name)")
            #expect(Array(values.prefix(2)) == first, "\(name)")
            #expect(values.last == last, "\(name)")
        }
        let trainer = ClassifierTrainer(model: try Zoo.classifier("mnist-cnn"), optimizer: .sgd(momentum: 0.9), seed: 0, threads: 1)
        try trainer.initializeParameters()
        #expect(trainer.store.parameterNames == parameters.map(\.name).sorted())
        for (name, values) in parameters {
            #expect(trainer.store[name]?.values.count == values.count, "\(name)")
        }
    }
}
