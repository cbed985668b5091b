import Foundation
import Testing
import KilnGraph
import KilnRuntime
@testable import KilnZoo

/// Regression tests for the hostile inputs of issue 16: each used to crash (an overflow trap or a
/// bad range) or allocate without bound, and is now one error.
@Suite("Hostile input")
struct HostileInputTests {
    private static let glyphs = CourseGlyphs.make(count: 12, seed: 4)

    @Test("a model file whose stored epoch count is negative or huge is refused when read")
    func storedEpochs() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3), optimizer: .sgd(momentum: 0.9), seed: 1, threads: 1)
        try trainer.fit(Self.glyphs, options: FitOptions(epochs: 1, batchSize: 6))
        try Checkpoint.save(trainer, classNames: ["A", "B", "C"], epochs: 1, to: path)
        let (tensors, metadata) = try Safetensors.read(path: path)
        #expect(metadata["kiln.config"]!.contains("\"epochs\":1"))
        for epochs in [-5, 1 << 62] {
            var changed = metadata
            changed["kiln.config"] = metadata["kiln.config"]!.replacingOccurrences(of: "\"epochs\":1", with: "\"epochs\":\(epochs)")
            let bad = dir.file("epochs\(epochs).safetensors")
            try Safetensors.write(path: bad, entries: Array(tensors.values), metadata: changed)
            #expect(kilnErrorMessage { _ = try Checkpoint.read(path: bad) }
                    == "\(bad): model metadata \"kiln.config\" has \"epochs\" \(epochs); a model file holds 0 to 10000000 epochs")
        }
    }

    // Found by `kiln fuzz --all --seed 3` (kiln-model cases 1454, 2184): a 10,000-character
    // kiln.model or kiln.normalisation was quoted whole in the error.
    @Test("model names, class names and normalisation from a model file are quoted short and on one line")
    func modelFileNames() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3), optimizer: .sgd(), seed: 1, threads: 1)
        try trainer.initializeParameters()
        try Checkpoint.save(trainer, classNames: ["A", "B", "C"], epochs: 1, to: path)
        let (tensors, metadata) = try Safetensors.read(path: path)
        let long = String(repeating: "A", count: 10_000)
        let cases: [(String, String, String)] = [
            ("kiln.model", long, "model metadata \"kiln.model\" is not a model name: \"\(String(repeating: "A", count: 40))… (10000 bytes)\""),
            ("kiln.model", "log\nreg", "model metadata \"kiln.model\" is not a model name: \"log\\nreg\""),
            ("kiln.classes", "[\"A\",\"B\",\"C\\r\"]", "model metadata \"kiln.classes\" has \"C\\r\", not a class name (1 to 100 bytes, no control characters)"),
            ("kiln.normalisation", long, "model normalisation \(String(repeating: "A", count: 40))… (10000 bytes) is not one Kiln applies (\(Checkpoint.normalisation))"),
        ]
        for (key, value, message) in cases {
            var changed = metadata
            changed[key] = value
            let bad = dir.file("bad.safetensors")
            try Safetensors.write(path: bad, entries: Array(tensors.values), metadata: changed)
            #expect(kilnErrorMessage { _ = try Checkpoint.read(path: bad) } == "\(bad): " + message)
        }
    }

    // Found while fuzzing the flags: a schedule quoted whole, and warm-ups chained without end.
    @Test("--schedule quotes an excerpt, refuses long text and a warm-up after a warm-up")
    func scheduleText() {
        let forms = "(forms: constant, step:F[:E], cosine[:M], warmup:N[+S], onecycle[:P])"
        #expect(kilnErrorMessage { _ = try LearningRateSchedule.parse("\rinf") } == "--schedule \"\\rinf\": unknown schedule \(forms)")
        #expect(kilnErrorMessage { _ = try LearningRateSchedule.parse("warmup:1+warmup:2") }
                == "--schedule \"warmup:1+warmup:2\": a warm-up is followed by another schedule, not another warm-up \(forms)")
        let chain = String(repeating: "warmup:1+", count: 20_000) + "constant"
        #expect(kilnErrorMessage { _ = try LearningRateSchedule.parse(chain) }?.contains("longer than any schedule") == true)
        #expect((try? LearningRateSchedule.parse("warmup:100+cosine")) != nil)
    }

    @Test("fit refuses epoch counts whose step arithmetic overflows, and negative ones, before training")
    func fitOptionsOverflow() throws {
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3), optimizer: .sgd(momentum: 0.9), seed: 1, threads: 1)
        #expect(kilnErrorMessage { try trainer.fit(Self.glyphs, options: FitOptions(epochs: Int.max - 2, batchSize: 4, firstEpoch: 3)) }
                == "training from epoch 3 for \(Int.max - 2) epochs of 4 steps counts more steps than fit in an integer")
        #expect(kilnErrorMessage { try trainer.fit(Self.glyphs, options: FitOptions(epochs: 1, batchSize: 4, firstEpoch: -1)) }
                == "training needs non-negative epoch counts, found 1 epochs from epoch -1")
        #expect(kilnErrorMessage { try trainer.fit(Self.glyphs, options: FitOptions(epochs: 1, batchSize: 0)) }
                == "training needs a batch size of at least 1, found 0")
    }

    @Test("a grid picture too large for memory is refused with the bytes it needs")
    func gridTooLarge() throws {
        #expect(kilnErrorMessage { _ = try ImageGrid(checking: Self.glyphs, perClass: 10, scale: 1 << 59) }
                == "a grid of 3x10 images of 28x28 at scale 576460752303423488 is too large to draw")
        let huge = kilnErrorMessage { _ = try ImageGrid(checking: Self.glyphs, perClass: 1000, scale: 4000) }
        #expect(huge?.hasPrefix("a 112002002x336008 grid picture would need 37633568688016 bytes") == true, "\(huge ?? "")")
        let grid = try ImageGrid(checking: Self.glyphs, perClass: 4, scale: 2)
        #expect(grid.width == 2 + 4 * 58 && grid.height == 2 + 3 * 58)
    }

    @Test("sampling more images than memory holds is refused before allocating")
    func sampleTooMany() throws {
        let model = try Zoo.generative("cvae", imageShape: [1, 8, 8], classes: 3)
        let trainer = GenerativeTrainer(model: model, seed: 1, threads: 1)
        let message = kilnErrorMessage { _ = try trainer.samplePerClass(1 << 58, seed: 1, classNames: ["A", "B", "C"]) }
        #expect(message?.hasPrefix("288230376151711744 samples of each of 3 classes would need more than") == true, "\(message ?? "")")
        let memory = kilnErrorMessage { _ = try trainer.samplePerClass(1 << 40, seed: 1, classNames: ["A", "B", "C"]) }
        #expect(memory?.hasPrefix("1099511627776 samples of each of 3 classes would need 224300372066304 bytes") == true, "\(memory ?? "")")
    }

    @Test("IDX dimensions whose product overflows are an error, not a wrapped size")
    func idxOverflow() {
        let file: [UInt8] = [0, 0, 8, 3, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2]
        #expect(kilnErrorMessage { _ = try IDX.parse(file, path: "x.idx") }
                == "x.idx: oversized IDX dimensions [4294967295, 4294967295, 4294967295]: their product overflows an integer, the file holds 2 bytes of data")
    }

    @Test("overflow-checked products and the memory check")
    func memoryBudget() {
        #expect(MemoryBudget.product([3, 4, 5]) == 60)
        #expect(MemoryBudget.product([1 << 32, 1 << 32]) == nil)
        #expect(MemoryBudget.product([-1, 4]) == nil)
        #expect(MemoryBudget.product([]) == 1)
        #expect(MemoryBudget.availableBytes > 0)
        #expect(kilnErrorMessage { try MemoryBudget.check([Int.max], for: "a test buffer") }?.hasPrefix("a test buffer would need \(Int.max) bytes") == true)
        #expect((try? MemoryBudget.check([1024, 4], for: "a small buffer")) == 4096)
    }

    @Test("glyph-cnn trains on 64 and 256 threads (more chunks than some kernels' rows) to the bytes of 1 thread")
    func manyThreads() throws {
        // `kiln train glyph-cnn --threads 64` crashed: a fused elementwise kernel cut its rows into
        // ceiling-sized parts, and with nearly as many parts as rows the last parts started past the end.
        let data = CourseGlyphs.make(count: 64, seed: 2)
        var results: [[UInt32]] = []
        for threads in [1, 64, 256] {
            let trainer = ClassifierTrainer(model: try Zoo.classifier("glyph-cnn", inputShape: [1, 28, 28], classes: 3),
                                            optimizer: .adam(), seed: 5, threads: threads)
            _ = try trainer.trainEpoch(data, order: epochOrder(count: data.count, seed: 5, epoch: 0), batchSize: 32, learningRate: 0.003)
            results.append(trainer.store.names.flatMap { trainer.store[$0]!.values.map(\.bitPattern) })
        }
        #expect(results[0] == results[1] && results[0] == results[2])
    }

    @Test("a temporary file left by a writer killed mid-write is removed by the next write; a live writer's is kept")
    func staleTemporaries() throws {
        let dir = TemporaryDirectory()
        let target = dir.file("model.safetensors")
        // A pid that no process has (beyond the kernel's pid_max), and a live one (our parent).
        let dead = dir.write(".model.safetensors.tmp-2147483000", [1, 2, 3])
        let live = dir.write(".model.safetensors.tmp-\(getppid())", [4, 5, 6])
        try AtomicFile.write([7, 8, 9], to: target)
        #expect(!FileManager.default.fileExists(atPath: dead))
        #expect(FileManager.default.fileExists(atPath: live))
        #expect(FileManager.default.contents(atPath: target) == Data([7, 8, 9]))
    }
}

/// Issue 16's memory limit: a program whose arena cannot fit is refused with the bytes it needs, before allocating.
@Suite("Memory limit")
struct MemoryLimitTests {
    @Test("compiling a program whose arena exceeds the machine's memory throws the bytes it needs")
    func arenaTooLarge() throws {
        let g = GraphBuilder()
        let x = g.input("x", [1 << 20, 1 << 16])   // 256 GiB of float32
        g.output("y", relu(x) * 2)
        let graph = try g.build()
        let message = kilnErrorMessage { _ = try Executable(graph: graph, store: ParameterStore(), threads: 1) }
        #expect(message?.hasPrefix("the compiled program's arena (activations, gradients, temporaries) would need ") == true, "\(message ?? "nil")")
        #expect(message?.contains("this process may use") == true)
    }
}
