import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

/// Eight 8×8 images of two classes: class 0 bright on the left half, class 1 on the right.
func halvesDataset(count: Int = 8) -> ImageDataset {
    var bytes: [UInt8] = [], labels: [Int32] = []
    for i in 0..<count {
        let label = Int32(i % 2)
        labels.append(label)
        for _ in 0..<8 { for x in 0..<8 { bytes.append((x < 4) == (label == 0) ? 230 : UInt8(10 + i)) } }
    }
    return ImageDataset(images: bytes, labels: labels, count: count, channels: 1, height: 8, width: 8, classNames: ["L", "R"])
}

@Suite("Generative models")
struct GenerativeTests {
    @Test("every generative model builds, trains a step with a finite loss, and samples images in 0–255",
          arguments: ["vae", "cvae", "conv-vae", "conv-cvae", "gan", "cgan"])
    func everyModelSteps(_ name: String) throws {
        let data = halvesDataset()
        let model = try Zoo.generative(name, imageShape: [1, 8, 8], classes: 2)
        let trainer = GenerativeTrainer(model: model, seed: 3, threads: 1)
        let losses = try trainer.trainStep(data, indices: [0, 1, 2, 3], learningRate: trainer.defaultLearningRate)
        #expect(losses.main.isFinite && losses.main > 0)
        #expect((losses.discriminator != nil) == (model.family == .gan))
        let samples = model.isConditional ? try trainer.samplePerClass(3, seed: 1, classNames: data.classNames) : try trainer.sample(count: 6, seed: 1)
        #expect(samples.count == 6 && samples.pixelsPerImage == 64)
        #expect(Set(samples.images).count > 1)
    }

    @Test("a GAN step updates only the generator in its generator program and only the discriminator in the other")
    func ganUpdatesItsOwnSide() throws {
        let model = try Zoo.generative("gan", imageShape: [1, 8, 8])
        let trainer = GenerativeTrainer(model: model, seed: 1, threads: 1)
        let (discriminator, generator) = try trainer.ganTrainingPrograms(batch: 4)
        let data = halvesDataset()
        func snapshot() -> [String: [Float]] { Dictionary(uniqueKeysWithValues: trainer.store.parameterNames.map { ($0, trainer.store[$0]!.values) }) }
        for (program, trainsGenerator) in [(discriminator, false), (generator, true)] {
            let before = snapshot()
            data.fillBatch(indices: [0, 1, 2, 3], into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: nil)
            try program.setInput("lr", [0.01])
            try program.run()
            let after = snapshot()
            for name in before.keys {
                let changed = before[name] != after[name]
                #expect(changed == (name.hasPrefix("gen.") == trainsGenerator), "\(name) changed: \(changed)")
            }
        }
        #expect(trainer.store["gen.optimizer.step"]!.values == [1] && trainer.store["disc.optimizer.step"]!.values == [1])
    }

    @Test("a saved generative model loads back and samples the same images")
    func saveAndLoad() throws {
        let data = halvesDataset()
        let trainer = GenerativeTrainer(model: try Zoo.generative("cgan", imageShape: [1, 8, 8], classes: 2), seed: 2, threads: 1)
        try trainer.trainStep(data, indices: [0, 1, 2, 3], learningRate: 0.01)
        let directory = TemporaryDirectory()
        let path = directory.file("gen.safetensors")
        try trainer.save(path: path, classNames: data.classNames)
        let (loaded, classNames) = try GenerativeTrainer.load(path: path, threads: 1)
        #expect(classNames == ["L", "R"] && loaded.model.name == "cgan")
        let a = try trainer.samplePerClass(4, seed: 9, classNames: classNames)
        let b = try loaded.samplePerClass(4, seed: 9, classNames: classNames)
        #expect(a == b)
        // A classifier's model file is a clear error, not a crash.
        let classifier = ClassifierTrainer(model: logisticRegression(inputShape: [1, 8, 8], classes: 2), optimizer: .sgd(), threads: 1)
        try classifier.initializeParameters()
        try Checkpoint.save(classifier, classNames: ["L", "R"], epochs: 1, to: directory.file("logreg.safetensors"))
        do {
            _ = try GenerativeTrainer.load(path: directory.file("logreg.safetensors"), threads: 1)
            Issue.record("loading a classifier as a generative model did not throw")
        } catch {
            #expect("\(error)".contains("not a generative one"))
        }
    }

    @Test("temperature scales z: near zero every seed decodes to the same image per class; zero is an error")
    func temperature() throws {
        let trainer = GenerativeTrainer(model: try Zoo.generative("cvae", imageShape: [1, 8, 8], classes: 2), seed: 1, threads: 1)
        let a = try trainer.samplePerClass(2, seed: 1, classNames: ["L", "R"], temperature: 1e-9)
        let b = try trainer.samplePerClass(2, seed: 2, classNames: ["L", "R"], temperature: 1e-9)
        #expect(a == b)
        let c = try trainer.samplePerClass(2, seed: 1, classNames: ["L", "R"]), d = try trainer.samplePerClass(2, seed: 2, classNames: ["L", "R"])
        #expect(c != d)
        #expect(throws: KilnError.self) { try trainer.samplePerClass(1, seed: 1, classNames: ["L", "R"], temperature: 0) }
    }

    @Test("generated CSV has exactly N rows per class, 785 columns, integers 0–255")
    func generatedCSVFormat() throws {
        let model = try Zoo.generative("cvae", imageShape: [1, 28, 28], classes: 3)
        let trainer = GenerativeTrainer(model: model, seed: 5, threads: 1)
        let samples = try trainer.samplePerClass(7, seed: 4, classNames: ["A", "B", "C"])
        let lines = String(decoding: CSVImages.serialize(samples), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "")
        var perClass: [String: Int] = [:]
        for line in lines.dropLast() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            #expect(fields.count == 785)
            perClass[String(fields[0]), default: 0] += 1
            #expect(fields.dropFirst().allSatisfy { field in Int(field).map { (0...255).contains($0) && String($0) == field } ?? false })
        }
        #expect(perClass == ["A": 7, "B": 7, "C": 7])
    }
}
