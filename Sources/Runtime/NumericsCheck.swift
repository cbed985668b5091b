import KilnGraph
import KilnPasses

/// The check `Executable.checkNumerics` runs after each kernel: every float32 value the kernel
/// stores is scanned for NaN and ±Inf, members in id order, and the first offender is reported
/// with its op, node, shape, graph line, the step, and the ranges of the values it read.
enum NumericsCheck {
    /// Throws `KilnError.feed` naming the first member of `group` whose stored result is not finite.
    static func check(_ group: KernelGroup, graph: Graph, step: UInt64,
                      pointer: (ValueID) -> UnsafeMutableRawPointer?) throws {
        for member in group.members.sorted() {
            let node = graph.nodes[member]
            guard node.type.dtype == .float32, let raw = pointer(member) else { continue }
            let count = node.type.shape.count
            let values = UnsafeBufferPointer(start: raw.assumingMemoryBound(to: Float.self), count: count)
            guard let bad = values.firstIndex(where: { !$0.isFinite }) else { continue }
            var lines = ["\(node.op.name) \(graph.place(member)) produced \(values[bad]) at flat index \(bad) of \(node.type) in step \(step)",
                         "  graph line: \(graph.line(member))"]
            if group.members.count > 1 {
                lines.append("  in a fused kernel of \(group.members.count) nodes (compile without `fuse` to see each node's own result)")
            }
            for input in node.inputs {
                let inputNode = graph.nodes[input]
                let name = graph.leafName(input).map { " \"\($0)\"" } ?? ""
                guard inputNode.type.dtype == .float32, let inputRaw = pointer(input) else {
                    lines.append("  input %\(input)\(name) \(inputNode.op.name) : \(inputNode.type)")
                    continue
                }
                let inputValues = UnsafeBufferPointer(start: inputRaw.assumingMemoryBound(to: Float.self),
                                                      count: inputNode.type.shape.count)
                lines.append("  input %\(input)\(name) \(inputNode.op.name) : \(inputNode.type) \(summary(inputValues))")
            }
            throw KilnError.feed("numerics check: " + lines.joined(separator: "\n"))
        }
    }

    /// "range [min, max]" over the finite values, plus how many are NaN or infinite.
    static func summary(_ values: UnsafeBufferPointer<Float>) -> String {
        var low = Float.infinity, high = -Float.infinity, nan = 0, infinite = 0
        for v in values {
            if v.isNaN { nan += 1 } else if v.isInfinite { infinite += 1 } else { low = min(low, v); high = max(high, v) }
        }
        var text = low <= high ? "range [\(low), \(high)]" : "no finite value"
        if nan > 0 { text += ", \(nan) NaN" }
        if infinite > 0 { text += ", \(infinite) ±Inf" }
        return text
    }
}
