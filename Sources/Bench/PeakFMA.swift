import Dispatch
import KilnRuntime

/// The machine's FP32 fused multiply-add peak, measured with the vectors of the ISA Kiln was
/// compiled for (`ISA.Vector`): every thread runs 12 independent chains `acc = acc·m + a`
/// (enough to cover an FMA latency of 4 cycles on 2 pipes, and 12 + 2 vectors fit the 16
/// registers of AVX2), and each FMA counts 2 flops per lane. The best of several timed runs on
/// all threads is the figure, so that benchmarks can report achieved GFLOP/s as a fraction of it.
public enum PeakFMA {
    /// One measurement.
    public struct Measurement: Sendable {
        /// Best GFLOP/s over the runs, all threads together.
        public let gflops: Double
        public let threads: Int
        /// Floats per vector (`ISA.lanes`) and the ISA's name.
        public let lanes: Int
        public let isa: String
        /// How it was measured, for records.
        public var description: String {
            "Swift FMA chains (\(PeakFMA.chains) x \(lanes * 32)-bit \(isa) vectors), \(threads) threads, best of \(runs) runs"
        }
        let runs: Int
    }

    /// Independent chains per thread.
    static let chains = 12

    /// Measures the peak on `threads` threads: `runs` runs of about `secondsPerRun` each. Many
    /// short runs rather than a few long ones: on a shared machine the best run is then one that
    /// no other process interrupted, as for the benchmarks' best-of timings (10–20 ms a call).
    public static func measure(threads: Int, secondsPerRun: Double = 0.02, runs: Int = 25) -> Measurement {
        precondition(threads >= 1, "PeakFMA: thread count \(threads) must be at least 1")
        // Calibrate on one thread: iterations for `secondsPerRun`.
        var iterations = 10_000
        while true {
            let start = Platform.monotonicSeconds()
            sink(chainLoop(iterations: iterations))
            let elapsed = Platform.monotonicSeconds() - start
            if elapsed > 0.01 {
                iterations = max(1, Int(Double(iterations) * secondsPerRun / elapsed))
                break
            }
            iterations *= 4
        }
        var best = Double.infinity
        for _ in 0..<runs { best = min(best, timedRun(threads: threads, iterations: iterations)) }
        let flops = Double(threads) * Double(iterations) * Double(chains) * Double(ISA.lanes) * 2
        return Measurement(gflops: flops / best / 1e9, threads: threads, lanes: ISA.lanes, isa: ISA.name, runs: runs)
    }

    /// Seconds for `threads` threads to run `iterations` each, started together.
    static func timedRun(threads: Int, iterations: Int) -> Double {
        timedThreads(threads) { _ in sink(chainLoop(iterations: iterations)) }
    }

    /// Seconds for `threads` threads, started together, to each run `body(thread index)`.
    static func timedThreads(_ threads: Int, _ body: @escaping (Int) -> Void) -> Double {
        let group = DispatchGroup()
        let ready = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0)
        for index in 0..<threads {
            group.enter()
            Platform.startThread(name: "kiln-timed-\(index)", stackSize: 1 << 20) {
                ready.signal()
                go.wait()
                body(index)
                group.leave()
            }
        }
        for _ in 0..<threads { ready.wait() }
        let start = Platform.monotonicSeconds()
        for _ in 0..<threads { go.signal() }
        group.wait()
        return Platform.monotonicSeconds() - start
    }

    /// 12 chains of fused multiply-adds, `iterations` steps each; the sum of their lanes.
    @inline(never)
    static func chainLoop(iterations: Int) -> Float {
        typealias V = ISA.Vector
        let m = V(repeating: 0.999_999_9), a = V(repeating: 1e-7)
        // Distinct starting values so that no two chains can be merged.
        var c0 = V(repeating: 1.00), c1 = V(repeating: 1.01), c2 = V(repeating: 1.02), c3 = V(repeating: 1.03)
        var c4 = V(repeating: 1.04), c5 = V(repeating: 1.05), c6 = V(repeating: 1.06), c7 = V(repeating: 1.07)
        var c8 = V(repeating: 1.08), c9 = V(repeating: 1.09), c10 = V(repeating: 1.10), c11 = V(repeating: 1.11)
        @inline(__always) func step(_ c: inout V) {
            var next = a
            multiplyAdd(&next, c, m)
            c = next
        }
        for _ in 0..<iterations {
            step(&c0); step(&c1); step(&c2); step(&c3); step(&c4); step(&c5)
            step(&c6); step(&c7); step(&c8); step(&c9); step(&c10); step(&c11)
        }
        let total = ((c0 + c1) + (c2 + c3)) + ((c4 + c5) + (c6 + c7)) + ((c8 + c9) + (c10 + c11))
        return total.sum()
    }

    /// Keeps a result alive so the loop computing it is not removed.
    @inline(never)
    static func sink(_ value: Float) {
        if value.isNaN { print("PeakFMA: NaN") }
    }
}
