import KilnGraph

/// Evaluates one op on constant inputs, for constant folding. The runtime's reference
/// interpreter provides it; passes cannot import the runtime, which sits above them.
public protocol ConstantEvaluator {
    /// The values of `op` applied to constants of the given types and values, or nil if it cannot.
    func evaluate(_ op: Op, inputs: [(type: TensorType, values: [Double])], resultType: TensorType) -> [Double]?
}

/// Options that shape the standard pipeline.
public struct PipelineOptions {
    /// Folds constant subgraphs when given.
    public var evaluator: ConstantEvaluator?
    public init(evaluator: ConstantEvaluator? = nil) { self.evaluator = evaluator }
}

/// Every pass, listed once (Glow's `FunctionPasses.def`): names in standard pipeline order and
/// how to make each.
public enum PassRegistry {
    /// Names of the standard pipeline, in order. Append new stages at the end.
    ///
    /// Simplification runs each pass once, no fixpoint loop: folding cascades within its sweep
    /// and leaves no constant-only node behind; `simplify-algebra` then removes no-ops, `cse`
    /// merges what that made equal, and `dce` last removes everything the others bypassed. A
    /// second round finds nothing on the zoo's graphs (tested). The one known gap: a `select`
    /// with a constant condition that picks a constant branch can leave a node reading only
    /// constants; it is computed at run time, correctly, just not folded.
    public static let standardNames: [String] = simplificationNames + ["fuse", "schedule", "plan-memory"]

    /// The graph simplification passes, in pipeline order.
    public static let simplificationNames = ["fold-constants", "simplify-algebra", "cse", "dce"]

    /// The pass called `name`, or nil if there is none.
    public static func make(_ name: String, options: PipelineOptions) -> Pass? {
        switch name {
        case "fold-constants": return ConstantFolding(evaluator: options.evaluator)
        case "simplify-algebra": return AlgebraicSimplification()
        case "cse": return CommonSubexpressions()
        case "dce": return DeadCode()
        case "fuse": return Fusion()
        case "schedule": return Scheduling()
        case "plan-memory": return MemoryPlanning()
        default: return nil
        }
    }

    /// The standard pipeline: simplification, fusion, scheduling, memory planning.
    public static func standardPipeline(options: PipelineOptions = PipelineOptions()) -> PassManager {
        PassManager(passes: standardNames.compactMap { make($0, options: options) })
    }
}
