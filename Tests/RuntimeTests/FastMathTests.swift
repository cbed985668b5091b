import Foundation
import Testing
@testable import KilnRuntime

/// The SIMD functions against float64 references rounded to float32, in units in the last place.
@Suite("Vectorised math functions")
struct FastMathTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var range: ClosedRange<Float>
        var maxUlps: Float
        var description: String { name }
    }

    static let cases = [
        Case(name: "exp", range: -103...88.7, maxUlps: 2),
        Case(name: "expm1", range: -20...20, maxUlps: 3),
        Case(name: "log", range: 1e-30...1e30, maxUlps: 2),
        Case(name: "log1p", range: -0.99...100, maxUlps: 3),
        Case(name: "tanh", range: -12...12, maxUlps: 4),
        Case(name: "sigmoid", range: -80...80, maxUlps: 4),
        Case(name: "softplus", range: -80...80, maxUlps: 4),
    ]

    static func apply(_ name: String, _ v: FastMath.V) -> FastMath.V {
        switch name {
        case "exp": return FastMath.exp(v)
        case "expm1": return FastMath.expm1(v)
        case "log": return FastMath.log(v)
        case "log1p": return FastMath.log1p(v)
        case "tanh": return FastMath.tanh(v)
        case "sigmoid": return FastMath.sigmoid(v)
        default: return FastMath.softplus(v)
        }
    }

    static func reference(_ name: String, _ x: Double) -> Double {
        switch name {
        case "exp": return Foundation.exp(x)
        case "expm1": return Foundation.expm1(x)
        case "log": return Foundation.log(x)
        case "log1p": return Foundation.log1p(x)
        case "tanh": return Foundation.tanh(x)
        case "sigmoid": return 1 / (1 + Foundation.exp(-x))
        default: return Foundation.log1p(Foundation.exp(-Swift.abs(x))) + Swift.max(x, 0)
        }
    }

    /// Inputs: a dense grid of the range, a log-spaced sweep near zero (both signs), and seeded random points.
    static func inputs(_ range: ClosedRange<Float>) -> [Float] {
        var values: [Float] = []
        let steps = 20_000
        for i in 0...steps { values.append(range.lowerBound + (range.upperBound - range.lowerBound) * Float(i) / Float(steps)) }
        var e: Float = 1e-30
        while e < 10 { for v in [e, -e] where range.contains(v) { values.append(v) }; e *= 1.37 }
        var state: UInt64 = 42
        for _ in 0..<20_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(state >> 40) / Float(1 << 24)
            values.append(range.lowerBound + (range.upperBound - range.lowerBound) * u)
        }
        return values
    }

    @Test("within a few ulp of the float64 reference", arguments: cases)
    func accuracy(_ c: Case) {
        let xs = Self.inputs(c.range)
        var worst: Float = 0, worstX: Float = 0
        let lanes = FastMath.V.scalarCount
        for start in stride(from: 0, to: xs.count, by: lanes) {
            var v = FastMath.V(repeating: 0)
            let n = min(lanes, xs.count - start)
            for j in 0..<n { v[j] = xs[start + j] }
            let y = Self.apply(c.name, v)
            for j in 0..<n {
                let want = Float(Self.reference(c.name, Double(xs[start + j])))
                let got = y[j]
                let ulps: Float = want == got ? 0 : Swift.abs(got - want) / max(want.ulp, Float.leastNormalMagnitude)
                if ulps > worst { worst = ulps; worstX = xs[start + j] }
            }
        }
        #expect(worst <= c.maxUlps, "\(c.name): \(worst) ulp at x = \(worstX)")
    }

    @Test("special values: infinities, NaN, zero, limits")
    func specials() {
        let v: [Float] = [0, -0.0, .infinity, -.infinity, .nan, 89, -110, 1e-40, -1, 1, 0.5, -0.5, 20, -20, 100, -100]
        // A vector (`ISA.Vector`, 4 to 16 lanes) at a time.
        func lanes(_ f: (FastMath.V) -> FastMath.V) -> [Float] {
            var out: [Float] = []
            for start in stride(from: 0, to: v.count, by: FastMath.V.scalarCount) {
                var x = FastMath.V(repeating: 0)
                for j in 0..<FastMath.V.scalarCount { x[j] = v[start + j] }
                let y = f(x)
                for j in 0..<FastMath.V.scalarCount { out.append(y[j]) }
            }
            return out
        }
        let exp = lanes(FastMath.exp), log = lanes(FastMath.log), tanh = lanes(FastMath.tanh), sigmoid = lanes(FastMath.sigmoid)
        #expect(exp[0] == 1 && exp[2] == .infinity && exp[3] == 0 && exp[4].isNaN && exp[5] == .infinity && exp[6] == 0)
        #expect(log[0] == -.infinity && log[2] == .infinity && log[3].isNaN && log[4].isNaN && log[8].isNaN && log[9] == 0)
        #expect(Swift.abs(log[7] - Float(Foundation.log(Double(Float(1e-40))))) <= 1e-5 * 92, "subnormal input")
        #expect(tanh[0] == 0 && tanh[2] == 1 && tanh[3] == -1 && tanh[4].isNaN && tanh[12] == 1 && tanh[13] == -1)
        #expect(sigmoid[2] == 1 && sigmoid[3] == 0 && sigmoid[14] == 1 && sigmoid[15] < 1e-40)
    }
}
