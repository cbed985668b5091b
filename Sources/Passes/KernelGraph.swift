import KilnGraph

/// The kernels fusion is building, as a small graph: which kernel holds each node (membership),
/// which kernels each kernel reads (edges), one reachability question over those edges, and the
/// moves that change them (open, add, merge). Fusion's rules (`FusionRule`) read and move only
/// through this type.
///
/// Invariant: the edges form a DAG. A rule asks `wouldCloseCycle` before it adds a node, and
/// `merge` refuses a move that would make a path leave a kernel and come back into it.
struct KernelGraph {
    struct Kernel {
        var kind: KernelKind
        /// The matmul/conv/softmax of an epilogue, the first reduction of a reduction kernel, the last
        /// member of an elementwise kernel, the node itself of a single.
        var root: ValueID
        var members: [ValueID]
        /// The shape every member shares (the iteration space), except a reduction root's.
        var space: Shape
        /// A closed kernel takes no further nodes (singles, reductions, pooled kernels).
        var closed: Bool
    }

    let graph: Graph
    let users: [[ValueID]]
    /// Graph outputs and update values: they must be stored whatever kernel computes them.
    let pinned: Set<ValueID>
    /// Every node's ancestors, for the look-ahead of `elementwise-joins-producer`.
    let ancestry: NodeAncestry
    /// The kernel of each node (-1: leaves and views, and nodes not placed yet).
    private(set) var kernelOf: [Int]
    /// Kernels by index; a kernel merged into another stays as an empty entry until `finished()`.
    private(set) var kernels: [Kernel] = []
    /// reads[k]: the other kernels whose values k's members read, directly or through views.
    /// A kernel grows after the nodes that read it were placed, so reachability is asked of
    /// these kernel edges, never of the nodes alone.
    private(set) var reads: [Set<Int>] = []
    /// Every rule's decision, when asked for (`kiln plan --why`); nil otherwise.
    var decisions: [FusionDecision]?

    init(_ graph: Graph, recordingDecisions: Bool = false) {
        self.graph = graph
        users = graph.users()
        pinned = graph.valuesReadAfterStep
        ancestry = NodeAncestry(graph)
        kernelOf = [Int](repeating: -1, count: graph.nodes.count)
        decisions = recordingDecisions ? [] : nil
    }

    func node(_ id: ValueID) -> Node { graph.nodes[id] }
    /// The kernel holding `id`, or nil.
    func kernel(of id: ValueID) -> Int? { kernelOf[id] >= 0 ? kernelOf[id] : nil }
    /// The kernel whose value `input` reads: its own, or its view source's; nil for leaves.
    func producer(of input: ValueID) -> Int? { kernel(of: graph.viewRoot(input)) }

    /// Whether kernel `start` depends on kernel `target` through a path of kernel edges.
    func dependsOn(_ start: Int, _ target: Int) -> Bool {
        var stack = [start], seen: Set<Int> = [start]
        while let k = stack.popLast() {
            if k == target { return true }
            for next in reads[k] where seen.insert(next).inserted { stack.append(next) }
        }
        return false
    }

    /// Whether node `id` reads a reduced value of kernel `k` (a reduction member: complete only
    /// once the kernel has run).
    func readsReducedValue(_ id: ValueID, of k: Int) -> Bool {
        node(id).inputs.contains { kernelOf[$0] == k && node($0).op.fusionCategory == .reduction }
    }

    /// Whether adding `id` to kernel `k` would close a cycle: an input from outside `k` that
    /// depends on `k` (or is a view of one of its members).
    func wouldCloseCycle(adding id: ValueID, to k: Int) -> Bool {
        for input in node(id).inputs where kernelOf[input] != k {
            guard let p = producer(of: input) else { continue }
            if p == k || dependsOn(p, k) { return true }
        }
        return false
    }

    /// Whether moving every member of `other` into `k` would close a cycle: a kernel that one
    /// of them reads depends on the other.
    func mergeWouldCloseCycle(_ other: Int, into k: Int) -> Bool {
        reads[k].contains { $0 != other && dependsOn($0, other) } || reads[other].contains { $0 != k && dependsOn($0, k) }
    }

    /// Opens a kernel holding `id` alone.
    @discardableResult
    mutating func open(_ kind: KernelKind, with id: ValueID, closed: Bool = false) -> Int {
        kernels.append(Kernel(kind: kind, root: id, members: [], space: node(id).type.shape, closed: closed))
        reads.append([])
        add(id, to: kernels.count - 1)
        return kernels.count - 1
    }

    /// Puts node `id` into kernel `k` (the caller checked `wouldCloseCycle`).
    mutating func add(_ id: ValueID, to k: Int) {
        kernelOf[id] = k
        kernels[k].members.append(id)
        for input in node(id).inputs {
            if let p = producer(of: input), p != k { reads[k].insert(p) }
        }
    }

    /// Changes kernel `k`'s kind, root and closedness (a reduction taking its prologue).
    mutating func reshape(_ k: Int, kind: KernelKind, root: ValueID, closed: Bool) {
        kernels[k].kind = kind
        kernels[k].root = root
        kernels[k].closed = closed
    }

    /// Moves every member of `other` into `k` (the caller checked `mergeWouldCloseCycle`).
    mutating func merge(_ other: Int, into k: Int) {
        for member in kernels[other].members { kernelOf[member] = k }
        kernels[k].members += kernels[other].members
        if kernels[k].kind == .elementwise { kernels[k].root = kernels[k].members.max()! }
        kernels[other].members = []
        reads[k].formUnion(reads[other])
        reads[k].subtract([k, other])
        reads[other] = []
        for j in reads.indices where reads[j].remove(other) != nil && j != k { reads[j].insert(k) }
    }

    /// Moves node `id`, alone in its kernel, into kernel `k` once every node is placed (the
    /// finishing rules; no reachability is asked after them).
    mutating func absorb(_ id: ValueID, into k: Int) {
        kernels[kernelOf[id]].members = []
        kernelOf[id] = k
        kernels[k].members.append(id)
    }

    /// Records a rule's decision about moving `moving` into kernel `k` (when recording).
    mutating func note(_ rule: String, moving: [ValueID], into k: Int, _ outcome: FusionDecision.Outcome) {
        guard decisions != nil else { return }
        decisions!.append(FusionDecision(rule: rule, moving: moving, kernel: kernels[k].members, outcome: outcome))
    }

    /// The kernels: members in graph order, their outputs, in a topological order (ready
    /// kernels by smallest first member).
    func finished() -> [KernelGroup] {
        // A one-node kernel is a single, except a lone elementwise node (it runs on the fused
        // evaluator either way).
        var groups = kernels.filter { !$0.members.isEmpty }.map { b in
            KernelGroup(kind: b.members.count == 1 && b.kind != .elementwise ? .single : b.kind,
                        root: b.root, members: b.members.sorted(), outputs: [])
        }
        let owner = groups.kernelOfNode(count: graph.nodes.count)
        // Outputs: members read outside their kernel, read through a view, or pinned (and a
        // reduction kernel's reductions, which the kernel always stores).
        func leavesKernel(_ id: ValueID) -> Bool {
            pinned.contains(id) || users[id].contains { node($0).op.isView || owner[$0] != owner[id] }
        }
        for g in groups.indices {
            let kind = groups[g].kind
            groups[g].outputs = groups[g].members.filter {
                leavesKernel($0) || (kind == .reduction && node($0).op.fusionCategory == .reduction)
            }
        }
        let sources = groups.producerKernels(in: graph, kernelOfNode: owner)
        guard let order = kahnOrder(sources: sources, key: { groups[$0].members[0] }) else {
            preconditionFailure("fusion produced a cycle")
        }
        return order.map { groups[$0] }
    }
}

/// One decision of a fusion rule: whether `moving` (a node, or a kernel's members) went into the
/// kernel that then held `kernel`, and if not, why. Recorded for `kiln plan --why`.
public struct FusionDecision: Hashable, Sendable {
    public enum Outcome: Hashable, Sendable {
        case joined
        case refused(String)
    }
    public var rule: String
    public var moving: [ValueID]
    public var kernel: [ValueID]
    public var outcome: Outcome
}
