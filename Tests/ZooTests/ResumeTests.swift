import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

private func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

/// A run stopped at an epoch boundary and resumed from its checkpoint ends with the same model
/// file, byte for byte, as the run that was never stopped (issue 16: no lost work on kill -9).
@Suite("Resume from a checkpoint")
struct ResumeTests {
    @Test("classifier: stopped after epoch 2 of 4 and resumed, the files match the uninterrupted run's bytes")
    func classifier() throws {
        let dir = TemporaryDirectory()
        let data = CourseGlyphs.make(count: 40, seed: 4)
        let split = DataSplit.stratified(labels: data.labels, classes: 3, validationFraction: 0.25, seed: 1)
        let (train, validation) = (data.subset(split.train), data.subset(split.validation))
        let model = try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3)
        func options(first: Int, epochs: Int, resume: ResumeState?) throws -> FitOptions {
            var options = FitOptions(epochs: epochs, batchSize: 7, learningRate: 0.05, patience: 10,
                                     augmentation: try Augmentation.parse("shift,noise"), seed: 5, firstEpoch: first)
            options.saveEvery = .every(1)
            options.resume = resume
            return options
        }
        let names = ["A", "B", "C"]
        // Uninterrupted: 4 epochs, a checkpoint after each of the first three.
        let whole = ClassifierTrainer(model: model, optimizer: .adam(), seed: 5, threads: 1)
        let wholeResult = try whole.fit(train, validation: validation, options: options(first: 0, epochs: 4, resume: nil)) { state in
            try Checkpoint.save(whole, classNames: names, epochs: state.epochs, resume: state, to: dir.file("whole-\(state.epochs).safetensors"))
        }
        try Checkpoint.save(whole, classNames: names, epochs: wholeResult.keptEpoch, to: dir.file("whole.safetensors"))
        // Resumed from the checkpoint after epoch 2, as `kiln train --resume` does.
        let checkpoint = try Checkpoint.read(path: dir.file("whole-2.safetensors"))
        let state = try #require(checkpoint.resume)
        #expect(state.epochs == 2 && state.seed == 5 && !state.programSteps.isEmpty)
        let resumed = try checkpoint.makeTrainer(optimizer: .adam(), seed: state.seed, threads: 1)
        try checkpoint.restoreOptimizerState(into: resumed)
        let resumedResult = try resumed.fit(train, validation: validation, options: options(first: state.epochs, epochs: 2, resume: state)) { state in
            try Checkpoint.save(resumed, classNames: names, epochs: state.epochs, resume: state, to: dir.file("resumed-\(state.epochs).safetensors"))
        }
        try Checkpoint.save(resumed, classNames: names, epochs: resumedResult.keptEpoch, to: dir.file("resumed.safetensors"))
        #expect(resumedResult.keptEpoch == wholeResult.keptEpoch)
        #expect(try bytes(dir.file("resumed-3.safetensors")) == bytes(dir.file("whole-3.safetensors")))
        #expect(try bytes(dir.file("resumed.safetensors")) == bytes(dir.file("whole.safetensors")))
        // The resumed run's losses are the uninterrupted run's last two.
        #expect(resumedResult.history.map(\.trainLoss) == Array(wholeResult.history.suffix(2).map(\.trainLoss)))
    }

    @Test("VAE: stopped after epoch 2 of 4 and resumed, the file matches the uninterrupted run's bytes")
    func vae() throws {
        let dir = TemporaryDirectory()
        let data = CourseGlyphs.make(count: 30, seed: 6)
        let model = try Zoo.generative("vae", imageShape: [1, 28, 28], classes: 3)
        let names = ["A", "B", "C"]
        // Batch 8 over 30 images: programs for batches of 8 and 6, each with its own step counter.
        func run(_ trainer: GenerativeTrainer, epochs: Range<Int>, prefix: String) throws {
            for epoch in epochs {
                _ = try trainer.trainEpoch(data, order: epochOrder(count: data.count, seed: trainer.seed, epoch: epoch), batchSize: 8,
                                           learningRate: { 1e-3 * (1 + Double($0 % 3)) })
                try trainer.save(path: dir.file("\(prefix)-\(epoch + 1).safetensors"), classNames: names, epochs: epoch + 1,
                                 resume: trainer.resumeState(epochs: epoch + 1))
            }
        }
        let whole = GenerativeTrainer(model: model, seed: 7, threads: 1)
        try run(whole, epochs: 0..<4, prefix: "whole")
        let state = try #require(try Checkpoint.read(path: dir.file("whole-2.safetensors")).resume)
        #expect(state.epochs == 2 && state.stepsTaken == 8 && state.seed == 7)
        let resumed = try GenerativeTrainer.load(path: dir.file("whole-2.safetensors"), seed: state.seed, threads: 1).trainer
        resumed.restore(state)
        try run(resumed, epochs: 2..<4, prefix: "resumed")
        #expect(try bytes(dir.file("resumed-4.safetensors")) == bytes(dir.file("whole-4.safetensors")))
        // Without the step counters the noise repeats epoch 1's draws and the files differ: the test can fail.
        let forgetful = try GenerativeTrainer.load(path: dir.file("whole-2.safetensors"), seed: state.seed, threads: 1).trainer
        var noSteps = state
        noSteps.programSteps = [:]
        forgetful.restore(noSteps)
        try run(forgetful, epochs: 2..<4, prefix: "forgetful")
        #expect(try bytes(dir.file("forgetful-4.safetensors")) != bytes(dir.file("whole-4.safetensors")))
    }

    @Test("DDPM: stopped after epoch 2 of 4 and resumed, the file matches the uninterrupted run's bytes")
    func ddpmResume() throws {
        let dir = TemporaryDirectory()
        let data = CourseGlyphs.make(count: 20, seed: 3)
        let model = ddpm(imageShape: [1, 28, 28], hidden: 32, embedding: 8, timesteps: 20, classes: 3)
        let names = ["A", "B", "C"]
        func run(_ trainer: GenerativeTrainer, epochs: Range<Int>, prefix: String) throws {
            for epoch in epochs {
                _ = try trainer.trainEpoch(data, order: epochOrder(count: data.count, seed: trainer.seed, epoch: epoch), batchSize: 8,
                                           learningRate: { _ in 1e-3 })
                try trainer.save(path: dir.file("\(prefix)-\(epoch + 1).safetensors"), classNames: names, epochs: epoch + 1,
                                 resume: trainer.resumeState(epochs: epoch + 1))
            }
        }
        let whole = GenerativeTrainer(model: model, seed: 9, threads: 1)
        try run(whole, epochs: 0..<4, prefix: "whole")
        let state = try #require(try Checkpoint.read(path: dir.file("whole-2.safetensors")).resume)
        #expect(state.epochs == 2 && state.stepsTaken == 6)
        let resumed = GenerativeTrainer(model: model, seed: state.seed, threads: 1)
        try resumed.initializeParameters()
        let saved = try Checkpoint.read(path: dir.file("whole-2.safetensors"))
        for name in resumed.store.names { resumed.store[name]!.values = try #require(saved.tensors[name]).floats() }
        resumed.restore(state)
        try run(resumed, epochs: 2..<4, prefix: "resumed")
        #expect(try bytes(dir.file("resumed-4.safetensors")) == bytes(dir.file("whole-4.safetensors")))
        // Without stepsTaken the steps t repeat epoch 1's draws and the files differ: the test can fail.
        let forgetful = GenerativeTrainer(model: model, seed: state.seed, threads: 1)
        try forgetful.initializeParameters()
        for name in forgetful.store.names { forgetful.store[name]!.values = try #require(saved.tensors[name]).floats() }
        var noSteps = state
        noSteps.stepsTaken = 0
        forgetful.restore(noSteps)
        try run(forgetful, epochs: 2..<4, prefix: "forgetful")
        #expect(try bytes(dir.file("forgetful-4.safetensors")) != bytes(dir.file("whole-4.safetensors")))
    }
}
