/// Where a value lives when a compiled program runs. Passes and the runtime ask the op
/// (`Op.storage`) instead of switching over op kinds themselves, so a new op is classified in
/// exactly one place, and the compiler refuses to build until it is.
public enum StorageClass: Sendable, Hashable {
    /// Parameters and state: in the `ParameterStore`, outside the arena, shared across programs.
    case persistent
    /// Compile-time values: filled once when the program is built, outside the arena.
    case constant
    /// Graph inputs: in the arena, written by the caller, never by `run()`.
    case input
    /// Reshapes and stop-gradients: the operand's buffer, read under another shape (or the same).
    case view
    /// Everything else: written by a kernel each step.
    case computed
}

extension Op {
    /// Where the op's value lives (no `default:`: every new op must be classified here).
    public var storage: StorageClass {
        switch self {
        case .input: return .input
        case .parameter, .state: return .persistent
        case .constant: return .constant
        case .reshape, .stopGradient: return .view
        case .randomUniform, .randomNormal, .unary, .binary, .power, .select, .adamUpdate, .cast, .reduce, .matmul,
             .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return .computed
        }
    }

    /// Whether the value shares its operand's buffer (a reshape, a stop-gradient).
    public var isView: Bool { storage == .view }
    /// Whether a kernel computes the value each step.
    public var needsKernel: Bool { storage == .computed }
    /// Whether the value lives outside the arena (parameters, state, constants).
    public var livesOutsideArena: Bool { storage == .persistent || storage == .constant }

    /// Whether the op reads every operand element at the index it writes (given equal shapes),
    /// so its output may overwrite a same-shaped operand tile by tile (in-place eligibility).
    public var isSameIndexElementwise: Bool {
        switch self {
        case .unary, .binary, .power, .select, .adamUpdate, .cast: return true
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal, .reduce, .matmul, .reshape, .stopGradient,
             .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return false
        }
    }
}

extension Op {
    /// Whether the op has no inputs (leaves: inputs, parameters, state, constants, random draws).
    public var isLeaf: Bool {
        switch self {
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal: return true
        case .unary, .binary, .power, .select, .adamUpdate, .cast, .reduce, .matmul, .reshape, .stopGradient, .transpose, .broadcast,
             .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return false
        }
    }

    /// The name an input, parameter or state is bound by (nil for every other op).
    public var bindingName: String? {
        switch self {
        case let .input(name), let .parameter(name, _), let .state(name, _): return name
        case .constant, .randomUniform, .randomNormal, .unary, .binary, .power, .select, .adamUpdate, .cast, .reduce, .matmul,
             .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return nil
        }
    }

    /// The counter-based generator stream a random draw reads (nil for every other op). A graph
    /// builder continuing a graph starts new draws after the largest stream in use.
    public var randomStream: Int? {
        switch self {
        case let .randomUniform(stream), let .randomNormal(stream): return stream
        case .input, .parameter, .state, .constant, .unary, .binary, .power, .select, .adamUpdate, .cast, .reduce,
             .matmul, .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData,
             .conv2dBackwardFilter, .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return nil
        }
    }

    /// Whether two nodes of this op with equal attributes and equal inputs always hold the same
    /// value, so common-subexpression elimination may merge them. Named leaves are distinct
    /// values whatever their attributes, and two random draws are independent.
    public var isFunctionOfInputs: Bool {
        switch self {
        case .input, .parameter, .state, .randomUniform, .randomNormal: return false
        case .constant, .unary, .binary, .power, .select, .adamUpdate, .cast, .reduce, .matmul, .reshape, .stopGradient, .transpose,
             .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return true
        }
    }

    /// Floating-point operations of one evaluation in Kiln's FLOP model (the one benchmark
    /// records use): 2 per multiply-add of a matmul (2·m·n·k), a convolution and both of its
    /// backward ops (2·N·O·OH·OW·C·KH·KW each). Every other op counts 0: elementwise arithmetic,
    /// pooling, reductions and losses are memory-bound and left out of the peak-FLOP figures.
    /// `inputs` are the operands' shapes, `output` the result's.
    public func multiplyAddFlops(inputs: [Shape], output: Shape) -> Int {
        switch self {
        case let .matmul(transposeA, transposeB):
            let a = inputs[0].dims, b = inputs[1].dims
            let (m, k) = transposeA ? (a[1], a[0]) : (a[0], a[1])
            let n = transposeB ? b[0] : b[1]
            return 2 * m * n * k
        case .conv2d:
            // (x [N,C,H,W], w [O,C,KH,KW]) → y [N,O,OH,OW]
            let w = inputs[1].dims
            return 2 * output.count * w[1] * w[2] * w[3]
        case .conv2dBackwardData:
            // (dy [N,O,OH,OW], w [O,C,KH,KW]) → dx
            let w = inputs[1].dims
            return 2 * inputs[0].count * w[1] * w[2] * w[3]
        case .conv2dBackwardFilter:
            // (x, dy [N,O,OH,OW]) → dw [O,C,KH,KW]
            let w = output.dims
            return 2 * inputs[1].count * w[1] * w[2] * w[3]
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal, .unary, .binary, .power,
             .select, .adamUpdate, .cast, .reduce, .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad, .concat,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return 0
        }
    }
}

extension Graph {
    /// `Op.multiplyAddFlops` of node `id`.
    public func multiplyAddFlops(of id: ValueID) -> Int {
        nodes[id].op.multiplyAddFlops(inputs: nodes[id].inputs.map { nodes[$0].type.shape }, output: nodes[id].type.shape)
    }

    /// The graph's FLOPs in Kiln's FLOP model (`Op.multiplyAddFlops`), summed over its nodes.
    public var multiplyAddFlops: Int { nodes.indices.reduce(0) { $0 + multiplyAddFlops(of: $1) } }

    /// The value whose buffer `id` reads: `id` itself, or the source of a chain of views.
    public func viewRoot(_ id: ValueID) -> ValueID {
        var id = id
        while nodes[id].op.isView { id = nodes[id].inputs[0] }
        return id
    }
}
