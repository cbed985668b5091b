/// Vectorised float32 exp, expm1, log, log1p, tanh, sigmoid, softplus and cos(2πu) on the ISA's vector
/// (`ISA.Vector`: 16 floats on AVX-512, 8 on AVX2, 4 on NEON), accurate to a few ulp (tested
/// against the C library's float functions).
///
/// exp: Cody–Waite range reduction x = n·ln2 + r with |r| ≤ ln2/2 and a degree-7 Taylor
/// polynomial (remainder < 1e-8 relative), then 2ⁿ built in the exponent bits, in two halves
/// so gradual underflow stays correct. log: x = m·2ᵉ with m in [√½, √2), then
/// log m = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.1716, as an odd series to s¹¹.
/// tanh uses expm1 (t = u/(u+2), u = expm1(2|x|)), which keeps small arguments accurate.
public enum FastMath {
    public typealias V = ISA.Vector

    @usableFromInline static let ln2High: Float = 0.693_145_751_953_125       // exact in float, 14 low bits clear
    @usableFromInline static let ln2Low: Float = 1.428_606_765_330_187e-06     // ln 2 − ln2High
    @usableFromInline static let log2e: Float = 1.442_695_040_888_963_4

    /// p·x + c, one fused multiply-add where the ISA has one (`multiplyAdd`): a polynomial's
    /// Horner steps form one chain, and a fused step halves its latency, which bounds these loops
    /// (the VAE's softplus ran at ~7 cycles a float on AVX2 with separate multiplies and adds).
    @_transparent
    public static func horner(_ p: V, _ x: V, _ c: Float) -> V {
        var result = V(repeating: c)
        multiplyAdd(&result, p, x)
        return result
    }

    /// eˣ for every lane; +inf above 88.72, 0 below −103.97, NaN stays NaN.
    ///
    /// Only lane-wise float and integer arithmetic and bit casts: the standard library's
    /// generic SIMD conversions (`SIMD16<Int32>(floats)`, `rounded`, `clamped`) run lane by lane
    /// through slow generic code, so n is rounded with the 1.5·2²³ "magic number" instead.
    @_transparent
    public static func exp(_ x: V) -> V {
        var clamped = x
        clamped.replace(with: V(repeating: 89), where: x .> 89)
        clamped.replace(with: V(repeating: -104), where: x .< -104)
        let magic: Float = 12_582_912  // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits
        let shifted = clamped * log2e + magic
        let n = shifted - magic
        let r = (clamped - n * ln2High) - n * ln2Low
        // 1 + r + r²/2! + … + r⁷/7!, in Horner form.
        var p = V(repeating: 1.0 / 5040)
        p = horner(p, r, 1.0 / 720)
        p = horner(p, r, 1.0 / 120)
        p = horner(p, r, 1.0 / 24)
        p = horner(p, r, 1.0 / 6)
        p = horner(p, r, 0.5)
        p = horner(p, r, 1)
        p = horner(p, r, 1)
        // n as an integer: the bit difference from the magic number. 2ⁿ = 2^(n/2) · 2^(n − n/2),
        // each factor a normal float even when 2ⁿ is subnormal.
        let ni = unsafeBitCast(bitPattern(shifted) &- bitPattern(V(repeating: magic)), to: ISA.IntVector.self)
        let half = ni &>> 1
        let scale1 = floats(unsafeBitCast((half &+ 127) &<< 23, to: ISA.UIntVector.self))
        let scale2 = floats(unsafeBitCast((ni &- half &+ 127) &<< 23, to: ISA.UIntVector.self))
        var result = p * scale1 * scale2
        result.replace(with: V(repeating: .infinity), where: x .> 88.722_839)
        result.replace(with: V(repeating: 0), where: x .< -103.972_08)
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// Lane-wise Float(i) for |i| < 2²², by bit arithmetic (see `exp`).
    @inline(__always)
    @usableFromInline static func toFloat(_ i: ISA.IntVector) -> V {
        floats(unsafeBitCast(i &+ 0x4B40_0000, to: ISA.UIntVector.self)) - 12_582_912
    }

    /// eˣ − 1, accurate for small |x|.
    @_transparent
    public static func expm1(_ x: V) -> V {
        // |x| < ln2/2: the Taylor series without the leading 1 (to x⁹/9!: remainder < 3e-10 relative).
        var p = V(repeating: 1.0 / 362_880)
        p = horner(p, x, 1.0 / 40320)
        p = horner(p, x, 1.0 / 5040)
        p = horner(p, x, 1.0 / 720)
        p = horner(p, x, 1.0 / 120)
        p = horner(p, x, 1.0 / 24)
        p = horner(p, x, 1.0 / 6)
        p = horner(p, x, 0.5)
        let small = (p * x) * x + x
        let large = exp(x) - 1
        return small.replacing(with: large, where: abs(x) .> 0.346_573_6)
    }

    /// Natural log; 0 → −inf, negative → NaN, +inf → +inf.
    @_transparent
    public static func log(_ x: V) -> V {
        // Scale subnormals into the normal range first.
        let isSubnormal = x .< 1.175_494_35e-38
        let scaled = x.replacing(with: x * 8_388_608, where: isSubnormal)   // × 2²³
        var bits = unsafeBitCast(bitPattern(scaled), to: ISA.IntVector.self)
        var e = (bits &>> 23) &- 127
        bits = (bits & 0x007F_FFFF) | 0x3F80_0000   // mantissa in [1, 2)
        var m = floats(unsafeBitCast(bits, to: ISA.UIntVector.self))
        let big = m .> 1.414_213_56
        m.replace(with: m * 0.5, where: big)
        e.replace(with: e &+ 1, where: big)
        var exponent = toFloat(e)
        exponent.replace(with: exponent - 23, where: isSubnormal)
        let s = (m - 1) / (m + 1)
        let s2 = s * s
        var p = V(repeating: 2.0 / 11)
        p = horner(p, s2, 2.0 / 9)
        p = horner(p, s2, 2.0 / 7)
        p = horner(p, s2, 2.0 / 5)
        p = horner(p, s2, 2.0 / 3)
        p = horner(p, s2, 2)
        var result = (p * s + exponent * ln2Low) + exponent * ln2High
        result.replace(with: V(repeating: -.infinity), where: x .== 0)
        result.replace(with: V(repeating: .nan), where: x .< 0)
        result.replace(with: x, where: x .== .infinity)
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// cos(2π·u) for u in [0, 1), to a few units of 1e-8 absolute: the reduction is exact in u
    /// (cos(2πu) = −cos(2πt), t = u − ½; then |t| folded into [0, ¼] by cos(2πs) = −cos(2π(½ − s))),
    /// then the Taylor series of cos(2πw) in w² to w¹⁴ (remainder < 7e-11 at w = ¼).
    @_transparent
    public static func cosTwoPi(_ u: V) -> V {
        let s = abs(u - 0.5)
        let far = s .> 0.25
        let w = s.replacing(with: 0.5 - s, where: far)
        let y = w * w
        var p = V(repeating: -1.714_390_711_088_671_1)
        p = horner(p, y, 7.903_536_371_318_465)
        p = horner(p, y, -26.426_256_783_374_388)
        p = horner(p, y, 60.244_641_371_876_64)
        p = horner(p, y, -85.456_817_206_693_71)
        p = horner(p, y, 64.939_394_022_668_28)
        p = horner(p, y, -19.739_208_802_178_716)
        p = horner(p, y, 1)
        return p.replacing(with: -p, where: .!far)
    }

    /// log(1 + x), accurate for small |x| (Goldberg's correction: log(u)·x/(u − 1), u = 1 + x).
    @_transparent
    public static func log1p(_ x: V) -> V {
        let u = 1 + x
        let corrected = log(u) * (x / (u - 1))
        return corrected.replacing(with: x, where: u .== 1).replacing(with: log(u), where: u .== .infinity)
    }

    @_transparent
    public static func tanh(_ x: V) -> V {
        let a = abs(x)
        let u = expm1(2 * a)
        var t = u / (u + 2)
        t.replace(with: V(repeating: 1), where: a .> 9.1)
        t.replace(with: x, where: x .!= x)
        return t.replacing(with: -t, where: x .< 0)
    }

    @_transparent
    public static func sigmoid(_ x: V) -> V { 1 / (1 + exp(-x)) }

    /// log(1 + eˣ) = log1p(e^−|x|) + max(x, 0), with log1p(e) = 2·atanh(e/(2 + e)) as an odd
    /// series: e ∈ (0, 1] puts s = e/(2 + e) in [0, ⅓], where 2·(s + s³/3 + … + s¹⁵/15) is within
    /// 2e-9 relative. One division and eight multiply-adds instead of `log1p`'s two divisions,
    /// exponent split and special cases (the BCE loss of a VAE runs it on every pixel).
    @_transparent
    public static func softplus(_ x: V) -> V {
        let e = exp(-abs(x))
        let s = e / (2 + e)
        let s2 = s * s
        var p = V(repeating: 1.0 / 15)
        p = horner(p, s2, 1.0 / 13)
        p = horner(p, s2, 1.0 / 11)
        p = horner(p, s2, 1.0 / 9)
        p = horner(p, s2, 1.0 / 7)
        p = horner(p, s2, 1.0 / 5)
        p = horner(p, s2, 1.0 / 3)
        p = horner(p, s2, 1)
        return (2 * s) * p + x.replacing(with: V(repeating: 0), where: x .< 0)
    }

    /// Applies `f` to `count` floats, a vector at a time (the tail is padded in a vector).
    @inline(__always)
    public static func map(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ f: (V) -> V) {
        var i = 0
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        while i + V.scalarCount <= count {
            ry.storeBytes(of: f(rx.loadUnaligned(fromByteOffset: i * 4, as: V.self)), toByteOffset: i * 4, as: V.self)
            i += V.scalarCount
        }
        if i < count {
            var tail = V(repeating: 0)
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            let out = f(tail)
            for j in 0..<(count - i) { y[i + j] = out[j] }
        }
    }
}

extension SIMD16 where Scalar == Float {
    @inline(__always)
    @usableFromInline func replacing(with other: Self, where mask: SIMDMask<SIMD16<Int32>>) -> Self {
        var copy = self
        copy.replace(with: other, where: mask)
        return copy
    }
}

extension SIMD8 where Scalar == Float {
    @inline(__always)
    @usableFromInline func replacing(with other: Self, where mask: SIMDMask<SIMD8<Int32>>) -> Self {
        var copy = self
        copy.replace(with: other, where: mask)
        return copy
    }
}

extension SIMD4 where Scalar == Float {
    @inline(__always)
    @usableFromInline func replacing(with other: Self, where mask: SIMDMask<SIMD4<Int32>>) -> Self {
        var copy = self
        copy.replace(with: other, where: mask)
        return copy
    }
}

@inline(__always)
@usableFromInline func abs(_ x: ISA.Vector) -> ISA.Vector { floats(bitPattern(x) & 0x7FFF_FFFF) }

@inline(__always)
@usableFromInline func bitPattern(_ x: ISA.Vector) -> ISA.UIntVector { unsafeBitCast(x, to: ISA.UIntVector.self) }

@inline(__always)
@usableFromInline func floats(_ bits: ISA.UIntVector) -> ISA.Vector { unsafeBitCast(bits, to: ISA.Vector.self) }
