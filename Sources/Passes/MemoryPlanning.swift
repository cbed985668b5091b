import KilnGraph

/// Plans where every value lives when the program runs, and fills `program.memory`.
///
/// 1. In-place reuse. An elementwise kernel (or the epilogue of a matmul or convolution, whose
///    root neither reads nor writes that buffer) writes an output into the buffer of an input it
///    reads at the same index, when nothing later reads that buffer (`MemoryPlan.aliases`).
///    An optimizer update is written straight into its parameter or state when every read of
///    the old value happens before (or, same index, inside) the kernel that computes it, so the
///    runtime needs no copy at the end of the step.
/// 2. Offsets. Liveness intervals of the remaining buffers (`BufferLiveness`) are packed into
///    one arena by every strategy; the smallest arena is kept (ties: the first strategy).
///
/// Invariant: no two buffers live at the same step overlap (checked by the pass manager).
/// The graph and kernels are left unchanged. Parameters, state and constants live outside
/// the arena; graph inputs live in it but are never overwritten, so callers can read them back.
public struct MemoryPlanning: Pass {
    /// `plan-memory`.
    public let name = "plan-memory"
    /// Strategies tried, in order of preference on ties.
    public var strategies: [ArenaStrategy]

    /// A planner trying `strategies` (by default greedy by size, then greedy by breadth).
    public init(strategies: [ArenaStrategy] = [GreedyBySize(), GreedyByBreadth()]) {
        precondition(!strategies.isEmpty, "memory planning needs at least one strategy")
        self.strategies = strategies
    }

    /// Replaces `program.memory` with a fresh plan; reports a change unless the plan is the same.
    public func run(_ program: inout Program) throws -> Bool {
        let plan = self.plan(program)
        if program.memory == plan { return false }
        program.memory = plan
        return true
    }

    /// The memory plan of `program` (any existing plan is ignored).
    public func plan(_ program: Program) -> MemoryPlan {
        var planned = program
        planned.memory = MemoryPlan(offsets: [:], aliases: Self.aliases(program), arenaBytes: 0, naiveBytes: 0,
                                    lowerBoundBytes: 0, strategy: "")
        let intervals = BufferLiveness.intervals(of: planned)
        var best: (offsets: [ValueID: Int], bytes: Int, name: String)?
        for strategy in strategies {
            let offsets = strategy.assign(intervals)
            let bytes = ArenaLayout.arenaBytes(intervals, offsets)
            if best == nil || bytes < best!.bytes { best = (offsets, bytes, strategy.name) }
        }
        var memory = planned.memory!
        memory.offsets = best!.offsets
        memory.arenaBytes = best!.bytes
        memory.strategy = best!.name
        memory.naiveBytes = Self.naiveBytes(program.graph)
        memory.lowerBoundBytes = BufferLiveness.lowerBound(intervals)
        return memory
    }

    /// Bytes if every tensor of the graph had its own buffer, as a node-by-node interpreter
    /// allocates them: inputs and every computed value (fused or not, in place or not), but not
    /// views, parameters, state or constants, which the arena never holds.
    public static func naiveBytes(_ graph: Graph) -> Int {
        graph.nodes.reduce(0) { total, node in
            switch node.op.storage {
            case .persistent, .constant, .view: return total
            case .input, .computed: return total + ArenaLayout.aligned(node.type.byteCount)
            }
        }
    }

    /// In-place results and parameter updates mapped to the buffer they reuse, plus every
    /// reshape view mapped to the buffer it shares. The right-hand side is never itself an alias.
    public static func aliases(_ program: Program) -> [ValueID: ValueID] {
        var analysis = InPlaceAnalysis(program)
        return analysis.run()
    }
}


/// The reuse decisions of memory planning, made in schedule order.
private struct InPlaceAnalysis {
    let graph: Graph
    let schedule: [KernelGroup]
    /// Kernel step that computes each value (-1 for leaves and views).
    var producedAt: [Int]
    /// Last kernel step that reads each non-view value, directly or through views (-1: none).
    var lastKernelRead: [Int]
    /// Non-view values that are graph outputs or update values, directly or through views.
    var pinned: Set<ValueID>
    var aliases: [ValueID: ValueID] = [:]

    init(_ program: Program) {
        graph = program.graph
        schedule = program.schedule
        producedAt = [Int](repeating: -1, count: graph.nodes.count)
        lastKernelRead = [Int](repeating: -1, count: graph.nodes.count)
        pinned = []
        for (step, group) in schedule.enumerated() {
            for member in group.members { producedAt[member] = step }
            for input in group.externalInputs(in: graph) {
                let base = graph.viewRoot(input)
                lastKernelRead[base] = max(lastKernelRead[base], step)
            }
        }
        pinned = Set(graph.valuesReadAfterStep.map(graph.viewRoot))
    }

    /// The value whose buffer `id` uses under the aliases decided so far.
    func owner(_ id: ValueID) -> ValueID { BufferLiveness.owner(of: id, in: graph, aliases: aliases) }

    mutating func run() -> [ValueID: ValueID] {
        aliasUpdates()
        aliasElementwiseResults()
        for (id, node) in graph.nodes.enumerated() where node.op.isView { aliases[id] = owner(id) }
        return aliases
    }

    /// Whether `group` may write `output` into the buffer `owner` while it reads it: the kernel
    /// is elementwise (a reduction's prologue too) and every read of that buffer inside it is a same-shape, same-element-size
    /// operand of a same-index op whose result has `output`'s shape, computed no later than `output`.
    func readsAtSameIndex(_ group: KernelGroup, buffer owner: ValueID, writing output: ValueID) -> Bool {
        let rootOp = graph.nodes[group.root].op
        let isEpilogue = group.kind == .epilogue
        let isReduction = group.kind == .reduction
        guard group.kind == .elementwise || isEpilogue || isReduction || (group.kind == .single && rootOp.isSameIndexElementwise)
        else { return false }
        if isEpilogue {
            // The root (a matmul or convolution) reads its inputs everywhere, and writes its result
            // before any member runs: neither its inputs nor the output it writes may be overwritten.
            if output == group.rootDestination(in: graph) { return false }
            if graph.nodes[group.root].inputs.contains(where: { self.owner($0) == owner }) { return false }
        }
        let outputType = graph.nodes[output].type
        // A fused kernel walks its root's iteration space (a reduction kernel its reductions'
        // input space); an output of another shape is not written at the indices its operands are read.
        let space = isReduction ? graph.nodes[graph.nodes[group.root].inputs[0]].type.shape : graph.nodes[group.root].type.shape
        guard outputType.shape == space else { return false }
        let members = Set(group.members)
        // A reduction member reads only members (its input is computed in the kernel).
        for member in group.members where !(isEpilogue && member == group.root) && !(isReduction && graph.nodes[member].op.fusionCategory == .reduction) {
            let node = graph.nodes[member]
            for input in node.inputs where !members.contains(input) && self.owner(input) == owner {
                let inputType = graph.nodes[input].type
                // Members read their operands when they are computed (`evaluationOrder`), so a member
                // computed after `output` would read the buffer after output overwrote it.
                guard group.computes(member, notAfter: output), node.op.isSameIndexElementwise, inputType.shape == node.type.shape,
                      node.type.shape == outputType.shape,
                      inputType.dtype.byteSize == outputType.dtype.byteSize else { return false }
            }
        }
        return true
    }

    /// Update values written straight into their targets.
    mutating func aliasUpdates() {
        var targetCount: [ValueID: Int] = [:]
        for update in graph.updates { targetCount[update.target, default: 0] += 1 }
        for update in graph.updates {
            let value = update.value, target = update.target
            let step = producedAt[value]
            // Only a kernel's own result can be redirected, and only into one target.
            guard targetCount[target] == 1, step >= 0, !graph.nodes[value].op.isView, aliases[value] == nil,
                  schedule[step].outputs.contains(value),
                  graph.nodes[value].type.byteCount == graph.nodes[target].type.byteCount,
                  // Outputs and update copies read the target after the step: they want the old value.
                  !pinned.contains(target) else { continue }
            let lastRead = lastKernelRead[target]
            if lastRead > step { continue }
            if lastRead == step && !readsAtSameIndex(schedule[step], buffer: target, writing: value) { continue }
            aliases[value] = target
        }
    }

    /// Elementwise results written over an input that dies in the same kernel.
    mutating func aliasElementwiseResults() {
        // Last kernel step reading each buffer, including reads of values already aliased into it.
        var bufferLastRead = lastKernelRead
        for id in pinned { bufferLastRead[id] = schedule.count }
        for (step, group) in schedule.enumerated() {
            var taken: Set<ValueID> = []
            for output in group.outputs where aliases[output] == nil && !graph.nodes[output].op.isView {
                for input in group.externalInputs(in: graph) {
                    let owner = self.owner(input)
                    guard !taken.contains(owner), !BufferLiveness.isOutsideArena(owner, in: graph),
                          !isGraphInput(owner), bufferLastRead[owner] == step,
                          graph.nodes[owner].type.byteCount == graph.nodes[output].type.byteCount,
                          readsAtSameIndex(group, buffer: owner, writing: output) else { continue }
                    aliases[output] = owner
                    taken.insert(owner)
                    bufferLastRead[owner] = max(bufferLastRead[owner], bufferLastRead[output])
                    break
                }
            }
        }
    }

    func isGraphInput(_ id: ValueID) -> Bool { graph.nodes[id].op.storage == .input }
}
