import Foundation
import Testing
import Kiln
@testable import CLI

/// `kiln import`, `predict` on an imported model, `export --sample`, `train --init` (issue 15),
/// driven in-process as a user types them.
@Suite("ONNX commands")
struct ONNXCommandTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/onnx").path

    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "kiln-onnx-cli-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func importPredictExport() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let classes = (0..<10).map { "c\($0)" }
        try runCommand(["import", "\(Self.fixtures)/lenet5.onnx", "-o", "\(dir)/l.safetensors", "--classes", classes.joined(separator: ",")])
        let checkpoint = try Checkpoint.read(path: "\(dir)/l.safetensors")
        #expect(checkpoint.description.modelName == "onnx" && checkpoint.description.classNames == classes)

        try CourseGlyphs.writeAssignment(directory: dir, train: 12, test: 9, seed: 4)
        try runCommand(["predict", "\(dir)/l.safetensors", "--test", "\(dir)/\(CourseGlyphs.testFile)", "-o", "\(dir)/p.csv"])
        let rows = try String(contentsOfFile: "\(dir)/p.csv", encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 9 && rows.allSatisfy { classes.contains(String($0.prefix { $0 != "," })) })

        // Export with a sample: the sample's logits are what the PyTorch file computes on its inputs.
        try runCommand(["export", "\(dir)/l.safetensors", "-o", "\(dir)/l.onnx", "--sample", "\(dir)/s.safetensors", "--batch", "5"])
        let (sample, _) = try Safetensors.read(path: "\(dir)/s.safetensors")
        let original = try ONNXModel.load(path: "\(Self.fixtures)/lenet5.onnx")
        let graph = try original.forwardGraph(batch: 5)
        let store = ParameterStore()
        try store.register(graph)
        try original.loadWeights(into: store)
        let program = try Executable(graph: graph, store: store)
        try program.setInput("input", sample["x"]!.floats())
        try program.run()
        #expect(try program.output("output") == sample["logits"]!.floats())
        #expect(try ONNXModel.load(path: "\(dir)/l.onnx").outputNames == ["logits"])
    }

    @Test func errors() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func message(_ words: [String]) -> String? {
            do { try runCommand(words); return nil } catch { return "\(error)" }
        }
        #expect(message(["import", "\(Self.fixtures)/vae-decoder.onnx", "-o", "\(dir)/v.safetensors"])?.contains("not an image classifier") == true)
        #expect(message(["import", "\(Self.fixtures)/lenet5.onnx", "-o", "\(dir)/l.safetensors", "--classes", "A,B"])
                == "--classes needs 10 distinct names separated by commas (one per model output), found \"A,B\"")
        try CourseGlyphs.writeAssignment(directory: dir, train: 12, test: 3, seed: 4)
        let train = "\(dir)/\(CourseGlyphs.trainFile)"
        #expect(message(["train", "--init", "\(Self.fixtures)/lenet5.onnx", "--train", train, "--epochs", "1"])
                == "\(Self.fixtures)/lenet5.onnx: takes input [1, 28, 28] and gives 10 classes; the data has images [1, 28, 28] and 3 classes")
        #expect(message(["train", "mlp", "--init", "\(Self.fixtures)/lenet5.onnx", "--train", train])?.contains("holds a onnx model, not mlp") == true)
        #expect(message(["export", "\(Self.fixtures)/lenet5.io.safetensors", "-o", "\(dir)/x.onnx"])?.contains("not a Kiln model file") == true)
    }

    /// A Kiln LeNet-5 exported to ONNX and fine-tuned from the ONNX file: the model file it writes
    /// is an imported model that reloads and predicts.
    @Test func fineTuneFromONNX() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CourseGlyphs.writeAssignment(directory: dir, train: 30, test: 4, seed: 5)
        let train = "\(dir)/\(CourseGlyphs.trainFile)"
        try runCommand(["train", "lenet5", "--train", train, "--ensemble", "1", "--epochs", "1", "-o", "\(dir)/a.safetensors", "--json"])
        try runCommand(["export", "\(dir)/a.safetensors", "-o", "\(dir)/a.onnx"])
        try runCommand(["train", "--init", "\(dir)/a.onnx", "--train", train, "--epochs", "2", "-o", "\(dir)/b.safetensors", "--json"])
        let tuned = try Checkpoint.read(path: "\(dir)/b.safetensors")
        #expect(tuned.description.modelName == "onnx" && tuned.description.epochs == 2)
        #expect(tuned.description.classNames == (try Checkpoint.read(path: "\(dir)/a.safetensors")).description.classNames)
        try runCommand(["predict", "\(dir)/b.safetensors", "--test", "\(dir)/\(CourseGlyphs.testFile)", "-o", "\(dir)/p.csv"])
    }
}
