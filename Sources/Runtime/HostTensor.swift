import KilnGraph

/// A host tensor for the reference paths: every dtype held as Double (float32 and int32 values are exact).
///
/// Scalars are row-major. The interpreter keeps float32 values rounded to Float and int32
/// values integral, so a `HostTensor` compares equal to what a float32/int32 buffer would hold.
public struct HostTensor: Equatable, Sendable {
    /// Shape and element type.
    public var type: TensorType
    /// The elements, row-major.
    public var scalars: [Double]

    /// A tensor of `type` holding `scalars` (exactly `type.shape.count` of them).
    public init(_ type: TensorType, _ scalars: [Double]) {
        precondition(scalars.count == type.shape.count,
                     "\(scalars.count) scalars do not fill \(type)")
        self.type = type
        self.scalars = scalars
    }

    /// A tensor of `shape` and `dtype` holding `scalars`.
    public init(shape: Shape, dtype: DType = .float32, scalars: [Double]) {
        self.init(TensorType(shape, dtype), scalars)
    }

    /// A tensor of `type` filled with zeros.
    public static func zeros(_ type: TensorType) -> HostTensor {
        HostTensor(type, [Double](repeating: 0, count: type.shape.count))
    }

    /// The extent of each axis.
    public var shape: Shape { type.shape }
}
