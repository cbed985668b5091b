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
    /// Reshapes: the operand's buffer, read under another shape.
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
        case .reshape: return .view
        case .randomUniform, .randomNormal, .unary, .binary, .power, .select, .cast, .reduce, .matmul,
             .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return .computed
        }
    }

    /// Whether the value shares its operand's buffer (a reshape).
    public var isView: Bool { storage == .view }
    /// Whether a kernel computes the value each step.
    public var needsKernel: Bool { storage == .computed }
    /// Whether the value lives outside the arena (parameters, state, constants).
    public var livesOutsideArena: Bool { storage == .persistent || storage == .constant }

    /// Whether the op reads every operand element at the index it writes (given equal shapes),
    /// so its output may overwrite a same-shaped operand tile by tile (in-place eligibility).
    public var isSameIndexElementwise: Bool {
        switch self {
        case .unary, .binary, .power, .select, .cast: return true
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal, .reduce, .matmul, .reshape,
             .transpose, .broadcast, .slice, .pad, .concat, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter,
             .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return false
        }
    }
}

extension Graph {
    /// The value whose buffer `id` reads: `id` itself, or the source of a chain of views.
    public func viewRoot(_ id: ValueID) -> ValueID {
        var id = id
        while nodes[id].op.isView { id = nodes[id].inputs[0] }
        return id
    }
}
