/// Counter-based generator (Philox4x32-10, Salmon et al. 2011): keyed by seed and stream (the op's
/// stream id), counter = (step, element index). Draws are independent of threads and order.
///
/// Layout of one Philox call: key = (seed low 32 bits, seed high 32 bits); counter =
/// (block, stream, step low 32 bits, step high 32 bits). One block yields four 32-bit words:
/// uniform draw `i` is word `i % 4` of block `i / 4`; normal draw `i` uses words
/// `2(i % 2)` and `2(i % 2) + 1` of block `i / 2`. Any element can therefore be drawn on its
/// own, and a fill over a buffer is the same numbers computed a block at a time.
public struct CounterRandom: Sendable {
    /// The seed the key is made of.
    public let seed: UInt64

    /// A generator keyed by `seed`.
    public init(seed: UInt64) { self.seed = seed }

    /// Uniform in [0, 1) with 24 random bits: Float(bits >> 8) * 0x1p-24.
    public func uniform(stream: Int, step: UInt64, index: Int) -> Float {
        precondition(index >= 0, "negative element index \(index)")
        let block = block(stream: stream, step: step, blockIndex: index / 4)
        return Self.unit(Self.word(block, index % 4))
    }

    /// Standard normal (Box–Muller on two uniforms drawn from the same counter block), as Float.
    public func normal(stream: Int, step: UInt64, index: Int) -> Float {
        precondition(index >= 0, "negative element index \(index)")
        let block = block(stream: stream, step: step, blockIndex: index / 2)
        let pair = index % 2
        return Self.boxMuller(ISA.UIntVector(repeating: Self.word(block, 2 * pair)),
                              ISA.UIntVector(repeating: Self.word(block, 2 * pair + 1)))[0]
    }

    /// Fills a buffer with uniform draws for element indices 0..<count (the fast runtime will call these).
    ///
    /// With `range` (starting at a multiple of 4), only those elements: a fill split into ranges
    /// gives the same values as one fill, so it can run on several threads.
    public func fillUniform(_ buffer: UnsafeMutableBufferPointer<Float>, stream: Int, step: UInt64, range: Range<Int>? = nil) {
        let range = range ?? 0..<buffer.count
        precondition(range.lowerBound % 4 == 0 && range.upperBound <= buffer.count, "fillUniform: bad range \(range)")
        var index = range.lowerBound
        while index < range.upperBound {
            let block = block(stream: stream, step: step, blockIndex: index / 4)
            for word in 0..<min(4, range.upperBound - index) { buffer[index + word] = Self.unit(Self.word(block, word)) }
            index += 4
        }
    }

    /// Fills a buffer with standard normal draws for element indices 0..<count.
    ///
    /// With `range` (starting at an even index), only those elements, as in `fillUniform`.
    public func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, stream: Int, step: UInt64, range: Range<Int>? = nil) {
        let range = range ?? 0..<buffer.count
        precondition(range.lowerBound % 2 == 0 && range.upperBound <= buffer.count, "fillNormal: bad range \(range)")
        // The Philox words of a vector's worth of draws, then Box–Muller on the vector (a draw
        // took ~35 ns with the C library's double log and cos, ~2% of the VAE's step).
        let lanes = ISA.Vector.scalarCount
        var radius = ISA.UIntVector(), angle = ISA.UIntVector()
        var index = range.lowerBound
        while index < range.upperBound {
            let count = min(lanes, range.upperBound - index)
            var lane = 0
            while lane < count {
                let block = block(stream: stream, step: step, blockIndex: (index + lane) / 2)
                radius[lane] = block.0
                angle[lane] = block.1
                if lane + 1 < count {
                    radius[lane + 1] = block.2
                    angle[lane + 1] = block.3
                }
                lane += 2
            }
            let z = Self.boxMuller(radius, angle)
            for lane in 0..<count { buffer[index + lane] = z[lane] }
            index += count
        }
    }

    /// The Philox4x32-10 bijection of one 128-bit counter under a 64-bit key
    /// (Salmon et al. 2011, §4; constants and key schedule as in Random123's `philox4x32_R`).
    public static func philox4x32(counter: (UInt32, UInt32, UInt32, UInt32),
                                  key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 { k0 &+= 0x9E37_79B9; k1 &+= 0xBB67_AE85 }
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            (c0, c1, c2, c3) = (UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0, UInt32(truncatingIfNeeded: p1),
                                UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1, UInt32(truncatingIfNeeded: p0))
        }
        return (c0, c1, c2, c3)
    }

    @inline(__always)
    private func block(stream: Int, step: UInt64, blockIndex: Int) -> (UInt32, UInt32, UInt32, UInt32) {
        // 32 bits each for block and stream are plenty (16 G elements per tensor, 2^32 ops); a
        // precondition rather than silent aliasing of two streams or two blocks.
        precondition(blockIndex <= Int(UInt32.max), "tensor too large for the counter layout")
        precondition(stream >= Int(Int32.min) && stream <= Int(Int32.max), "stream \(stream) does not fit 32 bits")
        return Self.philox4x32(
            counter: (UInt32(blockIndex), UInt32(bitPattern: Int32(stream)),
                      UInt32(truncatingIfNeeded: step), UInt32(truncatingIfNeeded: step >> 32)),
            key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    @inline(__always)
    private static func word(_ block: (UInt32, UInt32, UInt32, UInt32), _ i: Int) -> UInt32 {
        switch i {
        case 0: return block.0
        case 1: return block.1
        case 2: return block.2
        default: return block.3
        }
    }

    @inline(__always)
    private static func unit(_ bits: UInt32) -> Float { Float(bits >> 8) * 0x1p-24 }

    /// Box–Muller, cosine branch, lane by lane in Float with `FastMath`'s log and cos(2πu): the
    /// same bits for a lane whatever the vector width, so fills and single draws agree. The
    /// radius uses (bits + 1)·2⁻²⁴ ∈ (0, 1] so log never sees 0; the largest |z| is therefore
    /// √(48 ln 2) ≈ 5.77. (Until the fourteenth sitting this was the C library's double log and
    /// cos, rounded once; the draws differ from those by a few ulp.)
    @inline(__always)
    static func boxMuller(_ a: ISA.UIntVector, _ b: ISA.UIntVector) -> ISA.Vector {
        let u1 = (exactFloat(a &>> 8) + 1) * 0x1p-24
        let u2 = exactFloat(b &>> 8) * 0x1p-24
        let r2 = -2 * FastMath.log(u1)
        var r = ISA.Vector()
        // A scalar square root per lane (SIMD's squareRoot would go through generic code).
        for lane in 0..<ISA.Vector.scalarCount { r[lane] = r2[lane].squareRoot() }
        return r * FastMath.cosTwoPi(u2)
    }

    /// Float(i) for 0 ≤ i < 2²⁴, exactly: its high 23 bits and its last bit each through the
    /// 2²³ bit pattern (the generic SIMD conversion goes lane by lane through slow code).
    @inline(__always)
    static func exactFloat(_ i: ISA.UIntVector) -> ISA.Vector {
        let high = floats((i &>> 1) | 0x4B00_0000) - 8_388_608
        let low = floats((i & 1) | 0x4B00_0000) - 8_388_608
        return high * 2 + low
    }
}
