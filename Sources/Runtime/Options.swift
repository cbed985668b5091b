#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph
import KilnPasses

/// Every processor this process may use (its affinity mask, within a cgroup CPU quota:
/// `Platform.activeProcessorCount`): the thread count programs use unless told otherwise. The library
/// reads no environment variables; the command-line tool maps `KILN_THREADS` and `--threads`
/// onto `CompileOptions.threads`.
public func defaultThreadCount() -> Int {
    Swift.min(Platform.activeProcessorCount, Parallel.maximumThreads)
}

/// How a graph is compiled, set once where the program is made (the command-line tool, a
/// trainer, user code) and passed down; nothing below reads a global or the environment.
public struct CompileOptions: Sendable, Hashable {
    /// Threads the kernels use, fixed at compile time (1...`Parallel.maximumThreads`).
    public var threads: Int
    /// Seed of the random ops; draws are keyed by (seed, op stream, step).
    public var seed: UInt64
    /// Passes of the standard pipeline to skip, by name (`PassRegistry.standardNames`).
    public var disabledPasses: Set<String>
    /// Compile for `RunOptions.checkNumerics`: without `fuse` and `plan-memory`, so every node's
    /// result is stored and every input stays intact for the report.
    public var checkNumerics: Bool

    public init(threads: Int = defaultThreadCount(), seed: UInt64 = 0, disabledPasses: Set<String> = [],
                checkNumerics: Bool = false) {
        self.threads = threads
        self.seed = seed
        self.disabledPasses = disabledPasses
        self.checkNumerics = checkNumerics
    }

    /// The standard pipeline less `disabledPasses` (and less fusion and memory planning when
    /// checking numerics). Throws for a name that is no pass.
    public func pipeline() throws -> PassManager {
        let unknown = disabledPasses.subtracting(PassRegistry.standardNames)
        guard unknown.isEmpty else {
            throw KilnError.argument("no pass is called \(unknown.sorted().joined(separator: ", ")); passes: "
                                            + PassRegistry.standardNames.joined(separator: ", "))
        }
        var manager = standardPipeline()
        manager.disabled = disabledPasses
        if checkNumerics { manager.disabled.formUnion(["fuse", "plan-memory"]) }
        return manager
    }

    /// The options a run uses alongside these.
    public var runOptions: RunOptions { RunOptions(checkNumerics: checkNumerics) }
}

/// What a compiled program does around its kernels when it runs; may change between runs.
public struct RunOptions: Sendable, Hashable {
    /// Time every kernel group (two clock reads per kernel): `Executable.profileReport`, and
    /// written to standard error when the executable is released after running.
    public var profile: Bool
    /// Check every float result a kernel stores for NaN and ±Inf and throw naming the first node
    /// that holds one (op, node, shape, graph line, step, input ranges). Compile with
    /// `CompileOptions.checkNumerics` to have every node stored.
    public var checkNumerics: Bool

    /// Kernel groups the profile report lists (the costliest first), for every executable in
    /// the process: 12 unless set (`KILN_PROFILE=N` sets it for the command-line tool).
    nonisolated(unsafe) public static var profileLines = 12

    public init(profile: Bool = false, checkNumerics: Bool = false) {
        self.profile = profile
        self.checkNumerics = checkNumerics
    }
}
