import Foundation
import KilnGraph
import KilnRuntime

/// Generative models on disk, in the layout of `Checkpoint` (one safetensors file; `kiln.model`,
/// `kiln.config`, `kiln.classes`, `kiln.normalisation`, `kiln.state` in `__metadata__`). Every
/// parameter and state tensor is stored by name: optimizer moments and step counters, and the
/// batch-norm running statistics the sampling program needs. `kiln.config`'s `input_shape` is
/// the image shape, `classes` the class names' count (a conditional model's one-hot width).
extension GenerativeTrainer {
    /// Writes the model atomically; `classNames` name the classes of a conditional model (and of the
    /// training set for an unconditional one).
    /// With `resume` (`resumeState(epochs:)`), the file also says how to continue the run exactly.
    /// `extraMetadata` joins `__metadata__` (the CLI records the training file and judge there).
    public func save(path: String, classNames: [String], epochs: Int = 0, resume: ResumeState? = nil,
                     extraMetadata: [String: String] = [:]) throws {
        precondition(!model.isConditional || classNames.count == model.classes, "one class name per condition")
        let stateNames = store.names.filter { !store[$0]!.isParameter }
        let entries = store.names.map { Safetensors.Entry(name: $0, shape: store[$0]!.type.shape.dims, floats: store[$0]!.values) }
            + (latentPrior?.entries ?? [])
        func json(_ value: Any) throws -> String { String(decoding: try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self) }
        let config: [String: Any] = ["input_shape": model.imageShape, "classes": classNames.count,
                                     "optimizer": optimizer.description, "epochs": epochs]
        var metadata = [
            "kiln.model": model.name, "kiln.config": try json(config), "kiln.classes": try json(classNames),
            "kiln.normalisation": Checkpoint.normalisation, "kiln.state": try json(stateNames), "format": "pt",
        ]
        if let resume { metadata[ResumeState.metadataKey] = try resume.metadata() }
        metadata.merge(extraMetadata) { kiln, _ in kiln }
        try Safetensors.write(path: path, entries: entries, metadata: metadata)
    }

    /// What continues this run after `epochs` epochs exactly: the seed, the optimizer steps taken
    /// (the learning-rate schedule counts them) and every program's step counter (the noise ε or
    /// z is drawn keyed by it). Parameters and optimizer moments are store tensors, saved anyway.
    public func resumeState(epochs: Int) -> ResumeState {
        var state = ResumeState(epochs: epochs, seed: seed)
        state.stepsTaken = stepsTaken
        state.programSteps = core.programSteps
        return state
    }

    /// Continues from a checkpoint's state (the store already holds its tensors).
    public func restore(_ state: ResumeState) {
        stepsTaken = state.stepsTaken
        core.restoreProgramSteps(state.programSteps)
    }

    /// Reads a model written by `save`: rebuilds the zoo model from the metadata and fills its
    /// store. A file for a classifier, or missing one of the model's parameters, is a `KilnError.file`.
    public static func load(path: String, seed: UInt64 = 0, threads: Int = defaultThreadCount()) throws
        -> (trainer: GenerativeTrainer, classNames: [String]) {
        let checkpoint = try Checkpoint.read(path: path)
        let description = checkpoint.description
        guard Zoo.isGenerative(description.modelName) else {
            throw KilnError.file(path: path, message: "holds the model \"\(description.modelName)\", not a generative one (\(Zoo.generativeNames.joined(separator: ", ")))")
        }
        let model = try Zoo.generative(description.modelName, imageShape: description.inputShape, classes: description.classNames.count)
        let trainer = GenerativeTrainer(model: model, seed: seed, threads: threads)
        try trainer.initializeParameters()
        for name in trainer.store.names {
            let stored = trainer.store[name]!
            guard let entry = checkpoint.tensors[name] else {
                if stored.isParameter { throw KilnError.file(path: path, message: "tensor \"\(name)\" of \(model.name) is missing: the file holds another model") }
                continue
            }
            guard entry.shape == stored.type.shape.dims, entry.rawDType == "F32" else {
                throw KilnError.file(path: path, message: "tensor \"\(name)\" is \(entry.rawDType) \(entry.shape), \(model.name) needs F32 \(stored.type.shape.dims)")
            }
            stored.values = entry.floats()
        }
        trainer.latentPrior = try LatentPrior.read(checkpoint.tensors, latent: model.latentSize,
                                                   rows: model.isConditional ? model.classes : 1, path: path)
        return (trainer, description.classNames)
    }
}
