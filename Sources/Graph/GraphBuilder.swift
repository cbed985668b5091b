/// Builds a `Graph` one node at a time, inferring each result type as it goes.
///
/// A shape or dtype mistake does not crash and needs no `try`: the builder records it
/// (op, shapes, caller's file:line), returns a placeholder value, and `build()` throws it.
public final class GraphBuilder {
    /// The graph built so far (it may be invalid if `errors` is not empty).
    public private(set) var graph: Graph
    /// Mistakes recorded so far, first one first.
    public private(set) var errors: [KilnError] = []
    private var nextStream: Int
    private var leafKeys: Set<String> = []

    public init() {
        graph = Graph()
        nextStream = 0
    }

    /// Continues building on an existing graph (for example to add gradients or updates).
    public init(_ graph: Graph) {
        self.graph = graph
        nextStream = graph.nodes.reduce(0) { next, node in node.op.randomStream.map { max(next, $0 + 1) } ?? next }
        for id in graph.nodes.indices { if let name = graph.leafName(id) { leafKeys.insert("\(graph.nodes[id].op.name):\(name)") } }
    }

    /// The handle of an existing value.
    public func tensor(_ id: ValueID) -> Tensor { Tensor(id: id, builder: self) }

    /// Every parameter, in creation order.
    public var parameters: [Tensor] { graph.parameterIDs.map(tensor) }

    /// The parameter called `name`, if any.
    public func parameter(named name: String) -> Tensor? {
        graph.parameterIDs.first { graph.leafName($0) == name }.map(tensor)
    }

    // MARK: Leaves

    /// A value fed at every step.
    public func input(_ name: String, _ shape: Shape, dtype: DType = .float32,
                      file: String = #fileID, line: Int = #line) -> Tensor {
        leaf(.input(name: name), TensorType(shape, dtype), name: name, file: file, line: line)
    }

    /// A trained tensor that persists across steps.
    public func parameter(_ name: String, _ shape: Shape, dtype: DType = .float32, initializer: Initializer,
                          file: String = #fileID, line: Int = #line) -> Tensor {
        leaf(.parameter(name: name, initializer: initializer), TensorType(shape, dtype), name: name, file: file, line: line)
    }

    /// A persistent tensor that is not trained (optimizer state, running statistics).
    public func state(_ name: String, _ shape: Shape, dtype: DType = .float32, initializer: Initializer = .zeros,
                      file: String = #fileID, line: Int = #line) -> Tensor {
        leaf(.state(name: name, initializer: initializer), TensorType(shape, dtype), name: name, file: file, line: line)
    }

    /// A constant filled with one value.
    public func constant(_ value: Double, shape: Shape = .scalar, dtype: DType = .float32) -> Tensor {
        append(Node(op: .constant(values: [value]), inputs: [], type: TensorType(shape, dtype)))
    }

    /// A constant with one value per element, row-major.
    public func constant(values: [Double], shape: Shape, dtype: DType = .float32,
                         file: String = #fileID, line: Int = #line) -> Tensor {
        if values.count != shape.count {
            record("constant", "\(values.count) values do not fill shape \(shape)", file, line)
            return constant(0, shape: shape, dtype: dtype)
        }
        return append(Node(op: .constant(values: values), inputs: [], type: TensorType(shape, dtype)))
    }

    /// Uniform draws in [0, 1), fresh at every step, from the counter-based generator.
    public func randomUniform(_ shape: Shape, dtype: DType = .float32) -> Tensor {
        defer { nextStream += 1 }
        return append(Node(op: .randomUniform(stream: nextStream), inputs: [], type: TensorType(shape, dtype)))
    }

    /// Standard normal draws, fresh at every step, from the counter-based generator.
    public func randomNormal(_ shape: Shape, dtype: DType = .float32) -> Tensor {
        defer { nextStream += 1 }
        return append(Node(op: .randomNormal(stream: nextStream), inputs: [], type: TensorType(shape, dtype)))
    }

    // MARK: Ops

    /// Appends `op` applied to `inputs`, inferring its type. A rule violation is recorded
    /// against the caller's location and a zero placeholder of a plausible type is returned.
    @discardableResult
    public func apply(_ op: Op, _ inputs: [Tensor], file: String = #fileID, line: Int = #line) -> Tensor {
        precondition(inputs.allSatisfy { $0.builder === self }, "tensors from another builder")
        let types = inputs.map { graph.nodes[$0.id].type }
        switch op.resultType(inputs: types) {
        case let .success(type):
            return append(Node(op: op, inputs: inputs.map(\.id), type: type,
                               location: SourceLocation(file: file, line: line)))
        case let .failure(failure):
            record(op.name, failure.message, file, line)
            return constant(0, shape: types.first?.shape ?? .scalar, dtype: types.first?.dtype ?? .float32)
        }
    }

    /// Names a value the caller can read after each step.
    public func output(_ name: String, _ value: Tensor, file: String = #fileID, line: Int = #line) {
        if graph.output(name) != nil { record("output", "output \"\(name)\" is defined twice", file, line); return }
        graph.outputs.append(NamedValue(name: name, value: value.id))
    }

    /// After each step, `target` (a parameter or state) takes `value`.
    public func update(_ target: Tensor, to value: Tensor, file: String = #fileID, line: Int = #line) {
        guard graph.nodes[target.id].op.storage == .persistent else {
            record("update", "target %\(target.id) is a \(graph.nodes[target.id].op.name), not a parameter or state", file, line); return
        }
        guard target.type == value.type else {
            record("update", "\(graph.leafName(target.id) ?? "%\(target.id)") has type \(target.type), new value has \(value.type)", file, line)
            return
        }
        if let index = graph.updates.firstIndex(where: { $0.target == target.id }) {
            graph.updates[index].value = value.id
        } else {
            graph.updates.append(Update(target: target.id, value: value.id))
        }
    }

    /// Records a user mistake (for DSL helpers that check their own arguments).
    public func record(_ op: String, _ message: String, _ file: String, _ line: Int) {
        errors.append(.shape(op: op, message: message, file: file, line: line))
    }

    /// The finished graph, or the first mistake recorded while building it.
    public func build() throws -> Graph {
        if let first = errors.first { throw first }
        try graph.verify()
        return graph
    }

    private func leaf(_ op: Op, _ type: TensorType, name: String, file: String, line: Int) -> Tensor {
        if !leafKeys.insert("\(op.name):\(name)").inserted {
            record(op.name, "\"\(name)\" is defined twice", file, line)
        }
        if type.shape.dims.contains(where: { $0 < 0 }) { record(op.name, "\"\(name)\" has negative extent in \(type.shape)", file, line) }
        return append(Node(op: op, inputs: [], type: type, location: SourceLocation(file: file, line: line)))
    }

    private func append(_ node: Node) -> Tensor {
        graph.nodes.append(node)
        return Tensor(id: graph.nodes.count - 1, builder: self)
    }
}
