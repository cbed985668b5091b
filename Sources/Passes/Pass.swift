import KilnGraph

/// A compiler pass: rewrites a program (its graph, kernels or memory plan) and reports whether
/// it changed anything. A pass that reports no change must leave the program equal to what it
/// was; the pass manager checks that in debug builds (as XLA's `HloPassPipeline` does).
public protocol Pass {
    /// The registry name, used to disable the pass or print after it (`cse`, `fuse`, …).
    var name: String { get }
    /// Rewrites `program` in place; returns whether it changed.
    func run(_ program: inout Program) throws -> Bool
}

/// Hooks around every pass (TVM's `PassInstrument`): timing, printing and DOT dumps are
/// instruments, not code inside passes.
public protocol PassInstrument: AnyObject {
    func beforePass(_ pass: Pass, program: Program)
    func afterPass(_ pass: Pass, program: Program, changed: Bool)
}

/// One row of the pipeline report.
public struct PassRecord: Hashable, Sendable {
    public var name: String
    public var seconds: Double
    public var nodesBefore: Int, nodesAfter: Int
    public var kernelsBefore: Int, kernelsAfter: Int
    public var changed: Bool
}

/// Records wall time, node counts and kernel counts around each pass.
public final class PassTimer: PassInstrument {
    public private(set) var records: [PassRecord] = []
    private var start: UInt64 = 0
    private var nodesBefore = 0, kernelsBefore = 0

    public init() {}

    public func beforePass(_ pass: Pass, program: Program) {
        nodesBefore = program.graph.nodes.count
        kernelsBefore = program.kernelCount
        start = monotonicNanoseconds()
    }

    public func afterPass(_ pass: Pass, program: Program, changed: Bool) {
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        records.append(PassRecord(name: pass.name, seconds: seconds, nodesBefore: nodesBefore, nodesAfter: program.graph.nodes.count,
                                  kernelsBefore: kernelsBefore, kernelsAfter: program.kernelCount, changed: changed))
    }

    /// Total seconds over all passes.
    public var totalSeconds: Double { records.reduce(0) { $0 + $1.seconds } }
}

/// Keeps a copy of the program after each pass, by pass name (for `kiln dot --stage`).
public final class StageRecorder: PassInstrument {
    public private(set) var programs: [(name: String, program: Program)] = []
    public init() {}
    public func beforePass(_ pass: Pass, program: Program) {
        if programs.isEmpty { programs.append(("input", program)) }
    }
    public func afterPass(_ pass: Pass, program: Program, changed: Bool) { programs.append((pass.name, program)) }
    /// The program after the last run of the pass called `name`.
    public func program(after name: String) -> Program? { programs.last { $0.name == name }?.program }
}

/// Monotonic clock in nanoseconds (no Foundation in this layer's hot path).
func monotonicNanoseconds() -> UInt64 {
    #if canImport(Darwin)
    return clock_gettime_nsec_np(CLOCK_UPTIME_RAW)
    #else
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    #endif
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
