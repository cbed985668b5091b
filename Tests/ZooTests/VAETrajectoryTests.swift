import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

/// PyTorch's VAE trajectory (Tests/Fixtures/README.md): same initial weights, batches
/// and ε; Adam(1e-3) for 6 steps. Tolerances are the suggested ones of that README.
@Suite("The VAE matches PyTorch's Adam trajectory", .serialized)
struct VAETrajectoryTests {
    @Test("loss per step, gradients of step 0, parameters after 6 Adam steps", .enabled(if: haveTrainingImages))
    func trajectory() throws {
        let fixture = try Safetensors.read(path: "\(fixtureDirectory)/vae-adam.safetensors").tensors
        func floats(_ name: String) throws -> [Float] {
            guard let entry = fixture[name] else { throw KilnError.feed("fixture vae-adam lacks \(name)") }
            return entry.floats()
        }
        let train = try FashionMNIST.load(split: .train)
        let trainer = GenerativeTrainer(model: try Zoo.generative("vae"), seed: 0, threads: 2)
        trainer.noiseInput = true
        trainer.gradientOutputs = true
        let batch = 128, steps = 6
        let first = try trainer.vaeTrainingProgram(batch: batch)
        #expect(trainer.store.parameterNames.count == 10)
        for name in trainer.store.parameterNames { try trainer.store.set(name, try floats("init.\(name)")) }

        let indices = fixture["batch_indices"]!.int32s().map(Int.init)
        let eps = try floats("eps")
        let losses = try floats("loss")
        for t in 0..<steps {
            let result = try trainer.trainStep(train, indices: indices[(t * batch)..<((t + 1) * batch)], learningRate: 1e-3,
                                               noise: Array(eps[(t * batch * 20)..<((t + 1) * batch * 20)]))
            let loss = Float(result.main)
            #expect(abs(Double(loss - losses[t])) <= 1e-5 * abs(Double(losses[t])), "step \(t): loss \(loss), PyTorch \(losses[t])")
            if t == 0 {
                for name in trainer.store.parameterNames {
                    let grad = try first.output("grad.\(name)")
                    if let reference = fixture["grad0.\(name)"] {
                        let error = relativeError(grad, reference.floats())
                        #expect(error <= 1e-4, "grad0.\(name): relative error \(error)")
                    } else {
                        let error = relativeError(sample(grad), try floats("grad0_sample.\(name)"))
                        #expect(error <= 1e-4, "grad0_sample.\(name): relative error \(error)")
                        try expectStats(grad, try floats("grad0_stats.\(name)"), name: "grad0.\(name)")
                    }
                }
            }
        }
        // Adam divides by √v + 1e-8, so where a gradient is as small as ε a float32 rounding
        // difference becomes an update-sized one: the kit allows 1e-3 for ~0.01% of the values.
        var compared = 0, loose = 0
        for name in trainer.store.parameterNames {
            let values = trainer.store[name]!.values
            let (mine, reference): ([Float], [Float])
            if let full = fixture["final.\(name)"] {
                (mine, reference) = (values, full.floats())
            } else {
                (mine, reference) = (sample(values), try floats("final_sample.\(name)"))
                try expectStats(values, try floats("final_stats.\(name)"), name: "final.\(name)", sumsqTolerance: 1e-4)
            }
            let error = maxAbsoluteError(mine, reference)
            #expect(error <= 1e-3, "final.\(name): max abs error \(error)")
            compared += mine.count
            loose += zip(mine, reference).filter { abs($0 - $1) > 1e-6 }.count
        }
        #expect(loose <= Swift.max(1, compared / 1000), "\(loose) of \(compared) final values differ by more than 1e-6")
    }

    /// Checks [sum, sum of squares, first 8 values] as the kit summarises big tensors.
    func expectStats(_ values: [Float], _ stats: [Float], name: String, sumsqTolerance: Double = 1e-5) throws {
        let sum = values.reduce(0.0) { $0 + Double($1) }
        let sumsq = values.reduce(0.0) { $0 + Double($1) * Double($1) }
        let n = Double(values.count)
        #expect(abs(sum - Double(stats[0])) <= 1e-6 * (n * Double(stats[1])).squareRoot() + 1e-6 * abs(Double(stats[0])),
                "\(name): sum \(sum), PyTorch \(stats[0])")
        #expect(abs(sumsq - Double(stats[1])) <= sumsqTolerance * Double(stats[1]), "\(name): sum of squares \(sumsq), PyTorch \(stats[1])")
        let head = Array(values.prefix(8)), reference = Array(stats[2..<10])
        #expect(maxAbsoluteError(head, reference) <= 1e-4 * Double(reference.map(abs).max() ?? 0) + 1e-6, "\(name): first values \(head) vs \(reference)")
    }
}
