/// Why an op cannot be applied to its input types.
public struct TypeRuleFailure: Error, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

extension Op {
    /// The number of inputs the op takes (nil for any number ≥ 1).
    public var arity: Int? {
        switch self {
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal: return 0
        case .unary, .power, .cast, .reduce, .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad,
             .maxPool2d, .avgPool2d, .avgPool2dBackward, .softmax, .logSoftmax, .oneHot: return 1
        case .binary, .matmul, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2dBackward, .maxPool2dGather, .softmaxCrossEntropy: return 2
        case .select: return 3
        case let .adamUpdate(formula): return formula.arity
        case .concat: return nil
        }
    }

    /// The result type of the op applied to inputs of the given types, or why it cannot be applied.
    ///
    /// Leaves carry their type on the node; asking them fails.
    public func resultType(inputs: [TensorType]) -> Result<TensorType, TypeRuleFailure> {
        func fail(_ message: String) -> Result<TensorType, TypeRuleFailure> { .failure(TypeRuleFailure(message)) }
        if let arity, inputs.count != arity { return fail("expects \(arity) inputs, found \(inputs.count)") }
        if arity == nil, inputs.isEmpty { return fail("expects at least one input") }
        func requireFloat(_ t: TensorType, _ what: String = "input") -> TypeRuleFailure? {
            t.dtype.isFloatingPoint ? nil : TypeRuleFailure("\(what) must be floating point, found \(t.dtype)")
        }
        func sameDType(_ types: [TensorType]) -> TypeRuleFailure? {
            let first = types[0].dtype
            for t in types.dropFirst() where t.dtype != first {
                return TypeRuleFailure("dtypes differ: \(types.map { "\($0)" }.joined(separator: " and "))")
            }
            return nil
        }
        func validAxes(_ axes: [Int], rank: Int) -> Bool {
            Set(axes).count == axes.count && axes.allSatisfy { $0 >= 0 && $0 < rank }
        }

        switch self {
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal:
            return fail("leaf ops carry their own type")

        case let .unary(f):
            if f != .neg && f != .abs && f != .sign && f != .square, let e = requireFloat(inputs[0]) { return .failure(e) }
            return .success(inputs[0])

        case let .binary(f):
            if let e = sameDType(inputs) { return .failure(e) }
            if f == .div || f == .maximum || f == .minimum || f.isComparison {
                // Integer division and comparisons are fine; no extra rule.
            }
            guard let shape = Shape.broadcast(inputs[0].shape, inputs[1].shape) else {
                return fail("shapes \(inputs[0].shape) and \(inputs[1].shape) do not broadcast")
            }
            return .success(TensorType(shape, inputs[0].dtype))

        case .power:
            if let e = requireFloat(inputs[0]) { return .failure(e) }
            return .success(inputs[0])

        case .select:
            if let e = sameDType(Array(inputs[1...])) { return .failure(e) }
            guard let ab = Shape.broadcast(inputs[1].shape, inputs[2].shape),
                  let shape = Shape.broadcast(inputs[0].shape, ab) else {
                return fail("shapes \(inputs.map { "\($0.shape)" }.joined(separator: ", ")) do not broadcast")
            }
            return .success(TensorType(shape, inputs[1].dtype))

        case .adamUpdate:
            if let e = sameDType(inputs) { return .failure(e) }
            if let e = requireFloat(inputs[0]) { return .failure(e) }
            var shape = inputs[0].shape
            for input in inputs.dropFirst() {
                guard let joined = Shape.broadcast(shape, input.shape) else {
                    return fail("shapes \(inputs.map { "\($0.shape)" }.joined(separator: ", ")) do not broadcast")
                }
                shape = joined
            }
            return .success(TensorType(shape, inputs[0].dtype))

        case let .cast(dtype):
            return .success(TensorType(inputs[0].shape, dtype))

        case let .reduce(f, axes, keepDims):
            let x = inputs[0]
            guard validAxes(axes, rank: x.shape.rank) else {
                return fail("axes \(axes) are invalid for rank \(x.shape.rank) input \(x.shape)")
            }
            if f == .mean, let e = requireFloat(x) { return .failure(e) }
            var dims: [Int] = []
            for (axis, d) in x.shape.dims.enumerated() {
                if axes.contains(axis) { if keepDims { dims.append(1) } } else { dims.append(d) }
            }
            return .success(TensorType(Shape(dims), x.dtype))

        case let .matmul(ta, tb):
            let a = inputs[0], b = inputs[1]
            if let e = sameDType(inputs) { return .failure(e) }
            guard a.shape.rank == 2, b.shape.rank == 2 else {
                return fail("expects rank-2 operands, found \(a.shape) and \(b.shape)")
            }
            let (m, ka) = ta ? (a.shape[1], a.shape[0]) : (a.shape[0], a.shape[1])
            let (kb, n) = tb ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard ka == kb else {
                return fail("inner dimensions differ: \(a.shape)\(ta ? "ᵀ" : "") · \(b.shape)\(tb ? "ᵀ" : "") (\(ka) vs \(kb))")
            }
            return .success(TensorType([m, n], a.dtype))

        case .stopGradient:
            return .success(inputs[0])

        case let .reshape(shape):
            guard shape.count == inputs[0].shape.count, shape.dims.allSatisfy({ $0 >= 0 }) else {
                return fail("cannot reshape \(inputs[0].shape) (\(inputs[0].shape.count) elements) to \(shape) (\(shape.count) elements)")
            }
            return .success(TensorType(shape, inputs[0].dtype))

        case let .transpose(permutation):
            let x = inputs[0]
            guard permutation.count == x.shape.rank, validAxes(permutation, rank: x.shape.rank) else {
                return fail("permutation \(permutation) is invalid for \(x.shape)")
            }
            return .success(TensorType(Shape(permutation.map { x.shape[$0] }), x.dtype))

        case let .broadcast(shape):
            // [1] "broadcasts" to [-3] by the numpy rule alone; a negative extent is never a shape.
            guard shape.dims.allSatisfy({ $0 >= 0 }), inputs[0].shape.broadcasts(to: shape) else {
                return fail("\(inputs[0].shape) does not broadcast to \(shape)")
            }
            return .success(TensorType(shape, inputs[0].dtype))

        case let .slice(start, size):
            let x = inputs[0]
            guard start.count == x.shape.rank, size.count == x.shape.rank,
                  zip(zip(start, size), x.shape.dims).allSatisfy({ $0.0 >= 0 && $0.1 >= 0 && $0.0 + $0.1 <= $1 }) else {
                return fail("slice start \(start) size \(size) is out of bounds for \(x.shape)")
            }
            return .success(TensorType(Shape(size), x.dtype))

        case let .pad(low, high):
            let x = inputs[0]
            guard low.count == x.shape.rank, high.count == x.shape.rank,
                  (low + high).allSatisfy({ $0 >= 0 }) else {
                return fail("padding low \(low) high \(high) is invalid for \(x.shape)")
            }
            return .success(TensorType(Shape((0..<x.shape.rank).map { x.shape[$0] + low[$0] + high[$0] }), x.dtype))

        case let .concat(axis):
            if let e = sameDType(inputs) { return .failure(e) }
            let first = inputs[0].shape
            guard axis >= 0, axis < first.rank else { return fail("axis \(axis) is invalid for \(first)") }
            var dims = first.dims
            dims[axis] = 0
            for t in inputs {
                var other = t.shape.dims
                guard other.count == first.rank else { return fail("ranks differ: \(inputs.map { "\($0.shape)" })") }
                dims[axis] += other[axis]
                other[axis] = first[axis]
                guard other == first.dims else {
                    return fail("shapes \(inputs.map { "\($0.shape)" }.joined(separator: ", ")) differ outside axis \(axis)")
                }
            }
            return .success(TensorType(Shape(dims), inputs[0].dtype))

        case let .conv2d(a):
            let x = inputs[0], w = inputs[1]
            if let e = sameDType(inputs) ?? requireFloat(x) { return .failure(e) }
            guard x.shape.rank == 4, w.shape.rank == 4 else {
                return fail("expects input [N, C, H, W] and weight [O, C, KH, KW], found \(x.shape) and \(w.shape)")
            }
            guard x.shape[1] == w.shape[1] else {
                return fail("input \(x.shape) has \(x.shape[1]) channels, weight \(w.shape) expects \(w.shape[1])")
            }
            guard a.fits(height: x.shape[2], width: x.shape[3], kernelH: w.shape[2], kernelW: w.shape[3]) else {
                return fail("kernel \(w.shape[2])x\(w.shape[3]) with \(a) does not fit input \(x.shape)")
            }
            let (oh, ow) = a.outputSize(height: x.shape[2], width: x.shape[3], kernelH: w.shape[2], kernelW: w.shape[3])
            return .success(TensorType([x.shape[0], w.shape[0], oh, ow], x.dtype))

        case let .conv2dBackwardData(a, inputShape):
            let dy = inputs[0], w = inputs[1]
            if let e = sameDType(inputs) { return .failure(e) }
            guard inputShape.rank == 4, w.shape.rank == 4, inputShape[1] == w.shape[1] else {
                return fail("input shape \(inputShape) does not match weight \(w.shape)")
            }
            guard a.fits(height: inputShape[2], width: inputShape[3], kernelH: w.shape[2], kernelW: w.shape[3]) else {
                return fail("kernel \(w.shape[2])x\(w.shape[3]) with \(a) does not fit input \(inputShape)")
            }
            let (oh, ow) = a.outputSize(height: inputShape[2], width: inputShape[3], kernelH: w.shape[2], kernelW: w.shape[3])
            guard dy.shape == [inputShape[0], w.shape[0], oh, ow] else {
                return fail("gradient \(dy.shape) does not match output [\(inputShape[0]), \(w.shape[0]), \(oh), \(ow)]")
            }
            return .success(TensorType(inputShape, dy.dtype))

        case let .conv2dBackwardFilter(a, filterShape):
            let x = inputs[0], dy = inputs[1]
            if let e = sameDType(inputs) { return .failure(e) }
            guard x.shape.rank == 4, filterShape.rank == 4, x.shape[1] == filterShape[1] else {
                return fail("input \(x.shape) does not match filter shape \(filterShape)")
            }
            guard a.fits(height: x.shape[2], width: x.shape[3], kernelH: filterShape[2], kernelW: filterShape[3]) else {
                return fail("kernel \(filterShape[2])x\(filterShape[3]) with \(a) does not fit input \(x.shape)")
            }
            let (oh, ow) = a.outputSize(height: x.shape[2], width: x.shape[3], kernelH: filterShape[2], kernelW: filterShape[3])
            guard dy.shape == [x.shape[0], filterShape[0], oh, ow] else {
                return fail("gradient \(dy.shape) does not match output [\(x.shape[0]), \(filterShape[0]), \(oh), \(ow)]")
            }
            return .success(TensorType(filterShape, x.dtype))

        case let .maxPool2d(p), let .avgPool2d(p):
            let x = inputs[0]
            if let e = requireFloat(x) { return .failure(e) }
            guard x.shape.rank == 4 else { return fail("expects [N, C, H, W], found \(x.shape)") }
            guard p.fits(height: x.shape[2], width: x.shape[3]) else { return fail("window \(p) does not fit input \(x.shape)") }
            let (oh, ow) = p.outputSize(height: x.shape[2], width: x.shape[3])
            return .success(TensorType([x.shape[0], x.shape[1], oh, ow], x.dtype))

        case let .maxPool2dBackward(p):
            let x = inputs[0], dy = inputs[1]
            if let e = sameDType(inputs) { return .failure(e) }
            guard x.shape.rank == 4 else { return fail("expects [N, C, H, W], found \(x.shape)") }
            guard p.fits(height: x.shape[2], width: x.shape[3]) else { return fail("window \(p) does not fit input \(x.shape)") }
            let (oh, ow) = p.outputSize(height: x.shape[2], width: x.shape[3])
            guard dy.shape == [x.shape[0], x.shape[1], oh, ow] else {
                return fail("gradient \(dy.shape) does not match pooled shape of \(x.shape)")
            }
            return .success(x)

        case let .maxPool2dGather(p):
            let x = inputs[0], g = inputs[1]
            if let e = sameDType(inputs) { return .failure(e) }
            guard x.shape.rank == 4, g.shape == x.shape else {
                return fail("expects two [N, C, H, W] tensors of one shape, found \(x.shape) and \(g.shape)")
            }
            guard p.fits(height: x.shape[2], width: x.shape[3]) else { return fail("window \(p) does not fit input \(x.shape)") }
            let (oh, ow) = p.outputSize(height: x.shape[2], width: x.shape[3])
            return .success(TensorType([x.shape[0], x.shape[1], oh, ow], x.dtype))

        case let .avgPool2dBackward(p, inputShape):
            let dy = inputs[0]
            guard inputShape.rank == 4 else { return fail("input shape \(inputShape) is not [N, C, H, W]") }
            guard p.fits(height: inputShape[2], width: inputShape[3]) else {
                return fail("window \(p) does not fit input \(inputShape)")
            }
            let (oh, ow) = p.outputSize(height: inputShape[2], width: inputShape[3])
            guard dy.shape == [inputShape[0], inputShape[1], oh, ow] else {
                return fail("gradient \(dy.shape) does not match pooled shape of \(inputShape)")
            }
            return .success(TensorType(inputShape, dy.dtype))

        case let .softmax(axis), let .logSoftmax(axis):
            let x = inputs[0]
            if let e = requireFloat(x) { return .failure(e) }
            guard axis >= 0, axis < x.shape.rank else { return fail("axis \(axis) is invalid for \(x.shape)") }
            return .success(x)

        case .softmaxCrossEntropy:
            let logits = inputs[0], labels = inputs[1]
            if let e = requireFloat(logits, "logits") { return .failure(e) }
            guard labels.dtype == .int32 else { return fail("labels must be i32, found \(labels.dtype)") }
            guard logits.shape.rank == 2, labels.shape == [logits.shape[0]] else {
                return fail("expects logits [N, C] and labels [N], found \(logits.shape) and \(labels.shape)")
            }
            return .success(TensorType([logits.shape[0]], logits.dtype))

        case let .oneHot(depth, dtype):
            guard inputs[0].dtype == .int32 else { return fail("labels must be i32, found \(inputs[0].dtype)") }
            guard depth > 0 else { return fail("depth must be positive, found \(depth)") }
            return .success(TensorType(Shape(inputs[0].shape.dims + [depth]), dtype))
        }
    }
}
