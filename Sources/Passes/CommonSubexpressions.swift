import KilnGraph

/// Common-subexpression elimination (`cse`): a node equal to an earlier one (same op with the
/// same attributes, same inputs after earlier merges, same type) is replaced by the earlier one.
///
/// Never merged: inputs, parameters and state (they are bindings: two with different names are
/// different values, and the verifier forbids two with one name) and random draws (each has its
/// own stream, so two never compute the same values). Constants merge when their values are
/// bit-identical, so `0` and `-0` stay apart and NaN constants can merge.
///
/// Invariant: every surviving value is computed exactly as before; merged nodes are replaced by
/// the first equal node, which precedes all their readers, so topological order holds. One
/// sweep finds every merge, including chains (`a+b` twice, then `exp` of each), because a node's
/// key uses its inputs after earlier merges. Lookup is one hash per node: linear time.
public struct CommonSubexpressions: Pass {
    public let name = "cse"
    public init() {}

    public func run(_ program: inout Program) throws -> Bool {
        program.requireUnscheduled(for: name)
        var firstOfKind: [NodeKey: ValueID] = [:]
        return GraphRewriter.rewrite(&program.graph) { rewriter, id in
            let node = rewriter.remappedNode(id)
            guard let key = NodeKey(node) else { rewriter.keep(id); return }
            if let earlier = firstOfKind[key] {
                rewriter.replace(id, with: earlier)
            } else {
                firstOfKind[key] = rewriter.keep(id)
            }
        }
    }
}

/// What makes two nodes compute the same value: op, inputs and type, with constants compared by
/// the bits of their values (Double `==` would equate 0 and -0 and never NaN with itself).
private struct NodeKey: Hashable {
    var op: Op
    var constantBits: [UInt64]
    var inputs: [ValueID]
    var type: TensorType

    /// The key of `node`, or nil for nodes that must never merge.
    init?(_ node: Node) {
        guard node.op.isFunctionOfInputs else { return nil }
        if case let .constant(values) = node.op {
            op = .constant(values: [])
            constantBits = values.map(\.bitPattern)
        } else {
            op = node.op
            constantBits = []
        }
        inputs = node.inputs
        type = node.type
    }
}
