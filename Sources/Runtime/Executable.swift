#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph
import KilnPasses

/// A float32 graph compiled for repeated execution: one arena allocated once, every kernel's
/// pointers and loop bounds fixed at compile time, so a steady-state step allocates nothing
/// and looks nothing up. Parameters and state live in the shared `ParameterStore`.
///
/// This type is the API (compile, feed, run, fetch). Placement of values is `ProgramBuffers`,
/// lowering of ops to kernels `Lowering` (and PooledConvolution.swift), timing `KernelProfiler`,
/// the kernels themselves Kernels/.
///
/// Supported dtypes: float32 everywhere, int32 for inputs (labels), casts and one-hot. Graphs in
/// float64 run on the `Interpreter`.
public final class Executable {
    public let graph: Graph
    public let store: ParameterStore
    /// Threads the kernels use (fixed at compile time).
    public let threads: Int
    /// Seed of the random ops; draws are keyed by (seed, op stream, step).
    public let seed: UInt64
    /// Steps run so far (the counter of the random generator).
    public var step: UInt64 { get { state.step } set { state.step = newValue } }
    /// Bytes of the arena holding activations, gradients and temporaries.
    public var arenaBytes: Int { buffers.arenaBytes }
    /// The program this executable runs (graph, kernels in order, memory plan).
    public let program: Program
    /// What `run()` does around the kernels (profiling, numerics checks).
    public var runOptions: RunOptions

    // Internal, not private: CompletionCheckpoints.swift runs the kernels too.
    let buffers: ProgramBuffers
    let state = StepState()
    let kernels: [() -> Void]
    let profiler: KernelProfiler
    private let inputIDs: [String: ValueID]
    let outputIDs: [String: ValueID]

    /// Compiles `graph` with `options` (the standard pipeline less its disabled passes),
    /// registering its parameters and state in `store` (created and initialised if missing).
    public convenience init(graph: Graph, store: ParameterStore, options: CompileOptions) throws {
        var program = Program(graph: graph)
        try options.pipeline().run(&program)
        try self.init(program: program, store: store, threads: options.threads, seed: options.seed,
                      runOptions: options.runOptions)
    }

    /// Compiles `graph` through `pipeline` (the standard one by default: simplification, fusion,
    /// memory planning), registering its parameters and state in `store` (created and
    /// initialised if missing).
    public convenience init(graph: Graph, store: ParameterStore, threads: Int = defaultThreadCount(), seed: UInt64 = 0,
                            pipeline: PassManager? = standardPipeline()) throws {
        var program = Program(graph: graph)
        if let pipeline { try pipeline.run(&program) }
        try self.init(program: program, store: store, threads: threads, seed: seed)
    }

    /// Prepares `program` for execution: places every value (at the planned arena offsets when
    /// the program has a memory plan, else each in its own slot) and lowers every kernel.
    public init(program: Program, store: ParameterStore, threads: Int = defaultThreadCount(), seed: UInt64 = 0,
                runOptions: RunOptions = RunOptions()) throws {
        let graph = program.graph
        try graph.verify()
        try BufferLiveness.checkInputsUntouched(program)
        try store.register(graph)
        self.program = program
        self.graph = graph
        self.store = store
        self.threads = Swift.min(Swift.max(1, threads), Parallel.maximumThreads)
        self.seed = seed
        self.runOptions = runOptions
        buffers = try ProgramBuffers(program: program, store: store)
        let lowering = Lowering(graph: graph, buffers: buffers, threads: self.threads, seed: seed, state: state)
        try lowering.lower(program)
        buffers.planStepCopies()
        kernels = lowering.kernels
        profiler = KernelProfiler(groups: program.schedule.count, groupOfClosure: lowering.groupOfKernel)
        var inputs: [String: ValueID] = [:]
        for id in graph.inputIDs { inputs[graph.leafName(id)!] = id }
        inputIDs = inputs
        var outputs: [String: ValueID] = [:]
        for output in graph.outputs { outputs[output.name] = output.value }
        outputIDs = outputs
    }

    deinit {
        if runOptions.profile && profiler.steps > 0 {
            Platform.writeToStandardError(profiler.report(program, top: RunOptions.profileLines) + "\n")
        }
    }

    /// When set, `run()` checks every float result a kernel stores for NaN and ±Inf
    /// (`RunOptions.checkNumerics`).
    public var checkNumerics: Bool {
        get { runOptions.checkNumerics }
        set { runOptions.checkNumerics = newValue }
    }

    /// When set, `run()` times every kernel group (`RunOptions.profile`).
    public var isProfiling: Bool {
        get { runOptions.profile }
        set { runOptions.profile = newValue }
    }

    // MARK: Feeding and reading

    /// The buffer of an input, for loaders that write batches in place (float32 or int32 per its dtype).
    public func inputPointer(_ name: String) throws -> UnsafeMutableRawPointer {
        guard let id = inputIDs[name] else { throw KilnError.feed("the program has no input \"\(name)\"; it has \(inputIDs.keys.sorted())") }
        return buffers.raw(id)!
    }

    /// Copies float values into an input.
    public func setInput(_ name: String, _ values: [Float]) throws {
        let id = try inputID(name, .float32, values.count)
        values.withUnsafeBufferPointer { buffers.raw(id)!.assumingMemoryBound(to: Float.self).update(from: $0.baseAddress!, count: values.count) }
    }

    /// Copies int32 values into an input.
    public func setInput(_ name: String, _ values: [Int32]) throws {
        let id = try inputID(name, .int32, values.count)
        values.withUnsafeBufferPointer { buffers.raw(id)!.assumingMemoryBound(to: Int32.self).update(from: $0.baseAddress!, count: values.count) }
    }

    private func inputID(_ name: String, _ dtype: DType, _ count: Int) throws -> ValueID {
        guard let id = inputIDs[name] else { throw KilnError.feed("the program has no input \"\(name)\"; it has \(inputIDs.keys.sorted())") }
        let type = graph.nodes[id].type
        guard type.dtype == dtype else { throw KilnError.feed("input \"\(name)\" is \(type.dtype), was fed \(dtype)") }
        guard type.shape.count == count else {
            throw KilnError.feed("input \"\(name)\" has shape \(type.shape) (\(type.shape.count) values), was fed \(count)")
        }
        return id
    }

    /// The values of a named output (a copy).
    public func output(_ name: String) throws -> [Float] {
        guard let id = outputIDs[name] else { throw KilnError.feed("the program has no output \"\(name)\"; it has \(outputIDs.keys.sorted())") }
        if let buffer = buffers.outputBuffers[name] {
            return Array(UnsafeBufferPointer(start: buffer, count: graph.nodes[id].type.shape.count))
        }
        return value(id)
    }

    /// The float32 values of any node after the last step (a copy; for tests and debugging).
    public func value(_ id: ValueID) -> [Float] {
        let type = graph.nodes[id].type
        if type.dtype == .int32 {
            return UnsafeBufferPointer(start: buffers.raw(id)!.assumingMemoryBound(to: Int32.self), count: type.shape.count).map { Float($0) }
        }
        return Array(UnsafeBufferPointer(start: buffers.floats(id), count: type.shape.count))
    }

    /// A pointer to a named output's floats, valid until the next step.
    public func outputPointer(_ name: String) throws -> UnsafePointer<Float> {
        guard let id = outputIDs[name] else { throw KilnError.feed("the program has no output \"\(name)\"") }
        return UnsafePointer(buffers.outputBuffers[name] ?? buffers.floats(id))
    }

    /// Runs one step: snapshots of outputs that are updated parameters, every kernel in order,
    /// then the parameter and state updates not already written in place. Inputs are never
    /// written: set them once and call `run()` as often as you like.
    ///
    /// Throws `KilnError.feed` when a kernel meets invalid data (a label outside `0..<classes`)
    /// or, with `checkNumerics`, when a result holds NaN or ±Inf; the kernels after it and the
    /// step's remaining updates do not run, and the step counter does not advance.
    public func run() throws {
        buffers.snapshotOutputs()
        if runOptions.profile || runOptions.checkNumerics {
            try runInstrumented()
        } else {
            for kernel in kernels {
                kernel()
                if state.fault != nil { try throwFault() }
            }
        }
        buffers.applyUpdates()
        state.step &+= 1
    }

    func throwFault() throws {
        let message = state.fault ?? "unknown fault"
        state.fault = nil
        throw KilnError.feed(message)
    }

    func runInstrumented() throws {
        let profile = runOptions.profile, checkNumerics = runOptions.checkNumerics
        let groupOfKernel = profiler.groupOfClosure
        for (index, kernel) in kernels.enumerated() {
            let start = profile ? Platform.monotonicSeconds() : 0
            kernel()
            if profile { profiler.record(closure: index, seconds: Platform.monotonicSeconds() - start) }
            if state.fault != nil { try throwFault() }
            // An epilogue group runs as two closures: check once the last of them has run.
            let group = groupOfKernel[index]
            if checkNumerics, group >= 0, index + 1 == kernels.count || groupOfKernel[index + 1] != group {
                try NumericsCheck.check(program.schedule[group], graph: graph, step: state.step, pointer: buffers.raw)
            }
        }
        if profile { profiler.finishStep() }
    }

    /// Seconds spent in each scheduled kernel group (indexed like `program.schedule`) over the
    /// steps run while profiling.
    public var kernelSeconds: [Double] { profiler.groupSeconds }

    /// The kernel groups that took the most time over the steps run while profiling.
    public var profileReport: String { profiler.report(program, top: RunOptions.profileLines) }
}
