import KilnGraph
import KilnPasses

/// Folds constants with the reference interpreter: builds a graph of constant leaves and the
/// one op, runs it, and returns the result. So folded values are exactly what the interpreter
/// computes at run time, rounding to the result's dtype included.
public struct InterpreterConstantEvaluator: ConstantEvaluator {
    public init() {}

    /// The values of `op` on the given constants, or nil when the op is a leaf, the types do not
    /// satisfy its rule, or evaluation fails (for example an int32 result that does not fit).
    public func evaluate(_ op: Op, inputs: [(type: TensorType, values: [Double])], resultType: TensorType) -> [Double]? {
        guard !op.isLeaf else { return nil }
        var graph = Graph()
        for input in inputs {
            graph.nodes.append(Node(op: .constant(values: input.values), inputs: [], type: input.type))
        }
        graph.nodes.append(Node(op: op, inputs: Array(inputs.indices), type: resultType))
        guard (try? graph.verify()) != nil,
              let values = try? Interpreter(graph: graph).run(inputs: [:]) else { return nil }
        return values.last?.scalars
    }
}
