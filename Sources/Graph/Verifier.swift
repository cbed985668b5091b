extension Graph {
    /// Checks the IR invariants: inputs refer to earlier nodes, each node's type is the one
    /// its op's rule gives, no extent is negative, leaf names are unique per kind, output names
    /// are unique, outputs and updates are valid.
    ///
    /// Throws `KilnError.invalidGraph` naming the first broken invariant.
    public func verify() throws {
        var names: [String: ValueID] = [:]
        for (id, node) in nodes.enumerated() {
            for input in node.inputs where input < 0 || input >= id {
                throw KilnError.invalidGraph("%\(id) \(node.op.name) reads %\(input), which is not an earlier node")
            }
            if node.type.shape.dims.contains(where: { $0 < 0 }) {
                throw KilnError.invalidGraph("%\(id) \(node.op.name) has negative extent in \(node.type.shape)")
            }
            if node.op.isLeaf {
                guard node.inputs.isEmpty else { throw KilnError.invalidGraph("leaf %\(id) \(node.op.name) has inputs") }
                if case let .constant(values) = node.op, values.count != 1, values.count != node.type.shape.count {
                    throw KilnError.invalidGraph("constant %\(id) has \(values.count) values for shape \(node.type.shape)")
                }
                if let name = leafName(id) {
                    let key = "\(node.op.name):\(name)"
                    if let other = names[key] { throw KilnError.invalidGraph("%\(id) and %\(other) are both \(node.op.name) \"\(name)\"") }
                    names[key] = id
                }
                continue
            }
            switch node.op.resultType(inputs: node.inputs.map { nodes[$0].type }) {
            case let .success(type):
                if type != node.type {
                    throw KilnError.invalidGraph("%\(id) \(node.op.name) has type \(node.type), its rule gives \(type)")
                }
            case let .failure(failure):
                throw KilnError.invalidGraph("%\(id) \(node.op.name): \(failure.message)")
            }
        }
        var outputNames = Set<String>()
        for output in outputs {
            guard output.value >= 0, output.value < nodes.count else {
                throw KilnError.invalidGraph("output \"\(output.name)\" refers to missing %\(output.value)")
            }
            // `output(_:)` finds the first of two outputs with one name; the second would be unreachable.
            guard outputNames.insert(output.name).inserted else {
                throw KilnError.invalidGraph("output \"\(output.name)\" is defined twice")
            }
        }
        var targets = Set<ValueID>()
        for update in updates {
            guard update.target >= 0, update.target < nodes.count, update.value >= 0, update.value < nodes.count else {
                throw KilnError.invalidGraph("update %\(update.target) <- %\(update.value) refers to a missing node")
            }
            guard nodes[update.target].op.storage == .persistent else {
                throw KilnError.invalidGraph("update target %\(update.target) is a \(nodes[update.target].op.name), not a parameter or state")
            }
            guard nodes[update.target].type == nodes[update.value].type else {
                throw KilnError.invalidGraph("update %\(update.target) <- %\(update.value): types \(nodes[update.target].type) and \(nodes[update.value].type) differ")
            }
            guard targets.insert(update.target).inserted else {
                throw KilnError.invalidGraph("%\(update.target) is updated twice")
            }
        }
    }
}
