import Foundation
import Kiln
import KilnBench

/// `kiln bench WORKLOAD`: the peers' benchmark workloads (`bench/README.md`), run exactly as
/// the PyTorch/JAX/tinygrad/numpy peers run them (same model, batch, optimizer, data order, epochs
/// and timing rules), writing the same JSONL record with `"system": "kiln"`.
let benchWorkloads = ["peak", "gemm", "lenet5-train", "lenet5-infer", "mlp-b16", "vae-train", "resnet18-train", "resnet18-infer", "resnet20-train", "resnet20-infer", "conv"]

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
    var gemmShape: (m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) = (1024, 1024, 1024, false, false)
    /// `conv --shape resnet20`: ResNet-20's layer shapes instead of ResNet-18's.
    var convResNet20 = false
    /// `conv --layer TEXT`: only the layers whose name contains TEXT (e.g. `layer4`, `shortcut`).
    var convLayer: String?
    /// `gemm --cold`: 64 MiB are written between timed calls, so A, B and C start outside the
    /// caches, as a training step's products find them.
    var coldCaches = false
}

func benchCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--threads", "--jsonl", "--seed", "--epochs", "--limit-steps", "--data-dir", "--shape", "--layer", "--contention"],
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
            guard text == "resnet18" || text == "resnet20" else {
                throw KilnError.argument("bench conv: --shape takes resnet18 or resnet20 (got \"\(excerpt(text))\")")
            }
            settings.convResNet20 = text == "resnet20"
        } else {
            settings.gemmShape = try parseGEMMShape(text)
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
        if let path = args.options["--jsonl"] { try appendLine(quiet.json(), to: path) }
        if args.flags.contains("--json") { print(quiet.json()) }
        return
    }
    let record = try runWorkload(settings)

    let line = record.json()
    print(record.summaryLine())
    if let path = args.options["--jsonl"] {
        try appendLine(line, to: path)
    }
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
    case "gemm": record = benchGEMM(settings)
    case "lenet5-train":
        record = try benchTraining(settings, model: try Zoo.classifier("lenet5"), optimizer: .sgd(momentum: 0.9),
                                   learningRate: 0.01, batch: 64, epochs: 3, reportFlops: true)
    case "mlp-b16":
        record = try benchTraining(settings, model: try Zoo.classifier("mlp-dropout"), optimizer: .sgd(momentum: 0),
                                   learningRate: 0.01, batch: 16, epochs: 1, reportFlops: true)
    case "lenet5-infer": record = try benchInference(settings)
    case "vae-train": record = try benchVAE(settings)
    case "resnet18-train", "resnet20-train": record = try benchResNetTraining(settings)
    case "resnet18-infer", "resnet20-infer": record = try benchResNetInference(settings)
    case "conv": record = try benchConv(settings)
    default: preconditionFailure("unhandled workload \(settings.workload)")
    }
    return record
}

/// Appends one line to a file, creating it if needed.
private func appendLine(_ line: String, to path: String) throws {
    if !FileManager.default.fileExists(atPath: path) {
        guard FileManager.default.createFile(atPath: path, contents: nil) else { throw KilnError.file(path: path, message: "cannot create") }
    }
    guard let handle = FileHandle(forWritingAtPath: path) else { throw KilnError.file(path: path, message: "cannot open for writing") }
    defer { try? handle.close() }
    handle.seekToEndOfFile()
    handle.write(Data((line + "\n").utf8))
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let mid = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
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

// MARK: - gemm

/// `MxNxK`, optionally `:at`, `:bt` or `:atbt` (A and/or B stored transposed).
private func parseGEMMShape(_ text: String) throws -> (m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool) {
    let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
    let sizes = parts[0].split(separator: "x").compactMap { Int($0) }
    let flags = parts.count > 1 ? parts[1] : ""
    guard sizes.count == 3, sizes.allSatisfy({ (1...16_384).contains($0) }), ["", "at", "bt", "atbt"].contains(flags) else {
        throw KilnError.argument("bench: --shape takes MxNxK with sizes 1 to 16384, optionally :at, :bt or :atbt (got \"\(excerpt(text))\")")
    }
    return (sizes[0], sizes[1], sizes[2], flags.hasPrefix("at"), flags.hasSuffix("bt"))
}

/// C = op(A)·op(B), 1024³ unless `--shape`, float32 with A, B ~ N(0, 1), packing buffers made once
/// (as compiled programs do): 1 untimed call, 3 warm-up, 20 timed (more for small shapes);
/// value = best GFLOP/s.
private func benchGEMM(_ settings: BenchSettings) -> BenchRecord {
    let (m, n, k, transposeA, transposeB) = settings.gemmShape
    let flops = 2 * Double(m) * Double(n) * Double(k)
    let warmUp = 3, repetitions = max(20, min(2000, Int(2e10 / flops)))
    // Normal entries by Box–Muller on numpy's PCG64 (the values do not matter for the timing, only the scale).
    var generator = NumpyGenerator(seed: [settings.seed, 7])
    // Operands aligned to a cache line, as Kiln's arena and parameters are (a Swift array's
    // elements start 16 or 48 bytes into a line, where rows read in place span a line more),
    // and filled in place: no temporary array adds to the peak RSS the record reports.
    func normals(_ count: Int, zero: Bool = false) -> UnsafeMutablePointer<Float> {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 1))
        if zero {
            pointer.initialize(repeating: 0, count: count)
            return pointer
        }
        for i in 0..<count {
            let u1 = (Double(generator.bitGenerator.next64() >> 11) + 0.5) / 9_007_199_254_740_992  // in (0, 1)
            let u2 = Double(generator.bitGenerator.next64() >> 11) / 9_007_199_254_740_992
            pointer[i] = Float((-2 * Foundation.log(u1)).squareRoot() * cos(2 * Double.pi * u2))
        }
        return pointer
    }
    let a = normals(m * k), b = normals(k * n), c = normals(m * n, zero: true)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    let workspace = GEMM.Workspace(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k)
    func multiply() {
        GEMM.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: transposeA ? m : k,
                   b: b, ldb: transposeB ? k : n, c: c, ldc: n, accumulate: false, threads: settings.threads, workspace: workspace)
    }
    var start = monotonicSeconds()
    multiply()
    let firstCall = monotonicSeconds() - start
    for _ in 0..<warmUp { multiply() }
    var times: [Double] = []
    // Written between timed calls with --cold: 64 MiB, more than this host's L2s and most L3 slices.
    var evict = settings.coldCaches ? [Float](repeating: 0, count: 1 << 24) : []
    for repetition in 0..<repetitions {
        if settings.coldCaches {
            // Written by the product's own threads, so no worker has parked meanwhile (a parked
            // worker's wake-up would be timed too: this measures the caches alone).
            evict.withUnsafeMutableBufferPointer { buffer in
                let base = buffer.baseAddress!, count = buffer.count, threads = settings.threads
                Parallel.forEach(chunks: threads, threads: threads) { part in
                    let slice = count / threads
                    (base + part * slice).update(repeating: Float(repetition), count: slice)
                }
            }
        }
        start = monotonicSeconds()
        multiply()
        times.append(monotonicSeconds() - start)
    }
    let best = times.min()!, middle = median(times)
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "gflops",
                       value: flops / best / 1e9, compileSeconds: nil, testAccuracy: nil,
                       extra: [("median_gflops", rounded(flops / middle / 1e9, 2)), ("best_ms", rounded(best * 1e3, 3)),
                               ("median_ms", rounded(middle * 1e3, 3)), ("reps", repetitions),
                               ("first_call_ms", rounded(firstCall * 1e3, 3)), ("threads", settings.threads),
                               ("shape", "\(m)x\(n)x\(k)" + (transposeA ? " A transposed" : "") + (transposeB ? " B transposed" : "")),
                               ("caches", settings.coldCaches ? "cold (64 MiB written between calls)" : "warm")]
                       + throughputFields(achievedGFLOPs: flops / best / 1e9, threads: settings.threads,
                                          measurePeak: settings.measurePeak))
}

// MARK: - training

/// Trains on Fashion-MNIST in the peers' order (epoch e: numpy `default_rng([seed, e]).permutation(60000)`,
/// last partial batch kept). The first step (compilation included) is timed as `compile_seconds` and left
/// out of epoch 1; the figure is the median epoch; evaluation (batches of 1000) is untimed.
private func benchTraining(_ settings: BenchSettings, model: ClassifierModel, optimizer: Optimizer, learningRate: Double,
                           batch: Int, epochs defaultEpochs: Int, reportFlops: Bool) throws -> BenchRecord {
    let train = try FashionMNIST.load(split: .train, directory: settings.dataDirectory)
    let test = try FashionMNIST.load(split: .test, directory: settings.dataDirectory)
    let epochs = settings.epochs ?? defaultEpochs
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
        while position < order.count && steps < (settings.limitSteps ?? .max) {
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
    if settings.limitSteps != nil { extra.append(("steps_per_epoch", stepsPerEpoch)) }
    if reportFlops {
        // One full epoch: full batches plus the partial one, each counted from its own training graph.
        let full = train.count / batch, partial = train.count % batch
        var epochFlops = Double(full) * Double(try trainingStepFlops(model: model, batch: batch, optimizer: optimizer))
        if partial > 0 { epochFlops += Double(try trainingStepFlops(model: model, batch: partial, optimizer: optimizer)) }
        if settings.limitSteps != nil {
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
