import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime

/// Accuracy and mean loss of a classifier on a labelled data set.
public struct Evaluation: Sendable {
    public var accuracy: Double
    public var loss: Double
    public var count: Int
    /// confusion[true][predicted]
    public var confusion: [[Int]]
}

/// Trains and evaluates one classifier. Programs are compiled per distinct batch size on first
/// use and cached; all of them share one `ParameterStore`, so evaluating mid-training copies nothing.
public final class ClassifierTrainer {
    public let model: ClassifierModel
    public let optimizer: Optimizer
    /// The program cache, compile timer and epoch loop shared with `GenerativeTrainer`.
    public let core: TrainingCore
    public var store: ParameterStore { core.store }
    public var threads: Int { core.threads }
    public var seed: UInt64 { core.seed }
    /// Seconds spent compiling programs so far.
    public var compileSeconds: Double { core.compileSeconds }

    public init(model: ClassifierModel, optimizer: Optimizer, seed: UInt64 = 0, threads: Int = defaultThreadCount(),
                store: ParameterStore? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.core = TrainingCore(store: store ?? ParameterStore(seed: seed), threads: threads, seed: seed)
    }

    /// The training graph for one batch size: inputs `x` [B, C, H, W], `labels` i32 [B], `lr` scalar;
    /// outputs `loss` (batch mean of softmax cross-entropy) and `logits`; updates every parameter.
    /// With `gradientOutputs`, also outputs `grad.NAME` for every parameter (before its update).
    public static func trainingGraph(model: ClassifierModel, batch: Int, optimizer: Optimizer,
                                     gradientOutputs: Bool = false) throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.inputShape))
        let labels = g.input("labels", [batch], dtype: .int32)
        let lr = g.input("lr", .scalar)
        let logits = model.forward(x, true)
        let loss = softmaxCrossEntropy(logits, labels: labels).mean()
        let parameters = g.parameters
        let grads = g.gradients(of: loss, withRespectTo: parameters)
        optimizer.appendUpdates(to: g, parameters: parameters, gradients: grads, learningRate: lr)
        g.output("loss", loss)
        g.output("logits", logits)
        if gradientOutputs {
            for (p, grad) in zip(parameters, grads) { g.output("grad.\(g.graph.leafName(p.id)!)", grad) }
        }
        return try g.build()
    }

    /// The inference graph for one batch size: input `x`, output `logits`.
    public static func forwardGraph(model: ClassifierModel, batch: Int) throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.inputShape))
        g.output("logits", model.forward(x, false))
        return try g.build()
    }

    /// What a model file needs to continue this trainer's run after `epochs` epochs exactly (no
    /// early stopping state): the seed and every program's step counter.
    public func resumeState(epochs: Int, seed: UInt64) -> ResumeState {
        var state = ResumeState(epochs: epochs, seed: seed)
        state.programSteps = core.programSteps
        return state
    }

    /// Creates the parameters (if the store lacks them) without training.
    public func initializeParameters() throws { _ = try evaluationProgram(batch: 1) }

    /// Whether training programs also output every parameter's gradient (`grad.NAME`), for checks.
    public var gradientOutputs = false
    /// Compiler passes to skip (e.g. `fuse`, `plan-memory`), set before the first step.
    public var disabledPasses: Set<String> {
        get { core.disabledPasses }
        set { core.disabledPasses = newValue }
    }
    /// Check every node's result for NaN and ±Inf in every step (`kiln train --check-numerics`):
    /// programs compile without fusion and memory planning so that each node is stored and
    /// every input intact, and a step throws naming the first node that holds one. Set before
    /// the first step.
    public var checkNumerics: Bool {
        get { core.checkNumerics }
        set { core.checkNumerics = newValue }
    }

    /// The compiled training step for a batch size (compiled on first use).
    public func trainingProgram(batch: Int) throws -> Executable {
        try core.program("train-\(batch)", seedOffset: UInt64(batch)) {
            try Self.trainingGraph(model: model, batch: batch, optimizer: optimizer, gradientOutputs: gradientOutputs)
        }
    }

    /// The compiled inference program for a batch size (compiled on first use).
    public func evaluationProgram(batch: Int) throws -> Executable {
        try core.program("eval-\(batch)", seedOffset: 0) { try Self.forwardGraph(model: model, batch: batch) }
    }

    /// One optimizer step on the examples at `indices`; returns the batch loss before the update.
    @discardableResult
    public func trainStep(_ data: ImageDataset, indices: ArraySlice<Int>, learningRate: Double) throws -> Float {
        let program = try trainingProgram(batch: indices.count)
        try data.fillBatch(indices: indices, into: program.inputPointer("x").assumingMemoryBound(to: Float.self),
                           labels: program.inputPointer("labels").assumingMemoryBound(to: Int32.self))
        try program.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(learningRate)
        try program.run()
        let loss = try program.outputPointer("loss").pointee
        try checkFiniteLoss(loss, model: model.name, step: program.step - 1)
        return loss
    }

    /// One pass over `data` in `order` (every example once, last partial batch kept); returns the mean loss.
    public func trainEpoch(_ data: ImageDataset, order: [Int], batchSize: Int, learningRate: Double,
                           progress: ((_ done: Int, _ total: Int, _ meanLoss: Double) -> Void)? = nil) throws -> Double {
        var total = 0.0, seen = 0
        for batch in TrainingCore.batches(count: order.count, batchSize: batchSize) {
            let loss = try trainStep(data, indices: order[batch], learningRate: learningRate)
            total += Double(loss) * Double(batch.count)
            seen += batch.count
            progress?(seen, order.count, total / Double(seen))
        }
        return total / Double(Swift.max(seen, 1))
    }

    /// Logits for every example of `data`, in batches of `batchSize`.
    public func logits(_ data: ImageDataset, batchSize: Int = 1000) throws -> [[Float]] {
        var rows: [[Float]] = []
        rows.reserveCapacity(data.count)
        var start = 0
        let indices = Array(0..<data.count)
        while start < data.count {
            let end = Swift.min(data.count, start + batchSize)
            let program = try evaluationProgram(batch: end - start)
            try data.fillBatch(indices: indices[start..<end], into: program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: nil)
            try program.run()
            let logits = try program.outputPointer("logits")
            for r in 0..<(end - start) {
                rows.append(Array(UnsafeBufferPointer(start: logits + r * model.classes, count: model.classes)))
            }
            start = end
        }
        return rows
    }

    /// Accuracy, mean cross-entropy and confusion matrix on a labelled set.
    public func evaluate(_ data: ImageDataset, batchSize: Int = 1000) throws -> Evaluation {
        guard data.labels.count == data.count else { throw KilnError.argument("evaluation needs labels") }
        return Evaluation(scores: try logits(data, batchSize: batchSize), labels: data.labels, classes: model.classes)
    }
}

/// A deterministic permutation of 0..<count for one epoch (Fisher–Yates over SplitMix64 keyed by seed and epoch).
public func epochOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(epoch) &* 0xBF58_476D_1CE4_E5B9 &+ 1
    func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    var order = Array(0..<count)
    if count < 2 { return order }
    for i in stride(from: count - 1, to: 0, by: -1) {
        let j = Int(next() % UInt64(i + 1))
        order.swapAt(i, j)
    }
    return order
}
