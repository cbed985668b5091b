import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Persistent worker threads that spin for a short while between jobs, then park.
///
/// Why not Dispatch: on this machine kind `DispatchQueue.concurrentPerform` takes 30–60 µs to
/// wake its second thread, more than most of a small model's kernels take in total (a LeNet-5
/// step runs ~40 kernels in ~3 ms), so two threads ran slower than one. A worker that is
/// still spinning from the previous kernel starts in well under a microsecond.
///
/// A job is `chunks` calls of `body(chunk)`. Chunks are claimed one at a time from one counter
/// (compare-and-swap on the job's id and the next chunk), so the caller, or whichever worker is
/// running, takes every chunk nobody has started: a descheduled worker holds back at most the
/// one chunk it is in. Which thread runs a chunk varies; what a chunk computes does not (results
/// never depend on the thread count). One job runs at a time: a caller that finds the pool busy
/// (another thread's job, or a nested call from inside a job) runs its chunks itself.
///
/// Nobody spins without a bound (issue 16: with another process spinning on one of two cores,
/// spinning threads stole the time the late worker needed). Workers spin for a while after a job
/// and then sleep on a semaphore; the caller, once no chunk is left to claim, spins briefly for
/// the chunks still running and then sleeps until the last one ends. Spins are long on a quiet
/// machine (a spinning worker starts a job at once) and short once a thread has seen that it is
/// being descheduled (a job it noticed late, a chunk that took a time slice to finish).
final class WorkerPool: @unchecked Sendable {
    /// The pool used by `Parallel.forEach`: one worker per online core beyond the first.
    static let shared = WorkerPool(workers: Parallel.onlineProcessors - 1)

    let workerCount: Int
    /// The current job's id; workers wait for it to change.
    private let generation = Atomic<Int>(0)
    /// The job's id (high 32 bits) and its next unclaimed chunk (low 32 bits). Claims are
    /// compare-and-swaps that keep the id, so a worker still holding an old job's id claims
    /// nothing of a newer job; between jobs the chunk part is `closed`.
    private let nextChunk = Atomic<Int>(Int(WorkerPool.closed))
    private static let closed: Int = 0x7FFF_FFFF
    private let chunkCount = Atomic<Int>(0)
    private let participants = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    private let sleeping = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    /// Set by a caller about to sleep until the job's last chunk ends; the thread that ends it
    /// (or the caller itself, if it sees the end first) clears it, and only a clearing worker signals.
    private let callerWaiting = Atomic<Bool>(false)
    /// When the current job was published (monotonic nanoseconds), to notice late workers.
    private let publishedAt = Atomic<Int>(0)
    /// Until when (monotonic nanoseconds) threads use the short spins: set whenever a thread
    /// sees it was descheduled.
    private let contendedUntil = Atomic<Int>(0)
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// The caller's closure as plain words (`ClosureWords`: storing an escapable copy cost a
    /// heap allocation per job). Written before the job is published, read by a thread only
    /// after it claimed a chunk of that job (so while the caller still waits in `run`).
    private var body = ClosureWords.none

    /// Spin budgets in nanoseconds, quiet and contended: a worker between jobs, and the caller
    /// waiting for chunks others are running (microseconds: 2000 quiet and 50 contended for a
    /// worker; 200 and 25 for the caller).
    private let workerSpinQuiet: Int, workerSpinContended: Int, callerSpinQuiet: Int, callerSpinContended: Int
    /// A job noticed this late, or a wait this long, means a thread was descheduled.
    private static let lateness = 200_000
    /// How long short spins last after the last sign of contention.
    private static let contentionMemory = 500_000_000

    init(workers: Int) {
        workerCount = Swift.max(0, workers)
        let microseconds = [2000, 50, 200]
        workerSpinQuiet = microseconds[0] * 1000
        workerSpinContended = microseconds[1] * 1000
        callerSpinQuiet = Swift.max(microseconds[2], microseconds[1]) * 1000
        callerSpinContended = microseconds[1] * 1000 / 2
        for index in 0..<workerCount {
            let thread = Thread { [unowned self] in self.work(index) }
            thread.name = "kiln-worker-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Monotonic nanoseconds (vDSO clock, ~20 ns).
    @inline(__always)
    private static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time.tv_sec * 1_000_000_000 + time.tv_nsec
    }

    private func contended(at time: Int) -> Bool { time < contendedUntil.load(ordering: .relaxed) }

    private func noteContention(at time: Int) { contendedUntil.store(time + Self.contentionMemory, ordering: .relaxed) }

    /// Runs `body(chunk)` for every chunk in 0..<chunks on up to `threads` threads (the caller
    /// included); returns when all have run.
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) {
        guard workerCount > 0, threads > 1, chunks > 1, chunks < Self.closed,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        self.body = ClosureWords(body)
        let job = (generation.load(ordering: .relaxed) &+ 1) & 0x7FFF_FFFF
        // Released after the previous job's close: a worker that reads this count also sees that close.
        chunkCount.store(chunks, ordering: .releasing)
        participants.store(Swift.min(threads, workerCount + 1), ordering: .relaxed)
        finished.store(0, ordering: .relaxed)
        publishedAt.store(Self.now(), ordering: .relaxed)
        nextChunk.store(job << 32, ordering: .releasing)
        generation.store(job, ordering: .sequentiallyConsistent)
        let asleep = sleeping.load(ordering: .sequentiallyConsistent)
        for _ in 0..<Swift.min(asleep, participants.load(ordering: .relaxed) - 1) { wake.signal() }
        claimAndRun(job: job, chunks: chunks)
        waitForChunks(chunks)
        // Close the job before its state changes again: a worker that read this job's id late
        // must find nothing to claim, whatever chunk count it reads next.
        nextChunk.store(job << 32 | Self.closed, ordering: .sequentiallyConsistent)
        self.body = .none
        busy.store(false, ordering: .releasing)
    }

    /// Returns once every chunk of the job has finished: spins while the others' chunks are
    /// likely to end soon, then sleeps until the thread that ends the last one signals.
    private func waitForChunks(_ chunks: Int) {
        if finished.load(ordering: .acquiring) == chunks { return }
        let start = Self.now()
        let budget = contended(at: start) ? callerSpinContended : callerSpinQuiet
        var spins = 0
        while finished.load(ordering: .acquiring) < chunks {
            spins &+= 1
            if spins & 63 == 0 {
                let time = Self.now()
                if time - start > budget { break }
            }
        }
        if finished.load(ordering: .acquiring) == chunks { return }
        callerWaiting.store(true, ordering: .sequentiallyConsistent)
        if finished.load(ordering: .sequentiallyConsistent) == chunks,
           callerWaiting.exchange(false, ordering: .sequentiallyConsistent) {
            return  // the last chunk ended before anyone saw the flag: no signal is coming
        }
        done.wait()
        let waited = Self.now() - start
        if waited > Self.lateness { noteContention(at: start + waited) }
    }

    /// Claims and runs chunks of job `job` until none are left. The closure is read only after
    /// a chunk was claimed: the caller cannot return from `run` before that chunk finishes.
    @inline(never)
    private func claimAndRun(job: Int, chunks: Int) {
        var value = nextChunk.load(ordering: .acquiring)
        while true {
            let chunk = value & 0xFFFF_FFFF
            guard value >> 32 == job, chunk < chunks else { return }
            let (exchanged, original) = nextChunk.compareExchange(expected: value, desired: value + 1,
                                                                 ordering: .acquiringAndReleasing)
            if !exchanged { value = original; continue }
            let body = self.body
            body(chunk)
            if finished.add(1, ordering: .acquiringAndReleasing).newValue == chunks,
               callerWaiting.exchange(false, ordering: .sequentiallyConsistent) {
                done.signal()
            }
            value = nextChunk.load(ordering: .acquiring)
        }
    }

    private func work(_ index: Int) {
        var seen = generation.load(ordering: .acquiring)
        while true {
            var start = Self.now()
            var budget = contended(at: start) ? workerSpinContended : workerSpinQuiet
            var spins = 0
            var parked = false
            while generation.load(ordering: .acquiring) == seen {
                spins &+= 1
                guard spins & 63 == 0 else { continue }
                let time = Self.now()
                if contended(at: time) { budget = Swift.min(budget, workerSpinContended) }
                if time - start > budget {
                    sleeping.add(1, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleeping.subtract(1, ordering: .sequentiallyConsistent)
                    parked = true
                    start = Self.now()
                    budget = contended(at: start) ? workerSpinContended : workerSpinQuiet
                }
            }
            let job = generation.load(ordering: .acquiring)
            seen = job
            if !parked {
                // Spinning, yet noticed the job late: this thread was descheduled while it spun.
                let time = Self.now()
                if time - publishedAt.load(ordering: .relaxed) > Self.lateness { noteContention(at: time) }
            }
            guard index + 1 < participants.load(ordering: .relaxed) else { continue }
            let chunks = chunkCount.load(ordering: .acquiring)
            claimAndRun(job: job, chunks: chunks)
        }
    }
}
