/// Every node's ancestors (the nodes it depends on through any path), as one bitset per node.
/// Fusion's look-ahead asks it whether a value depends on the nodes of a kernel.
public struct NodeAncestry: Sendable {
    private let words: Int
    private var bits: [UInt64]

    public init(_ graph: Graph) {
        words = (graph.nodes.count + 63) / 64
        bits = [UInt64](repeating: 0, count: words * graph.nodes.count)
        for (id, node) in graph.nodes.enumerated() {
            for input in node.inputs {
                for w in 0..<words { bits[id * words + w] |= bits[input * words + w] }
                bits[id * words + input / 64] |= 1 << UInt64(input % 64)
            }
        }
    }

    /// Whether `id` depends on `ancestor` through some path (a node is not its own ancestor).
    public func dependsOn(_ id: ValueID, _ ancestor: ValueID) -> Bool {
        bits[id * words + ancestor / 64] & (1 << UInt64(ancestor % 64)) != 0
    }

    /// Whether `id` depends on any of `nodes`.
    public func dependsOn(_ id: ValueID, anyOf nodes: [ValueID]) -> Bool { nodes.contains { dependsOn(id, $0) } }
}
