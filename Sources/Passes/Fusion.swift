import KilnGraph

/// Operator fusion (`fuse`): groups the graph's nodes into kernels by an ordered list of named
/// rules (`FusionRule.all`), each reading ops only through their `FusionCategory` and the other
/// facts of `OpFacts.swift` (TVM's scheme, simplified), and moving nodes only through a
/// `KernelGraph`:
///
/// - elementwise nodes join a producer's kernel when they share its iteration space, so chains
///   (including the backward graph's, e.g. relu-grad times the incoming gradient, and the
///   optimizer's update arithmetic) become one kernel computed element by element, with several
///   outputs where values leave the kernel;
/// - elementwise nodes after a matmul, conv2d or softmax of the same shape join it as an epilogue
///   (bias add, activation);
/// - a reduction whose input is computed by an elementwise kernel joins it, so the reduced
///   values are never read back (nor stored, unless another kernel reads them); reductions over
///   the same axes of one kernel's values all join it (one pass, several reduced results);
/// - a `broadcast` whose readers all sit in one kernel of its shape becomes a strided load there;
/// - in inference, a pooling joins the convolution kernel it reads;
/// - everything else runs as its own kernel.
///
/// Invariant: a node joins a kernel only if no path leaves the kernel and comes back into it,
/// so the kernels form a DAG; `program.kernels` lists them in a topological order (ready
/// kernels by smallest first member). The graph itself is not changed.
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

    /// The kernels of `graph` in a valid execution order.
    public static func groups(for graph: Graph) -> [KernelGroup] {
        var kernels = KernelGraph(graph)
        apply(FusionRule.all, to: &kernels)
        return kernels.finished()
    }

    /// Runs `rules` over the graph: for each node in graph order, the placing rules until one
    /// places it, then every merging rule; after the last node, every finishing rule over all nodes.
    static func apply(_ rules: [FusionRule], to kernels: inout KernelGraph) {
        let placing = rules.filter { $0.phase == .place }
        let merging = rules.filter { $0.phase == .merge }
        let finishing = rules.filter { $0.phase == .finish }
        for id in kernels.graph.nodes.indices {
            for rule in placing where rule.apply(&kernels, id) {
                if kernels.decisions != nil {
                    kernels.decisions!.append(FusionDecision(rule: rule.name, moving: [id], kernel: [], outcome: .joined))
                }
                break
            }
            for rule in merging { _ = rule.apply(&kernels, id) }
        }
        for rule in finishing { for id in kernels.graph.nodes.indices { _ = rule.apply(&kernels, id) } }
    }

    /// Every rule's decision while fusing `graph` (what `kiln plan --why` reads), and the kernels.
    public static func decisions(for graph: Graph) -> (decisions: [FusionDecision], kernels: [KernelGroup]) {
        var kernels = KernelGraph(graph, recordingDecisions: true)
        apply(FusionRule.all, to: &kernels)
        return (kernels.decisions ?? [], kernels.finished())
    }

    /// Why nodes `a` and `b` of `graph` share a kernel or not: the rule that joined them, or each
    /// rule that refused to, in the order the rules ran (`kiln plan --why A B`).
    public static func explain(_ a: ValueID, _ b: ValueID, in graph: Graph) throws -> String {
        for id in [a, b] where !graph.nodes.indices.contains(id) {
            throw KilnError.argument("--why: the graph has nodes %0 to %\(graph.nodes.count - 1), not %\(id)")
        }
        let (decisions, kernels) = Self.decisions(for: graph)
        func describe(_ id: ValueID) -> String { "%\(id) \(graph.nodes[id].op.name)" }
        var lines: [String] = []
        for id in [a, b] where !graph.nodes[id].op.needsKernel {
            lines.append("\(describe(id)) needs no kernel (a \(graph.nodes[id].op.isView ? "view of its operand's buffer" : "leaf")): no rule places it")
        }
        if !lines.isEmpty { return lines.joined(separator: "\n") }
        let between = decisions.filter { d in
            (d.moving.contains(a) && d.kernel.contains(b)) || (d.moving.contains(b) && d.kernel.contains(a))
        }
        let kernelOfA = kernels.firstIndex { $0.members.contains(a) }!
        let kernelOfB = kernels.firstIndex { $0.members.contains(b) }!
        if kernelOfA == kernelOfB {
            let k = kernels[kernelOfA]
            lines.append("\(describe(a)) and \(describe(b)) are fused: kernel \(kernelOfA) (\(k.kind.rawValue), root %\(k.root)) holds both")
        } else {
            lines.append("\(describe(a)) and \(describe(b)) are in different kernels: \(kernelOfA) (\(kernels[kernelOfA].kind.rawValue)) and \(kernelOfB) (\(kernels[kernelOfB].kind.rawValue))")
        }
        for d in between {
            let what = d.moving.count == 1 ? describe(d.moving[0]) : "kernel of " + d.moving.map { "%\($0)" }.joined(separator: " ")
            switch d.outcome {
            case .joined: lines.append("  \(d.rule): \(what) joined the kernel of \(d.kernel.map { "%\($0)" }.joined(separator: " "))")
            case let .refused(reason): lines.append("  \(d.rule) kept \(what) out of the kernel of \(d.kernel.map { "%\($0)" }.joined(separator: " ")): \(reason)")
            }
        }
        if between.isEmpty && kernelOfA != kernelOfB {
            lines.append("  no rule considered putting them together: neither was placed next to a kernel holding the other, and no merge met them")
            for id in [a, b] {
                if let placed = decisions.last(where: { $0.moving == [id] && $0.outcome == .joined }) {
                    lines.append("  \(describe(id)) was placed by rule \(placed.rule)")
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// One named fusion rule: a short function that looks at one node and may place it in a kernel
/// or merge kernels, through the `KernelGraph`.
struct FusionRule: Sendable {
    enum Phase: Sendable {
        /// Places a node that is not in a kernel yet (the first placing rule that returns true wins).
        case place
        /// Runs after a node is placed, and may merge its kernel with others.
        case merge
        /// Runs over every node once all are placed.
        case finish
    }
    let name: String
    let phase: Phase
    let apply: @Sendable (inout KernelGraph, ValueID) -> Bool

    /// The rules, in the order they run.
    static let all: [FusionRule] = [
        FusionRule(name: "no-kernel", phase: .place, apply: { noKernel(&$0, $1) }),
        FusionRule(name: "elementwise-joins-producer", phase: .place, apply: { elementwiseJoinsProducer(&$0, $1) }),
        FusionRule(name: "elementwise-starts-kernel", phase: .place, apply: { elementwiseStartsKernel(&$0, $1) }),
        FusionRule(name: "reduction-takes-prologue", phase: .place, apply: { reductionTakesPrologue(&$0, $1) }),
        FusionRule(name: "epilogue-root", phase: .place, apply: { epilogueRoot(&$0, $1) }),
        FusionRule(name: "single", phase: .place, apply: { single(&$0, $1) }),
        FusionRule(name: "elementwise-kernel-into-epilogue", phase: .merge, apply: { elementwiseKernelIntoEpilogue(&$0, $1) }),
        FusionRule(name: "elementwise-kernels-merge", phase: .merge, apply: { elementwiseKernelsMerge(&$0, $1) }),
        FusionRule(name: "broadcast-as-strided-load", phase: .finish, apply: { broadcastAsStridedLoad(&$0, $1) }),
        FusionRule(name: "pooling-joins-convolution", phase: .finish, apply: { poolingJoinsConvolution(&$0, $1) }),
    ]

    /// Whether `id` and its operands are all float32 (the fused evaluator's type).
    static func allFloat32(_ k: KernelGraph, _ id: ValueID) -> Bool {
        k.node(id).type.dtype == .float32 && k.node(id).inputs.allSatisfy { k.node($0).type.dtype == .float32 }
    }

    /// `no-kernel`: leaves and views are not computed by any kernel.
    static func noKernel(_ k: inout KernelGraph, _ id: ValueID) -> Bool { !k.node(id).op.needsKernel }

    /// `elementwise-joins-producer`: a float32 elementwise node joins the kernel of its first
    /// operand's producer that shares its iteration space: an elementwise kernel, an epilogue, or
    /// a reduction's prologue when the node does not read the reduced value (a loss's gradient
    /// next to the loss, computed from values still in registers).
    static func elementwiseJoinsProducer(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.fusionCategory == .elementwise, allFloat32(k, id) else { return false }
        for input in node.inputs {
            guard let g = k.kernel(of: input) else { continue }
            let kernel = k.kernels[g]
            let joinsReduction = kernel.kind == .reduction && !k.readsReducedValue(id, of: g)
            let refusal: String? =
                kernel.closed && !joinsReduction ? (kernel.kind == .reduction ? "it reads the reduced value" : "the \(kernel.kind.rawValue) kernel is closed")
                : kernel.space != node.type.shape ? "iteration spaces differ (\(kernel.space) vs \(node.type.shape))"
                : !(kernel.kind == .elementwise || kernel.kind == .epilogue || joinsReduction) ? "a \(kernel.kind.rawValue) kernel takes no elementwise node"
                : k.wouldCloseCycle(adding: id, to: g) ? "an operand from outside depends on the kernel (a cycle)"
                : betterInReaders(k, id, g) ? "its readers will absorb it (joining would store it and keep it live)"
                : kernel.kind == .epilogue && reducedByReader(k, id)
                    ? "a reduction reads it: a kernel of its own computes and reduces it in one pass (the epilogue would store it for a reduction kernel to read back)"
                : nil
            if let refusal {
                k.note("elementwise-joins-producer", moving: [id], into: g, .refused(refusal))
                continue
            }
            k.note("elementwise-joins-producer", moving: [id], into: g, .joined)
            k.add(id, to: g)
            if kernel.kind == .elementwise { k.reshape(g, kind: .elementwise, root: id, closed: false) }
            return true
        }
        return false
    }

    /// Whether elementwise `id` should stay out of producer kernel `g` and be absorbed by its
    /// readers instead: every reader is elementwise over the same space (so `id` never needs
    /// a buffer of its own), and some reader could not join `g`. Joining would store `id` as
    /// an output of `g` and keep it live until that reader runs (a backward-pass mask computed
    /// in a forward kernel would live through the whole step).
    static func betterInReaders(_ k: KernelGraph, _ id: ValueID, _ g: Int) -> Bool {
        guard !k.pinned.contains(id), !k.users[id].isEmpty else { return false }
        let members = k.kernels[g].members + [id]
        let shape = k.node(id).type.shape
        var someReaderCannotJoin = false
        for user in k.users[id] {
            let u = k.node(user)
            guard u.op.fusionCategory == .elementwise, u.type.shape == shape, u.type.dtype == .float32 else { return false }
            // A later elementwise node of the same space may still join `g` itself (Adam's
            // m̂ term next to its denominator); a value already placed elsewhere may not.
            func mayJoinLater(_ input: ValueID) -> Bool {
                input > id && k.node(input).op.fusionCategory == .elementwise && k.node(input).type.shape == shape
            }
            if u.inputs.contains(where: { !members.contains($0) && k.ancestry.dependsOn($0, anyOf: members) && !mayJoinLater($0) }) {
                someReaderCannotJoin = true
            }
        }
        return someReaderCannotJoin
    }

    /// Whether a reduction reads elementwise `id` directly, or through an elementwise reader of
    /// its space (batch norm's `square(x − K)` under its mean). An epilogue cannot reduce, so in
    /// one `id` would be stored and read back by a reduction kernel; in a kernel of its own, the
    /// reduction takes it as a prologue instead (ResNet-20's batch norms: the epilogue's
    /// `x − K, (x − K)²` stored both and two lone means read them back).
    static func reducedByReader(_ k: KernelGraph, _ id: ValueID) -> Bool {
        let shape = k.node(id).type.shape
        return k.users[id].contains { user in
            let u = k.node(user)
            if u.op.fusionCategory == .reduction { return true }
            return u.op.fusionCategory == .elementwise && u.type.shape == shape
                && k.users[user].contains { k.node($0).op.fusionCategory == .reduction }
        }
    }

    /// `elementwise-starts-kernel`: a float32 elementwise node that joined no producer starts its own kernel.
    static func elementwiseStartsKernel(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        guard k.node(id).op.fusionCategory == .elementwise, allFloat32(k, id) else { return false }
        k.open(.elementwise, with: id)
        return true
    }

    /// `reduction-takes-prologue`: a float32 reduction joins the elementwise kernel computing its
    /// input, so the values it reduces are summed as they are computed: stored only when another
    /// kernel reads them too (the kernel then writes and reduces them in one pass), never read
    /// back. A reduction over the same axes of another member of a reduction kernel joins that
    /// kernel as one more result (batch norm's backward: the sums of dy and of dy·x̂ per channel,
    /// one pass over the activations for all of them).
    static func reductionTakesPrologue(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.fusionCategory == .reduction, allFloat32(k, id), let input = node.inputs.first,
              let g = k.kernel(of: input) else { return false }
        let kernel = k.kernels[g]
        let refusal: String? =
            kernel.kind != .elementwise && kernel.kind != .reduction
                ? "its input is computed by the \(kernel.kind.rawValue) kernel, not by an elementwise one"
            : kernel.kind == .elementwise && kernel.closed ? "the kernel is closed"
            : k.node(input).op.fusionCategory == .reduction ? "its input %\(input) is a reduced value of the kernel"
            : kernel.kind == .reduction && k.node(input).type.shape != kernel.space
                ? "iteration spaces differ (\(kernel.space) vs \(k.node(input).type.shape))"
            : kernel.kind == .reduction && reducedAxes(k, id) != reducedAxes(k, kernel.root)
                ? "it reduces other axes than the kernel's reduction %\(kernel.root)"
            : k.wouldCloseCycle(adding: id, to: g) ? "an operand from outside depends on the kernel (a cycle)"
            : nil
        if let refusal {
            k.note("reduction-takes-prologue", moving: [id], into: g, .refused(refusal))
            return false
        }
        k.note("reduction-takes-prologue", moving: [id], into: g, .joined)
        k.add(id, to: g)
        if kernel.kind == .elementwise { k.reshape(g, kind: .reduction, root: id, closed: true) }
        return true
    }

    /// The axes reduction `id` reduces, sorted.
    static func reducedAxes(_ k: KernelGraph, _ id: ValueID) -> [Int] {
        guard case let .reduce(_, axes, _) = k.node(id).op else { return [] }
        return axes.sorted()
    }

    /// `epilogue-root`: a float32 matmul, conv2d or softmax starts a kernel that elementwise
    /// readers of its shape may join as its epilogue.
    static func epilogueRoot(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        guard k.node(id).op.fusionCategory == .outElementwiseFusable, allFloat32(k, id) else { return false }
        k.open(.epilogue, with: id)
        return true
    }

    /// `single`: everything else runs alone (opaque ops, and any op not all float32).
    static func single(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        k.open(.single, with: id, closed: true)
        return true
    }

    /// `elementwise-kernel-into-epilogue`: when an elementwise node joins its own kernel's value
    /// to an epilogue's value of the same space, the elementwise kernel moves into the epilogue
    /// (Adam's v update meets the gradient's epilogue at g²): one pass over the optimizer state
    /// instead of two. Only where the node joins the two: a node kept out of an epilogue
    /// (`betterInReaders`) stays out.
    static func elementwiseKernelIntoEpilogue(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.fusionCategory == .elementwise, let g = k.kernel(of: id), k.kernels[g].kind == .elementwise,
              node.inputs.contains(where: { k.kernelOf[$0] == g }) else { return false }
        for input in node.inputs {
            guard let e = k.kernel(of: input), e != g, k.kernels[e].kind == .epilogue else { continue }
            mergeIfLegal(&k, g, into: e, rule: "elementwise-kernel-into-epilogue")
            if k.kernelOf[id] == e { return true }
        }
        return false
    }

    /// `elementwise-kernels-merge`: an elementwise node that reads several elementwise kernels of
    /// its space joined the first; the others move in too, so their results need not be stored.
    static func elementwiseKernelsMerge(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.fusionCategory == .elementwise, let g = k.kernel(of: id), k.kernels[g].kind != .single else { return false }
        var merged = false
        for input in node.inputs {
            guard let other = k.kernel(of: input) else { continue }
            // A node kept out of its producer's kernel for its readers (`betterInReaders`: a
            // ReLU mask computed in the forward pass but read in the backward one) does not pull
            // that kernel in either, which would store it there all the same, when what it reads
            // from there is stored anyway (read by other kernels too).
            if other != g && k.kernels[g].members == [id] && k.kernels[other].kind == .elementwise
                && readsOnlyStoredValues(k, id, of: other) && betterInReaders(k, id, other) {
                k.note("elementwise-kernels-merge", moving: k.kernels[other].members, into: g,
                       .refused("its readers will absorb %\(id) (the merge would store it and keep it live)"))
                continue
            }
            merged = mergeIfLegal(&k, other, into: g, rule: "elementwise-kernels-merge") || merged
        }
        return merged
    }

    /// Whether every value `id` reads from kernel `other` leaves that kernel anyway (pinned, or
    /// read by a node outside it besides `id`).
    static func readsOnlyStoredValues(_ k: KernelGraph, _ id: ValueID, of other: Int) -> Bool {
        k.node(id).inputs.filter { k.kernelOf[$0] == other }.allSatisfy { input in
            k.pinned.contains(input) || k.users[input].contains { $0 != id && k.kernelOf[$0] != other }
        }
    }

    /// Moves elementwise kernel `other` into `g` when both share one iteration space and no path
    /// between them runs through a third kernel (which would become a cycle).
    @discardableResult
    static func mergeIfLegal(_ k: inout KernelGraph, _ other: Int, into g: Int, rule: String) -> Bool {
        guard other != g, !k.kernels[other].members.isEmpty else { return false }
        let source = k.kernels[other], target = k.kernels[g]
        let refusal: String? =
            source.kind != .elementwise ? nil  // only elementwise kernels move; nothing to explain
            : source.closed ? "the moving kernel is closed"
            : target.closed && !(target.kind == .reduction && !source.members.contains { k.readsReducedValue($0, of: g) })
                ? (target.kind == .reduction ? "the moving kernel reads the reduced value" : "the \(target.kind.rawValue) kernel is closed")
            : source.space != target.space ? "iteration spaces differ (\(source.space) vs \(target.space))"
            : k.mergeWouldCloseCycle(other, into: g) ? "a path between the kernels runs through a third kernel (a cycle)"
            : ""
        guard refusal == "" else {
            if let refusal { k.note(rule, moving: source.members, into: g, .refused(refusal)) }
            return false
        }
        k.note(rule, moving: source.members, into: g, .joined)
        k.merge(other, into: g)
        return true
    }

    /// `broadcast-as-strided-load`: a broadcast kernel whose every reader sits in one fused kernel
    /// of its shape becomes a strided load there. Safe: that reader joined its kernel only because
    /// the broadcast's input does not depend on the kernel.
    static func broadcastAsStridedLoad(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.fusionCategory == .broadcast, let own = k.kernel(of: id), k.kernels[own].members.count == 1,
              !k.pinned.contains(id), let first = k.users[id].first, let g = k.kernel(of: first) else { return false }
        let kernel = k.kernels[g]
        let refusal: String? =
            kernel.kind == .single ? "its first reader runs alone"
            : kernel.space != node.type.shape ? "iteration spaces differ (\(kernel.space) vs \(node.type.shape))"
            : !k.users[id].allSatisfy({ k.kernelOf[$0] == g }) ? "its readers sit in several kernels"
            : nil
        if let refusal {
            k.note("broadcast-as-strided-load", moving: [id], into: g, .refused(refusal))
            return false
        }
        k.note("broadcast-as-strided-load", moving: [id], into: g, .joined)
        k.absorb(id, into: g)
        return true
    }

    /// `pooling-joins-convolution`: a pooling whose input is a convolution kernel's only result
    /// joins that kernel (`KernelKind.pooled`): the kernel then stores a quarter of what it computes.
    static func poolingJoinsConvolution(_ k: inout KernelGraph, _ id: ValueID) -> Bool {
        let node = k.node(id)
        guard node.op.pooledKernelRole == .pooling, let g = k.kernel(of: node.inputs[0]), let own = k.kernel(of: id),
              k.kernels[own].members == [id] else { return false }
        if let refusal = whyNotPooled(k, g, value: node.inputs[0]) {
            k.note("pooling-joins-convolution", moving: [id], into: g, .refused(refusal))
            return false
        }
        k.note("pooling-joins-convolution", moving: [id], into: g, .joined)
        k.absorb(id, into: g)
        k.reshape(g, kind: .pooled, root: k.kernels[g].root, closed: true)
        return true
    }

    /// Why kernel `g` may not compute its value `value` a few images at a time for a pooling
    /// (nil if it may): it needs a convolution root, every member read only inside the kernel
    /// (and `value` only by the pooling), and every other operand the same for each image (a
    /// bias, a scalar).
    static func whyNotPooled(_ k: KernelGraph, _ g: Int, value: ValueID) -> String? {
        let kernel = k.kernels[g]
        guard kernel.kind == .epilogue || kernel.kind == .single, k.node(kernel.root).op.pooledKernelRole == .convolution else {
            return "its input is not computed by a convolution kernel"
        }
        guard kernel.members.contains(value), k.users[value].count == 1, !k.pinned.contains(value),
              k.node(value).type.shape.rank == 4 else { return "its input is read elsewhere or stored" }
        let members = Set(kernel.members)
        for member in kernel.members where member != value {
            if k.pinned.contains(member) || k.users[member].contains(where: { !members.contains($0) }) {
                return "kernel member %\(member) is read outside the kernel"
            }
        }
        for member in kernel.members where member != kernel.root {
            for input in k.node(member).inputs where !members.contains(input) {
                let dims = k.node(input).type.shape.dims
                if dims.count == 4 && dims[0] != 1 { return "epilogue operand %\(input) differs per image" }
            }
        }
        return nil
    }
}
