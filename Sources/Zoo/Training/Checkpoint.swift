import Foundation
import KilnGraph
import KilnRuntime

/// What a Kiln model file says about its model, so the graph can be rebuilt from the file alone.
public struct ModelDescription: Sendable, Equatable {
    /// The zoo name (`glyph-cnn`, `lenet5`, …): `Zoo.classifier` rebuilds the graph from it.
    public var modelName: String
    /// Input shape of one example, [C, H, W].
    public var inputShape: [Int]
    /// Class names by class index (the model's outputs).
    public var classNames: [String]
    /// The optimizer the parameters were trained with (its `description`); resuming needs the same.
    public var optimizer: String
    /// Epochs trained so far (a resumed run continues counting from here).
    public var epochs: Int

    public init(modelName: String, inputShape: [Int], classNames: [String], optimizer: String, epochs: Int) {
        self.modelName = modelName
        self.inputShape = inputShape
        self.classNames = classNames
        self.optimizer = optimizer
        self.epochs = epochs
    }
}

/// Model files: one safetensors file per model. Tensors are stored by parameter name (float32),
/// optimizer state tensors by their state names (`fc1.weight.adam_m`, `optimizer.step`, …) so a
/// run can resume, and `__metadata__` holds:
///
/// - `kiln.model`: the zoo name;
/// - `kiln.config`: JSON `{"input_shape": [C, H, W], "classes": K, "optimizer": "…", "epochs": N}`;
/// - `kiln.classes`: JSON array of the class names by index;
/// - `kiln.normalisation`: JSON `{"divide": 255}`: inputs are bytes divided by 255;
/// - `kiln.state`: JSON array of the names of the optimizer state tensors;
/// - `format`: `pt`, so `safetensors.torch.load_file` accepts it.
///
/// Writes are atomic (`Safetensors.write`): a crash leaves the old file or the new one.
public struct Checkpoint {
    /// The file's description of its model.
    public var description: ModelDescription
    /// Every tensor of the file by name.
    public var tensors: [String: Safetensors.Entry]
    /// Names of the optimizer state tensors among `tensors`.
    public var stateNames: [String]
    /// Where it was read from (for messages).
    public var path: String
    /// The file's whole `__metadata__`.
    public var metadata: [String: String] = [:]
    /// How to continue the run exactly (epochs, seed, step counters, early stopping), if the file says.
    public var resume: ResumeState?

    /// The one normalisation Kiln's data loaders apply (`ImageDataset.fillBatch`).
    static let normalisation = "{\"divide\":255}"

    /// Writes the parameters of `trainer`'s store and, with `includingOptimizerState`, its
    /// optimizer state, with the metadata that rebuilds the model.
    public static func save(_ trainer: ClassifierTrainer, classNames: [String], epochs: Int,
                            includingOptimizerState: Bool = true, resume: ResumeState? = nil, to path: String) throws {
        precondition(classNames.count == trainer.model.classes, "one class name per model output")
        let store = trainer.store
        var entries: [Safetensors.Entry] = []
        var stateNames: [String] = []
        for name in store.names {
            let tensor = store[name]!
            if !tensor.isParameter {
                guard includingOptimizerState else { continue }
                stateNames.append(name)
            }
            entries.append(Safetensors.Entry(name: name, shape: tensor.type.shape.dims, floats: tensor.values))
        }
        let config: [String: Any] = ["input_shape": trainer.model.inputShape, "classes": trainer.model.classes,
                                     "optimizer": trainer.optimizer.description, "epochs": epochs]
        var metadata = ["kiln.model": trainer.model.name, "kiln.config": json(config), "kiln.classes": json(classNames),
                        "kiln.normalisation": normalisation, "kiln.state": json(stateNames), "format": "pt"]
            .merging(trainer.model.definition) { kiln, _ in kiln }
        if let resume {
            metadata[ResumeState.metadataKey] = try resume.metadata()
            entries += resume.bestEntries(store: store)
        }
        try Safetensors.write(path: path, entries: entries, metadata: metadata)
    }

    /// Epochs a model file may say it was trained for (more are refused as corrupt).
    public static let maximumEpochs = 10_000_000
    /// Largest image side (channels included) and class count a model file may state.
    public static let maximumImageSide = 4096
    public static let maximumClasses = 100_000

    /// Reads a model file and its metadata; the tensors are checked against the model by `makeTrainer`.
    public static func read(path: String) throws -> Checkpoint {
        let (tensors, metadata) = try Safetensors.read(path: path)
        func fail(_ message: String) -> KilnError { KilnError.file(path: path, message: message) }
        guard let modelName = metadata["kiln.model"] else {
            throw fail("not a Kiln model file: __metadata__ has no \"kiln.model\" (a safetensors file from elsewhere?)")
        }
        // Names from the file reach messages and file names: short, printable, no control characters.
        func isName(_ text: String) -> Bool {
            !text.isEmpty && text.utf8.count <= CSVImages.maximumLabelBytes
                && !text.unicodeScalars.contains { [.control, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory) }
        }
        guard isName(modelName) else { throw fail("model metadata \"kiln.model\" is not a model name: \"\(excerpt(modelName))\"") }
        guard let configText = metadata["kiln.config"],
              let config = (try? JSONSerialization.jsonObject(with: Data(configText.utf8))) as? [String: Any] else {
            throw fail("model metadata \"kiln.config\" is missing or not a JSON object")
        }
        guard let inputShape = config["input_shape"] as? [Int], inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }),
              let classes = config["classes"] as? Int, classes > 0 else {
            throw fail("model metadata \"kiln.config\" needs \"input_shape\" ([C, H, W]) and \"classes\" (a positive integer)")
        }
        guard let classesText = metadata["kiln.classes"],
              let classNames = (try? JSONSerialization.jsonObject(with: Data(classesText.utf8))) as? [String] else {
            throw fail("model metadata \"kiln.classes\" is missing or not a JSON array of strings")
        }
        if let bad = classNames.first(where: { !isName($0) }) {
            throw fail("model metadata \"kiln.classes\" has \"\(excerpt(bad))\", not a class name (1 to \(CSVImages.maximumLabelBytes) bytes, no control characters)")
        }
        guard classNames.count == classes else {
            throw fail("model metadata names \(classNames.count) classes in \"kiln.classes\" but \(classes) in \"kiln.config\"")
        }
        guard let normalisation = metadata["kiln.normalisation"] else {
            throw fail("model metadata \"kiln.normalisation\" is missing")
        }
        guard normalisation.filter({ !$0.isWhitespace }) == Self.normalisation else {
            throw fail("model normalisation \(excerpt(normalisation)) is not one Kiln applies (\(Self.normalisation))")
        }
        let epochs = config["epochs"] as? Int ?? 0
        guard (0...Self.maximumEpochs).contains(epochs) else {
            throw fail("model metadata \"kiln.config\" has \"epochs\" \(epochs); a model file holds 0 to \(Self.maximumEpochs) epochs")
        }
        guard inputShape.allSatisfy({ $0 <= Self.maximumImageSide }), classes <= Self.maximumClasses else {
            throw fail("model metadata \"kiln.config\" has input shape \(inputShape) and \(classes) classes; Kiln models take at most \(Self.maximumImageSide) per dimension and \(Self.maximumClasses) classes")
        }
        let stateNames = metadata["kiln.state"].flatMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String]
        } ?? []
        let description = ModelDescription(modelName: modelName, inputShape: inputShape, classNames: classNames,
                                           optimizer: config["optimizer"] as? String ?? "", epochs: epochs)
        let resume = try ResumeState.read(metadata: metadata, tensors: tensors, path: path)
        return Checkpoint(description: description, tensors: tensors.filter { !$0.key.hasPrefix(ResumeState.bestPrefix) },
                          stateNames: stateNames, path: path, metadata: metadata, resume: resume)
    }

    /// The zoo model the file describes.
    public func model() throws -> ClassifierModel {
        if description.modelName == ONNXModel.modelName {  // `kiln import`: the graph is in the metadata
            let model = try ONNXModel.fromModelFile(metadata: metadata, path: path, weights: tensors.mapValues(\.shape))
            do { return try model.classifier() } catch { throw KilnError.file(path: path, message: "\(error)") }
        }
        do {
            return try Zoo.classifier(description.modelName, inputShape: description.inputShape,
                                      classes: description.classNames.count)
        } catch let error as KilnError {
            throw KilnError.file(path: path, message: "model \"\(description.modelName)\": \(error)")
        }
    }

    /// A trainer for the file's model whose parameters are the file's. Every parameter of the
    /// rebuilt model must be in the file with its shape, and every tensor of the file must be a
    /// parameter or a listed state tensor, else the file is for another model: the error says which tensor.
    public func makeTrainer(optimizer: Optimizer = .sgd(), seed: UInt64 = 0,
                            threads: Int = defaultThreadCount()) throws -> ClassifierTrainer {
        if let count = try ensembleMembers() {
            throw KilnError.file(path: path, message: "holds an ensemble of \(count) \(description.modelName) networks (`train --ensemble`): `predict`, `eval` and `generate` read it; to train further or export, train one network with --ensemble 1")
        }
        let model = try model()
        let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: seed, threads: threads)
        try trainer.store.register(ClassifierTrainer.forwardGraph(model: model, batch: 1))
        let modelText = "\(model.name) (input \(model.inputShape), \(model.classes) classes)"
        let parameters = trainer.store.parameterNames
        for name in parameters {
            guard let entry = tensors[name] else {
                throw KilnError.file(path: path, message: "tensor \"\(name)\" of \(modelText) is missing: the file holds another model")
            }
            try copy(entry, into: trainer.store[name]!, modelText: modelText)
        }
        // Model state the inference graph reads (batch-norm running statistics), when the file has it.
        for name in trainer.store.names where !trainer.store[name]!.isParameter {
            if let entry = tensors[name], stateNames.contains(name) { try copy(entry, into: trainer.store[name]!, modelText: modelText) }
        }
        let known = Set(parameters).union(stateNames)
        if let stray = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw KilnError.file(path: path, message: "tensor \"\(stray)\" is not a parameter of \(modelText): the file holds another model")
        }
        return trainer
    }

    /// Sets the optimizer state of `trainer` (created for its training graph) from the file, to
    /// resume training. The file must have been trained with the same optimizer.
    public func restoreOptimizerState(into trainer: ClassifierTrainer) throws {
        guard trainer.optimizer.description == description.optimizer else {
            throw KilnError.file(path: path, message: "trained with optimizer \"\(description.optimizer)\"; resume with the same (given: \"\(trainer.optimizer.description)\")")
        }
        try trainer.store.register(ClassifierTrainer.trainingGraph(model: trainer.model, batch: 1, optimizer: trainer.optimizer))
        let modelText = "\(trainer.model.name) with \(trainer.optimizer)"
        let wanted = trainer.store.names.filter { !trainer.store[$0]!.isParameter }
        for name in wanted {
            guard let entry = tensors[name], stateNames.contains(name) else {
                throw KilnError.file(path: path, message: "optimizer state \"\(name)\" is missing: the file was saved without optimizer state")
            }
            try copy(entry, into: trainer.store[name]!, modelText: modelText)
        }
        if let stray = stateNames.sorted().first(where: { !wanted.contains($0) }) {
            throw KilnError.file(path: path, message: "optimizer state \"\(stray)\" does not belong to \(modelText)")
        }
    }

    private func copy(_ entry: Safetensors.Entry, into tensor: StoredTensor, modelText: String) throws {
        guard entry.rawDType == "F32" else {
            throw KilnError.file(path: path, message: "tensor \"\(entry.name)\" is \(entry.rawDType), Kiln models hold F32")
        }
        guard entry.shape == tensor.type.shape.dims else {
            throw KilnError.file(path: path, message: "tensor \"\(entry.name)\" has shape \(entry.shape), \(modelText) needs \(tensor.type.shape.dims): the file holds another model")
        }
        tensor.values = entry.floats()
    }

    /// Compact JSON with sorted keys (deterministic bytes).
    private static func json(_ value: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}
