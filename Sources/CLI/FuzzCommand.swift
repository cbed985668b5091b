import Foundation
import Kiln
import KilnCommandLine
import KilnBench
#if canImport(Glibc)
import Glibc
#endif

/// `kiln fuzz`: a seeded mutation fuzzer over every reader and the command line (issue 16).
///
/// - Subprocess mode (default): mutates a course CSV file, safetensors model files (a classifier
///   and a conditional VAE), IDX files (raw and gzip) and flag values, runs `kiln` on each case
///   under an address-space cap (`ulimit -v`, `--memory-mb`, default 4096) and a time cap
///   (`--timeout`, default 20 s), and sorts the outcomes: clean error (exit 1, one line `kiln: …`),
///   accepted (exit 0), unclean error (any other non-zero exit), crash (a signal), hang (time cap),
///   memory blow-up (killed near the cap or a failed allocation).
/// - `--in-process N`: N mutated inputs per reader (safetensors, Kiln model files, IDX raw and
///   gzip, course CSV) parsed in this process: every one must be accepted or rejected with one
///   `KilnError` line naming the file (a crash ends the run; the seed and case are printed first).
///
/// Everything follows from `--seed`, so a finding is reproduced by running the same seed again.
func fuzzCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--cases", "--seed", "--memory-mb", "--timeout", "--in-process", "--kiln", "--formats", "--keep",
                                              "--per-format", "--chunk", "--case-timeout", "--subprocess-flags", "--worker", "--from", "--count", "--dir", "--jobs"],
                             flags: ["--json", "--verbose", "--all"], command: "fuzz")
    guard args.positionals.isEmpty else { throw KilnError.argument("fuzz: takes no positional arguments") }
    let seed = try args.seed()
    if let format = args.options["--worker"] {
        return try fuzzWorker(format: format, seed: seed, from: try args.int("--from", default: 0, in: 0...Int(Int32.max)),
                              count: try args.int("--count", default: 1, in: 1...10_000_000), directory: args.options["--dir"],
                              verbose: args.flags.contains("--verbose"))
    }
    if args.flags.contains("--all") {
        let formats = try (args.options["--formats"].map { $0.split(separator: ",").map(String.init) } ?? FuzzFormat.allCases.map(\.rawValue)).map { name in
            guard let format = FuzzFormat(rawValue: name) else {
                throw KilnError.argument("fuzz: unknown format \"\(excerpt(name))\"; known: \(FuzzFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return format
        }
        return try fuzzAll(perFormat: try args.int("--per-format", default: 100_000, in: 1...100_000_000), seed: seed,
                           chunk: try args.int("--chunk", default: 5000, in: 1...10_000_000),
                           caseTimeout: try args.double("--case-timeout", default: 20, in: .aboveUpTo(0, 3600)), formats: formats,
                           subprocessFlags: try args.int("--subprocess-flags", default: 500, in: 0...10_000_000),
                           keep: args.options["--keep"], json: args.flags.contains("--json"),
                           jobs: try args.int("--jobs", default: 1, in: 1...64))
    }
    if args.options["--in-process"] != nil {
        let count = try args.int("--in-process", default: 1000, in: 1...10_000_000)
        let results = try Fuzzer.inProcess(casesPerFormat: count, seed: seed, verbose: args.flags.contains("--verbose"))
        Fuzzer.printTable(results, title: "in-process, \(count) cases per reader, seed \(seed)", json: args.flags.contains("--json"))
        if results.contains(where: { $0.value.unclean > 0 }) { throw KilnError.argument("fuzz: some rejections were not one KilnError line (see above)") }
        return
    }
    let cases = try args.int("--cases", default: 1000, in: 1...10_000_000)
    let memory = try args.int("--memory-mb", default: 4096, in: 256...1_000_000)
    let timeout = try args.double("--timeout", default: 20, in: .aboveUpTo(0, 3600))
    let kiln = args.options["--kiln"] ?? Fuzzer.ownExecutable()
    let formats = args.options["--formats"].map { $0.split(separator: ",").map(String.init) } ?? Fuzzer.Format.allCases.map(\.rawValue)
    let selected = try formats.map { name in
        guard let format = Fuzzer.Format(rawValue: name) else {
            throw KilnError.argument("fuzz: unknown format \"\(excerpt(name))\"; known: \(Fuzzer.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return format
    }
    var fuzzer = try Fuzzer(kiln: kiln, seed: seed, memoryMB: memory, timeout: timeout, keep: args.options["--keep"])
    let results = try fuzzer.run(cases: cases, formats: selected, verbose: args.flags.contains("--verbose"))
    Fuzzer.printTable(results, title: "\(cases) cases, seed \(seed), caps \(memory) MB and \(timeout) s", json: args.flags.contains("--json"))
    let bad = results.values.reduce(0) { $0 + $1.crashes + $1.hangs + $1.blowUps }
    if bad > 0 { throw KilnError.argument("fuzz: \(bad) crashes, hangs or blow-ups (cases kept under \(fuzzer.directory)/findings)") }
}

/// Outcome counts of one input kind.
struct FuzzTally: Sendable {
    var cases = 0, cleanErrors = 0, accepted = 0, unclean = 0, crashes = 0, hangs = 0, blowUps = 0
}

/// SplitMix64: the fuzzer's only source of randomness.
struct FuzzRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
    mutating func pick<T>(_ values: [T]) -> T { values[below(values.count)] }
}

struct Fuzzer {
    enum Format: String, CaseIterable { case csv, safetensors, idx, flags }

    let kiln: String
    let seed: UInt64
    let memoryMB: Int
    let timeout: Double
    let directory: String
    private var random: FuzzRandom
    /// Pristine inputs, written once.
    private var trainCSV: [UInt8] = [], testCSV: [UInt8] = [], classifier: [UInt8] = [], generator: [UInt8] = []
    private var idxFiles: [String: [UInt8]] = [:]

    init(kiln: String, seed: UInt64, memoryMB: Int, timeout: Double, keep: String?) throws {
        guard FileManager.default.isExecutableFile(atPath: kiln) else { throw KilnError.argument("fuzz: \(kiln) is not an executable kiln") }
        self.kiln = kiln
        self.seed = seed
        self.memoryMB = memoryMB
        self.timeout = timeout
        random = FuzzRandom(state: seed)
        directory = keep ?? (NSTemporaryDirectory() as NSString).appendingPathComponent("kiln-fuzz-\(getpid())")
        try FileManager.default.createDirectory(atPath: directory + "/findings", withIntermediateDirectories: true)
        try makeInputs()
    }

    /// This process's executable (`/proc/self/exe`), to run the cases with.
    static func ownExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    /// A small glyph set, a trained logistic regression, an untrained conditional VAE and a
    /// Fashion-MNIST-shaped IDX set: the files every case mutates one of.
    private mutating func makeInputs() throws {
        let glyphs = CourseGlyphs.make(count: 24, seed: seed)
        trainCSV = CSVImages.serialize(glyphs)
        var unlabelled = glyphs.subset(Array(0..<8))
        unlabelled.labels = []
        testCSV = CSVImages.serialize(unlabelled)
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3),
                                        optimizer: .adam(), seed: seed, threads: 1)
        try trainer.fit(glyphs, options: FitOptions(epochs: 1, batchSize: 8, seed: seed))
        try Checkpoint.save(trainer, classNames: glyphs.classNames, epochs: 1, to: path("model.safetensors"))
        classifier = Array(try Data(contentsOf: URL(fileURLWithPath: path("model.safetensors"))))
        let vae = GenerativeTrainer(model: try Zoo.generative("cvae", imageShape: [1, 28, 28], classes: 3), seed: seed, threads: 1)
        try vae.initializeParameters()
        try vae.save(path: path("gen.safetensors"), classNames: glyphs.classNames)
        generator = Array(try Data(contentsOf: URL(fileURLWithPath: path("gen.safetensors"))))
        for (split, count) in [("train", 16), ("t10k", 8)] {
            let images: [UInt8] = [0, 0, 8, 3, 0, 0, 0, UInt8(count), 0, 0, 0, 28, 0, 0, 0, 28]
                + (0..<(count * 784)).map { UInt8(truncatingIfNeeded: $0 &* 131) }
            let labels: [UInt8] = [0, 0, 8, 1, 0, 0, 0, UInt8(count)] + (0..<count).map { UInt8($0 % 10) }
            idxFiles["\(split)-images-idx3-ubyte"] = images
            idxFiles["\(split)-labels-idx1-ubyte"] = labels
        }
    }

    // MARK: Mutations

    static let interestingNumbers = ["0", "-1", "1", "255", "256", "65535", "2147483647", "2147483648", "4294967296",
                                     "9223372036854775807", "9223372036854775808", "-9223372036854775808",
                                     "99999999999999999999", "1e308", "-1e308", "1e-320", "nan", "inf", "-0", "0.5", "1.5"]

    /// One to four random edits of `bytes`: bit flips, interesting bytes, inserted, deleted or
    /// duplicated ranges, truncation, and numbers in text replaced by extreme ones.
    static func mutate(_ input: [UInt8], _ random: inout FuzzRandom) -> [UInt8] {
        var bytes = input
        for _ in 0...random.below(4) {
            let n = bytes.count
            switch random.below(10) {
            case 0 where n > 0:
                bytes[random.below(n)] ^= UInt8(1) << UInt8(random.below(8))
            case 1 where n > 0:
                bytes[random.below(n)] = random.pick([0, 0xFF, 0x7F, 0x80, 0x2C, 0x0A, 0x0D, 0x22, 0x2D, 0x7B, 0x5D])
            case 2:
                let at = random.below(n + 1)
                let insert: [UInt8] = random.pick([[0xEF, 0xBB, 0xBF], Array("\r\n".utf8), Array(",".utf8), Array("\"".utf8),
                                                   Array("NA".utf8), Array(String(repeating: "9", count: 1 + random.below(64)).utf8),
                                                   (0..<random.below(32)).map { _ in UInt8(truncatingIfNeeded: random.next()) }])
                bytes.insert(contentsOf: insert, at: at)
            case 3 where n > 0:
                let start = random.below(n)
                bytes.removeSubrange(start..<Swift.min(n, start + 1 + random.below(64)))
            case 4 where n > 0:
                let start = random.below(n)
                let chunk = bytes[start..<Swift.min(n, start + 1 + random.below(256))]
                bytes.insert(contentsOf: chunk, at: random.below(n + 1))
            case 5 where n > 0:
                bytes.removeSubrange(random.below(n)...)
            case 6, 7, 8:
                // A run of ASCII digits (a pixel, a JSON shape or offset, the header length's text) becomes an extreme number.
                let digits = bytes.indices.filter { bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }
                guard let hit = digits.isEmpty ? nil : random.pick(digits) else { fallthrough }
                var start = hit, end = hit + 1
                while start > 0 && bytes[start - 1] >= 0x30 && bytes[start - 1] <= 0x39 { start -= 1 }
                while end < n && bytes[end] >= 0x30 && bytes[end] <= 0x39 { end += 1 }
                bytes.replaceSubrange(start..<end, with: Array(random.pick(interestingNumbers).utf8))
            default:
                // A little-endian or big-endian length field near the start set to an extreme value.
                guard n >= 8 else { continue }
                let at = random.below(Swift.min(n - 4, 24))
                let value: UInt32 = random.pick([0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x0100_0000, 1 << 20])
                for k in 0..<4 { bytes[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(k))) }
            }
        }
        return bytes
    }

    static let hostileValues = ["0", "-1", "1", "2", "3", "64", "1000", "65536", "65537", "100000", "2147483647", "2147483648",
                                "9223372036854775807", "99999999999999999999", "-9223372036854775808", "1e99", "1e-99", "nan",
                                "inf", "-inf", "0.999", "1.5", "0x10", " 5", "5 ", "", "abc", "1,2,3", "\u{FEFF}5", "٣",
                                String(repeating: "9", count: 5000), String(repeating: "x", count: 100_000), "A,B,C", "A,A", "3x3",
                                "100000x100000", "shift,rotate", "nope", "discriminator"]

    /// Command templates for flag cases: the words and the flags that take a value.
    private var flagTemplates: [([String], [String])] {
        [(["train", "logreg", "--train", path("xy.csv"), "--epochs", "1", "--limit", "16", "--threads", "1"],
          ["--epochs", "--batch", "--lr", "--momentum", "--val-split", "--folds", "--patience", "--threads", "--limit", "--seed",
           "--image-size", "--augment", "--optimizer", "--schedule", "--classes"]),
         (["train", "cvae", "--train", path("xy.csv"), "-o", path("out.safetensors"), "--epochs", "1", "--limit", "16", "--threads", "1"],
          ["--epochs", "--batch", "--lr", "--threads", "--limit", "--seed", "--schedule", "--classes"]),
         (["predict", path("model.safetensors"), "--test", path("x.csv"), "-o", path("out.csv")], ["--batch", "--threads"]),
         (["eval", path("model.safetensors"), "--data", path("xy.csv")], ["--batch", "--threads"]),
         (["generate", path("gen.safetensors"), "-o", path("out.csv"), "--per-class", "2"], ["--per-class", "--seed", "--temperature", "--threads"]),
         (["show", path("xy.csv"), "--grid", path("out.png")], ["--per-class", "--scale"]),
         (["dot", "logreg"], ["--batch", "--stage", "--gan-step"]),
         (["plan", "logreg", "--training"], ["--batch", "--disable", "--gan-step"]),
         (["make-glyphs", path("glyphs-out"), "--train", "3", "--test", "3"], ["--train", "--test", "--seed", "--difficulty"])]
    }

    // MARK: Running cases

    mutating func run(cases: Int, formats: [Format], verbose: Bool) throws -> [String: FuzzTally] {
        var results: [String: FuzzTally] = [:]
        for index in 0..<cases {
            let format = formats[index % formats.count]
            let (label, words) = try prepare(format)
            let outcome = execute(words)
            var tally = results[label] ?? FuzzTally()
            tally.cases += 1
            switch outcome.kind {
            case .clean: tally.cleanErrors += 1
            case .accepted: tally.accepted += 1
            case .unclean: tally.unclean += 1
            case .crash: tally.crashes += 1
            case .hang: tally.hangs += 1
            case .blowUp: tally.blowUps += 1
            }
            results[label] = tally
            if outcome.kind != .clean && outcome.kind != .accepted {
                keepFinding(index: index, format: format, words: words, outcome: outcome)
            }
            if verbose { printError("case \(index) \(format.rawValue) \(outcome.kind): \(excerpt(outcome.stderr, limit: 160))") }
        }
        return results
    }

    /// Writes the pristine inputs, mutates the one this case is about, and returns its table
    /// row and the command line.
    private mutating func prepare(_ format: Format) throws -> (String, [String]) {
        func write(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: URL(fileURLWithPath: path(name))) }
        try write("xy.csv", trainCSV)
        try write("x.csv", testCSV)
        try write("model.safetensors", classifier)
        try write("gen.safetensors", generator)
        let idxDirectory = path("idx")
        try? FileManager.default.removeItem(atPath: idxDirectory)
        try FileManager.default.createDirectory(atPath: idxDirectory, withIntermediateDirectories: true)
        switch format {
        case .csv:
            let (name, command): (String, [String]) = random.pick([
                ("xy.csv", ["train", "logreg", "--train", path("xy.csv"), "--epochs", "1", "--threads", "1"]),
                ("xy.csv", ["eval", path("model.safetensors"), "--data", path("xy.csv")]),
                ("xy.csv", ["show", path("xy.csv"), "--grid", path("out.png")]),
                ("x.csv", ["predict", path("model.safetensors"), "--test", path("x.csv"), "-o", path("out.csv")])])
            try write(name, Self.mutate(name == "x.csv" ? testCSV : trainCSV, &random))
            return ("course CSV (predict, eval, train, show)", command)
        case .safetensors:
            if random.below(4) == 0 {
                try write("gen.safetensors", Self.mutate(generator, &random))
                return ("safetensors model files", ["generate", path("gen.safetensors"), "--per-class", "2", "-o", path("out.csv")])
            }
            try write("model.safetensors", Self.mutate(classifier, &random))
            return ("safetensors model files", random.pick([
                ["predict", path("model.safetensors"), "--test", path("x.csv"), "-o", path("out.csv")],
                ["eval", path("model.safetensors"), "--data", path("xy.csv")],
                ["train", "logreg", "--train", path("xy.csv"), "--resume", path("model.safetensors"), "--optimizer", "adam",
                 "--epochs", "1", "--threads", "1"]]))
        case .idx:
            let gzip = random.below(2) == 0
            let target = random.pick(idxFiles.keys.sorted())
            for (name, bytes) in idxFiles {
                var content = bytes
                if name == target {
                    // gzip: mutate the raw bytes then compress, or mutate the compressed stream.
                    content = gzip && random.below(2) == 0 ? Self.mutate(Gzip.compress(content), &random) : Self.mutate(content, &random)
                    if gzip && !Gzip.isGzip(content) && content.count > 0 && random.below(2) == 0 { content = Gzip.compress(content) }
                } else if gzip {
                    content = Gzip.compress(content)
                }
                try write("idx/" + name + (gzip ? ".gz" : ""), content)
            }
            return ("IDX, raw and gzip", ["train", "logreg", "--dataset", "fashion-mnist", "--data-dir", idxDirectory,
                                          "--epochs", "1", "--threads", "1"])
        case .flags:
            let (words, flags) = random.pick(flagTemplates)
            var command = words
            for _ in 0...random.below(2) {
                let flag = random.pick(flags)
                let value = random.pick(Self.hostileValues)
                if let at = command.firstIndex(of: flag), at + 1 < command.count { command[at + 1] = value } else { command += [flag, value] }
            }
            return ("command-line flag values", command)
        }
    }

    enum Kind: String { case clean, accepted, unclean, crash, hang, blowUp = "blow-up" }

    struct Outcome {
        var kind: Kind
        var stderr: String
        var status: String
        var maxRSSKB: Int
    }

    /// Runs `kiln words…` under the caps and classifies how it ended.
    private func execute(_ words: [String]) -> Outcome {
        let errorPath = path("stderr.txt")
        let script = "ulimit -v \(memoryMB * 1024); ulimit -c 0; exec \"$0\" \"$@\" > /dev/null 2> \"\(errorPath)\""
        let argv = ["/bin/sh", "-c", script, kiln] + words
        var pid: pid_t = 0
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { for pointer in cArgs { free(pointer) } }
        var environment = ProcessInfo.processInfo.environment
        environment["KILN_THREADS"] = nil
        var cEnv = environment.map { strdup("\($0.key)=\($0.value)") }
        cEnv.append(nil)
        defer { for pointer in cEnv { free(pointer) } }
        guard posix_spawn(&pid, "/bin/sh", nil, nil, cArgs, cEnv) == 0 else {
            return Outcome(kind: .unclean, stderr: "posix_spawn failed", status: "spawn", maxRSSKB: 0)
        }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        var usage = rusage()
        var timedOut = false
        while true {
            let done = wait4(pid, &status, WNOHANG, &usage)
            if done == pid { break }
            if Date() > deadline && !timedOut {
                timedOut = true
                kill(pid, SIGKILL)
            }
            usleep(timedOut ? 1000 : 2000)
        }
        let stderr = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
        let rss = Int(usage.ru_maxrss)
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        let signal = status & 0x7F
        let nearCap = rss > memoryMB * 1024 * 9 / 10
        let allocationFailure = ["alloc", "out of memory", "Cannot allocate", "ENOMEM"].contains { stderr.contains($0) }
        let kind: Kind
        if timedOut {
            kind = .hang
        } else if exited && code == 0 {
            kind = .accepted
        } else if exited && code == 1 && stderr.hasPrefix("kiln: ") && !stderr.dropLast().contains("\n") && stderr.utf8.count < 2000 {
            kind = .clean
        } else if nearCap || allocationFailure {
            kind = .blowUp
        } else if !exited {
            kind = .crash
        } else {
            kind = .unclean
        }
        return Outcome(kind: kind, stderr: stderr, status: exited ? "exit \(code)" : "signal \(signal)", maxRSSKB: rss)
    }

    /// Keeps a finding's files and command line under `findings/N-format/` for a regression test.
    private func keepFinding(index: Int, format: Format, words: [String], outcome: Outcome) {
        let target = path("findings/\(index)-\(format.rawValue)")
        try? FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for name in ["xy.csv", "x.csv", "model.safetensors", "gen.safetensors", "idx"] {
            try? FileManager.default.copyItem(atPath: path(name), toPath: target + "/" + name)
        }
        let note = "\(outcome.kind.rawValue) (\(outcome.status), max RSS \(outcome.maxRSSKB) KiB)\nkiln " + words.map { excerpt($0, limit: 200) }.joined(separator: " ")
            + "\n" + excerpt(outcome.stderr, limit: 4000) + "\n"
        try? note.write(toFile: target + "/README", atomically: true, encoding: .utf8)
        printError("finding \(index) \(format.rawValue): \(outcome.kind.rawValue) (\(outcome.status)): kiln \(excerpt(words.joined(separator: " "), limit: 200))")
    }

    // MARK: In process

    /// `casesPerFormat` mutated inputs for each reader, parsed in this process.
    static func inProcess(casesPerFormat: Int, seed: UInt64, verbose: Bool) throws -> [String: FuzzTally] {
        var random = FuzzRandom(state: seed)
        let directory = (NSTemporaryDirectory() as NSString).appendingPathComponent("kiln-fuzz-inprocess-\(getpid())")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let glyphs = CourseGlyphs.make(count: 6, seed: seed)
        let csv = CSVImages.serialize(glyphs)
        let trainer = ClassifierTrainer(model: try Zoo.classifier("logreg", inputShape: [1, 28, 28], classes: 3),
                                        optimizer: .sgd(momentum: 0.9), seed: seed, threads: 1)
        try trainer.initializeParameters()
        let modelPath = directory + "/model.safetensors"
        try Checkpoint.save(trainer, classNames: glyphs.classNames, epochs: 1, to: modelPath)
        let model = Array(try Data(contentsOf: URL(fileURLWithPath: modelPath)))
        let idx: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4] + (0..<32).map { UInt8($0) }
        let onnx = try smallONNXModel(seed: seed)
        let readers: [(String, [UInt8], (String) throws -> Void)] = [
            ("safetensors (Safetensors.read)", model, { _ = try Safetensors.read(path: $0) }),
            ("Kiln model files (Checkpoint.read + makeTrainer)", model, { _ = try Checkpoint.read(path: $0).makeTrainer(threads: 1) }),
            ("IDX raw (IDX.read)", idx, { _ = try IDX.read(path: $0) }),
            ("IDX gzip (IDX.read)", Gzip.compress(idx), { _ = try IDX.read(path: $0) }),
            ("course CSV (CSVImages.read)", csv, { _ = try CSVImages.read(path: $0) }),
            ("ONNX (ONNXModel.load)", onnx, { _ = try ONNXModel.load(path: $0) }),
        ]
        var results: [String: FuzzTally] = [:]
        for (name, pristine, read) in readers {
            var tally = FuzzTally()
            let path = directory + "/case"
            for index in 0..<casesPerFormat {
                var bytes = mutate(pristine, &random)
                // Now and then a mutated raw IDX file is compressed, so the gzip reader's output is hostile too.
                if name.hasPrefix("IDX gzip") && random.below(2) == 0 { bytes = Gzip.compress(mutate(idx, &random)) }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                tally.cases += 1
                do {
                    try read(path)
                    tally.accepted += 1
                } catch let error as KilnError {
                    let message = "\(error)"
                    if message.hasPrefix(path) && !message.contains("\n") && message.utf8.count < 2000 { tally.cleanErrors += 1 } else {
                        tally.unclean += 1
                        printError("\(name) case \(index): not one short line naming the file: \(excerpt(message, limit: 300))")
                    }
                } catch {
                    tally.unclean += 1
                    printError("\(name) case \(index): not a KilnError: \(excerpt("\(error)", limit: 300))")
                }
                if verbose && index % 10_000 == 0 { printError("\(name): \(index) cases") }
            }
            results[name] = tally
        }
        return results
    }

    /// A small ONNX file written by Kiln's exporter: conv 2@3×3, ReLU, max pool, dense 3, softmax on
    /// 1×4×4 images (few weights, so that mutations mostly hit the graph's structure).
    static func smallONNXModel(seed: UInt64) throws -> [UInt8] {
        let g = GraphBuilder()
        let x = g.input("x", [1, 1, 4, 4])
        let h = maxPool(relu(g.conv2d(x, outChannels: 2, kernel: 3, padding: 1, name: "conv")), 2)
        g.output("y", softmax(g.dense(h.flatten(), 3, name: "fc")))
        let graph = try g.build()
        let store = ParameterStore(seed: seed)
        try store.register(graph)
        return try ONNXExport.model(graph: graph, weights: { store[$0]?.values }, graphName: "fuzz").serialized()
    }

    static func printTable(_ results: [String: FuzzTally], title: String, json: Bool) {
        if json {
            print("[" + results.keys.sorted().map { key in
                let t = results[key]!
                return jsonObject([("input", key), ("cases", t.cases), ("clean_errors", t.cleanErrors), ("accepted", t.accepted),
                                   ("unclean_errors", t.unclean), ("crashes", t.crashes), ("hangs", t.hangs), ("memory_blow_ups", t.blowUps)])
            }.joined(separator: ", ") + "]")
            return
        }
        print("kiln fuzz: \(title)")
        print("| input | cases | clean errors | accepted | unclean errors | crashes | hangs | memory blow-ups |")
        print("|---|---|---|---|---|---|---|---|")
        for key in results.keys.sorted() {
            let t = results[key]!
            print("| \(key) | \(t.cases) | \(t.cleanErrors) | \(t.accepted) | \(t.unclean) | \(t.crashes) | \(t.hangs) | \(t.blowUps) |")
        }
    }
}
