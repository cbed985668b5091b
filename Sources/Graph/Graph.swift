/// The index of the node that produces a value.
public typealias ValueID = Int

/// Where a node was created in user code (for error messages).
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    public var description: String { "\(file):\(line)" }
}

/// One operation and the value it produces.
public struct Node: Hashable, Sendable {
    public var op: Op
    public var inputs: [ValueID]
    public var type: TensorType
    /// Where user code created the node, if known. Not part of the node's identity.
    public var location: SourceLocation?

    public init(op: Op, inputs: [ValueID], type: TensorType, location: SourceLocation? = nil) {
        self.op = op; self.inputs = inputs; self.type = type; self.location = location
    }

    public static func == (a: Node, b: Node) -> Bool { a.op == b.op && a.inputs == b.inputs && a.type == b.type }
    public func hash(into hasher: inout Hasher) { hasher.combine(op); hasher.combine(inputs); hasher.combine(type) }
}

/// A named result of a graph.
public struct NamedValue: Hashable, Sendable {
    public var name: String
    public var value: ValueID
    public init(name: String, value: ValueID) { self.name = name; self.value = value }
}

/// A write performed at the end of a step: `target` (a parameter or state) takes `value`.
public struct Update: Hashable, Sendable {
    public var target: ValueID
    public var value: ValueID
    public init(target: ValueID, value: ValueID) { self.target = target; self.value = value }
}

/// A static computation graph in SSA form: nodes in topological order, one value per node.
public struct Graph: Hashable, Sendable, CustomStringConvertible {
    public var nodes: [Node] = []
    /// Values the caller can read after a step.
    public var outputs: [NamedValue] = []
    /// Parameter and state writes applied after a step (optimizer updates, running statistics).
    public var updates: [Update] = []

    public init() {}

    public subscript(id: ValueID) -> Node { nodes[id] }

    /// The value of the output called `name`.
    public func output(_ name: String) -> ValueID? { outputs.first { $0.name == name }?.value }

    /// Ids of nodes of a leaf kind, in graph order.
    public var inputIDs: [ValueID] { nodes.indices.filter { if case .input = nodes[$0].op { return true } else { return false } } }
    public var parameterIDs: [ValueID] { nodes.indices.filter { if case .parameter = nodes[$0].op { return true } else { return false } } }
    public var stateIDs: [ValueID] { nodes.indices.filter { if case .state = nodes[$0].op { return true } else { return false } } }

    /// The name of an input, parameter or state node.
    public func leafName(_ id: ValueID) -> String? { nodes[id].op.bindingName }

    /// The values read after a step (graph outputs and update values): whatever computes them
    /// must store them.
    public var valuesReadAfterStep: Set<ValueID> { Set(outputs.map(\.value) + updates.map(\.value)) }

    /// For every node, the ids of the nodes that read it.
    public func users() -> [[ValueID]] {
        var users = [[ValueID]](repeating: [], count: nodes.count)
        for (id, node) in nodes.enumerated() { for input in node.inputs { users[input].append(id) } }
        return users
    }

    /// The text line of one node: `%3 = matmul(%0, %1) : f32[64, 10]`.
    public func line(_ id: ValueID) -> String {
        let node = nodes[id]
        let args = node.inputs.map { "%\($0)" }.joined(separator: ", ")
        let attributes = node.op.attributeText
        return "%\(id) = \(node.op.name)(\(args))\(attributes.isEmpty ? "" : " {\(attributes)}") : \(node.type)"
    }

    /// The stable text form: one line per node, then outputs and updates.
    ///
    ///     %3 = matmul(%0, %1) : f32[64, 10]
    public var description: String {
        var lines = nodes.indices.map(line)
        for output in outputs { lines.append("output \"\(output.name)\" = %\(output.value)") }
        for update in updates { lines.append("update %\(update.target) <- %\(update.value)") }
        return lines.joined(separator: "\n")
    }
}
