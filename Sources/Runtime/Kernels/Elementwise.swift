import Foundation
import KilnGraph

/// Float32 elementwise loops (transcendental functions through the SIMD `FastMath`). The function is chosen outside the loop so each inner loop is a
/// straight-line body the compiler can vectorise.
public enum ElementwiseKernel {
    /// y[i] = f(x[i]) for i in 0..<count.
    public static func unary(_ f: UnaryFunction, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .neg: map(x, y, count) { -$0 }
        case .exp: FastMath.map(x, y, count, FastMath.exp)
        case .log: FastMath.map(x, y, count, FastMath.log)
        case .sqrt: map(x, y, count) { $0.squareRoot() }
        case .square: map(x, y, count) { $0 * $0 }
        case .tanh: FastMath.map(x, y, count, FastMath.tanh)
        case .sigmoid: FastMath.map(x, y, count, FastMath.sigmoid)
        case .relu: map(x, y, count) { $0 > 0 ? $0 : 0 }
        case .softplus: FastMath.map(x, y, count, FastMath.softplus)
        case .abs: map(x, y, count) { Swift.abs($0) }
        case .sign: map(x, y, count) { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
        case .reciprocal: map(x, y, count) { 1 / $0 }
        }
    }

    /// y[i] = x[i] ** exponent, with the common exponents spelled out.
    public static func power(_ exponent: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch exponent {
        case 1: map(x, y, count) { $0 }
        case 2: map(x, y, count) { $0 * $0 }
        case 3: map(x, y, count) { $0 * $0 * $0 }
        case 0.5: map(x, y, count) { $0.squareRoot() }
        case -1: map(x, y, count) { 1 / $0 }
        default: map(x, y, count) { Foundation.pow($0, exponent) }
        }
    }

    /// z[i] = f(a[i·sa], b[i·sb]) for i in 0..<count, strides 0 or 1.
    public static func binary(_ f: BinaryFunction, _ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
                              _ z: UnsafeMutablePointer<Float>, count: Int) {
        switch f {
        case .add: zip(a, sa, b, sb, z, count) { $0 + $1 }
        case .sub: zip(a, sa, b, sb, z, count) { $0 - $1 }
        case .mul: zip(a, sa, b, sb, z, count) { $0 * $1 }
        case .div: zip(a, sa, b, sb, z, count) { $0 / $1 }
        case .maximum: zip(a, sa, b, sb, z, count) { $0 >= $1 ? $0 : $1 }
        case .minimum: zip(a, sa, b, sb, z, count) { $0 <= $1 ? $0 : $1 }
        case .less: zip(a, sa, b, sb, z, count) { $0 < $1 ? 1 : 0 }
        case .lessEqual: zip(a, sa, b, sb, z, count) { $0 <= $1 ? 1 : 0 }
        case .greater: zip(a, sa, b, sb, z, count) { $0 > $1 ? 1 : 0 }
        case .greaterEqual: zip(a, sa, b, sb, z, count) { $0 >= $1 ? 1 : 0 }
        case .equal: zip(a, sa, b, sb, z, count) { $0 == $1 ? 1 : 0 }
        }
    }

    @inline(__always)
    static func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ f: (Float) -> Float) {
        for i in 0..<count { y[i] = f(x[i]) }
    }

    @inline(__always)
    static func zip(_ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
                    _ z: UnsafeMutablePointer<Float>, _ count: Int, _ f: (Float, Float) -> Float) {
        switch (sa, sb) {
        case (1, 1): for i in 0..<count { z[i] = f(a[i], b[i]) }
        case (1, 0): let bv = b[0]; for i in 0..<count { z[i] = f(a[i], bv) }
        case (0, 1): let av = a[0]; for i in 0..<count { z[i] = f(av, b[i]) }
        default: let v = f(a[0], b[0]); for i in 0..<count { z[i] = v }
        }
    }
}
