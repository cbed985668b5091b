import KilnGraph

// Reverse-mode automatic differentiation as a graph transform.
//
// `gradients(of:withRespectTo:)` appends the backward nodes of a loss to the graph under
// construction and returns the gradients as ordinary graph values. Every op's vector-Jacobian
// product (VJPRules.swift) is itself written in graph ops, so the backward graph can be
// differentiated again (Hessian-vector products, gradient penalties).
//
// Invariant kept: the forward graph is left untouched (nodes are only appended), every
// cotangent has exactly the type of the value it belongs to, and the result passes `verify()`.

extension GraphBuilder {
    /// Appends the backward nodes of `loss` and returns d loss / d value for each of `values`.
    ///
    /// A loss of any shape is seeded with ones (the gradient of `loss.sum()`), or with `seed`,
    /// which must have the loss's type (a vector-Jacobian product). Only nodes on a path from
    /// a requested value to the loss get backward nodes. A value the loss does not depend on
    /// gets a zero constant of its type. Integer values are not differentiable: asking for
    /// one records an error (and yields zeros), and gradients never flow through them.
    public func gradients(of loss: Tensor, withRespectTo values: [Tensor], seed: Tensor? = nil,
                          file: String = #fileID, line: Int = #line) -> [Tensor] {
        precondition(loss.builder === self && values.allSatisfy { $0.builder === self }, "tensors from another builder")
        let zeros = { (value: Tensor) in self.constant(0, shape: value.shape, dtype: value.dtype) }
        for value in values where !value.dtype.isFloatingPoint {
            record("gradients", "cannot differentiate with respect to %\(value.id) of type \(value.type): only floating-point values have gradients", file, line)
        }
        guard loss.dtype.isFloatingPoint else {
            record("gradients", "cannot differentiate loss %\(loss.id) of type \(loss.type): only floating-point values have gradients", file, line)
            return values.map(zeros)
        }
        if let seed, seed.type != loss.type {
            record("gradients", "seed has type \(seed.type), loss has type \(loss.type)", file, line)
            return values.map(zeros)
        }

        let targets = Set(values.filter { $0.dtype.isFloatingPoint }.map(\.id))
        let leadsToTarget = nodesReaching(targets, upTo: loss.id)
        var cotangents = Cotangents(builder: self, leadsToTarget: leadsToTarget)
        if leadsToTarget[loss.id] {
            cotangents.add(seed ?? constant(1, shape: loss.shape, dtype: loss.dtype), to: loss.id)
        }
        // Nodes are in topological order, so descending ids visit every user of a value before
        // the value itself: its cotangent is complete when its rule runs.
        for id in stride(from: loss.id, through: 0, by: -1) {
            guard let cotangent = cotangents[id] else { continue }
            let node = graph.nodes[id]
            if node.op.isLeaf { continue }
            appendVJP(of: node, output: tensor(id), cotangent: cotangent, into: &cotangents)
        }
        return values.map { value in
            guard value.dtype.isFloatingPoint, let cotangent = cotangents[value.id] else { return zeros(value) }
            return cotangent
        }
    }

    /// For every node up to `last`, whether it is one of `targets` or reads one (transitively):
    /// only such values need cotangents.
    private func nodesReaching(_ targets: Set<ValueID>, upTo last: ValueID) -> [Bool] {
        var reaches = [Bool](repeating: false, count: last + 1)
        for id in 0...last {
            reaches[id] = targets.contains(id) || graph.nodes[id].inputs.contains { reaches[$0] }
        }
        return reaches
    }
}

/// The cotangents accumulated so far, one per value; several users' contributions are summed.
struct Cotangents {
    let builder: GraphBuilder
    /// Values with no path to a requested value get no cotangent (pruning).
    let leadsToTarget: [Bool]
    private var byValue: [ValueID: Tensor] = [:]

    init(builder: GraphBuilder, leadsToTarget: [Bool]) {
        self.builder = builder
        self.leadsToTarget = leadsToTarget
    }

    subscript(id: ValueID) -> Tensor? { byValue[id] }

    /// Whether a contribution to input `id` would be used; rules skip building it otherwise.
    func wants(_ id: ValueID) -> Bool {
        leadsToTarget[id] && builder.graph.nodes[id].type.dtype.isFloatingPoint
    }

    /// Adds `contribution` to the cotangent of `id` (ignored if `id` needs none).
    mutating func add(_ contribution: Tensor, to id: ValueID) {
        guard wants(id) else { return }
        precondition(contribution.type == builder.graph.nodes[id].type,
                     "VJP rule produced \(contribution.type) for %\(id) of type \(builder.graph.nodes[id].type)")
        if let existing = byValue[id] {
            byValue[id] = existing + contribution
        } else {
            byValue[id] = contribution
        }
    }
}

/// `gradient` (of a broadcast result) summed back to `shape`: over the leading axes the
/// operand lacked and over the axes where it had extent 1, then reshaped.
func sumToShape(_ gradient: Tensor, _ shape: Shape) -> Tensor {
    if gradient.shape == shape { return gradient }
    let offset = gradient.rank - shape.rank
    precondition(offset >= 0, "cannot sum \(gradient.shape) down to \(shape)")
    // Axes of extent 1 need no sum: the reshape drops or keeps them.
    let axes = (0..<gradient.rank).filter { axis in
        gradient.shape[axis] != 1 && (axis < offset || shape[axis - offset] == 1)
    }
    let summed = axes.isEmpty ? gradient : gradient.sum(axes: axes)
    return summed.reshaped(shape)
}

/// Appends the backward nodes of `loss` to its builder and returns d loss / d value for each
/// of `values` (see `GraphBuilder.gradients(of:withRespectTo:seed:)`).
public func gradients(of loss: Tensor, withRespectTo values: [Tensor],
                      file: String = #fileID, line: Int = #line) -> [Tensor] {
    loss.builder.gradients(of: loss, withRespectTo: values, file: file, line: line)
}
