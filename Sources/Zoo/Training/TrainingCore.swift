import Foundation
import KilnGraph
import KilnPasses
import KilnRuntime

/// What every trainer shares, classifier or generative: one `ParameterStore`, compiled programs
/// cached by key (compiled on first use with the trainer's passes and numerics checks, the time
/// spent counted in `compileSeconds`), the batches of an epoch, and the epoch loop that calls a
/// checkpoint hook. `ClassifierTrainer` and `GenerativeTrainer` each hold one and add their graphs.
public final class TrainingCore {
    public let store: ParameterStore
    /// How programs compile: threads, seed (each program adds its own offset), passes to skip,
    /// numerics checks. Set before the first step.
    public var options: CompileOptions
    /// What programs do when they run (profiling); applies to programs compiled afterwards.
    public var runOptions = RunOptions()
    public var threads: Int { options.threads }
    public var seed: UInt64 { options.seed }
    /// Compiler passes to skip (e.g. `fuse`, `plan-memory`), set before the first step.
    public var disabledPasses: Set<String> {
        get { options.disabledPasses }
        set { options.disabledPasses = newValue }
    }
    /// Compile without fusion and memory planning and check every node for NaN and ±Inf (see
    /// `ClassifierTrainer.checkNumerics`). Set before the first step.
    public var checkNumerics: Bool {
        get { options.checkNumerics }
        set { options.checkNumerics = newValue }
    }
    /// Seconds spent compiling programs so far.
    public private(set) var compileSeconds = 0.0
    private var programs: [String: Executable] = [:]
    /// Step counters for programs not compiled yet (restored from a checkpoint): a program's
    /// random draws are keyed by its step, so a resumed run draws what the uninterrupted one would.
    private var pendingSteps: [String: UInt64] = [:]

    public init(store: ParameterStore, threads: Int, seed: UInt64) {
        self.store = store
        options = CompileOptions(threads: threads, seed: seed)
    }

    /// The program cached under `key`, compiled from `make()` with seed `seed &+ seedOffset` on first use.
    public func program(_ key: String, seedOffset: UInt64, _ make: () throws -> Graph) throws -> Executable {
        if let program = programs[key] { return program }
        let start = Date()
        var programOptions = options
        programOptions.seed = options.seed &+ seedOffset
        let program = try Executable(graph: make(), store: store, options: programOptions)
        program.runOptions.profile = runOptions.profile
        compileSeconds += Date().timeIntervalSince(start)
        if let step = pendingSteps.removeValue(forKey: key) { program.step = step }
        programs[key] = program
        return program
    }

    /// Every program's step counter by key (those restored but not compiled yet included), but
    /// for programs that never ran (0, the counter a program starts with).
    public var programSteps: [String: UInt64] {
        var steps = pendingSteps
        for (key, program) in programs { steps[key] = program.step }
        return steps.filter { $0.value != 0 }
    }

    /// Sets the step counters of programs (compiled now or later) to `steps`.
    public func restoreProgramSteps(_ steps: [String: UInt64]) {
        for (key, step) in steps {
            if let program = programs[key] { program.step = step } else { pendingSteps[key] = step }
        }
    }

    /// The batches of one epoch over `count` examples: consecutive ranges of `batchSize`, the last
    /// one partial. With `foldSingleton`, a final batch of one joins the previous batch (batch
    /// statistics need two values per channel).
    public static func batches(count: Int, batchSize: Int, foldSingleton: Bool = false) -> [Range<Int>] {
        precondition(batchSize >= 1, "batch size is at least 1")
        var ranges: [Range<Int>] = []
        var start = 0
        while start < count {
            var end = Swift.min(count, start + batchSize)
            if foldSingleton && count - end == 1 { end = count }
            ranges.append(start..<end)
            start = end
        }
        return ranges
    }

    /// The epoch loop: runs `epoch(e)` for e in `first ..< first + count` (0-based) until it
    /// returns true (stop), and calls `checkpoint(e + 1)` after each epoch that `saveEvery` says
    /// to save (`shouldSave(epochsDone, secondsPerEpoch)`), not after the last one (the caller
    /// writes its final file itself). Returns the number of epochs run.
    @discardableResult
    public static func runEpochs(first: Int, count: Int, saveEvery: SaveSchedule = .never,
                                 checkpoint: ((_ epochsDone: Int) throws -> Void)? = nil,
                                 epoch: (_ epoch: Int) throws -> Bool) throws -> Int {
        let start = Date()
        var run = 0
        for e in first ..< first + count {
            let stop = try epoch(e)
            run += 1
            let last = stop || e + 1 == first + count
            if !last, let checkpoint,
               saveEvery.shouldSave(epochsRun: run, epochsDone: e + 1, totalEpochs: count,
                                    secondsPerEpoch: Date().timeIntervalSince(start) / Double(run)) {
                try checkpoint(e + 1)
            }
            if stop { break }
        }
        return run
    }
}

/// When a training run writes its checkpoint between epochs.
public enum SaveSchedule: Sendable, Equatable {
    /// Only at the end.
    case never
    /// After every `n` epochs (counted from epoch 0, so resumed runs keep the same epochs).
    case every(Int)
    /// After every epoch once the run is expected to last longer than `seconds` (its mean epoch
    /// time so far × the epochs this run trains), else only at the end: a short run loses little when killed,
    /// a long one at most one epoch.
    case whenLongerThan(seconds: Double)

    /// The default: every epoch for runs expected to last over a minute.
    public static let automatic = SaveSchedule.whenLongerThan(seconds: 60)

    func shouldSave(epochsRun: Int, epochsDone: Int, totalEpochs: Int, secondsPerEpoch: Double) -> Bool {
        switch self {
        case .never: return false
        case let .every(n): return n > 0 && epochsDone % n == 0
        case let .whenLongerThan(seconds): return secondsPerEpoch * Double(totalEpochs) > seconds
        }
    }
}

/// Throws when a training loss is NaN or infinite. The step's updates have already run, so the
/// parameters are no longer usable: training stops, and callers write no model file.
func checkFiniteLoss(_ loss: Float, model: String, step: UInt64, what: String = "loss") throws {
    guard !loss.isFinite else { return }
    throw KilnError.feed("\(model): the training \(what) became \(loss.isNaN ? "NaN" : "\(loss)") in step \(step); training stopped and nothing was saved. "
                         + "Try a lower learning rate, or run with --check-numerics (ClassifierTrainer.checkNumerics) to name the first node that produced NaN or Inf")
}

/// What a checkpoint holds beyond parameters and optimizer state (which are store tensors), so
/// that a resumed run continues exactly as the uninterrupted one would: epochs done, the seed of
/// the epoch orders, augmentation and random ops, every program's step counter (random draws are
/// keyed by it), the optimizer steps taken (a generative run's schedule counts them), and early
/// stopping's best-so-far with the best epoch's values. Stored as `kiln.resume` (JSON) in the
/// model file's metadata, the best epoch's values as tensors `kiln.best/NAME`.
public struct ResumeState: Sendable, Equatable {
    public var epochs: Int
    public var seed: UInt64
    public var stepsTaken: Int = 0
    public var programSteps: [String: UInt64] = [:]
    public var bestEpoch: Int?
    public var bestLoss: Double?
    public var epochsWithoutImprovement = 0
    /// The store's values at the best epoch, when it is not the last one.
    public var bestValues: [String: [Float]]?

    public init(epochs: Int, seed: UInt64) { self.epochs = epochs; self.seed = seed }

    static let metadataKey = "kiln.resume"
    static let bestPrefix = "kiln.best/"

    /// The metadata text (sorted keys: deterministic bytes). Seeds and step counters are strings:
    /// JSON numbers do not hold every UInt64.
    func metadata() throws -> String {
        var object: [String: Any] = ["epochs": epochs, "seed": String(seed), "steps_taken": stepsTaken,
                                     "program_steps": programSteps.mapValues { String($0) },
                                     "epochs_without_improvement": epochsWithoutImprovement]
        if let bestEpoch, let bestLoss { object["best_epoch"] = bestEpoch; object["best_loss"] = bestLoss.bitPattern.description }
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    /// The best epoch's values as extra tensors (shapes from `store`).
    func bestEntries(store: ParameterStore) -> [Safetensors.Entry] {
        guard let bestValues else { return [] }
        return bestValues.keys.sorted().map {
            Safetensors.Entry(name: Self.bestPrefix + $0, shape: store[$0]!.type.shape.dims, floats: bestValues[$0]!)
        }
    }

    /// Reads the state of a model file, or nil when it has none (files written before checkpoints did).
    static func read(metadata: [String: String], tensors: [String: Safetensors.Entry], path: String) throws -> ResumeState? {
        guard let text = metadata[metadataKey] else { return nil }
        func fail(_ message: String) -> KilnError { KilnError.file(path: path, message: "model metadata \"\(metadataKey)\": \(message)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else { throw fail("not a JSON object") }
        guard let epochs = object["epochs"] as? Int, (0...Checkpoint.maximumEpochs).contains(epochs),
              let seed = (object["seed"] as? String).flatMap(UInt64.init),
              let steps = object["steps_taken"] as? Int, steps >= 0,
              let programs = object["program_steps"] as? [String: String],
              let without = object["epochs_without_improvement"] as? Int, without >= 0 else {
            throw fail("needs epochs (0 to \(Checkpoint.maximumEpochs)), seed, steps_taken, program_steps and epochs_without_improvement")
        }
        var state = ResumeState(epochs: epochs, seed: seed)
        state.stepsTaken = steps
        state.epochsWithoutImprovement = without
        for (key, value) in programs {
            guard let step = UInt64(value) else { throw fail("program step \"\(excerpt(value))\" is not a counter") }
            state.programSteps[key] = step
        }
        if let best = object["best_epoch"] as? Int {
            guard let bits = (object["best_loss"] as? String).flatMap(UInt64.init) else { throw fail("best_epoch needs best_loss") }
            state.bestEpoch = best
            state.bestLoss = Double(bitPattern: bits)
        }
        let best = tensors.filter { $0.key.hasPrefix(bestPrefix) }
        if !best.isEmpty {
            var values: [String: [Float]] = [:]
            for (name, entry) in best {
                guard entry.rawDType == "F32" else { throw KilnError.file(path: path, message: "tensor \"\(excerpt(name))\" is \(entry.rawDType), Kiln models hold F32") }
                values[String(name.dropFirst(bestPrefix.count))] = entry.floats()
            }
            state.bestValues = values
        }
        return state
    }
}
