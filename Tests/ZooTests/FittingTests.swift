import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

@Suite("Fitting")
struct FittingTests {
    @Test("early stopping keeps the lowest loss and stops after `patience` epochs without one")
    func earlyStopping() {
        var stopping = EarlyStopping(patience: 2)
        let losses = [1.0, 0.8, 0.9, 0.7, 0.75, 0.7, 0.9, 0.1]
        var decisions: [(Bool, Bool)] = []
        for (epoch, loss) in losses.enumerated() {
            let decision = stopping.observe(epoch: epoch + 1, loss: loss)
            decisions.append(decision)
            if decision.stop { break }
        }
        // A tie (0.7 again at epoch 6) is not an improvement; epoch 6 is the second in a row without one.
        #expect(decisions.map(\.0) == [true, true, false, true, false, false])
        #expect(decisions.map(\.1) == [false, false, false, false, false, true])
        #expect(stopping.best?.epoch == 4 && stopping.best?.loss == 0.7)
        var patient = EarlyStopping(patience: nil)
        for (epoch, loss) in losses.enumerated() { #expect(!patient.observe(epoch: epoch + 1, loss: loss).stop) }
        #expect(patient.best?.epoch == 8)
    }

    @Test("a fit with validation ends holding the best epoch's parameters")
    func keepsBestEpoch() throws {
        let data = CourseGlyphs.make(count: 60, seed: 21)
        let split = DataSplit.stratified(labels: data.labels, classes: 3, validationFraction: 0.25, seed: 1)
        let (train, validation) = (data.subset(split.train), data.subset(split.validation))
        let trainer = ClassifierTrainer(model: logisticRegression(classes: 3), optimizer: .sgd(momentum: 0.9), seed: 2, threads: 1)
        // A learning rate far too large makes the validation loss jump about, so the best epoch is not the last.
        let result = try trainer.fit(train, validation: validation,
                                     options: FitOptions(epochs: 6, batchSize: 15, learningRate: 0.5, seed: 2))
        let losses = result.history.map { $0.validation!.loss }
        let best = losses.indices.min { losses[$0] < losses[$1] }!
        #expect(result.keptEpoch == best + 1)
        #expect(result.keptEpoch != result.history.count, "the constructed case should peak before the end: \(losses)")
        #expect(try trainer.evaluate(validation).loss == losses[best])
        #expect(result.history.filter(\.isBest).last?.epoch == result.keptEpoch)
    }

    @Test("k folds cover every example exactly once, each class spread evenly", arguments: [2, 3, 5, 7])
    func folds(k: Int) {
        let labels: [Int32] = (0..<103).map { (i: Int) -> Int32 in Int32((i * 7 + i / 5) % 3) }
        let folds = DataSplit.stratifiedFolds(labels: labels, classes: 3, folds: k, seed: 8)
        #expect(folds.count == k)
        #expect(folds.flatMap { $0 }.sorted() == Array(0..<103))
        for label in Int32(0)..<3 {
            let perFold = folds.map { fold in fold.filter { labels[$0] == label }.count }
            #expect(perFold.max()! - perFold.min()! <= 1, "class \(label): \(perFold)")
        }
        #expect(folds == DataSplit.stratifiedFolds(labels: labels, classes: 3, folds: k, seed: 8))
        #expect(folds != DataSplit.stratifiedFolds(labels: labels, classes: 3, folds: k, seed: 9))
    }

    @Test("a stratified split holds out the fraction of every class, disjointly")
    func split() {
        let labels: [Int32] = (0..<100).map { (i: Int) -> Int32 in i < 60 ? 0 : (i < 90 ? 1 : 2) }
        let split = DataSplit.stratified(labels: labels, classes: 3, validationFraction: 0.2, seed: 4)
        #expect((split.train + split.validation).sorted() == Array(0..<100))
        #expect([0, 1, 2].map { c in split.validation.filter { labels[$0] == c }.count } == [12, 6, 2])
    }

    @Test("augmentation is a function of seed, epoch and example; flip alone mirrors or keeps")
    func augmentation() throws {
        let data = CourseGlyphs.make(count: 12, seed: 6)
        let all = try Augmentation.parse("shift,rotate,scale,noise,flip,crop")
        let a = all.apply(to: data, indices: [3, 4, 5], seed: 1, epoch: 2)
        #expect(a == all.apply(to: data, indices: [3, 4, 5], seed: 1, epoch: 2))
        #expect(a.images != all.apply(to: data, indices: [3, 4, 5], seed: 2, epoch: 2).images)
        #expect(a.images != all.apply(to: data, indices: [3, 4, 5], seed: 1, epoch: 3).images)
        #expect(a.images != data.subset([3, 4, 5]).images && a.labels == data.subset([3, 4, 5]).labels)
        // The same example gets the same transformation in another batch.
        let other = all.apply(to: data, indices: [9, 4], seed: 1, epoch: 2)
        #expect(Array(other.images[784..<1568]) == Array(a.images[784..<1568]))
        #expect(Augmentation.none.apply(to: data, indices: [1, 2], seed: 1, epoch: 0) == data.subset([1, 2]))

        let flip = Augmentation([.flip]).apply(to: data, indices: Array(0..<12)[...], seed: 5, epoch: 0)
        var mirrored = 0
        for i in 0..<12 {
            let original = Array(data.images[i * 784 ..< (i + 1) * 784]), out = Array(flip.images[i * 784 ..< (i + 1) * 784])
            let mirror = (0..<28).flatMap { y in (0..<28).map { x in original[y * 28 + 27 - x] } }
            #expect(out == original || out == mirror)
            if out == mirror && out != original { mirrored += 1 }
        }
        #expect(mirrored > 0 && mirrored < 12)
        #expect(kilnErrorMessage { _ = try Augmentation.parse("shift,warp") }
                == "unknown augmentation \"warp\"; known: shift, rotate, scale, noise, flip, crop, shear, erase")
    }
}
