import KilnGraph

extension Program {
    /// Graphviz DOT of the program at its stage: each fused kernel of more than one node is a
    /// cluster labelled with its index and kind, and with a memory plan every placed value shows
    /// its arena offset and size (views and in-place results show whose buffer they share).
    public func dot(title: String = "kiln") -> String {
        var clusters: [DotCluster] = []
        for (index, group) in schedule.enumerated() where group.members.count > 1 {
            clusters.append(DotCluster(name: "kernel\(index)", label: "kernel \(index): \(group.kind.rawValue)", members: group.members))
        }
        var annotations: [ValueID: String] = [:]
        if let memory {
            for (id, offset) in memory.offsets {
                annotations[id] = "arena @\(offset) +\(graph.nodes[id].type.byteCount) B"
            }
            for (id, owner) in memory.aliases {
                annotations[id] = "in place of %\(owner)"
            }
            for (id, node) in graph.nodes.enumerated() where node.op.isView {
                annotations[id] = "view of %\(node.inputs[0])"
            }
        }
        return graph.dot(title: title, clusters: clusters, annotations: annotations)
    }
}
