import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln train vae|cvae|conv-vae|conv-cvae|gan|cgan|dcgan|ddpm ...`: trains a generative model, prints the
/// loss per epoch, writes the model file and optionally a sample grid and the loss curves.
func trainGenerativeCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--dataset", "--data-dir", "--train", "--image-size", "--unlabelled", "--labeller", "--epochs", "--batch", "--lr",
                                              "--schedule", "--seed", "--threads", "--limit", "--plot", "--grid", "-o", "--classes", "--resume", "--save-every",
                                              "--time-budget", "--patience", "--judge", "--labeller-epochs"],
                             flags: ["--json", "--no-fuse", "--no-plan", "--check-numerics", "--no-prior"], command: "train")
    guard args.positionals.count == 1 else { throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`)") }
    let modelName = args.positionals[0]
    // Without --epochs: train until the loss stops improving, at most the model's epoch cap (and
    // --time-budget S, only when given: a wall-time limit makes the result depend on the machine's load).
    let epochsGiven = args.options["--epochs"] != nil
    let budget: Double? = try args.options["--time-budget"].map { _ in try args.double("--time-budget", default: 0, in: Limits.timeBudget) }
    var patience = 0  // set once the training set's size is known
    var seed = try args.seed()
    let saveEvery = try parseSaveEvery(args)
    let threads = try args.threads()
    let json = args.flags.contains("--json")
    guard let outputPath = args.options["-o"] else { throw KilnError.argument("train \(modelName): -o FILE.safetensors is required") }

    var (train, labeller) = try loadGenerativeTrainingSet(args, conditional: Zoo.conditionalGenerativeNames.contains(modelName), threads: threads)
    if let limit = args.options["--limit"] {
        guard let n = Int(limit), n > 0 else { throw KilnError.argument("--limit needs a positive integer, found \"\(excerpt(limit))\"") }
        train = train.subset(Array(0..<Swift.min(n, train.count)))
    }
    let model = try Zoo.generative(modelName, imageShape: [train.channels, train.height, train.width], classes: train.classNames.count)
    if model.isConditional && !train.isLabelled {
        throw KilnError.argument("\(modelName) is conditional: it needs labelled images (--train with labels or --dataset)")
    }
    let epochs = try args.int("--epochs", default: GenerativeStopping.maximumEpochs(model), in: Limits.epochs)
    // The conv VAEs learn to use the label only after many steps: batch 16 (hard glyph set 1, 150 epochs:
    // 90.8 % recognised at batch 16, 84.4 % at 32, 65.9 % at 64).
    let batch = try args.int("--batch", default: model.family == .vae && model.name.hasPrefix("conv") ? 16 : 64, in: Limits.batch)
    let (trainer, firstEpoch) = try startOrResumeGenerative(model, train: train, args: args, seed: &seed, threads: threads)
    if args.flags.contains("--no-fuse") { trainer.disabledPasses.insert("fuse") }
    trainer.core.runOptions.profile = Environment.profile
    if args.flags.contains("--no-plan") { trainer.disabledPasses.insert("plan-memory") }
    trainer.checkNumerics = args.flags.contains("--check-numerics")
    let baseRate = try args.double("--lr", default: trainer.defaultLearningRate, in: Limits.learningRate)
    let schedule = try LearningRateSchedule.parse(args.options["--schedule"] ?? "constant")
    let stepsPerEpoch = (train.count + batch - 1) / batch
    let rate = { (step: Int) in schedule.rate(base: baseRate, step: step, stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * (firstEpoch + epochs)) }
    try flagsChecked()
    if !json {
        print("training \(model.name) (\(model.summary)) on \(train.count) images, batch \(batch), lr \(baseRate), schedule \(schedule), \(threads) threads")
    }
    // Patience in epochs: at least 10, and at least 500 optimizer steps (small sets have few steps per epoch).
    patience = try args.int("--patience", default: Swift.max(GenerativeStopping.patience, (500 + stepsPerEpoch - 1) / stepsPerEpoch),
                            in: Limits.patience)
    if !json && !epochsGiven {
        print("training until the loss stops improving (\(model.family == .vae ? "no new best by 0.1 % for \(patience) epochs, " : "")"
              + "at most \(epochs) epochs\(budget.map { ", time budget \(Int($0)) s" } ?? "")); --epochs N trains exactly N, --time-budget S adds a wall-time limit")
    }
    var stopping = GenerativeStopping(patience: model.family == .vae && !epochsGiven ? patience : nil, budget: budget)
    var history: [EpochSummary] = []
    var epochSeconds: [Double] = []
    // Every checkpoint replaces -o atomically with the last epoch and what continues the run (--resume).
    try TrainingCore.runEpochs(first: firstEpoch, count: epochs, saveEvery: saveEvery, checkpoint: { done in
        try trainer.save(path: outputPath, classNames: train.classNames, epochs: done, resume: trainer.resumeState(epochs: done))
        if !json { print("checkpoint: wrote \(outputPath) after epoch \(done)"); fflush(stdout) }
    }) { epoch in
        let order = epochOrder(count: train.count, seed: seed, epoch: epoch)
        let start = Date()
        let losses = try trainer.trainEpoch(train, order: order, batchSize: batch, learningRate: rate) { done, total, losses in
            if done % (batch * 20) < batch || done == total {
                showProgress("epoch \(epoch + 1)/\(firstEpoch + epochs)", done: done, total: total, detail: describe(losses))
            }
        }
        epochSeconds.append(Date().timeIntervalSince(start))
        history.append(EpochSummary(epoch: epoch + 1, trainLoss: losses.main, validationLoss: losses.discriminator))
        if !json {
            print(String(format: "epoch %d/%d  %@  %.1f s", epoch + 1, firstEpoch + epochs, describe(losses), epochSeconds.last!))
            fflush(stdout)  // one line per epoch even when stdout is a file (training runs for minutes)
        }
        return stopping.observe(loss: losses.main, seconds: epochSeconds.reduce(0, +))
    }
    let trained = firstEpoch + history.count
    if !json && !epochsGiven {
        print("stopped after epoch \(trained): \(stopping.reason ?? "the default cap of \(epochs) epochs for \(model.name) reached")")
    }
    // A VAE samples z from Gaussians fitted to its encoder's codes of the training images (per class).
    if model.family == .vae && !args.flags.contains("--no-prior") && (train.isLabelled || !model.isConditional) {
        try trainer.fitLatentPrior(train)
        if !json {
            print("latent prior: \(model.isConditional ? "a Gaussian per class" : "a Gaussian") fitted to the encoder's codes of the \(train.count) training images; "
                  + "generate draws z from it (--no-prior keeps N(0, I))")
        }
    }
    // What `generate` checks its samples with: the training file (copies) and a classifier (recognition).
    var notes: [String: String] = [:]
    if let file = args.options["--train"] { notes[GenerativeFileKeys.trainFile] = absolutePath(file) }
    if let judge = args.options["--judge"] ?? args.options["--labeller"] {
        notes[GenerativeFileKeys.judge] = absolutePath(judge)
    } else if let labeller {
        let path = (outputPath.hasSuffix(".safetensors") ? String(outputPath.dropLast(".safetensors".count)) : outputPath) + ".labeller.safetensors"
        try saveClassifier(labeller, classNames: train.classNames, to: path)
        notes[GenerativeFileKeys.judge] = absolutePath(path)
        if !json { print("wrote the labeller it trained to \(path) (generate uses it to check samples)") }
    }
    try trainer.save(path: outputPath, classNames: train.classNames, epochs: trained, resume: trainer.resumeState(epochs: trained),
                     extraMetadata: notes)
    if let plot = args.options["--plot"] {
        // A GAN has two losses: its plot shows the generator's as "train" and the discriminator's as the second curve.
        let names = model.family == .gan ? ("generator", "discriminator") : (model.family == .vae ? "negative ELBO" : "noise MSE", "")
        try TrainingCurves(history, title: "\(model.name) training", lossNames: names).write(path: plot)
    }
    if let gridPath = args.options["--grid"] {
        let samples = model.isConditional
            ? try trainer.samplePerClass(10, seed: seed, classNames: train.classNames)
            : try trainer.sample(count: 100, seed: seed)
        try ImageGrid(checking: samples, perClass: 10, scale: 2).writePNG(path: gridPath)
    }
    if json {
        print(jsonObject([("model", modelName), ("images", train.count), ("epochs", history.count), ("batch", batch), ("lr", baseRate),
                          ("threads", threads), ("seed", Int(seed)), ("epoch_seconds", epochSeconds),
                          ("compile_seconds", trainer.compileSeconds), ("final_loss", history.last?.trainLoss ?? 0),
                          ("output", outputPath)]))
    } else {
        print("wrote \(outputPath)")
    }
}

private func describe(_ losses: GenerativeLosses) -> String {
    if let d = losses.discriminator { return String(format: "G loss %.4f  D loss %.4f", losses.main, d) }
    return String(format: "loss %.4f", losses.main)
}

/// The images to train on: `--dataset NAME` (its training split) or `--train FILE.csv`, plus the
/// images of `--unlabelled FILE.csv`: as they are for an unconditional model, or for a conditional
/// one with the labels a classifier (`--labeller MODEL.safetensors`) gives them with confidence ≥ 0.9.
private func loadGenerativeTrainingSet(_ args: Arguments, conditional: Bool, threads: Int) throws -> (ImageDataset, TrainedClassifier?) {
    if let name = args.options["--dataset"] {
        if args.options["--train"] != nil { throw KilnError.argument("train: give --dataset or --train, not both") }
        return (try loadDataset(name, directory: args.options["--data-dir"]).train, nil)
    }
    guard let path = args.options["--train"] else {
        throw KilnError.argument("train: --dataset NAME or --train FILE.csv is required")
    }
    let size = try args.options["--image-size"].map(CSVImages.parseImageSize)
    let train = try CSVImages.read(path: path, imageSize: size, classNames: try parseClasses(args), requireLabels: true)
    guard let extra = args.options["--unlabelled"] else { return (train, nil) }
    var unlabelled = try CSVImages.read(path: extra, imageSize: size, classNames: train.classNames)
    guard unlabelled.pixelsPerImage == train.pixelsPerImage else {
        throw KilnError.argument("--unlabelled images are \(unlabelled.height)x\(unlabelled.width), the training images \(train.height)x\(train.width)")
    }
    if !conditional {
        return (ImageDataset(images: train.images + unlabelled.images, labels: [], count: train.count + unlabelled.count,
                             channels: train.channels, height: train.height, width: train.width, classNames: train.classNames), nil)
    }
    let labeller: TrainedClassifier
    var trainedLabeller: TrainedClassifier?
    if let labellerPath = args.options["--labeller"] {
        let checkpoint = try Checkpoint.read(path: labellerPath)
        guard checkpoint.description.classNames == train.classNames else {
            throw KilnError.argument("--labeller \(labellerPath) knows classes \(checkpoint.description.classNames), the training file has \(train.classNames)")
        }
        labeller = try checkpoint.makeClassifier(threads: threads)
    } else {
        // No labeller given: train one on the labelled images, as `kiln train glyph-cnn` does by default.
        let start = Date()
        printError("--unlabelled without --labeller: training a labeller on the \(train.count) labelled images "
                   + "(\(TrainingRecipe.labellerModel), the default recipe: \(TrainingRecipe.ensembleMembers)-network ensemble, augmentation)")
        labeller = try TrainingRecipe.trainClassifier(train, seed: try args.seed(), threads: threads,
                                                      maximumEpochs: try args.int("--labeller-epochs", default: TrainingRecipe.maximumEpochs, in: Limits.epochs))
        trainedLabeller = labeller
        printError(String(format: "--unlabelled: labeller trained in %.1f s", Date().timeIntervalSince(start)))
    }
    unlabelled.labels = []
    var keep: [Int] = [], labels: [Int32] = []
    for (i, row) in try labeller.scores(unlabelled).enumerated() {
        let top = row.max()!
        let total = row.reduce(0) { $0 + exp(Double($1 - top)) }
        if 1 / total >= 0.9 { keep.append(i); labels.append(Int32(row.firstIndex(of: top)!)) }
    }
    var pseudo = unlabelled.subset(keep)
    pseudo.labels = labels
    printError("--labeller: \(keep.count) of \(unlabelled.count) unlabelled images labelled with confidence ≥ 0.9")
    return (ImageDataset(images: train.images + pseudo.images, labels: train.labels + pseudo.labels, count: train.count + pseudo.count,
                         channels: train.channels, height: train.height, width: train.width, classNames: train.classNames), trainedLabeller)
}

/// When a generative run without `--epochs` stops: after `patience` epochs in a row whose loss is
/// not 0.1 % below the best so far (a VAE's negative ELBO; a GAN's losses do not settle, so GANs
/// train for their cap), at the model's epoch cap, or (only with `--time-budget`) once the epochs
/// so far took the time budget. The caps are in epochs so that a default run does not depend on
/// the machine's load.
struct GenerativeStopping {
    static let patience = 10

    /// The default epoch cap of a model: the MLP VAEs usually stop on the plateau first (1,038–1,160
    /// epochs on the 500 images of the hard glyph sets); the conv VAEs, GANs and the DDPM train to it.
    static func maximumEpochs(_ model: GenerativeModel) -> Int {
        switch model.family {
        case .vae: return model.name.hasPrefix("conv") ? 150 : 1500
        case .gan: return 200
        case .diffusion: return 400
        }
    }
    let patience: Int?
    let budget: Double?
    private(set) var best = Double.infinity
    private(set) var sinceBest = 0
    private(set) var reason: String?

    init(patience: Int?, budget: Double?) { self.patience = patience; self.budget = budget }

    /// Records one epoch's loss and the training seconds so far; true: stop.
    mutating func observe(loss: Double, seconds: Double) -> Bool {
        if loss < best * (1 - 0.001) { best = loss; sinceBest = 0 } else { sinceBest += 1 }
        if let patience, sinceBest >= patience {
            reason = "the loss has not improved by 0.1 % for \(patience) epochs (best \(String(format: "%.4f", best)))"
            return true
        }
        if let budget, seconds >= budget {
            reason = "time budget of \(Int(budget)) s spent"
            return true
        }
        return false
    }
}

/// Metadata keys of a generative model file that `generate` reads to check its samples.
enum GenerativeFileKeys {
    /// The training file's absolute path (nearest-image copy check).
    static let trainFile = "kiln.train_file"
    /// A classifier file's absolute path (recognition per class): `--judge`, `--labeller`, or the labeller the run trained.
    static let judge = "kiln.judge"
}

func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// Writes a classifier as `train -o` would: one network, or an ensemble.
func saveClassifier(_ classifier: TrainedClassifier, classNames: [String], to path: String) throws {
    if classifier.members.count == 1 {
        try Checkpoint.save(classifier.members[0], classNames: classNames, epochs: 0, includingOptimizerState: false, to: path)
    } else {
        try Checkpoint.saveEnsemble(classifier.members, classNames: classNames, epochs: classifier.members.map { _ in 0 }, to: path)
    }
}

/// The trainer a generative `train` starts from: a new one, or with `--resume FILE` the file's
/// model and state (checked to be the same model on the same classes and image shape), whose
/// seed then replaces `seed` unless `--seed` says otherwise. Returns the epochs already done.
/// Used by one-process and distributed training alike (every rank reads the file).
func startOrResumeGenerative(_ model: GenerativeModel, train: ImageDataset, args: Arguments, seed: inout UInt64,
                             threads: Int) throws -> (trainer: GenerativeTrainer, firstEpoch: Int) {
    guard let resume = args.options["--resume"] else {
        return (GenerativeTrainer(model: model, seed: seed, threads: threads), 0)
    }
    let checkpoint = try Checkpoint.read(path: resume)
    let saved = checkpoint.description
    guard saved.modelName == model.name else { throw KilnError.file(path: resume, message: "holds a \(saved.modelName) model, not \(model.name)") }
    guard saved.classNames == train.classNames, saved.inputShape == model.imageShape else {
        throw KilnError.file(path: resume, message: "was trained on classes \(saved.classNames) of \(saved.inputShape), the training set has \(train.classNames) of \(model.imageShape)")
    }
    guard let state = checkpoint.resume else {
        throw KilnError.file(path: resume, message: "was written without the state that continues its run (written before checkpoints existed)")
    }
    seed = try resumedSeed(state, args: args, path: resume)
    let trainer = try GenerativeTrainer.load(path: resume, seed: seed, threads: threads).trainer
    trainer.restore(state)
    return (trainer, state.epochs)
}
