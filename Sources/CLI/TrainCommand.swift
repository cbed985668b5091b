import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// Loads a named data set's train and test splits.
func loadDataset(_ name: String, directory: String?) throws -> (train: ImageDataset, test: ImageDataset) {
    switch name {
    case "fashion-mnist":
        return (try FashionMNIST.load(split: .train, directory: directory), try FashionMNIST.load(split: .test, directory: directory))
    case "glyphs":
        return (Glyphs.make(count: 3000, seed: 1), Glyphs.make(count: 1000, seed: 2))
    case "synthetic-cifar":
        return (SyntheticCIFAR.make(count: 5000, seed: 1), SyntheticCIFAR.make(count: 1000, seed: 2))
    default:
        throw KilnError.argument("unknown data set \"\(excerpt(name))\"; known: fashion-mnist, glyphs, synthetic-cifar")
    }
}

func parseOptimizer(_ args: Arguments) throws -> Optimizer {
    let momentum = try args.double("--momentum", default: 0.9, in: Limits.momentum)
    switch args.options["--optimizer"] ?? "sgd" {
    case "sgd": return .sgd(momentum: momentum)
    case "adam": return .adam()
    case "adagrad": return .adagrad()
    case let other: throw KilnError.argument("unknown optimizer \"\(excerpt(other))\"; known: sgd, adam, adagrad")
    }
}

/// `--classes A,B,C`: the labels a training file must use (in this class order); nil when not given.
func parseClasses(_ args: Arguments) throws -> [String]? {
    guard let text = args.options["--classes"] else { return nil }
    let names = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    let printable = { (name: String) in !name.unicodeScalars.contains { [.control, .lineSeparator, .paragraphSeparator].contains($0.properties.generalCategory) } }
    guard names.count >= 2, names.allSatisfy({ !$0.isEmpty && $0 != "NA" && $0.utf8.count <= CSVImages.maximumLabelBytes && printable($0) }),
          Set(names).count == names.count else {
        throw KilnError.argument("--classes needs two or more distinct names separated by commas (e.g. A,B,C), found \"\(excerpt(text))\"")
    }
    return names
}

/// Where a training run's images come from: a course CSV file or a named data set.
struct TrainingData {
    var train: ImageDataset
    /// The named set's test split, reported per epoch (never used to choose anything).
    var test: ImageDataset?
    var name: String
}

func loadTrainingData(_ args: Arguments) throws -> TrainingData {
    var data: TrainingData
    switch (args.options["--train"], args.options["--dataset"]) {
    case let (csv?, nil):
        let size = try args.options["--image-size"].map(CSVImages.parseImageSize)
        data = TrainingData(train: try CSVImages.read(path: csv, imageSize: size, classNames: try parseClasses(args), requireLabels: true),
                            test: nil, name: csv)
    case let (nil, name?):
        let (train, test) = try loadDataset(name, directory: Environment.dataDirectory(args.options["--data-dir"]))
        data = TrainingData(train: train, test: test, name: name)
    case (.some, .some): throw KilnError.argument("train: give --train CSV or --dataset NAME, not both")
    case (nil, nil): throw KilnError.argument("train: give --train CSV (course image file) or --dataset NAME (fashion-mnist, glyphs or synthetic-cifar)")
    }
    if let limit = args.options["--limit"] {
        guard let n = Int(limit), n > 0 else { throw KilnError.argument("--limit needs a positive integer, found \"\(excerpt(limit))\"") }
        data.train = data.train.subset(Array(0..<Swift.min(n, data.train.count)))
    }
    return data
}

/// One progress line per epoch.
private func epochLine(_ record: EpochReport, of total: Int, test: Evaluation? = nil) -> String {
    var line = String(format: "epoch %3d/%d  train loss %.4f acc %.4f", record.epoch, total, record.trainLoss, record.trainAccuracy)
    if let v = record.validation { line += String(format: "  val loss %.4f acc %.4f", v.loss, v.accuracy) }
    if let test { line += String(format: "  test loss %.4f acc %.4f", test.loss, test.accuracy) }
    line += String(format: "  %.1f s", record.seconds)
    if record.isBest { line += "  *" }
    return line
}

func trainCommand(_ words: [String]) throws {
    // Under mpirun (or with --distributed): data-parallel training, DistributedTrainCommand.swift.
    if Environment.launchedByMPI || words.contains("--distributed") { return try distributedTrainCommand(words) }
    if words.contains(where: Zoo.isGenerative) { return try trainGenerativeCommand(words) }
    let args = try Arguments(words, options: ["--dataset", "--data-dir", "--train", "--image-size", "--val-split", "--folds",
                                              "--augment", "--patience", "--epochs", "--batch", "--lr", "--momentum",
                                              "--optimizer", "--seed", "--threads", "--limit", "-o", "--resume", "--plot", "--schedule", "--classes", "--init", "--save-every",
                                              "--ensemble"],
                             flags: ["--json", "--no-fuse", "--no-plan", "--check-numerics"], command: "train")
    let initPath = args.options["--init"]
    guard args.positionals.count == 1 || (initPath != nil && args.positionals.isEmpty) else {
        throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`), or --init FILE (.onnx or a Kiln model file)")
    }
    let givenName = args.positionals.first
    let data = try loadTrainingData(args)
    let train = data.train
    // The recipe for a small image set from a file (the course's 500 glyphs): augmentation,
    // Adam, and an ensemble over folds whose members stop early on their held-out fold.
    let recipe = TrainingRecipe(args, data: data)
    let ensemble = try args.int("--ensemble", default: recipe.defaultEnsemble, in: Limits.ensemble)
    if ensemble > 1 {
        for flag in ["--val-split", "--folds", "--resume", "--init", "--save-every"] where args.options[flag] != nil {
            throw KilnError.argument("train: --ensemble \(ensemble) trains its members on folds and writes them once at the end; it does not combine with \(flag) (add --ensemble 1 for one network)")
        }
        if ensemble > train.count { throw KilnError.argument("--ensemble needs 2 to \(train.count) members for \(train.count) images, found \(ensemble)") }
    }
    let validated = ensemble > 1 || args.options["--val-split"] != nil || args.options["--folds"] != nil
    // With a validation set --epochs is a maximum that early stopping should end well before.
    let epochs = try args.int("--epochs", default: validated ? TrainingRecipe.maximumEpochs : (data.test == nil ? 30 : 3), in: Limits.epochs)
    let batch = try args.int("--batch", default: data.test == nil ? 32 : 64, in: Limits.batch)
    let givenOptimizer = try parseOptimizer(args)  // checks --momentum even when the recipe's Adam is used
    let optimizer = args.options["--optimizer"] == nil && recipe.isFileData ? .adam() : givenOptimizer
    let learningRate = try args.double("--lr", default: recipe.isFileData && args.options["--optimizer"] == nil ? 0.003 : 0.01,
                                       in: Limits.learningRate)
    var seed = try args.seed()
    let threads = try args.threads()
    let json = args.flags.contains("--json")
    let saveEvery = try parseSaveEvery(args)
    let augmentation = try args.options["--augment"].map(Augmentation.parse) ?? recipe.defaultAugmentation
    let patience = try validated
        ? args.int("--patience", default: TrainingRecipe.patience, in: Limits.patience)
        : args.options["--patience"].map { _ in try args.int("--patience", default: 1, in: Limits.patience) }
    let output = args.options["-o"]
    var validationFraction: Double?
    if args.options["--val-split"] != nil {
        validationFraction = try args.double("--val-split", default: 0, in: Limits.validationSplit)
    }
    let folds = try args.options["--folds"].map { _ in try args.int("--folds", default: 5, in: 2...1000) }
    if validationFraction != nil && folds != nil { throw KilnError.argument("train: give --val-split or --folds, not both") }
    if let folds, folds < 2 || folds > train.count { throw KilnError.argument("--folds needs 2 to \(train.count) folds, found \(folds)") }
    if patience != nil && !validated {
        throw KilnError.argument("--patience needs a validation set: add --val-split or --folds (or --ensemble K)")
    }
    if train.classNames.count < 2 { throw KilnError.argument("train: \(data.name) has \(train.classNames.count) class; a classifier needs two or more") }

    // --init: start from an ONNX file's or a Kiln model file's weights (and its model), without its optimizer state.
    let initial = try initPath.map { try initialTrainer($0, modelName: givenName, data: train, optimizer: optimizer, seed: seed,
                                                        threads: threads, folds: folds, resume: args.options["--resume"]) }
    let model = try initial?.model
        ?? Zoo.classifier(givenName!, inputShape: [train.channels, train.height, train.width], classes: train.classNames.count)
    let modelName = givenName ?? model.name
    var firstEpoch = 0
    var resumeState: ResumeState?
    let trainer: ClassifierTrainer
    if let resume = args.options["--resume"] {
        if folds != nil { throw KilnError.argument("train: --resume continues one model; it does not combine with --folds") }
        let checkpoint = try Checkpoint.read(path: resume)
        let saved = checkpoint.description
        guard saved.modelName == model.name else {
            throw KilnError.file(path: resume, message: "holds a \(saved.modelName) model, not \(model.name)")
        }
        guard saved.classNames == train.classNames, saved.inputShape == model.inputShape else {
            throw KilnError.file(path: resume, message: "was trained on classes \(saved.classNames) of \(saved.inputShape), \(data.name) has \(train.classNames) of \(model.inputShape)")
        }
        if let state = checkpoint.resume {
            // The run continues with its own seed (epoch orders, augmentation, random ops).
            seed = try resumedSeed(state, args: args, path: resume)
            firstEpoch = state.epochs
            resumeState = state
        } else {
            firstEpoch = saved.epochs
        }
        trainer = try checkpoint.makeTrainer(optimizer: optimizer, seed: seed, threads: threads)
        try checkpoint.restoreOptimizerState(into: trainer)
    } else {
        trainer = initial ?? ClassifierTrainer(model: model, optimizer: optimizer, seed: seed, threads: threads)
    }
    if args.flags.contains("--no-fuse") { trainer.disabledPasses.insert("fuse") }
    trainer.core.runOptions.profile = Environment.profile
    if args.flags.contains("--no-plan") { trainer.disabledPasses.insert("plan-memory") }
    trainer.checkNumerics = args.flags.contains("--check-numerics")
    var options = FitOptions(epochs: epochs, batchSize: batch, learningRate: learningRate, patience: patience,
                             augmentation: augmentation, seed: seed, firstEpoch: firstEpoch)
    options.disabledPasses = trainer.disabledPasses
    options.checkNumerics = trainer.checkNumerics
    options.schedule = try LearningRateSchedule.parse(args.options["--schedule"] ?? "constant")
    options.resume = resumeState
    options.saveEvery = output == nil ? .never : saveEvery
    // Every checkpoint replaces `-o` atomically with the last epoch's values and what continues
    // the run (`--resume`); the final write below holds the kept epoch.
    let checkpoint: ((ResumeState) throws -> Void)? = output.map { path in { state in
        try Checkpoint.save(trainer, classNames: train.classNames, epochs: state.epochs, resume: state, to: path)
        if !json { print("checkpoint: wrote \(path) after epoch \(state.epochs)"); fflush(stdout) }
    } }
    // Fashion-MNIST follows the peers' order (numpy `default_rng([seed, epoch]).permutation`) so runs compare.
    if data.name == "fashion-mnist" { options.order = { numpyEpochOrder(count: $0, seed: $1, epoch: $2) } }
    if !json {
        print("training \(model.name) on \(data.name): \(train.count) images of \(train.height)x\(train.width), classes \(train.classNames.joined(separator: ", ")); "
              + "batch \(batch), \(optimizer), lr \(learningRate), augment \(augmentation), \(threads) threads")
        for note in recipe.notes(augmentation: augmentation, ensemble: ensemble, optimizer: optimizer, epochs: epochs, patience: patience) {
            print(note)
        }
    }

    try flagsChecked()
    let start = Date()
    var summary: [(String, Any)] = []
    var lastTest: Evaluation?
    let result: FitResult
    if ensemble > 1 {
        let start = Date()
        let (members, summary): ([ClassifierTrainer], [EnsembleMember]) = try ClassifierTrainer.fitEnsemble(model: model, optimizer: optimizer, data: train, members: ensemble,
                                                                   options: options, threads: threads) { k, record in
            if !json { print("member \(k + 1)/\(ensemble)  " + epochLine(record, of: epochs)) }
        }
        let kept: [Int] = summary.map { $0.fit.keptEpoch }
        let accuracies: [Double] = summary.map { $0.validation.accuracy }
        let mean = accuracies.reduce(0, +) / Double(ensemble)
        if !json {
            print(String(format: "ensemble of %d: held-out fold accuracy per member %@ (mean %.4f); kept epochs %@; %.1f s",
                         ensemble, accuracies.map { String(format: "%.4f", $0) }.joined(separator: ", "), mean,
                         kept.map(String.init).joined(separator: ", "), Date().timeIntervalSince(start)))
            if summary.contains(where: { !$0.fit.stoppedEarly && $0.fit.keptEpoch == epochs }) {
                print("note: a member was still improving at --epochs \(epochs), the maximum: give a larger --epochs")
            }
        }
        if let plot = args.options["--plot"] {
            try TrainingCurves(summary[0].fit.history, title: "\(model.name) on \(data.name), ensemble member 1 of \(ensemble)").write(path: plot)
            if !json { print("wrote \(plot) (member 1)") }
        }
        if let output {
            try Checkpoint.saveEnsemble(members, classNames: train.classNames, epochs: kept, to: output)
            if !json { print("wrote \(output) (ensemble of \(ensemble) \(model.name) networks; predict and eval average their probabilities)") }
        }
        if json {
            var fields: [(String, Any)] = [("model", modelName), ("dataset", data.name), ("ensemble", ensemble), ("batch", batch),
                                           ("lr", learningRate), ("optimizer", "\(optimizer)"), ("augment", "\(augmentation)")]
            let compile: Double = members.map { $0.compileSeconds }.reduce(0, +)
            fields += [("threads", threads), ("seed", Int(seed)), ("train_seconds", Date().timeIntervalSince(start)),
                       ("kept_epochs", kept), ("member_val_accuracies", accuracies), ("member_val_accuracy_mean", mean),
                       ("compile_seconds", compile)]
            if let output { fields.append(("output", output)) }
            print(jsonObject(fields))
        }
        return
    } else if let folds {
        let cv = try ClassifierTrainer.crossValidate(model: model, optimizer: optimizer, data: train, folds: folds,
                                                     options: options, threads: threads) { fold, record in
            if !json { print("fold \(fold + 1)/\(folds)  " + epochLine(record, of: epochs)) }
        }
        let finalEpochs = Swift.max(1, Int((Double(cv.bestEpochs.reduce(0, +)) / Double(folds)).rounded()))
        if !json {
            print(String(format: "%d-fold cross-validation: accuracy %.4f ± %.4f (sd); best epochs ",
                         folds, cv.meanAccuracy, cv.accuracyStandardDeviation) + cv.bestEpochs.map(String.init).joined(separator: ", "))
            print("final model: trained on all \(train.count) images for \(finalEpochs) epochs (the folds' mean best epoch)")
        }
        options.epochs = finalEpochs
        result = try trainer.fit(train, options: options) { record in
            if !json { print("final  " + epochLine(record, of: finalEpochs)) }
        }
        summary += [("cv_accuracy_mean", cv.meanAccuracy), ("cv_accuracy_sd", cv.accuracyStandardDeviation),
                    ("cv_accuracies", cv.accuracies), ("cv_best_epochs", cv.bestEpochs), ("final_epochs", finalEpochs)]
    } else if let validationFraction {
        let split = DataSplit.stratified(labels: train.labels, classes: train.classNames.count,
                                         validationFraction: validationFraction, seed: seed)
        let validation = train.subset(split.validation)
        if !json { print("validation: \(split.validation.count) images held out (stratified), \(split.train.count) for training") }
        result = try trainer.fit(train.subset(split.train), validation: validation, options: options, checkpoint: checkpoint) { record in
            if !json { print(epochLine(record, of: firstEpoch + epochs)) }
        }
        let kept = result.history.first { $0.epoch == result.keptEpoch }!.validation!
        if !json {
            print(String(format: "kept epoch %d (lowest validation loss %.4f, accuracy %.4f)", result.keptEpoch, kept.loss, kept.accuracy)
                  + (result.stoppedEarly ? "; stopped early" : ""))
        }
        summary += [("kept_epoch", result.keptEpoch), ("val_loss", kept.loss), ("val_accuracy", kept.accuracy),
                    ("stopped_early", result.stoppedEarly)]
    } else {
        result = try trainer.fit(train, options: options, checkpoint: checkpoint) { record in
            let test = data.test.flatMap { try? trainer.evaluate($0) }
            lastTest = test
            if !json { print(epochLine(record, of: firstEpoch + epochs, test: test)) }
        }
    }
    let seconds = Date().timeIntervalSince(start)
    if let plot = args.options["--plot"] {
        try TrainingCurves(result.history, title: "\(model.name) on \(data.name)").write(path: plot)
        if !json { print("wrote \(plot)") }
    }
    if let output {
        // Without a validation set the kept epoch is the last: the file also continues the run exactly.
        let final = validationFraction == nil && folds == nil ? trainer.resumeState(epochs: result.keptEpoch, seed: seed) : nil
        try Checkpoint.save(trainer, classNames: train.classNames, epochs: result.keptEpoch, resume: final, to: output)
        if !json { print("wrote \(output) (\(model.name), epoch \(result.keptEpoch), with optimizer state)") }
    }
    if json {
        let last = result.history.last
        print(jsonObject([("model", modelName), ("dataset", data.name), ("epochs", result.history.count), ("batch", batch),
                          ("lr", learningRate), ("optimizer", "\(optimizer)"), ("augment", "\(augmentation)"),
                          ("threads", threads), ("seed", Int(seed)), ("train_seconds", seconds),
                          ("epoch_seconds", result.history.map(\.seconds)), ("compile_seconds", trainer.compileSeconds),
                          ("train_loss", last?.trainLoss ?? 0), ("train_accuracy", last?.trainAccuracy ?? 0)]
                         + summary
                         + (lastTest.map { [("test_accuracy", $0.accuracy), ("test_loss", $0.loss)] as [(String, Any)] } ?? [])
                         + (output.map { [("output", $0)] as [(String, Any)] } ?? [])))
    }
}

/// The trainer `--init FILE` starts from: an ONNX classifier (`ONNXModel`) or a Kiln model file's
/// model, with the file's weights; its input shape and class count must be the data's.
private func initialTrainer(_ path: String, modelName: String?, data: ImageDataset, optimizer: Optimizer, seed: UInt64,
                            threads: Int, folds: Int?, resume: String?) throws -> ClassifierTrainer {
    if folds != nil { throw KilnError.argument("train: --init starts one model; it does not combine with --folds") }
    if resume != nil { throw KilnError.argument("train: give --init or --resume, not both") }
    let trainer: ClassifierTrainer
    if path.hasSuffix(".onnx") {
        trainer = try ClassifierTrainer.importing(try ONNXModel.load(path: path), optimizer: optimizer, seed: seed, threads: threads)
    } else {
        trainer = try Checkpoint.read(path: path).makeTrainer(optimizer: optimizer, seed: seed, threads: threads)
    }
    let model = trainer.model
    guard modelName == nil || modelName == model.name else {
        throw KilnError.file(path: path, message: "holds a \(model.name) model, not \(modelName ?? "")")
    }
    let shape = [data.channels, data.height, data.width]
    guard model.inputShape == shape, model.classes == data.classNames.count else {
        throw KilnError.file(path: path, message: "takes input \(model.inputShape) and gives \(model.classes) classes; the data has images \(shape) and \(data.classNames.count) classes")
    }
    return trainer
}

/// `--save-every E`: a checkpoint every E epochs; by default (`SaveSchedule.automatic`) every
/// epoch once the run is expected to last longer than a minute.
func parseSaveEvery(_ args: Arguments) throws -> SaveSchedule {
    guard args.options["--save-every"] != nil else { return .automatic }
    return .every(try args.int("--save-every", default: 1, in: Limits.epochs))
}

/// The seed a resumed run continues with: the checkpoint's; a different `--seed` is an error.
func resumedSeed(_ state: ResumeState, args: Arguments, path: String) throws -> UInt64 {
    if args.options["--seed"] != nil, try args.seed() != state.seed {
        throw KilnError.argument("--resume \(path) continues a run with seed \(state.seed); drop --seed or give that seed")
    }
    return state.seed
}

/// What `kiln train` does by default for a classifier on a small image set read from a file (the
/// course's 500 labelled glyphs): augmentation, Adam at 0.003, and an ensemble of 5 networks over
/// stratified folds, each stopping early on its held-out fold. Measured on `make-glyphs
/// --difficulty hard` sets (README); every piece has its flag to turn it off.
struct TrainingRecipe {
    /// Training images up to which a file's set counts as small.
    static let smallSetLimit = 20_000
    static let ensembleMembers = 5
    /// The epoch limit with a validation set: early stopping ends runs long before it.
    static let maximumEpochs = 200
    static let patience = 15

    /// Training from a file (`--train CSV`), not a named data set.
    let isFileData: Bool
    /// A small image set from a file: the recipe's augmentation and ensemble apply.
    let isSmallImageSet: Bool
    let augmentGiven: Bool
    let defaultEnsemble: Int

    init(_ args: Arguments, data: TrainingData) {
        isFileData = data.test == nil
        isSmallImageSet = isFileData && data.train.count <= Self.smallSetLimit && data.train.height >= 8 && data.train.width >= 8
        augmentGiven = args.options["--augment"] != nil
        let single = ["--val-split", "--folds", "--resume", "--init", "--save-every"].contains { args.options[$0] != nil }
        defaultEnsemble = isSmallImageSet && !single ? Self.ensembleMembers : 1
    }

    var defaultAugmentation: Augmentation { isSmallImageSet ? .defaultForSmallImageSets : .none }

    /// The classifier a run trains when it needs one and none is given (`--unlabelled` without `--labeller`).
    static let labellerModel = "glyph-cnn"

    /// What `kiln train glyph-cnn --train FILE` trains by default, as a library call: the ensemble
    /// over folds with the recipe's augmentation, Adam at 0.003, early stopping.
    static func trainClassifier(_ data: ImageDataset, seed: UInt64, threads: Int, maximumEpochs: Int = maximumEpochs) throws -> TrainedClassifier {
        let model = try Zoo.classifier(labellerModel, inputShape: [data.channels, data.height, data.width], classes: data.classNames.count)
        var options = FitOptions(epochs: maximumEpochs, batchSize: 32, learningRate: 0.003, patience: patience,
                                 augmentation: .defaultForSmallImageSets, seed: seed)
        options.saveEvery = .never
        let members = Swift.min(ensembleMembers, data.count)
        if members < 2 {
            let trainer = ClassifierTrainer(model: model, optimizer: .adam(), seed: seed, threads: threads)
            options.patience = nil
            options.epochs = 30
            try trainer.fit(data, options: options)
            return TrainedClassifier(members: [trainer])
        }
        return TrainedClassifier(members: try ClassifierTrainer.fitEnsemble(model: model, optimizer: .adam(), data: data, members: members,
                                                                            options: options, threads: threads).trainers)
    }

    /// The lines that say which defaults are on and how to turn them off.
    func notes(augmentation: Augmentation, ensemble: Int, optimizer: Optimizer, epochs: Int, patience: Int?) -> [String] {
        var lines: [String] = []
        if isSmallImageSet && !augmentGiven {
            lines.append("augmentation on by default for small image sets (\(augmentation)); --augment none turns it off, --augment LIST picks")
        }
        if ensemble > 1 {
            lines.append("ensemble of \(ensemble) networks over \(ensemble) stratified folds, each stopping early on its held-out fold "
                         + "(patience \(patience ?? 0), at most \(epochs) epochs); --ensemble 1 trains one network on all images")
        }
        return lines
    }
}
