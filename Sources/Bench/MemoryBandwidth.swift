import KilnRuntime

/// The streaming bandwidth the machine gives a kernel that reads one buffer and writes another
/// (`dst[i] = src[i] · s`, in the ISA's vectors): every thread on its own slice, started
/// together, best of several runs. Bytes count once per read and once per write (as a
/// convolution's compulsory traffic is counted in `kiln bench conv`'s roofline column), not the
/// cache's read-for-ownership of written lines.
public enum MemoryBandwidth {
    public struct Measurement: Sendable {
        /// Best GB/s (10⁹ bytes) over the runs, all threads together.
        public let gigabytesPerSecond: Double
        public let threads: Int
        public let bytesPerThread: Int
        let runs: Int
        public var description: String {
            "Swift vector copy, \(bytesPerThread >> 20) MiB read + \(bytesPerThread >> 20) MiB written per thread, "
                + "\(threads) threads, best of \(runs) runs"
        }
    }

    /// Measures on `threads` threads, each copying `megabytesPerThread` MiB, `runs` times.
    /// 64 MiB a thread: larger than the convolutions' tensors (4–34 MB at batch 128), so that
    /// what a cache holds of them is no more than it holds of these.
    public static func measure(threads: Int, megabytesPerThread: Int = 64, runs: Int = 7) -> Measurement {
        precondition(threads >= 1 && megabytesPerThread >= 1, "MemoryBandwidth: threads and size must be at least 1")
        let bytes = megabytesPerThread << 20
        let floats = bytes / MemoryLayout<Float>.stride
        // One source and one destination per thread, pages touched before any timing.
        let buffers = (0..<threads).map { _ -> (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) in
            let source = UnsafeMutablePointer<Float>.allocate(capacity: floats)
            let target = UnsafeMutablePointer<Float>.allocate(capacity: floats)
            source.initialize(repeating: 1, count: floats)
            target.initialize(repeating: 0, count: floats)
            return (source, target)
        }
        defer { for (source, target) in buffers { source.deallocate(); target.deallocate() } }
        var best = Double.infinity
        for run in 0..<runs {
            let scale = Float(1) + Float(run) * 1e-7
            best = min(best, PeakFMA.timedThreads(threads) { index in
                scaledCopy(buffers[index].0, buffers[index].1, floats, scale)
            })
        }
        PeakFMA.sink(buffers[0].1[floats - 1])
        return Measurement(gigabytesPerSecond: Double(threads) * 2 * Double(bytes) / best / 1e9, threads: threads,
                           bytesPerThread: bytes, runs: runs)
    }

    /// `target[i] = source[i] · scale` for `count` floats (a multiple of the vector width).
    @inline(never)
    static func scaledCopy(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int, _ scale: Float) {
        typealias V = ISA.Vector
        let lanes = V.scalarCount, s = V(repeating: scale)
        let from = UnsafeRawPointer(source), to = UnsafeMutableRawPointer(target)
        var i = 0
        while i + 4 * lanes <= count {
            let step = MemoryLayout<Float>.stride
            let a = from.loadUnaligned(fromByteOffset: i * step, as: V.self)
            let b = from.loadUnaligned(fromByteOffset: (i + lanes) * step, as: V.self)
            let c = from.loadUnaligned(fromByteOffset: (i + 2 * lanes) * step, as: V.self)
            let d = from.loadUnaligned(fromByteOffset: (i + 3 * lanes) * step, as: V.self)
            to.storeBytes(of: a * s, toByteOffset: i * step, as: V.self)
            to.storeBytes(of: b * s, toByteOffset: (i + lanes) * step, as: V.self)
            to.storeBytes(of: c * s, toByteOffset: (i + 2 * lanes) * step, as: V.self)
            to.storeBytes(of: d * s, toByteOffset: (i + 3 * lanes) * step, as: V.self)
            i += 4 * lanes
        }
        while i < count { target[i] = source[i] * scale; i += 1 }
    }
}
