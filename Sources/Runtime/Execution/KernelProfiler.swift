#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph
import KilnPasses

/// Time per kernel of a compiled program, summed over the steps run with `RunOptions.profile`.
/// An epilogue group runs as two closures (the root's kernel, then its fused elementwise part),
/// so time is kept per closure and per scheduled group.
final class KernelProfiler {
    /// Seconds per scheduled kernel group (indexed like `program.schedule`).
    private(set) var groupSeconds: [Double]
    private var closureSeconds: [Double]
    /// For each closure, its group (`-1` outside every group).
    let groupOfClosure: [Int]
    private(set) var steps: UInt64 = 0

    init(groups: Int, groupOfClosure: [Int]) {
        groupSeconds = Array(repeating: 0, count: groups)
        closureSeconds = Array(repeating: 0, count: groupOfClosure.count)
        self.groupOfClosure = groupOfClosure
    }

    func record(closure index: Int, seconds: Double) {
        closureSeconds[index] += seconds
        let group = groupOfClosure[index]
        if group >= 0 { groupSeconds[group] += seconds }
    }

    func finishStep() { steps += 1 }

    /// The kernel groups that took the most time, one line each.
    func report(_ program: Program, top: Int = 12) -> String {
        let graph = program.graph
        let steps = Double(Swift.max(self.steps, 1))
        let total = groupSeconds.reduce(0, +)
        var lines = ["kiln profile: \(graph.nodes.count) nodes, \(program.schedule.count) kernels, \(self.steps) steps, "
                     + Platform.fixed(total, 3) + " s in kernels, " + Platform.fixed(1e6 * total / steps, 1) + " µs per step"]
        for index in groupSeconds.indices.sorted(by: { groupSeconds[$0] > groupSeconds[$1] }).prefix(top) {
            let group = program.schedule[index]
            let ops = group.members.map { graph.nodes[$0].op.name }.joined(separator: " ")
            let shape = graph.nodes[group.root].type.shape.dims.map(String.init).joined(separator: "x")
            let parts = groupOfClosure.indices.filter { groupOfClosure[$0] == index }
            let split = parts.count > 1
                ? " (" + parts.map { Platform.fixed(1e6 * closureSeconds[$0] / steps, 1) }.joined(separator: " + ") + ")"
                : ""
            let share = Platform.fixed(100 * groupSeconds[index] / Swift.max(total, 1e-12), 1, width: 5)
            let time = Platform.fixed(1e6 * groupSeconds[index] / steps, 1, width: 8)
            lines.append("  \(share)% \(time) µs/step\(split)  kernel \(index) \(group.kind.rawValue) [\(shape)]: \(ops)")
        }
        // The same time summed by the kernel's root op (every conv2d_backward_filter together, …).
        var byOp: [String: (seconds: Double, kernels: Int)] = [:]
        for index in groupSeconds.indices {
            let name = graph.nodes[program.schedule[index].root].op.name
            byOp[name, default: (0, 0)].seconds += groupSeconds[index]
            byOp[name, default: (0, 0)].kernels += 1
        }
        lines.append("  by the kernel's root op:")
        for (name, entry) in byOp.sorted(by: { $0.value.seconds > $1.value.seconds }).prefix(top) {
            let share = Platform.fixed(100 * entry.seconds / Swift.max(total, 1e-12), 1, width: 5)
            let time = Platform.fixed(1e6 * entry.seconds / steps, 1, width: 10)
            lines.append("  \(share)% \(time) µs/step  \(Platform.padded(String(entry.kernels), width: 3)) kernels  \(name)")
        }
        return lines.joined(separator: "\n")
    }
}
