#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KilnGraph

/// Float32 elementwise loops (transcendental functions through the SIMD `FastMath`). The function is chosen outside the loop so each inner loop is a
/// straight-line body the compiler can vectorise.
public enum ElementwiseKernel {
    /// The ISA's vector (`ISA`).
    typealias V = ISA.Vector

    /// y[i] = f(x[i]) for i in 0..<count.
    public static func unary(_ f: UnaryFunction, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        let zero = V(repeating: 0), one = V(repeating: 1)
        switch f {
        case .neg: FastMath.map(x, y, count) { -$0 }
        case .exp: Transcendental.exp(x, y, count)
        case .log: Transcendental.log(x, y, count)
        // The standard library's SIMD squareRoot() runs lane by lane; a scalar loop becomes vsqrtps.
        case .sqrt: for i in 0..<count { y[i] = x[i].squareRoot() }
        case .square: FastMath.map(x, y, count) { $0 * $0 }
        case .tanh: Transcendental.tanh(x, y, count)
        case .sigmoid: Transcendental.sigmoid(x, y, count)
        case .relu: FastMath.map(x, y, count) { zero.replacing(with: $0, where: $0 .> zero) }
        case .softplus: Transcendental.softplus(x, y, count)
        case .abs: FastMath.map(x, y, count) { KilnRuntime.abs($0) }
        case .sign: FastMath.map(x, y, count) { zero.replacing(with: one, where: $0 .> zero).replacing(with: -one, where: $0 .< zero) }
        case .reciprocal: FastMath.map(x, y, count) { one / $0 }
        }
    }

    /// y[i] = x[i] ** exponent, with the common exponents spelled out.
    public static func power(_ exponent: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch exponent {
        case 1: y.update(from: x, count: count)
        case 2: FastMath.map(x, y, count) { $0 * $0 }
        case 3: FastMath.map(x, y, count) { $0 * $0 * $0 }
        case 0.5: for i in 0..<count { y[i] = x[i].squareRoot() }
        case -1: FastMath.map(x, y, count) { V(repeating: 1) / $0 }
        default: for i in 0..<count { y[i] = pow(x[i], exponent) }
        }
    }

    /// z[i] = f(a[i·sa], b[i·sb]) for i in 0..<count, strides 0 or 1.
    public static func binary(_ f: BinaryFunction, _ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
                              _ z: UnsafeMutablePointer<Float>, count: Int) {
        let zero = V(repeating: 0), one = V(repeating: 1)
        switch f {
        case .add: zip(a, sa, b, sb, z, count) { $0 + $1 }
        case .sub: zip(a, sa, b, sb, z, count) { $0 - $1 }
        case .mul: zip(a, sa, b, sb, z, count) { $0 * $1 }
        case .div: zip(a, sa, b, sb, z, count) { $0 / $1 }
        // a >= b ? a : b (and a <= b ? a : b): b wherever the comparison fails, NaN included.
        case .maximum: zip(a, sa, b, sb, z, count) { $1.replacing(with: $0, where: $0 .>= $1) }
        case .minimum: zip(a, sa, b, sb, z, count) { $1.replacing(with: $0, where: $0 .<= $1) }
        case .less: zip(a, sa, b, sb, z, count) { zero.replacing(with: one, where: $0 .< $1) }
        case .lessEqual: zip(a, sa, b, sb, z, count) { zero.replacing(with: one, where: $0 .<= $1) }
        case .greater: zip(a, sa, b, sb, z, count) { zero.replacing(with: one, where: $0 .> $1) }
        case .greaterEqual: zip(a, sa, b, sb, z, count) { zero.replacing(with: one, where: $0 .>= $1) }
        case .equal: zip(a, sa, b, sb, z, count) { zero.replacing(with: one, where: $0 .== $1) }
        }
    }

    /// y[i] = c[i·sc] != 0 ? a[i·sa] : b[i·sb] for i in 0..<count (strides 0 or 1).
    public static func select(_ c: UnsafePointer<Float>, _ sc: Int, _ a: UnsafePointer<Float>, _ sa: Int,
                              _ b: UnsafePointer<Float>, _ sb: Int, _ y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = c[i * sc] != 0 ? a[i * sa] : b[i * sb] }
    }

    /// z[i] = f(a[i·sa], b[i·sb]) a vector at a time (a stride-0 operand is splatted once; the
    /// tail is padded in a vector, as in `FastMath.map`).
    @inline(__always)
    static func zip(_ a: UnsafePointer<Float>, _ sa: Int, _ b: UnsafePointer<Float>, _ sb: Int,
                    _ z: UnsafeMutablePointer<Float>, _ count: Int, _ f: (V, V) -> V) {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), rz = UnsafeMutableRawPointer(z)
        var i = 0
        switch (sa, sb) {
        case (1, 1):
            while i + V.scalarCount <= count {
                rz.storeBytes(of: f(ra.loadUnaligned(fromByteOffset: i * 4, as: V.self), rb.loadUnaligned(fromByteOffset: i * 4, as: V.self)),
                              toByteOffset: i * 4, as: V.self)
                i += V.scalarCount
            }
        case (1, 0):
            let bv = V(repeating: b[0])
            while i + V.scalarCount <= count {
                rz.storeBytes(of: f(ra.loadUnaligned(fromByteOffset: i * 4, as: V.self), bv), toByteOffset: i * 4, as: V.self)
                i += V.scalarCount
            }
        case (0, 1):
            let av = V(repeating: a[0])
            while i + V.scalarCount <= count {
                rz.storeBytes(of: f(av, rb.loadUnaligned(fromByteOffset: i * 4, as: V.self)), toByteOffset: i * 4, as: V.self)
                i += V.scalarCount
            }
        default:
            let v = f(V(repeating: a[0]), V(repeating: b[0]))[0]
            z.update(repeating: v, count: count)
            return
        }
        if i < count {
            var x = V(repeating: 0), y = V(repeating: 0)
            for j in 0..<(count - i) { x[j] = a[(i + j) * sa]; y[j] = b[(i + j) * sb] }
            let out = f(x, y)
            for j in 0..<(count - i) { z[i + j] = out[j] }
        }
    }
}

/// The transcendental loops: one loop specialised per function through a protocol, never a
/// closure. Passed as a closure, the optimiser outlined the function (and merged the loops into
/// one taking it as a pointer); a `SIMD16` crossing a call travels as four 128-bit registers and
/// every masked select inside was split the same way: 4× slower. `FastMath` is `@_transparent`
/// so its code lands in each specialised loop.
enum Transcendental {
    typealias V = ISA.Vector

    static func exp(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) { map(Exp.self, x, y, count) }
    static func log(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) { map(Log.self, x, y, count) }
    static func tanh(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) { map(Tanh.self, x, y, count) }
    static func sigmoid(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) { map(Sigmoid.self, x, y, count) }
    static func softplus(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) { map(Softplus.self, x, y, count) }

    /// A lane-wise function of one vector.
    protocol Function { static func apply(_ x: V) -> V }
    enum Exp: Function { @inline(__always) static func apply(_ x: V) -> V { FastMath.exp(x) } }
    enum Log: Function { @inline(__always) static func apply(_ x: V) -> V { FastMath.log(x) } }
    enum Tanh: Function { @inline(__always) static func apply(_ x: V) -> V { FastMath.tanh(x) } }
    enum Sigmoid: Function { @inline(__always) static func apply(_ x: V) -> V { FastMath.sigmoid(x) } }
    enum Softplus: Function { @inline(__always) static func apply(_ x: V) -> V { FastMath.softplus(x) } }

    @inline(never)
    static func map<F: Function>(_ f: F.Type, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        // Two vectors an iteration: each function is one long dependency chain, and two
        // side by side keep more of the out-of-order window busy.
        while i + 2 * V.scalarCount <= count {
            let a = F.apply(Lanes.load(x, i)), b = F.apply(Lanes.load(x, i + V.scalarCount))
            Lanes.store(a, y, i)
            Lanes.store(b, y, i + V.scalarCount)
            i += 2 * V.scalarCount
        }
        while i + V.scalarCount <= count { Lanes.store(F.apply(Lanes.load(x, i)), y, i); i += V.scalarCount }
        if i < count { Lanes.storeTail(F.apply(Lanes.loadTail(x, i, count)), y, i, count) }
    }
}

/// Loads and stores of one vector (`ISA.Vector`) at `pointer + i`, unaligned, and of a ragged tail.
enum Lanes {
    typealias V = ISA.Vector

    @inline(__always)
    static func load(_ x: UnsafePointer<Float>, _ i: Int) -> V {
        UnsafeRawPointer(x + i).loadUnaligned(as: V.self)
    }
    @inline(__always)
    static func store(_ v: V, _ y: UnsafeMutablePointer<Float>, _ i: Int) {
        UnsafeMutableRawPointer(y + i).storeBytes(of: v, as: V.self)
    }
    /// x[i..<count] in the first lanes, zeros after.
    @inline(__always)
    static func loadTail(_ x: UnsafePointer<Float>, _ i: Int, _ count: Int) -> V {
        var v = V(repeating: 0)
        for j in 0..<(count - i) { v[j] = x[i + j] }
        return v
    }
    @inline(__always)
    static func storeTail(_ v: V, _ y: UnsafeMutablePointer<Float>, _ i: Int, _ count: Int) {
        for j in 0..<(count - i) { y[i + j] = v[j] }
    }
}
