import Foundation
import Kiln
import KilnCommandLine

/// The graph `kiln dot` and `kiln plan` show for a zoo model: the inference graph, or one
/// training step (forward, backward and optimizer update). A generative model's inference graph
/// is its sampler; a GAN's training step is the discriminator's unless `ganStep` says
/// `generator`.
func zooGraph(_ name: String, batch: Int, training: Bool, ganStep: String?) throws -> Graph {
    if name.hasSuffix(".onnx") {  // an ONNX file: its inference graph, or a classifier's training step
        let onnx = try ONNXModel.load(path: name)
        guard training else { return try onnx.forwardGraph(batch: batch) }
        return try ClassifierTrainer.trainingGraph(model: try onnx.classifier(), batch: batch, optimizer: .sgd(momentum: 0.9))
    }
    if Zoo.isGenerative(name) {
        let step = ganStep ?? "discriminator"
        guard step == "discriminator" || step == "generator" else {
            throw KilnError.argument("--gan-step is discriminator or generator, found \"\(excerpt(step))\"")
        }
        return try GenerativeTrainer.graph(of: try Zoo.generative(name, classes: 10), batch: batch, training: training,
                                           generatorStep: step == "generator")
    }
    if let ganStep {
        throw KilnError.argument("--gan-step applies to gan, cgan and dcgan only; \(name) has one training step (found \"\(excerpt(ganStep))\")")
    }
    let model = try Zoo.classifier(name, inputShape: Zoo.defaultInputShape(name), classes: name == "glyph-cnn" ? 3 : 10)
    return training
        ? try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9))
        : try ClassifierTrainer.forwardGraph(model: model, batch: batch)
}
