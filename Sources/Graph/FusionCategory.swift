/// How an op may fuse with its neighbours (TVM's `OpPatternKind`). The fusion pass reads the
/// category; it never switches over op names.
public enum FusionCategory: Int, Hashable, Sendable, Comparable {
    /// One output element from the same-index input elements (operands may broadcast).
    case elementwise
    /// Replicates its input along axes (absorbed into a fused kernel as a strided load).
    case broadcast
    /// Each output element is one input element somewhere else (transpose, slice, pad, concat).
    case injective
    /// Combines many input elements into one (sum, mean, max).
    case reduction
    /// A heavy op whose output can flow through elementwise ops in its epilogue (matmul, conv2d, softmax).
    case outElementwiseFusable
    /// Fuses with nothing (leaves, pools, conv backward ops, random draws, losses).
    case opaque

    public static func < (a: FusionCategory, b: FusionCategory) -> Bool { a.rawValue < b.rawValue }
}

extension Op {
    /// The op's fusion category.
    public var fusionCategory: FusionCategory {
        switch self {
        case .unary, .binary, .power, .select, .adamUpdate: return .elementwise
        case let .cast(dtype): return dtype == .float32 ? .elementwise : .opaque
        case .broadcast: return .broadcast
        case .reshape, .stopGradient, .transpose, .slice, .pad, .concat, .oneHot: return .injective
        case .reduce: return .reduction
        case .matmul, .conv2d, .softmax, .logSoftmax: return .outElementwiseFusable
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal,
             .conv2dBackwardData, .conv2dBackwardFilter, .maxPool2d, .maxPool2dBackward, .maxPool2dGather,
             .avgPool2d, .avgPool2dBackward, .softmaxCrossEntropy:
            return .opaque
        }
    }
}

/// An op's part in a pooled kernel (inference): a convolution whose result only a pooling reads
/// runs a few images at a time into scratch and is pooled at once (`KernelKind.pooled`).
public enum PooledKernelRole: Hashable, Sendable {
    /// May be the root of a pooled kernel (a forward convolution).
    case convolution
    /// May end a pooled kernel (a forward pooling).
    case pooling
    /// Takes no part.
    case none
}

extension Op {
    /// The op's part in a pooled kernel (no `default:`: every new op must say).
    public var pooledKernelRole: PooledKernelRole {
        switch self {
        case .conv2d: return .convolution
        case .maxPool2d, .avgPool2d: return .pooling
        case .input, .parameter, .state, .constant, .randomUniform, .randomNormal, .unary, .binary, .power,
             .select, .adamUpdate, .cast, .reduce, .matmul, .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad, .concat,
             .conv2dBackwardData, .conv2dBackwardFilter, .maxPool2dBackward, .maxPool2dGather, .avgPool2dBackward,
             .softmax, .logSoftmax, .softmaxCrossEntropy, .oneHot:
            return .none
        }
    }
}
