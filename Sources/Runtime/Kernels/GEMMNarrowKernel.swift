/// The 6 × 16 register tile of `GEMM`, for ISAs with 16 vector registers of 256 bits (AVX2 +
/// FMA) or 32 of 128 bits (NEON), and the fallback everywhere else (`ISA`).
extension GEMM {
    /// C[rows×width] (+)= A panel · B panel for one 6 × 16 tile.
    ///
    /// A row of the tile is one `SIMD16<Float>`, which LLVM splits into the target's registers:
    /// 2 ymm on AVX2 (12 accumulators, 2 for B, 1 broadcast of A: 15 of 16), 4 q registers on
    /// NEON (24 + 4 + 1 of 32), 1 zmm on AVX-512 (where tests run it). The same shape as BLIS's
    /// and OpenBLAS's Haswell sgemm kernels. The entry points mirror `MicroKernel`'s, and every
    /// element gets the same multiply-adds in the same order whichever of them computes it.
    /// Compiled on every ISA so tests can run it anywhere; `GEMM` calls it when the ISA table
    /// picks it.
    enum NarrowKernel {
        /// Rows and columns of the tile.
        static let mr = 6, nr = 16
        typealias V = SIMD16<Float>
        typealias H = SIMD8<Float>

        /// Multiplies A packed `kc × 6` (row index fastest) by 16 columns of B whose depth p
        /// starts at `b + p·bStride`, and stores the first `rows × width` of the tile at `c`
        /// (its transpose when `transposeC`). `@inline(never)` for the reason given at `MicroKernel.run`.
        @inline(never)
        static func run(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                        _ transposeC: Bool) {
            storeTile(product(kc, a, b, bStride), c, ldc, rows, width, addToC, transposeC)
        }

        /// The tile of `run` before it is stored (see `MicroKernel.product`).
        @inline(__always)
        static func product(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int) -> Tile {
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
            var pa = a
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                multiplyAdd(&c0, V(repeating: pa[0]), b0)
                multiplyAdd(&c1, V(repeating: pa[1]), b0)
                multiplyAdd(&c2, V(repeating: pa[2]), b0)
                multiplyAdd(&c3, V(repeating: pa[3]), b0)
                multiplyAdd(&c4, V(repeating: pa[4]), b0)
                multiplyAdd(&c5, V(repeating: pa[5]), b0)
                pa += 6
                pb += step
            }
            return (c0, c1, c2, c3, c4, c5)
        }

        /// `run` with A read in place: row r, depth p at `a + r·rowStride + p`.
        @inline(never)
        static func runInPlace(_ kc: Int, _ a: UnsafePointer<Float>, _ rowStride: Int,
                               _ b: UnsafePointer<Float>, _ bStride: Int,
                               _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                               _ transposeC: Bool) {
            var t: Tile = (V(), V(), V(), V(), V(), V())
            let s1 = rowStride * MemoryLayout<Float>.stride
            accumulateInPlace(&t, kc, UnsafeRawPointer(a), (s1, 2 * s1, 3 * s1, 4 * s1, 5 * s1),
                              UnsafeRawPointer(b), bStride * MemoryLayout<Float>.stride)
            storeTile(t, c, ldc, rows, width, addToC, transposeC)
        }

        /// `t` += A · B over `kc` depths with A read in place (see `MicroKernel.accumulateInPlace`):
        /// rows 1…5 at byte offsets `rows` from row 0, 16 columns of B at `b + p·step` bytes.
        @inline(__always)
        static func accumulateInPlace(_ t: inout Tile, _ kc: Int, _ a: UnsafeRawPointer, _ rows: (Int, Int, Int, Int, Int),
                                      _ b: UnsafeRawPointer, _ step: Int) {
            var (c0, c1, c2, c3, c4, c5) = t
            let (s1, s2, s3, s4, s5) = rows
            var pa = a
            var pb = b
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                multiplyAdd(&c0, V(repeating: pa.load(as: Float.self)), b0)
                multiplyAdd(&c1, V(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                multiplyAdd(&c2, V(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                multiplyAdd(&c3, V(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                multiplyAdd(&c4, V(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                multiplyAdd(&c5, V(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                pa += MemoryLayout<Float>.stride
                pb += step
            }
            t = (c0, c1, c2, c3, c4, c5)
        }

        /// `run` for a ragged last panel of at most 8 columns: half a row per vector, so no work
        /// is spent on padding.
        @inline(never)
        static func runHalf(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                            _ transposeC: Bool) {
            var c0 = H(), c1 = H(), c2 = H(), c3 = H(), c4 = H(), c5 = H()
            var pa = a
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: H.self)
                multiplyAdd(&c0, H(repeating: pa[0]), b0)
                multiplyAdd(&c1, H(repeating: pa[1]), b0)
                multiplyAdd(&c2, H(repeating: pa[2]), b0)
                multiplyAdd(&c3, H(repeating: pa[3]), b0)
                multiplyAdd(&c4, H(repeating: pa[4]), b0)
                multiplyAdd(&c5, H(repeating: pa[5]), b0)
                pa += 6
                pb += step
            }
            let zero = H()
            storeTile((V(lowHalf: c0, highHalf: zero), V(lowHalf: c1, highHalf: zero), V(lowHalf: c2, highHalf: zero),
                       V(lowHalf: c3, highHalf: zero), V(lowHalf: c4, highHalf: zero), V(lowHalf: c5, highHalf: zero)),
                      c, ldc, rows, width, addToC, transposeC)
        }

        /// `runHalf` with A read in place, as in `runInPlace`.
        @inline(never)
        static func runHalfInPlace(_ kc: Int, _ a: UnsafePointer<Float>, _ rowStride: Int,
                                   _ b: UnsafePointer<Float>, _ bStride: Int,
                                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                                   _ transposeC: Bool) {
            var c0 = H(), c1 = H(), c2 = H(), c3 = H(), c4 = H(), c5 = H()
            var pa = UnsafeRawPointer(a)
            let s1 = rowStride * MemoryLayout<Float>.stride, s2 = 2 * s1, s3 = 3 * s1, s4 = 4 * s1, s5 = 5 * s1
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: H.self)
                multiplyAdd(&c0, H(repeating: pa.load(as: Float.self)), b0)
                multiplyAdd(&c1, H(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                multiplyAdd(&c2, H(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                multiplyAdd(&c3, H(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                multiplyAdd(&c4, H(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                multiplyAdd(&c5, H(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                pa += MemoryLayout<Float>.stride
                pb += step
            }
            let zero = H()
            storeTile((V(lowHalf: c0, highHalf: zero), V(lowHalf: c1, highHalf: zero), V(lowHalf: c2, highHalf: zero),
                       V(lowHalf: c3, highHalf: zero), V(lowHalf: c4, highHalf: zero), V(lowHalf: c5, highHalf: zero)),
                      c, ldc, rows, width, addToC, transposeC)
        }

        /// The 6 × 16 tile of accumulators, one row each.
        typealias Tile = (V, V, V, V, V, V)

        /// Writes (or adds) the valid `rows × width` corner of a tile at `c`, or, when
        /// `transposeC`, its transpose (tile element (r, j) to `c[j·ldc + r]`).
        @inline(__always)
        static func storeTile(_ t: Tile, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int,
                              _ addToC: Bool, _ transposeC: Bool) {
            if !transposeC && rows == mr && width == nr {
                storeRow(c, t.0, addToC)
                storeRow(c + ldc, t.1, addToC)
                storeRow(c + 2 * ldc, t.2, addToC)
                storeRow(c + 3 * ldc, t.3, addToC)
                storeRow(c + 4 * ldc, t.4, addToC)
                storeRow(c + 5 * ldc, t.5, addToC)
            } else if !transposeC && rows == mr && width == nr / 2 {
                storeHalfRow(c, t.0.lowHalf, addToC)
                storeHalfRow(c + ldc, t.1.lowHalf, addToC)
                storeHalfRow(c + 2 * ldc, t.2.lowHalf, addToC)
                storeHalfRow(c + 3 * ldc, t.3.lowHalf, addToC)
                storeHalfRow(c + 4 * ldc, t.4.lowHalf, addToC)
                storeHalfRow(c + 5 * ldc, t.5.lowHalf, addToC)
            } else if transposeC && rows == mr {
                storeTransposed(t, c, ldc, width, addToC)
            } else {
                var tile = t
                withUnsafeBytes(of: &tile) { bytes in
                    storeEdge(bytes.baseAddress!.assumingMemoryBound(to: Float.self), c, ldc, rows, width, addToC,
                              transposeC)
                }
            }
        }

        /// The transpose of a tile with all 6 rows valid: column j (6 floats) to `c + j·ldc`, for
        /// j < `width`. Each 8-column half, padded with two zero rows, is transposed in registers
        /// (`Transpose.columns`), then stored 4 + 2 floats a column (the swapped product's
        /// tiles: element by element, `storeEdge` took 8 % of 128×784×400 with Bᵀ on AVX2). The
        /// additions are `storeEdge`'s, so the bits are too.
        @inline(never)
        static func storeTransposed(_ t: Tile, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ width: Int, _ addToC: Bool) {
            let zero = H()
            Transpose.columns((t.0.lowHalf, t.1.lowHalf, t.2.lowHalf, t.3.lowHalf, t.4.lowHalf, t.5.lowHalf, zero, zero),
                              (t.0.highHalf, t.1.highHalf, t.2.highHalf, t.3.highHalf, t.4.highHalf, t.5.highHalf, zero, zero),
                              width: width) { j, column in
                // Column j: 6 rows and 2 zeros.
                let four = column.lowHalf, two = column.highHalf.lowHalf
                let raw = UnsafeMutableRawPointer(c + j * ldc)
                raw.storeBytes(of: addToC ? raw.loadUnaligned(as: SIMD4<Float>.self) + four : four, as: SIMD4<Float>.self)
                let rest = raw + 4 * MemoryLayout<Float>.stride
                rest.storeBytes(of: addToC ? rest.loadUnaligned(as: SIMD2<Float>.self) + two : two, as: SIMD2<Float>.self)
            }
        }

        @inline(__always)
        static func storeRow(_ c: UnsafeMutablePointer<Float>, _ value: V, _ addToC: Bool) {
            let raw = UnsafeMutableRawPointer(c)
            raw.storeBytes(of: addToC ? raw.loadUnaligned(as: V.self) + value : value, as: V.self)
        }

        @inline(__always)
        static func storeHalfRow(_ c: UnsafeMutablePointer<Float>, _ value: H, _ addToC: Bool) {
            let raw = UnsafeMutableRawPointer(c)
            raw.storeBytes(of: addToC ? raw.loadUnaligned(as: H.self) + value : value, as: H.self)
        }

        /// Writes (or adds) the valid corner of a tile held row-major (16 floats a row), or its
        /// transpose (column j of the tile to the `rows` floats at `c + j·ldc`).
        @inline(never)
        static func storeEdge(_ tile: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                              _ rows: Int, _ width: Int, _ addToC: Bool, _ transposeC: Bool) {
            if transposeC {
                for j in 0..<width {
                    let row = c + j * ldc
                    for r in 0..<rows { row[r] = addToC ? row[r] + tile[r * nr + j] : tile[r * nr + j] }
                }
                return
            }
            for r in 0..<rows {
                let source = tile + r * nr, row = c + r * ldc
                for j in 0..<width { row[j] = addToC ? row[j] + source[j] : source[j] }
            }
        }
    }
}
