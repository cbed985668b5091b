/// Elementwise functions of one value.
public enum UnaryFunction: String, Hashable, Sendable, CaseIterable {
    case neg, exp, log, sqrt, square, tanh, sigmoid, relu, softplus, abs
    /// -1, 0 or +1 (the derivative of `abs` away from 0).
    case sign
    /// 1/x.
    case reciprocal
}

/// Elementwise functions of two values with numpy-style broadcasting.
public enum BinaryFunction: String, Hashable, Sendable, CaseIterable {
    case add, sub, mul, div, maximum, minimum
    /// Comparisons produce 1 where true and 0 where false, in the operands' dtype.
    case less, lessEqual, greater, greaterEqual, equal

    /// Whether the result is a 0/1 mask (no gradient flows through it).
    public var isComparison: Bool {
        switch self {
        case .less, .lessEqual, .greater, .greaterEqual, .equal: return true
        case .add, .sub, .mul, .div, .maximum, .minimum: return false
        }
    }
}

/// Reductions over axes.
public enum ReduceFunction: String, Hashable, Sendable, CaseIterable {
    case sum, mean, max
}

/// How a parameter or state tensor gets its first value.
public enum Initializer: Hashable, Sendable, CustomStringConvertible {
    case zeros
    case ones
    case constant(Double)
    /// Uniform in [low, high).
    case uniform(low: Double, high: Double)
    /// Normal with the given mean and standard deviation.
    case normal(mean: Double, std: Double)

    public var description: String {
        switch self {
        case .zeros: return "zeros"
        case .ones: return "ones"
        case let .constant(v): return "constant(\(v))"
        case let .uniform(low, high): return "uniform(\(low), \(high))"
        case let .normal(mean, std): return "normal(\(mean), \(std))"
        }
    }
}

/// Stride and zero padding of a 2-D convolution over NCHW data with OIHW weights.
public struct Conv2DAttributes: Hashable, Sendable, CustomStringConvertible {
    public var strideH: Int, strideW: Int
    public var padH: Int, padW: Int

    public init(stride: Int = 1, padding: Int = 0) {
        self.init(strideH: stride, strideW: stride, padH: padding, padW: padding)
    }
    public init(strideH: Int, strideW: Int, padH: Int, padW: Int) {
        self.strideH = strideH; self.strideW = strideW; self.padH = padH; self.padW = padW
    }

    /// Whether the strides are positive, the padding is not negative and the kernel fits the
    /// padded input. Checked before `outputSize`, whose truncating division would otherwise
    /// divide by zero or round a kernel that overhangs by less than a stride up to one output.
    func fits(height: Int, width: Int, kernelH: Int, kernelW: Int) -> Bool {
        strideH > 0 && strideW > 0 && padH >= 0 && padW >= 0 && kernelH > 0 && kernelW > 0
            && height + 2 * padH >= kernelH && width + 2 * padW >= kernelW
    }

    /// Output spatial extent for an input extent and kernel extent.
    public func outputSize(height: Int, width: Int, kernelH: Int, kernelW: Int) -> (Int, Int) {
        ((height + 2 * padH - kernelH) / strideH + 1, (width + 2 * padW - kernelW) / strideW + 1)
    }

    public var description: String {
        strideH == strideW && padH == padW ? "stride=\(strideH) pad=\(padH)"
            : "stride=\(strideH)x\(strideW) pad=\(padH)x\(padW)"
    }
}

/// Window and stride of a 2-D pooling over NCHW data (no padding).
public struct PoolAttributes: Hashable, Sendable, CustomStringConvertible {
    public var kernelH: Int, kernelW: Int
    public var strideH: Int, strideW: Int

    public init(kernel: Int, stride: Int? = nil) {
        self.init(kernelH: kernel, kernelW: kernel, strideH: stride ?? kernel, strideW: stride ?? kernel)
    }
    public init(kernelH: Int, kernelW: Int, strideH: Int, strideW: Int) {
        self.kernelH = kernelH; self.kernelW = kernelW; self.strideH = strideH; self.strideW = strideW
    }

    /// Whether the window and strides are positive and the window fits the input (see
    /// `Conv2DAttributes.fits`).
    func fits(height: Int, width: Int) -> Bool {
        kernelH > 0 && kernelW > 0 && strideH > 0 && strideW > 0 && height >= kernelH && width >= kernelW
    }

    public func outputSize(height: Int, width: Int) -> (Int, Int) {
        ((height - kernelH) / strideH + 1, (width - kernelW) / strideW + 1)
    }

    public var description: String {
        kernelH == kernelW && strideH == strideW ? "k=\(kernelH) s=\(strideH)"
            : "k=\(kernelH)x\(kernelW) s=\(strideH)x\(strideW)"
    }
}

/// The operation a node performs. Inputs are listed per case; the result type is
/// inferred by `Op.resultType(inputs:)`.
/// The three elementwise formulas of Adam's update (Kingma & Ba; `torch.optim.Adam`), each one
/// op, so the compiler owns the update: fused, they run as one pass per tile with no scratch.
/// Scalars (c₁ = 1 − β₁, β₂, c₂ = 1 − β₂, α = lr / bias correction 1, r = 1 / √bias correction 2,
/// ε) are ordinary operands, read at run time. √v′ is multiplied by r rather than divided by
/// √bias correction 2 as `torch.optim.Adam` writes it: one division per element fewer, which
/// AVX-512's divider is slow enough to notice (the VAE's two 784×400 updates, 158 → 131 µs a
/// step each); the denominator moves by at most half an ulp.
public enum AdamFormula: String, Hashable, Sendable, CaseIterable {
    /// m′ = m + c₁·(g − m). Operands: m, g, c₁.
    case firstMoment = "first_moment"
    /// v′ = β₂·v + c₂·g². Operands: v, g, β₂, c₂.
    case secondMoment = "second_moment"
    /// p′ = p − (α·m′) / (√v′·r + ε). Operands: p, m′, v′, α, r, ε.
    case parameter

    /// How many operands the formula reads.
    public var arity: Int {
        switch self {
        case .firstMoment: return 3
        case .secondMoment: return 4
        case .parameter: return 6
        }
    }
}

public enum Op: Hashable, Sendable {
    // Leaves (no inputs); the node's type is given when it is created.
    /// A value fed at every step.
    case input(name: String)
    /// A trained tensor that persists across steps.
    case parameter(name: String, initializer: Initializer)
    /// A persistent tensor that is not trained (optimizer moments, running statistics).
    case state(name: String, initializer: Initializer)
    /// A constant: one value (splat over the shape) or one value per element.
    case constant(values: [Double])
    /// Uniform [0, 1) draws from the counter-based generator; `stream` makes each op's draws independent.
    case randomUniform(stream: Int)
    /// Standard normal draws from the counter-based generator.
    case randomNormal(stream: Int)

    // Elementwise.
    case unary(UnaryFunction)
    /// `(a, b)`, broadcasting.
    case binary(BinaryFunction)
    /// `x ** exponent` for a constant exponent.
    case power(exponent: Double)
    /// `(condition, a, b)`: a where condition != 0, else b; all broadcast.
    case select
    /// One formula of Adam's update over broadcasting float operands (`AdamFormula`).
    case adamUpdate(AdamFormula)
    case cast(DType)

    // Reductions and linear algebra.
    case reduce(ReduceFunction, axes: [Int], keepDims: Bool)
    /// `(a, b)` of rank 2: op(a) · op(b) where op transposes when asked.
    case matmul(transposeA: Bool, transposeB: Bool)

    // Data movement.
    case reshape(Shape)
    /// The operand's value, through which no gradient flows (`Tensor.detached()`): a view of its
    /// buffer when compiled, removed by `simplify-algebra` once the gradients are built.
    case stopGradient
    /// Result axis i is input axis permutation[i].
    case transpose(permutation: [Int])
    /// Numpy-style broadcast to a shape.
    case broadcast(Shape)
    /// A box: `start[i] ..< start[i] + size[i]` on every axis.
    case slice(start: [Int], size: [Int])
    /// Zero padding before (`low`) and after (`high`) on every axis.
    case pad(low: [Int], high: [Int])
    /// Any number of inputs joined along `axis`.
    case concat(axis: Int)

    // Convolution and pooling (NCHW).
    /// `(x [N,C,H,W], w [O,C,KH,KW])` → `[N,O,OH,OW]`.
    case conv2d(Conv2DAttributes)
    /// `(dy, w)` → dx of shape `inputShape`: the transpose of `conv2d` in x.
    case conv2dBackwardData(Conv2DAttributes, inputShape: Shape)
    /// `(x, dy)` → dw of shape `filterShape`: the transpose of `conv2d` in w.
    case conv2dBackwardFilter(Conv2DAttributes, filterShape: Shape)
    case maxPool2d(PoolAttributes)
    /// `(x, dy)` → dx: dy routed to the first maximum of each window.
    case maxPool2dBackward(PoolAttributes)
    /// `(x, g)` → pooled shape: g read at the first maximum of each window (the transpose of the backward op in dy).
    case maxPool2dGather(PoolAttributes)
    case avgPool2d(PoolAttributes)
    /// `(dy)` → dx of shape `inputShape`.
    case avgPool2dBackward(PoolAttributes, inputShape: Shape)

    // Normalised exponentials and losses.
    case softmax(axis: Int)
    case logSoftmax(axis: Int)
    /// `(logits [N,C], labels i32 [N])` → per-example loss [N].
    case softmaxCrossEntropy
    /// `(labels i32 [N])` → [N, depth] with 1 at the label.
    case oneHot(depth: Int, dtype: DType)

    /// The name of the op family, as printed (`add`, `matmul`, `conv2d`, …).
    public var name: String {
        switch self {
        case .input: return "input"
        case .parameter: return "parameter"
        case .state: return "state"
        case .constant: return "constant"
        case .randomUniform: return "random_uniform"
        case .randomNormal: return "random_normal"
        case let .unary(f): return f.rawValue
        case let .binary(f): return f.rawValue
        case .power: return "power"
        case .select: return "select"
        case let .adamUpdate(formula): return "adam_\(formula.rawValue)"
        case .cast: return "cast"
        case let .reduce(f, _, _): return "reduce_\(f.rawValue)"
        case .matmul: return "matmul"
        case .reshape: return "reshape"
        case .stopGradient: return "stop_gradient"
        case .transpose: return "transpose"
        case .broadcast: return "broadcast"
        case .slice: return "slice"
        case .pad: return "pad"
        case .concat: return "concat"
        case .conv2d: return "conv2d"
        case .conv2dBackwardData: return "conv2d_backward_data"
        case .conv2dBackwardFilter: return "conv2d_backward_filter"
        case .maxPool2d: return "max_pool2d"
        case .maxPool2dBackward: return "max_pool2d_backward"
        case .maxPool2dGather: return "max_pool2d_gather"
        case .avgPool2d: return "avg_pool2d"
        case .avgPool2dBackward: return "avg_pool2d_backward"
        case .softmax: return "softmax"
        case .logSoftmax: return "log_softmax"
        case .softmaxCrossEntropy: return "softmax_cross_entropy"
        case .oneHot: return "one_hot"
        }
    }

    /// Attributes as printed after the name, e.g. `axes=[1] keep` (empty if none).
    public var attributeText: String {
        func list(_ v: [Int]) -> String { "[" + v.map(String.init).joined(separator: ",") + "]" }
        switch self {
        case let .input(name): return "\"\(name)\""
        case let .parameter(name, initializer): return "\"\(name)\" \(initializer)"
        case let .state(name, initializer): return "\"\(name)\" \(initializer)"
        case let .constant(values):
            if values.count == 1 { return formatNumber(values[0]) }
            let head = values.prefix(4).map(formatNumber).joined(separator: ",")
            return "[\(head)\(values.count > 4 ? ",…" : "")]"
        case let .randomUniform(stream), let .randomNormal(stream): return "stream=\(stream)"
        case .unary, .binary, .select, .adamUpdate, .softmaxCrossEntropy, .stopGradient: return ""
        case let .power(exponent): return "exponent=\(formatNumber(exponent))"
        case let .cast(dtype): return "to=\(dtype)"
        case let .reduce(_, axes, keepDims): return "axes=\(list(axes))" + (keepDims ? " keep" : "")
        case let .matmul(ta, tb): return (ta ? "tA" : "") + (ta && tb ? " " : "") + (tb ? "tB" : "")
        case let .reshape(shape), let .broadcast(shape): return "\(shape)"
        case let .transpose(permutation): return "perm=\(list(permutation))"
        case let .slice(start, size): return "start=\(list(start)) size=\(list(size))"
        case let .pad(low, high): return "low=\(list(low)) high=\(list(high))"
        case let .concat(axis): return "axis=\(axis)"
        case let .conv2d(a): return "\(a)"
        case let .conv2dBackwardData(a, shape): return "\(a) input=\(shape)"
        case let .conv2dBackwardFilter(a, shape): return "\(a) filter=\(shape)"
        case let .maxPool2d(p), let .maxPool2dBackward(p), let .maxPool2dGather(p), let .avgPool2d(p): return "\(p)"
        case let .avgPool2dBackward(p, shape): return "\(p) input=\(shape)"
        case let .softmax(axis), let .logSoftmax(axis): return "axis=\(axis)"
        case let .oneHot(depth, dtype): return "depth=\(depth) \(dtype)"
        }
    }
}

/// Prints integers without a fractional part and other values with full precision.
func formatNumber(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int(v)) }
    return "\(v)"
}
