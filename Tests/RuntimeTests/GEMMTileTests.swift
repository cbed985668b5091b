import Testing
@testable import KilnRuntime

/// Both register tiles of `GEMM` (the AVX-512 8 × 32 `MicroKernel` and the 6 × 16
/// `NarrowKernel` of AVX2, NEON and the fallback) are plain Swift SIMD code compiled on every
/// ISA, so each is checked here against naive loops whichever ISA the tests were built for;
/// `sgemm`'s own tests cover the tile the build's `ISA` picks, with its packing.

/// One tile family's entry points, called on the same operands.
private struct TileFamily: CustomStringConvertible {
    let name: String
    let mr: Int, nr: Int
    typealias Packed = (Int, UnsafePointer<Float>, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Int, Int, Int, Bool, Bool) -> Void
    typealias InPlace = (Int, UnsafePointer<Float>, Int, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, Int, Int, Int,
                         Bool, Bool) -> Void
    let run: Packed, runHalf: Packed
    let runInPlace: InPlace, runHalfInPlace: InPlace
    var description: String { name }
}

private let families = [
    TileFamily(name: "8x32", mr: GEMM.MicroKernel.mr, nr: GEMM.MicroKernel.nr,
               run: GEMM.MicroKernel.run, runHalf: GEMM.MicroKernel.runHalf,
               runInPlace: GEMM.MicroKernel.runInPlace, runHalfInPlace: GEMM.MicroKernel.runHalfInPlace),
    TileFamily(name: "6x16", mr: GEMM.NarrowKernel.mr, nr: GEMM.NarrowKernel.nr,
               run: GEMM.NarrowKernel.run, runHalf: GEMM.NarrowKernel.runHalf,
               runInPlace: GEMM.NarrowKernel.runInPlace, runHalfInPlace: GEMM.NarrowKernel.runHalfInPlace),
]

private func values(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
}

@Test("the ISA table's GEMM tile is one of the two tile families, and B packs 16 columns at a time")
func isaTableIsConsistent() {
    #expect(GEMM.nr % 16 == 0)
    #expect((GEMM.mr, GEMM.nr) == (ISA.wideTile ? (8, 32) : (6, 16)))
    #expect(GEMM.DotKernel.width == ISA.dotLanes && GEMM.DotKernel.columnsTile == ISA.dotColumns)
    #expect(ISA.lanes * MemoryLayout<Float>.stride * 8 == MemoryLayout<ISA.Vector>.size * 8)
}

@Test("each tile's kernels match naive loops on full and ragged tiles, stored plain or transposed, set or added",
      arguments: families.indices)
func tileKernelsMatchNaive(familyIndex: Int) {
    let family = families[familyIndex]
    let mr = family.mr, nr = family.nr
    let kc = 37, rowStride = kc + 3, bStride = nr + 5, ldc = 41
    // A packed (kc × mr, row fastest) and the same A in place (mr rows of rowStride).
    let aInPlace = values(mr * rowStride, seed: 1)
    var aPacked = [Float](repeating: 0, count: kc * mr)
    for p in 0..<kc { for r in 0..<mr { aPacked[p * mr + r] = aInPlace[r * rowStride + p] } }
    let b = values(kc * bStride, seed: 2)
    let c0 = values(ldc * ldc, seed: 3)
    for rows in [mr, mr - 1, 1] {
        for width in [nr, nr - 3, nr / 2 + 1, nr / 2, 3, 1] {
            for addToC in [false, true] {
                for transposeC in [false, true] {
                    var expected = c0
                    for i in 0..<rows {
                        for j in 0..<width {
                            var sum = 0.0
                            for p in 0..<kc { sum += Double(aInPlace[i * rowStride + p]) * Double(b[p * bStride + j]) }
                            let index = transposeC ? j * ldc + i : i * ldc + j
                            expected[index] = Float(sum + (addToC ? Double(c0[index]) : 0))
                        }
                    }
                    var results: [[Float]] = []
                    var entries: [(String, (UnsafeMutablePointer<Float>) -> Void)] = []
                    aPacked.withUnsafeBufferPointer { ap in
                        aInPlace.withUnsafeBufferPointer { ai in
                            b.withUnsafeBufferPointer { bp in
                                entries = [
                                    ("run", { family.run(kc, ap.baseAddress!, bp.baseAddress!, bStride, $0, ldc, rows, width, addToC, transposeC) }),
                                    ("runInPlace", { family.runInPlace(kc, ai.baseAddress!, rowStride, bp.baseAddress!, bStride, $0, ldc,
                                                                       rows, width, addToC, transposeC) }),
                                ]
                                if width <= nr / 2 {
                                    entries.append(("runHalf", { family.runHalf(kc, ap.baseAddress!, bp.baseAddress!, bStride, $0, ldc,
                                                                                rows, width, addToC, transposeC) }))
                                    entries.append(("runHalfInPlace", { family.runHalfInPlace(kc, ai.baseAddress!, rowStride, bp.baseAddress!,
                                                                                              bStride, $0, ldc, rows, width, addToC, transposeC) }))
                                }
                                for (_, entry) in entries {
                                    var c = c0
                                    c.withUnsafeMutableBufferPointer { entry($0.baseAddress!) }
                                    results.append(c)
                                }
                            }
                        }
                    }
                    let context = "\(family) rows=\(rows) width=\(width) add=\(addToC) transposeC=\(transposeC)"
                    for (index, c) in results.enumerated() {
                        let worst = zip(c, expected).map { Swift.abs($0 - $1) }.max()!
                        #expect(worst <= 1e-4, "\(context) \(entries[index].0): max error \(worst)")
                        // Same bits from every entry point: the same multiply-adds in the same order.
                        #expect(c.map(\.bitPattern) == results[0].map(\.bitPattern), "\(context) \(entries[index].0) vs run")
                    }
                }
            }
        }
    }
}
