import KilnGraph

/// The life of one arena buffer over the schedule: written at step `start`, last read at step
/// `end` (inclusive). Step k is the k-th kernel; graph inputs are written before step 0 and live
/// through the whole step (the caller may set them once and run many steps), and values read
/// after the step (outputs, updates) live until step `kernelCount`.
public struct BufferInterval: Hashable, Sendable, CustomStringConvertible {
    /// The value that owns the buffer (views and in-place results share it).
    public var value: ValueID
    public var bytes: Int
    public var start: Int
    public var end: Int

    public init(value: ValueID, bytes: Int, start: Int, end: Int) {
        self.value = value; self.bytes = bytes; self.start = start; self.end = end
    }

    public func overlapsInTime(_ other: BufferInterval) -> Bool { start <= other.end && other.start <= end }
    public var description: String { "%\(value) \(bytes)B [\(start), \(end)]" }
}

/// Liveness of the buffers a program places in its arena.
public enum BufferLiveness {
    /// The value whose buffer `id` uses: follows reshape views and the plan's aliases.
    public static func owner(of id: ValueID, in program: Program) -> ValueID {
        owner(of: id, in: program.graph, aliases: program.memory?.aliases ?? [:])
    }

    /// The value whose buffer `id` uses under `aliases` (memory planning asks this of the
    /// aliases it has decided so far).
    public static func owner(of id: ValueID, in graph: Graph, aliases: [ValueID: ValueID]) -> ValueID {
        var id = graph.viewRoot(id)
        while let next = aliases[id], next != id { id = graph.viewRoot(next) }
        return id
    }

    /// Whether a buffer owner lives outside the arena (parameters, state and constants do).
    public static func isOutsideArena(_ id: ValueID, in graph: Graph) -> Bool { graph.nodes[id].op.livesOutsideArena }

    /// One interval per arena buffer (graph inputs and kernel outputs, merged through views and
    /// aliases), in order of owner id.
    public static func intervals(of program: Program) -> [BufferInterval] {
        let graph = program.graph
        let schedule = program.schedule
        let end = schedule.count
        var start = [Int](repeating: -1, count: graph.nodes.count)
        var last = [Int](repeating: -1, count: graph.nodes.count)
        func touch(_ id: ValueID, at step: Int) {
            let o = owner(of: id, in: program)
            if isOutsideArena(o, in: graph) { return }
            start[o] = start[o] == -1 ? step : min(start[o], step)
            last[o] = max(last[o], step)
        }
        // Inputs are the caller's: set once, read by every later step, so no kernel may reuse
        // their bytes. They live from before the first kernel to after the last.
        for id in graph.inputIDs { touch(id, at: 0); touch(id, at: end) }
        for (step, group) in schedule.enumerated() {
            for output in group.outputs { touch(output, at: step) }
            if group.rootNeedsScratchBuffer(in: graph) { touch(group.root, at: step) }
            for input in group.externalInputs(in: graph) { touch(input, at: step) }
        }
        for output in graph.outputs { touch(output.value, at: end) }
        for update in graph.updates { touch(update.value, at: end) }
        return graph.nodes.indices.compactMap { id in
            guard start[id] >= 0 else { return nil }
            return BufferInterval(value: id, bytes: graph.nodes[id].type.byteCount, start: start[id], end: last[id])
        }
    }

    /// The largest total size of buffers live at one step: a bound no placement can beat.
    public static func lowerBound(_ intervals: [BufferInterval]) -> Int {
        guard let end = intervals.map(\.end).max() else { return 0 }
        var delta = [Int](repeating: 0, count: end + 2)
        for interval in intervals {
            delta[interval.start] += interval.bytes
            delta[interval.end + 1] -= interval.bytes
        }
        var live = 0, peak = 0
        for d in delta { live += d; peak = max(peak, live) }
        return peak
    }

    /// Throws if a value other than the input itself (or a view of it) is placed in the bytes of
    /// a graph input, or is aliased to one: `run()` never writes an input, whatever the schedule.
    public static func checkInputsUntouched(_ program: Program) throws {
        guard let memory = program.memory else { return }
        let graph = program.graph
        let inputs = Set(graph.inputIDs)
        for (value, target) in memory.aliases where !graph.nodes[value].op.isView {
            if inputs.contains(owner(of: target, in: program)) {
                throw KilnError.invalidGraph("%\(value) is written in place into graph input %\(target) \"\(graph.leafName(target) ?? "")\"")
            }
        }
        for input in inputs {
            guard let start = memory.offsets[input] else {
                throw KilnError.invalidGraph("graph input %\(input) has no offset in the arena")
            }
            let end = start + graph.nodes[input].type.byteCount
            for (value, offset) in memory.offsets where value != input {
                let bytes = graph.nodes[value].type.byteCount
                if bytes > 0 && offset < end && start < offset + bytes && end > start {
                    throw KilnError.invalidGraph("buffer of %\(value) [\(offset), \(offset + bytes)) overlaps graph input %\(input) \"\(graph.leafName(input) ?? "")\" [\(start), \(end))")
                }
            }
        }
    }

    /// Throws if two buffers live at the same time overlap in the arena, or a buffer lacks an
    /// offset or spills past the arena's end (Glow's `verifySegments`).
    public static func checkNoOverlap(_ intervals: [BufferInterval], memory: MemoryPlan) throws {
        var placed: [(BufferInterval, Int)] = []
        for interval in intervals {
            guard let offset = memory.offsets[interval.value] else {
                throw KilnError.invalidGraph("buffer of %\(interval.value) has no offset")
            }
            guard offset >= 0, offset + interval.bytes <= memory.arenaBytes else {
                throw KilnError.invalidGraph("buffer of %\(interval.value) [\(offset), \(offset + interval.bytes)) exceeds the arena of \(memory.arenaBytes) bytes")
            }
            placed.append((interval, offset))
        }
        placed.sort { $0.1 < $1.1 }
        for i in placed.indices {
            let (a, offsetA) = placed[i]
            for j in (i + 1)..<placed.count {
                let (b, offsetB) = placed[j]
                if offsetB >= offsetA + a.bytes { break }
                if a.overlapsInTime(b) && a.bytes > 0 && b.bytes > 0 {
                    throw KilnError.invalidGraph("buffers of %\(a.value) \(a) at \(offsetA) and %\(b.value) \(b) at \(offsetB) overlap while both live")
                }
            }
        }
    }
}
