import KilnGraph

/// What a fused kernel does; the runtime picks the kernel by kind and root op.
public enum KernelKind: String, Hashable, Sendable {
    /// One node, run by its own kernel.
    case single
    /// Elementwise and broadcast nodes over one iteration space, computed element by element
    /// without intermediate buffers (several outputs allowed).
    case elementwise
    /// A matmul, conv2d or softmax-family root whose output flows through elementwise nodes
    /// applied in the root's epilogue.
    case epilogue
    /// Reductions over one iteration space (the same axes) whose inputs are computed by
    /// elementwise nodes on the fly (a prologue): one pass, one or several reduced results.
    case reduction
    /// A convolution and its epilogue whose result only a pooling reads (inference): run a few
    /// images at a time into scratch and pooled at once, so the full-resolution activation is
    /// never stored. The pooling is the last member.
    case pooled
}

/// A group of nodes executed as one kernel.
public struct KernelGroup: Hashable, Sendable {
    public var kind: KernelKind
    /// The node that sets the kernel: the matmul/conv for epilogue groups, the first reduction of
    /// a reduction group, the last node for elementwise groups, the node itself for singles.
    public var root: ValueID
    /// Every node the kernel computes, in graph order (root included). The order in which the
    /// kernel computes them is `evaluationOrder`.
    public var members: [ValueID]
    /// Members whose values leave the kernel (read by other kernels, graph outputs or updates).
    public var outputs: [ValueID]

    public init(kind: KernelKind, root: ValueID, members: [ValueID], outputs: [ValueID]) {
        self.kind = kind; self.root = root; self.members = members; self.outputs = outputs
    }
}

extension KernelGroup {
    /// The values the kernel's members read from outside the kernel, member by member in
    /// operand order (a value read twice is listed twice).
    public func externalInputs(in graph: Graph) -> [ValueID] {
        let inside = Set(members)
        return members.flatMap { graph.nodes[$0].inputs }.filter { !inside.contains($0) }
    }

    /// The order in which the kernel computes its members: part of the program, followed by the
    /// runtime and relied on by the memory planner (a member may overwrite a buffer in place only
    /// when every member reading that buffer is computed no later than it), and checked by the
    /// pass manager's verifier (every member's in-kernel inputs come before it).
    ///
    /// Epilogue and pooled kernels compute the root (the matmul or convolution) first, then the
    /// other members in `members` order (a pooled kernel's pooling last, as it is last there).
    /// Elementwise, reduction and single kernels compute the non-root members in `members` order
    /// and the root last (a reduction sums its input tile by tile as the tile is computed).
    public var evaluationOrder: [ValueID] {
        switch kind {
        case .epilogue, .pooled: return [root] + members.filter { $0 != root }
        case .elementwise, .reduction, .single: return members.filter { $0 != root } + [root]
        }
    }

    /// The members other than the root, in evaluation order: what the fused evaluator runs.
    public var nonRootEvaluationOrder: [ValueID] { evaluationOrder.filter { $0 != root } }

    /// Whether member `a` is computed no later than member `b` in this kernel (`evaluationOrder`).
    public func computes(_ a: ValueID, notAfter b: ValueID) -> Bool {
        let order = evaluationOrder
        guard let i = order.firstIndex(of: a), let j = order.firstIndex(of: b) else {
            preconditionFailure("%\(a) or %\(b) is not a member of kernel \(root)")
        }
        return i <= j
    }

    /// Where the root of an epilogue kernel that nothing outside reads is written: the first
    /// output of the root's shape, which the epilogue then overwrites in place. Nil when the
    /// root needs a buffer of its own: it leaves the kernel, the kernel is no epilogue, no output
    /// has its shape, a member computed after that output reads the root (`evaluationOrder`: that
    /// member would read the output's value instead of the root's),
    /// or that output is an optimizer update.
    public func rootDestination(in graph: Graph) -> ValueID? {
        guard kind == .epilogue, !outputs.contains(root),
              let first = outputs.first(where: { graph.nodes[$0].type.shape == graph.nodes[root].type.shape })
        else { return nil }
        let lateReader = members.contains { !computes($0, notAfter: first) && graph.nodes[$0].inputs.contains(root) }
        // An optimizer update is better written in place into its parameter or state (which the
        // root's write would clobber) than given a buffer and copied back after the step.
        let isUpdate = graph.updates.contains { $0.value == first }
        return lateReader || isUpdate ? nil : first
    }

    /// Whether the kernel needs a buffer for its root although the root does not leave it.
    public func rootNeedsScratchBuffer(in graph: Graph) -> Bool {
        kind == .epilogue && !outputs.contains(root) && rootDestination(in: graph) == nil
    }
}

extension Array where Element == KernelGroup {
    /// For every node, the index of the kernel that computes it (-1 for leaves and views).
    public func kernelOfNode(count: Int) -> [Int] {
        var owner = [Int](repeating: -1, count: count)
        for (k, group) in enumerated() { for member in group.members { owner[member] = k } }
        return owner
    }

    /// For every kernel, the other kernels whose values its members read (through views too).
    public func producerKernels(in graph: Graph, kernelOfNode owner: [Int]) -> [Set<Int>] {
        enumerated().map { k, group in
            var sources = Set<Int>()
            for member in group.members {
                for input in graph.nodes[member].inputs {
                    let p = owner[graph.viewRoot(input)]
                    if p >= 0 && p != k { sources.insert(p) }
                }
            }
            return sources
        }
    }
}

extension Graph {
    /// The number of kernels the graph takes when every node runs on its own.
    public var unfusedKernelCount: Int { nodes.reduce(0) { $0 + ($1.op.needsKernel ? 1 : 0) } }

    /// One single-node group per node that needs a kernel, in graph order.
    public func singletonGroups() -> [KernelGroup] {
        let users = self.users()
        let pinned = valuesReadAfterStep
        return nodes.indices.filter { nodes[$0].op.needsKernel }.map { id in
            KernelGroup(kind: .single, root: id, members: [id],
                        outputs: users[id].isEmpty && !pinned.contains(id) ? [] : [id])
        }
    }
}

/// Where every value lives when a program runs.
public struct MemoryPlan: Hashable, Sendable {
    /// Byte offset in the arena of each value placed there (kernel outputs and inputs).
    public var offsets: [ValueID: Int]
    /// Values that share another value's buffer: reshape views and in-place results.
    /// The value on the right is never itself an alias.
    public var aliases: [ValueID: ValueID]
    /// Bytes of the arena.
    public var arenaBytes: Int
    /// Bytes if every tensor of the graph had its own buffer (node-by-node execution, no fusion,
    /// no reuse); parameters, state, constants and views excluded.
    public var naiveBytes: Int
    /// The largest total size of buffers live at one step of the schedule: no placement can beat it.
    public var lowerBoundBytes: Int
    /// The strategy whose placement was kept.
    public var strategy: String

    public init(offsets: [ValueID: Int], aliases: [ValueID: ValueID], arenaBytes: Int, naiveBytes: Int,
                lowerBoundBytes: Int, strategy: String) {
        self.offsets = offsets; self.aliases = aliases; self.arenaBytes = arenaBytes
        self.naiveBytes = naiveBytes; self.lowerBoundBytes = lowerBoundBytes; self.strategy = strategy
    }
}

/// What the compiler pipeline carries from pass to pass, and, at the end, what the runtime runs:
/// the graph, its kernels in schedule order, and where every value lives.
public struct Program: Hashable, Sendable {
    public var graph: Graph
    /// Kernels in execution order; nil before fusion/scheduling (then every node is its own kernel in graph order).
    public var kernels: [KernelGroup]?
    /// Buffer placement; nil before memory planning.
    public var memory: MemoryPlan?

    public init(graph: Graph, kernels: [KernelGroup]? = nil, memory: MemoryPlan? = nil) {
        self.graph = graph; self.kernels = kernels; self.memory = memory
    }

    /// Kernels in execution order (singletons in graph order when no fusion ran).
    public var schedule: [KernelGroup] { kernels ?? graph.singletonGroups() }
    /// How many kernels a step runs.
    public var kernelCount: Int { kernels?.count ?? graph.unfusedKernelCount }
}
