import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Fork-join parallelism over a fixed number of chunks, on Kiln's own spinning worker threads
/// (`WorkerPool`: Dispatch's wake-up cost more than small kernels take).
///
/// Callers choose the chunking from the problem alone (never from the thread count), so a
/// kernel that reduces within chunks and then across chunks in chunk order gives the same
/// bits for any number of threads.
public enum Parallel {
    /// Runs `body(chunk)` for chunk in 0..<chunks on up to `threads` threads (the caller
    /// included); inline when threads == 1 or chunks == 1.
    ///
    /// Each worker takes a contiguous range of chunks (neighbouring chunks usually touch
    /// neighbouring memory). Returns when every chunk has run. `body` must not assume
    /// anything about which thread runs which chunk.
    public static func forEach(chunks: Int, threads: Int, _ body: (Int) -> Void) {
        precondition(chunks >= 0, "Parallel.forEach: negative chunk count \(chunks)")
        precondition(threads >= 1, "Parallel.forEach: thread count \(threads) must be at least 1")
        if chunks == 0 { return }
        let workers = min(threads, chunks)
        if workers == 1 {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        WorkerPool.shared.run(chunks: chunks, threads: workers, body)
    }

    /// The most threads a program uses (`Executable` caps its count here): beyond the cores
    /// more threads gain nothing, and some buffers are allocated per thread.
    public static let maximumThreads = 256

    /// Cores the system has online.
    static let onlineProcessors = Swift.max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}

extension Parallel {
    /// A kernel that splits `0..<count` into fixed chunks of at least `grain` (at most `threads`
    /// of them) and runs them on `threads`; one chunk runs inline.
    static func chunkedKernel(_ count: Int, _ threads: Int, grain: Int = 65536,
                              _ body: @escaping (Range<Int>) -> Void) -> () -> Void {
        let chunks = Swift.max(1, Swift.min(threads, count / Swift.max(grain, 1)))
        if chunks == 1 { return { body(0..<count) } }
        let size = (count + chunks - 1) / chunks
        return {
            forEach(chunks: chunks, threads: threads) { chunk in
                let start = chunk * size
                body(start..<Swift.min(count, start + size))
            }
        }
    }
}
