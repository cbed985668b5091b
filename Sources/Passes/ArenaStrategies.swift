import KilnGraph

/// A way to give every arena buffer a byte offset such that no two buffers live at the same
/// step overlap. Strategies are pluggable; memory planning runs all of them and keeps the
/// smallest arena (XLA's best-of heap algorithms).
public protocol ArenaStrategy: Sendable {
    /// The name reported in `MemoryPlan.strategy`.
    var name: String { get }
    /// An offset for every interval's value, each a multiple of `ArenaLayout.alignment`.
    func assign(_ intervals: [BufferInterval]) -> [ValueID: Int]
}

/// Alignment and size rules shared by the strategies, the planner and its report.
public enum ArenaLayout {
    /// Every buffer starts on a 64-byte boundary: a cache line, and the widest SIMD load.
    public static let alignment = 64

    /// `bytes` rounded up to the alignment.
    public static func aligned(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    /// The arena an assignment needs: the furthest aligned end of any buffer.
    public static func arenaBytes(_ intervals: [BufferInterval], _ offsets: [ValueID: Int]) -> Int {
        intervals.reduce(0) { Swift.max($0, offsets[$1.value]! + aligned($1.bytes)) }
    }

    /// The lowest aligned offset at which `interval` fits between the already placed buffers
    /// that live at the same time as it (first fit, as TFLite's arena planner does).
    static func lowestFit(_ interval: BufferInterval, among placed: [(interval: BufferInterval, offset: Int)]) -> Int {
        let size = aligned(interval.bytes)
        if size == 0 { return 0 }
        let conflicts = placed.filter { $0.interval.bytes > 0 && $0.interval.overlapsInTime(interval) }
            .sorted { ($0.offset, $0.interval.value) < ($1.offset, $1.interval.value) }
        var candidate = 0
        for (other, offset) in conflicts {
            if candidate + size <= offset { break }
            candidate = Swift.max(candidate, offset + aligned(other.bytes))
        }
        return candidate
    }
}

/// Greedy by size (Pisarchyk & Lee 2020, "Efficient Memory Management for Deep Neural Net
/// Inference", §4.2; TFLite's arena planner): the largest buffers first, each at the lowest
/// offset that fits between the placed buffers it overlaps in time.
public struct GreedyBySize: ArenaStrategy {
    /// `greedy-by-size`.
    public let name = "greedy-by-size"
    /// The strategy (it has no settings).
    public init() {}

    /// Offsets for `intervals`, largest buffer placed first.
    public func assign(_ intervals: [BufferInterval]) -> [ValueID: Int] {
        // Ties broken by first use, then id, so the placement is deterministic.
        let order = intervals.sorted { ($1.bytes, $0.start, $0.value) < ($0.bytes, $1.start, $1.value) }
        var placed: [(interval: BufferInterval, offset: Int)] = []
        var offsets: [ValueID: Int] = [:]
        for interval in order {
            let offset = ArenaLayout.lowestFit(interval, among: placed)
            placed.append((interval, offset))
            offsets[interval.value] = offset
        }
        return offsets
    }
}

/// Greedy by breadth (Pisarchyk & Lee 2020, §4.3): visits the steps by descending total live
/// size and places each step's unplaced buffers largest first, so the buffers of the widest
/// step pack tightly and the rest fill around them.
public struct GreedyByBreadth: ArenaStrategy {
    /// `greedy-by-breadth`.
    public let name = "greedy-by-breadth"
    /// The strategy (it has no settings).
    public init() {}

    /// Offsets for `intervals`, the widest step's buffers placed first.
    public func assign(_ intervals: [BufferInterval]) -> [ValueID: Int] {
        guard let last = intervals.map(\.end).max() else { return [:] }
        var breadth = [Int](repeating: 0, count: last + 1)
        var live = [[Int]](repeating: [], count: last + 1)
        for (index, interval) in intervals.enumerated() where interval.start <= interval.end {
            for step in interval.start...interval.end {
                breadth[step] += interval.bytes
                live[step].append(index)
            }
        }
        let steps = breadth.indices.sorted { (breadth[$1], $0) < (breadth[$0], $1) }
        var placed: [(interval: BufferInterval, offset: Int)] = []
        var offsets: [ValueID: Int] = [:]
        for step in steps {
            let order = live[step].map { intervals[$0] }.filter { offsets[$0.value] == nil }
                .sorted { ($1.bytes, $0.start, $0.value) < ($0.bytes, $1.start, $1.value) }
            for interval in order {
                let offset = ArenaLayout.lowestFit(interval, among: placed)
                placed.append((interval, offset))
                offsets[interval.value] = offset
            }
        }
        // Intervals with end < start live at no step; give them offset 0 (they are never used).
        for interval in intervals where offsets[interval.value] == nil { offsets[interval.value] = 0 }
        return offsets
    }
}
