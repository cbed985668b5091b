import Foundation
import KilnGraph
import KilnRuntime

extension Evaluation {
    /// Accuracy, mean cross-entropy and confusion matrix from per-example scores whose softmax is
    /// the predicted distribution (logits, or log-probabilities), against `labels`.
    public init(scores rows: [[Float]], labels: [Int32], classes: Int) {
        var correct = 0, loss = 0.0
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (i, row) in rows.enumerated() {
            let label = Int(labels[i])
            let predicted = row.indices.max { row[$0] < row[$1] }!
            if predicted == label { correct += 1 }
            if label < classes { confusion[label][predicted] += 1 }
            let m = Double(row.max()!)
            let logSum = Foundation.log(row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }) + m
            loss += logSum - Double(row[Swift.min(label, classes - 1)])
        }
        self.init(accuracy: Double(correct) / Double(Swift.max(rows.count, 1)), loss: loss / Double(Swift.max(rows.count, 1)),
                  count: rows.count, confusion: confusion)
    }
}

/// A trained classifier as a model file holds it: one network, or an ensemble of networks of
/// the same model (`kiln train --ensemble K`) whose prediction is the mean of the members'
/// softmax probabilities.
public final class TrainedClassifier {
    public let members: [ClassifierTrainer]
    public var model: ClassifierModel { members[0].model }
    public var classes: Int { members[0].model.classes }

    public init(members: [ClassifierTrainer]) {
        precondition(!members.isEmpty, "a classifier has at least one network")
        self.members = members
    }

    /// Per example, scores whose argmax is the prediction and whose softmax is the predicted
    /// distribution: one network's logits, or the log of the members' mean probabilities.
    public func scores(_ data: ImageDataset, batchSize: Int = 1000) throws -> [[Float]] {
        if members.count == 1 { return try members[0].logits(data, batchSize: batchSize) }
        var mean = [[Double]](repeating: [Double](repeating: 0, count: classes), count: data.count)
        for member in members {
            for (i, row) in try member.logits(data, batchSize: batchSize).enumerated() {
                let m = Double(row.max()!)
                let e = row.map { Foundation.exp(Double($0) - m) }
                let sum = e.reduce(0, +)
                for k in 0..<classes { mean[i][k] += e[k] / sum / Double(members.count) }
            }
        }
        return mean.map { row in row.map { Float(Foundation.log(Swift.max($0, 1e-30))) } }
    }

    /// The predicted class of every example.
    public func predict(_ data: ImageDataset, batchSize: Int = 1000) throws -> [Int] {
        try scores(data, batchSize: batchSize).map { row in row.indices.max { row[$0] < row[$1] }! }
    }

    /// Accuracy, mean cross-entropy (of the ensemble's distribution) and confusion matrix.
    public func evaluate(_ data: ImageDataset, batchSize: Int = 1000) throws -> Evaluation {
        guard data.labels.count == data.count else { throw KilnError.argument("evaluation needs labels") }
        return Evaluation(scores: try scores(data, batchSize: batchSize), labels: data.labels, classes: classes)
    }
}

/// What `fitEnsemble` did for one member.
public struct EnsembleMember: Sendable {
    /// The member's fit on the other folds (its history and kept epoch).
    public var fit: FitResult
    /// Its held-out fold at the kept epoch.
    public var validation: Evaluation
}

extension ClassifierTrainer {
    /// Trains an ensemble over `members` stratified folds: member k is a fresh trainer (seed
    /// `options.seed + k`, so members start and augment differently) fitted on every fold but
    /// fold k, with fold k as its validation set (early stopping keeps its best epoch). Together
    /// the members have seen every example; none has seen its own fold. `report` gets the member
    /// (0-based) and each epoch.
    public static func fitEnsemble(model: ClassifierModel, optimizer: Optimizer, data: ImageDataset, members: Int,
                                   options: FitOptions, threads: Int = defaultThreadCount(),
                                   report: (Int, EpochReport) -> Void = { _, _ in }) throws -> (trainers: [ClassifierTrainer], members: [EnsembleMember]) {
        precondition(members >= 2, "an ensemble over folds needs at least two members")
        let partition = DataSplit.stratifiedFolds(labels: data.labels, classes: data.classNames.count, folds: members, seed: options.seed)
        var trainers: [ClassifierTrainer] = [], summary: [EnsembleMember] = []
        for (k, held) in partition.enumerated() {
            let heldSet = Set(held)
            let rest = (0..<data.count).filter { !heldSet.contains($0) }
            var memberOptions = options
            memberOptions.seed = options.seed &+ UInt64(k)
            let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: memberOptions.seed, threads: threads)
            trainer.disabledPasses = options.disabledPasses
            trainer.checkNumerics = options.checkNumerics
            let result = try trainer.fit(data.subset(rest), validation: data.subset(held), options: memberOptions) { report(k, $0) }
            let best = result.history.first { $0.epoch == result.keptEpoch }!.validation!
            trainers.append(trainer)
            summary.append(EnsembleMember(fit: result, validation: best))
        }
        return (trainers, summary)
    }
}

extension Checkpoint {
    /// Metadata key of an ensemble file: the number of members (absent for one network).
    public static let ensembleKey = "kiln.ensemble"

    /// The prefix of member `k`'s tensors (0-based) in an ensemble file.
    static func memberPrefix(_ k: Int) -> String { "member\(k)." }

    /// Members an ensemble file holds; nil for a file with one network.
    public var ensembleSize: Int? { metadata[Self.ensembleKey].flatMap { Int($0) } }

    /// Writes an ensemble: every member's parameters (and the model state its inference graph
    /// reads, such as batch-norm statistics) under `member0.`, `member1.`, …, no optimizer
    /// state (an ensemble is not trained further). `epochs`: each member's kept epoch.
    public static func saveEnsemble(_ members: [ClassifierTrainer], classNames: [String], epochs: [Int], to path: String) throws {
        precondition(members.count >= 2 && epochs.count == members.count, "an ensemble has two or more members, one epoch count each")
        let model = members[0].model
        precondition(classNames.count == model.classes, "one class name per model output")
        let inference = ParameterStore()
        try inference.register(ClassifierTrainer.forwardGraph(model: model, batch: 1))
        var entries: [Safetensors.Entry] = [], stateNames: [String] = []
        for (k, member) in members.enumerated() {
            precondition(member.model.name == model.name, "ensemble members share one model")
            try member.initializeParameters()
            for name in inference.names {
                let tensor = member.store[name]!
                let stored = memberPrefix(k) + name
                if !tensor.isParameter { stateNames.append(stored) }
                entries.append(Safetensors.Entry(name: stored, shape: tensor.type.shape.dims, floats: tensor.values))
            }
        }
        let config: [String: Any] = ["input_shape": model.inputShape, "classes": model.classes,
                                     "optimizer": members[0].optimizer.description, "epochs": epochs.max()!]
        let metadata = ["kiln.model": model.name, "kiln.config": jsonText(config), "kiln.classes": jsonText(classNames),
                        "kiln.normalisation": normalisation, "kiln.state": jsonText(stateNames), "format": "pt",
                        ensembleKey: String(members.count), "kiln.ensemble_epochs": jsonText(epochs)]
            .merging(model.definition) { kiln, _ in kiln }
        try Safetensors.write(path: path, entries: entries, metadata: metadata)
    }

    /// The file's classifier: its one network, or every member of an ensemble file (each
    /// checked like `makeTrainer` checks a single network's tensors).
    public func makeClassifier(threads: Int = defaultThreadCount()) throws -> TrainedClassifier {
        guard let count = try ensembleMembers() else { return TrainedClassifier(members: [try makeTrainer(threads: threads)]) }
        var members: [ClassifierTrainer] = []
        for k in 0..<count {
            let prefix = Self.memberPrefix(k)
            var member = self
            member.metadata[Self.ensembleKey] = nil
            member.tensors = Dictionary(uniqueKeysWithValues: tensors.compactMap { key, value in
                key.hasPrefix(prefix) ? (String(key.dropFirst(prefix.count)), value) : nil
            })
            member.stateNames = stateNames.compactMap { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : nil }
            do { members.append(try member.makeTrainer(threads: threads)) } catch let KilnError.file(_, message) {
                throw KilnError.file(path: path, message: "ensemble member \(k): \(message)")
            }
        }
        let claimed = Set((0..<count).map(Self.memberPrefix))
        if let stray = tensors.keys.sorted().first(where: { key in !claimed.contains { key.hasPrefix($0) } }) {
            throw KilnError.file(path: path, message: "tensor \"\(stray)\" belongs to no member of the \(count)-member ensemble")
        }
        return TrainedClassifier(members: members)
    }

    /// The member count of an ensemble file (2 to 1,000), nil for one network; anything else is an error.
    func ensembleMembers() throws -> Int? {
        guard let text = metadata[Self.ensembleKey] else { return nil }
        guard let count = Int(text), (2...1000).contains(count) else {
            throw KilnError.file(path: path, message: "model metadata \"\(Self.ensembleKey)\" is \"\(excerpt(text))\", not a member count from 2 to 1000")
        }
        return count
    }

    /// Compact JSON with sorted keys (deterministic bytes).
    static func jsonText(_ value: Any) -> String {
        let data = try! JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }
}
