import KilnGraph

/// Rebuilds a graph node by node, the shared engine of the simplification passes.
///
/// A pass visits the source nodes in order and, for each, either keeps it (its inputs remapped),
/// replaces it by a value already in the result or by a new node, or drops it. Because every
/// node is decided after the nodes it reads, the result stays in topological order, and a pass
/// that pattern-matches on the *result* nodes (`graph[mapped(input)]`) sees earlier rewrites, so
/// chains such as `neg(neg(neg(neg x)))` collapse in one sweep. `finish()` remaps outputs and
/// updates. Kept and replacing nodes keep their source location.
///
/// `changed` is tracked from the decisions themselves rather than by comparing graphs: a
/// constant holding NaN is not `==` to itself, so a comparison would misreport "changed".
public struct GraphRewriter {
    /// The graph being rewritten.
    public let source: Graph
    /// The result so far: ids here are "new" ids.
    public private(set) var graph = Graph()
    /// Whether any decision so far differs from keeping every node as it was.
    public private(set) var changed = false
    /// For every source node already decided, its new id (-1 when dropped).
    private var newIDs: [ValueID] = []

    /// Starts rewriting `source`.
    public init(_ source: Graph) {
        self.source = source
        graph.nodes.reserveCapacity(source.nodes.count)
        newIDs.reserveCapacity(source.nodes.count)
    }

    /// The id of the next source node to decide.
    public var nextSourceID: ValueID { newIDs.count }

    /// The new id of source value `old`, which must be decided and not dropped.
    public func mapped(_ old: ValueID) -> ValueID {
        let id = newIDs[old]
        precondition(id >= 0, "%\(old) was dropped but is still read")
        return id
    }

    /// Source node `old` with its inputs mapped to new ids (not yet in the result).
    public func remappedNode(_ old: ValueID) -> Node {
        var node = source.nodes[old]
        node.inputs = node.inputs.map(mapped)
        return node
    }

    /// Appends source node `old`, inputs remapped; returns its new id.
    @discardableResult
    public mutating func keep(_ old: ValueID) -> ValueID {
        precondition(old == nextSourceID, "nodes must be decided in order")
        let node = remappedNode(old)
        if node.inputs != source.nodes[old].inputs || graph.nodes.count != old { changed = true }
        graph.nodes.append(node)
        newIDs.append(graph.nodes.count - 1)
        return graph.nodes.count - 1
    }

    /// Makes source node `old` stand for `replacement`, a value already in the result.
    public mutating func replace(_ old: ValueID, with replacement: ValueID) {
        precondition(old == nextSourceID, "nodes must be decided in order")
        precondition(replacement >= 0 && replacement < graph.nodes.count, "replacement %\(replacement) is not in the result")
        precondition(graph.nodes[replacement].type == source.nodes[old].type,
                     "replacement of %\(old) has type \(graph.nodes[replacement].type), not \(source.nodes[old].type)")
        changed = true
        newIDs.append(replacement)
    }

    /// Appends `node` (inputs are new ids) in place of source node `old`; it takes `old`'s
    /// location. Returns its new id.
    @discardableResult
    public mutating func replace(_ old: ValueID, withNew node: Node) -> ValueID {
        var node = node
        node.location = source.nodes[old].location
        let id = append(node)
        replace(old, with: id)
        return id
    }

    /// Appends a node (inputs are new ids) that stands for no source node, e.g. a helper
    /// constant; returns its new id.
    @discardableResult
    public mutating func append(_ node: Node) -> ValueID {
        precondition(node.inputs.allSatisfy { $0 >= 0 && $0 < graph.nodes.count }, "appended node reads a value not yet in the result")
        changed = true
        graph.nodes.append(node)
        return graph.nodes.count - 1
    }

    /// Removes source node `old`: no later node, output or update may read it.
    public mutating func drop(_ old: ValueID) {
        precondition(old == nextSourceID, "nodes must be decided in order")
        changed = true
        newIDs.append(-1)
    }

    /// The rewritten graph with outputs and updates remapped; every source node must be decided.
    public func finish() -> Graph {
        precondition(newIDs.count == source.nodes.count, "\(source.nodes.count - newIDs.count) nodes left undecided")
        var result = graph
        result.outputs = source.outputs.map { NamedValue(name: $0.name, value: mapped($0.value)) }
        result.updates = source.updates.map { Update(target: mapped($0.target), value: mapped($0.value)) }
        return result
    }

    /// Rewrites `graph` in place by calling `decide` once per source node, in order; `decide`
    /// must keep, replace or drop exactly that node. Returns whether anything changed; when
    /// nothing did, `graph` is left untouched.
    public static func rewrite(_ graph: inout Graph, _ decide: (inout GraphRewriter, ValueID) -> Void) -> Bool {
        var rewriter = GraphRewriter(graph)
        for id in graph.nodes.indices {
            decide(&rewriter, id)
            precondition(rewriter.nextSourceID == id + 1, "%\(id) was not decided exactly once")
        }
        guard rewriter.changed else { return false }
        graph = rewriter.finish()
        return true
    }
}

extension Node {
    /// The value of every element when the node is a constant whose values are all equal
    /// (one value, or many identical ones), else nil. NaN never counts as a splat value.
    public var splatValue: Double? {
        guard case let .constant(values) = op, let first = values.first else { return nil }
        return values.allSatisfy({ $0 == first }) ? first : nil
    }

    /// Whether the node is a constant.
    public var isConstant: Bool { if case .constant = op { return true } else { return false } }
}

extension Program {
    /// Checks that a graph pass runs before fusion and memory planning, which record node ids
    /// that a graph rewrite would invalidate.
    func requireUnscheduled(for pass: String) {
        precondition(kernels == nil && memory == nil, "\(pass) rewrites the graph and must run before fusion and memory planning")
    }
}
