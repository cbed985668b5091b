import Foundation
import KilnGraph
import KilnRuntime

/// Remembers the epoch with the lowest validation loss and says when to stop: after `patience`
/// epochs in a row without a new best (never, when `patience` is nil).
public struct EarlyStopping: Sendable {
    /// Epochs without improvement that end training; nil trains every epoch.
    public let patience: Int?
    /// The best epoch so far (as passed to `observe`) and its loss.
    public private(set) var best: (epoch: Int, loss: Double)?
    /// Epochs in a row since the best one.
    public private(set) var epochsWithoutImprovement = 0

    public init(patience: Int?) {
        precondition(patience.map { $0 > 0 } ?? true, "patience is positive")
        self.patience = patience
    }

    /// Early stopping as a checkpoint left it.
    public init(patience: Int?, best: (epoch: Int, loss: Double)?, epochsWithoutImprovement: Int) {
        self.init(patience: patience)
        self.best = best
        self.epochsWithoutImprovement = epochsWithoutImprovement
    }

    /// Records one epoch's validation loss. `improved`: it is the new best (strictly lower; a NaN
    /// loss never is). `stop`: patience ran out.
    public mutating func observe(epoch: Int, loss: Double) -> (improved: Bool, stop: Bool) {
        if best == nil || loss < best!.loss {
            if loss.isNaN && best != nil {
                epochsWithoutImprovement += 1
            } else {
                best = (epoch, loss)
                epochsWithoutImprovement = 0
                return (true, false)
            }
        } else {
            epochsWithoutImprovement += 1
        }
        return (false, patience.map { epochsWithoutImprovement >= $0 } ?? false)
    }
}

/// How to fit a classifier.
public struct FitOptions: Sendable {
    public var epochs: Int
    public var batchSize: Int
    public var learningRate: Double
    /// How the rate changes per step, with `learningRate` as its base (epochs count from the first, resumed ones included).
    public var schedule: LearningRateSchedule = .constant
    /// Early stopping's patience (used only with a validation set); nil runs every epoch.
    public var patience: Int?
    public var augmentation: Augmentation
    /// Seeds the epoch orders and the augmentation.
    public var seed: UInt64
    /// Epochs already trained (a resumed run): numbering, orders and augmentation continue from here.
    public var firstEpoch: Int
    /// The order of the examples in an epoch: `epochOrder` (SplitMix64) by default; `numpyEpochOrder`
    /// follows the peers' numpy runs.
    public var order: @Sendable (_ count: Int, _ seed: UInt64, _ epoch: Int) -> [Int] = { epochOrder(count: $0, seed: $1, epoch: $2) }
    /// Compiler passes the trainers that `crossValidate` makes skip, and whether they check numerics.
    public var disabledPasses: Set<String> = []
    public var checkNumerics = false
    /// When `fit` calls its checkpoint hook between epochs.
    public var saveEvery: SaveSchedule = .never
    /// The state a resumed run continues from (step counters, early stopping's best so far);
    /// `firstEpoch` should be its `epochs`.
    public var resume: ResumeState?

    public init(epochs: Int, batchSize: Int = 32, learningRate: Double = 0.01, patience: Int? = nil,
                augmentation: Augmentation = .none, seed: UInt64 = 0, firstEpoch: Int = 0) {
        self.epochs = epochs; self.batchSize = batchSize; self.learningRate = learningRate; self.patience = patience
        self.augmentation = augmentation; self.seed = seed; self.firstEpoch = firstEpoch
    }
}

extension FitOptions {
    /// Refuses options whose step arithmetic would overflow (huge or negative epoch counts, say
    /// from a resumed model file) before any training starts.
    func validate(count: Int) throws {
        guard epochs >= 0, firstEpoch >= 0 else {
            throw KilnError.argument("training needs non-negative epoch counts, found \(epochs) epochs from epoch \(firstEpoch)")
        }
        guard batchSize >= 1 else { throw KilnError.argument("training needs a batch size of at least 1, found \(batchSize)") }
        let stepsPerEpoch = count / batchSize + 1
        let (lastEpoch, overflow) = firstEpoch.addingReportingOverflow(epochs)
        guard !overflow, !lastEpoch.multipliedReportingOverflow(by: stepsPerEpoch).overflow else {
            throw KilnError.argument("training from epoch \(firstEpoch) for \(epochs) epochs of \(stepsPerEpoch) steps counts more steps than fit in an integer")
        }
    }
}

/// One epoch of a fit.
public struct EpochReport: Sendable {
    /// 1-based, counting resumed epochs.
    public var epoch: Int
    /// Mean loss and accuracy over the epoch's training batches (before each step's update,
    /// on augmented images when augmenting).
    public var trainLoss: Double
    public var trainAccuracy: Double
    /// The validation set after the epoch, if there is one.
    public var validation: Evaluation?
    public var seconds: Double
    /// Whether this epoch has the lowest validation loss so far.
    public var isBest: Bool
}

/// What a fit did.
public struct FitResult: Sendable {
    public var history: [EpochReport]
    /// The epoch whose parameters the trainer holds at the end: the best by validation loss, or
    /// the last one without a validation set.
    public var keptEpoch: Int
    /// Whether early stopping ended the run before `epochs`.
    public var stoppedEarly: Bool
}

/// The k-fold cross-validation summary.
public struct CrossValidation: Sendable {
    /// Per fold: validation accuracy and loss at its best epoch, and that epoch (1-based).
    public var accuracies: [Double]
    public var losses: [Double]
    public var bestEpochs: [Int]
    public var meanAccuracy: Double { accuracies.reduce(0, +) / Double(accuracies.count) }
    /// Sample standard deviation (n − 1); 0 for one fold.
    public var accuracyStandardDeviation: Double {
        guard accuracies.count > 1 else { return 0 }
        let mean = meanAccuracy
        return (accuracies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(accuracies.count - 1)).squareRoot()
    }
}

extension ClassifierTrainer {
    /// A copy of every parameter and state value in the store.
    public func snapshot() -> [String: [Float]] {
        var values: [String: [Float]] = [:]
        for name in store.names { values[name] = store[name]!.values }
        return values
    }

    /// Puts back values taken by `snapshot()`.
    public func restore(_ snapshot: [String: [Float]]) {
        for (name, values) in snapshot { store[name]!.values = values }
    }

    /// Trains on `train` for `options.epochs` epochs. With a `validation` set it evaluates after
    /// every epoch, keeps a copy of the parameters and optimizer state at the epoch with the lowest
    /// validation loss, stops after `patience` epochs without a new best, and ends holding the
    /// best epoch's values. `report` is called after every epoch, `checkpoint` after the epochs
    /// `options.saveEvery` names, with what a model file needs to continue the run exactly
    /// (`Checkpoint.save(…, resume:)`); the store then holds the last epoch's values.
    @discardableResult
    public func fit(_ train: ImageDataset, validation: ImageDataset? = nil, options: FitOptions,
                    checkpoint: ((ResumeState) throws -> Void)? = nil,
                    report: (EpochReport) -> Void = { _ in }) throws -> FitResult {
        precondition(train.isLabelled, "training needs labels")
        try options.validate(count: train.count)
        var stopping = EarlyStopping(patience: options.patience,
                                     best: options.resume.flatMap { r in r.bestEpoch.map { ($0, r.bestLoss ?? .infinity) } },
                                     epochsWithoutImprovement: options.resume?.epochsWithoutImprovement ?? 0)
        var bestValues: [String: [Float]]? = options.resume?.bestValues
        if let resume = options.resume {
            core.restoreProgramSteps(resume.programSteps)
            // The best epoch was the last one saved: its values are the store's.
            if resume.bestEpoch == resume.epochs && bestValues == nil { bestValues = snapshot() }
        }
        func state(epochs: Int) -> ResumeState {
            var state = ResumeState(epochs: epochs, seed: options.seed)
            state.programSteps = core.programSteps
            state.bestEpoch = stopping.best?.epoch
            state.bestLoss = stopping.best?.loss
            state.epochsWithoutImprovement = stopping.epochsWithoutImprovement
            // The best epoch's values, unless they are the store's (the best epoch is the last).
            state.bestValues = stopping.best?.epoch == epochs ? nil : bestValues
            return state
        }
        var history: [EpochReport] = []
        var stoppedEarly = false
        let lastEpoch = options.firstEpoch + options.epochs
        try TrainingCore.runEpochs(first: options.firstEpoch, count: options.epochs, saveEvery: options.saveEvery,
                                   checkpoint: checkpoint.map { hook in { try hook(state(epochs: $0)) } }) { epoch in
            let start = Date()
            let order = options.order(train.count, options.seed, epoch)
            var totalLoss = 0.0, correct = 0
            let batches = TrainingCore.batches(count: order.count, batchSize: options.batchSize)
            for (index, range) in batches.enumerated() {
                let batch = options.augmentation.apply(to: train, indices: order[range], seed: options.seed, epoch: epoch)
                let rate = options.schedule.rate(base: options.learningRate, step: epoch * batches.count + index,
                                                 stepsPerEpoch: batches.count, totalSteps: lastEpoch * batches.count)
                let loss = try trainStep(batch, indices: Array(0..<batch.count)[...], learningRate: rate)
                let logits = try trainingProgram(batch: batch.count).outputPointer("logits")
                for row in 0..<batch.count {
                    var predicted = 0
                    for k in 1..<model.classes where logits[row * model.classes + k] > logits[row * model.classes + predicted] {
                        predicted = k
                    }
                    if predicted == Int(batch.labels[row]) { correct += 1 }
                }
                totalLoss += Double(loss) * Double(batch.count)
            }
            var record = EpochReport(epoch: epoch + 1, trainLoss: totalLoss / Double(Swift.max(order.count, 1)),
                                     trainAccuracy: Double(correct) / Double(Swift.max(order.count, 1)),
                                     validation: nil, seconds: 0, isBest: false)
            var stop = false
            if let validation {
                let result = try evaluate(validation)
                record.validation = result
                let decision = stopping.observe(epoch: epoch + 1, loss: result.loss)
                if decision.improved { bestValues = snapshot() }
                record.isBest = decision.improved
                stop = decision.stop
            }
            record.seconds = Date().timeIntervalSince(start)
            history.append(record)
            report(record)
            if stop { stoppedEarly = epoch + 1 < lastEpoch }
            return stop
        }
        if let bestValues { restore(bestValues) }
        return FitResult(history: history, keptEpoch: stopping.best?.epoch ?? (options.firstEpoch + history.count),
                         stoppedEarly: stoppedEarly)
    }

    /// k-fold cross-validation: for each fold a fresh trainer (same model, optimizer and seed)
    /// fits the other folds with the fold as validation set. `report` gets the fold (0-based) and
    /// each epoch.
    public static func crossValidate(model: ClassifierModel, optimizer: Optimizer, data: ImageDataset, folds: Int,
                                     options: FitOptions, threads: Int = defaultThreadCount(),
                                     report: (Int, EpochReport) -> Void = { _, _ in }) throws -> CrossValidation {
        let partition = DataSplit.stratifiedFolds(labels: data.labels, classes: data.classNames.count, folds: folds, seed: options.seed)
        var summary = CrossValidation(accuracies: [], losses: [], bestEpochs: [])
        for (fold, held) in partition.enumerated() {
            let heldSet = Set(held)
            let rest = (0..<data.count).filter { !heldSet.contains($0) }
            let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: options.seed, threads: threads)
            trainer.disabledPasses = options.disabledPasses
            trainer.checkNumerics = options.checkNumerics
            let result = try trainer.fit(data.subset(rest), validation: data.subset(held), options: options) { report(fold, $0) }
            let best = result.history.first { $0.epoch == result.keptEpoch }!.validation!
            summary.accuracies.append(best.accuracy)
            summary.losses.append(best.loss)
            summary.bestEpochs.append(result.keptEpoch)
        }
        return summary
    }
}

/// Seeded, stratified ways to hold out data.
public enum DataSplit {
    /// Each class's examples in a seeded random order (class by class).
    private static func shuffledByClass(labels: [Int32], classes: Int, seed: UInt64) -> [[Int]] {
        var byClass = [[Int]](repeating: [], count: classes)
        for (index, label) in labels.enumerated() { byClass[Int(label)].append(index) }
        return byClass.enumerated().map { label, members in
            epochOrder(count: members.count, seed: seed, epoch: 1_000_000 + label).map { members[$0] }
        }
    }

    /// A validation split holding out about `fraction` of every class (rounded, at least one
    /// example of every class that has two or more). Both index lists are sorted.
    public static func stratified(labels: [Int32], classes: Int, validationFraction fraction: Double,
                                  seed: UInt64) -> (train: [Int], validation: [Int]) {
        precondition(fraction > 0 && fraction < 1, "the validation fraction is in (0, 1)")
        var train: [Int] = [], validation: [Int] = []
        for members in shuffledByClass(labels: labels, classes: classes, seed: seed) {
            var held = Int((Double(members.count) * fraction).rounded())
            if members.count >= 2 { held = Swift.min(Swift.max(held, 1), members.count - 1) } else { held = 0 }
            validation += members[..<held]
            train += members[held...]
        }
        return (train.sorted(), validation.sorted())
    }

    /// `folds` disjoint, sorted index lists covering every example once, each with about the
    /// same share of every class (examples dealt round-robin, class after class).
    public static func stratifiedFolds(labels: [Int32], classes: Int, folds: Int, seed: UInt64) -> [[Int]] {
        precondition(folds >= 2, "cross-validation needs at least two folds")
        var result = [[Int]](repeating: [], count: folds)
        var next = 0
        for members in shuffledByClass(labels: labels, classes: classes, seed: seed) {
            for index in members {
                result[next].append(index)
                next = (next + 1) % folds
            }
        }
        return result.map { $0.sorted() }
    }
}
