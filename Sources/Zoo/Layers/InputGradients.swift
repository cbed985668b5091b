import KilnGraph
import KilnPasses
import KilnRuntime

/// Gradients of a classifier's loss with respect to its input images, for adversarial examples
/// (FGSM), saliency maps and input optimisation.
///
/// One compiled program per batch size reads the parameters from `store` (shared with the
/// trainer, so it sees the current weights) and updates nothing. The loss differentiated is the
/// per-example softmax cross-entropy summed over the batch, so row i of the gradient is the
/// gradient of example i's own loss (not divided by the batch size).
public final class InputGradients {
    public let model: ClassifierModel
    public let store: ParameterStore
    public let threads: Int
    private var programs: [Int: Executable] = [:]

    public init(model: ClassifierModel, store: ParameterStore, threads: Int = defaultThreadCount()) {
        self.model = model; self.store = store; self.threads = threads
    }

    /// The graph for one batch size: inputs `x` [B, C, H, W] and `labels` i32 [B]; outputs
    /// `loss` (per example, [B]), `logits` [B, classes] and `grad.x` (d Σ loss / d x, the shape of `x`).
    public static func graph(model: ClassifierModel, batch: Int) throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", Shape([batch] + model.inputShape))
        let labels = g.input("labels", [batch], dtype: .int32)
        let logits = model.forward(x, false)
        let loss = softmaxCrossEntropy(logits, labels: labels)
        g.output("loss", loss)
        g.output("logits", logits)
        g.output("grad.x", g.gradients(of: loss.sum(), withRespectTo: [x])[0])
        return try g.build()
    }

    /// The compiled program for a batch size (compiled on first use).
    public func program(batch: Int) throws -> Executable {
        if let program = programs[batch] { return program }
        let program = try Executable(graph: Self.graph(model: model, batch: batch), store: store, threads: threads)
        programs[batch] = program
        return program
    }

    /// Per-example losses, logits and input gradients for `images` (NCHW floats, `labels.count`
    /// images of `model.inputShape`).
    public func compute(images: [Float], labels: [Int32]) throws -> (loss: [Float], logits: [Float], gradient: [Float]) {
        let perImage = model.inputShape.reduce(1, *)
        guard !labels.isEmpty, images.count == labels.count * perImage else {
            throw KilnError.argument("input gradients: \(images.count) floats for \(labels.count) images of \(model.inputShape)")
        }
        let program = try program(batch: labels.count)
        try program.setInput("x", images)
        try program.setInput("labels", labels)
        try program.run()
        return (try program.output("loss"), try program.output("logits"), try program.output("grad.x"))
    }

    /// The same for the examples of `data` at `indices` (pixels scaled to [0, 1] as in training).
    public func compute(_ data: ImageDataset, indices: ArraySlice<Int>) throws -> (loss: [Float], logits: [Float], gradient: [Float]) {
        var images = [Float](repeating: 0, count: indices.count * data.pixelsPerImage)
        var labels = [Int32](repeating: 0, count: indices.count)
        images.withUnsafeMutableBufferPointer { x in
            labels.withUnsafeMutableBufferPointer { y in data.fillBatch(indices: indices, into: x.baseAddress!, labels: y.baseAddress!) }
        }
        return try compute(images: images, labels: labels)
    }
}
