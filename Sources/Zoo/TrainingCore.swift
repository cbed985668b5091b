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
    public let threads: Int
    public let seed: UInt64
    /// Compiler passes to skip (e.g. `fuse`, `plan-memory`), set before the first step.
    public var disabledPasses: Set<String> = []
    /// Compile without fusion and memory planning and check every node for NaN and ±Inf (see
    /// `ClassifierTrainer.checkNumerics`). Set before the first step.
    public var checkNumerics = false
    /// Seconds spent compiling programs so far.
    public private(set) var compileSeconds = 0.0
    private var programs: [String: Executable] = [:]
    /// Step counters for programs not compiled yet (restored from a checkpoint): a program's
    /// random draws are keyed by its step, so a resumed run draws what the uninterrupted one would.
    private var pendingSteps: [String: UInt64] = [:]

    public init(store: ParameterStore, threads: Int, seed: UInt64) {
        self.store = store
        self.threads = threads
        self.seed = seed
    }

    /// The pipeline programs compile with.
    public func pipeline() -> PassManager { trainingPipeline(disabled: disabledPasses, checkNumerics: checkNumerics) }

    /// The program cached under `key`, compiled from `make()` with seed `seed &+ seedOffset` on first use.
    public func program(_ key: String, seedOffset: UInt64, _ make: () throws -> Graph) throws -> Executable {
        if let program = programs[key] { return program }
        let start = Date()
        let program = try Executable(graph: make(), store: store, threads: threads, seed: seed &+ seedOffset, pipeline: pipeline())
        program.checkNumerics = checkNumerics
        compileSeconds += Date().timeIntervalSince(start)
        if let step = pendingSteps.removeValue(forKey: key) { program.step = step }
        programs[key] = program
        return program
    }

    /// Every program's step counter by key (those restored but not compiled yet included).
    public var programSteps: [String: UInt64] {
        var steps = pendingSteps
        for (key, program) in programs { steps[key] = program.step }
        return steps
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

/// The pipeline trainers compile with: the standard one less `disabled`; with `checkNumerics`,
/// also without fusion and memory planning, so every node's result is stored and checked.
func trainingPipeline(disabled: Set<String>, checkNumerics: Bool) -> PassManager {
    var manager = standardPipeline()
    manager.disabled = disabled
    if checkNumerics { manager.disabled.formUnion(["fuse", "plan-memory"]) }
    return manager
}

/// Throws when a training loss is NaN or infinite. The step's updates have already run, so the
/// parameters are no longer usable: training stops, and callers write no model file.
func checkFiniteLoss(_ loss: Float, model: String, step: UInt64, what: String = "loss") throws {
    guard !loss.isFinite else { return }
    throw KilnError.feed("\(model): the training \(what) became \(loss.isNaN ? "NaN" : "\(loss)") in step \(step); training stopped and nothing was saved. "
                         + "Try a lower learning rate, or run with --check-numerics (ClassifierTrainer.checkNumerics) to name the first node that produced NaN or Inf")
}
