import KilnGraph
import KilnPasses

/// Where every value of a compiled program lives while it runs: parameters and state in the
/// `ParameterStore`, constants in buffers of their own, inputs and computed values in one arena
/// (at the memory plan's offsets, or each in its own slot without a plan), views and in-place
/// results in their owner's buffer. Also the copies a step makes around its kernels: snapshots
/// of outputs that are updated parameters, and updates not already written in place.
///
/// Owns every byte it hands out (the arena, constants, per-kernel scratch) and frees it on deinit.
final class ProgramBuffers {
    let graph: Graph
    /// Bytes of the arena holding activations, gradients and temporaries.
    let arenaBytes: Int
    private let arena: UnsafeMutableRawPointer
    private var owned: [UnsafeMutableRawPointer] = []
    /// The buffer of each value; nil for a value computed inside a fused kernel and never stored.
    private(set) var pointers: [UnsafeMutableRawPointer?]
    /// Where each named float32 output is read: its buffer, or a snapshot for outputs that are a
    /// parameter or state updated by the step (a graph output is the value before the update).
    private(set) var outputBuffers: [String: UnsafeMutablePointer<Float>] = [:]
    private var snapshotCopies: [(from: UnsafeMutablePointer<Float>, to: UnsafeMutablePointer<Float>, count: Int)] = []
    private var updateCopies: [(from: UnsafeMutablePointer<Float>, to: UnsafeMutablePointer<Float>, count: Int)] = []

    /// Places every value of `program` (registering its parameters and state in `store`) and
    /// checks the arena against the memory budget before allocating it.
    init(program: Program, store: ParameterStore) throws {
        let graph = program.graph
        self.graph = graph
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
                pointers.append(allocate(bytes: Swift.max(node.type.byteCount, 4)))
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
    }

    /// Plans the step's copies; call once every kernel is lowered (an epilogue root may have
    /// been given its destination's buffer meanwhile).
    func planStepCopies() {
        for update in graph.updates where pointers[update.value] != pointers[update.target] {
            let count = graph.nodes[update.value].type.shape.count
            updateCopies.append((floats(update.value), floats(update.target), count))
        }
        let updated = Set(graph.updates.map(\.target))
        for output in graph.outputs where graph.nodes[output.value].type.dtype == .float32 {
            let root = graph.viewRoot(output.value)
            if updated.contains(root) {
                let count = graph.nodes[root].type.shape.count
                let snapshot = scratchFloats(count)
                snapshotCopies.append((floats(root), snapshot, count))
                outputBuffers[output.name] = snapshot
            } else if pointers[output.value] != nil {
                outputBuffers[output.name] = floats(output.value)
            }
        }
    }

    deinit {
        arena.deallocate()
        for pointer in owned { pointer.deallocate() }
    }

    /// Copies outputs that are updated parameters before the step's kernels run.
    @inline(__always) func snapshotOutputs() {
        for copy in snapshotCopies { copy.to.update(from: copy.from, count: copy.count) }
    }

    /// Writes the updates the kernels did not write in place.
    @inline(__always) func applyUpdates() {
        for copy in updateCopies { copy.to.update(from: copy.from, count: copy.count) }
    }

    /// Whether the value has a buffer (false inside a fused kernel).
    func isStored(_ id: ValueID) -> Bool { pointers[id] != nil }

    /// Gives `id` the buffer of `other` (an epilogue root writing into its kernel's output).
    func share(_ id: ValueID, with other: ValueID) { pointers[id] = pointers[other] }

    func floats(_ id: ValueID) -> UnsafeMutablePointer<Float> {
        guard let pointer = pointers[id] else { preconditionFailure("%\(id) has no buffer: it lives inside a fused kernel") }
        return pointer.assumingMemoryBound(to: Float.self)
    }

    func ints(_ id: ValueID) -> UnsafeMutablePointer<Int32> { pointers[id]!.assumingMemoryBound(to: Int32.self) }

    func raw(_ id: ValueID) -> UnsafeMutableRawPointer? { pointers[id] }

    /// Scratch a kernel keeps for the program's life (allocated while lowering, never in a step).
    func scratchFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        allocate(bytes: Swift.max(count, 1) * 4).bindMemory(to: Float.self, capacity: Swift.max(count, 1))
    }

    func scratchDoubles(_ count: Int) -> UnsafeMutablePointer<Double> {
        allocate(bytes: Swift.max(count, 1) * 8).bindMemory(to: Double.self, capacity: Swift.max(count, 1))
    }

    private func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        owned.append(pointer)
        return pointer
    }
}

/// What the kernels and the executable share while a program runs.
final class StepState {
    /// Steps run so far: the counter of the random ops' generator.
    var step: UInt64 = 0
    /// Where a kernel that meets invalid data (a label out of range) leaves its message; the
    /// executable checks it after every kernel and throws before any later kernel runs.
    var fault: String?
}
