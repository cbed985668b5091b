import KilnGraph

/// Constant folding (`fold-constants`): a node whose inputs are all constants is replaced by a
/// constant holding its result, computed by a `ConstantEvaluator` (the runtime's interpreter).
///
/// Rewrites: any non-leaf node whose every input is a `constant` and whose result has at most
/// `maximumElements` elements. Random draws, inputs, parameters and state are never folded
/// (random ops are leaves; the others change between steps). A result whose values are all
/// equal becomes a one-value (splat) constant. Folding cascades within one sweep: a folded
/// node is a constant for the nodes after it.
///
/// Invariant: every value keeps its type, and its value is what the evaluator computes, which
/// is what the interpreter would compute at run time (rounded to the node's dtype). A node the
/// evaluator declines (for example an int32 division by zero, which is a run-time error) is
/// left alone. The folded-away inputs stay in the graph; `dce` removes them.
public struct ConstantFolding: Pass {
    public let name = "fold-constants"
    /// Computes folded values; without one the pass changes nothing.
    public var evaluator: ConstantEvaluator?
    /// Results larger than this stay computed at run time, so constants never bloat the graph.
    public var maximumElements = 65_536

    /// Folding with `evaluator` (nil: the pass is a no-op).
    public init(evaluator: ConstantEvaluator?) { self.evaluator = evaluator }

    public func run(_ program: inout Program) throws -> Bool {
        program.requireUnscheduled(for: name)
        guard let evaluator else { return false }
        return GraphRewriter.rewrite(&program.graph) { rewriter, id in
            let node = rewriter.remappedNode(id)
            guard !node.op.isLeaf, node.type.shape.count <= maximumElements,
                  node.inputs.allSatisfy({ rewriter.graph[$0].isConstant }) else {
                rewriter.keep(id)
                return
            }
            let inputs = node.inputs.map { input -> (type: TensorType, values: [Double]) in
                let constant = rewriter.graph[input]
                guard case let .constant(values) = constant.op else { preconditionFailure("checked above") }
                return (constant.type, values)
            }
            guard let values = evaluator.evaluate(node.op, inputs: inputs, resultType: node.type),
                  values.count == node.type.shape.count else {
                rewriter.keep(id)
                return
            }
            // Bit equality, so a mix of 0 and -0 (or of NaN payloads) is not flattened into one value.
            let splat = values.first.map { first in values.allSatisfy { $0.bitPattern == first.bitPattern } } ?? false
            rewriter.replace(id, withNew: Node(op: .constant(values: splat ? [values[0]] : values), inputs: [], type: node.type))
        }
    }
}
