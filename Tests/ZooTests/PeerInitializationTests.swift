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
}
