import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `mpirun -np N kiln train MODEL …` (or `kiln train MODEL --distributed …`): data-parallel training
/// of a classifier (generative models: DistributedGenerativeCommand.swift) over MPI (issue 18; `DistributedTrainer`). Same data, global batch, order, schedule
/// and model file as a one-process `kiln train`; rank 0 alone prints and writes files.
func distributedTrainCommand(_ words: [String]) throws {
    if words.contains(where: Zoo.isGenerative) { return try distributedGenerativeCommand(words) }
    let oneProcessOnly = ["--val-split", "--folds", "--patience", "--plot", "--check-numerics", "--unlabelled", "--labeller"]
    if let option = words.first(where: { word in oneProcessOnly.contains { word == $0 || word.hasPrefix($0 + "=") } }) {
        throw KilnError.argument("train: \(option.split(separator: "=")[0]) is not available in a distributed run (under mpirun or with --distributed); run it in one process")
    }
    let args = try Arguments(words, options: ["--dataset", "--data-dir", "--train", "--image-size", "--augment", "--epochs", "--batch",
                                              "--lr", "--momentum", "--optimizer", "--seed", "--threads", "--limit", "-o", "--resume",
                                              "--schedule", "--classes", "--bucket-mb"],
                             flags: ["--json", "--no-fuse", "--no-plan", "--distributed", "--time-allreduce", "--no-overlap"], command: "train (distributed)")
    guard args.positionals.count == 1 else { throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`)") }
    let modelName = args.positionals[0]
    // One line and exit 1 when this build has no MPI; before anything is loaded.
    let world = try MPIWorld.communicator(timeout: Environment.mpiTimeout)
    let root = world.rank == 0
    let data = try loadTrainingData(args)
    let train = data.train
    let epochs = try args.int("--epochs", default: data.test == nil ? 30 : 3, in: Limits.epochs)
    let batch = try args.int("--batch", default: data.test == nil ? 32 : 64, in: Limits.batch)
    let learningRate = try args.double("--lr", default: 0.01, in: Limits.learningRate)
    let seed = try args.seed()
    // Ranks on one machine share its cores: by default each takes its share.
    let threads = try args.int("--threads", default: Swift.max(1, Swift.min(Environment.threads, Limits.threads.upperBound) / Environment.localRanks),
                               in: Limits.threads)
    let json = args.flags.contains("--json")
    let optimizer = try parseOptimizer(args)
    let augmentation = try Augmentation.parse(args.options["--augment"] ?? "none")
    let bucketMiB = try args.int("--bucket-mb", default: 4, in: 1...1024)
    if train.classNames.count < 2 { throw KilnError.argument("train: \(data.name) has \(train.classNames.count) class; a classifier needs two or more") }
    if batch < world.size {
        throw KilnError.argument("train: the global batch (\(batch)) is smaller than the number of ranks (\(world.size)); every rank needs an example")
    }

    let model = try Zoo.classifier(modelName, inputShape: [train.channels, train.height, train.width], classes: train.classNames.count)
    var firstEpoch = 0
    let trainer: ClassifierTrainer
    if let resume = args.options["--resume"] {
        // Every rank reads the file (a shared file system, or a copy on each node); rank 0's values are then sent to all.
        let checkpoint = try Checkpoint.read(path: resume)
        let saved = checkpoint.description
        guard saved.modelName == model.name else { throw KilnError.file(path: resume, message: "holds a \(saved.modelName) model, not \(model.name)") }
        guard saved.classNames == train.classNames, saved.inputShape == model.inputShape else {
            throw KilnError.file(path: resume, message: "was trained on classes \(saved.classNames) of \(saved.inputShape), \(data.name) has \(train.classNames) of \(model.inputShape)")
        }
        trainer = try checkpoint.makeTrainer(optimizer: optimizer, seed: seed, threads: threads)
        try checkpoint.restoreOptimizerState(into: trainer)
        firstEpoch = saved.epochs
    } else {
        trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: seed, threads: threads)
    }
    if args.flags.contains("--no-fuse") { trainer.disabledPasses.insert("fuse") }
    if args.flags.contains("--no-plan") { trainer.disabledPasses.insert("plan-memory") }
    let distributed = DistributedTrainer(trainer: trainer, communicator: world)
    distributed.bucketElements = bucketMiB << 18
    distributed.separateWaiting = args.flags.contains("--time-allreduce")
    distributed.overlap = !args.flags.contains("--no-overlap")
    var options = FitOptions(epochs: epochs, batchSize: batch, learningRate: learningRate, augmentation: augmentation,
                             seed: seed, firstEpoch: firstEpoch)
    options.schedule = try LearningRateSchedule.parse(args.options["--schedule"] ?? "constant")
    if data.name == "fashion-mnist" { options.order = { numpyEpochOrder(count: $0, seed: $1, epoch: $2) } }
    if root && !json {
        print("training \(model.name) on \(data.name) data-parallel over \(world.size) ranks (\(threads) threads each): \(train.count) images of \(train.height)x\(train.width); "
              + "global batch \(batch) (\(batch / world.size)–\((batch + world.size - 1) / world.size) per rank), \(optimizer), lr \(learningRate), augment \(augmentation)")
    }
    let start = Date()
    var lastTest: Evaluation?
    let history = try distributed.fit(train, options: options) { record in
        guard root else { return }
        lastTest = try data.test.map { try trainer.evaluate($0) }
        if !json {
            var line = String(format: "epoch %3d/%d  train loss %.4f acc %.4f", record.epoch, firstEpoch + epochs, record.trainLoss, record.trainAccuracy)
            if let test = lastTest { line += String(format: "  test loss %.4f acc %.4f", test.loss, test.accuracy) }
            line += String(format: "  %.1f s (all-reduce %.2f s)", record.seconds, record.reductionSeconds)
            print(line)
        }
    }
    let seconds = Date().timeIntervalSince(start)
    let stats = distributed.statistics
    if root, let output = args.options["-o"] {
        try Checkpoint.save(trainer, classNames: train.classNames, epochs: firstEpoch + history.count, to: output)
        if !json { print("wrote \(output) (\(model.name), epoch \(firstEpoch + history.count), with optimizer state)") }
    }
    let steps = Swift.max(stats.steps, 1)
    // Training only: the epochs' own time, without rank 0's test-set evaluation.
    let epochSeconds: Double = history.reduce(0) { $0 + $1.seconds }
    let imagesPerSecond: Double = Double(train.count * history.count) / Swift.max(epochSeconds, 1e-9)
    let overlapFraction = Double(stats.bytesReducedDuringBackward) / Double(Swift.max(1, stats.bytesPerStep * stats.overlappedSteps))
    if root && !json {
        print(String(format: "%d steps: %.1f images/s; per step %.2f ms forward+backward, %.2f ms all-reduce of %d bytes in %d bucket(s)%@, %.2f ms update",
                     stats.steps, imagesPerSecond, 1000 * stats.computeSeconds / Double(steps),
                     1000 * stats.seconds / Double(steps), stats.bytesPerStep, stats.bucketsPerStep,
                     distributed.overlapping ? String(format: " after backward (overlapped: %.0f%% of the bytes reduced during backward, progress calls during backward %.2f ms)",
                                                      100 * overlapFraction, 1000 * stats.communicationSeconds / Double(steps)) : "",
                     1000 * stats.updateSeconds / Double(steps)))
    }
    if root && json {
        let last = history.last
        print(jsonObject([("model", modelName), ("dataset", data.name), ("ranks", world.size), ("threads_per_rank", threads),
                          ("epochs", history.count), ("batch", batch), ("lr", learningRate), ("optimizer", "\(optimizer)"), ("seed", Int(seed)),
                          ("train_seconds", seconds), ("images_per_second", imagesPerSecond),
                          ("steps", stats.steps), ("step_compute_seconds", stats.computeSeconds / Double(steps)),
                          ("step_allreduce_seconds", stats.seconds / Double(steps)), ("step_update_seconds", stats.updateSeconds / Double(steps)),
                          ("step_allreduce_median_seconds", stats.medianStepSeconds), ("step_wait_seconds", stats.waitSeconds / Double(steps)),
                          ("allreduce_bytes_per_step", stats.bytesPerStep), ("buckets_per_step", stats.bucketsPerStep),
                          ("overlap", distributed.overlapping), ("step_communication_seconds", stats.communicationSeconds / Double(steps)),
                          ("fraction_reduced_during_backward", overlapFraction),
                          ("epoch_seconds", history.map(\.seconds)), ("train_loss", last?.trainLoss ?? 0), ("train_accuracy", last?.trainAccuracy ?? 0),
                          ("parameter_digest", String(distributed.digest(), radix: 16))]
                         + (lastTest.map { [("test_accuracy", $0.accuracy), ("test_loss", $0.loss)] as [(String, Any)] } ?? [])
                         + (args.options["-o"].map { [("output", $0)] as [(String, Any)] } ?? [])))
    }
    MPIWorld.finalize()
}
