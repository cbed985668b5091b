import Foundation
import KilnGraph
import KilnRuntime

/// Generative models on disk: one safetensors file holding every parameter and state tensor by
/// name (optimizer moments and batch-norm running statistics included), and in `__metadata__`
/// the zoo model (`kiln.model`), the image shape (`kiln.image_shape`, "C,H,W") and the class
/// names (`kiln.classes`, a JSON array), so `kiln generate` rebuilds the model from the file alone.
extension GenerativeTrainer {
    /// Writes the model atomically.
    public func save(path: String, classNames: [String]) throws {
        let entries = store.names.map { Safetensors.Entry(name: $0, shape: store[$0]!.type.shape.dims, floats: store[$0]!.values) }
        let classes = String(decoding: try JSONSerialization.data(withJSONObject: classNames), as: UTF8.self)
        try Safetensors.write(path: path, entries: entries, metadata: [
            "kiln.model": model.name,
            "kiln.image_shape": model.imageShape.map(String.init).joined(separator: ","),
            "kiln.classes": classes,
        ])
    }

    /// Reads a model written by `save`: rebuilds the zoo model and fills its store.
    public static func load(path: String, seed: UInt64 = 0, threads: Int = defaultThreadCount()) throws
        -> (trainer: GenerativeTrainer, classNames: [String]) {
        let (tensors, metadata) = try Safetensors.read(path: path)
        guard let name = metadata["kiln.model"] else {
            throw KilnError.file(path: path, message: "not a Kiln model file: its metadata has no kiln.model")
        }
        guard Zoo.isGenerative(name) else {
            throw KilnError.file(path: path, message: "holds the model \"\(name)\", not a generative one (\(Zoo.generativeNames.joined(separator: ", ")))")
        }
        let shape = (metadata["kiln.image_shape"] ?? "").split(separator: ",").compactMap { Int($0) }
        guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
            throw KilnError.file(path: path, message: "kiln.image_shape must be \"C,H,W\", found \"\(metadata["kiln.image_shape"] ?? "")\"")
        }
        guard let classText = metadata["kiln.classes"], let classNames = try? JSONSerialization.jsonObject(with: Data(classText.utf8)) as? [String] else {
            throw KilnError.file(path: path, message: "kiln.classes must be a JSON array of class names")
        }
        let model = try Zoo.generative(name, imageShape: shape, classes: classNames.count)
        let trainer = GenerativeTrainer(model: model, seed: seed, threads: threads)
        try trainer.initializeParameters()
        for tensorName in trainer.store.names {
            guard let entry = tensors[tensorName] else {
                if trainer.store[tensorName]!.isParameter { throw KilnError.file(path: path, message: "lacks the parameter \(tensorName) of \(name)") }
                continue
            }
            guard entry.shape == trainer.store[tensorName]!.type.shape.dims, entry.rawDType == "F32" else {
                throw KilnError.file(path: path, message: "\(tensorName) is \(entry.rawDType) \(entry.shape), \(name) needs F32 \(trainer.store[tensorName]!.type.shape)")
            }
            try trainer.store.set(tensorName, entry.floats())
        }
        return (trainer, classNames)
    }
}
