import Foundation
import Testing
import Kiln
import KilnBench
@testable import CLI

/// Generative training without --epochs, its own labeller, and generate's quality report (issue 17 items 3-4).
@Suite("Generative defaults and sample quality")
struct GenerativeDefaultsTests {
    @Test func stoppingRule() throws {
        var plateau = GenerativeStopping(patience: 3, budget: nil)
        #expect(!plateau.observe(loss: 100, seconds: 1) && !plateau.observe(loss: 99, seconds: 2))
        // 99.95 is not 0.1 % below 99: no new best.
        #expect(!plateau.observe(loss: 99.95, seconds: 3) && !plateau.observe(loss: 98.99, seconds: 4))
        #expect(plateau.observe(loss: 98.99, seconds: 5) && plateau.reason?.contains("not improved by 0.1 % for 3 epochs") == true)
        var budget = GenerativeStopping(patience: nil, budget: 10)
        #expect(!budget.observe(loss: 5, seconds: 9.9) && !budget.observe(loss: 5, seconds: 9.95))
        #expect(budget.observe(loss: 5, seconds: 10) && budget.reason == "time budget of 10 s spent")
        // Without --epochs or --time-budget a run is capped in epochs (the same on a loaded machine).
        let caps = try ["vae", "cvae", "conv-vae", "conv-cvae", "gan", "cgan", "ddpm"].map {
            GenerativeStopping.maximumEpochs(try Zoo.generative($0, imageShape: [1, 28, 28], classes: 3))
        }
        #expect(caps == [1500, 1500, 150, 150, 200, 200, 400])
    }

    @Test func nearestDistancesAndRecognition() throws {
        let train = CourseGlyphs.make(count: 8, seed: 1), other = CourseGlyphs.make(count: 5, seed: 2)
        let distances = SampleQuality.nearestDistances(other, to: train)
        for q in 0..<5 {
            var best = Double.infinity
            for r in 0..<8 {
                var sum = 0.0
                for p in 0..<784 {
                    let d = Double(other.images[q * 784 + p]) / 255 - Double(train.images[r * 784 + p]) / 255
                    sum += d * d
                }
                best = Swift.min(best, (sum / 784).squareRoot())
            }
            #expect(abs(distances[q] - best) < 1e-5)
        }
        // Training images against themselves: 0 unless their own row is skipped.
        #expect(SampleQuality.nearestDistances(train, to: train).allSatisfy { $0 == 0 })
        #expect(SampleQuality.nearestDistances(train, to: train, excludingSelf: true).allSatisfy { $0 > 0 })
        #expect(median([3, 1, 2]) == 2 && median([4, 1, 2, 3]) == 2.5 && median([]).isNaN)
        let lines = SampleQuality(stated: [2, 2], recognised: [2, 1], sampleDistance: 0.2, trainingDistance: 0.3, copies: 1)
            .lines(classNames: ["A", "B"])
        #expect(lines == ["recognised as their class: 75.0% (A 100.0%, B 50.0%)",
                          "nearest training image: median RMS distance 0.200 (training images to each other: 0.300); 1 samples within 0.25 of that: likely copies of training images"])
    }

    @Test func unlabelledWithoutLabellerTrainsOneAndGenerateReports() throws {
        let dir = NSTemporaryDirectory() + "kiln-gen-cli-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try CourseGlyphs.writeAssignment(directory: dir, train: 30, test: 20, seed: 3)
        let train = "\(dir)/\(CourseGlyphs.trainFile)"
        try runCommand(["train", "cvae", "--train", train, "--unlabelled", "\(dir)/\(CourseGlyphs.testFile)", "--epochs", "1",
                        "--labeller-epochs", "2", "--threads", "1", "-o", "\(dir)/g.safetensors"])
        let file = try Checkpoint.read(path: "\(dir)/g.safetensors")
        #expect(file.metadata[GenerativeFileKeys.judge] == "\(dir)/g.labeller.safetensors")
        #expect(file.metadata[GenerativeFileKeys.trainFile] == train)
        #expect(try Checkpoint.read(path: "\(dir)/g.labeller.safetensors").ensembleSize == TrainingRecipe.ensembleMembers)
        #expect(file.tensors[LatentPrior.meanName]?.shape == [3, 20])
        try runCommand(["generate", "\(dir)/g.safetensors", "--per-class", "4", "-o", "\(dir)/new.csv", "--threads", "1"])
        let rows = try String(contentsOfFile: "\(dir)/new.csv", encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 12)
        // With a latent prior and no --temperature, generate samples at the prior's default temperature.
        let (trainer, classNames) = try GenerativeTrainer.load(path: "\(dir)/g.safetensors", threads: 1)
        let expected = try trainer.samplePerClass(4, seed: 0, classNames: classNames, temperature: defaultPriorTemperature)
        #expect(try CSVImages.read(path: "\(dir)/new.csv").images == expected.images)
        let samples = try CSVImages.read(path: train)
        let judge = try Checkpoint.read(path: "\(dir)/g.labeller.safetensors").makeClassifier(threads: 1)
        let (stated, recognised) = try SampleQuality.recognition(samples, judge: judge)
        let predicted = try judge.predict(samples)
        #expect(stated == [10, 10, 10] && recognised.reduce(0, +) == zip(predicted, samples.labels).filter { $0 == Int($1) }.count)
    }
}
