import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

/// PyTorch's own training trajectories in `Tests/Fixtures` (same initial weights, same batches).
/// Tolerances are the ones `Tests/Fixtures/README.md` suggests, about 10–100× the differences
/// PyTorch itself shows between thread counts and instruction sets.

/// max |a − b| over max |b|.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var diff = 0.0, scale = 0.0
    for (x, y) in zip(a, b) { diff = max(diff, Double(abs(x - y))); scale = max(scale, Double(abs(y))) }
    return scale == 0 ? diff : diff / scale
}

func maxAbsoluteError(_ a: [Float], _ b: [Float]) -> Double {
    zip(a, b).reduce(0.0) { max($0, Double(abs($1.0 - $1.1))) }
}

/// Every 127th element, as the fixtures' `_sample` tensors.
func sample(_ values: [Float]) -> [Float] { stride(from: 0, to: values.count, by: 127).map { values[$0] } }

struct TrajectoryCase: CustomStringConvertible, Sendable {
    var file: String
    var model: String
    var batch: Int
    var steps: Int
    var optimizer: Optimizer
    var description: String { file }
}

@Suite("Training steps match PyTorch's trajectories", .serialized)
struct TrajectoryTests {
    static let cases = [
        TrajectoryCase(file: "mlp-sgd", model: "mlp", batch: 16, steps: 20, optimizer: .sgd()),
        TrajectoryCase(file: "lenet5-sgdm", model: "lenet5", batch: 64, steps: 12, optimizer: .sgd(momentum: 0.9)),
    ]

    @Test("loss per step, logits and gradients of step 0, parameters after the last step",
          .enabled(if: haveTrainingImages), arguments: cases)
    func trajectory(_ c: TrajectoryCase) throws {
        let fixture = try Safetensors.read(path: "\(fixtureDirectory)/\(c.file).safetensors").tensors
        func floats(_ name: String) throws -> [Float] {
            guard let entry = fixture[name] else { throw KilnError.feed("fixture \(c.file) lacks \(name)") }
            return entry.floats()
        }
        let train = try FashionMNIST.load(split: .train)
        let trainer = ClassifierTrainer(model: try Zoo.classifier(c.model), optimizer: c.optimizer, threads: 2)
        trainer.gradientOutputs = true
        let first = try trainer.trainingProgram(batch: c.batch)
        for name in trainer.store.parameterNames { try trainer.store.set(name, try floats("init.\(name)")) }

        let indices = fixture["batch_indices"]!.int32s().map(Int.init)
        let losses = try floats("loss")
        for t in 0..<c.steps {
            let loss = try trainer.trainStep(train, indices: indices[(t * c.batch)..<((t + 1) * c.batch)], learningRate: 0.01)
            #expect(abs(Double(loss - losses[t])) <= 1e-5 * abs(Double(losses[t])), "step \(t): loss \(loss), PyTorch \(losses[t])")
            if t == 0 {
                let logits = try first.output("logits")
                #expect(relativeError(logits, try floats("logits0")) <= 1e-5)
                for name in trainer.store.parameterNames {
                    let grad = try first.output("grad.\(name)")
                    if let reference = fixture["grad0.\(name)"] {
                        let error = relativeError(grad, reference.floats())
                        #expect(error <= 1e-4, "grad0.\(name): relative error \(error)")
                    } else {
                        let error = relativeError(sample(grad), try floats("grad0_sample.\(name)"))
                        #expect(error <= 1e-4, "grad0_sample.\(name): relative error \(error)")
                    }
                }
            }
        }
        for name in trainer.store.parameterNames {
            let values = trainer.store[name]!.values
            if let reference = fixture["final.\(name)"] {
                let error = maxAbsoluteError(values, reference.floats())
                #expect(error <= 1e-6, "final.\(name): max abs error \(error)")
            } else {
                let error = maxAbsoluteError(sample(values), try floats("final_sample.\(name)"))
                #expect(error <= 1e-6, "final_sample.\(name): max abs error \(error)")
            }
        }
    }
}
