#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph
import KilnRuntime

/// The `gemm` workload: C = op(A)·op(B), 1024³ unless another shape is given, float32 with A, B ~
/// N(0, 1), packing buffers made once (as compiled programs do): 1 untimed call, 3 warm-up, 20
/// timed (more for small shapes); value = best GFLOP/s. Run by `kiln bench gemm` and by
/// `kiln-gemm`, a tool that links Kiln's core alone (no Foundation), which `bench/compare.sh`
/// uses for the GEMM row so that its peak RSS is the core's.
public enum GEMMWorkload {
    public struct Settings {
        public var threads: Int
        public var seed: UInt64
        public var m = 1024, n = 1024, k = 1024
        public var transposeA = false, transposeB = false
        /// 64 MiB are written between timed calls, so A, B and C start outside the caches, as a
        /// training step's products find them.
        public var coldCaches = false
        /// Measure the FMA peak too (`--no-peak` turns it off).
        public var measurePeak = true
        /// The record's `extra.process`: which executable ran it.
        public var process: String

        public init(threads: Int, seed: UInt64, process: String) {
            self.threads = threads; self.seed = seed; self.process = process
        }

        /// `MxNxK`, optionally `:at`, `:bt` or `:atbt` (A and/or B stored transposed).
        public mutating func setShape(_ text: String) throws {
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let sizes = parts[0].split(separator: "x").compactMap { Int($0) }
            let flags = parts.count > 1 ? parts[1] : ""
            guard sizes.count == 3, sizes.allSatisfy({ (1...16_384).contains($0) }), ["", "at", "bt", "atbt"].contains(flags) else {
                let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
                throw KilnError.argument("bench: --shape takes MxNxK with sizes 1 to 16384, optionally :at, :bt or :atbt (got \"\(shown)\")")
            }
            (m, n, k) = (sizes[0], sizes[1], sizes[2])
            (transposeA, transposeB) = (flags.hasPrefix("at"), flags.hasSuffix("bt"))
        }
    }

    public static func run(_ settings: Settings) -> BenchRecord {
        let (m, n, k, transposeA, transposeB) = (settings.m, settings.n, settings.k, settings.transposeA, settings.transposeB)
        let flops = 2 * Double(m) * Double(n) * Double(k)
        let warmUp = 3, repetitions = max(20, min(2000, Int(2e10 / flops)))
        // Normal entries by Box–Muller on numpy's PCG64 (the values do not matter for the timing, only the scale).
        var generator = NumpyGenerator(seed: [settings.seed, 7])
        // Operands aligned to a cache line, as Kiln's arena and parameters are (a Swift array's
        // elements start 16 or 48 bytes into a line, where rows read in place span a line more),
        // and filled in place: no temporary array adds to the peak RSS the record reports.
        func normals(_ count: Int, zero: Bool = false) -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
                .bindMemory(to: Float.self, capacity: max(count, 1))
            if zero {
                pointer.initialize(repeating: 0, count: count)
                return pointer
            }
            for i in 0..<count {
                let u1 = (Double(generator.bitGenerator.next64() >> 11) + 0.5) / 9_007_199_254_740_992  // in (0, 1)
                let u2 = Double(generator.bitGenerator.next64() >> 11) / 9_007_199_254_740_992
                pointer[i] = Float((-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2))
            }
            return pointer
        }
        let a = normals(m * k), b = normals(k * n), c = normals(m * n, zero: true)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        let workspace = GEMM.Workspace(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k)
        func multiply() {
            GEMM.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: transposeA ? m : k,
                       b: b, ldb: transposeB ? k : n, c: c, ldc: n, accumulate: false, threads: settings.threads,
                       workspace: workspace)
        }
        var start = monotonicSeconds()
        multiply()
        let firstCall = monotonicSeconds() - start
        for _ in 0..<warmUp { multiply() }
        var times: [Double] = []
        // Written between timed calls with coldCaches: 64 MiB, more than this host's L2s and most L3 slices.
        var evict = settings.coldCaches ? [Float](repeating: 0, count: 1 << 24) : []
        for repetition in 0..<repetitions {
            if settings.coldCaches {
                // Written by the product's own threads, so no worker has parked meanwhile (a parked
                // worker's wake-up would be timed too: this measures the caches alone).
                evict.withUnsafeMutableBufferPointer { buffer in
                    let base = buffer.baseAddress!, count = buffer.count, threads = settings.threads
                    Parallel.forEach(chunks: threads, threads: threads) { part in
                        let slice = count / threads
                        (base + part * slice).update(repeating: Float(repetition), count: slice)
                    }
                }
            }
            start = monotonicSeconds()
            multiply()
            times.append(monotonicSeconds() - start)
        }
        let best = times.min()!, middle = median(times)
        return BenchRecord(workload: "gemm", threads: settings.threads, seed: settings.seed, metric: "gflops",
                           value: flops / best / 1e9, compileSeconds: nil, testAccuracy: nil,
                           extra: [("median_gflops", rounded(flops / middle / 1e9, 2)), ("best_ms", rounded(best * 1e3, 3)),
                                   ("median_ms", rounded(middle * 1e3, 3)), ("reps", repetitions),
                                   ("first_call_ms", rounded(firstCall * 1e3, 3)), ("threads", settings.threads),
                                   ("shape", "\(m)x\(n)x\(k)" + (transposeA ? " A transposed" : "") + (transposeB ? " B transposed" : "")),
                                   ("caches", settings.coldCaches ? "cold (64 MiB written between calls)" : "warm"),
                                   ("process", settings.process)]
                           + throughputFields(achievedGFLOPs: flops / best / 1e9, threads: settings.threads,
                                              measurePeak: settings.measurePeak))
    }
}
