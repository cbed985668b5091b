import Foundation
import Synchronization

/// Persistent worker threads that spin for a short while between jobs before they sleep.
///
/// Why not Dispatch: on this machine kind `DispatchQueue.concurrentPerform` takes 30–60 µs to
/// wake its second thread, more than most of a small model's kernels take in total (a LeNet-5
/// step runs ~40 kernels in ~3 ms), so two threads ran slower than one. A worker that is
/// still spinning from the previous kernel starts in well under a microsecond.
///
/// A job is `chunks` calls of `body(chunk)`; the caller and the workers claim chunks from one
/// counter, so which thread runs a chunk varies but what a chunk computes does not (results
/// never depend on the thread count). One job runs at a time: a caller that finds the pool
/// busy (another thread's job, or a nested call from inside a job) runs its chunks itself.
final class WorkerPool: @unchecked Sendable {
    /// The pool used by `Parallel.forEach`: one worker per online core beyond the first.
    static let shared = WorkerPool(workers: Parallel.onlineProcessors - 1)

    let workerCount: Int
    private let generation = Atomic<Int>(0)
    /// The next chunk to claim; `closed` between jobs, so a worker that wakes late claims nothing.
    private let nextChunk = Atomic<Int>(WorkerPool.closed)
    private static let closed = Int.max / 2
    private let finished = Atomic<Int>(0)
    private let sleeping = Atomic<Int>(0)
    /// Workers inside `runChunks`; the caller waits for none before its closure stops being valid.
    private let active = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    // Job state: written by the caller before it publishes the job (release on `nextChunk`
    // and `generation`), read by workers after they claim a chunk (acquire).
    /// The caller's closure as plain words (`ClosureWords`: storing an escapable copy cost a
    /// heap allocation per job).
    private var body = ClosureWords.none
    private var chunkCount = 0
    private var participants = 0
    /// Spins (atomic loads) before an idle worker goes to sleep: a few milliseconds, longer than
    /// the serial stretches of a training step, so workers stay awake for a whole run.
    private static let spinLimit = 4_000_000

    init(workers: Int) {
        workerCount = Swift.max(0, workers)
        for index in 0..<workerCount {
            let thread = Thread { [unowned self] in self.work(index) }
            thread.name = "kiln-worker-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(chunk)` for every chunk in 0..<chunks on up to `threads` threads (the caller
    /// included); returns when all have run.
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) {
        guard workerCount > 0, threads > 1, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        self.body = ClosureWords(body)
        chunkCount = chunks
        participants = Swift.min(threads, workerCount + 1)
        finished.store(0, ordering: .relaxed)
        nextChunk.store(0, ordering: .releasing)
        generation.wrappingAdd(1, ordering: .sequentiallyConsistent)
        let asleep = sleeping.load(ordering: .sequentiallyConsistent)
        for _ in 0..<Swift.min(asleep, participants - 1) { wake.signal() }
        runChunks()
        while finished.load(ordering: .acquiring) < chunks {}
        // Close the counter before the job state changes again: a late worker's claim
        // must never pair an old counter value with the next job's chunk count. Then wait
        // until no worker still holds the closure, which is only valid inside this call.
        nextChunk.store(Self.closed, ordering: .sequentiallyConsistent)
        while active.load(ordering: .sequentiallyConsistent) > 0 {}
        self.body = .none
        busy.store(false, ordering: .releasing)
    }

    /// Claims and runs chunks of the current job until none are left. The closure is read only
    /// after a chunk was claimed (so never once the caller has closed the job) and released
    /// before `active` drops.
    private func runChunks() {
        active.wrappingAdd(1, ordering: .sequentiallyConsistent)
        claimAndRun()
        active.wrappingSubtract(1, ordering: .sequentiallyConsistent)
    }

    @inline(never)
    private func claimAndRun() {
        var chunk = nextChunk.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue
        guard chunk < chunkCount else { return }
        let body = self.body
        while chunk < chunkCount {
            body(chunk)
            finished.wrappingAdd(1, ordering: .releasing)
            chunk = nextChunk.wrappingAdd(1, ordering: .acquiringAndReleasing).oldValue
        }
    }

    private func work(_ index: Int) {
        var seen = generation.load(ordering: .acquiring)
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins > Self.spinLimit {
                    sleeping.wrappingAdd(1, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleeping.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                    spins = 0
                }
            }
            seen = generation.load(ordering: .acquiring)
            if index + 1 < participants { runChunks() }
        }
    }
}
