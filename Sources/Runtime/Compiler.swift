import KilnGraph
import KilnPasses

/// The standard compiler pipeline with the reference interpreter as constant evaluator.
public func standardPipeline() -> PassManager {
    PassRegistry.standardPipeline(options: PipelineOptions(evaluator: InterpreterConstantEvaluator()))
}
