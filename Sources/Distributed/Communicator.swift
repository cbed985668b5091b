import Foundation
import KilnGraph

/// The collectives data-parallel training needs, over a group of `size` ranks (processes or, for
/// tests, threads) that run the same program. Every call is collective: all ranks make the same
/// calls in the same order with the same element counts.
public protocol Communicator: AnyObject {
    /// This rank, 0..<size.
    var rank: Int { get }
    var size: Int { get }
    /// Replaces `buffer` on every rank with the element-wise sum over ranks, added in rank order
    /// (rank 0's value, plus rank 1's, …): the same bytes on every rank and in every run.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// Every rank's `bytes` (equal lengths), in rank order.
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Copies rank `root`'s `buffer` into every other rank's.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Waits until every rank has called it.
    func barrier() throws
    /// An object that reduces `buckets` of `buffer` (each with `allReduceSum`'s result, in bucket
    /// order) while the calling thread goes on computing: see `BucketReduction`. Every rank must
    /// use one for the same steps (an MPI communicator reduces with non-blocking collectives then,
    /// which MPI never matches with blocking ones).
    func makeBucketReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) -> BucketReduction
}

/// All-reduces a step's buckets in order, progressed by the thread that computes: `post(upTo:)`
/// when backward has produced (and the caller packed) buckets 0..<count, `progress()` between
/// kernels (a non-blocking test: it starts the next collective or moves the current one on, and
/// returns at once), `finish()` after backward (waits for the rest). No second thread: the
/// transfer advances only inside these calls, so on a machine whose cores all compute it takes
/// no core away from the computation (a communication thread that polls did, issue 18), and what
/// is left when backward ends is finished at the speed of a blocking all-reduce.
public protocol BucketReduction: AnyObject {
    /// Starts a step (nothing posted).
    func begin()
    func post(upTo count: Int) throws
    func progress() throws
    /// Reduces every bucket not yet reduced (all are posted) and returns when all are done.
    func finish() throws
    /// Buckets completely reduced this step.
    var finishedBuckets: Int { get }
}

extension Communicator {
    public func makeBucketReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) -> BucketReduction {
        BlockingBucketReduction(communicator: self, buffer: buffer, buckets: buckets)
    }
}

/// The reduction of communicators without non-blocking collectives (`LocalGroup`, `SingleProcess`):
/// each bucket is reduced with a blocking `allReduceSum` as soon as it is posted.
final class BlockingBucketReduction: BucketReduction {
    let communicator: Communicator
    let buffer: UnsafeMutablePointer<Float>
    let buckets: [Range<Int>]
    private(set) var finishedBuckets = 0
    init(communicator: Communicator, buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) {
        self.communicator = communicator; self.buffer = buffer; self.buckets = buckets
    }
    func begin() { finishedBuckets = 0 }
    func post(upTo count: Int) throws {
        while finishedBuckets < Swift.min(count, buckets.count) {
            let bucket = buckets[finishedBuckets]
            try communicator.allReduceSum(UnsafeMutableBufferPointer(start: buffer + bucket.lowerBound, count: bucket.count))
            finishedBuckets += 1
        }
    }
    func progress() throws {}
    func finish() throws { try post(upTo: buckets.count) }
}

/// A group of one: every collective leaves the data as it is.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func barrier() throws {}
}

/// `size` ranks as threads of one process, for tests of the data-parallel arithmetic without MPI:
/// `LocalGroup(size: 2).communicators` gives one communicator per thread. Sums in rank order, like
/// the MPI communicator.
public final class LocalGroup: @unchecked Sendable {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0
    private var generation = 0
    private var slots: [UnsafeMutableRawPointer?]
    private var counts: [Int]

    public init(size: Int) {
        precondition(size >= 1, "a group has at least one rank")
        self.size = size
        slots = Array(repeating: nil, count: size)
        counts = Array(repeating: 0, count: size)
    }

    /// One communicator per rank; give each to its own thread.
    public lazy var communicators: [Communicator] = (0..<size).map { LocalRank(group: self, rank: $0) }

    fileprivate func wait() {
        condition.lock()
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        condition.unlock()
    }

    /// Publishes a rank's pointer and count, waits for all, runs `body` with every rank's, waits again.
    fileprivate func exchange(rank: Int, pointer: UnsafeMutableRawPointer?, count: Int,
                              _ body: ([UnsafeMutableRawPointer?], [Int]) throws -> Void) throws {
        condition.lock(); slots[rank] = pointer; counts[rank] = count; condition.unlock()
        wait()
        condition.lock(); let pointers = slots, sizes = counts; condition.unlock()
        var failure: Error?
        do { try body(pointers, sizes) } catch { failure = error }
        wait()
        if let failure { throw failure }
    }
}

private final class LocalRank: Communicator {
    unowned let group: LocalGroup
    let rank: Int
    var size: Int { group.size }
    init(group: LocalGroup, rank: Int) { self.group = group; self.rank = rank }

    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        var sum = [Float](repeating: 0, count: buffer.count)
        try group.exchange(rank: rank, pointer: buffer.baseAddress.map { UnsafeMutableRawPointer($0) }, count: buffer.count) { pointers, counts in
            guard counts.allSatisfy({ $0 == buffer.count }) else {
                throw KilnError.feed("all-reduce: ranks passed \(counts) elements")
            }
            for r in 0..<size {
                guard let p = pointers[r]?.assumingMemoryBound(to: Float.self) else { continue }
                if r == 0 { for i in 0..<sum.count { sum[i] = p[i] } } else { for i in 0..<sum.count { sum[i] += p[i] } }
            }
        }
        // Everyone has read every buffer (the exchange's second wait): now overwrite.
        for i in 0..<buffer.count { buffer[i] = sum[i] }
        try barrier()
    }

    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var result: [[UInt8]] = []
        var mine = bytes
        try mine.withUnsafeMutableBytes { raw in
            try group.exchange(rank: rank, pointer: raw.baseAddress, count: raw.count) { pointers, counts in
                result = (0..<size).map { r in
                    guard let p = pointers[r] else { return [] }
                    return Array(UnsafeRawBufferPointer(start: p, count: counts[r]))
                }
            }
        }
        return result
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        var copy: [UInt8] = []
        try group.exchange(rank: rank, pointer: buffer.baseAddress, count: buffer.count) { pointers, counts in
            guard counts[root] == buffer.count else { throw KilnError.feed("broadcast: ranks passed \(counts) bytes") }
            if rank != root, let p = pointers[root] { copy = Array(UnsafeRawBufferPointer(start: p, count: buffer.count)) }
        }
        if rank != root { copy.withUnsafeBytes { buffer.copyMemory(from: $0) } }
        try barrier()
    }

    func barrier() throws { group.wait() }
}
