import KilnGraph

/// Operator fusion (`fuse`): groups the graph's nodes into kernels, reading each op's
/// `FusionCategory` (TVM's scheme, simplified):
///
/// - elementwise nodes join a producer's kernel when they share its iteration space, so chains
///   (including the backward graph's, e.g. relu-grad times the incoming gradient, and the
///   optimizer's update arithmetic) become one kernel computed element by element, with several
///   outputs where values leave the kernel;
/// - a `broadcast` whose input comes from outside the kernel is absorbed as a strided load;
/// - elementwise nodes after a matmul, conv2d or softmax of the same shape join it as an epilogue
///   (bias add, activation);
/// - a reduction whose input is computed by an elementwise kernel (and read by nothing else)
///   joins it, so the reduced values are never stored;
/// - everything else runs as its own kernel.
///
/// Invariant: a node joins a kernel only if no path leaves the kernel and comes back into it,
/// so the kernels form a DAG; `program.kernels` lists them in a topological order (ready
/// kernels by smallest root id). The graph itself is not changed.
public struct Fusion: Pass {
    public let name = "fuse"
    public init() {}

    public func run(_ program: inout Program) throws -> Bool {
        precondition(program.memory == nil, "fuse runs before memory planning")
        let kernels = Self.groups(for: program.graph)
        let changed = program.kernels != kernels
        program.kernels = kernels
        return changed
    }

    private struct Building {
        var kind: KernelKind
        var root: ValueID
        var members: [ValueID]
        /// The shape every member shares (the iteration space), except a reduction root's.
        var space: Shape
        var closed = false
    }

    /// The kernels of `graph` in a valid execution order.
    public static func groups(for graph: Graph) -> [KernelGroup] {
        let nodes = graph.nodes
        let users = graph.users()
        let pinned = Set(graph.outputs.map(\.value) + graph.updates.map(\.value))
        var groupOf = [Int](repeating: -1, count: nodes.count)
        var groups: [Building] = []
        // reach[n]: kernels n depends on through any path (including its own kernel's members' inputs).
        var reach = [Set<Int>](repeating: [], count: nodes.count)

        // kernelInputs[k]: kernels that k's members read. A kernel grows after the nodes that read
        // it were placed, so `reach` alone misses paths that run through a later member; whether
        // a join closes a cycle is decided on this kernel graph.
        var kernelInputs: [Set<Int>] = []

        func isFloat32(_ id: ValueID) -> Bool { nodes[id].type.dtype == .float32 }
        /// The kernels `input` is read from: its own, or for a view or leaf the ones it reaches.
        func sources(_ input: ValueID) -> Set<Int> { groupOf[input] >= 0 ? [groupOf[input]] : reach[input] }
        /// Whether kernel `start` depends on kernel `target` through any path of kernels.
        func dependsOn(_ start: Int, _ target: Int) -> Bool {
            var stack = [start], seen: Set<Int> = [start]
            while let k = stack.popLast() {
                if k == target { return true }
                for next in kernelInputs[k] where seen.insert(next).inserted { stack.append(next) }
            }
            return false
        }
        /// Moves elementwise kernel `other` into `g` when both share one iteration space and no
        /// path between them runs through a third kernel (which would become a cycle).
        func mergeIfLegal(_ other: Int, into g: Int) {
            guard other >= 0, other != g, groups[other].kind == .elementwise, !groups[other].closed,
                  !groups[g].closed || (groups[g].kind == .reduction
                      && !groups[other].members.contains { nodes[$0].inputs.contains(groups[g].root) }),
                  !groups[other].members.isEmpty, groups[other].space == groups[g].space else { return }
            for k in kernelInputs[g] where k != other && dependsOn(k, other) { return }
            for k in kernelInputs[other] where k != g && dependsOn(k, g) { return }
            for member in groups[other].members { groupOf[member] = g }
            groups[g].members += groups[other].members
            if groups[g].kind == .elementwise { groups[g].root = groups[g].members.max()! }
            groups[other].members = []
            kernelInputs[g].formUnion(kernelInputs[other])
            kernelInputs[g].subtract([g, other])
            kernelInputs[other] = []
            for k in kernelInputs.indices where kernelInputs[k].remove(other) != nil && k != g { kernelInputs[k].insert(g) }
            for n in reach.indices where reach[n].remove(other) != nil { reach[n].insert(g) }
        }
        /// Whether `id` may join kernel `g`: every input outside g must not depend on g.
        func canJoin(_ id: ValueID, _ g: Int) -> Bool {
            for input in nodes[id].inputs where groupOf[input] != g {
                if reach[input].contains(g) { return false }
                for source in sources(input) where source != g && dependsOn(source, g) { return false }
            }
            return true
        }
        // ancestors[n]: every node n depends on, as a bitset (for the look-ahead below).
        let words = (nodes.count + 63) / 64
        var ancestors = [[UInt64]](repeating: [UInt64](repeating: 0, count: words), count: nodes.count)
        for (id, node) in nodes.enumerated() {
            for input in node.inputs {
                for w in 0..<words { ancestors[id][w] |= ancestors[input][w] }
                ancestors[id][input / 64] |= 1 << UInt64(input % 64)
            }
        }
        func dependsOn(_ id: ValueID, anyOf members: [ValueID]) -> Bool {
            members.contains { ancestors[id][$0 / 64] & (1 << UInt64($0 % 64)) != 0 }
        }
        /// Whether elementwise `id` should stay out of producer kernel `g` and be absorbed by its
        /// readers instead: every reader is elementwise over the same space (so `id` never needs
        /// a buffer of its own), and some reader could not join `g`. Joining would store `id` as
        /// an output of `g` and keep it live until that reader runs (a backward-pass mask computed
        /// in a forward kernel would live through the whole step).
        func betterInConsumers(_ id: ValueID, _ g: Int) -> Bool {
            guard !pinned.contains(id), !users[id].isEmpty else { return false }
            let members = groups[g].members + [id]
            var someReaderCannotJoin = false
            for user in users[id] {
                let u = nodes[user]
                guard u.op.fusionCategory == .elementwise, u.type.shape == nodes[id].type.shape,
                      isFloat32(user) else { return false }
                // A later elementwise node of the same space may still join `g` itself (Adam's
                // m̂ term next to its denominator); a value already placed elsewhere may not.
                func mayJoinLater(_ input: ValueID) -> Bool {
                    input > id && nodes[input].op.fusionCategory == .elementwise
                        && nodes[input].type.shape == nodes[id].type.shape
                }
                if u.inputs.contains(where: { !members.contains($0) && dependsOn($0, anyOf: members) && !mayJoinLater($0) }) {
                    someReaderCannotJoin = true
                }
            }
            return someReaderCannotJoin
        }

        for (id, node) in nodes.enumerated() {
            defer {
                var r = Set<Int>()
                for input in node.inputs {
                    r.formUnion(reach[input])
                    if groupOf[input] >= 0 { r.insert(groupOf[input]) }
                }
                reach[id] = r
                let g = groupOf[id]
                if g >= 0 {
                    while kernelInputs.count < groups.count { kernelInputs.append([]) }
                    for input in node.inputs { kernelInputs[g].formUnion(sources(input).subtracting([g])) }
                    // An elementwise node reading two elementwise kernels of its space joined the
                    // first; bring the other in too, so its result need not be stored.
                    if node.op.fusionCategory == .elementwise && groups[g].kind != .single {
                        // An elementwise kernel that now reads an epilogue of its space moves into
                        // it (Adam's v update meets the gradient's epilogue at g²): one pass over
                        // the optimizer state instead of two.
                        // Only where the node joins the two (it read its own kernel's value and
                        // the epilogue's): a node kept out of an epilogue (`betterInConsumers`) stays out.
                        if groups[g].kind == .elementwise, node.inputs.contains(where: { groupOf[$0] == g }) {
                            for input in node.inputs {
                                let e = groupOf[input]
                                guard e >= 0, e != g, groups[e].kind == .epilogue else { continue }
                                mergeIfLegal(g, into: e)
                                if groupOf[id] == e { break }
                            }
                        }
                        let g = groupOf[id]
                        for input in node.inputs { mergeIfLegal(groupOf[input], into: g) }
                    }
                }
            }
            guard node.op.needsKernel else { continue }
            let category = node.op.fusionCategory
            let allFloat = isFloat32(id) && node.inputs.allSatisfy(isFloat32)

            if category == .elementwise && allFloat {
                // Join the kernel of the first producer that shares the iteration space.
                var joined = false
                for input in node.inputs {
                    let g = groupOf[input]
                    // A reduction kernel also takes elementwise nodes over its input's space that
                    // do not read the reduced value (a loss's gradient next to the loss): they are
                    // computed in the same pass, from values still in registers.
                    let joinsReduction = g >= 0 && groups[g].kind == .reduction && !node.inputs.contains(groups[g].root)
                    guard g >= 0, !groups[g].closed || joinsReduction, groups[g].space == node.type.shape,
                          groups[g].kind == .elementwise || groups[g].kind == .epilogue || joinsReduction, canJoin(id, g),
                          !betterInConsumers(id, g) else { continue }
                    groupOf[id] = g
                    groups[g].members.append(id)
                    if groups[g].kind == .elementwise { groups[g].root = id }
                    joined = true
                    break
                }
                if !joined {
                    groups.append(Building(kind: .elementwise, root: id, members: [id], space: node.type.shape))
                    groupOf[id] = groups.count - 1
                }
                continue
            }

            if category == .reduction && allFloat, let input = node.inputs.first, groupOf[input] >= 0 {
                let g = groupOf[input]
                if groups[g].kind == .elementwise, !groups[g].closed, users[input].count == 1, !pinned.contains(input),
                   canJoin(id, g) {
                    groupOf[id] = g
                    groups[g].members.append(id)
                    groups[g].kind = .reduction
                    groups[g].root = id
                    groups[g].closed = true
                    continue
                }
            }

            if category == .outElementwiseFusable && allFloat {
                groups.append(Building(kind: .epilogue, root: id, members: [id], space: node.type.shape))
                groupOf[id] = groups.count - 1
                continue
            }

            groups.append(Building(kind: .single, root: id, members: [id], space: node.type.shape, closed: true))
            groupOf[id] = groups.count - 1
        }

        // A broadcast kernel whose every reader sits in one elementwise kernel of its shape becomes
        // a strided load there. Safe: that reader joined its kernel only because the broadcast's
        // input does not depend on the kernel.
        for (id, node) in nodes.enumerated() {
            guard case .broadcast = node.op, groups[groupOf[id]].members.count == 1, !pinned.contains(id),
                  let first = users[id].first else { continue }
            let g = groupOf[first]
            guard g >= 0, groups[g].kind != .single, groups[g].space == node.type.shape,
                  users[id].allSatisfy({ groupOf[$0] == g }) else { continue }
            groups[groupOf[id]].members = []
            groupOf[id] = g
            groups[g].members.append(id)
        }
        // A pooling whose input is a convolution kernel's only result joins that kernel (see
        // `KernelKind.pooled`): the kernel then stores a quarter of what it computes.
        for (id, node) in nodes.enumerated() {
            switch node.op {
            case .maxPool2d, .avgPool2d: break
            default: continue
            }
            let value = node.inputs[0], g = groupOf[value]
            guard g >= 0, groups[groupOf[id]].members == [id], canPool(groups[g], value: value) else { continue }
            groups[groupOf[id]].members = []
            groupOf[id] = g
            groups[g].members.append(id)
            groups[g].kind = .pooled
            groups[g].closed = true
        }
        /// Whether kernel `group` may compute its value `value` a few images at a time for a pooling:
        /// a convolution root, every member read only inside the kernel (and `value` only by the
        /// pooling), and every other operand the same for each image (a bias, a scalar).
        func canPool(_ group: Building, value: ValueID) -> Bool {
            guard group.kind == .epilogue || group.kind == .single, case .conv2d = nodes[group.root].op,
                  group.members.contains(value), users[value].count == 1, !pinned.contains(value),
                  nodes[value].type.shape.rank == 4 else { return false }
            let members = Set(group.members)
            for member in group.members where member != value {
                if pinned.contains(member) || users[member].contains(where: { !members.contains($0) }) { return false }
            }
            for member in group.members where member != group.root {
                for input in nodes[member].inputs where !members.contains(input) {
                    let dims = nodes[input].type.shape.dims
                    if dims.count == 4 && dims[0] != 1 { return false }
                }
            }
            return true
        }
        groups.removeAll { $0.members.isEmpty }
        for (g, group) in groups.enumerated() { for member in group.members { groupOf[member] = g } }

        // Outputs: members read outside their kernel, read through a view, or pinned.
        func leavesKernel(_ id: ValueID) -> Bool {
            if pinned.contains(id) { return true }
            return users[id].contains { nodes[$0].op.isView || groupOf[$0] != groupOf[id] }
        }
        var kernels = groups.map { b -> KernelGroup in
            let members = b.members.sorted()
            var outputs = members.filter(leavesKernel)
            if b.kind == .reduction && !outputs.contains(b.root) { outputs.append(b.root); outputs.sort() }
            return KernelGroup(kind: members.count == 1 && b.kind != .elementwise ? .single : b.kind,
                               root: b.root, members: members, outputs: outputs)
        }
        // Single-member epilogue kernels are plain singles; single elementwise nodes stay
        // elementwise (they run on the fused evaluator either way).
        for k in kernels.indices where kernels[k].kind == .epilogue && kernels[k].members.count == 1 { kernels[k].kind = .single }
        return topologicalOrder(kernels, groupOf: groupOf, graph: graph)
    }

    /// Kahn's algorithm over the kernel DAG, taking the ready kernel with the smallest root first.
    static func topologicalOrder(_ kernels: [KernelGroup], groupOf: [Int], graph: Graph) -> [KernelGroup] {
        func producer(_ id: ValueID) -> Int { groupOf[graph.viewRoot(id)] }
        var dependents = [[Int]](repeating: [], count: kernels.count)
        var pending = [Int](repeating: 0, count: kernels.count)
        for (k, group) in kernels.enumerated() {
            var sources = Set<Int>()
            for member in group.members {
                for input in graph.nodes[member].inputs {
                    let p = producer(input)
                    if p >= 0 && p != k { sources.insert(p) }
                }
            }
            pending[k] = sources.count
            for s in sources { dependents[s].append(k) }
        }
        var ready = Heap(kernels.indices.filter { pending[$0] == 0 }.map { (kernels[$0].members[0], $0) })
        var order: [KernelGroup] = []
        order.reserveCapacity(kernels.count)
        while let (_, k) = ready.pop() {
            order.append(kernels[k])
            for d in dependents[k] {
                pending[d] -= 1
                if pending[d] == 0 { ready.push((kernels[d].members[0], d)) }
            }
        }
        precondition(order.count == kernels.count, "fusion produced a cycle")
        return order
    }
}

/// A small binary min-heap of (key, payload) pairs.
struct Heap {
    private var items: [(Int, Int)]
    init(_ items: [(Int, Int)]) { self.items = []; for item in items { push(item) } }
    mutating func push(_ item: (Int, Int)) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].0 <= items[i].0 { break }
            items.swapAt(parent, i)
            i = parent
        }
    }
    mutating func pop() -> (Int, Int)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < items.count && items[l].0 < items[smallest].0 { smallest = l }
            if r < items.count && items[r].0 < items[smallest].0 { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
