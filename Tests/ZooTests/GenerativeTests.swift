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
          arguments: ["vae", "cvae", "conv-vae", "conv-cvae", "gan", "cgan", "dcgan", "ddpm"])
    func everyModelSteps(_ name: String) throws {
        let data = halvesDataset()
        var model = try Zoo.generative(name, imageShape: [1, 8, 8], classes: 2)
        // The zoo's DDPM samples in 200 denoising steps; the same model with 20 keeps the test quick.
        if name == "ddpm" { model.schedule = DiffusionSchedule(cosineSteps: 20) }
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

    // MARK: DDPM

    @Test("the cosine and linear schedules: β in (0, 0.999], ᾱ falling from near 1 to near 0")
    func diffusionSchedules() {
        for schedule in [DiffusionSchedule(cosineSteps: 200), DiffusionSchedule(linearSteps: 1000)] {
            #expect(schedule.betas.allSatisfy { $0 > 0 && $0 <= 0.999 })
            #expect(zip(schedule.alphaBars, schedule.alphaBars.dropFirst()).allSatisfy { $0 > $1 })
            #expect(schedule.alphaBars.first! > 0.99 && schedule.alphaBars.last! < 1e-3)
        }
        // Linear: β_0 = 1e-4, β_999 = 0.02, ᾱ_0 = 1 − 1e-4.
        let linear = DiffusionSchedule(linearSteps: 1000)
        #expect(abs(linear.betas[999] - 0.02) < 1e-12 && abs(linear.alphaBars[0] - (1 - 1e-4)) < 1e-12)
        let e = DiffusionSchedule.embedding(step: 3, size: 8)
        #expect(e.count == 8 && e[0] == Float(sin(3.0)) && e[4] == Float(cos(3.0)))
    }

    @Test("ancestral sampling with the exact noise predictor of a one-image data set returns that image")
    func denoiseStepWithOracle() {
        // For data {x*}, ε̂(x_t, t) = (x_t − √ᾱ_t x*)/√(1−ᾱ_t) is the true noise, so x̂₀ = x* at every step and
        // the chain ends exactly at x* (up to rounding), whatever the added noise.
        let schedule = DiffusionSchedule(cosineSteps: 50)
        let target: [Float] = [-1, -0.5, 0, 0.25, 0.9, 1]
        let random = CounterRandom(seed: 5)
        var x = (0..<target.count).map { random.normal(stream: 0, step: 0, index: $0) }
        for t in stride(from: 49, through: 0, by: -1) {
            let a = schedule.alphaBars[t]
            let oracle = zip(x, target).map { Float((Double($0) - a.squareRoot() * Double($1)) / (1 - a).squareRoot()) }
            let noise = (0..<target.count).map { random.normal(stream: 1, step: UInt64(t), index: $0) }
            schedule.denoiseStep(&x, predictedNoise: oracle, step: t, noise: noise)
        }
        for (got, want) in zip(x, target) { #expect(abs(got - want) < 1e-4, "\(got) against \(want)") }
        // A predictor that always says "no noise" keeps x̂₀ = x_t: the step is then not the identity.
        var y: [Float] = [0.5, -0.5]
        schedule.denoiseStep(&y, predictedNoise: [0, 0], step: 10, noise: [0, 0])
        #expect(y != [0.5, -0.5])
    }

    @Test("DDPM training lowers the noise-prediction loss on a small set")
    func ddpmLossDecreases() throws {
        let data = halvesDataset(count: 16)
        // A narrower network and shorter schedule than the zoo's keep the test quick; the code paths are the same.
        let trainer = GenerativeTrainer(model: ddpm(imageShape: [1, 8, 8], hidden: 64, embedding: 16, timesteps: 50, classes: 2), seed: 4, threads: 1)
        var losses: [Double] = []
        for epoch in 0..<60 {
            losses.append(try trainer.trainEpoch(data, order: epochOrder(count: data.count, seed: 4, epoch: epoch), batchSize: 8,
                                                 learningRate: { _ in 1e-3 }).main)
        }
        let first = losses.prefix(5).reduce(0, +) / 5, last = losses.suffix(5).reduce(0, +) / 5
        #expect(last < 0.6 * first, "mean loss of the first 5 epochs \(first), of the last 5 \(last)")
    }

    @Test("DDPM sampling is deterministic per seed, differs across seeds, and honours the labels")
    func ddpmSamplingDeterministic() throws {
        let trainer = GenerativeTrainer(model: ddpm(imageShape: [1, 8, 8], hidden: 32, embedding: 8, timesteps: 20, classes: 2), seed: 2, threads: 1)
        try trainer.trainStep(halvesDataset(), indices: [0, 1, 2, 3], learningRate: 1e-3)
        let a = try trainer.samplePerClass(3, seed: 11, classNames: ["L", "R"])
        let b = try trainer.samplePerClass(3, seed: 11, classNames: ["L", "R"])
        let c = try trainer.samplePerClass(3, seed: 12, classNames: ["L", "R"])
        #expect(a == b && a != c)
        #expect(a.labels == [0, 0, 0, 1, 1, 1])
        // Batches of 2 draw other noise than one batch of 6 (each chunk has its own draws) but are equally deterministic.
        let d = try trainer.sample(labels: [0, 0, 0, 1, 1, 1], seed: 11, batchSize: 2)
        let e = try trainer.sample(labels: [0, 0, 0, 1, 1, 1], seed: 11, batchSize: 2)
        #expect(d == e)
        #expect(throws: KilnError.self) { try trainer.sample(labels: [2], seed: 1) }
    }
}
