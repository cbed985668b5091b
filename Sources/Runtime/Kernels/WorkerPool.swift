import Dispatch
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
/// the chunks still running and then sleeps until the last one ends. On a quiet machine workers
/// spin 2 ms (a spinning worker starts a job at once) and the caller 200 µs. For 0.5 s after a
/// worker noticed a job late (it was descheduled while it spun), workers do not spin at all and
/// the caller spins 25 µs; while the run queues are crowded (below) workers do not spin either.
///
/// Crowded run queues: every `window` the caller reads how long the workers waited on a run
/// queue (`/proc/thread-self/schedstat`'s second field, read by each worker's open file): past
/// `crowded` of the window, the other cores are taken by processes of our priority, and for a
/// stretch (50 ms, doubling up to 0.8 s while the probes keep finding a crowd, back to 50 ms
/// after a clean one) each worker sleeps as soon as it finds no chunk to claim and is woken by
/// the caller for the next job; then the spinning workers are tried again for a window. Why not
/// spin: with two threads on two cores and one other busy
/// process, a spinning worker uses its whole share of a core and is then descheduled for the
/// other process's slice, often holding a chunk the caller waits for, once per kernel. A worker
/// that sleeps between jobs uses less than its share, so a fair scheduler (CFS, EEVDF) runs it
/// at once when it is woken, ahead of the process that has been running. Measured on 2 cores
/// beside one spinning process (AVX-512 Xeon, background work frozen), busy/quiet: LeNet-5
/// epoch 1.60× when the caller ran jobs alone in crowded stretches (the previous design: one
/// thread gets a core of its own, so the ratio is the 2-thread speed-up), 1.40× with workers
/// that sleep at once (AVX2 build 1.70× → 1.47×); VAE 1.49× → 1.36× (AVX2 1.53× → 1.48×). The
/// caller's own long waits are not taken as a sign of contention: a chunk that merely runs
/// longer than the caller's made the workers sleep on a quiet machine, 5–8 % slower on LeNet-5.
/// On kernels with EEVDF scheduling even `nice 19` work beside us delays a woken worker by up
/// to its slice, so a machine busy with a niced build can count as crowded too. Results do not change either way: they never depend on which
/// thread runs a chunk.
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
    /// Until when (monotonic nanoseconds) threads use the short spins: set whenever a worker
    /// sees it was descheduled.
    private let contendedUntil = Atomic<Int>(0)
    /// Until when (monotonic nanoseconds) workers do not spin between jobs: the end of the
    /// current crowded stretch, set by the caller.
    private let sleepyUntil = Atomic<Int>(0)
    /// Each worker's `/proc/thread-self/schedstat`, opened by the worker (-1 until then, or
    /// where it cannot be read).
    private let schedstat: UnsafeMutablePointer<Atomic<Int32>>
    /// The caller's view of contention, touched only by the thread holding `busy`.
    private var crowd = Crowd()
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    /// The caller's closure as plain words (`ClosureWords`: storing an escapable copy cost a
    /// heap allocation per job). Written before the job is published, read by a thread only
    /// after it claimed a chunk of that job (so while the caller still waits in `run`).
    private var body = ClosureWords.none

    /// Spin budgets in nanoseconds, quiet and contended: a worker between jobs, and the caller
    /// waiting for chunks others are running (microseconds: 2000 quiet and 0 contended for a
    /// worker; 200 and 25 for the caller). With one spinning process beside LeNet-5 on 2 cores
    /// (AVX2 build, background frozen, workers sleeping whenever contended): workers 0 µs and
    /// caller 25 µs 1.34×; 0 and 0 1.51×; workers 50 µs and caller 25 µs 1.96×.
    private static let workerSpinQuiet = 2_000_000, workerSpinContended = 0
    private static let callerSpinQuiet = 200_000, callerSpinContended = 25_000
    /// A job noticed this late by a spinning worker means it was descheduled.
    private static let lateness = 200_000
    /// How long short spins last after the last sign of contention.
    private static let contentionMemory = 500_000_000

    init(workers: Int) {
        workerCount = Swift.max(0, workers)
        schedstat = .allocate(capacity: Swift.max(1, workerCount))
        for index in 0..<Swift.max(1, workerCount) { (schedstat + index).initialize(to: Atomic<Int32>(-1)) }
        for index in 0..<workerCount {
            Platform.startThread(name: "kiln-worker-\(index)", stackSize: 1 << 20) { [unowned self] in self.work(index) }
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

    /// What the caller knows of the run queues: in a crowded stretch or not, and the current window.
    struct Crowd {
        /// In a stretch: when spinning workers are tried again (monotonic nanoseconds); 0 when not.
        var stretchUntil = 0
        /// The next stretch's length.
        var stretch = WorkerPool.shortestStretch
        /// The window's start and the workers' total run-queue wait then.
        var windowStart = 0, windowDelay = 0
    }
    /// Length of a measuring window, and the share of it the workers may wait on a run queue.
    private static let window = 10_000_000
    private static let crowded = 0.1
    private static let shortestStretch = 50_000_000, longestStretch = 800_000_000

    /// The workers' total run-queue wait so far, nanoseconds.
    private func workersDelay() -> Int {
        var total = 0
        for index in 0..<workerCount {
            total &+= Self.runQueueDelay(schedstat[index].load(ordering: .relaxed)) ?? 0
        }
        return total
    }

    /// The second field of a `schedstat` file ("run ns, run-queue wait ns, slices"), read into a
    /// stack buffer (no allocation).
    static func runQueueDelay(_ fd: Int32) -> Int? {
        guard fd >= 0 else { return nil }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 96) { buffer -> Int? in
            let count = pread(fd, buffer.baseAddress, buffer.count, 0)
            guard count > 0 else { return nil }
            var field = 0, value = 0, digits = 0
            for index in 0..<count {
                let byte = buffer[index]
                if byte >= 0x30 && byte <= 0x39 {
                    if field == 1 { value = value &* 10 &+ Int(byte - 0x30); digits += 1 }
                } else if byte == 0x20 || byte == 0x0A {
                    if field == 1 || byte == 0x0A { break }
                    field += 1
                } else {
                    return nil
                }
            }
            return field == 1 && digits > 0 ? value : nil
        }
    }

    /// Called by the thread holding `busy` before each job: in a stretch, nothing until it ends;
    /// otherwise ends the measuring window if it is over, and starts a stretch when the workers
    /// waited on a run queue for more than `crowded` of it.
    private func watchCrowd() {
        let time = Self.now()
        if crowd.stretchUntil != 0 {
            if time < crowd.stretchUntil { return }
            crowd.stretchUntil = 0  // try spinning workers for a window
            crowd.windowStart = time
            crowd.windowDelay = workersDelay()
            return
        }
        let elapsed = time - crowd.windowStart
        guard elapsed >= Self.window else { return }
        let delay = workersDelay()
        let waited = Double(delay &- crowd.windowDelay) / Double(elapsed * workerCount)
        crowd.windowStart = time
        crowd.windowDelay = delay
        guard elapsed < 4 * Self.window else { return }  // a stale window (no jobs for a while)
        if waited > Self.crowded {
            startStretch(crowd.stretch, at: time)
            crowd.stretch = Swift.min(Self.longestStretch, crowd.stretch * 2)
            return
        }
        crowd.stretch = Self.shortestStretch
    }

    private func startStretch(_ nanoseconds: Int, at time: Int) {
        crowd.stretchUntil = time + nanoseconds
        sleepyUntil.store(time + nanoseconds, ordering: .relaxed)
    }

    /// Starts a crowded stretch of `nanoseconds` now, as a crowded window would (for tests; call
    /// it while no job runs; a negative length ends one).
    func startCrowdedStretch(_ nanoseconds: Int) { startStretch(nanoseconds, at: Self.now()) }

    /// The spin budget of a worker between jobs at `time`.
    private func workerSpin(at time: Int) -> Int {
        if time < sleepyUntil.load(ordering: .relaxed) || contended(at: time) { return Self.workerSpinContended }
        return Self.workerSpinQuiet
    }

    /// Runs `body(chunk)` for every chunk in 0..<chunks on up to `threads` threads (the caller
    /// included); returns when all have run.
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) {
        guard workerCount > 0, threads > 1, chunks > 1, chunks < Self.closed,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for chunk in 0..<chunks { body(chunk) }
            return
        }
        watchCrowd()
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
        let budget = contended(at: start) ? Self.callerSpinContended : Self.callerSpinQuiet
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
        schedstat[index].store(open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC), ordering: .relaxed)
        // Not the current id: a job published before this thread started is still looked at
        // (and found closed, or joined).
        var seen = 0
        while true {
            var start = Self.now()
            var budget = workerSpin(at: start)
            var spins = 0
            var parked = false
            while generation.load(ordering: .acquiring) == seen {
                spins &+= 1
                guard spins & 63 == 0 else { continue }
                let time = Self.now()
                budget = Swift.min(budget, workerSpin(at: time))
                if time - start > budget {
                    sleeping.add(1, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleeping.subtract(1, ordering: .sequentiallyConsistent)
                    parked = true
                    start = Self.now()
                    budget = workerSpin(at: start)
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
