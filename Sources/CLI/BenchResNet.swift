import Foundation
import Kiln

// `kiln bench resnet18-train`, `resnet18-infer` and `conv`: ResNet-18 (CIFAR form) at batch 128
// on 3×32×32 images, and its convolution layers one by one. The images are synthetic (the
// timing does not depend on the pixels); no data set is needed.

/// The ResNet-18 workloads' batch.
private let resNetBatch = 128

/// Synthetic CIFAR-shaped images for the timed steps: `SyntheticCIFAR`, two batches' worth.
private func resNetData(seed: UInt64) -> ImageDataset { SyntheticCIFAR.make(count: 2 * resNetBatch, seed: seed) }

/// The machine's FMA peak for a record, when it can be measured (see `PeakFMA`).
private func peakFields(achievedGFLOPS: Double, settings: BenchSettings) -> [(String, Any)] {
    guard settings.measurePeak, let peak = PeakFMA.measure(threads: settings.threads) else { return [] }
    var fields: [(String, Any)] = [("peak_gflops", peak.avx512), ("fraction_of_peak", rounded(achievedGFLOPS / peak.avx512, 4))]
    if let avx2 = peak.avx2 {
        fields += [("peak_avx2_gflops", avx2), ("fraction_of_avx2_peak", rounded(achievedGFLOPS / avx2, 4))]
    }
    return fields + [("peak_source", peak.source)]
}

/// One SGD-momentum step (lr 0.01, momentum 0.9, batch norm in training mode) on a batch of 128
/// synthetic 3×32×32 images. The first step (compilation included) is `compile_seconds`; then 2
/// untimed warm-up steps; value = mean seconds per step over 10 timed steps (`--limit-steps N`
/// times N instead), the per-step times in `step_seconds`.
func benchResNetTraining(_ settings: BenchSettings) throws -> BenchRecord {
    let model = try Zoo.classifier("resnet18", inputShape: [3, 32, 32], classes: 10)
    let optimizer = Optimizer.sgd(momentum: 0.9)
    let data = resNetData(seed: settings.seed)
    let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: settings.seed, threads: settings.threads)
    let batches = [Array(0..<resNetBatch)[...], Array(resNetBatch..<2 * resNetBatch)[...]]
    var start = monotonicSeconds()
    var losses = [Double(try trainer.trainStep(data, indices: batches[0], learningRate: 0.01))]
    let compileSeconds = monotonicSeconds() - start
    for step in 1...2 { losses.append(Double(try trainer.trainStep(data, indices: batches[step % 2], learningRate: 0.01))) }
    var times: [Double] = []
    for step in 0..<(settings.limitSteps ?? 10) {
        start = monotonicSeconds()
        losses.append(Double(try trainer.trainStep(data, indices: batches[step % 2], learningRate: 0.01)))
        times.append(monotonicSeconds() - start)
    }
    let mean = times.reduce(0, +) / Double(times.count)
    let flops = Double(try trainingStepFlops(model: model, batch: resNetBatch, optimizer: optimizer))
    let achieved = flops / mean / 1e9
    let extra: [(String, Any)] = [("step_seconds", times.map { rounded($0, 4) }), ("best_step_seconds", rounded(times.min()!, 4)),
                                  ("batch", resNetBatch), ("train_loss", losses.map { rounded($0, 4) }),
                                  ("flops_per_step", Int(flops)), ("achieved_gflops", rounded(achieved, 2)),
                                  ("flops_counted", "conv2d, backward-data, backward-filter 2*N*O*OH*OW*C*KH*KW each; matmul 2mnk; rest ignored"),
                                  ("data", "synthetic 3x32x32 (SyntheticCIFAR)"), ("threads", settings.threads)]
        + peakFields(achievedGFLOPS: achieved, settings: settings)
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "step_seconds",
                       value: mean, compileSeconds: compileSeconds, testAccuracy: nil, extra: extra)
}

/// Inference (batch norm in evaluation mode) on batches of 128 synthetic 3×32×32 images: the
/// first call (compilation included) is `compile_seconds`, one untimed pass, then value = images
/// per second of the best of 3 passes of 10 batches (`--limit-steps N`: N batches).
func benchResNetInference(_ settings: BenchSettings) throws -> BenchRecord {
    let model = try Zoo.classifier("resnet18", inputShape: [3, 32, 32], classes: 10)
    let data = resNetData(seed: settings.seed)
    let trainer = ClassifierTrainer(model: model, optimizer: .sgd(), seed: settings.seed, threads: settings.threads)
    let batchesPerPass = settings.limitSteps ?? 10
    func runBatch(_ index: Int) throws {
        let program = try trainer.evaluationProgram(batch: resNetBatch)
        let first = (index % 2) * resNetBatch
        data.fillBatch(indices: Array(first..<first + resNetBatch)[...],
                       into: try program.inputPointer("x").assumingMemoryBound(to: Float.self), labels: nil)
        program.run()
    }
    var start = monotonicSeconds()
    try runBatch(0)
    let compileSeconds = monotonicSeconds() - start
    for index in 0..<batchesPerPass { try runBatch(index) }
    var times: [Double] = []
    for _ in 0..<3 {
        start = monotonicSeconds()
        for index in 0..<batchesPerPass { try runBatch(index) }
        times.append(monotonicSeconds() - start)
    }
    let images = Double(batchesPerPass * resNetBatch)
    let best = times.min()!
    let graph = try ClassifierTrainer.forwardGraph(model: model, batch: resNetBatch)
    let achieved = Double(graphFlops(graph)) * Double(batchesPerPass) / best / 1e9
    let extra: [(String, Any)] = [("best_pass_seconds", rounded(best, 4)), ("pass_seconds", times.map { rounded($0, 4) }),
                                  ("images_per_pass", Int(images)), ("batch", resNetBatch),
                                  ("achieved_gflops", rounded(achieved, 2)), ("data", "synthetic 3x32x32 (SyntheticCIFAR)"),
                                  ("threads", settings.threads)] + peakFields(achievedGFLOPS: achieved, settings: settings)
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "images_per_second",
                       value: images / best, compileSeconds: compileSeconds, testAccuracy: nil, extra: extra)
}

/// ResNet-18's convolution shapes at batch 128 (CIFAR form): name, input [C, H, W], output
/// channels, kernel, stride; padding 1 for 3×3, 0 for 1×1.
private let resNet18ConvLayers: [(name: String, c: Int, side: Int, o: Int, kernel: Int, stride: Int)] = [
    ("conv1 (stem)", 3, 32, 64, 3, 1),
    ("layer1 3x3", 64, 32, 64, 3, 1),
    ("layer2.0.conv1", 64, 32, 128, 3, 2),
    ("layer2 3x3", 128, 16, 128, 3, 1),
    ("layer2 shortcut", 64, 32, 128, 1, 2),
    ("layer3.0.conv1", 128, 16, 256, 3, 2),
    ("layer3 3x3", 256, 8, 256, 3, 1),
    ("layer3 shortcut", 128, 16, 256, 1, 2),
    ("layer4.0.conv1", 256, 8, 512, 3, 2),
    ("layer4 3x3", 512, 4, 512, 3, 1),
    ("layer4 shortcut", 256, 8, 512, 1, 2),
]

/// Times forward, backward-data and backward-filter of every ResNet-18 layer shape at batch 128
/// on `--threads`: 1 untimed call, then the best of 5 timed calls (scratch warmed as in a
/// compiled program). Prints a table; the record's value is total FLOPs over total best time
/// (all rows), each row in `extra.layers` (columns named in `extra.layer_columns`).
func benchConv(_ settings: BenchSettings) throws -> BenchRecord {
    let peak = settings.measurePeak ? PeakFMA.measure(threads: settings.threads) : nil
    var rows: [[Any]] = []
    var totalFlops = 0.0, totalSeconds = 0.0
    print("layer              shape (NxCxHxW -> O, k, s)     pass     algorithm                          ms   GFLOP/s" + (peak == nil ? "" : "  of peak"))
    for layer in resNet18ConvLayers {
        let g = Conv2DKernel.Geometry(n: resNetBatch, c: layer.c, h: layer.side, w: layer.side, o: layer.o, kh: layer.kernel,
                                      kw: layer.kernel, strideH: layer.stride, strideW: layer.stride,
                                      padH: layer.kernel == 3 ? 1 : 0, padW: layer.kernel == 3 ? 1 : 0)
        let flops = 2.0 * Double(g.n * g.o * g.oh * g.ow) * Double(g.c * g.kh * g.kw)
        var random = SplitMix64(seed: settings.seed)
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { p[i] = Float(random.uniform(-1, 1)) }
            return p
        }
        let x = floats(g.n * g.c * g.h * g.w), w = floats(g.o * g.c * g.kh * g.kw), dy = floats(g.n * g.o * g.oh * g.ow)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: max(g.n * g.c * g.h * g.w, g.n * g.o * g.oh * g.ow, g.o * g.c * g.kh * g.kw))
        defer { [x, w, dy, out].forEach { $0.deallocate() } }
        let shape = "\(g.n)x\(g.c)x\(g.h)x\(g.w) -> \(g.o), \(g.kh)x\(g.kw), s\(g.strideH)"
        for pass in [Conv2DKernel.Pass.forward, .backwardData, .backwardFilter] {
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
            for _ in 0..<5 {
                let start = monotonicSeconds()
                call()
                best = min(best, monotonicSeconds() - start)
            }
            totalFlops += flops
            totalSeconds += best
            let gflops = flops / best / 1e9
            let passName = pass == .forward ? "forward" : pass == .backwardData ? "bwd-data" : "bwd-filter"
            let algorithm = Conv2DKernel.algorithm(g, pass)
            var line = layer.name.padding(toLength: 19, withPad: " ", startingAt: 0)
                + shape.padding(toLength: 31, withPad: " ", startingAt: 0) + passName.padding(toLength: 11, withPad: " ", startingAt: 0)
                + algorithm.padding(toLength: 30, withPad: " ", startingAt: 0) + String(format: "%9.2f %9.1f", best * 1e3, gflops)
            var row: [Any] = [layer.name, shape, passName, algorithm, rounded(best * 1e3, 3), rounded(gflops, 2)]
            if let peak {
                line += String(format: "  %7.1f%%", 100 * gflops / peak.avx512)
                row.append(rounded(gflops / peak.avx512, 4))
            }
            print(line)
            rows.append(row)
        }
    }
    let overall = totalFlops / totalSeconds / 1e9
    let columns = ["layer", "shape", "pass", "algorithm", "best_ms", "gflops"] + (peak == nil ? [] : ["fraction_of_peak"])
    var extra: [(String, Any)] = [("batch", resNetBatch), ("threads", settings.threads),
                                  ("layer_columns", columns as [Any]), ("layers", rows as [Any])]
    if let peak {
        extra += [("peak_gflops", peak.avx512), ("fraction_of_peak", rounded(overall / peak.avx512, 4)), ("peak_source", peak.source)]
        if let avx2 = peak.avx2 { extra.append(("peak_avx2_gflops", avx2)) }
    } else {
        extra.append(("peak", "not measured (no peak measurement available here; see kiln bench peak)"))
    }
    return BenchRecord(workload: settings.workload, threads: settings.threads, seed: settings.seed, metric: "gflops",
                       value: overall, compileSeconds: nil, testAccuracy: nil, extra: extra)
}
