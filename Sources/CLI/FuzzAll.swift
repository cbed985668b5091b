import Foundation
import Kiln
import KilnCommandLine
import KilnBench
#if canImport(Glibc)
import Glibc
#endif
#if !KILN_SANITIZING
import KilnAllocationCounter
#endif

// `kiln fuzz --all`: every reader and the command line, ≥ 10^5 inputs per format (issue 16).
//
// The parent runs the cases of each format in chunks, each chunk in a child process
// (`kiln fuzz --worker FORMAT …`) that reads its mutated inputs in process and reports one line
// per case on a pipe. A child killed by a signal or a trap is a crash of the case after the last
// one it reported; a case that takes more than `--case-timeout` seconds of CPU time (or 30 times
// that, at least 10 minutes, of wall time) is a hang (the child is killed). Either way the input is saved under `findings/` and the chunk goes on in a new child after
// that case. Every case is made from (seed, format, index) alone, so any case is reproduced by
// `kiln fuzz --worker FORMAT --seed S --from INDEX --count 1`.
//
// Memory: the worker counts heap bytes with the counting malloc (KilnAllocationCounter): the peak
// of live bytes while one input is read. An input whose peak exceeds `FuzzFormat.allowance`
// (8 × its size + 4 MiB; for gzip the size is the larger of the compressed and uncompressed ones)
// is a memory blow-up; the table gives the largest peak and the largest peak ÷ (size + 64 KiB).

/// Set by the flag fuzzer: a command stops with `FlagsChecked` once it has parsed and checked
/// every flag, before it does the work (so 10^5 flag cases run in process).
nonisolated(unsafe) var stopAfterFlagChecks = false
struct FlagsChecked: Error {}
func flagsChecked() throws { if stopAfterFlagChecks { throw FlagsChecked() } }

/// Heap bytes as the counting malloc sees them (0 when built without it, under a sanitizer).
enum HeapBytes {
    #if KILN_SANITIZING
    static let available = false
    static func start() {}
    static func resetPeak() -> Int { 0 }
    static func peak() -> Int { 0 }
    #else
    static let available = true
    static func start() { kiln_track_bytes() }
    /// Starts a new peak; returns the live bytes now.
    static func resetPeak() -> Int { kiln_reset_peak_bytes(); return kiln_live_bytes() }
    static func peak() -> Int { kiln_peak_bytes() }
    #endif
}

enum FuzzFormat: String, CaseIterable {
    case idxRaw = "idx-raw", idxGzip = "idx-gzip", csv, safetensors, model = "kiln-model", onnx, flags

    var title: String {
        switch self {
        case .idxRaw: return "IDX raw (IDX.read)"
        case .idxGzip: return "IDX gzip (IDX.read)"
        case .csv: return "course CSV (train, eval, predict, show, eval --labels)"
        case .safetensors: return "safetensors (Safetensors.read)"
        case .model: return "Kiln model files (classifier + resume, ensemble, generative)"
        case .onnx: return "ONNX (ONNXModel.load)"
        case .flags: return "command-line flags (in process, to the checks)"
        }
    }

    /// Heap bytes an input of `size` bytes may take while it is read before it counts as a blow-up.
    static func allowance(size: Int) -> Int { 8 * size + 4 << 20 }
    /// The fixed part the table's ratio adds to the input's size (a reader's buffers, a model's
    /// graph): the ratio is peak heap ÷ (input size + 64 KiB).
    static let fixedBytes = 64 << 10
}

/// One worker's outcome for one case.
struct FuzzCaseResult {
    enum Kind: String { case clean, accepted, unclean }
    var kind: Kind
    var peakBytes: Int
    var size: Int
    var message: String
}

/// The pristine inputs every case mutates one of, made from the seed alone (so a parent can
/// remake any case a child crashed on).
final class FuzzCorpus {
    let directory: String
    let seed: UInt64
    var idxImages: [UInt8] = [], idxLabels: [UInt8] = []
    var trainCSV: [UInt8] = [], testCSV: [UInt8] = [], labelsText: [UInt8] = []
    var classifier: [UInt8] = [], generator: [UInt8] = [], ensemble: [UInt8] = [], onnx: [UInt8] = []
    var classNames: [String] = []

    init(seed: UInt64, directory: String) throws {
        self.seed = seed
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        idxImages = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4] + (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        idxLabels = [0, 0, 8, 1, 0, 0, 0, 2, 1, 0]
        let glyphs = CourseGlyphs.make(count: 4, seed: seed)
        classNames = glyphs.classNames
        trainCSV = CSVImages.serialize(glyphs)
        var unlabelled = glyphs.subset(Array(0..<2))
        unlabelled.labels = []
        testCSV = CSVImages.serialize(unlabelled)
        labelsText = Array(glyphs.labels.map { glyphs.classNames[Int($0)] + "\n" }.joined().utf8)
        // A small classifier trained one epoch with Adam, saved with its optimizer state and what
        // continues its run (kiln.resume); and an untrained conditional VAE on 8×8 images.
        let small = glyphs  // 28×28, as the course files
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: small.classNames.count),
                                        optimizer: .adam(), seed: seed, threads: 1)
        try trainer.fit(small, options: FitOptions(epochs: 1, batchSize: 2, seed: seed))
        try Checkpoint.save(trainer, classNames: small.classNames, epochs: 1, resume: trainer.resumeState(epochs: 1, seed: seed),
                            to: directory + "/model.safetensors")
        classifier = Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors")))
        let second = ClassifierTrainer(model: trainer.model, optimizer: .adam(), seed: seed &+ 1, threads: 1)
        try Checkpoint.saveEnsemble([trainer, second], classNames: small.classNames, epochs: [1, 0], to: directory + "/ensemble.safetensors")
        ensemble = Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/ensemble.safetensors")))
        let vae = GenerativeTrainer(model: try Zoo.generative("cvae", imageShape: [1, 8, 8], classes: 2), seed: seed, threads: 1)
        try vae.initializeParameters()
        try vae.save(path: directory + "/gen.safetensors", classNames: ["A", "B"], epochs: 1, resume: vae.resumeState(epochs: 1))
        generator = Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/gen.safetensors")))
        onnx = try Fuzzer.smallONNXModel(seed: seed)
        // The files the flag cases name.
        try Data(trainCSV).write(to: URL(fileURLWithPath: directory + "/xy.csv"))
        try Data(testCSV).write(to: URL(fileURLWithPath: directory + "/x.csv"))
        try Data(labelsText).write(to: URL(fileURLWithPath: directory + "/y.csv"))
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    /// The random source of case `index` of `format`: independent of every other case.
    static func random(seed: UInt64, format: FuzzFormat, index: Int) -> FuzzRandom {
        var salt: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in format.rawValue.utf8 { salt = (salt ^ UInt64(byte)) &* 0x100_0000_01B3 }
        var random = FuzzRandom(state: seed ^ salt ^ (UInt64(index) &* 0xD6E8_FEB8_6659_FD93))
        _ = random.next()
        return random
    }

    /// Case `index` of `format`: the input file's bytes (or, for flags, the command line), a
    /// reader variant, and the size the memory allowance is measured against.
    struct Case {
        var bytes: [UInt8] = []
        var reference = 0
        var variant = 0
        var words: [String] = []
    }

    func makeCase(_ format: FuzzFormat, index: Int) -> Case {
        var random = Self.random(seed: seed, format: format, index: index)
        var c = Case()
        switch format {
        case .idxRaw:
            c.variant = random.below(2)
            c.bytes = random.below(3) == 0 ? Self.mutateIDX(c.variant == 0 ? idxImages : idxLabels, &random)
                                           : Fuzzer.mutate(c.variant == 0 ? idxImages : idxLabels, &random)
        case .idxGzip:
            c.variant = random.below(2)
            let raw = c.variant == 0 ? idxImages : idxLabels
            if random.below(2) == 0 {
                // A hostile IDX file, well compressed: the reader's header checks behind the inflater.
                let inner = random.below(2) == 0 ? Self.mutateIDX(raw, &random) : Fuzzer.mutate(raw, &random)
                c.bytes = Gzip.compress(inner)
                c.reference = inner.count
            } else {
                // A hostile gzip stream.
                c.bytes = Fuzzer.mutate(Gzip.compress(raw), &random)
            }
        case .csv:
            c.variant = random.below(5)
            let pristine = c.variant == 4 ? labelsText : c.variant == 2 ? testCSV : trainCSV
            c.bytes = Fuzzer.mutate(pristine, &random)
            if random.below(8) == 0 { c.bytes = Fuzzer.mutate(c.bytes, &random) }
        case .safetensors, .model:
            // Model files: a classifier with its optimizer state and kiln.resume, a generative model (1 in 4),
            // an ensemble of two classifiers (1 in 4).
            c.variant = format == .model ? [0, 0, 1, 2][random.below(4)] : 0
            let pristine = c.variant == 1 ? generator : c.variant == 2 ? ensemble : classifier
            c.bytes = random.below(2) == 0 ? Self.mutateSafetensors(pristine, &random) : Fuzzer.mutate(pristine, &random)
        case .onnx:
            c.bytes = Fuzzer.mutate(onnx, &random)
        case .flags:
            c.words = flagCase(&random)
            c.reference = c.words.reduce(0) { $0 + $1.utf8.count }
        }
        c.reference = Swift.max(c.reference, c.bytes.count)
        return c
    }

    /// Runs one case in this process; returns how it ended and its peak heap bytes.
    func run(_ format: FuzzFormat, _ c: Case, file: String) -> FuzzCaseResult {
        if format != .flags { try? Data(c.bytes).write(to: URL(fileURLWithPath: file)) }
        let before = HeapBytes.resetPeak()
        var kind = FuzzCaseResult.Kind.accepted
        var message = ""
        do {
            try read(format, c, file: file)
        } catch is FlagsChecked {
            kind = .accepted
        } catch let error as KilnError {
            message = "\(error)"
            // One short line; a file's error starts with the file's name and says where in it.
            let namesFile = format == .flags || message.hasPrefix(file)
            let oneLine = !message.unicodeScalars.contains { ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"].contains($0) }
            kind = namesFile && oneLine && message.utf8.count < 2000 ? .clean : .unclean
        } catch {
            kind = .unclean
            message = "not a KilnError: \(error)"
        }
        let peak = Swift.max(0, HeapBytes.peak() - before)
        return FuzzCaseResult(kind: kind, peakBytes: peak, size: c.reference, message: message)
    }

    private func read(_ format: FuzzFormat, _ c: Case, file: String) throws {
        switch format {
        case .idxRaw, .idxGzip:
            _ = try IDX.read(path: file)
        case .csv:
            switch c.variant {
            case 0: _ = try CSVImages.read(path: file)                                                          // train
            case 1: _ = try CSVImages.read(path: file, imageSize: (28, 28), classNames: classNames, requireLabels: true)  // eval
            case 2: _ = try CSVImages.read(path: file, imageSize: (28, 28), classNames: classNames)            // predict
            case 3:                                                                                            // show
                do { _ = try CSVImages.read(path: file) } catch let labelled {
                    guard (try? CSVImages.read(path: file, classNames: [])) != nil else { throw labelled }
                }
            default: _ = try readLabels(file, classes: classNames)                                             // eval --labels
            }
        case .safetensors:
            _ = try Safetensors.read(path: file)
        case .model:
            if c.variant == 1 {
                _ = try GenerativeTrainer.load(path: file, seed: 0, threads: 1)
            } else if c.variant == 2 {
                _ = try Checkpoint.read(path: file).makeClassifier(threads: 1)   // predict, eval
            } else {
                let checkpoint = try Checkpoint.read(path: file)
                let trainer = try checkpoint.makeTrainer(optimizer: .adam(), seed: 0, threads: 1)
                try checkpoint.restoreOptimizerState(into: trainer)
            }
        case .onnx:
            _ = try ONNXModel.load(path: file)
        case .flags:
            stopAfterFlagChecks = true
            defer { stopAfterFlagChecks = false }
            try runCommand(c.words)
        }
    }

    // MARK: Structured mutations

    static let extremeDims: [UInt32] = [0, 1, 2, 3, 4, 5, 31, 32, 33, 255, 65536, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1 << 20]

    /// An IDX header edit: a dimension set to an extreme, the rank or type byte changed, dimensions
    /// added or removed, the data cut or extended.
    static func mutateIDX(_ input: [UInt8], _ random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        let rank = Int(bytes[3])
        switch random.below(5) {
        case 0:
            let d = random.below(rank)
            let v = random.pick(extremeDims)
            for k in 0..<4 { bytes[4 + 4 * d + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(3 - k))) }
        case 1: bytes[3] = random.pick([0, 1, 2, 3, 4, 9, 64, 255])
        case 2: bytes[2] = random.pick([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF])
        case 3:
            let extra = random.below(64)
            bytes += (0..<extra).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        default:
            bytes.removeLast(Swift.min(bytes.count, 1 + random.below(16)))
        }
        return bytes
    }

    static let dtypes: [Any] = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U64", "F8_E4M3", "XX", "", "f32", 4, NSNull()]
    static let extremeInts: [Any] = [0, -1, 1, 2, 3, 4, 7, 8, 255, 784, 65536, 2_147_483_647, 2_147_483_648, 4_294_967_296,
                                     Int.max, Int.max / 4 + 1, Int.min, 1e30, 0.5, "7", NSNull()]

    /// A safetensors edit made on the parsed header, written back with a consistent header length
    /// (so the checks behind the header parser are reached): a tensor's dtype, shape or offsets set
    /// to extremes or to another tensor's (overlap), entries removed or duplicated, Kiln metadata
    /// (kiln.config, kiln.classes, kiln.state, kiln.resume, …) mutated or removed, the header length
    /// off by a little or a lot, the data section cut or extended.
    static func mutateSafetensors(_ input: [UInt8], _ random: inout FuzzRandom) -> [UInt8] {
        guard input.count >= 8 else { return input }
        var n = 0
        for k in 0..<8 { n |= Int(input[k]) << (8 * k) }
        guard n <= input.count - 8, var header = (try? JSONSerialization.jsonObject(with: Data(input[8..<(8 + n)]))) as? [String: Any] else {
            return Fuzzer.mutate(input, &random)
        }
        var data = Array(input[(8 + n)...])
        var lengthShift = 0
        let names = header.keys.filter { $0 != "__metadata__" }.sorted()
        for _ in 0...random.below(2) {
            guard let name = names.isEmpty ? nil : random.pick(names), var entry = header[name] as? [String: Any] else { break }
            switch random.below(10) {
            case 0:
                entry["dtype"] = random.pick(dtypes)
            case 1, 2:
                var shape = entry["shape"] as? [Any] ?? []
                switch random.below(4) {
                case 0 where !shape.isEmpty: shape[random.below(shape.count)] = random.pick(extremeInts)
                case 1: shape.append(random.pick(extremeInts))
                case 2 where !shape.isEmpty: shape.removeLast()
                default: shape = random.below(2) == 0 ? [] : [random.pick(extremeInts), random.pick(extremeInts)]
                }
                entry["shape"] = shape
            case 3, 4:
                var offsets = entry["data_offsets"] as? [Any] ?? [0, 0]
                switch random.below(4) {
                case 0 where offsets.count == 2: offsets[random.below(2)] = random.pick(extremeInts)
                case 1 where offsets.count == 2: offsets = [offsets[1], offsets[0]]
                case 2: offsets = random.pick([[], [0], [0, 0, 0]]) as [Any]
                default:
                    // Another tensor's offsets (overlap), or shifted by a little.
                    if let other = (header[random.pick(names)] as? [String: Any])?["data_offsets"] as? [Int], other.count == 2 {
                        let shift = random.pick([0, 0, 1, -1, 4, -4])
                        offsets = [other[0] &+ shift, other[1] &+ shift]
                    }
                }
                entry["data_offsets"] = offsets
            case 5:
                header[name] = nil
                continue
            case 6:
                header[name + random.pick(["", "_copy", ".1", "\u{0}"]) + "x"] = entry
            case 7:
                entry[random.pick(["dtype", "shape", "data_offsets"])] = nil
                entry["extra"] = random.below(2) == 0 ? 1 : "x"
            default:
                var metadata = header["__metadata__"] as? [String: Any] ?? [:]
                let keys = metadata.keys.sorted()
                guard !keys.isEmpty else { break }
                let key = random.pick(keys)
                switch random.below(6) {
                case 0: metadata[key] = nil
                case 1: metadata[key] = random.pick(extremeInts)
                case 2: metadata[key] = random.pick(["", "[]", "{}", "null", "[1,2", "\u{FEFF}", String(repeating: "A", count: 10_000)])
                default:
                    let text = metadata[key] as? String ?? ""
                    metadata[key] = String(decoding: Fuzzer.mutate(Array(text.utf8), &random), as: UTF8.self)
                }
                header["__metadata__"] = metadata
                continue
            }
            header[name] = entry
        }
        switch random.below(8) {
        case 0: lengthShift = random.pick([-8, -2, -1, 1, 2, 8])
        case 1: data.removeLast(Swift.min(data.count, 1 + random.below(64)))
        case 2: data += [UInt8](repeating: 0, count: 1 + random.below(16))
        default: break
        }
        guard var json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else { return input }
        while json.count % 8 != 0 { json.append(0x20) }
        let length = UInt64(bitPattern: Int64(json.count + lengthShift))
        var out = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
        out += json
        out += data
        return out
    }

    // MARK: Flags

    /// Each command that takes flag values, with the values it takes; a case sets one to three of
    /// them to hostile values (extremes, non-numbers, Unicode digits, 100 kB strings, random numbers).
    private var flagTemplates: [([String], [String])] {
        [(["train", "logreg", "--train", path("xy.csv"), "--epochs", "1", "--limit", "16", "--threads", "1"],
          ["--epochs", "--batch", "--lr", "--momentum", "--val-split", "--folds", "--patience", "--threads", "--limit", "--seed",
           "--image-size", "--augment", "--optimizer", "--schedule", "--classes", "--save-every", "--resume", "--init", "--dataset"]),
         (["train", "cvae", "--train", path("xy.csv"), "-o", path("out.safetensors"), "--epochs", "1", "--limit", "16", "--threads", "1"],
          ["--epochs", "--batch", "--lr", "--threads", "--limit", "--seed", "--schedule", "--classes", "--save-every", "--image-size"]),
         (["predict", path("model.safetensors"), "--test", path("x.csv"), "-o", path("out.csv")], ["--batch", "--threads"]),
         (["eval", path("model.safetensors"), "--data", path("xy.csv")], ["--batch", "--threads", "--labels"]),
         (["generate", path("gen.safetensors"), "-o", path("out.csv"), "--per-class", "2"],
          ["--per-class", "--count", "--seed", "--temperature", "--threads"]),
         (["show", path("xy.csv"), "--grid", path("out.png")], ["--per-class", "--scale"]),
         (["dot", "logreg"], ["--batch", "--stage", "--gan-step"]),
         (["dot", "gan"], ["--batch", "--stage", "--gan-step"]),
         (["plan", "logreg", "--training"], ["--batch", "--disable", "--gan-step"]),
         (["make-glyphs", path("glyphs-out"), "--train", "3", "--test", "3"], ["--train", "--test", "--seed", "--difficulty"])]
    }

    private func flagCase(_ random: inout FuzzRandom) -> [String] {
        let (words, flags) = random.pick(flagTemplates)
        var command = words
        for _ in 0...random.below(3) {
            let flag = random.pick(flags)
            let value: String
            switch random.below(4) {
            case 0: value = String(Int64(bitPattern: random.next()) >> random.below(64))           // any magnitude, either sign
            case 1: value = String(Double(bitPattern: random.next()))                              // any double, nan and inf too
            case 2: value = String(decoding: Fuzzer.mutate(Array(random.pick(Fuzzer.hostileValues).utf8), &random), as: UTF8.self)
            default: value = random.pick(Fuzzer.hostileValues + [path("model.safetensors"), path("gen.safetensors"), path("x.csv"),
                                                                 "fashion-mnist", "glyphs", "cosine", "step:2:0.5", "adam", "sgd", "1x1", "28x28"])
            }
            if let at = command.firstIndex(of: flag), at + 1 < command.count { command[at + 1] = value } else { command += [flag, value] }
        }
        return command
    }
}

// MARK: Worker (child)

/// `kiln fuzz --worker FORMAT --seed S --from I --count N [--dir D]`: runs cases I..<I+N in this
/// process and writes `index kind peakBytes referenceBytes` per case to standard output.
func fuzzWorker(format name: String, seed: UInt64, from: Int, count: Int, directory: String?, verbose: Bool = false) throws {
    if name == "selftest-crash" {
        // For the fuzzer's own test: case 3 traps, case 6 never answers, the others are clean.
        setvbuf(stdout, nil, _IOLBF, 0)
        print("ready")
        for index in from..<(from + count) {
            if index == 3 { fatalError("fuzz selftest: a trap at case 3") }
            if index == 6 { while true { _ = getpid() } }  // spins: a hang that burns CPU
            print("\(index) clean 0 1")
        }
        return
    }
    guard let format = FuzzFormat(rawValue: name) else {
        throw KilnError.argument("fuzz: unknown format \"\(excerpt(name))\"; known: \(FuzzFormat.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    let dir = directory ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("kiln-fuzz-worker-\(getpid())")
    let corpus = try FuzzCorpus(seed: seed, directory: dir)
    defer { if directory == nil { try? FileManager.default.removeItem(atPath: dir) } }
    HeapBytes.start()
    setvbuf(stdout, nil, _IOLBF, 0)
    print("ready")  // the per-case time limit starts now (making the corpus trains a model: slow on a busy machine)
    let file = dir + "/case-\(format.rawValue)" + (format == .idxGzip ? ".gz" : "")
    for index in from..<(from + count) {
        let c = corpus.makeCase(format, index: index)
        let result = corpus.run(format, c, file: file)
        if verbose { printError("\(index) \(result.kind.rawValue) \(result.peakBytes) B: \(excerpt(result.message, limit: 300))") }
        if result.kind == .unclean {
            printError("fuzz \(format.rawValue) case \(index): not one short KilnError line naming the file: \(excerpt(result.message, limit: 300))")
        }
        print("\(index) \(result.kind.rawValue) \(result.peakBytes) \(result.size)")
    }
}

// MARK: Parent

struct FuzzRow {
    var cases = 0, clean = 0, accepted = 0, unclean = 0, crashes = 0, hangs = 0, blowUps = 0
    var maxPeak = 0, maxRatio = 0.0, seconds = 0.0
}

/// `kiln fuzz --all [--per-format N] [--seed S] [--chunk C] [--case-timeout T] [--formats a,b] [--subprocess-flags M] [--keep DIR]`.
func fuzzAll(perFormat: Int, seed: UInt64, chunk: Int, caseTimeout: Double, formats: [FuzzFormat], subprocessFlags: Int,
             keep: String?, json: Bool, jobs: Int = 1) throws {
    let directory = keep ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("kiln-fuzz-all-\(getpid())")
    try FileManager.default.createDirectory(atPath: directory + "/findings", withIntermediateDirectories: true)
    let kiln = Fuzzer.ownExecutable()
    let total = Date()
    // `jobs` formats at a time, each in its own chain of worker processes.
    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var rows: [FuzzFormat: FuzzRow] = [:]
        var error: Error?
    }
    let results = Results()
    let groups = (0..<Swift.max(1, Swift.min(jobs, formats.count))).map { g in stride(from: g, to: formats.count, by: jobs).map { formats[$0] } }
    // Threads of their own (they wait on their workers' pipes; Dispatch would run only as many as cores).
    let done = DispatchSemaphore(value: 0)
    for g in groups.indices { Thread { defer { done.signal() }; runGroup(g) }.start() }
    for _ in groups.indices { done.wait() }
    @Sendable func runGroup(_ g: Int) {
        var corpus: FuzzCorpus?
        for format in groups[g] {
            do {
                let row = try fuzzFormat(format.rawValue, perFormat: perFormat, seed: seed, chunk: chunk, caseTimeout: caseTimeout,
                                         kiln: kiln, directory: directory) { failed in
                    if corpus == nil { corpus = try FuzzCorpus(seed: seed, directory: directory + "/corpus-\(g)") }
                    return corpus!.makeCase(format, index: failed)
                }
                results.lock.withLock { results.rows[format] = row }
                if !json {
                    printError("fuzz \(format.rawValue) done: \(row.cases) cases, \(row.clean) clean errors, \(row.accepted) accepted, \(row.unclean) unclean, "
                               + "\(row.crashes) crashes, \(row.hangs) hangs, \(row.blowUps) blow-ups, max peak heap \(row.maxPeak) B, "
                               + String(format: "peak/(input+64 KiB) %.1f, %.0f s", row.maxRatio, row.seconds))
                }
            } catch {
                results.lock.withLock { results.error = error }
                return
            }
        }
    }
    if let error = results.error { throw error }
    var rows: [(String, FuzzRow)] = formats.map { ($0.title, results.rows[$0]!) }
    var subprocess: [String: FuzzTally] = [:]
    if subprocessFlags > 0 {
        // A smaller sample of flag values run as real processes to the end (training, drawing,
        // generating), under the old fuzzer's 4 GB and 60 s caps: crashes after the checks.
        var fuzzer = try Fuzzer(kiln: kiln, seed: seed, memoryMB: 4096, timeout: 60, keep: directory + "/subprocess")
        let start = Date()
        subprocess = try fuzzer.run(cases: subprocessFlags, formats: [.flags], verbose: false)
        var row = FuzzRow()
        for t in subprocess.values {
            row.cases += t.cases; row.clean += t.cleanErrors; row.accepted += t.accepted; row.unclean += t.unclean
            row.crashes += t.crashes; row.hangs += t.hangs; row.blowUps += t.blowUps
        }
        row.seconds = Date().timeIntervalSince(start)
        row.maxRatio = .nan
        rows.append(("command-line flags (subprocess, run to the end, 4 GB / 60 s caps)", row))
    }
    let seconds = Date().timeIntervalSince(total)
    if json {
        print("[" + rows.map { name, r in
            jsonObject([("input", name), ("cases", r.cases), ("clean_errors", r.clean), ("accepted", r.accepted),
                        ("unclean_errors", r.unclean), ("crashes", r.crashes), ("hangs", r.hangs), ("memory_blow_ups", r.blowUps),
                        ("max_peak_heap_bytes", r.maxPeak), ("max_peak_over_input", r.maxRatio.isNaN ? 0 : r.maxRatio), ("seconds", r.seconds)])
        }.joined(separator: ", ") + "]")
    } else {
        print("kiln fuzz --all: seed \(seed), \(perFormat) inputs per format, per-case limit \(caseTimeout) s, "
              + "blow-up above 8 × input + 4 MiB of peak heap; \(String(format: "%.0f", seconds)) s in all")
        print("| format | inputs | clean errors | accepted | unclean errors | crashes | hangs | blow-ups | max peak heap | max peak heap ÷ (input + 64 KiB) | time |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for (name, r) in rows {
            let peak = r.maxRatio.isNaN ? "(RSS cap)" : HeapBytes.available ? "\(r.maxPeak) B" : "n/a"
            let ratio = r.maxRatio.isNaN || !HeapBytes.available ? "n/a" : String(format: "%.1f", r.maxRatio)
            print("| \(name) | \(r.cases) | \(r.clean) | \(r.accepted) | \(r.unclean) | \(r.crashes) | \(r.hangs) | \(r.blowUps) | \(peak) | \(ratio) | \(String(format: "%.0f s", r.seconds)) |")
        }
    }
    let bad = rows.reduce(0) { $0 + $1.1.unclean + $1.1.crashes + $1.1.hangs + $1.1.blowUps }
    if bad > 0 { throw KilnError.argument("fuzz: \(bad) unclean errors, crashes, hangs or blow-ups (inputs kept under \(directory)/findings)") }
    if keep == nil { try? FileManager.default.removeItem(atPath: directory) }
}

/// Runs `perFormat` cases of the worker format `name` in chunks of child processes; counts a
/// child's death as a crash and a silent case as a hang, keeps that case (`remake` rebuilds its
/// input) under `directory/findings`, and goes on after it.
func fuzzFormat(_ name: String, perFormat: Int, seed: UInt64, chunk: Int, caseTimeout: Double, kiln: String, directory: String,
                remake: (Int) throws -> FuzzCorpus.Case?) throws -> FuzzRow {
    var row = FuzzRow()
    let start = Date()
    var next = 0
    while next < perFormat {
        let count = Swift.min(chunk, perFormat - next)
        let words = ["fuzz", "--worker", name, "--seed", String(seed), "--from", String(next), "--count", String(count),
                     "--dir", directory + "/work-\(name)"]
        let outcome = runWorker(kiln: kiln, words: words, caseTimeout: caseTimeout) { index, kind, peak, size in
            row.cases += 1
            switch kind {
            case "clean": row.clean += 1
            case "accepted": row.accepted += 1
            default: row.unclean += 1
            }
            row.maxPeak = Swift.max(row.maxPeak, peak)
            row.maxRatio = Swift.max(row.maxRatio, Double(peak) / Double(size + FuzzFormat.fixedBytes))
            if peak > FuzzFormat.allowance(size: size) {
                row.blowUps += 1
                printError("fuzz \(name) case \(index): peak heap \(peak) B for a \(size) B input")
            }
        }
        switch outcome {
        case .finished(let last):
            next = last + 1
        case .died(let failed, let hang, let status) where !hang && status.hasPrefix("exit"):
            // A worker that exits with an error (it could not make its inputs) is not a crash of a case.
            throw KilnError.argument("fuzz: the \(name) worker stopped (\(status)) after case \(failed - 1); see its message above")
        case .died(let failed, let hang, let status):
            // The case after the last one reported crashed or hung: count it, keep it, go on after it.
            row.cases += 1
            if hang { row.hangs += 1 } else { row.crashes += 1 }
            let base = directory + "/findings/\(name)-\(failed)"
            var note = "\(hang ? "hang" : "crash") (\(status)): kiln fuzz --worker \(name) --seed \(seed) --from \(failed) --count 1\n"
            if let c = try remake(failed) {
                try Data(c.bytes).write(to: URL(fileURLWithPath: base + ".bin"))
                if !c.words.isEmpty { note += "kiln " + c.words.map { excerpt($0, limit: 200) }.joined(separator: " ") + "\n" }
            }
            try note.write(toFile: base + ".txt", atomically: true, encoding: .utf8)
            printError("fuzz \(name) case \(failed): \(hang ? "hang" : "crash") (\(status)); kept under \(base).*")
            next = failed + 1
        }
    }
    row.seconds = Date().timeIntervalSince(start)
    return row
}

enum WorkerOutcome {
    /// Every case reported; the last index.
    case finished(Int)
    /// The worker died (or hung) on case `failed`.
    case died(failed: Int, hang: Bool, status: String)
}

/// Runs a worker, handing each reported case to `report`; detects a death or a silent case.
func runWorker(kiln: String, words: [String], caseTimeout: Double,
                       report: (Int, Substring, Int, Int) -> Void) -> WorkerOutcome {
    let from = Int(words[words.firstIndex(of: "--from")! + 1])!
    let count = Int(words[words.firstIndex(of: "--count")! + 1])!
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return .died(failed: from, hang: false, status: "pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    defer { posix_spawn_file_actions_destroy(&actions) }
    var cArgs = ([kiln] + words).map { strdup($0) }
    cArgs.append(nil)
    defer { for p in cArgs { free(p) } }
    var environment = ProcessInfo.processInfo.environment
    environment["KILN_THREADS"] = nil
    var cEnv = environment.map { strdup("\($0.key)=\($0.value)") }
    cEnv.append(nil)
    defer { for p in cEnv { free(p) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, kiln, &actions, nil, cArgs, cEnv)
    close(fds[1])
    guard spawned == 0 else { close(fds[0]); return .died(failed: from, hang: false, status: "spawn failed") }
    defer { close(fds[0]) }
    var last = from - 1
    var pending: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    var hang = false
    // A case hangs when the worker spends more than `caseTimeout` seconds of CPU time on it, or
    // sits 30 times that (at least 10 minutes) without an answer: on a busy machine a niced worker
    // can wait many seconds for a core, so wall time alone would call a slow start a hang. Until the
    // worker says "ready" it is making its inputs (it trains a model): 5 minutes of CPU at most.
    var cpuLimit = 300.0
    var cpuAtLast = cpuSeconds(pid)
    var lastAnswer = Date()
    let wallLimit = Swift.max(600, 30 * caseTimeout)
    reading: while true {
        var poller = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
        let ready = poll(&poller, 1, 500)
        if ready == 0 {
            if cpuSeconds(pid) - cpuAtLast > cpuLimit || Date().timeIntervalSince(lastAnswer) > wallLimit {
                hang = true; kill(pid, SIGKILL); break reading
            }
            continue
        }
        if ready < 0 { if errno == EINTR { continue }; break }
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n <= 0 { break }
        pending += buffer[0..<n]
        while let newline = pending.firstIndex(of: 0x0A) {
            let line = String(decoding: pending[..<newline], as: UTF8.self)
            pending.removeSubrange(...newline)
            if line == "ready" { cpuLimit = caseTimeout; cpuAtLast = cpuSeconds(pid); lastAnswer = Date(); continue }
            let fields = line.split(separator: " ")
            guard fields.count == 4, let index = Int(fields[0]), let peak = Int(fields[2]), let size = Int(fields[3]) else { continue }
            report(index, fields[1], peak, size)
            last = index
            cpuAtLast = cpuSeconds(pid)
            lastAnswer = Date()
        }
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exited = status & 0x7F == 0
    let code = (status >> 8) & 0xFF
    if !hang && exited && code == 0 && last == from + count - 1 { return .finished(last) }
    let text = hang ? "no answer within \(caseTimeout) s of CPU time" : exited ? "exit \(code)" : "signal \(status & 0x7F)"
    return .died(failed: last + 1, hang: hang, status: text)
}

/// CPU seconds (user + system) process `pid` has used, from /proc (0 where there is none).
func cpuSeconds(_ pid: pid_t) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = text.lastIndex(of: ")") else { return 0 }
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
