import Testing
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import KilnRuntime

@Suite("Worker pool")
struct WorkerPoolTests {
    /// Writes `text` to a temporary file and returns an open descriptor for it.
    private func descriptor(for text: String) throws -> Int32 {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-schedstat-\(UUID().uuidString)")
        try text.write(to: url, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: url) }
        return open(url.path, O_RDONLY)
    }

    @Test("the run-queue wait is the second field of a schedstat line; anything else is no reading")
    func parsesSchedstat() throws {
        let cases: [(String, Int?)] = [("92228 3488805 2\n", 3_488_805), ("0 0 0\n", 0), ("5 17\n", 17),
                                       ("12\n", nil), ("", nil), ("1 x2 3\n", nil), ("a b c\n", nil)]
        for (text, expected) in cases {
            let fd = try descriptor(for: text)
            defer { close(fd) }
            #expect(WorkerPool.runQueueDelay(fd) == expected, "\(text.debugDescription)")
        }
        #expect(WorkerPool.runQueueDelay(-1) == nil)
    }

    #if os(Linux)
    @Test("this thread's own schedstat file reads, and its wait never goes back")
    func readsOwnSchedstat() {
        let fd = open("/proc/thread-self/schedstat", O_RDONLY)
        defer { close(fd) }
        let first = WorkerPool.runQueueDelay(fd)
        let second = WorkerPool.runQueueDelay(fd)
        #expect(first != nil)
        #expect((second ?? -1) >= (first ?? 0))
    }
    #endif

    @Test("in a crowded stretch (workers sleep as soon as they find nothing to claim) every chunk runs once and woken workers still join")
    func crowdedStretchWakesWorkers() {
        let pool = WorkerPool(workers: 1)
        let caller = pthread_self()
        pool.startCrowdedStretch(60_000_000_000)
        // Many short jobs back to back: each wakes the sleeping worker or runs without it; none is lost.
        var counts = [Int](repeating: 0, count: 4 * 2000)
        counts.withUnsafeMutableBufferPointer { counts in
            for job in 0..<2000 {
                pool.run(chunks: 4, threads: 2) { chunk in counts[4 * job + chunk] += 1 }
            }
        }
        #expect(counts.allSatisfy { $0 == 1 })
        // Chunks long enough that the woken worker joins.
        let lock = NSLock()
        var byWorker = 0, total = 0
        pool.run(chunks: 64, threads: 2) { _ in
            usleep(5_000)
            lock.lock(); defer { lock.unlock() }
            total += 1
            if pthread_equal(pthread_self(), caller) == 0 { byWorker += 1 }
        }
        #expect(total == 64)
        #expect(byWorker > 0)
        pool.startCrowdedStretch(-1)
    }
}
