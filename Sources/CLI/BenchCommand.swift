import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln bench WORKLOAD`: the peers' benchmark workloads (`bench/README.md`), run exactly as
/// the PyTorch/JAX/tinygrad/numpy peers run them (same model, batch, optimizer, data order, epochs
/// and timing rules), writing the same JSONL record with `"system": "kiln"`.
let benchWorkloads = ["peak", "gemm", "lenet5-train", "lenet5-infer", "mlp-b16", "vae-train", "mnist-cnn-train", "resnet18-train", "resnet18-infer", "resnet20-train", "resnet20-infer", "conv"]

/// The knobs every workload reads; `--epochs` and `--limit-steps` are for smoke tests only.
struct BenchSettings {
    var workload: String
    var threads: Int
    var seed: UInt64
    var epochs: Int?
    var limitSteps: Int?
    var dataDirectory: String?
    var measurePeak: Bool
    /// `gemm --shape MxNxK[:at|:bt|:atbt]`: another product than 1024³ (e.g. a layer's), transposes optional.
    var gemmShape: String?
    /// `conv --shape resnet20`: ResNet-20's layer shapes instead of ResNet-18's.
    var convResNet20 = false
    /// `conv --shape NxCxHxW-oO-kK[-sS][-pP]`: one layer of the user's instead.
    var convCustom: ConvBenchLayer?
    /// `conv --layer TEXT`: only the layers whose name contains TEXT (e.g. `layer4`, `shortcut`).
    var convLayer: String?
    /// `conv --pass NAME`: only that pass (`forward`, `bwd-data` or `bwd-filter`).
    var convPass: String?
    /// `conv --runs N`: timed calls per pass (the best is reported), 5 unless given; more for a profiler.
    var convRuns = 5
    /// `conv --rounds N`: times the whole table N times, each row's best call over all of them
    /// (3 unless given; 1 for a profiler).
    var convRounds = 3
    /// `gemm --cold`: 64 MiB are written between timed calls, so A, B and C start outside the
    /// caches, as a training step's products find them.
    var coldCaches = false
}

func benchCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--threads", "--jsonl", "--seed", "--epochs", "--limit-steps", "--data-dir", "--shape", "--layer", "--pass", "--runs", "--rounds", "--contention"],
                             flags: ["--json", "--no-peak", "--cold"], command: "bench")
    guard args.positionals.count == 1, benchWorkloads.contains(args.positionals[0]) else {
        throw KilnError.argument("bench: give one workload: \(benchWorkloads.joined(separator: ", "))")
    }
    var settings = BenchSettings(
        workload: args.positionals[0], threads: try args.int("--threads", default: 2, in: Limits.threads), seed: try args.seed(),
        epochs: args.options["--epochs"] == nil ? nil : try args.int("--epochs", default: 1, in: 1...1000),
        limitSteps: args.options["--limit-steps"] == nil ? nil : try args.int("--limit-steps", default: 1, in: 1...1_000_000),
        dataDirectory: Environment.dataDirectory(args.options["--data-dir"]), measurePeak: !args.flags.contains("--no-peak"))
    if let text = args.options["--shape"] {
        if settings.workload == "conv" {
            if text == "resnet18" || text == "resnet20" {
                settings.convResNet20 = text == "resnet20"
            } else {
                settings.convCustom = try ConvBenchLayer.parse(text)
            }
        } else {
            settings.gemmShape = text
        }
    }
    if args.flags.contains("--cold") {
        guard settings.workload == "gemm" else { throw KilnError.argument("bench: --cold is for the gemm workload") }
        settings.coldCaches = true
    }
    if let text = args.options["--layer"] {
        guard settings.workload == "conv" else { throw KilnError.argument("bench: --layer is for the conv workload") }
        settings.convLayer = text
    }
    if let text = args.options["--pass"] {
        guard settings.workload == "conv" else { throw KilnError.argument("bench: --pass is for the conv workload") }
        guard convPassNames.contains(text) else {
            throw KilnError.argument("bench conv: --pass takes \(convPassNames.joined(separator: ", ")) (got \"\(excerpt(text))\")")
        }
        settings.convPass = text
    }
    if args.options["--runs"] != nil {
        guard settings.workload == "conv" else { throw KilnError.argument("bench: --runs is for the conv workload") }
        settings.convRuns = try args.int("--runs", default: 5, in: 1...100_000)
    }
    if args.options["--rounds"] != nil {
        guard settings.workload == "conv" else { throw KilnError.argument("bench: --rounds is for the conv workload") }
        settings.convRounds = try args.int("--rounds", default: 3, in: 1...1000)
    }
    let winograd = Environment.winograd("KILN_WINOGRAD"), filter = Environment.winograd("KILN_WINOGRAD_FILTER")
    if winograd.off { Conv2DKernel.winogradEnabled = false }
    Conv2DKernel.winogradTile = winograd.tile
    if filter.off { Conv2DKernel.winogradFilterEnabled = false }
    Conv2DKernel.winogradFilterTile = filter.tile

    let contention = try args.options["--contention"].map { _ in try args.int("--contention", default: 1, in: 1...64) }
    if let contention {
        var quiet = try runWorkload(settings)
        let busy = try withSpinningProcesses(contention) { try runWorkload(settings) }
        quiet.extra += [("contention_processes", contention), ("busy_value", busy.value),
                        ("busy_over_quiet", rounded(busy.value / quiet.value, 3))]
        print(quiet.summaryLine())
        print("[\(BenchRecord.system) \(BenchRecord.version)] \(quiet.workload) with \(contention) spinning process\(contention == 1 ? "" : "es"): \(quiet.metric) "
              + String(format: "quiet %.4g, busy %.4g, busy/quiet %.3f", quiet.value, busy.value, busy.value / quiet.value))
        if let path = args.options["--jsonl"] { try quiet.append(toJSONL: path) }
        if args.flags.contains("--json") { print(quiet.json()) }
        return
    }
    let record = try runWorkload(settings)

    let line = record.json()
    print(record.summaryLine())
    if let path = args.options["--jsonl"] { try record.append(toJSONL: path) }
    if args.flags.contains("--json") { print(line) }
}

/// Runs `body` while `count` other processes spin on the CPU (`/bin/sh -c 'while :; do :; done'`),
/// as a busy laptop or shared server would; they are killed when it returns.
private func withSpinningProcesses<T>(_ count: Int, _ body: () throws -> T) throws -> T {
    var spinners: [Process] = []
    defer {
        for process in spinners { process.terminate(); process.waitUntilExit() }
    }
    for _ in 0..<count {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "while :; do :; done"]
        try process.run()
        spinners.append(process)
    }
    Thread.sleep(forTimeInterval: 0.2)
    return try body()
}

private func runWorkload(_ settings: BenchSettings) throws -> BenchRecord {
    let record: BenchRecord
    switch settings.workload {
    case "peak": record = benchPeak(settings)
    case "gemm":
        var gemm = GEMMWorkload.Settings(threads: settings.threads, seed: settings.seed, process: "kiln bench gemm")
        if let shape = settings.gemmShape { try gemm.setShape(shape) }
        gemm.coldCaches = settings.coldCaches
        gemm.measurePeak = settings.measurePeak
        record = GEMMWorkload.run(gemm)
    case "lenet5-train":
        record = try benchTraining(settings, model: try Zoo.classifier("lenet5"), optimizer: .sgd(momentum: 0.9),
                                   learningRate: 0.01, batch: 64, epochs: 3, reportFlops: true)
    case "mlp-b16":
        record = try benchTraining(settings, model: try Zoo.classifier("mlp-dropout"), optimizer: .sgd(momentum: 0),
                                   learningRate: 0.01, batch: 16, epochs: 1, reportFlops: true)
    case "mnist-cnn-train":
        record = try benchTraining(settings, model: try Zoo.classifier("mnist-cnn"), optimizer: .sgd(momentum: 0.9),
                                   learningRate: 0.01, batch: 64, epochs: 1, steps: 200, reportFlops: true)
    case "lenet5-infer": record = try benchInference(settings)
    case "vae-train": record = try benchVAE(settings)
    case "resnet18-train", "resnet20-train": record = try benchResNetTraining(settings)
    case "resnet18-infer", "resnet20-infer": record = try benchResNetInference(settings)
    case "conv": record = try benchConv(settings)
    default: preconditionFailure("unhandled workload \(settings.workload)")
    }
    return record
}

// MARK: - peak

/// The machine's FP32 FMA peak on `--threads` threads with this build's vectors (`PeakFMA`):
/// value = best GFLOP/s of 25 runs of 20 ms; also the single-thread figure when more threads were asked.
private func benchPeak(_ settings: BenchSettings) -> BenchRecord {
    let peak = PeakFMA.measure(threads: settings.threads)
    var extra: [(String, Any)] = [("isa", ISA.summary), ("threads", settings.threads), ("peak_source", peak.description)]
    if settings.threads > 1 {
        let one = PeakFMA.measure(threads: 1)
        extra += [("one_thread_gflops", rounded(one.gflops, 2)),
                  ("per_thread_gflops", rounded(peak.gflops / Double(settings.threads), 2))]
    }
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "gflops",
                       value: peak.gflops, compileSeconds: nil, testAccuracy: nil, extra: extra)
}

// MARK: - training

/// Trains on Fashion-MNIST in the peers' order (epoch e: numpy `default_rng([seed, e]).permutation(60000)`,
/// last partial batch kept). The first step (compilation included) is timed as `compile_seconds` and left
/// out of epoch 1; the figure is the median epoch; evaluation (batches of 1000) is untimed. `steps`:
/// the workload's steps per epoch when it runs only the first batches of each (`--limit-steps` overrides).
private func benchTraining(_ settings: BenchSettings, model: ClassifierModel, optimizer: Optimizer, learningRate: Double,
                           batch: Int, epochs defaultEpochs: Int, steps stepLimit: Int? = nil, reportFlops: Bool) throws -> BenchRecord {
    let train = try FashionMNIST.load(split: .train, directory: settings.dataDirectory)
    let test = try FashionMNIST.load(split: .test, directory: settings.dataDirectory)
    let epochs = settings.epochs ?? defaultEpochs
    let limit = settings.limitSteps ?? stepLimit
    let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: settings.seed, threads: settings.threads)
    trainer.core.runOptions.profile = Environment.profile
    try trainer.initializeParameters()
    try usePeerInitialization(trainer.store, model: model.name == "mlp" ? "mlp" : model.name, seed: settings.seed)

    var compileSeconds = 0.0
    var epochSeconds: [Double] = [], epochLosses: [Double] = [], stepsPerEpoch: [Int] = []
    for epoch in 0..<epochs {
        let order = numpyEpochOrder(count: train.count, seed: settings.seed, epoch: epoch)
        var position = 0, steps = 0, lossSum = 0.0
        if epoch == 0 {
            let start = monotonicSeconds()
            lossSum += Double(try trainer.trainStep(train, indices: order[0..<batch], learningRate: learningRate))
            compileSeconds = monotonicSeconds() - start
            position = batch
            steps = 1
        }
        let start = monotonicSeconds()
        while position < order.count && steps < (limit ?? .max) {
            let end = min(order.count, position + batch)
            lossSum += Double(try trainer.trainStep(train, indices: order[position..<end], learningRate: learningRate))
            position = end
            steps += 1
        }
        epochSeconds.append(monotonicSeconds() - start)
        epochLosses.append(lossSum / Double(steps))
        stepsPerEpoch.append(steps)
        printError(String(format: "epoch %d/%d: %.3f s, mean batch loss %.4f", epoch + 1, epochs, epochSeconds.last!, epochLosses.last!))
    }
    let evaluation = try trainer.evaluate(test, batchSize: 1000)
    let middle = median(epochSeconds)

    var extra: [(String, Any)] = [("epoch_seconds", epochSeconds.map { rounded($0, 3) }),
                                  ("train_loss", epochLosses.map { rounded($0, 4) }), ("threads", settings.threads)]
    if limit != nil { extra.append(("steps_per_epoch", stepsPerEpoch)) }
    if reportFlops {
        // One full epoch: full batches plus the partial one, each counted from its own training graph.
        let full = train.count / batch, partial = train.count % batch
        var epochFlops = Double(full) * Double(try trainingStepFlops(model: model, batch: batch, optimizer: optimizer))
        if partial > 0 { epochFlops += Double(try trainingStepFlops(model: model, batch: partial, optimizer: optimizer)) }
        if limit != nil {
            epochFlops *= Double(stepsPerEpoch.last!) / Double(full + (partial > 0 ? 1 : 0))
        }
        let achieved = epochFlops / middle / 1e9
        extra += [("flops_per_step", try trainingStepFlops(model: model, batch: batch, optimizer: optimizer)),
                  ("epoch_gflop", rounded(epochFlops / 1e9, 3)), ("flops_counted", flopsCounted)]
        extra += throughputFields(achievedGFLOPs: achieved, threads: settings.threads, measurePeak: settings.measurePeak)
    }
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "epoch_seconds",
                       value: middle, compileSeconds: compileSeconds, testAccuracy: evaluation.accuracy, extra: extra)
}

/// What `graphFlops` counts, for the records.
let flopsCounted = "matmul 2mnk; conv2d, backward-data, backward-filter 2*N*O*OH*OW*C*KH*KW each; elementwise ignored"

/// FLOPs of one training step counted from its graph: matmul 2·m·n·k; conv2d and both of its
/// backward ops 2·N·O·OH·OW·C·KH·KW each; everything else (elementwise, pooling, loss) ignored.
func trainingStepFlops(model: ClassifierModel, batch: Int, optimizer: Optimizer) throws -> Int {
    let graph = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: optimizer)
    return graphFlops(graph)
}

/// Multiply-add FLOPs of a graph's matmuls and convolutions (2 per multiply-add): Kiln's FLOP model, `Op.multiplyAddFlops`.
func graphFlops(_ graph: Graph) -> Int { graph.multiplyAddFlops }

// MARK: - inference

/// LeNet-5 forward over the 10k test images in batches of 256 (39 + one of 16): `compile_seconds` is the
/// first call on one 256 batch, then one warm-up pass; value = 10000 / best of 3 timed passes.
private func benchInference(_ settings: BenchSettings) throws -> BenchRecord {
    let test = try FashionMNIST.load(split: .test, directory: settings.dataDirectory)
    let batch = 256, passes = 3
    let trainer = ClassifierTrainer(model: try Zoo.classifier("lenet5"), optimizer: .sgd(), seed: settings.seed,
                                    threads: settings.threads)
    trainer.core.runOptions.profile = Environment.profile
    let indices = Array(0..<test.count)
    func runBatch(_ range: Range<Int>) throws {
        let program = try trainer.evaluationProgram(batch: range.count)
        test.fillBatch(indices: indices[range], into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: nil)
        try program.run()
    }
    func fullPass() throws {
        for start in stride(from: 0, to: test.count, by: batch) { try runBatch(start..<min(test.count, start + batch)) }
    }
    var start = monotonicSeconds()
    try runBatch(0..<batch)
    let compileSeconds = monotonicSeconds() - start
    try fullPass()
    var times: [Double] = []
    for _ in 0..<passes {
        start = monotonicSeconds()
        try fullPass()
        times.append(monotonicSeconds() - start)
    }
    let best = times.min()!
    // One pass: full batches plus the partial one, each counted from its own forward graph.
    let model = try Zoo.classifier("lenet5")
    var passFlops = Double(test.count / batch) * Double(graphFlops(try ClassifierTrainer.forwardGraph(model: model, batch: batch)))
    if test.count % batch > 0 {
        passFlops += Double(graphFlops(try ClassifierTrainer.forwardGraph(model: model, batch: test.count % batch)))
    }
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "images_per_second",
                       value: Double(test.count) / best, compileSeconds: compileSeconds, testAccuracy: nil,
                       extra: [("best_pass_seconds", rounded(best, 4)), ("pass_seconds", times.map { rounded($0, 4) }),
                               ("batch", batch), ("threads", settings.threads), ("pass_gflop", rounded(passFlops / 1e9, 3)),
                               ("flops_counted", flopsCounted)]
                       + throughputFields(achievedGFLOPs: passFlops / best / 1e9, threads: settings.threads,
                                          measurePeak: settings.measurePeak))
}

/// The peers' `vae-train`: MLP VAE 784-400-20, Adam lr 1e-3, batch 128, 1 epoch in numpy's order
/// (last partial batch kept); ε for training from Kiln's counter-based generator. Test negative
/// ELBO per example with one fixed ε row per test image. Kiln cannot reproduce numpy's float32
/// ziggurat, so these ε come from Kiln's generator (seed 1234) instead of
/// `default_rng(1234).standard_normal`: the same distribution, other draws.
private func benchVAE(_ settings: BenchSettings) throws -> BenchRecord {
    let train = try FashionMNIST.load(split: .train, directory: settings.dataDirectory)
    let test = try FashionMNIST.load(split: .test, directory: settings.dataDirectory)
    let epochs = settings.epochs ?? 1
    let batch = 128
    let trainer = GenerativeTrainer(model: vae(), optimizer: .adam(), seed: settings.seed, threads: settings.threads)
    trainer.core.runOptions.profile = Environment.profile
    try trainer.initializeParameters()
    try usePeerInitialization(trainer.store, model: "vae", seed: settings.seed)
    var compileSeconds = 0.0
    var epochSeconds: [Double] = [], epochLosses: [Double] = [], epochExamples: [Int] = []
    for epoch in 0..<epochs {
        let order = numpyEpochOrder(count: train.count, seed: settings.seed, epoch: epoch)
        var position = 0, steps = 0, lossSum = 0.0
        if epoch == 0 {
            let start = monotonicSeconds()
            lossSum += try trainer.trainStep(train, indices: order[0..<batch], learningRate: 1e-3).main
            compileSeconds = monotonicSeconds() - start
            position = batch
            steps = 1
        }
        let start = monotonicSeconds()
        while position < order.count && steps < (settings.limitSteps ?? .max) {
            let end = min(order.count, position + batch)
            lossSum += try trainer.trainStep(train, indices: order[position..<end], learningRate: 1e-3).main
            position = end
            steps += 1
        }
        epochSeconds.append(monotonicSeconds() - start)
        epochLosses.append(lossSum / Double(steps))
        epochExamples.append(position - (epoch == 0 ? batch : 0))
        printError(String(format: "epoch %d/%d: %.3f s, mean batch loss %.2f", epoch + 1, epochs, epochSeconds.last!, epochLosses.last!))
    }
    let elbo = try trainer.negativeELBO(test, noiseSeed: 1234, batchSize: 1000)
    // The timed examples of the median epoch, at the full batch's FLOPs per example (the partial
    // batch's products scale with its size).
    let stepFlops = Double(graphFlops(try GenerativeTrainer.vaeTrainingGraph(model: vae(), batch: batch, optimizer: .adam())))
    let middleIndex = epochSeconds.indices.sorted { epochSeconds[$0] < epochSeconds[$1] }[epochSeconds.count / 2]
    let achieved = stepFlops / Double(batch) * Double(epochExamples[middleIndex]) / epochSeconds[middleIndex] / 1e9
    var record = BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "epoch_seconds",
                             value: median(epochSeconds), compileSeconds: compileSeconds, testAccuracy: nil,
                             extra: [("epoch_seconds", epochSeconds.map { rounded($0, 3) }),
                                     ("train_loss", epochLosses.map { rounded($0, 3) }), ("threads", settings.threads),
                                     ("test_eps", "Kiln CounterRandom normal draws, seed 1234 (not numpy's ziggurat)"),
                                     ("flops_per_step", Int(stepFlops)), ("flops_counted", flopsCounted)]
                                     + throughputFields(achievedGFLOPs: achieved, threads: settings.threads,
                                                        measurePeak: settings.measurePeak))
    record.testNegativeELBO = elbo
    return record
}

/// Starts from the peers' initial weights (numpy's draws, bit for bit) so every system trains
/// from the same point.
private func usePeerInitialization(_ store: ParameterStore, model: String, seed: UInt64) throws {
    guard let parameters = PeerInitialization.parameters(model: model, seed: seed) else { return }
    for (name, values) in parameters { try store.set(name, values) }
}
