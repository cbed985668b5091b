import Testing
import KilnGraph
import KilnPasses
import KilnRuntime
import KilnZoo

// The simplification passes on real training graphs: forward, autodiff backward and optimizer
// updates of every zoo classifier at batch 4. The optimised graph must give the same outputs
// (loss, logits, every gradient) and the same updates as the original on the reference
// interpreter, and must be smaller.
//
// Tolerance: max |optimised − original| ≤ 1e-5 · max(1, max |original|) per tensor, i.e. float32
// rounding of a few operations. The rewrites are exact (folding runs the interpreter itself), so
// in practice the values agree bit for bit; the tolerance only keeps the test honest about
// float32 should a rewrite ever reassociate.

@Suite("Simplification keeps zoo training graphs equivalent")
struct SimplifyEquivalenceTests {
    static let optimizers: [Optimizer] = [.sgd(momentum: 0.9), .adam()]

    @Test("training graph: same outputs and updates after the four passes, fewer nodes",
          arguments: Zoo.classifierNames.filter { !$0.hasPrefix("resnet") }, optimizers)
    func trainingGraph(name: String, optimizer: Optimizer) throws {
        let model = try Zoo.classifier(name, inputShape: [1, 28, 28], classes: 10)
        let original = try ClassifierTrainer.trainingGraph(model: model, batch: 4, optimizer: optimizer, gradientOutputs: true)

        let options = PipelineOptions(evaluator: InterpreterConstantEvaluator())
        let passes = PassRegistry.simplificationNames.map { PassRegistry.make($0, options: options)! }
        var program = Program(graph: original)
        try PassManager(passes: passes).run(&program)
        let optimised = program.graph
        #expect(optimised.nodes.count < original.nodes.count, "\(name): \(original.nodes.count) → \(optimised.nodes.count) nodes")

        // One round reaches the fixed point: running any pass again changes nothing.
        for pass in passes {
            var again = program
            #expect(try pass.run(&again) == false, "\(name): \(pass.name) still finds work after one round")
        }

        var rng = SplitMix64(seed: 42)
        let feeds: [String: HostTensor] = [
            "x": HostTensor(shape: [4, 1, 28, 28], scalars: (0..<784 * 4).map { _ in Double.random(in: 0..<1, using: &rng) }),
            "labels": HostTensor(shape: [4], dtype: .int32, scalars: (0..<4).map { _ in Double(Int.random(in: 0..<10, using: &rng)) }),
            "lr": HostTensor(shape: .scalar, scalars: [0.05]),
        ]
        // Parameters from their initializers (drawn per node id, so fed by name to both graphs);
        // state nonzero so momentum and Adam moments take part.
        let initial = try Interpreter(graph: original).run(inputs: feeds)
        var parameters: [String: HostTensor] = [:], state: [String: HostTensor] = [:]
        for id in original.parameterIDs { parameters[original.leafName(id)!] = initial[id] }
        for id in original.stateIDs {
            let type = original[id].type
            state[original.leafName(id)!] = HostTensor(type, (0..<type.shape.count).map { _ in Double(Float.random(in: 0.01..<1, using: &rng)) })
        }

        let expected = try Interpreter(graph: original).outputs(inputs: feeds, parameters: parameters, state: state, seed: 1)
        let actual = try Interpreter(graph: optimised).outputs(inputs: feeds, parameters: parameters, state: state, seed: 1)
        #expect(Set(actual.keys) == Set(expected.keys))
        #expect(expected.keys.contains("loss") && expected.keys.contains { $0.hasPrefix("update:") } && expected.keys.contains { $0.hasPrefix("grad.") })
        for (key, value) in expected.sorted(by: { $0.key < $1.key }) {
            let other = try #require(actual[key])
            #expect(other.type == value.type, "\(name): \(key)")
            let scale = max(1, value.scalars.reduce(0) { max($0, Swift.abs($1)) })
            let error = zip(value.scalars, other.scalars).reduce(0) { max($0, Swift.abs($1.0 - $1.1)) }
            #expect(error <= 1e-5 * scale, "\(name) \(optimizer): \(key) differs by \(error) (scale \(scale))")
        }
    }
}
