import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `mpirun -np N kiln train vae|cvae|conv-vae|conv-cvae|ddpm …`: data-parallel training of a
/// generative model (`DistributedGenerativeTrainer`): the one-process run's data, global batch,
/// order, learning-rate schedule and model file (with the state `--resume` continues); rank 0
/// alone prints and writes files. GANs say in one line that they train in one process.
func distributedGenerativeCommand(_ words: [String]) throws {
    let oneProcessOnly = ["--unlabelled", "--labeller", "--labeller-epochs", "--patience", "--time-budget", "--plot", "--check-numerics",
                          "--judge", "--save-every"]
    if let option = words.first(where: { word in oneProcessOnly.contains { word == $0 || word.hasPrefix($0 + "=") } }) {
        throw KilnError.argument("train: \(option.split(separator: "=")[0]) is not available in a distributed run (under mpirun or with --distributed); run it in one process")
    }
    let args = try Arguments(words, options: ["--dataset", "--data-dir", "--train", "--image-size", "--classes", "--epochs", "--batch", "--lr",
                                              "--schedule", "--seed", "--threads", "--limit", "-o", "--resume", "--grid", "--bucket-mb"],
                             flags: ["--json", "--no-fuse", "--no-plan", "--no-prior", "--distributed", "--no-overlap", "--time-allreduce"], command: "train (distributed)")
    guard args.positionals.count == 1 else { throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`)") }
    let modelName = args.positionals[0]
    if ["gan", "cgan", "dcgan"].contains(modelName) { throw KilnError.argument("train: " + DistributedGenerativeTrainer.ganMessage(modelName)) }
    guard args.options["--epochs"] != nil else {
        throw KilnError.argument("train \(modelName): a distributed run needs --epochs N (it does not stop on a time budget or on patience)")
    }
    guard let outputPath = args.options["-o"] else { throw KilnError.argument("train \(modelName): -o FILE.safetensors is required") }
    // One line and exit 1 when this build has no MPI; before anything is loaded.
    let world = try MPIWorld.communicator(timeout: Environment.mpiTimeout)
    let root = world.rank == 0
    let epochs = try args.int("--epochs", default: 1, in: Limits.epochs)
    let batch = try args.int("--batch", default: 64, in: Limits.batch)
    var seed = try args.seed()
    let threads = try args.int("--threads", default: Swift.max(1, Swift.min(Environment.threads, Limits.threads.upperBound) / Environment.localRanks),
                               in: Limits.threads)
    let json = args.flags.contains("--json")
    let bucketMiB = try args.int("--bucket-mb", default: 4, in: 1...1024)

    var train: ImageDataset
    if let name = args.options["--dataset"] {
        if args.options["--train"] != nil { throw KilnError.argument("train: give --dataset or --train, not both") }
        train = try loadDataset(name, directory: args.options["--data-dir"]).train
    } else if let path = args.options["--train"] {
        let size = try args.options["--image-size"].map(CSVImages.parseImageSize)
        train = try CSVImages.read(path: path, imageSize: size, classNames: try parseClasses(args), requireLabels: true)
    } else {
        throw KilnError.argument("train: --dataset NAME or --train FILE.csv is required")
    }
    if let limit = args.options["--limit"] {
        guard let n = Int(limit), n > 0 else { throw KilnError.argument("--limit needs a positive integer, found \"\(excerpt(limit))\"") }
        train = train.subset(Array(0..<Swift.min(n, train.count)))
    }
    if batch < world.size {
        throw KilnError.argument("train: the global batch (\(batch)) is smaller than the number of ranks (\(world.size)); every rank needs an example")
    }
    let model = try Zoo.generative(modelName, imageShape: [train.channels, train.height, train.width], classes: train.classNames.count)
    let (trainer, firstEpoch) = try startOrResumeGenerative(model, train: train, args: args, seed: &seed, threads: threads)
    if args.flags.contains("--no-fuse") { trainer.disabledPasses.insert("fuse") }
    if args.flags.contains("--no-plan") { trainer.disabledPasses.insert("plan-memory") }
    let distributed = try DistributedGenerativeTrainer(trainer: trainer, communicator: world)
    distributed.bucketElements = bucketMiB << 18
    distributed.overlap = !args.flags.contains("--no-overlap")
    distributed.separateWaiting = args.flags.contains("--time-allreduce")
    let baseRate = try args.double("--lr", default: trainer.defaultLearningRate, in: Limits.learningRate)
    let schedule = try LearningRateSchedule.parse(args.options["--schedule"] ?? "constant")
    let stepsPerEpoch = (train.count + batch - 1) / batch
    let rate = { (step: Int) in schedule.rate(base: baseRate, step: step, stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * (firstEpoch + epochs)) }
    if root && !json {
        print("training \(model.name) (\(model.summary)) on \(train.count) images data-parallel over \(world.size) ranks (\(threads) threads each); "
              + "global batch \(batch), lr \(baseRate), schedule \(schedule)")
    }
    var epochSeconds: [Double] = []
    var lastLoss = 0.0
    for epoch in firstEpoch ..< firstEpoch + epochs {
        let order = epochOrder(count: train.count, seed: seed, epoch: epoch)
        let start = Date()
        let reductionBefore = distributed.statistics.seconds
        lastLoss = try distributed.trainEpoch(train, order: order, batchSize: batch, learningRate: rate)
        epochSeconds.append(Date().timeIntervalSince(start))
        if root && !json {
            print(String(format: "epoch %d/%d  loss %.4f  %.1f s (all-reduce after backward %.2f s)", epoch + 1, firstEpoch + epochs, lastLoss,
                         epochSeconds.last!, distributed.statistics.seconds - reductionBefore))
            fflush(stdout)
        }
    }
    let trained = firstEpoch + epochs
    let digest = distributed.digest()
    if root {
        // A VAE samples z from Gaussians fitted to its encoder's codes of the training images (per class).
        if model.family == .vae && !args.flags.contains("--no-prior") && (train.isLabelled || !model.isConditional) {
            try trainer.fitLatentPrior(train)
        }
        var notes: [String: String] = [:]
        if let file = args.options["--train"] { notes[GenerativeFileKeys.trainFile] = absolutePath(file) }
        try trainer.save(path: outputPath, classNames: train.classNames, epochs: trained, resume: trainer.resumeState(epochs: trained),
                         extraMetadata: notes)
        if let gridPath = args.options["--grid"] {
            let samples = model.isConditional
                ? try trainer.samplePerClass(10, seed: seed, classNames: train.classNames)
                : try trainer.sample(count: 100, seed: seed)
            try ImageGrid(checking: samples, perClass: 10, scale: 2).writePNG(path: gridPath)
        }
        if json {
            print(jsonObject([("model", modelName), ("images", train.count), ("ranks", world.size), ("threads_per_rank", threads),
                              ("epochs", epochs), ("batch", batch), ("lr", baseRate), ("seed", Int(seed)), ("epoch_seconds", epochSeconds),
                              ("final_loss", lastLoss), ("steps_taken", trainer.stepsTaken),
                              ("parameter_digest", String(digest, radix: 16)), ("output", outputPath)]))
        } else {
            print("wrote \(outputPath) (\(model.name), epoch \(trained), with the state --resume continues)")
        }
    }
    MPIWorld.finalize()
}
