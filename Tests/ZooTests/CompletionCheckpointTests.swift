import Foundation
import Testing
import Kiln

/// `Executable.completionKernel(ofOutput:)` and `run(checkpoints:reached:)`, the hook that lets
/// data-parallel training reduce gradients while backward runs (issue 18): at each output's
/// checkpoint the output must already hold the step's final bytes.
@Suite("Completion checkpoints")
struct CompletionCheckpointTests {
    /// Feeds every input with values that change with `step`, so a stale buffer never passes for a fresh one.
    static func feed(_ executable: Executable, step: Int) throws {
        let graph = executable.graph
        for id in graph.inputIDs {
            let name = graph.leafName(id)!, count = graph.nodes[id].type.shape.count
            if graph.nodes[id].type.dtype == .int32 {
                try executable.setInput(name, (0..<count).map { Int32(($0 + step) % 3) })
            } else if name == "lr" {
                try executable.setInput(name, [Float](repeating: 0.01, count: count))
            } else {
                let values: [Float] = (0..<count).map { (i: Int) -> Float in
                    let k: Int = (i * 37 + step * 11) % 101
                    return Float(k) / 101 - 0.3
                }
                try executable.setInput(name, values)
            }
        }
    }

    /// Runs 3 steps with one checkpoint per float output; at each, copies the output; checks every
    /// copy against the output after the step. Outputs computed by a kernel are overwritten with NaN
    /// before each step, so a checkpoint that came too early shows. Returns the completion kernels.
    static func check(_ graph: Graph, threads: Int) throws -> [String: Int] {
        let executable = try Executable(graph: graph, store: ParameterStore(seed: 3), options: CompileOptions(threads: threads, seed: 5))
        let reference = try Executable(graph: graph, store: ParameterStore(seed: 3), options: CompileOptions(threads: threads, seed: 5))
        let names = graph.outputs.filter { graph.nodes[$0.value].type.dtype == .float32 }.map(\.name)
        var completion: [String: Int] = [:]
        for name in names { completion[name] = try executable.completionKernel(ofOutput: name) }
        let ordered = names.sorted { (completion[$0]!, $0) < (completion[$1]!, $1) }
        let kernels = ordered.map { completion[$0]! }
        for step in 0..<3 {
            try feed(executable, step: step)
            try feed(reference, step: step)
            for name in ordered where completion[name]! >= 0 {
                let pointer = UnsafeMutablePointer(mutating: try executable.outputPointer(name))
                for i in 0..<(try executable.output(name)).count { pointer[i] = .nan }
            }
            var copies = [[Float]](repeating: [], count: ordered.count)
            var order: [Int] = []
            try kernels.withUnsafeBufferPointer { checkpoints in
                try executable.run(checkpoints: checkpoints) { k in
                    order.append(k)
                    copies[k] = (try? executable.output(ordered[k])) ?? []
                }
            }
            try reference.run()
            #expect(order == Array(ordered.indices), "checkpoints reached out of order: \(order)")
            for (k, name) in ordered.enumerated() {
                let final = try executable.output(name)
                let bits = { (values: [Float]) in values.map(\.bitPattern) }
                #expect(bits(copies[k]) == bits(final), "\(name) (kernel \(kernels[k]) of \(executable.kernelCount)) changed after its checkpoint in step \(step)")
                #expect(bits(final) == bits(try reference.output(name)), "\(name) differs from a plain run() in step \(step)")
            }
        }
        return completion
    }

    @Test("every output of LeNet-5's and a batch-norm CNN's gradient programs is final at its checkpoint, 1 and 2 threads; last layers finish first")
    func classifierGradients() throws {
        let bn = ClassifierModel(name: "bn-cnn", summary: "conv, batch norm, dense", inputShape: [1, 28, 28], classes: 3) { images, training in
            let g = images.builder
            let h = maxPool(relu(g.batchNorm(g.conv2d(images, outChannels: 4, kernel: 3, padding: 1, name: "conv"),
                                             name: "bn", training: training)), 4)
            return g.dense(h.flatten(), 3, name: "fc")
        }
        for model in [lenet5(classes: 3), bn] {
            let graph = try DistributedTrainer.gradientGraph(model: model, batch: 4)
            for threads in [1, 2] {
                let completion = try Self.check(graph, threads: threads)
                let parameters = graph.parameterIDs.map { "grad." + graph.leafName($0)! }
                // Backward reaches the last layer first: its gradient is final before the first layer's,
                // which is what lets the reduction of the last layers overlap the rest of backward.
                #expect(completion[parameters.last!]! < completion[parameters.first!]!,
                        "\(model.name): \(parameters.last!) at kernel \(completion[parameters.last!]!), \(parameters.first!) at \(completion[parameters.first!]!)")
                #expect(completion.values.allSatisfy { $0 >= 0 })
            }
        }
    }

    @Test("training steps with updates (SGD, Adam) and the VAE: outputs final at their checkpoints")
    func trainingPrograms() throws {
        _ = try Self.check(ClassifierTrainer.trainingGraph(model: lenet5(classes: 3), batch: 4, optimizer: .sgd(momentum: 0.9), gradientOutputs: true), threads: 2)
        _ = try Self.check(ClassifierTrainer.trainingGraph(model: glyphCNN(), batch: 4, optimizer: .adam(), gradientOutputs: true), threads: 1)
        _ = try Self.check(GenerativeTrainer.graph(of: Zoo.generative("vae"), batch: 4, training: true), threads: 2)
    }
}
