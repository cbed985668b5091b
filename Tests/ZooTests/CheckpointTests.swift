import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

/// A small labelled set of course glyphs.
private let glyphs = CourseGlyphs.make(count: 48, seed: 9)

/// A trainer of `name` after a few steps, so its parameters are not the initial ones.
private func trainedTrainer(_ name: String, optimizer: Optimizer = .adam(), epochs: Int = 1) throws -> ClassifierTrainer {
    let model = try Zoo.classifier(name, inputShape: [1, 28, 28], classes: 3)
    let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: 3, threads: 1)
    try trainer.fit(glyphs, options: FitOptions(epochs: epochs, batchSize: 16, learningRate: 0.01, seed: 3))
    return trainer
}

/// The file at `path` with its metadata replaced by `change(metadata)`.
private func rewriteMetadata(_ path: String, _ change: (inout [String: String]) -> Void) throws {
    var (tensors, metadata) = try Safetensors.read(path: path)
    change(&metadata)
    try Safetensors.write(path: path, entries: Array(tensors.values), metadata: metadata)
}

@Suite("Checkpoint")
struct CheckpointTests {
    @Test("a saved model loads back and predicts identically, bit for bit", arguments: ["logreg", "glyph-cnn"])
    func roundTrip(name: String) throws {
        let dir = TemporaryDirectory()
        let trainer = try trainedTrainer(name)
        let path = dir.file("model.safetensors")
        try Checkpoint.save(trainer, classNames: ["A", "B", "C"], epochs: 1, to: path)
        let checkpoint = try Checkpoint.read(path: path)
        #expect(checkpoint.description == ModelDescription(modelName: name, inputShape: [1, 28, 28], classNames: ["A", "B", "C"],
                                                           optimizer: Optimizer.adam().description, epochs: 1))
        let loaded = try checkpoint.makeTrainer(threads: 1)
        let before = try trainer.logits(glyphs, batchSize: 20).flatMap { $0 }.map(\.bitPattern)
        let after = try loaded.logits(glyphs, batchSize: 20).flatMap { $0 }.map(\.bitPattern)
        #expect(before == after)
        #expect(checkpoint.stateNames.contains("optimizer.step"))
    }

    @Test("resuming from a checkpoint continues training exactly as an uninterrupted run")
    func resume() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("half.safetensors")
        let straight = try trainedTrainer("logreg", epochs: 2)
        let half = try trainedTrainer("logreg", epochs: 1)
        try Checkpoint.save(half, classNames: ["A", "B", "C"], epochs: 1, to: path)
        let checkpoint = try Checkpoint.read(path: path)
        let resumed = try checkpoint.makeTrainer(optimizer: .adam(), seed: 3, threads: 1)
        try checkpoint.restoreOptimizerState(into: resumed)
        try resumed.fit(glyphs, options: FitOptions(epochs: 1, batchSize: 16, learningRate: 0.01, seed: 3, firstEpoch: 1))
        for name in straight.store.names {
            #expect(resumed.store[name]!.values.map(\.bitPattern) == straight.store[name]!.values.map(\.bitPattern), "\(name)")
        }
        // Another optimizer cannot take over the state.
        let other = try checkpoint.makeTrainer(optimizer: .sgd(momentum: 0.9), threads: 1)
        #expect(kilnErrorMessage { try checkpoint.restoreOptimizerState(into: other) }
                == "\(path): trained with optimizer \"\(Optimizer.adam())\"; resume with the same (given: \"sgd momentum=0.9\")")
    }

    @Test("a missing, truncated or corrupt file is named with its problem")
    func damagedFiles() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        try Checkpoint.save(try trainedTrainer("logreg"), classNames: ["A", "B", "C"], epochs: 1, to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))

        let missing = dir.file("none.safetensors")
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: missing) } == "\(missing): no such file")
        let truncated = dir.write("truncated.safetensors", Array(bytes.dropLast(100)))
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        let dataLength = bytes.count - 8 - headerLength - 100
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: truncated) }?
            .hasPrefix("\(truncated): tensor \"") == true)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: truncated) }?
            .hasSuffix("go beyond the data section (\(dataLength) bytes)") == true)
        let tiny = dir.write("tiny.safetensors", Array(bytes.prefix(5)))
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: tiny) }
                == "\(tiny): too short for safetensors: 5 bytes, the header length alone takes 8")
        var garbled = bytes
        garbled[8] = UInt8(ascii: "]")
        let corrupt = dir.write("corrupt.safetensors", garbled)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: corrupt) }?
            .hasPrefix("\(corrupt): bad safetensors header: not valid JSON") == true)
    }

    @Test("a file for another model says which tensor does not fit")
    func anotherModel() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        try Checkpoint.save(try trainedTrainer("logreg"), classNames: ["A", "B", "C"], epochs: 1, to: path)

        try rewriteMetadata(path) { $0["kiln.model"] = "mlp" }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path).makeTrainer() }
                == "\(path): tensor \"fc1.bias\" of mlp (input [1, 28, 28], 3 classes) is missing: the file holds another model")

        try rewriteMetadata(path) {
            $0["kiln.model"] = "logreg"
            $0["kiln.config"] = #"{"classes":4,"epochs":1,"input_shape":[1,28,28],"optimizer":"adam"}"#
            $0["kiln.classes"] = #"["A","B","C","D"]"#
        }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path).makeTrainer() }
                == "\(path): tensor \"fc.bias\" has shape [3], logreg (input [1, 28, 28], 4 classes) needs [4]: the file holds another model")

        var (tensors, metadata) = try Safetensors.read(path: path)
        metadata["kiln.config"] = #"{"classes":3,"epochs":1,"input_shape":[1,28,28],"optimizer":"adam"}"#
        metadata["kiln.classes"] = #"["A","B","C"]"#
        tensors["conv9.weight"] = Safetensors.Entry(name: "conv9.weight", shape: [1], floats: [0])
        try Safetensors.write(path: path, entries: Array(tensors.values), metadata: metadata)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path).makeTrainer() }
                == "\(path): tensor \"conv9.weight\" is not a parameter of logreg (input [1, 28, 28], 3 classes): the file holds another model")

        try rewriteMetadata(path) { $0["kiln.model"] = "resnet" }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path).makeTrainer() }
                == "\(path): model \"resnet\": unknown model \"resnet\"; the zoo has mlp, lenet5, mnist-cnn, glyph-cnn, logreg, resnet18, resnet20")
    }

    @Test("missing or malformed metadata is named")
    func metadata() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        try Safetensors.write(path: path, entries: [Safetensors.Entry(name: "fc.bias", shape: [3], floats: [1, 2, 3])], metadata: [:])
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path) }
                == "\(path): not a Kiln model file: __metadata__ has no \"kiln.model\" (a safetensors file from elsewhere?)")
        try rewriteMetadata(path) { $0 = ["kiln.model": "logreg", "kiln.config": "{"] }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path) }
                == "\(path): model metadata \"kiln.config\" is missing or not a JSON object")
        try rewriteMetadata(path) { $0["kiln.config"] = #"{"classes":3,"input_shape":[1,28,28]}"# }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path) }
                == "\(path): model metadata \"kiln.classes\" is missing or not a JSON array of strings")
        try rewriteMetadata(path) { $0["kiln.classes"] = #"["A","B"]"# }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path) }
                == "\(path): model metadata names 2 classes in \"kiln.classes\" but 3 in \"kiln.config\"")
        try rewriteMetadata(path) { $0["kiln.classes"] = #"["A","B","C"]"# }
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path) } == "\(path): model metadata \"kiln.normalisation\" is missing")
    }

    @Test("Python's standard library reads a Kiln model file: JSON header and little-endian floats")
    func readableFromPython() throws {
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile) else {
            print("skipped: python3 not found")
            return
        }
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        let trainer = try trainedTrainer("logreg")
        try Checkpoint.save(trainer, classNames: ["A", "B", "C"], epochs: 1, to: path)
        let script = """
        import json, struct, sys
        data = open(sys.argv[1], 'rb').read()
        n = struct.unpack('<Q', data[:8])[0]
        header = json.loads(data[8:8 + n])
        meta = header['__metadata__']
        info = header['fc.bias']
        begin, end = info['data_offsets']
        values = struct.unpack('<%df' % (info['shape'][0]), data[8 + n + begin:8 + n + end])
        print(meta['kiln.model'], json.loads(meta['kiln.classes']), info['dtype'], info['shape'], ' '.join(repr(v) for v in values))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        // Python's repr of a float32 widened to double is the shortest repr of that double: Swift's Double description.
        let bias = trainer.store["fc.bias"]!.values.map { Double($0).description }.joined(separator: " ")
        #expect(output == "logreg ['A', 'B', 'C'] F32 [3] \(bias)\n")
    }
}
