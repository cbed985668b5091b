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
    public let store: ParameterStore
    public let threads: Int
    public let seed: UInt64
    private var trainingPrograms: [Int: Executable] = [:]
    private var evaluationPrograms: [Int: Executable] = [:]
    /// Seconds spent compiling programs so far.
    public private(set) var compileSeconds = 0.0

    public init(model: ClassifierModel, optimizer: Optimizer, seed: UInt64 = 0, threads: Int = defaultThreadCount(),
                store: ParameterStore? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.seed = seed
        self.threads = threads
        self.store = store ?? ParameterStore(seed: seed)
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

    /// Creates the parameters (if the store lacks them) without training.
    public func initializeParameters() throws { _ = try evaluationProgram(batch: 1) }

    /// Whether training programs also output every parameter's gradient (`grad.NAME`), for checks.
    public var gradientOutputs = false
    /// Compiler passes to skip (e.g. `fuse`, `plan-memory`), set before the first step.
    public var disabledPasses: Set<String> = []
    /// Check every node's result for NaN and ±Inf in every step (`kiln train --check-numerics`):
    /// programs compile without fusion and memory planning so that each node is stored and
    /// every input intact, and a step throws naming the first node that holds one. Set before
    /// the first step.
    public var checkNumerics = false

    private func pipeline() -> PassManager {
        trainingPipeline(disabled: disabledPasses, checkNumerics: checkNumerics)
    }

    /// The compiled training step for a batch size (compiled on first use).
    public func trainingProgram(batch: Int) throws -> Executable {
        if let program = trainingPrograms[batch] { return program }
        let start = Date()
        let program = try Executable(graph: Self.trainingGraph(model: model, batch: batch, optimizer: optimizer,
                                                               gradientOutputs: gradientOutputs),
                                     store: store, threads: threads, seed: seed &+ UInt64(batch), pipeline: pipeline())
        program.checkNumerics = checkNumerics
        compileSeconds += Date().timeIntervalSince(start)
        trainingPrograms[batch] = program
        return program
    }

    /// The compiled inference program for a batch size (compiled on first use).
    public func evaluationProgram(batch: Int) throws -> Executable {
        if let program = evaluationPrograms[batch] { return program }
        let start = Date()
        let program = try Executable(graph: Self.forwardGraph(model: model, batch: batch), store: store, threads: threads,
                                     seed: seed, pipeline: pipeline())
        program.checkNumerics = checkNumerics
        compileSeconds += Date().timeIntervalSince(start)
        evaluationPrograms[batch] = program
        return program
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
        var start = 0
        while start < order.count {
            let end = Swift.min(order.count, start + batchSize)
            let loss = try trainStep(data, indices: order[start..<end], learningRate: learningRate)
            total += Double(loss) * Double(end - start)
            seen += end - start
            start = end
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
        let rows = try logits(data, batchSize: batchSize)
        var correct = 0, loss = 0.0
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: model.classes), count: model.classes)
        for (i, row) in rows.enumerated() {
            let label = Int(data.labels[i])
            let predicted = row.indices.max { row[$0] < row[$1] }!
            if predicted == label { correct += 1 }
            if label < model.classes { confusion[label][predicted] += 1 }
            let m = Double(row.max()!)
            let logSum = Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }) + m
            loss += logSum - Double(row[Swift.min(label, model.classes - 1)])
        }
        return Evaluation(accuracy: Double(correct) / Double(Swift.max(data.count, 1)), loss: loss / Double(Swift.max(data.count, 1)),
                          count: data.count, confusion: confusion)
    }
}

/// The pipeline trainers compile with: the standard one less `disabled`; with `checkNumerics`,
/// also without fusion and memory planning, so every node's result is stored and checked.
func trainingPipeline(disabled: Set<String>, checkNumerics: Bool) -> PassManager {
    var manager = standardPipeline()
    manager.disabled = disabled
    if checkNumerics { manager.disabled.formUnion(["fuse", "plan-memory"]) }
    return manager
}

/// Throws when a training loss is NaN or infinite. The step's updates have already run, so the
/// parameters are no longer usable: training stops, and callers write no model file.
func checkFiniteLoss(_ loss: Float, model: String, step: UInt64, what: String = "loss") throws {
    guard !loss.isFinite else { return }
    throw KilnError.feed("\(model): the training \(what) became \(loss.isNaN ? "NaN" : "\(loss)") in step \(step); training stopped and nothing was saved. "
                         + "Try a lower learning rate, or run with --check-numerics (ClassifierTrainer.checkNumerics) to name the first node that produced NaN or Inf")
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
