import Foundation
import Kiln
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
    guard names.count >= 2, names.allSatisfy({ !$0.isEmpty && $0 != "NA" && $0.utf8.count <= CSVImages.maximumLabelBytes }),
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
                                              "--optimizer", "--seed", "--threads", "--limit", "-o", "--resume", "--plot", "--schedule", "--classes", "--init", "--save-every"],
                             flags: ["--json", "--no-fuse", "--no-plan", "--check-numerics"], command: "train")
    let initPath = args.options["--init"]
    guard args.positionals.count == 1 || (initPath != nil && args.positionals.isEmpty) else {
        throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`), or --init FILE (.onnx or a Kiln model file)")
    }
    let givenName = args.positionals.first
    let data = try loadTrainingData(args)
    let train = data.train
    let epochs = try args.int("--epochs", default: data.test == nil ? 30 : 3, in: Limits.epochs)
    let batch = try args.int("--batch", default: data.test == nil ? 32 : 64, in: Limits.batch)
    let learningRate = try args.double("--lr", default: 0.01, in: Limits.learningRate)
    var seed = try args.seed()
    let threads = try args.threads()
    let json = args.flags.contains("--json")
    let saveEvery = try parseSaveEvery(args)
    let optimizer = try parseOptimizer(args)
    let augmentation = try Augmentation.parse(args.options["--augment"] ?? "none")
    let patience = try args.options["--patience"].map { _ in try args.int("--patience", default: 1, in: Limits.patience) }
    let output = args.options["-o"]
    var validationFraction: Double?
    if args.options["--val-split"] != nil {
        validationFraction = try args.double("--val-split", default: 0, in: Limits.validationSplit)
    }
    let folds = try args.options["--folds"].map { _ in try args.int("--folds", default: 5, in: 2...1000) }
    if validationFraction != nil && folds != nil { throw KilnError.argument("train: give --val-split or --folds, not both") }
    if let folds, folds < 2 || folds > train.count { throw KilnError.argument("--folds needs 2 to \(train.count) folds, found \(folds)") }
    if patience != nil && validationFraction == nil && folds == nil {
        throw KilnError.argument("--patience needs a validation set: add --val-split or --folds")
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
    }

    let start = Date()
    var summary: [(String, Any)] = []
    var lastTest: Evaluation?
    let result: FitResult
    if let folds {
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
