import KilnGraph

/// Kernel scheduling (`schedule`): reorders `program.kernels` for memory. A kernel that writes
/// a parameter or state update runs as soon as its inputs are ready and every other kernel that
/// reads the old value has run, instead of at the end of the step: its gradient dies early,
/// and the update may then be written in place into the parameter (memory planning decides).
/// Other kernels keep their order (ready kernels by smallest first member).
///
/// Invariant: the result is a topological order of the kernel DAG; the graph is not changed.
public struct Scheduling: Pass {
    public let name = "schedule"
    public init() {}

    public func run(_ program: inout Program) throws -> Bool {
        precondition(program.memory == nil, "schedule runs before memory planning")
        guard let kernels = program.kernels else { return false }
        let ordered = Self.order(kernels, graph: program.graph)
        let changed = ordered != kernels
        program.kernels = ordered
        return changed
    }

    static func order(_ kernels: [KernelGroup], graph: Graph) -> [KernelGroup] {
        let owner = kernels.kernelOfNode(count: graph.nodes.count)
        // Which kernels read each value (through views too), excluding the value's own kernel.
        var readers = [[Int]](repeating: [], count: graph.nodes.count)
        for (k, group) in kernels.enumerated() {
            for input in group.externalInputs(in: graph) { readers[graph.viewRoot(input)].append(k) }
        }
        var sources = kernels.producerKernels(in: graph, kernelOfNode: owner)
        var isUpdate = [Bool](repeating: false, count: kernels.count)
        for update in graph.updates {
            let k = owner[graph.viewRoot(update.value)]
            guard k >= 0 else { continue }
            isUpdate[k] = true
            // Readers of the old value run before the kernel that computes the new one.
            for reader in readers[update.target] where reader != k { sources[k].insert(reader) }
        }
        // A pseudo-dependency that closes a cycle: keep the fusion order (data edges only).
        guard let order = kahnOrder(sources: sources, key: { key(kernels[$0], isUpdate[$0]) }) else { return kernels }
        return order.map { kernels[$0] }
    }

    /// Update kernels go first among ready kernels; the rest by first member.
    private static func key(_ group: KernelGroup, _ isUpdate: Bool) -> Int {
        isUpdate ? -1 : group.members[0]
    }
}
