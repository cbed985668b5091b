/// A handle to a value in a graph under construction. Operators and free functions on
/// tensors append nodes to the tensor's builder, so model code reads like the maths:
///
///     let h = relu(x.matmul(w1) + b1)
public struct Tensor {
    /// The node that produces this value.
    public let id: ValueID
    /// The builder that owns the node.
    public let builder: GraphBuilder

    public init(id: ValueID, builder: GraphBuilder) { self.id = id; self.builder = builder }

    public var type: TensorType { builder.graph.nodes[id].type }
    public var shape: Shape { type.shape }
    public var dtype: DType { type.dtype }
    public var rank: Int { type.shape.rank }

    /// A scalar constant of this tensor's dtype.
    func scalar(_ value: Double) -> Tensor { builder.constant(value, dtype: dtype) }

    /// Normalises a possibly negative axis (−1 is the last axis).
    func axis(_ axis: Int) -> Int { axis < 0 ? axis + rank : axis }
}

// MARK: Arithmetic operators (numpy broadcasting). Operators cannot take a caller's
// location, so their errors point at the line that created the left operand.

private func locationOf(_ t: Tensor) -> (String, Int) {
    let location = t.builder.graph.nodes[t.id].location
    return (location?.file ?? "?", location?.line ?? 0)
}

private func binary(_ f: BinaryFunction, _ a: Tensor, _ b: Tensor) -> Tensor {
    // In `2 - x` the left operand is a scalar made here, with no location: use x's.
    let (file, line) = locationOf(a.builder.graph.nodes[a.id].location == nil ? b : a)
    return a.builder.apply(.binary(f), [a, b], file: file, line: line)
}

public func + (a: Tensor, b: Tensor) -> Tensor { binary(.add, a, b) }
public func - (a: Tensor, b: Tensor) -> Tensor { binary(.sub, a, b) }
public func * (a: Tensor, b: Tensor) -> Tensor { binary(.mul, a, b) }
public func / (a: Tensor, b: Tensor) -> Tensor { binary(.div, a, b) }
public func + (a: Tensor, b: Double) -> Tensor { binary(.add, a, a.scalar(b)) }
public func - (a: Tensor, b: Double) -> Tensor { binary(.sub, a, a.scalar(b)) }
public func * (a: Tensor, b: Double) -> Tensor { binary(.mul, a, a.scalar(b)) }
public func / (a: Tensor, b: Double) -> Tensor { binary(.div, a, a.scalar(b)) }
public func + (a: Double, b: Tensor) -> Tensor { binary(.add, b.scalar(a), b) }
public func - (a: Double, b: Tensor) -> Tensor { binary(.sub, b.scalar(a), b) }
public func * (a: Double, b: Tensor) -> Tensor { binary(.mul, b.scalar(a), b) }
public func / (a: Double, b: Tensor) -> Tensor { binary(.div, b.scalar(a), b) }
public prefix func - (x: Tensor) -> Tensor {
    let (file, line) = locationOf(x)
    return x.builder.apply(.unary(.neg), [x], file: file, line: line)
}

// MARK: Elementwise functions

private func unary(_ f: UnaryFunction, _ x: Tensor, _ file: String, _ line: Int) -> Tensor {
    x.builder.apply(.unary(f), [x], file: file, line: line)
}

public func exp(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.exp, x, file, line) }
public func log(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.log, x, file, line) }
public func sqrt(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.sqrt, x, file, line) }
public func square(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.square, x, file, line) }
public func tanh(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.tanh, x, file, line) }
public func sigmoid(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.sigmoid, x, file, line) }
public func relu(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.relu, x, file, line) }
public func softplus(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.softplus, x, file, line) }
public func abs(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.abs, x, file, line) }
public func sign(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.sign, x, file, line) }
public func reciprocal(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { unary(.reciprocal, x, file, line) }
/// `x ** exponent` for a constant exponent.
public func pow(_ x: Tensor, _ exponent: Double, file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.power(exponent: exponent), [x], file: file, line: line)
}
public func maximum(_ a: Tensor, _ b: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    a.builder.apply(.binary(.maximum), [a, b], file: file, line: line)
}
public func minimum(_ a: Tensor, _ b: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    a.builder.apply(.binary(.minimum), [a, b], file: file, line: line)
}
/// Elementwise `condition != 0 ? a : b`, broadcasting all three.
/// One formula of Adam's update (`AdamFormula`) applied to its operands, in the formula's order.
public func adamUpdate(_ formula: AdamFormula, _ operands: [Tensor], file: String = #fileID, line: Int = #line) -> Tensor {
    operands[0].builder.apply(.adamUpdate(formula), operands, file: file, line: line)
}

public func select(_ condition: Tensor, _ a: Tensor, _ b: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    a.builder.apply(.select, [condition, a, b], file: file, line: line)
}

extension Tensor {
    /// Named forms of the arithmetic operators, which carry the caller's location into errors.
    public func adding(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.add), [self, other], file: file, line: line) }
    public func subtracting(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.sub), [self, other], file: file, line: line) }
    public func multiplied(by other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.mul), [self, other], file: file, line: line) }
    public func divided(by other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.div), [self, other], file: file, line: line) }

    /// 1 where the comparison holds, 0 elsewhere (same dtype).
    public func less(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.less), [self, other], file: file, line: line) }
    public func lessEqual(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.lessEqual), [self, other], file: file, line: line) }
    public func greater(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.greater), [self, other], file: file, line: line) }
    public func greaterEqual(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.greaterEqual), [self, other], file: file, line: line) }
    public func equal(_ other: Tensor, file: String = #fileID, line: Int = #line) -> Tensor { builder.apply(.binary(.equal), [self, other], file: file, line: line) }
    public func less(_ value: Double, file: String = #fileID, line: Int = #line) -> Tensor { less(scalar(value), file: file, line: line) }
    public func greater(_ value: Double, file: String = #fileID, line: Int = #line) -> Tensor { greater(scalar(value), file: file, line: line) }

    public func cast(to dtype: DType, file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.cast(dtype), [self], file: file, line: line)
    }

    // MARK: Reductions

    /// Sum over `axes` (all axes when nil; negative axes count from the end).
    public func sum(axes: [Int]? = nil, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.sum, axes, keepDims, file, line)
    }
    public func mean(axes: [Int]? = nil, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.mean, axes, keepDims, file, line)
    }
    public func max(axes: [Int]? = nil, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.max, axes, keepDims, file, line)
    }
    public func sum(axis: Int, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.sum, [axis], keepDims, file, line)
    }
    public func mean(axis: Int, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.mean, [axis], keepDims, file, line)
    }
    public func max(axis: Int, keepDims: Bool = false, file: String = #fileID, line: Int = #line) -> Tensor {
        reduce(.max, [axis], keepDims, file, line)
    }
    private func reduce(_ f: ReduceFunction, _ axes: [Int]?, _ keepDims: Bool, _ file: String, _ line: Int) -> Tensor {
        let axes = (axes ?? Array(0..<rank)).map(axis).sorted()
        return builder.apply(.reduce(f, axes: axes, keepDims: keepDims), [self], file: file, line: line)
    }

    // MARK: Linear algebra

    /// The matrix product `self · other` (either operand optionally transposed).
    public func matmul(_ other: Tensor, transposeSelf: Bool = false, transposeOther: Bool = false,
                       file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.matmul(transposeA: transposeSelf, transposeB: transposeOther), [self, other], file: file, line: line)
    }

    // MARK: Data movement

    public func reshaped(_ shape: Shape, file: String = #fileID, line: Int = #line) -> Tensor {
        if shape == self.shape { return self }
        return builder.apply(.reshape(shape), [self], file: file, line: line)
    }
    /// The same value with no gradient flowing back through it (PyTorch's `detach()`, JAX's
    /// `stop_gradient`): a constant to `gradients(of:withRespectTo:)`.
    public func detached(file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.stopGradient, [self], file: file, line: line)
    }
    /// Keeps axis 0 and flattens the rest: [N, C, H, W] → [N, C·H·W].
    public func flatten(file: String = #fileID, line: Int = #line) -> Tensor {
        guard rank >= 1 else { builder.record("flatten", "expects at least one axis, found \(shape)", file, line); return self }
        return reshaped([shape[0], shape.count / Swift.max(shape[0], 1)], file: file, line: line)
    }
    /// Permutes axes: result axis i is axis `permutation[i]`.
    public func transposed(_ permutation: [Int], file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.transpose(permutation: permutation), [self], file: file, line: line)
    }
    /// Swaps the two axes of a matrix.
    public var T: Tensor {
        let (file, line) = locationOf(self)
        return transposed([1, 0], file: file, line: line)
    }
    public func broadcast(to shape: Shape, file: String = #fileID, line: Int = #line) -> Tensor {
        if shape == self.shape { return self }
        return builder.apply(.broadcast(shape), [self], file: file, line: line)
    }
    public func slice(start: [Int], size: [Int], file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.slice(start: start, size: size), [self], file: file, line: line)
    }
    /// Columns/rows `range` along `axis`, everything along the other axes.
    public func slice(axis: Int, _ range: Range<Int>, file: String = #fileID, line: Int = #line) -> Tensor {
        var start = [Int](repeating: 0, count: rank), size = shape.dims
        let a = self.axis(axis)
        guard (0..<rank).contains(a) else {
            builder.record("slice", "axis \(axis) is invalid for \(shape)", file, line)
            return self
        }
        start[a] = range.lowerBound
        size[a] = range.count
        return slice(start: start, size: size, file: file, line: line)
    }
    public func padded(low: [Int], high: [Int], file: String = #fileID, line: Int = #line) -> Tensor {
        builder.apply(.pad(low: low, high: high), [self], file: file, line: line)
    }
}

/// Joins tensors along `axis`.
public func concat(_ tensors: [Tensor], axis: Int, file: String = #fileID, line: Int = #line) -> Tensor {
    let first = tensors[0]
    return first.builder.apply(.concat(axis: first.axis(axis)), tensors, file: file, line: line)
}

/// Matrix product `a · b`.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false,
                   file: String = #fileID, line: Int = #line) -> Tensor {
    a.builder.apply(.matmul(transposeA: transposeA, transposeB: transposeB), [a, b], file: file, line: line)
}

// MARK: Convolution and pooling (NCHW)

/// 2-D convolution of `x` [N, C, H, W] with `weight` [O, C, KH, KW] (cross-correlation, as PyTorch).
public func conv2d(_ x: Tensor, _ weight: Tensor, stride: Int = 1, padding: Int = 0,
                   file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.conv2d(Conv2DAttributes(stride: stride, padding: padding)), [x, weight], file: file, line: line)
}

/// Transposed 2-D convolution (PyTorch's `ConvTranspose2d`, a "deconvolution") of `x`
/// [N, C_in, H, W] with `weight` [C_in, C_out, KH, KW], PyTorch's layout for it: the adjoint
/// in its input of `conv2d` with this weight, stride and padding. The result is
/// [N, C_out, (H − 1)·stride − 2·padding + KH + outputPadding, likewise for W]; the convolution
/// maps `stride` sizes to H, and `outputPadding` (below `stride`) picks the larger ones.
/// It is Kiln's `conv2d_backward_data` node, so its gradients are a convolution (in x) and a
/// filter gradient (in weight).
public func convTranspose2d(_ x: Tensor, _ weight: Tensor, stride: Int = 1, padding: Int = 0, outputPadding: Int = 0,
                            file: String = #fileID, line: Int = #line) -> Tensor {
    let (xs, ws) = (x.shape, weight.shape)
    guard xs.rank == 4, ws.rank == 4, xs[1] == ws[0] else {
        x.builder.record("conv_transpose2d", "expects input [N, C_in, H, W] and weight [C_in, C_out, KH, KW], found \(xs) and \(ws)",
                         file, line)
        return x
    }
    guard stride >= 1, padding >= 0, outputPadding >= 0, outputPadding < stride else {
        x.builder.record("conv_transpose2d", "needs stride ≥ 1, padding ≥ 0 and 0 ≤ outputPadding < stride, found stride \(stride), "
                         + "padding \(padding), outputPadding \(outputPadding)", file, line)
        return x
    }
    let size = [2, 3].map { (xs[$0] - 1) * stride - 2 * padding + ws[$0] + outputPadding }
    guard size.allSatisfy({ $0 > 0 }) else {
        x.builder.record("conv_transpose2d", "output size \(size[0])x\(size[1]) of input \(xs), kernel \(ws[2])x\(ws[3]), "
                         + "stride \(stride), padding \(padding) is not positive", file, line)
        return x
    }
    return x.builder.apply(.conv2dBackwardData(Conv2DAttributes(stride: stride, padding: padding),
                                               inputShape: Shape([xs[0], ws[1]] + size)), [x, weight], file: file, line: line)
}

/// Max pooling over `kernel`×`kernel` windows (stride defaults to the kernel).
public func maxPool(_ x: Tensor, _ kernel: Int, stride: Int? = nil, file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.maxPool2d(PoolAttributes(kernel: kernel, stride: stride)), [x], file: file, line: line)
}

/// Average pooling over `kernel`×`kernel` windows (stride defaults to the kernel).
public func avgPool(_ x: Tensor, _ kernel: Int, stride: Int? = nil, file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.avgPool2d(PoolAttributes(kernel: kernel, stride: stride)), [x], file: file, line: line)
}

// MARK: Normalised exponentials and losses

public func softmax(_ x: Tensor, axis: Int = -1, file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.softmax(axis: x.axis(axis)), [x], file: file, line: line)
}
public func logSoftmax(_ x: Tensor, axis: Int = -1, file: String = #fileID, line: Int = #line) -> Tensor {
    x.builder.apply(.logSoftmax(axis: x.axis(axis)), [x], file: file, line: line)
}

/// Per-example softmax cross-entropy of `logits` [N, C] against int32 `labels` [N]; result [N].
public func softmaxCrossEntropy(_ logits: Tensor, labels: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    logits.builder.apply(.softmaxCrossEntropy, [logits, labels], file: file, line: line)
}

/// One-hot rows [N, depth] from int32 labels [N].
public func oneHot(_ labels: Tensor, depth: Int, dtype: DType = .float32, file: String = #fileID, line: Int = #line) -> Tensor {
    labels.builder.apply(.oneHot(depth: depth, dtype: dtype), [labels], file: file, line: line)
}

/// Elementwise binary cross-entropy of `logits` against targets in [0, 1]: softplus(x) − x·z,
/// with softplus evaluated in the stable form log(1 + exp(−|x|)) + max(x, 0). Its gradient is
/// (sigmoid(x) − z)·g: written as max(x, 0) − x·z + softplus(−|x|), the same loss left ~20
/// elementwise ops per element after differentiation (abs, sign, compare, neg, …), the VAE's
/// costliest kernel after its GEMMs.
public func binaryCrossEntropy(logits: Tensor, targets: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    softplus(logits, file: file, line: line) - logits.multiplied(by: targets, file: file, line: line)
}

/// Inverted dropout: zeroes each element with probability `rate` and scales the rest by 1/(1 − rate).
public func dropout(_ x: Tensor, rate: Double, file: String = #fileID, line: Int = #line) -> Tensor {
    guard rate > 0 else { return x }
    if rate >= 1 { x.builder.record("dropout", "rate must be in [0, 1), found \(rate)", file, line); return x }
    let keep = x.builder.randomUniform(x.shape, dtype: x.dtype).less(1 - rate, file: file, line: line)
    return x * keep * (1 / (1 - rate))
}
