/// The element type of a tensor.
public enum DType: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    case float32, float64, int32

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: return 4
        case .float64: return 8
        }
    }

    /// Whether the type is a floating-point type (differentiable).
    public var isFloatingPoint: Bool { self != .int32 }

    /// Short name used in text and DOT output (`f32`, `f64`, `i32`).
    public var shortName: String {
        switch self {
        case .float32: return "f32"
        case .float64: return "f64"
        case .int32: return "i32"
        }
    }

    public var description: String { shortName }
}
