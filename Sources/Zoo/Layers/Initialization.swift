import Foundation
import KilnGraph

/// How the layer helpers (`dense`, `conv2d`) initialise their weights and biases. fan_in is
/// in_features (dense) or in_channels·kh·kw (conv); fan_out is out_features or out_channels·kh·kw.
public enum WeightInitialization: Sendable, Equatable, CustomStringConvertible {
    /// PyTorch's default: weights and biases U(±1/√fan_in).
    case pytorch
    /// He et al. 2015 for ReLU (gain √2): weights U(±√(6/fan_in)), biases zero.
    case kaimingUniform
    /// He et al. 2015 for ReLU: weights N(0, 2/fan_in), biases zero.
    case kaimingNormal
    /// Glorot & Bengio 2010: weights U(±√(6/(fan_in + fan_out))), biases zero.
    case xavierUniform
    /// Glorot & Bengio 2010: weights N(0, 2/(fan_in + fan_out)), biases zero.
    case xavierNormal
    /// Weights and biases N(mean, std²) (the IST homework uses mean 0.1, std 0.1).
    case normal(mean: Double, std: Double)

    /// The initializer of a weight with these fans.
    public func weight(fanIn: Int, fanOut: Int) -> Initializer {
        let (fanIn, fanOut) = (Double(Swift.max(fanIn, 1)), Double(Swift.max(fanOut, 1)))
        switch self {
        case .pytorch: return .uniform(low: -1 / fanIn.squareRoot(), high: 1 / fanIn.squareRoot())
        case .kaimingUniform: return .uniform(low: -(6 / fanIn).squareRoot(), high: (6 / fanIn).squareRoot())
        case .kaimingNormal: return .normal(mean: 0, std: (2 / fanIn).squareRoot())
        case .xavierUniform:
            let bound = (6 / (fanIn + fanOut)).squareRoot()
            return .uniform(low: -bound, high: bound)
        case .xavierNormal: return .normal(mean: 0, std: (2 / (fanIn + fanOut)).squareRoot())
        case let .normal(mean, std): return .normal(mean: mean, std: std)
        }
    }

    /// The initializer of a bias of a layer with this fan_in.
    public func bias(fanIn: Int) -> Initializer {
        switch self {
        case .pytorch: return weight(fanIn: fanIn, fanOut: 1)
        case .kaimingUniform, .kaimingNormal, .xavierUniform, .xavierNormal: return .zeros
        case let .normal(mean, std): return .normal(mean: mean, std: std)
        }
    }

    public var description: String {
        switch self {
        case .pytorch: return "pytorch"
        case .kaimingUniform: return "kaiming"
        case .kaimingNormal: return "kaiming-normal"
        case .xavierUniform: return "xavier"
        case .xavierNormal: return "xavier-normal"
        case let .normal(mean, std): return "normal:\(mean):\(std)"
        }
    }

    /// Parses `pytorch`, `kaiming`, `kaiming-normal`, `xavier`, `xavier-normal` or `normal:MEAN:STD`.
    public static func parse(_ text: String) throws -> WeightInitialization {
        switch text {
        case "pytorch": return .pytorch
        case "kaiming": return .kaimingUniform
        case "kaiming-normal": return .kaimingNormal
        case "xavier": return .xavierUniform
        case "xavier-normal": return .xavierNormal
        default:
            let fields = text.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count == 3, fields[0] == "normal", let mean = Double(fields[1]), let std = Double(fields[2]),
               mean.isFinite, std.isFinite, std >= 0 {
                return .normal(mean: mean, std: std)
            }
            throw KilnError.argument("unknown initialisation \"\(text)\"; known: pytorch, kaiming, kaiming-normal, xavier, xavier-normal, normal:MEAN:STD")
        }
    }
}
