import Foundation
import KilnGraph
import KilnPasses

/// How many threads kernels may use: `KILN_THREADS` if set, else every core.
public func defaultThreadCount() -> Int {
    if let text = ProcessInfo.processInfo.environment["KILN_THREADS"], let n = Int(text), n > 0 { return Swift.min(n, Parallel.maximumThreads) }
    return ProcessInfo.processInfo.activeProcessorCount
}

/// A float32 graph compiled for repeated execution: one arena allocated once, every kernel's
/// pointers and loop bounds fixed at compile time, so a steady-state step allocates nothing
/// and looks nothing up. Parameters and state live in the shared `ParameterStore`.
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
    public var step: UInt64 { get { counter.value } set { counter.value = newValue } }
    /// Bytes of the arena holding activations, gradients and temporaries.
    public let arenaBytes: Int

    private final class Counter { var value: UInt64 = 0 }
    private let counter = Counter()
    /// Where a kernel that meets invalid data (a label out of range) leaves its message; `run()`
    /// checks it after every kernel and throws before any later kernel (or update) runs.
    private final class Fault { var message: String? }
    private let fault = Fault()
    /// When set, `run()` checks every float result a kernel stores for NaN and ±Inf and throws
    /// naming the first node that holds one (op, node, shape, graph line, step, input ranges).
    /// Compile without `fuse` and `plan-memory` to have every node stored and every input intact.
    public var checkNumerics = false
    private let arena: UnsafeMutableRawPointer
    private var scratch: [UnsafeMutableRawPointer] = []
    private var pointers: [UnsafeMutableRawPointer?]
    private var kernels: [() -> Void] = []
    /// For each closure in `kernels`, the index of the scheduled kernel group it belongs to
    /// (an epilogue group runs as two closures; `-1` marks closures outside every group).
    private var kernelGroupIndex: [Int] = []
    private var groupSeconds: [Double] = []
    private var closureSeconds: [Double] = []
    /// Fused kernels recognised as a whole optimizer update and run by a specialised loop (`FusedAdam`).
    public private(set) var specializedKernelCount = 0
    /// When set, `run()` times every kernel group (adds two clock reads per kernel).
    public var isProfiling = false
    private var updateCopies: [(from: UnsafeMutablePointer<Float>, to: UnsafeMutablePointer<Float>, count: Int)] = []
    private let inputIDs: [String: ValueID]
    private let outputIDs: [String: ValueID]
    /// Where each named output is read: its buffer, or a snapshot for outputs that are a
    /// parameter or state updated by the step (a graph output is the value before the update).
    private var outputBuffers: [String: UnsafeMutablePointer<Float>] = [:]
    private var snapshotCopies: [(from: UnsafeMutablePointer<Float>, to: UnsafeMutablePointer<Float>, count: Int)] = []

    /// The program this executable runs (graph, kernels in order, memory plan).
    public let program: Program

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
    /// the program has a memory plan, else each in its own slot) and builds one closure per kernel.
    public init(program: Program, store: ParameterStore, threads: Int = defaultThreadCount(), seed: UInt64 = 0) throws {
        let graph = program.graph
        try graph.verify()
        try BufferLiveness.checkInputsUntouched(program)
        try store.register(graph)
        self.program = program
        self.graph = graph
        self.store = store
        self.threads = Swift.min(Swift.max(1, threads), Parallel.maximumThreads)
        self.seed = seed
        isProfiling = ProcessInfo.processInfo.environment["KILN_PROFILE"].map { !$0.isEmpty && $0 != "0" } ?? false

        var offsets = [Int?](repeating: nil, count: graph.nodes.count)
        var size = 0
        if let memory = program.memory {
            for (id, offset) in memory.offsets { offsets[id] = offset }
            size = memory.arenaBytes
        } else {
            // Every computed value and input gets its own 64-byte-aligned slot.
            for (id, node) in graph.nodes.enumerated() {
                switch node.op.storage {
                case .persistent, .view, .constant: continue
                case .input, .computed:
                    offsets[id] = size
                    size += (node.type.byteCount + 63) / 64 * 64
                }
            }
        }
        try MemoryBudget.check([size], for: "the compiled program's arena (activations, gradients, temporaries)")
        arenaBytes = size
        arena = .allocate(byteCount: Swift.max(size, 64), alignment: 64)
        arena.initializeMemory(as: UInt8.self, repeating: 0, count: Swift.max(size, 64))
        pointers = []
        pointers.reserveCapacity(graph.nodes.count)
        for (id, node) in graph.nodes.enumerated() {
            switch node.op.storage {
            case .persistent:
                pointers.append(UnsafeMutableRawPointer(store[graph.leafName(id)!]!.pointer))
            case .view:
                pointers.append(pointers[node.inputs[0]])
            case .constant:
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(node.type.byteCount, 4), alignment: 64)
                scratch.append(buffer)
                pointers.append(buffer)
            case .input, .computed:
                if program.memory?.aliases[id] != nil {
                    pointers.append(nil)  // set below: the owner may come later in id order
                } else if let offset = offsets[id] {
                    pointers.append(arena + offset)
                } else {
                    pointers.append(nil)  // computed inside a fused kernel, never stored
                }
            }
        }
        // Aliases (in-place results, views) point into their owner's buffer. The schedule is not
        // id order, so an owner can have a larger id than its alias; owners are never aliases or views.
        for (id, owner) in program.memory?.aliases ?? [:] { pointers[id] = pointers[owner] }
        var inputs: [String: ValueID] = [:]
        for id in graph.inputIDs { inputs[graph.leafName(id)!] = id }
        inputIDs = inputs
        var outputs: [String: ValueID] = [:]
        for output in graph.outputs { outputs[output.name] = output.value }
        outputIDs = outputs

        for (id, node) in graph.nodes.enumerated() where !node.op.needsKernel { try compileNode(id) }
        kernelGroupIndex = Array(repeating: -1, count: kernels.count)
        for (index, group) in program.schedule.enumerated() {
            try compileKernel(group)
            kernelGroupIndex += Array(repeating: index, count: kernels.count - kernelGroupIndex.count)
        }
        groupSeconds = Array(repeating: 0, count: program.schedule.count)
        closureSeconds = Array(repeating: 0, count: kernels.count)
        for update in graph.updates where pointers[update.value] != pointers[update.target] {
            let count = graph.nodes[update.value].type.shape.count
            updateCopies.append((floats(update.value), floats(update.target), count))
        }
        let updated = Set(graph.updates.map(\.target))
        for output in graph.outputs where graph.nodes[output.value].type.dtype == .float32 {
            let root = graph.viewRoot(output.value)
            if updated.contains(root) {
                let count = graph.nodes[root].type.shape.count
                let snapshot = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * 4, alignment: 64)
                scratch.append(snapshot)
                let buffer = snapshot.assumingMemoryBound(to: Float.self)
                snapshotCopies.append((floats(root), buffer, count))
                outputBuffers[output.name] = buffer
            } else if pointers[output.value] != nil {
                outputBuffers[output.name] = floats(output.value)
            }
        }
    }

    /// Builds the closure of one kernel.
    private func compileKernel(_ group: KernelGroup) throws {
        switch group.kind {
        case .single:
            // A result nothing reads gets no buffer from the memory plan; its kernel has no effect.
            if pointers[group.root] == nil && group.outputs.isEmpty { return }
            try compileNode(group.root)
        case .elementwise:
            let fused = FusedElementwise(graph: graph, members: group.members, space: graph.nodes[group.root].type.shape,
                                         outputs: outputBuffers(group), pointer: floats, threads: threads)
            if fused.adam != nil { specializedKernelCount += 1 }
            kernels.append { fused.run() }
        case .reduction:
            let root = group.root
            let space = graph.nodes[graph.nodes[root].inputs[0]].type.shape
            let fused = FusedElementwise(graph: graph, members: group.members.filter { $0 != root }, space: space,
                                         outputs: outputBuffers(group).filter { $0.key != root }, pointer: floats,
                                         threads: threads, reduction: (root, floats(root)))
            kernels.append { fused.run() }
        case .pooled:
            try compilePooled(group)
        case .epilogue:
            // The root writes into its own buffer when it has one (it leaves the kernel, or a late
            // member reads it), else into the output the epilogue then updates in place.
            let root = group.root
            if pointers[root] == nil {
                guard let destination = group.rootDestination(in: graph) else {
                    preconditionFailure("epilogue kernel of %\(root) has neither a root buffer nor an output of its shape")
                }
                pointers[root] = pointers[destination]
            }
            try compileNode(root)
            let fused = FusedElementwise(graph: graph, members: group.members.filter { $0 != root },
                                         space: graph.nodes[root].type.shape,
                                         outputs: outputBuffers(group).filter { $0.key != root }, pointer: floats, threads: threads)
            if fused.adam != nil { specializedKernelCount += 1 }
            kernels.append { fused.run() }
        }
    }

    /// A `pooled` kernel: per slice of images, the convolution into per-thread scratch, its
    /// epilogue in place there, then the pooling into the output. Slices have a fixed size (a
    /// divisor of the batch chosen from the shapes alone) and each image's arithmetic is the same
    /// in every slice, so results never depend on the thread count.
    private func compilePooled(_ group: KernelGroup) throws {
        let root = group.root, poolID = group.members.last!
        let conv = graph.nodes[root], pool = graph.nodes[poolID]
        guard case let .conv2d(attributes) = conv.op else { preconditionFailure("pooled kernel of %\(root) is no convolution") }
        let value = pool.inputs[0]
        let inputShape = graph.nodes[conv.inputs[0]].type.shape, filterShape = graph.nodes[conv.inputs[1]].type.shape
        let outShape = conv.type.shape, pooledShape = pool.type.shape
        let batch = inputShape[0]
        let imageFloats = outShape.count / Swift.max(batch, 1)
        // About 64 KiB of activations per slice (stays in L2), and a divisor of the batch.
        let target = Swift.max(1, Swift.min(batch, 16_384 / Swift.max(imageFloats, 1)))
        let images = (1...target).last { batch % $0 == 0 }!
        let slices = batch / images
        var sliceInput = inputShape.dims, sliceOutput = outShape.dims
        sliceInput[0] = images
        sliceOutput[0] = images
        let convGeometry = Self.convGeometry(attributes, input: Shape(sliceInput), filter: filterShape)
        let poolGeometry: Pool2DKernel.Geometry
        let isMax: Bool
        switch pool.op {
        case let .maxPool2d(p): poolGeometry = Self.poolGeometry(p, Shape(sliceOutput)); isMax = true
        case let .avgPool2d(p): poolGeometry = Self.poolGeometry(p, Shape(sliceOutput)); isMax = false
        default: preconditionFailure("pooled kernel ends in \(pool.op.name), not a pooling")
        }
        let x = floats(conv.inputs[0]), w = floats(conv.inputs[1]), y = floats(poolID)
        let inputStride = inputShape.count / Swift.max(batch, 1) * images
        let outputStride = pooledShape.count / Swift.max(batch, 1) * images
        let epilogue = group.members.filter { $0 != root && $0 != poolID }
        let parts = Swift.min(threads, slices)
        var lanes: [(scratch: UnsafeMutablePointer<Float>, workspace: Conv2DKernel.Workspace, epilogue: FusedElementwise?)] = []
        for _ in 0..<parts {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: imageFloats * images * 4, alignment: 64)
            scratch.append(buffer)
            let scratchFloats = buffer.bindMemory(to: Float.self, capacity: imageFloats * images)
            let fused = epilogue.isEmpty ? nil : FusedElementwise(
                graph: graph, members: epilogue, space: Shape(sliceOutput), outputs: [value: scratchFloats],
                pointer: { $0 == root ? scratchFloats : self.floats($0) }, threads: 1, batchSlice: true)
            lanes.append((scratchFloats, Conv2DKernel.Workspace(.forward, convGeometry, threads: 1), fused))
        }
        kernels.append {
            Parallel.forEach(chunks: parts, threads: parts) { part in
                let lane = lanes[part]
                for slice in (part * slices / parts)..<((part + 1) * slices / parts) {
                    Conv2DKernel.forward(convGeometry, x: x + slice * inputStride, weight: w, y: lane.scratch, threads: 1,
                                         workspace: lane.workspace)
                    lane.epilogue?.run()
                    if isMax {
                        Pool2DKernel.maxForward(poolGeometry, x: lane.scratch, y: y + slice * outputStride, threads: 1)
                    } else {
                        Pool2DKernel.avgForward(poolGeometry, x: lane.scratch, y: y + slice * outputStride, threads: 1)
                    }
                }
            }
        }
    }

    private func outputBuffers(_ group: KernelGroup) -> [ValueID: UnsafeMutablePointer<Float>] {
        var buffers: [ValueID: UnsafeMutablePointer<Float>] = [:]
        for output in group.outputs { buffers[output] = floats(output) }
        return buffers
    }

    deinit {
        if isProfiling && counter.value > 0 { printProfile() }
        arena.deallocate()
        for pointer in scratch { pointer.deallocate() }
    }

    // MARK: Feeding and reading

    /// The buffer of an input, for loaders that write batches in place (float32 or int32 per its dtype).
    public func inputPointer(_ name: String) throws -> UnsafeMutableRawPointer {
        guard let id = inputIDs[name] else { throw KilnError.feed("the program has no input \"\(name)\"; it has \(inputIDs.keys.sorted())") }
        return pointers[id]!
    }

    /// Copies float values into an input.
    public func setInput(_ name: String, _ values: [Float]) throws {
        let id = try inputID(name, .float32, values.count)
        values.withUnsafeBufferPointer { pointers[id]!.assumingMemoryBound(to: Float.self).update(from: $0.baseAddress!, count: values.count) }
    }

    /// Copies int32 values into an input.
    public func setInput(_ name: String, _ values: [Int32]) throws {
        let id = try inputID(name, .int32, values.count)
        values.withUnsafeBufferPointer { pointers[id]!.assumingMemoryBound(to: Int32.self).update(from: $0.baseAddress!, count: values.count) }
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
        if let buffer = outputBuffers[name] {
            return Array(UnsafeBufferPointer(start: buffer, count: graph.nodes[id].type.shape.count))
        }
        return value(id)
    }

    /// The float32 values of any node after the last step (a copy; for tests and debugging).
    public func value(_ id: ValueID) -> [Float] {
        let type = graph.nodes[id].type
        if type.dtype == .int32 {
            return UnsafeBufferPointer(start: pointers[id]!.assumingMemoryBound(to: Int32.self), count: type.shape.count).map { Float($0) }
        }
        return Array(UnsafeBufferPointer(start: floats(id), count: type.shape.count))
    }

    /// A pointer to a named output's floats, valid until the next step.
    public func outputPointer(_ name: String) throws -> UnsafePointer<Float> {
        guard let id = outputIDs[name] else { throw KilnError.feed("the program has no output \"\(name)\"") }
        return UnsafePointer(outputBuffers[name] ?? floats(id))
    }

    /// Runs one step: snapshots of outputs that are updated parameters, every kernel in order,
    /// then the parameter and state updates not already written in place. Inputs are never
    /// written: set them once and call `run()` as often as you like.
    ///
    /// Throws `KilnError.feed` when a kernel meets invalid data (a label outside `0..<classes`)
    /// or, with `checkNumerics`, when a result holds NaN or ±Inf; the kernels after it and the
    /// step's remaining updates do not run, and the step counter does not advance.
    public func run() throws {
        for copy in snapshotCopies { copy.to.update(from: copy.from, count: copy.count) }
        if isProfiling || checkNumerics {
            try runInstrumented()
        } else {
            for kernel in kernels {
                kernel()
                if fault.message != nil { try throwFault() }
            }
        }
        for copy in updateCopies { copy.to.update(from: copy.from, count: copy.count) }
        counter.value &+= 1
    }

    private func throwFault() throws {
        let message = fault.message ?? "unknown fault"
        fault.message = nil
        throw KilnError.feed(message)
    }

    private func runInstrumented() throws {
        var t = timespec()
        func now() -> Double { clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + 1e-9 * Double(t.tv_nsec) }
        for (index, (kernel, group)) in zip(kernels, kernelGroupIndex).enumerated() {
            let start = isProfiling ? now() : 0
            kernel()
            if isProfiling {
                let seconds = now() - start
                closureSeconds[index] += seconds
                if group >= 0 { groupSeconds[group] += seconds }
            }
            if fault.message != nil { try throwFault() }
            // An epilogue group runs as two closures: check once the last of them has run.
            if checkNumerics, group >= 0, index + 1 == kernels.count || kernelGroupIndex[index + 1] != group {
                try NumericsCheck.check(program.schedule[group], graph: graph, step: counter.value,
                                        pointer: { [pointers] in pointers[$0] })
            }
        }
    }

    /// Writes the kernel groups that took the most time to standard error (`KILN_PROFILE=1`).
    private func printProfile() {
        let total = groupSeconds.reduce(0, +)
        var lines = ["kiln profile: \(graph.nodes.count) nodes, \(program.schedule.count) kernels, \(counter.value) steps, "
                     + String(format: "%.3f s in kernels, %.1f µs per step", total, 1e6 * total / Double(counter.value))]
        for index in groupSeconds.indices.sorted(by: { groupSeconds[$0] > groupSeconds[$1] }).prefix(12) {
            let group = program.schedule[index]
            let ops = group.members.map { graph.nodes[$0].op.name }.joined(separator: " ")
            let shape = graph.nodes[group.root].type.shape.dims.map(String.init).joined(separator: "x")
            // An epilogue runs as two closures: the root's kernel, then the fused elementwise part.
            let parts = kernelGroupIndex.indices.filter { kernelGroupIndex[$0] == index }
            let split = parts.count > 1
                ? " (" + parts.map { String(format: "%.1f", 1e6 * closureSeconds[$0] / Double(counter.value)) }.joined(separator: " + ") + ")"
                : ""
            lines.append(String(format: "  %5.1f%% %8.1f µs/step%@  kernel %d %@ [%@]: %@", 100 * groupSeconds[index] / max(total, 1e-12),
                                1e6 * groupSeconds[index] / Double(counter.value), split, index, group.kind.rawValue, shape, ops))
        }
        FileHandle.standardError.write((lines.joined(separator: "\n") + "\n").data(using: .utf8)!)
    }

    /// Seconds spent in each scheduled kernel group (indexed like `program.schedule`) over the
    /// steps run while `isProfiling` was set.
    public var kernelSeconds: [Double] { groupSeconds }

    // MARK: Compilation of one node

    private func floats(_ id: ValueID) -> UnsafeMutablePointer<Float> {
        guard let pointer = pointers[id] else { preconditionFailure("%\(id) has no buffer: it lives inside a fused kernel") }
        return pointer.assumingMemoryBound(to: Float.self)
    }
    private func ints(_ id: ValueID) -> UnsafeMutablePointer<Int32> { pointers[id]!.assumingMemoryBound(to: Int32.self) }

    /// "%12" and, when known, where user code made the node: "%12 (Model.swift:30)".
    static func place(_ id: ValueID, _ node: Node) -> String {
        node.location.map { "%\(id) (\($0))" } ?? "%\(id)"
    }

    private func scratchDoubles(_ count: Int) -> UnsafeMutablePointer<Double> {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1) * 8, alignment: 64)
        scratch.append(pointer)
        return pointer.assumingMemoryBound(to: Double.self)
    }

    private func compileNode(_ id: ValueID) throws {
        let node = graph.nodes[id]
        let type = node.type
        let count = type.shape.count
        let inputTypes = node.inputs.map { graph.nodes[$0].type }
        let allowsInt: Bool
        switch node.op {
        case .input, .cast, .oneHot, .softmaxCrossEntropy, .reshape, .constant: allowsInt = true
        default: allowsInt = false
        }
        if !allowsInt, type.dtype != .float32 || inputTypes.contains(where: { $0.dtype != .float32 }) {
            throw KilnError.feed("%\(id) \(node.op.name) on \(([type] + inputTypes).map { "\($0)" }.joined(separator: ", ")): the compiled runtime runs float32 (int32 only for labels); use the Interpreter for other dtypes")
        }
        let y = floats(id)
        let threads = self.threads
        switch node.op {
        case .input, .parameter, .state, .reshape:
            return

        case let .constant(values):
            if type.dtype == .int32 {
                let p = ints(id)
                for i in 0..<count { p[i] = Int32(values.count == 1 ? values[0] : values[i]) }
            } else {
                for i in 0..<count { y[i] = Float(values.count == 1 ? values[0] : values[i]) }
            }

        case let .randomUniform(stream), let .randomNormal(stream):
            let random = CounterRandom(seed: seed)
            let counter = self.counter
            let buffer = UnsafeMutableBufferPointer(start: y, count: count)
            let uniform: Bool
            if case .randomUniform = node.op { uniform = true } else { uniform = false }
            // A normal draw costs ~35 ns (Philox, log, cos), so even a few thousand are worth
            // two threads; parts start at multiples of 4, and each element's value depends only
            // on its index.
            let parts = Swift.max(1, Swift.min(threads, count / 1024))
            kernels.append {
                Parallel.forEach(chunks: parts, threads: parts) { part in
                    let range = (part * count / parts / 4 * 4)..<(part + 1 == parts ? count : (part + 1) * count / parts / 4 * 4)
                    if uniform {
                        random.fillUniform(buffer, stream: stream, step: counter.value, range: range)
                    } else {
                        random.fillNormal(buffer, stream: stream, step: counter.value, range: range)
                    }
                }
            }

        case let .unary(f):
            let x = floats(node.inputs[0])
            kernels.append(Self.chunked(count, threads) { range in
                ElementwiseKernel.unary(f, x + range.lowerBound, y + range.lowerBound, count: range.count)
            })

        case let .power(exponent):
            let x = floats(node.inputs[0]), e = Float(exponent)
            kernels.append(Self.chunked(count, threads) { range in
                ElementwiseKernel.power(e, x + range.lowerBound, y + range.lowerBound, count: range.count)
            })

        case let .binary(f):
            let a = floats(node.inputs[0]), b = floats(node.inputs[1])
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [
                StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape),
                StridedLoops.broadcastStrides(inputTypes[1].shape, to: type.shape),
                type.shape.strides])
            let inner = rows.inner, sa = rows.innerStrides[0], sb = rows.innerStrides[1]
            let oa = rows.offsets[0], ob = rows.offsets[1], oy = rows.offsets[2]
            kernels.append(Self.chunked(rows.rowCount, threads, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { range in
                for r in range { ElementwiseKernel.binary(f, a + oa[r], sa, b + ob[r], sb, y + oy[r], count: inner) }
            })

        case .select:
            let c = floats(node.inputs[0]), a = floats(node.inputs[1]), b = floats(node.inputs[2])
            let sc = StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape)
            let sa = StridedLoops.broadcastStrides(inputTypes[1].shape, to: type.shape)
            let sb = StridedLoops.broadcastStrides(inputTypes[2].shape, to: type.shape)
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [sc, sa, sb, type.shape.strides])
            let inner = rows.inner, s = rows.innerStrides
            let o = rows.offsets
            kernels.append {
                for r in 0..<rows.rowCount {
                    let cp = c + o[0][r], ap = a + o[1][r], bp = b + o[2][r], yp = y + o[3][r]
                    for i in 0..<inner { yp[i] = cp[i * s[0]] != 0 ? ap[i * s[1]] : bp[i * s[2]] }
                }
            }

        case let .cast(target):
            let source = inputTypes[0].dtype
            let input = node.inputs[0]
            switch (source, target) {
            case (.float32, .float32), (.int32, .int32):
                let from = pointers[input]!, to = pointers[id]!, bytes = type.byteCount
                kernels.append { to.copyMemory(from: from, byteCount: bytes) }
            case (.int32, .float32):
                let from = ints(input)
                kernels.append { for i in 0..<count { y[i] = Float(from[i]) } }
            case (.float32, .int32):
                let from = floats(input), to = ints(id)
                kernels.append { for i in 0..<count { to[i] = Int32(from[i]) } }
            default:
                throw KilnError.feed("%\(id) cast from \(source) to \(target) is not supported by the compiled runtime")
            }

        case let .reduce(f, axes, _):
            try compileReduce(id, f, axes)

        case let .matmul(ta, tb):
            let a = floats(node.inputs[0]), b = floats(node.inputs[1])
            let (m, n) = (type.shape[0], type.shape[1])
            let k = ta ? inputTypes[0].shape[0] : inputTypes[0].shape[1]
            let lda = inputTypes[0].shape[1], ldb = inputTypes[1].shape[1]
            // Packing buffers made once here, so a step allocates nothing.
            let workspace = GEMM.Workspace(transposeA: ta, transposeB: tb, m: m, n: n, k: k)
            kernels.append {
                GEMM.sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                           c: y, ldc: n, accumulate: false, threads: threads, workspace: workspace)
            }

        case let .transpose(permutation):
            let x = floats(node.inputs[0])
            let sourceStrides = inputTypes[0].shape.strides
            let strides = permutation.map { sourceStrides[$0] }
            let dims = type.shape.dims, outStrides = type.shape.strides
            kernels.append {
                StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: strides,
                                  destination: y, destinationOffset: 0, destinationStrides: outStrides)
            }

        case .broadcast:
            let x = floats(node.inputs[0])
            let rows = StridedLoops.rows(shape: type.shape, operandStrides: [
                StridedLoops.broadcastStrides(inputTypes[0].shape, to: type.shape), type.shape.strides])
            let inner = rows.inner, sx = rows.innerStrides[0], ox = rows.offsets[0], oy = rows.offsets[1]
            kernels.append(Self.chunked(rows.rowCount, threads, grain: Swift.max(1, 32768 / Swift.max(inner, 1))) { range in
                for r in range {
                    let xp = x + ox[r], yp = y + oy[r]
                    if sx == 0 { yp.update(repeating: xp[0], count: inner) } else { yp.update(from: xp, count: inner) }
                }
            })

        case let .slice(start, _):
            let x = floats(node.inputs[0])
            let sourceStrides = inputTypes[0].shape.strides
            let offset = zip(start, sourceStrides).map(*).reduce(0, +)
            let dims = type.shape.dims, outStrides = type.shape.strides
            kernels.append {
                StridedLoops.copy(shape: dims, source: x, sourceOffset: offset, sourceStrides: sourceStrides,
                                  destination: y, destinationOffset: 0, destinationStrides: outStrides)
            }

        case let .pad(low, _):
            let x = floats(node.inputs[0])
            let outStrides = type.shape.strides
            let offset = zip(low, outStrides).map(*).reduce(0, +)
            let dims = inputTypes[0].shape.dims, inStrides = inputTypes[0].shape.strides
            kernels.append {
                y.update(repeating: 0, count: count)
                StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: inStrides,
                                  destination: y, destinationOffset: offset, destinationStrides: outStrides)
            }

        case let .concat(axis):
            let outStrides = type.shape.strides
            var pieces: [(UnsafeMutablePointer<Float>, [Int], [Int], Int)] = []
            var position = 0
            for (input, inputType) in zip(node.inputs, inputTypes) {
                pieces.append((floats(input), inputType.shape.dims, inputType.shape.strides, position * outStrides[axis]))
                position += inputType.shape[axis]
            }
            kernels.append {
                for (x, dims, strides, offset) in pieces {
                    StridedLoops.copy(shape: dims, source: x, sourceOffset: 0, sourceStrides: strides,
                                      destination: y, destinationOffset: offset, destinationStrides: outStrides)
                }
            }

        case let .conv2d(a):
            let x = floats(node.inputs[0]), w = floats(node.inputs[1])
            let g = Self.convGeometry(a, input: inputTypes[0].shape, filter: inputTypes[1].shape)
            // Scratch made once here, so a step allocates nothing.
            let workspace = Conv2DKernel.Workspace(.forward, g, threads: threads)
            kernels.append { Conv2DKernel.forward(g, x: x, weight: w, y: y, threads: threads, workspace: workspace) }

        case let .conv2dBackwardData(a, inputShape):
            let dy = floats(node.inputs[0]), w = floats(node.inputs[1])
            let g = Self.convGeometry(a, input: inputShape, filter: inputTypes[1].shape)
            let workspace = Conv2DKernel.Workspace(.backwardData, g, threads: threads)
            kernels.append { Conv2DKernel.backwardData(g, dy: dy, weight: w, dx: y, threads: threads, workspace: workspace) }

        case let .conv2dBackwardFilter(a, filterShape):
            let x = floats(node.inputs[0]), dy = floats(node.inputs[1])
            let g = Self.convGeometry(a, input: inputTypes[0].shape, filter: filterShape)
            let workspace = Conv2DKernel.Workspace(.backwardFilter, g, threads: threads)
            kernels.append { Conv2DKernel.backwardFilter(g, x: x, dy: dy, dw: y, threads: threads, workspace: workspace) }

        case let .maxPool2d(p):
            let x = floats(node.inputs[0]), g = Self.poolGeometry(p, inputTypes[0].shape)
            kernels.append { Pool2DKernel.maxForward(g, x: x, y: y, threads: threads) }
        case let .maxPool2dBackward(p):
            let x = floats(node.inputs[0]), dy = floats(node.inputs[1]), g = Self.poolGeometry(p, inputTypes[0].shape)
            kernels.append { Pool2DKernel.maxBackward(g, x: x, dy: dy, dx: y, threads: threads) }
        case let .maxPool2dGather(p):
            let x = floats(node.inputs[0]), source = floats(node.inputs[1]), g = Self.poolGeometry(p, inputTypes[0].shape)
            kernels.append { Pool2DKernel.maxGather(g, x: x, source: source, out: y, threads: threads) }
        case let .avgPool2d(p):
            let x = floats(node.inputs[0]), g = Self.poolGeometry(p, inputTypes[0].shape)
            kernels.append { Pool2DKernel.avgForward(g, x: x, y: y, threads: threads) }
        case let .avgPool2dBackward(p, inputShape):
            let dy = floats(node.inputs[0]), g = Self.poolGeometry(p, inputShape)
            kernels.append { Pool2DKernel.avgBackward(g, dy: dy, dx: y, threads: threads) }

        case let .softmax(axis), let .logSoftmax(axis):
            let x = floats(node.inputs[0])
            let dims = type.shape.dims
            let outer = dims[..<axis].reduce(1, *), length = dims[axis], inner = dims[(axis + 1)...].reduce(1, *)
            let isLog: Bool
            if case .logSoftmax = node.op { isLog = true } else { isLog = false }
            kernels.append {
                SoftmaxKernel.softmax(x, y, outer: outer, length: length, inner: inner, log: isLog)
            }

        case .softmaxCrossEntropy:
            let logits = floats(node.inputs[0]), labels = ints(node.inputs[1])
            let rows = inputTypes[0].shape[0], classes = inputTypes[0].shape[1]
            let fault = self.fault, counter = self.counter, place = Self.place(id, node)
            kernels.append {
                if let bad = SoftmaxKernel.crossEntropy(logits, labels, y, rows: rows, classes: classes) {
                    fault.message = "softmax_cross_entropy \(place): label \(labels[bad]) of example \(bad) is outside 0..<\(classes) (step \(counter.value))"
                }
            }

        case let .oneHot(depth, dtype):
            guard dtype == .float32 else { throw KilnError.feed("%\(id) one_hot to \(dtype) is not supported by the compiled runtime") }
            let labels = ints(node.inputs[0]), n = inputTypes[0].shape.count
            let fault = self.fault, counter = self.counter, place = Self.place(id, node)
            kernels.append {
                y.update(repeating: 0, count: count)
                for i in 0..<n {
                    let label = Int(labels[i])
                    guard label >= 0 && label < depth else {
                        fault.message = "one_hot \(place): label \(label) at index \(i) is outside 0..<\(depth) (step \(counter.value))"
                        return
                    }
                    y[i * depth + label] = 1
                }
            }
        }
    }

    private func compileReduce(_ id: ValueID, _ f: ReduceFunction, _ axes: [Int]) throws {
        let node = graph.nodes[id]
        let inputShape = graph.nodes[node.inputs[0]].type.shape
        let x = floats(node.inputs[0]), y = floats(id)
        let outCount = node.type.shape.count
        // Output strides viewed in the input's rank, 0 on reduced axes.
        var reducedShape = inputShape.dims
        for axis in axes { reducedShape[axis] = 1 }
        let outStrides = StridedLoops.broadcastStrides(Shape(reducedShape), to: inputShape)
        let rows = StridedLoops.rows(shape: inputShape, operandStrides: [inputShape.strides, outStrides])
        let inner = rows.inner, innerOut = rows.innerStrides[1]
        let ox = rows.offsets[0], oy = rows.offsets[1]
        let reducedCount = axes.reduce(1) { $0 * inputShape[$1] }
        let accumulator = scratchDoubles(outCount)
        switch f {
        case .sum, .mean:
            let scale = f == .mean ? 1 / Double(Swift.max(reducedCount, 1)) : 1
            kernels.append {
                accumulator.update(repeating: 0, count: outCount)
                for r in 0..<ox.count {
                    let xp = x + ox[r], ap = accumulator + oy[r]
                    if innerOut == 0 {
                        ap[0] += Self.rowSum(xp, inner)
                    } else {
                        for i in 0..<inner { ap[i] += Double(xp[i]) }
                    }
                }
                for i in 0..<outCount { y[i] = Float(accumulator[i] * scale) }
            }
        case .max:
            kernels.append {
                y.update(repeating: -.infinity, count: outCount)
                for r in 0..<ox.count {
                    let xp = x + ox[r], yp = y + oy[r]
                    if innerOut == 0 {
                        var m = yp[0]
                        for i in 0..<inner where xp[i] > m { m = xp[i] }
                        yp[0] = m
                    } else {
                        for i in 0..<inner where xp[i] > yp[i] { yp[i] = xp[i] }
                    }
                }
            }
        }
    }

    /// The sum of `count` floats: 16 float lanes (each adds every 16th element in order), then
    /// the lanes and the tail added in float64. Fixed order, so the result never varies.
    static func rowSum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        var lanes = SIMD16<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 16 <= count {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var total = 0.0
        for lane in 0..<16 { total += Double(lanes[lane]) }
        while i < count { total += Double(x[i]); i += 1 }
        return total
    }

    /// A kernel that splits `0..<count` into fixed chunks of at least `grain` and runs them on `threads`.
    private static func chunked(_ count: Int, _ threads: Int, grain: Int = 65536,
                                _ body: @escaping (Range<Int>) -> Void) -> () -> Void {
        let chunks = Swift.max(1, Swift.min(threads, count / Swift.max(grain, 1)))
        if chunks == 1 { return { body(0..<count) } }
        let size = (count + chunks - 1) / chunks
        return {
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                let start = chunk * size
                body(start..<Swift.min(count, start + size))
            }
        }
    }

    static func convGeometry(_ a: Conv2DAttributes, input: Shape, filter: Shape) -> Conv2DKernel.Geometry {
        Conv2DKernel.Geometry(n: input[0], c: input[1], h: input[2], w: input[3], o: filter[0], kh: filter[2], kw: filter[3],
                              strideH: a.strideH, strideW: a.strideW, padH: a.padH, padW: a.padW)
    }

    static func poolGeometry(_ p: PoolAttributes, _ input: Shape) -> Pool2DKernel.Geometry {
        Pool2DKernel.Geometry(n: input[0], c: input[1], h: input[2], w: input[3], kh: p.kernelH, kw: p.kernelW,
                              strideH: p.strideH, strideW: p.strideW)
    }
}
