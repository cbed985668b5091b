import KilnGraph

/// Algebraic simplification (`simplify-algebra`): removes operations that do nothing and merges
/// pairs of data movements.
///
/// Rewrites (a "constant c" is a constant whose elements all equal c, of any shape):
/// - `x * 1`, `1 * x`, `x + 0`, `0 + x`, `x - 0`, `x / 1`, `x ** 1`, `neg(neg(x))` → `x`;
/// - `transpose(transpose(x, p), q)` → `transpose(x, p∘q)`, or `x` if the composition is the identity;
/// - `reshape(reshape(x))` → one reshape of `x`; a reshape to `x`'s own shape → `x`;
/// - `broadcast` to `x`'s own shape, `cast` to `x`'s own dtype, a reduction over no axes → `x`;
/// - `stop_gradient(x)` → `x` (compiled graphs hold their gradients already);
/// - `select(c, a, b)` with constant `c` → `a` if c ≠ 0, else `b` (a NaN condition is left alone).
///
/// Not rewritten: `x * 0` → 0, because `inf * 0` and `NaN * 0` are NaN, not 0; likewise `x - x`.
///
/// Invariant: a rewrite applies only when the replacement has exactly the node's type (shape
/// and dtype), so `x + 0` where the 0 broadcasts `x` to a bigger shape is left alone, and every
/// value keeps its type. Values are unchanged with one IEEE nuance: `-0 + 0` is `+0`, so folding
/// `x + 0` may turn a result of `+0` into `-0`, which compares equal (XLA folds it too).
/// Replaced nodes stay in the graph for `dce`. Matching looks at the rewritten inputs, so
/// chains (`neg` four times, three reshapes) collapse in one sweep.
public struct AlgebraicSimplification: Pass {
    public let name = "simplify-algebra"
    public init() {}

    public func run(_ program: inout Program) throws -> Bool {
        program.requireUnscheduled(for: name)
        // A splat test scans a constant's values; caching it per value keeps the pass linear
        // when one large constant has many readers.
        var splatValues: [ValueID: Double?] = [:]
        return GraphRewriter.rewrite(&program.graph) { rewriter, id in
            let node = rewriter.remappedNode(id)
            // Reads `rewriter.graph` in place: a local copy would make the next append copy every node.
            let simplification = simplified(node, in: rewriter.graph) { value in
                if let known = splatValues[value] { return known }
                let splat = rewriter.graph[value].splatValue
                splatValues[value] = splat
                return splat
            }
            switch simplification {
            case nil:
                rewriter.keep(id)
            case let .existing(value)?:
                rewriter.replace(id, with: value)
            case let .new(replacement)?:
                rewriter.replace(id, withNew: replacement)
            }
        }
    }

    /// What a node simplifies to.
    private enum Simplification {
        /// A value already in the graph.
        case existing(ValueID)
        /// A new node (inputs in the rewritten graph).
        case new(Node)
    }

    /// The simplification of `node` (inputs already in `graph`), or nil if none applies;
    /// `splatValue` gives a value's splat constant, if it is one.
    private func simplified(_ node: Node, in graph: Graph, splatValue: (ValueID) -> Double?) -> Simplification? {
        /// `value` if it has exactly the node's type.
        func same(_ value: ValueID) -> Simplification? { graph[value].type == node.type ? .existing(value) : nil }
        func isSplat(_ value: ValueID, _ c: Double) -> Bool { splatValue(value) == c }

        switch node.op {
        case let .binary(f):
            let a = node.inputs[0], b = node.inputs[1]
            switch f {
            case .mul:
                if isSplat(b, 1), let r = same(a) { return r }
                if isSplat(a, 1), let r = same(b) { return r }
            case .add:
                if isSplat(b, 0), let r = same(a) { return r }
                if isSplat(a, 0), let r = same(b) { return r }
            case .sub:
                if isSplat(b, 0) { return same(a) }
            case .div:
                if isSplat(b, 1) { return same(a) }
            default: break
            }
            return nil

        case .unary(.neg):
            let x = graph[node.inputs[0]]
            if case .unary(.neg) = x.op { return same(x.inputs[0]) }
            return nil

        case let .power(exponent):
            return exponent == 1 ? same(node.inputs[0]) : nil

        case let .transpose(outer):
            let x = graph[node.inputs[0]]
            guard case let .transpose(inner) = x.op else { return nil }
            // Result axis i of the outer transpose is inner axis outer[i], which is source axis inner[outer[i]].
            let composed = outer.map { inner[$0] }
            if composed == Array(composed.indices) { return same(x.inputs[0]) }
            return .new(Node(op: .transpose(permutation: composed), inputs: [x.inputs[0]], type: node.type))

        case let .reshape(shape):
            var source = node.inputs[0]
            if case .reshape = graph[source].op { source = graph[source].inputs[0] }
            if graph[source].type.shape == shape { return same(source) }
            if source == node.inputs[0] { return nil }
            return .new(Node(op: .reshape(shape), inputs: [source], type: node.type))

        case .broadcast, .cast, .stopGradient:
            return same(node.inputs[0])

        case let .reduce(_, axes, _):
            return axes.isEmpty ? same(node.inputs[0]) : nil

        case .select:
            guard let condition = splatValue(node.inputs[0]) else { return nil }
            return same(condition != 0 ? node.inputs[1] : node.inputs[2])

        default:
            return nil
        }
    }
}
