import Foundation
import Testing
import Kiln
@testable import CLI
import KilnCommandLine

/// `kiln train` on a small image file with no flags: the recipe (issue 17 item 2), driven in-process.
@Suite("The default training recipe")
struct GlyphRecipeTests {
    static func directory() throws -> String {
        let path = NSTemporaryDirectory() + "kiln-recipe-cli-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func defaultsTrainAnEnsembleThatPredictAndEvalRead() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CourseGlyphs.writeAssignment(directory: dir, train: 40, test: 12, seed: 2, difficulty: .hard)
        let train = "\(dir)/\(CourseGlyphs.trainFile)", test = "\(dir)/\(CourseGlyphs.testFile)"
        // Only --epochs (kept tiny for the test) beside the defaults.
        try runCommand(["train", "glyph-cnn", "--train", train, "--epochs", "2", "--threads", "1", "-o", "\(dir)/m.safetensors"])
        let file = try Checkpoint.read(path: "\(dir)/m.safetensors")
        #expect(file.ensembleSize == TrainingRecipe.ensembleMembers && file.description.optimizer == Optimizer.adam().description)
        try runCommand(["predict", "\(dir)/m.safetensors", "--test", test, "-o", "\(dir)/p.csv"])
        let rows = try String(contentsOfFile: "\(dir)/p.csv", encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 12 && rows.allSatisfy { ["A", "B", "C"].contains(String($0.prefix { $0 != "," })) })
        try runCommand(["eval", "\(dir)/m.safetensors", "--data", test, "--labels", "\(dir)/\(CourseGlyphs.testLabelsFile)"])
        // The file's predictions are the in-memory ensemble's.
        let classifier = try file.makeClassifier(threads: 1)
        let images = try CSVImages.read(path: test, imageSize: (28, 28), classNames: ["A", "B", "C"])
        #expect(try classifier.predict(images).map { ["A", "B", "C"][$0] } == rows.map { String($0.prefix { $0 != "," }) })

        // --ensemble 1: one network, which --resume continues.
        try runCommand(["train", "glyph-cnn", "--train", train, "--ensemble", "1", "--epochs", "1", "--threads", "1", "-o", "\(dir)/one.safetensors"])
        #expect(try Checkpoint.read(path: "\(dir)/one.safetensors").ensembleSize == nil)
        try runCommand(["train", "glyph-cnn", "--train", train, "--epochs", "1", "--threads", "1", "--resume", "\(dir)/one.safetensors",
                        "-o", "\(dir)/one.safetensors"])
        #expect(try Checkpoint.read(path: "\(dir)/one.safetensors").description.epochs == 2)
    }

    @Test func recipeChoicesAndErrors() throws {
        let dir = try Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CourseGlyphs.writeAssignment(directory: dir, train: 12, test: 3, seed: 4)
        let train = "\(dir)/\(CourseGlyphs.trainFile)"
        func message(_ words: [String]) -> String? {
            do { try runCommand(words); return nil } catch { return "\(error)" }
        }
        #expect(message(["train", "glyph-cnn", "--train", train, "--ensemble", "3", "--val-split", "0.2"])?
            .contains("does not combine with --val-split (add --ensemble 1 for one network)") == true)
        #expect(message(["train", "glyph-cnn", "--train", train, "--ensemble", "13"]) == "--ensemble needs 2 to 12 members for 12 images, found 13")
        #expect(message(["train", "glyph-cnn", "--train", train, "--ensemble", "0"]) == "--ensemble needs an integer from 1 to 100, found \"0\"")
        try runCommand(["train", "glyph-cnn", "--train", train, "--ensemble", "2", "--epochs", "1", "--threads", "1", "-o", "\(dir)/e.safetensors"])
        #expect(message(["train", "glyph-cnn", "--train", train, "--resume", "\(dir)/e.safetensors"])?.contains("holds an ensemble of 2") == true)

        // What the recipe turns on, and what it leaves alone.
        let data = TrainingData(train: CourseGlyphs.make(count: 12, seed: 1), test: nil, name: "x.csv")
        let plain = TrainingRecipe(try Arguments(["glyph-cnn"], options: ["--augment"], flags: [], command: "t"), data: data)
        #expect(plain.defaultEnsemble == 5 && plain.defaultAugmentation == .defaultForSmallImageSets)
        let notes = plain.notes(augmentation: plain.defaultAugmentation, ensemble: 5, optimizer: .adam(), epochs: 200, patience: 15)
        #expect(notes.count == 2 && notes[0].contains("augmentation on by default") && notes[0].contains("--augment none turns it off"))
        let split = TrainingRecipe(try Arguments(["--val-split", "0.2", "--augment", "none"], options: ["--val-split", "--augment"], flags: [], command: "t"), data: data)
        #expect(split.defaultEnsemble == 1 && split.notes(augmentation: .none, ensemble: 1, optimizer: .adam(), epochs: 200, patience: 15).isEmpty)
        let named = TrainingRecipe(try Arguments([], options: [], flags: [], command: "t"),
                                   data: TrainingData(train: data.train, test: data.train, name: "glyphs"))
        #expect(named.defaultEnsemble == 1 && named.defaultAugmentation == .none && !named.isFileData)
    }
}
