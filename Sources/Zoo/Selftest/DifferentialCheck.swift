import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime

/// A compiled program that disagreed with the reference interpreter, or wrote an input.
public struct DifferentialMismatch: Error, CustomStringConvertible {
    public var seed: UInt64
    public var summary: String
    public var message: String
    public var description: String { "network \(seed) [\(summary)]: \(message)" }
}

/// Runs a random network's training step compiled through the full pipeline, `runs` times with
/// the inputs set once, and checks after every run that
/// - each input's bytes are exactly what was fed (no kernel wrote an input), and
/// - every output and every updated parameter and state equals what the reference interpreter
///   computes from the same parameters, inputs, seed and step, within float32 tolerance.
public enum DifferentialCheck {
    /// Relative tolerance against the largest magnitude in each tensor (at least 1): float32
    /// kernels with other summation orders against the interpreter's float64 arithmetic.
    public static let tolerance = 1e-3

    /// Throws `DifferentialMismatch` at the first disagreement.
    public static func check(_ network: RandomNetwork, threads: Int, runs: Int = 2, pipeline: PassManager = standardPipeline()) throws {
        try check(network, threads: threads, runs: runs, pipeline: pipeline, afterRun: nil)
    }

    /// `afterRun` tampers with the program after each step, so tests can pin that the check fails.
    static func check(_ network: RandomNetwork, threads: Int, runs: Int = 2, pipeline: PassManager = standardPipeline(),
                      afterRun: ((Executable) throws -> Void)?) throws {
        func mismatch(_ message: String) -> DifferentialMismatch {
            DifferentialMismatch(seed: network.seed, summary: network.summary, message: message)
        }
        let graph = network.graph
        let store = ParameterStore(seed: network.seed)
        let randomSeed = network.seed &+ 17
        let executable = try Executable(graph: graph, store: store, threads: threads, seed: randomSeed, pipeline: pipeline)
        try feed(network, into: executable)
        var fedBytes: [String: [UInt8]] = [:]
        for name in network.feeds.keys { fedBytes[name] = try inputBytes(executable, name) }
        let interpreter = Interpreter(graph: graph)

        for run in 0..<runs {
            // The interpreter starts from the parameters the compiled program holds now.
            let (parameters, state) = hostValues(graph, store)
            let reference = try interpreter.outputs(inputs: network.feeds, parameters: parameters, state: state,
                                                    seed: randomSeed, step: UInt64(run))
            try executable.run()
            try afterRun?(executable)
            for (name, bytes) in fedBytes where try inputBytes(executable, name) != bytes {
                throw mismatch("run \(run + 1) wrote input \"\(name)\"")
            }
            for (name, expected) in reference.sorted(by: { $0.key < $1.key }) {
                let actual: [Float]
                if name.hasPrefix("update:") {
                    actual = store[String(name.dropFirst("update:".count))]!.values
                } else {
                    actual = try executable.output(name)
                }
                let scale = max(1, expected.scalars.map(Swift.abs).max() ?? 0)
                for (index, (a, b)) in zip(actual, expected.scalars).enumerated() {
                    let error = Swift.abs(Double(a) - b)
                    if !(error <= tolerance * scale) {
                        throw mismatch("run \(run + 1): \(name)[\(index)] is \(a), the interpreter says \(b) (error \(error), scale \(scale))")
                    }
                }
            }
        }
    }

    /// For a network that failed: runs its step `step` (0 the first; the steps before it run
    /// compiled, updating the parameters) node by node (no passes, every value in its own buffer)
    /// beside the interpreter, from the same parameters, and names the first node whose values differ.
    public static func firstDivergentNode(_ network: RandomNetwork, step: Int = 0) throws -> String? {
        let graph = network.graph
        let store = ParameterStore(seed: network.seed)
        let randomSeed = network.seed &+ 17
        let executable = try Executable(graph: graph, store: store, threads: 1, seed: randomSeed, pipeline: nil)
        try feed(network, into: executable)
        for _ in 0..<step { try executable.run() }
        let (parameters, state) = hostValues(graph, store)
        let reference = try Interpreter(graph: graph).run(inputs: network.feeds, parameters: parameters, state: state,
                                                          seed: randomSeed, step: UInt64(step))
        try executable.run()
        for (id, node) in graph.nodes.enumerated() {
            // Parameters and state (and views of them) hold the updated values after the step.
            if graph.nodes[graph.viewRoot(id)].op.storage == .persistent { continue }
            let actual = executable.value(id), expected = reference[id].scalars
            let scale = max(1, expected.map(Swift.abs).max() ?? 0)
            if let bad = zip(actual, expected).enumerated().first(where: { !(Swift.abs(Double($0.element.0) - $0.element.1) <= tolerance * scale) }) {
                let inputs = node.inputs.map { "%\($0)" }.joined(separator: ", ")
                return "\(graph.line(id)) [inputs \(inputs)]: element \(bad.offset) is \(bad.element.0), the interpreter says \(bad.element.1)"
            }
        }
        return nil
    }

    /// Sets every input of `network` on `executable`, as int32 or float32 by its dtype.
    private static func feed(_ network: RandomNetwork, into executable: Executable) throws {
        for (name, tensor) in network.feeds {
            if tensor.type.dtype == .int32 {
                try executable.setInput(name, tensor.scalars.map { Int32($0) })
            } else {
                try executable.setInput(name, tensor.scalars.map { Float($0) })
            }
        }
    }

    /// The store's parameters and state as the interpreter takes them.
    private static func hostValues(_ graph: Graph, _ store: ParameterStore) -> (parameters: [String: HostTensor], state: [String: HostTensor]) {
        var parameters: [String: HostTensor] = [:], state: [String: HostTensor] = [:]
        for id in graph.parameterIDs + graph.stateIDs {
            let name = graph.leafName(id)!
            let tensor = HostTensor(graph.nodes[id].type, store[name]!.values.map(Double.init))
            if case .parameter = graph.nodes[id].op { parameters[name] = tensor } else { state[name] = tensor }
        }
        return (parameters, state)
    }

    private static func inputBytes(_ executable: Executable, _ name: String) throws -> [UInt8] {
        let id = executable.graph.inputIDs.first { executable.graph.leafName($0) == name }!
        let count = executable.graph.nodes[id].type.byteCount
        return Array(UnsafeRawBufferPointer(start: try executable.inputPointer(name), count: count))
    }

    /// Checks `count` networks from `firstSeed` on, each on `threads`; returns the failures and
    /// reports progress after every network.
    public static func run(count: Int, firstSeed: UInt64, threads: Int, runs: Int = 2, pipeline: PassManager = standardPipeline(),
                           progress: (_ done: Int, _ failures: Int) -> Void = { _, _ in }) -> [Error] {
        var failures: [Error] = []
        for index in 0..<count {
            let seed = firstSeed &+ UInt64(index)
            do {
                try check(try RandomNetworks.make(seed: seed), threads: threads, runs: runs, pipeline: pipeline)
            } catch {
                failures.append(error is DifferentialMismatch ? error : DifferentialMismatch(seed: seed, summary: "", message: "\(error)"))
            }
            progress(index + 1, failures.count)
        }
        return failures
    }
}
