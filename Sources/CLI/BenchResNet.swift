import Foundation
import Kiln
import KilnCommandLine
import KilnBench

// `kiln bench resnet18-train`, `resnet18-infer` and `conv`: ResNet-18 (CIFAR form) at batch 128
// on 3×32×32 images, as `bench/README.md` states the workloads (the same synthetic set, learning
// rate, step count and timing rules as the peers), and its convolution layers one by one.
// `resnet20-train` and `resnet20-infer`: the same for ResNet-20 (16-32-64 channels), the size of
// network a user writes for small images.

/// The zoo network of a ResNet workload ("resnet20-train" → resnet20).
private func resNetModel(_ settings: BenchSettings) throws -> ClassifierModel {
    try Zoo.classifier(settings.workload.hasPrefix("resnet20") ? "resnet20" : "resnet18", inputShape: [3, 32, 32], classes: 10)
}

/// The ResNet-18 workloads' batch, synthetic set size, learning rate and step counts (`bench/common.py`'s `RESNET`).
private let resNetBatch = 128, resNetImages = 1280, resNetInferImages = 1024
private let resNetLearningRate = 0.05, resNetWarmUpSteps = 2, resNetTimedSteps = 10, resNetInferPasses = 3

/// The peers' synthetic set: `default_rng([seed, 2000])`, `random((1280, 3, 32, 32), float32)`
/// then `integers(0, 10, 1280)`, bit for bit (float32: the top 24 bits of a 32-bit draw; the
/// labels by Lemire's bounded method on 32-bit draws, as numpy does for a range below 2³²).
private func resNetData(seed: UInt64) -> (images: [Float], labels: [Int32]) {
    var generator = NumpyGenerator(seed: [seed, 2000])
    let images = (0..<(resNetImages * 3 * 32 * 32)).map { _ in Float(generator.bitGenerator.next32() >> 8) * 0x1p-24 }
    let labels = (0..<resNetImages).map { _ -> Int32 in
        let range: UInt64 = 10
        var m = UInt64(generator.bitGenerator.next32()) * range
        if UInt32(truncatingIfNeeded: m) < UInt32(range) {
            let threshold = (UInt32.max - UInt32(range - 1)) % UInt32(range)
            while UInt32(truncatingIfNeeded: m) < threshold { m = UInt64(generator.bitGenerator.next32()) * range }
        }
        return Int32(m >> 32)
    }
    return (images, labels)
}

/// Copies batch `step` (images `128·step mod 1280` on) into a program's inputs.
private func feedResNetBatch(_ program: Executable, data: (images: [Float], labels: [Int32]), step: Int, labels: Bool) throws {
    let first = (step * resNetBatch) % resNetImages, pixels = 3 * 32 * 32
    let x = try program.inputPointer("x").assumingMemoryBound(to: Float.self)
    data.images.withUnsafeBufferPointer { x.update(from: $0.baseAddress! + first * pixels, count: resNetBatch * pixels) }
    if labels {
        let y = try program.inputPointer("labels").assumingMemoryBound(to: Int32.self)
        data.labels.withUnsafeBufferPointer { y.update(from: $0.baseAddress! + first, count: resNetBatch) }
    }
}

/// One training step: softmax cross-entropy, SGD lr 0.05 with momentum 0.9, batch norm in
/// training mode, on batch `step` of the synthetic set. Step 0 (compilation included) is
/// `compile_seconds`, then 2 warm-up steps; value = median seconds of 10 timed steps
/// (`--limit-steps N`: N). A step's time includes copying its batch into the program.
func benchResNetTraining(_ settings: BenchSettings) throws -> BenchRecord {
    let model = try resNetModel(settings)
    let optimizer = Optimizer.sgd(momentum: 0.9)
    let data = resNetData(seed: settings.seed)
    let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: settings.seed, threads: settings.threads)
    trainer.core.runOptions.profile = Environment.profile
    var losses: [Double] = [], seconds: [Double] = [], compileSeconds = 0.0
    let timed = settings.limitSteps ?? resNetTimedSteps
    for step in 0..<(1 + resNetWarmUpSteps + timed) {
        let start = monotonicSeconds()
        let program = try trainer.trainingProgram(batch: resNetBatch)
        try feedResNetBatch(program, data: data, step: step, labels: true)
        try program.inputPointer("lr").assumingMemoryBound(to: Float.self).pointee = Float(resNetLearningRate)
        try program.run()
        losses.append(Double(try program.outputPointer("loss").pointee))
        let elapsed = monotonicSeconds() - start
        if step == 0 { compileSeconds = elapsed } else if step > resNetWarmUpSteps { seconds.append(elapsed) }
    }
    let sorted = seconds.sorted()
    let value = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    let flops = Double(try trainingStepFlops(model: model, batch: resNetBatch, optimizer: optimizer))
    let achieved = flops / value / 1e9
    let extra: [(String, Any)] = [("step_seconds", seconds.map { rounded($0, 4) }), ("first_loss", rounded(losses[0], 4)),
                                  ("last_loss", rounded(losses.last!, 4)), ("batch", resNetBatch),
                                  ("flops_per_step", Int(flops)),
                                  ("flops_counted", "conv2d, backward-data, backward-filter 2*N*O*OH*OW*C*KH*KW each; matmul 2mnk; rest ignored"),
                                  ("initialisation", "Kiln's own draws of PyTorch's default U(+-1/sqrt(fan_in)), not the peers' numpy bits"),
                                  ("threads", settings.threads)]
        + throughputFields(achievedGFLOPs: achieved, threads: settings.threads, measurePeak: settings.measurePeak)
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "step_seconds",
                       value: value, compileSeconds: compileSeconds, testAccuracy: nil, extra: extra)
}

/// Inference (batch norm in evaluation mode) on the first 1024 synthetic images in batches of
/// 128 (`--limit-steps N`: N batches): the first call (compilation included) is
/// `compile_seconds`, one warm-up pass, then value = images per second of the best of 3 passes.
func benchResNetInference(_ settings: BenchSettings) throws -> BenchRecord {
    let model = try resNetModel(settings)
    let data = resNetData(seed: settings.seed)
    let trainer = ClassifierTrainer(model: model, optimizer: .sgd(), seed: settings.seed, threads: settings.threads)
    trainer.core.runOptions.profile = Environment.profile
    let batches = min(settings.limitSteps ?? .max, resNetInferImages / resNetBatch)
    func runBatch(_ index: Int) throws {
        let program = try trainer.evaluationProgram(batch: resNetBatch)
        try feedResNetBatch(program, data: data, step: index, labels: false)
        try program.run()
    }
    var start = monotonicSeconds()
    try runBatch(0)
    let compileSeconds = monotonicSeconds() - start
    var best = Double.infinity, passes: [Double] = []
    for pass in 0...resNetInferPasses {
        start = monotonicSeconds()
        for index in 0..<batches { try runBatch(index) }
        if pass > 0 {
            passes.append(monotonicSeconds() - start)
            best = min(best, passes.last!)
        }
    }
    let images = Double(batches * resNetBatch)
    let graph = try ClassifierTrainer.forwardGraph(model: model, batch: resNetBatch)
    let achieved = Double(graphFlops(graph)) * Double(batches) / best / 1e9
    let extra: [(String, Any)] = [("best_pass_seconds", rounded(best, 4)), ("pass_seconds", passes.map { rounded($0, 4) }),
                                  ("batch", resNetBatch), ("images_per_pass", Int(images)),
                                  ("threads", settings.threads)]
        + throughputFields(achievedGFLOPs: achieved, threads: settings.threads, measurePeak: settings.measurePeak)
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "images_per_second",
                       value: images / best, compileSeconds: compileSeconds, testAccuracy: nil, extra: extra)
}

/// A layer of `bench conv`'s table: its name and its geometry.
struct ConvBenchLayer {
    let name: String
    let geometry: Conv2DKernel.Geometry

    /// A ResNet layer at batch 128: input [c, side, side], o output channels, a square kernel,
    /// padding 1 for 3×3 and 0 for 1×1.
    init(_ name: String, _ c: Int, _ side: Int, _ o: Int, _ kernel: Int, _ stride: Int) {
        self.name = name
        geometry = Conv2DKernel.Geometry(n: resNetBatch, c: c, h: side, w: side, o: o, kh: kernel, kw: kernel,
                                         strideH: stride, strideW: stride, padH: kernel == 3 ? 1 : 0, padW: kernel == 3 ? 1 : 0)
    }

    init(name: String, geometry: Conv2DKernel.Geometry) { self.name = name; self.geometry = geometry }

    /// A layer of the user's: `NxCxHxW-oO-kK[-sS][-pP]` (stride 1 and padding 0, PyTorch's
    /// defaults, unless given), e.g. `64x32x26x26-o64-k3` for the second convolution of PyTorch's
    /// MNIST example at batch 64.
    static func parse(_ text: String) throws -> ConvBenchLayer {
        let usage = "bench conv: --shape takes resnet18, resnet20 or NxCxHxW-oO-kK[-sS][-pP] (e.g. 64x32x26x26-o64-k3-p1), got \"\(excerpt(text))\""
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
        let input = parts[0].split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard input.count == 4, input.allSatisfy({ ($0 ?? 0) > 0 }) else { throw KilnError.argument(usage) }
        var fields: [Character: Int] = [:]
        for part in parts.dropFirst() {
            guard let key = part.first, "oksp".contains(key), fields[key] == nil, let value = Int(part.dropFirst()),
                  value >= (key == "p" ? 0 : 1) else { throw KilnError.argument(usage) }
            fields[key] = value
        }
        guard let o = fields["o"], let k = fields["k"] else { throw KilnError.argument(usage) }
        let (n, c, h, w) = (input[0]!, input[1]!, input[2]!, input[3]!), s = fields["s"] ?? 1, p = fields["p"] ?? 0
        guard n <= 4096, c <= 8192, o <= 8192, h <= 4096, w <= 4096, k <= 15, s <= 15, p < k,
              h + 2 * p >= k, w + 2 * p >= k, n * c * h * w <= 1 << 28, n * o * h * w <= 1 << 28 else {
            throw KilnError.argument(usage + ": the kernel must fit the padded image, padding below the kernel, stride at most 15, tensors within 2^28 floats")
        }
        return ConvBenchLayer(name: "your layer", geometry: Conv2DKernel.Geometry(n: n, c: c, h: h, w: w, o: o, kh: k, kw: k,
                                                                                  strideH: s, strideW: s, padH: p, padW: p))
    }
}

/// ResNet-18's convolution shapes at batch 128 (CIFAR form): name, input [C, H, W], output
/// channels, kernel, stride; padding 1 for 3×3, 0 for 1×1.
private let resNet18ConvLayers: [ConvBenchLayer] = [
    .init("conv1 (stem)", 3, 32, 64, 3, 1),
    .init("layer1 3x3", 64, 32, 64, 3, 1),
    .init("layer2.0.conv1", 64, 32, 128, 3, 2),
    .init("layer2 3x3", 128, 16, 128, 3, 1),
    .init("layer2 shortcut", 64, 32, 128, 1, 2),
    .init("layer3.0.conv1", 128, 16, 256, 3, 2),
    .init("layer3 3x3", 256, 8, 256, 3, 1),
    .init("layer3 shortcut", 128, 16, 256, 1, 2),
    .init("layer4.0.conv1", 256, 8, 512, 3, 2),
    .init("layer4 3x3", 512, 4, 512, 3, 1),
    .init("layer4 shortcut", 256, 8, 512, 1, 2),
]

/// ResNet-20's convolution shapes at batch 128 (`bench conv --shape resnet20`), as above.
private let resNet20ConvLayers: [ConvBenchLayer] = [
    .init("conv1 (stem)", 3, 32, 16, 3, 1),
    .init("stage1 3x3", 16, 32, 16, 3, 1),
    .init("stage2.0.conv1", 16, 32, 32, 3, 2),
    .init("stage2 3x3", 32, 16, 32, 3, 1),
    .init("stage2 shortcut", 16, 32, 32, 1, 2),
    .init("stage3.0.conv1", 32, 16, 64, 3, 2),
    .init("stage3 3x3", 64, 8, 64, 3, 1),
    .init("stage3 shortcut", 32, 16, 64, 1, 2),
]

/// The bytes a pass must move at the least: every tensor it reads once, the one it writes once
/// (a strided unpadded 1×1 convolution reads only x's rows oy·s, whole cache lines of them).
func compulsoryBytes(_ g: Conv2DKernel.Geometry, _ pass: Conv2DKernel.Pass) -> Int {
    let stridedPointwise = g.kh == 1 && g.kw == 1 && g.padH == 0 && g.padW == 0 && (g.strideH > 1 || g.strideW > 1)
    let xRead = stridedPointwise ? g.n * g.c * g.oh * g.w : g.n * g.c * g.h * g.w
    let x = g.n * g.c * g.h * g.w, y = g.n * g.o * g.oh * g.ow, w = g.o * g.c * g.kh * g.kw
    let floats: Int
    switch pass {
    case .forward: floats = xRead + w + y
    case .backwardData: floats = y + w + x
    case .backwardFilter: floats = xRead + y + w
    }
    return floats * MemoryLayout<Float>.stride
}

/// `count` floats on a 64-byte boundary, as a compiled program's arena places every tensor: in
/// pages of their own, which `releaseFloats` returns to the system (freed to the heap, each
/// round's tensors added to the peak RSS: 290 MB for one round, 445 MB for three).
private func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    let bytes = max(1, count) * MemoryLayout<Float>.stride + 64
    guard let raw = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
        fatalError("bench conv: could not map \(bytes) bytes")
    }
    // The mapping's size in the first 64 bytes, the floats after them.
    raw.storeBytes(of: bytes, as: Int.self)
    return (raw + 64).bindMemory(to: Float.self, capacity: max(1, count))
}

/// Unmaps floats from `alignedFloats`.
private func releaseFloats(_ floats: UnsafeMutablePointer<Float>) {
    let raw = UnsafeMutableRawPointer(floats) - 64
    munmap(raw, raw.load(as: Int.self))
}

/// The passes' names in `kiln bench conv`'s table, in its order.
let convPassNames = ["forward", "bwd-data", "bwd-filter"]

/// Times forward, backward-data and backward-filter of every ResNet-18 layer shape at batch 128
/// (those `--layer` and `--pass` keep) on `--threads`, in `--rounds` rounds (3 by default): in
/// each, every row gets 1 untimed call, then `--runs` timed calls, 5 by default (scratch warmed as
/// in a compiled program). A row's time is its best call over all rounds, as the peak is the best
/// of runs spread over half a second: on a shared host a burst of the neighbours' load lasting a
/// row's five calls no longer decides that row. Prints a table (with each row's slowest round, so
/// the noise shows); the record's value is total FLOPs over total best time (all rows), each row
/// in `extra.layers` (columns named in `extra.layer_columns`).
func benchConv(_ settings: BenchSettings) throws -> BenchRecord {
    // The peak and the bandwidth are measured at the start of every round, the best kept: a
    // peak measured during a burst of the neighbours' load (202 against 233 GFLOP/s, minutes
    // apart) made rows read above 100 %.
    var peak: PeakFMA.Measurement?, bandwidth: MemoryBandwidth.Measurement?
    var totalFlops = 0.0, totalSeconds = 0.0
    let layers = (settings.convCustom.map { [$0] } ?? (settings.convResNet20 ? resNet20ConvLayers : resNet18ConvLayers))
        .filter { settings.convLayer.map($0.name.contains) ?? true }
    guard !layers.isEmpty else {
        throw KilnError.argument("bench conv: no layer's name contains \"\(excerpt(settings.convLayer ?? ""))\"")
    }
    /// One row of the table: a layer's pass, and its best call in each round so far.
    struct Row {
        let layer: String, shape: String, pass: String, algorithm: String, g: Conv2DKernel.Geometry, kernelPass: Conv2DKernel.Pass
        var rounds: [Double] = []
    }
    var table: [Row] = []
    // A progress bar on a terminal: rows timed over all rounds.
    let rowsPerRound = layers.count * (settings.convPass == nil ? convPassNames.count : 1)
    for round in 0..<settings.convRounds {
        if settings.measurePeak {
            let p = PeakFMA.measure(threads: settings.threads), b = MemoryBandwidth.measure(threads: settings.threads)
            if p.gflops > peak?.gflops ?? 0 { peak = p }
            if b.gigabytesPerSecond > bandwidth?.gigabytesPerSecond ?? 0 { bandwidth = b }
        }
        var index = 0
        for layer in layers {
            let g = layer.geometry
            // The same data in every round.
            var random = SplitMix64(seed: settings.seed)
            func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
                let p = alignedFloats(count)
                for i in 0..<count { p[i] = Float(random.uniform(-1, 1)) }
                return p
            }
            let x = floats(g.n * g.c * g.h * g.w), w = floats(g.o * g.c * g.kh * g.kw), dy = floats(g.n * g.o * g.oh * g.ow)
            let out = alignedFloats(max(g.n * g.c * g.h * g.w, g.n * g.o * g.oh * g.ow, g.o * g.c * g.kh * g.kw))
            defer { [x, w, dy, out].forEach(releaseFloats) }
            for (pass, passName) in zip([Conv2DKernel.Pass.forward, .backwardData, .backwardFilter], convPassNames)
                where settings.convPass.map({ $0 == passName }) ?? true {
                let workspace = Conv2DKernel.Workspace(pass, g, threads: settings.threads)
                func call() {
                    switch pass {
                    case .forward: Conv2DKernel.forward(g, x: x, weight: w, y: out, threads: settings.threads, workspace: workspace)
                    case .backwardData: Conv2DKernel.backwardData(g, dy: dy, weight: w, dx: out, threads: settings.threads, workspace: workspace)
                    case .backwardFilter: Conv2DKernel.backwardFilter(g, x: x, dy: dy, dw: out, threads: settings.threads, workspace: workspace)
                    }
                }
                call()
                var best = Double.infinity
                for _ in 0..<settings.convRuns {
                    let start = monotonicSeconds()
                    call()
                    best = min(best, monotonicSeconds() - start)
                }
                if round == 0 {
                    table.append(Row(layer: layer.name, shape: "\(g.n)x\(g.c)x\(g.h)x\(g.w) -> \(g.o), \(g.kh)x\(g.kw), s\(g.strideH) p\(g.padH)",
                                     pass: passName, algorithm: Conv2DKernel.algorithm(g, pass), g: g, kernelPass: pass))
                }
                table[index].rounds.append(best)
                index += 1
                showProgress("bench conv", done: round * rowsPerRound + index, total: settings.convRounds * rowsPerRound,
                             detail: "round \(round + 1) of \(settings.convRounds), \(layer.name) \(passName)")
            }
        }
    }
    if let peak, let bandwidth {
        print(String(format: "FMA peak %.1f GFLOP/s, streaming bandwidth %.1f GB/s (%d threads); roofline = min(peak, bandwidth x FLOPs/byte)",
                     peak.gflops, bandwidth.gigabytesPerSecond, settings.threads))
    }
    print("layer              shape (NxCxHxW -> O, k, s, p)      pass     algorithm                          ms   GFLOP/s"
          + (peak == nil ? "" : "  of peak  FLOP/B  roofline  of roofline") + "  slowest round")
    var rows: [[Any]] = []
    for row in table {
        let g = row.g, best = row.rounds.min()!, slowest = row.rounds.max()!
        let flops = 2.0 * Double(g.n * g.o * g.oh * g.ow) * Double(g.c * g.kh * g.kw)
        totalFlops += flops
        totalSeconds += best
        let gflops = flops / best / 1e9
        var line = row.layer.padding(toLength: 19, withPad: " ", startingAt: 0)
            + row.shape.padding(toLength: 35, withPad: " ", startingAt: 0) + row.pass.padding(toLength: 11, withPad: " ", startingAt: 0)
            + row.algorithm.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%9.2f %9.1f", best * 1e3, gflops)
        var record: [Any] = [row.layer, row.shape, row.pass, row.algorithm, rounded(best * 1e3, 3), rounded(gflops, 2)]
        if let peak, let bandwidth {
            let intensity = flops / Double(compulsoryBytes(g, row.kernelPass))
            let roofline = min(peak.gflops, bandwidth.gigabytesPerSecond * intensity)
            line += String(format: "  %7.1f%%  %6.1f  %8.1f  %10.1f%%", 100 * gflops / peak.gflops, intensity, roofline,
                           100 * gflops / roofline)
            record += [rounded(gflops / peak.gflops, 4), rounded(intensity, 2), rounded(roofline, 1), rounded(gflops / roofline, 4)]
        }
        line += String(format: "  %+12.0f%%", 100 * (slowest / best - 1))
        record.append(row.rounds.map { rounded($0 * 1e3, 3) } as [Any])
        print(line)
        rows.append(record)
    }
    let overall = totalFlops / totalSeconds / 1e9
    let columns = ["layer", "shape", "pass", "algorithm", "best_ms", "gflops"]
        + (peak == nil ? [] : ["fraction_of_peak", "flops_per_byte", "roofline_gflops", "fraction_of_roofline"]) + ["round_best_ms"]
    var extra: [(String, Any)] = [("batch", layers[0].geometry.n), ("threads", settings.threads), ("rounds", settings.convRounds),
                                  ("runs_per_round", settings.convRuns),
                                  ("layer_columns", columns as [Any]), ("layers", rows as [Any])]
    if let peak {
        extra += [("peak_gflops", rounded(peak.gflops, 2)), ("fraction_of_peak", rounded(overall / peak.gflops, 4)),
                  ("peak_source", peak.description + (settings.convRounds > 1 ? ", best of \(settings.convRounds) rounds" : ""))]
    }
    if let bandwidth {
        extra += [("bandwidth_gb_per_s", rounded(bandwidth.gigabytesPerSecond, 2)), ("bandwidth_source", bandwidth.description + (settings.convRounds > 1 ? ", best of \(settings.convRounds) rounds" : "")),
                  ("roofline_bytes", "each tensor the pass reads once and writes once (strided 1x1: only the rows of x it reads)")]
    }
    extra.append(("isa", ISA.summary))
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "gflops",
                       value: overall, compileSeconds: nil, testAccuracy: nil, extra: extra)
}
