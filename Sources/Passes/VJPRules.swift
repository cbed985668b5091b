import KilnGraph

// The vector-Jacobian product of every op, in one switch (the compiler lists a missed op).
//
// Each rule reads the node's inputs `x`/`a`/`b`, its output `y` and the cotangent `g` of the
// output, and adds the cotangent of each input. Rules are built from graph ops only, so they
// can be differentiated again; ops that are piecewise constant (comparisons, sign, pooling
// routing masks) contribute nothing.

extension GraphBuilder {
    /// Adds the contributions of `node`'s VJP to the cotangents of its inputs.
    func appendVJP(of node: Node, output y: Tensor, cotangent g: Tensor, into cotangents: inout Cotangents) {
        let inputs = node.inputs.map(tensor)
        /// Adds a contribution to input `index`, built only if that input needs one.
        func add(_ index: Int, _ contribution: @autoclosure () -> Tensor) {
            let id = node.inputs[index]
            if cotangents.wants(id) { cotangents.add(contribution(), to: id) }
        }
        /// Adds a contribution computed at the broadcast result shape, summed back to input `index`.
        func addBroadcast(_ index: Int, _ contribution: @autoclosure () -> Tensor) {
            add(index, sumToShape(contribution(), inputs[index].shape))
        }

        switch node.op {
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal:
            return  // leaves: nothing upstream

        case let .unary(f):
            let x = inputs[0]
            switch f {
            case .neg: add(0, -g)
            case .exp: add(0, g * y)
            case .log: add(0, g / x)
            case .sqrt: add(0, g * 0.5 / y)
            case .square: add(0, g * (x * 2))
            case .tanh: add(0, g * (1 - y * y))
            case .sigmoid: add(0, g * (y * (1 - y)))
            // y > 0 exactly where x > 0; reading the output lets the forward pre-activation
            // die inside a fused GEMM/conv epilogue.
            case .relu: add(0, g * y.greater(0))
            case .softplus: add(0, g * sigmoid(x))
            case .abs: add(0, g * sign(x))
            case .sign: return  // piecewise constant
            case .reciprocal: add(0, -(g * (y * y)))
            }

        case let .power(p):
            let x = inputs[0]
            if p == 0 { return }
            add(0, p == 1 ? g : g * (pow(x, p - 1) * p))

        case let .binary(f):
            let a = inputs[0], b = inputs[1]
            switch f {
            case .add:
                addBroadcast(0, g); addBroadcast(1, g)
            case .sub:
                addBroadcast(0, g); addBroadcast(1, -g)
            case .mul:
                addBroadcast(0, g * b); addBroadcast(1, g * a)
            case .div:
                addBroadcast(0, g / b); addBroadcast(1, -(g * y / b))
            case .maximum, .minimum:
                // Ties give the whole gradient to `a` (a >= b for maximum, a <= b for minimum),
                // so the two contributions always sum to g.
                let aWins = f == .maximum ? a.greaterEqual(b) : a.lessEqual(b)
                addBroadcast(0, g * aWins); addBroadcast(1, g * (1 - aWins))
            case .less, .lessEqual, .greater, .greaterEqual, .equal:
                return  // 0/1 masks are piecewise constant
            }

        case let .adamUpdate(formula):
            // Each formula's partial derivatives, so an update can itself be differentiated.
            switch formula {
            case .firstMoment:  // y = m + c₁·(grad − m)
                let (m, grad, c1) = (inputs[0], inputs[1], inputs[2])
                addBroadcast(0, g * (1 - c1)); addBroadcast(1, g * c1); addBroadcast(2, g * (grad - m))
            case .secondMoment:  // y = β₂·v + c₂·grad²
                let (v, grad, beta2, c2) = (inputs[0], inputs[1], inputs[2], inputs[3])
                addBroadcast(0, g * beta2); addBroadcast(1, g * c2 * (grad * 2))
                addBroadcast(2, g * v); addBroadcast(3, g * square(grad))
            case .parameter:  // y = p − α·m / d with d = √v·r + ε
                let (m, v, alpha, r) = (inputs[1], inputs[2], inputs[3], inputs[4])
                let root = sqrt(v)
                let d = root * r + inputs[5]
                let q = g * alpha * m / square(d)  // g·∂y/∂d
                addBroadcast(0, g)
                addBroadcast(1, -(g * alpha / d))
                addBroadcast(2, q * r / (2 * root))
                addBroadcast(3, -(g * m / d))
                addBroadcast(4, q * root)
                addBroadcast(5, q)
            }

        case .select:
            // The condition is piecewise constant; g flows to the branch each element took.
            let condition = inputs[0]
            let zero = constant(0, dtype: g.dtype)
            addBroadcast(1, select(condition, g, zero))
            addBroadcast(2, select(condition, zero, g))

        case .cast:
            // Only float-to-float casts carry a gradient (`wants` rejects integer inputs).
            guard y.dtype.isFloatingPoint else { return }
            add(0, g.cast(to: inputs[0].dtype))

        case let .reduce(f, axes, keepDims):
            let x = inputs[0]
            var kept = x.shape.dims
            for axis in axes { kept[axis] = 1 }
            let gKept = keepDims ? g : g.reshaped(Shape(kept))
            switch f {
            case .sum:
                add(0, gKept.broadcast(to: x.shape))
            case .mean:
                let count = axes.reduce(1) { $0 * x.shape[$1] }
                add(0, (gKept / Double(count)).broadcast(to: x.shape))
            case .max:
                // Every maximum of a window shares the gradient equally (as torch.amax).
                let yKept = keepDims ? y : y.reshaped(Shape(kept))
                let isMax = x.equal(yKept.broadcast(to: x.shape))
                let count = isMax.sum(axes: axes, keepDims: true)
                add(0, isMax * (gKept / count).broadcast(to: x.shape))
            }

        case let .matmul(ta, tb):
            // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G, then undo op. Every case is
            // one matmul with transpose flags; no transpose is materialised.
            let a = inputs[0], b = inputs[1]
            switch (ta, tb) {
            case (false, false):
                add(0, matmul(g, b, transposeB: true)); add(1, matmul(a, g, transposeA: true))
            case (true, false):
                add(0, matmul(b, g, transposeB: true)); add(1, matmul(a, g))
            case (false, true):
                add(0, matmul(g, b)); add(1, matmul(g, a, transposeA: true))
            case (true, true):
                add(0, matmul(b, g, transposeA: true, transposeB: true))
                add(1, matmul(g, a, transposeA: true, transposeB: true))
            }

        case .reshape:
            add(0, g.reshaped(inputs[0].shape))

        case .stopGradient:
            return  // a constant to differentiation

        case let .transpose(permutation):
            var inverse = permutation
            for (i, axis) in permutation.enumerated() { inverse[axis] = i }
            add(0, g.transposed(inverse))

        case .broadcast:
            add(0, sumToShape(g, inputs[0].shape))

        case let .slice(start, size):
            let shape = inputs[0].shape
            let high = (0..<shape.rank).map { shape[$0] - start[$0] - size[$0] }
            add(0, g.padded(low: start, high: high))

        case .pad(let low, _):
            add(0, g.slice(start: low, size: inputs[0].shape.dims))

        case let .concat(axis):
            var offset = 0
            for (index, input) in inputs.enumerated() {
                let extent = input.shape[axis]
                add(index, g.slice(axis: axis, offset..<offset + extent))
                offset += extent
            }

        case let .conv2d(attributes):
            // <dy, conv(x, w)> = <backwardData(dy, w), x> = <backwardFilter(x, dy), w>.
            let x = inputs[0], w = inputs[1]
            add(0, apply(.conv2dBackwardData(attributes, inputShape: x.shape), [g, w]))
            add(1, apply(.conv2dBackwardFilter(attributes, filterShape: w.shape), [x, g]))

        case let .conv2dBackwardData(attributes, _):
            // y = backwardData(dy, w) is linear in each operand; by the identity above
            // <g, y> = <conv(g, w), dy> = <backwardFilter(g, dy), w>.
            let dy = inputs[0], w = inputs[1]
            add(0, apply(.conv2d(attributes), [g, w]))
            add(1, apply(.conv2dBackwardFilter(attributes, filterShape: w.shape), [g, dy]))

        case let .conv2dBackwardFilter(attributes, _):
            // y = backwardFilter(x, dy): <g, y> = <backwardData(dy, g), x> = <conv(x, g), dy>.
            let x = inputs[0], dy = inputs[1]
            add(0, apply(.conv2dBackwardData(attributes, inputShape: x.shape), [dy, g]))
            add(1, apply(.conv2d(attributes), [x, g]))

        case let .maxPool2d(p):
            add(0, apply(.maxPool2dBackward(p), [inputs[0], g]))

        case let .maxPool2dBackward(p):
            // Linear in dy (its transpose is the gather); the routing is piecewise constant in x.
            add(1, apply(.maxPool2dGather(p), [inputs[0], g]))

        case let .maxPool2dGather(p):
            add(1, apply(.maxPool2dBackward(p), [inputs[0], g]))

        case let .avgPool2d(p):
            add(0, apply(.avgPool2dBackward(p, inputShape: inputs[0].shape), [g]))

        case let .avgPool2dBackward(p, _):
            add(0, apply(.avgPool2d(p), [g]))

        case let .softmax(axis):
            add(0, y * (g - (g * y).sum(axes: [axis], keepDims: true)))

        case let .logSoftmax(axis):
            add(0, g - softmax(inputs[0], axis: axis) * g.sum(axes: [axis], keepDims: true))

        case .softmaxCrossEntropy:
            // Labels are integers and get nothing.
            let logits = inputs[0], labels = inputs[1]
            let target = oneHot(labels, depth: logits.shape[1], dtype: logits.dtype)
            add(0, (softmax(logits, axis: 1) - target) * g.reshaped([logits.shape[0], 1]))

        case .oneHot:
            return  // integer input
        }
    }
}
