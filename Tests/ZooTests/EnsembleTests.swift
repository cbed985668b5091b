import Foundation
import Testing
import Kiln

@Suite("Ensembles and the recipe's augmentation")
struct EnsembleTests {
    /// Two glyph CNNs with different seeds, initialised but not trained.
    func members() throws -> [ClassifierTrainer] {
        try (0..<2).map { k in
            let trainer = ClassifierTrainer(model: glyphCNN(classes: 3), optimizer: .adam(), seed: UInt64(10 + k), threads: 1)
            try trainer.initializeParameters()
            return trainer
        }
    }

    @Test("an ensemble file predicts the mean of its members' softmax probabilities")
    func meanOfProbabilities() throws {
        let dir = TemporaryDirectory()
        let data = CourseGlyphs.make(count: 9, seed: 3, difficulty: .hard)
        let members = try members()
        try Checkpoint.saveEnsemble(members, classNames: ["A", "B", "C"], epochs: [4, 7], to: dir.file("e.safetensors"))
        let file = try Checkpoint.read(path: dir.file("e.safetensors"))
        #expect(file.ensembleSize == 2)
        let loaded = try file.makeClassifier(threads: 1)
        #expect(loaded.members.count == 2)
        let scores = try loaded.scores(data)
        // Naive: each member's logits from its own trainer, softmax, mean, log.
        let logits = try members.map { try $0.logits(data) }
        for i in 0..<data.count {
            var mean = [Double](repeating: 0, count: 3)
            for member in logits {
                let row = member[i].map(Double.init)
                let sum = row.map { Foundation.exp($0) }.reduce(0, +)
                for k in 0..<3 { mean[k] += Foundation.exp(row[k]) / sum / 2 }
            }
            for k in 0..<3 { #expect(abs(Double(scores[i][k]) - Foundation.log(mean[k])) < 1e-5) }
        }
        // Members differ (different seeds), so the ensemble is not one of them.
        #expect(logits[0] != logits[1])
        let evaluation = try loaded.evaluate(data)
        let predicted = try loaded.predict(data)
        #expect(evaluation.accuracy == Double(zip(predicted, data.labels).filter { $0 == Int($1) }.count) / 9)
        // A file with one network reads as a one-member classifier giving that network's logits.
        try Checkpoint.save(members[0], classNames: ["A", "B", "C"], epochs: 1, to: dir.file("one.safetensors"))
        let one = try Checkpoint.read(path: dir.file("one.safetensors"))
        #expect(one.ensembleSize == nil)
        #expect(try one.makeClassifier(threads: 1).scores(data) == logits[0])
    }

    @Test("an ensemble file is refused where one network is needed, and checked like one")
    func refusals() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("e.safetensors")
        try Checkpoint.saveEnsemble(try members(), classNames: ["A", "B", "C"], epochs: [1, 1], to: path)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: path).makeTrainer(threads: 1) }?
            .contains("holds an ensemble of 2 glyph-cnn networks") == true)
        // A member missing a tensor is named.
        var (tensors, metadata) = try Safetensors.read(path: path)
        tensors["member1.fc2.bias"] = nil
        try Safetensors.write(path: dir.file("broken.safetensors"), entries: tensors.values.sorted { $0.name < $1.name }, metadata: metadata)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: dir.file("broken.safetensors")).makeClassifier(threads: 1) }?
            .contains("ensemble member 1: tensor \"fc2.bias\"") == true)
        metadata[Checkpoint.ensembleKey] = "1"
        (tensors, _) = try Safetensors.read(path: path)
        try Safetensors.write(path: dir.file("bad.safetensors"), entries: tensors.values.sorted { $0.name < $1.name }, metadata: metadata)
        #expect(kilnErrorMessage { _ = try Checkpoint.read(path: dir.file("bad.safetensors")).makeClassifier(threads: 1) }?
            .contains("not a member count from 2 to 1000") == true)
    }

    @Test("fitEnsemble trains one member per fold, each validated on its own held-out fold")
    func fitOverFolds() throws {
        let data = CourseGlyphs.make(count: 30, seed: 8)
        var options = FitOptions(epochs: 2, batchSize: 10, learningRate: 0.003, patience: 5, seed: 4)
        options.augmentation = .defaultForSmallImageSets
        var reported = Set<Int>()
        let (trainers, members) = try ClassifierTrainer.fitEnsemble(model: glyphCNN(classes: 3), optimizer: .adam(), data: data,
                                                                  members: 3, options: options, threads: 1) { k, _ in reported.insert(k) }
        #expect(trainers.count == 3 && members.count == 3 && reported == [0, 1, 2])
        #expect(members.allSatisfy { $0.validation.count == 10 && $0.fit.history.count == 2 })
        // Members start from different seeds.
        #expect(trainers[0].store["conv1.weight"]!.values != trainers[1].store["conv1.weight"]!.values)
    }

    @Test("shear and erase are functions of seed, epoch and example; erase fills a square with the border mean")
    func shearAndErase() throws {
        let data = CourseGlyphs.make(count: 16, seed: 6)
        for kind in [Augmentation.Kind.shear, .erase] {
            let a = Augmentation([kind]).apply(to: data, indices: Array(0..<16)[...], seed: 1, epoch: 0)
            #expect(a == Augmentation([kind]).apply(to: data, indices: Array(0..<16)[...], seed: 1, epoch: 0))
            #expect(a.images != data.images && a.labels == data.labels)
        }
        let erased = Augmentation([.erase]).apply(to: data, indices: Array(0..<16)[...], seed: 2, epoch: 1)
        var changedImages = 0
        for i in 0..<16 {
            let original = Array(data.images[i * 784 ..< (i + 1) * 784]), out = Array(erased.images[i * 784 ..< (i + 1) * 784])
            let changed = (0..<784).filter { original[$0] != out[$0] }
            if changed.isEmpty { continue }
            changedImages += 1
            // Every changed pixel lies in one square of side 4-10 and holds one value: the border mean.
            let ys = changed.map { $0 / 28 }, xs = changed.map { $0 % 28 }
            #expect(ys.max()! - ys.min()! < 10 && xs.max()! - xs.min()! < 10)
            let border = (0..<784).filter { $0 / 28 == 0 || $0 / 28 == 27 || $0 % 28 == 0 || $0 % 28 == 27 }
            let mean = (Double(border.map { Int(original[$0]) }.reduce(0, +)) / Double(border.count)).rounded()
            #expect(Set(changed.map { out[$0] }) == [UInt8(mean)])
        }
        #expect(changedImages > 2 && changedImages < 16)
    }
}
