/// The register-blocked inner loops of `GEMM` and the packing that feeds them.
extension GEMM {
    /// C[rows×width] (+)= A panel · B panel for one 8 × 32 tile: the AVX-512 tile (`ISA`).
    ///
    /// Compiled on every ISA (plain Swift SIMD) so tests can run it anywhere; `GEMM` calls it
    /// only when the ISA table picks it.
    enum MicroKernel {
        /// Rows and columns of the tile.
        static let mr = 8, nr = 32

        /// Multiplies A packed `kc × 8` (row index fastest) by 32 columns of B whose depth p
        /// starts at `b + p·bStride` (`nr` when packed, `ldb` when B is read in place), and
        /// stores the first `rows × width` of the 8×32 tile at `c`.
        ///
        /// Kept `@inline(never)` and small on purpose: inlined into a large caller, the same
        /// code was split into 128-bit operations and ran 7× slower (DESIGN.md, Build flags).
        /// The 16 accumulators are named variables so they can live in registers. Edge tiles
        /// run the full loop (A is zero-padded, B's ragged panel is packed) and store less.
        @inline(never)
        static func run(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int,
                        _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                        _ transposeC: Bool) {
            storeTile(product(kc, a, b, bStride), c, ldc, rows, width, addToC, transposeC)
        }

        /// The tile of `run` before it is stored: A packed `kc × 8` times 32 columns of B whose
        /// depth p starts at `b + p·bStride`, rows as pairs of vectors. Always inlined, into
        /// kernels that are themselves small and `@inline(never)` (`run`, the fused shortcut
        /// convolution's tile, which stores its tiles its own way).
        @inline(__always)
        static func product(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int) -> Tile {
            typealias V = SIMD16<Float>
            var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
            var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
            var pa = a
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                let b1 = pb.loadUnaligned(fromByteOffset: 64, as: V.self)
                var x = V(repeating: pa[0]); c00.addProduct(x, b0); c01.addProduct(x, b1)
                x = V(repeating: pa[1]); c10.addProduct(x, b0); c11.addProduct(x, b1)
                x = V(repeating: pa[2]); c20.addProduct(x, b0); c21.addProduct(x, b1)
                x = V(repeating: pa[3]); c30.addProduct(x, b0); c31.addProduct(x, b1)
                x = V(repeating: pa[4]); c40.addProduct(x, b0); c41.addProduct(x, b1)
                x = V(repeating: pa[5]); c50.addProduct(x, b0); c51.addProduct(x, b1)
                x = V(repeating: pa[6]); c60.addProduct(x, b0); c61.addProduct(x, b1)
                x = V(repeating: pa[7]); c70.addProduct(x, b0); c71.addProduct(x, b1)
                pa += 8
                pb += step
            }
            return (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71)
        }

        /// `run` with A read in place: row r, depth p at `a + r·rowStride + p`.
        /// Each element gets the same fused multiply-adds in the same order as in `run`.
        @inline(never)
        static func runInPlace(_ kc: Int, _ a: UnsafePointer<Float>, _ rowStride: Int,
                               _ b: UnsafePointer<Float>, _ bStride: Int,
                               _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                        _ transposeC: Bool) {
            typealias V = SIMD16<Float>
            var t: Tile = (V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
            let s1 = rowStride * MemoryLayout<Float>.stride
            accumulateInPlace(&t, kc, UnsafeRawPointer(a), (s1, 2 * s1, 3 * s1, 4 * s1, 5 * s1, 6 * s1, 7 * s1),
                              UnsafeRawPointer(b), bStride * MemoryLayout<Float>.stride)
            storeTile(t, c, ldc, rows, width, addToC, transposeC)
        }

        /// Byte offsets of A's rows 1…7 from row 0, for `accumulateInPlace`.
        typealias RowOffsets = (Int, Int, Int, Int, Int, Int, Int)

        /// `t` += A · B over `kc` depths, A read in place (row r, depth p at byte `a + rows[r − 1]
        /// + 4·p`), 32 columns of B at `b + p·step` bytes. One pointer walks along k; rows are byte
        /// offsets from it, so each broadcast is one load with a register offset (eight pointers
        /// made LLVM recompute addresses). Always inlined, into small `@inline(never)` kernels
        /// (`runInPlace`, the fused shortcut convolution's filter tile).
        @inline(__always)
        static func accumulateInPlace(_ t: inout Tile, _ kc: Int, _ a: UnsafeRawPointer, _ rows: RowOffsets,
                                      _ b: UnsafeRawPointer, _ step: Int) {
            typealias V = SIMD16<Float>
            var (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71) = t
            let (s1, s2, s3, s4, s5, s6, s7) = rows
            var pa = a
            var pb = b
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                let b1 = pb.loadUnaligned(fromByteOffset: 64, as: V.self)
                var x = V(repeating: pa.load(as: Float.self)); c00.addProduct(x, b0); c01.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s1, as: Float.self)); c10.addProduct(x, b0); c11.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s2, as: Float.self)); c20.addProduct(x, b0); c21.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s3, as: Float.self)); c30.addProduct(x, b0); c31.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s4, as: Float.self)); c40.addProduct(x, b0); c41.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s5, as: Float.self)); c50.addProduct(x, b0); c51.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s6, as: Float.self)); c60.addProduct(x, b0); c61.addProduct(x, b1)
                x = V(repeating: pa.load(fromByteOffset: s7, as: Float.self)); c70.addProduct(x, b0); c71.addProduct(x, b1)
                pa += MemoryLayout<Float>.stride
                pb += step
            }
            t = (c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71)
        }

        /// `runHalf` with A read in place, as in `runInPlace`.
        @inline(never)
        static func runHalfInPlace(_ kc: Int, _ a: UnsafePointer<Float>, _ rowStride: Int,
                                   _ b: UnsafePointer<Float>, _ bStride: Int,
                                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                        _ transposeC: Bool) {
            typealias V = SIMD16<Float>
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V(), c7 = V()
            // One pointer walks along k; rows are byte offsets from it, so each broadcast is one
            // load with a register offset (eight pointers made LLVM recompute addresses).
            var pa = UnsafeRawPointer(a)
            let s1 = rowStride * MemoryLayout<Float>.stride, s2 = 2 * s1, s3 = 3 * s1
            let s4 = 4 * s1, s5 = 5 * s1, s6 = 6 * s1, s7 = 7 * s1
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                c0.addProduct(V(repeating: pa.load(as: Float.self)), b0)
                c1.addProduct(V(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                c2.addProduct(V(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                c3.addProduct(V(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                c4.addProduct(V(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                c5.addProduct(V(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                c6.addProduct(V(repeating: pa.load(fromByteOffset: s6, as: Float.self)), b0)
                c7.addProduct(V(repeating: pa.load(fromByteOffset: s7, as: Float.self)), b0)
                pa += MemoryLayout<Float>.stride
                pb += step
            }
            if rows == 8 && width == 16 && !transposeC {
                storeVector(c, c0, addToC)
                storeVector(c + ldc, c1, addToC)
                storeVector(c + 2 * ldc, c2, addToC)
                storeVector(c + 3 * ldc, c3, addToC)
                storeVector(c + 4 * ldc, c4, addToC)
                storeVector(c + 5 * ldc, c5, addToC)
                storeVector(c + 6 * ldc, c6, addToC)
                storeVector(c + 7 * ldc, c7, addToC)
                return
            }
            let zero = V()
            storeTile((c0, zero, c1, zero, c2, zero, c3, zero, c4, zero, c5, zero, c6, zero, c7, zero),
                      c, ldc, rows, width, addToC, transposeC)
        }

        /// `run` for a ragged last panel of at most 16 columns: the first vector of each row
        /// only, so no work is spent on padding. Each element gets the same fused multiply-adds
        /// in the same order as in `run`, so its bits do not depend on which kernel ran it.
        @inline(never)
        static func runHalf(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ bStride: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int, _ addToC: Bool,
                        _ transposeC: Bool) {
            typealias V = SIMD16<Float>
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V(), c7 = V()
            var pa = a
            var pb = UnsafeRawPointer(b)
            let step = bStride * MemoryLayout<Float>.stride
            for _ in 0..<kc {
                let b0 = pb.loadUnaligned(as: V.self)
                c0.addProduct(V(repeating: pa[0]), b0)
                c1.addProduct(V(repeating: pa[1]), b0)
                c2.addProduct(V(repeating: pa[2]), b0)
                c3.addProduct(V(repeating: pa[3]), b0)
                c4.addProduct(V(repeating: pa[4]), b0)
                c5.addProduct(V(repeating: pa[5]), b0)
                c6.addProduct(V(repeating: pa[6]), b0)
                c7.addProduct(V(repeating: pa[7]), b0)
                pa += 8
                pb += step
            }
            if rows == 8 && width == 16 && !transposeC {
                storeVector(c, c0, addToC)
                storeVector(c + ldc, c1, addToC)
                storeVector(c + 2 * ldc, c2, addToC)
                storeVector(c + 3 * ldc, c3, addToC)
                storeVector(c + 4 * ldc, c4, addToC)
                storeVector(c + 5 * ldc, c5, addToC)
                storeVector(c + 6 * ldc, c6, addToC)
                storeVector(c + 7 * ldc, c7, addToC)
                return
            }
            let zero = V()
            storeTile((c0, zero, c1, zero, c2, zero, c3, zero, c4, zero, c5, zero, c6, zero, c7, zero),
                      c, ldc, rows, width, addToC, transposeC)
        }

        /// The 8 × 32 tile of accumulators, row r in elements 2r (columns 0–15) and 2r + 1.
        typealias Tile = (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>,
                          SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>,
                          SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)

        /// Writes (or adds) the valid `rows × width` corner of a tile at `c`, or, when
        /// `transposeC`, its transpose (tile element (r, j) to `c[j·ldc + r]`).
        @inline(__always)
        static func storeTile(_ t: Tile, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int,
                              _ addToC: Bool, _ transposeC: Bool) {
            if transposeC {
                storeTransposed(t, c, ldc, rows, width, addToC)
            } else if rows == mr && width == nr {
                storeRow(c, t.0, t.1, addToC)
                storeRow(c + ldc, t.2, t.3, addToC)
                storeRow(c + 2 * ldc, t.4, t.5, addToC)
                storeRow(c + 3 * ldc, t.6, t.7, addToC)
                storeRow(c + 4 * ldc, t.8, t.9, addToC)
                storeRow(c + 5 * ldc, t.10, t.11, addToC)
                storeRow(c + 6 * ldc, t.12, t.13, addToC)
                storeRow(c + 7 * ldc, t.14, t.15, addToC)
            } else {
                var tile = t
                withUnsafeBytes(of: &tile) { bytes in
                    storeEdge(bytes.baseAddress!.assumingMemoryBound(to: Float.self), c, ldc, rows, width, addToC)
                }
            }
        }

        /// Writes (or adds) the transpose of a tile's valid corner: column j of the tile becomes
        /// `rows` floats at `c + j·ldc`. With all 8 rows valid, each half of the tile is
        /// transposed in registers (`Transpose.round8`) into 8-float rows of C.
        @inline(never)
        static func storeTransposed(_ t: Tile, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ rows: Int, _ width: Int,
                                    _ addToC: Bool) {
            if rows == mr {
                Transpose.columns((t.0, t.2, t.4, t.6, t.8, t.10, t.12, t.14), (t.1, t.3, t.5, t.7, t.9, t.11, t.13, t.15),
                                  width: width) { j, value in
                    let raw = UnsafeMutableRawPointer(c + j * ldc)
                    raw.storeBytes(of: addToC ? raw.loadUnaligned(as: SIMD8<Float>.self) + value : value, as: SIMD8<Float>.self)
                }
                return
            }
            var tile = t
            withUnsafeBytes(of: &tile) { bytes in
                let source = bytes.baseAddress!.assumingMemoryBound(to: Float.self)
                for j in 0..<width {
                    let row = c + j * ldc
                    for r in 0..<rows { row[r] = addToC ? row[r] + source[r * nr + j] : source[r * nr + j] }
                }
            }
        }

        /// Writes (or adds) 16 floats of a micro-kernel result; C need not be aligned.
        @inline(__always)
        static func storeVector(_ c: UnsafeMutablePointer<Float>, _ value: SIMD16<Float>, _ addToC: Bool) {
            let raw = UnsafeMutableRawPointer(c)
            raw.storeBytes(of: addToC ? raw.loadUnaligned(as: SIMD16<Float>.self) + value : value, as: SIMD16<Float>.self)
        }

        /// Writes (or adds) one 32-float row of a micro-kernel result; C need not be aligned.
        @inline(__always)
        static func storeRow(_ c: UnsafeMutablePointer<Float>, _ low: SIMD16<Float>, _ high: SIMD16<Float>,
                             _ addToC: Bool) {
            let raw = UnsafeMutableRawPointer(c)
            var low = low, high = high
            if addToC {
                low = raw.loadUnaligned(as: SIMD16<Float>.self) + low
                high = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) + high
            }
            raw.storeBytes(of: low, as: SIMD16<Float>.self)
            raw.storeBytes(of: high, toByteOffset: 64, as: SIMD16<Float>.self)
        }

        /// Writes (or adds) the valid `rows × width` corner of an 8×32 tile held row-major.
        @inline(never)
        static func storeEdge(_ tile: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                              _ rows: Int, _ width: Int, _ addToC: Bool) {
            for r in 0..<rows {
                let source = tile + r * nr, row = c + r * ldc
                for j in 0..<width { row[j] = addToC ? row[j] + source[j] : source[j] }
            }
        }
    }

    /// C = A·Bᵀ by inner products along k, for A (m × k) and B (n × k) both contiguous in k.
    ///
    /// Nothing is packed: a tile of C (4 × 4 on AVX-512, 4 × 2 elsewhere: `ISA.dotColumns`)
    /// keeps one vector accumulator per element over k in steps of `ISA.dotLanes` floats, then
    /// adds each one's lanes in a fixed tree. For small m this beats packing Bᵀ, which would
    /// touch every element of B once for only m multiply-adds. Element (i, j) always gets the
    /// same sum order, whatever the tiling or thread count.
    enum DotKernel {
        /// Floats of k per step; k must be at least this (the tail step re-reads the last `width`).
        static let width = ISA.dotLanes
        /// Rows of A per tile.
        static let tile = 4
        /// Rows of B per tile.
        static let columnsTile = ISA.dotColumns

        static func run(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                        c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int) {
            let jBlocks = (n + columnsTile - 1) / columnsTile
            // A few rows of B (≤ 16 KiB for k ≤ 1024) stay in L1 while all rows of A stream by.
            let blocksPerChunk = threads == 1 ? jBlocks : max(1, min(jBlocks, GEMM.chunkWork / max(1, m * columnsTile * k)))
            let chunks = (jBlocks + blocksPerChunk - 1) / blocksPerChunk
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                for jb in chunk * blocksPerChunk..<min(jBlocks, (chunk + 1) * blocksPerChunk) {
                    let j0 = jb * columnsTile
                    for i0 in stride(from: 0, to: m, by: tile) {
                        if ISA.wideTile {
                            tile4x4(k, a + i0 * lda, lda, min(tile, m - i0), b + j0 * ldb, ldb, min(columnsTile, n - j0),
                                    c + i0 * ldc + j0, ldc, accumulate)
                        } else {
                            tile4x2(k, a + i0 * lda, lda, min(tile, m - i0), b + j0 * ldb, ldb, min(columnsTile, n - j0),
                                    c + i0 * ldc + j0, ldc, accumulate)
                        }
                    }
                }
            }
        }

        /// One 4 × 2 tile in 8-float steps (`tile4x4`'s narrow twin, 8 accumulators): rows past
        /// `rows` of A (or `columns` of B) repeat the last valid row (valid memory, results not stored).
        @inline(never)
        static func tile4x2(_ k: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ rows: Int,
                            _ b: UnsafePointer<Float>, _ ldb: Int, _ columns: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ addToC: Bool) {
            typealias V = SIMD8<Float>
            let a0 = UnsafeRawPointer(a), a1 = UnsafeRawPointer(a + min(1, rows - 1) * lda)
            let a2 = UnsafeRawPointer(a + min(2, rows - 1) * lda), a3 = UnsafeRawPointer(a + min(3, rows - 1) * lda)
            let b0 = UnsafeRawPointer(b), b1 = UnsafeRawPointer(b + min(1, columns - 1) * ldb)
            var s00 = V(), s01 = V(), s10 = V(), s11 = V(), s20 = V(), s21 = V(), s30 = V(), s31 = V()
            var offset = 0
            let end = k * MemoryLayout<Float>.stride
            let stepBytes = 8 * MemoryLayout<Float>.stride
            while offset + stepBytes <= end {
                let y0 = b0.loadUnaligned(fromByteOffset: offset, as: V.self)
                let y1 = b1.loadUnaligned(fromByteOffset: offset, as: V.self)
                var x = a0.loadUnaligned(fromByteOffset: offset, as: V.self)
                multiplyAdd(&s00, x, y0); multiplyAdd(&s01, x, y1)
                x = a1.loadUnaligned(fromByteOffset: offset, as: V.self)
                multiplyAdd(&s10, x, y0); multiplyAdd(&s11, x, y1)
                x = a2.loadUnaligned(fromByteOffset: offset, as: V.self)
                multiplyAdd(&s20, x, y0); multiplyAdd(&s21, x, y1)
                x = a3.loadUnaligned(fromByteOffset: offset, as: V.self)
                multiplyAdd(&s30, x, y0); multiplyAdd(&s31, x, y1)
                offset += stepBytes
            }
            if offset < end {
                // The last 8 floats of each row, with the lanes already summed zeroed in A.
                let start = end - stepBytes
                let skip = Int32((offset - start) / MemoryLayout<Float>.stride)
                let keep = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7) .>= SIMD8<Int32>(repeating: skip)
                let zero = V()
                let y0 = b0.loadUnaligned(fromByteOffset: start, as: V.self)
                let y1 = b1.loadUnaligned(fromByteOffset: start, as: V.self)
                var x = zero.replacing(with: a0.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                multiplyAdd(&s00, x, y0); multiplyAdd(&s01, x, y1)
                x = zero.replacing(with: a1.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                multiplyAdd(&s10, x, y0); multiplyAdd(&s11, x, y1)
                x = zero.replacing(with: a2.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                multiplyAdd(&s20, x, y0); multiplyAdd(&s21, x, y1)
                x = zero.replacing(with: a3.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                multiplyAdd(&s30, x, y0); multiplyAdd(&s31, x, y1)
            }
            let sums = (reducePairs(s00, s01, s10, s11), reducePairs(s20, s21, s30, s31))
            store2(sums.0.lowHalf, c, columns, addToC)
            if rows > 1 { store2(sums.0.highHalf, c + ldc, columns, addToC) }
            if rows > 2 { store2(sums.1.lowHalf, c + 2 * ldc, columns, addToC) }
            if rows > 3 { store2(sums.1.highHalf, c + 3 * ldc, columns, addToC) }
        }

        /// The lane sums of four 8-lane accumulators as one vector, by a fixed halving tree.
        @inline(__always)
        static func reducePairs(_ v0: SIMD8<Float>, _ v1: SIMD8<Float>, _ v2: SIMD8<Float>, _ v3: SIMD8<Float>) -> SIMD4<Float> {
            let w01 = SIMD8(lowHalf: v0.lowHalf + v0.highHalf, highHalf: v1.lowHalf + v1.highHalf)
            let w23 = SIMD8(lowHalf: v2.lowHalf + v2.highHalf, highHalf: v3.lowHalf + v3.highHalf)
            let pairs = SIMD8(lowHalf: w01.evenHalf + w01.oddHalf, highHalf: w23.evenHalf + w23.oddHalf)
            return pairs.evenHalf + pairs.oddHalf
        }

        @inline(__always)
        static func store2(_ sums: SIMD2<Float>, _ c: UnsafeMutablePointer<Float>, _ columns: Int, _ addToC: Bool) {
            c[0] = addToC ? c[0] + sums[0] : sums[0]
            if columns > 1 { c[1] = addToC ? c[1] + sums[1] : sums[1] }
        }

        /// One 4 × 4 tile: rows past `rows` of A (or `columns` of B) repeat the last valid row
        /// (valid memory, results not stored).
        @inline(never)
        static func tile4x4(_ k: Int, _ a: UnsafePointer<Float>, _ lda: Int, _ rows: Int,
                            _ b: UnsafePointer<Float>, _ ldb: Int, _ columns: Int,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ addToC: Bool) {
            typealias V = SIMD16<Float>
            let a0 = UnsafeRawPointer(a), a1 = UnsafeRawPointer(a + min(1, rows - 1) * lda)
            let a2 = UnsafeRawPointer(a + min(2, rows - 1) * lda), a3 = UnsafeRawPointer(a + min(3, rows - 1) * lda)
            let b0 = UnsafeRawPointer(b), b1 = UnsafeRawPointer(b + min(1, columns - 1) * ldb)
            let b2 = UnsafeRawPointer(b + min(2, columns - 1) * ldb), b3 = UnsafeRawPointer(b + min(3, columns - 1) * ldb)
            var s00 = V(), s01 = V(), s02 = V(), s03 = V(), s10 = V(), s11 = V(), s12 = V(), s13 = V()
            var s20 = V(), s21 = V(), s22 = V(), s23 = V(), s30 = V(), s31 = V(), s32 = V(), s33 = V()
            var offset = 0
            let end = k * MemoryLayout<Float>.stride
            let stepBytes = width * MemoryLayout<Float>.stride
            while offset + stepBytes <= end {
                let y0 = b0.loadUnaligned(fromByteOffset: offset, as: V.self)
                let y1 = b1.loadUnaligned(fromByteOffset: offset, as: V.self)
                let y2 = b2.loadUnaligned(fromByteOffset: offset, as: V.self)
                let y3 = b3.loadUnaligned(fromByteOffset: offset, as: V.self)
                var x = a0.loadUnaligned(fromByteOffset: offset, as: V.self)
                s00.addProduct(x, y0); s01.addProduct(x, y1); s02.addProduct(x, y2); s03.addProduct(x, y3)
                x = a1.loadUnaligned(fromByteOffset: offset, as: V.self)
                s10.addProduct(x, y0); s11.addProduct(x, y1); s12.addProduct(x, y2); s13.addProduct(x, y3)
                x = a2.loadUnaligned(fromByteOffset: offset, as: V.self)
                s20.addProduct(x, y0); s21.addProduct(x, y1); s22.addProduct(x, y2); s23.addProduct(x, y3)
                x = a3.loadUnaligned(fromByteOffset: offset, as: V.self)
                s30.addProduct(x, y0); s31.addProduct(x, y1); s32.addProduct(x, y2); s33.addProduct(x, y3)
                offset += stepBytes
            }
            if offset < end {
                // The last 16 floats of each row, with the lanes already summed zeroed in A.
                let start = end - stepBytes
                let skip = Int32((offset - start) / MemoryLayout<Float>.stride)
                let keep = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) .>= SIMD16<Int32>(repeating: skip)
                let zero = V()
                let y0 = b0.loadUnaligned(fromByteOffset: start, as: V.self)
                let y1 = b1.loadUnaligned(fromByteOffset: start, as: V.self)
                let y2 = b2.loadUnaligned(fromByteOffset: start, as: V.self)
                let y3 = b3.loadUnaligned(fromByteOffset: start, as: V.self)
                var x = zero.replacing(with: a0.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                s00.addProduct(x, y0); s01.addProduct(x, y1); s02.addProduct(x, y2); s03.addProduct(x, y3)
                x = zero.replacing(with: a1.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                s10.addProduct(x, y0); s11.addProduct(x, y1); s12.addProduct(x, y2); s13.addProduct(x, y3)
                x = zero.replacing(with: a2.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                s20.addProduct(x, y0); s21.addProduct(x, y1); s22.addProduct(x, y2); s23.addProduct(x, y3)
                x = zero.replacing(with: a3.loadUnaligned(fromByteOffset: start, as: V.self), where: keep)
                s30.addProduct(x, y0); s31.addProduct(x, y1); s32.addProduct(x, y2); s33.addProduct(x, y3)
            }
            let sums = (reduce(s00, s01, s02, s03), reduce(s10, s11, s12, s13),
                        reduce(s20, s21, s22, s23), reduce(s30, s31, s32, s33))
            store(sums.0, c, columns, addToC)
            if rows > 1 { store(sums.1, c + ldc, columns, addToC) }
            if rows > 2 { store(sums.2, c + 2 * ldc, columns, addToC) }
            if rows > 3 { store(sums.3, c + 3 * ldc, columns, addToC) }
        }

        /// The lane sums of four accumulators as one vector, by a fixed halving tree built
        /// from whole-vector shuffles (extracting lanes one by one costs more than the loop
        /// for small k).
        @inline(__always)
        static func reduce(_ v0: SIMD16<Float>, _ v1: SIMD16<Float>, _ v2: SIMD16<Float>, _ v3: SIMD16<Float>) -> SIMD4<Float> {
            let w01 = SIMD16(lowHalf: v0.lowHalf + v0.highHalf, highHalf: v1.lowHalf + v1.highHalf)
            let w23 = SIMD16(lowHalf: v2.lowHalf + v2.highHalf, highHalf: v3.lowHalf + v3.highHalf)
            let u = SIMD16(lowHalf: w01.evenHalf + w01.oddHalf, highHalf: w23.evenHalf + w23.oddHalf)
            let pairs = u.evenHalf + u.oddHalf
            return pairs.evenHalf + pairs.oddHalf
        }

        @inline(__always)
        static func store(_ sums: SIMD4<Float>, _ c: UnsafeMutablePointer<Float>, _ columns: Int, _ addToC: Bool) {
            if columns == 4 {
                let raw = UnsafeMutableRawPointer(c)
                raw.storeBytes(of: addToC ? raw.loadUnaligned(as: SIMD4<Float>.self) + sums : sums, as: SIMD4<Float>.self)
            } else {
                for j in 0..<columns { c[j] = addToC ? c[j] + sums[j] : sums[j] }
            }
        }
    }
}

extension GEMM.Operands {
    /// Packs rows `panel·mr ..< panel·mr + mr` of op(A), depths `pc ..< pc + kc`, as
    /// `dst[p·mr + r]`; rows past `m` are zero so edge tiles need no special kernel.
    func packA(panel: Int, m: Int, pc: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
        let mr = GEMM.mr
        let i0 = panel * mr
        let rows = min(mr, m - i0)
        if rows < mr { dst.update(repeating: 0, count: mr * kc) }
        if transposeA {
            // op(A)[i, p] = a[p·lda + i]: each depth holds the panel's rows contiguously.
            if rows == mr && mr == 8 {
                for p in 0..<kc {
                    UnsafeMutableRawPointer(dst + p * mr).storeBytes(
                        of: UnsafeRawPointer(a + (pc + p) * lda + i0).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
                }
            } else if rows == mr && mr == 6 {
                // The narrow tile's 6 rows as 4 + 2 floats a depth (element by element, packing Aᵀ
                // took as long as the multiply in the VAE's 400×20×128 filter gradients on AVX2).
                for p in 0..<kc {
                    let src = UnsafeRawPointer(a + (pc + p) * lda + i0), out = UnsafeMutableRawPointer(dst + p * 6)
                    out.storeBytes(of: src.loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
                    out.storeBytes(of: src.loadUnaligned(fromByteOffset: 16, as: SIMD2<Float>.self), toByteOffset: 16,
                                   as: SIMD2<Float>.self)
                }
            } else {
                for p in 0..<kc {
                    let src = a + (pc + p) * lda + i0
                    for r in 0..<rows { dst[p * mr + r] = src[r] }
                }
            }
        } else {
            var p0 = 0
            if rows == mr && mr == 8 {
                // 8 rows × 16 depths at a time, transposed in registers (see `Transpose`).
                let r0 = UnsafeRawPointer(a + i0 * lda + pc), stride = lda * MemoryLayout<Float>.stride
                let r1 = r0 + stride, r2 = r0 + 2 * stride, r3 = r0 + 3 * stride
                let r4 = r0 + 4 * stride, r5 = r0 + 5 * stride, r6 = r0 + 6 * stride, r7 = r0 + 7 * stride
                while p0 + 16 <= kc {
                    let offset = p0 * MemoryLayout<Float>.stride
                    var v = (r0.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r1.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r2.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r3.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r4.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r5.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r6.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                             r7.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self))
                    GEMM.Transpose.round8(&v); GEMM.Transpose.round8(&v)
                    GEMM.Transpose.round8(&v); GEMM.Transpose.round8(&v)
                    let out = UnsafeMutableRawPointer(dst + p0 * mr)
                    out.storeBytes(of: v.0, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.1, toByteOffset: 64, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.2, toByteOffset: 128, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.3, toByteOffset: 192, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.4, toByteOffset: 256, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.5, toByteOffset: 320, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.6, toByteOffset: 384, as: SIMD16<Float>.self)
                    out.storeBytes(of: v.7, toByteOffset: 448, as: SIMD16<Float>.self)
                    p0 += 16
                }
            }
            if rows == mr && mr == 6 {
                // The narrow tile: 6 rows × 8 depths at a time, read as vectors and interleaved.
                let r0 = UnsafeRawPointer(a + i0 * lda + pc), stride = lda * MemoryLayout<Float>.stride
                while p0 + 8 <= kc {
                    let offset = p0 * MemoryLayout<Float>.stride
                    let v0 = r0.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                    let v1 = r0.loadUnaligned(fromByteOffset: offset + stride, as: SIMD8<Float>.self)
                    let v2 = r0.loadUnaligned(fromByteOffset: offset + 2 * stride, as: SIMD8<Float>.self)
                    let v3 = r0.loadUnaligned(fromByteOffset: offset + 3 * stride, as: SIMD8<Float>.self)
                    let v4 = r0.loadUnaligned(fromByteOffset: offset + 4 * stride, as: SIMD8<Float>.self)
                    let v5 = r0.loadUnaligned(fromByteOffset: offset + 5 * stride, as: SIMD8<Float>.self)
                    // Padded to 8 rows and transposed in registers: depth q's 6 rows are then
                    // lanes 0..<6 of vector q, stored 4 + 2 floats (element by element, packing A
                    // took 3.9 % of 128×400×784 with B in place on AVX2, 1 thread; now 2.7 %).
                    let zero = SIMD8<Float>()
                    var rows8 = (v0, v1, v2, v3, v4, v5, zero, zero)
                    GEMM.Transpose.round8(&rows8); GEMM.Transpose.round8(&rows8); GEMM.Transpose.round8(&rows8)
                    let out = UnsafeMutableRawPointer(dst + p0 * 6)
                    withUnsafeBytes(of: &rows8) { bytes in
                        for q in 0..<8 {
                            let depth = bytes.loadUnaligned(fromByteOffset: q * 32, as: SIMD8<Float>.self)
                            out.storeBytes(of: depth.lowHalf, toByteOffset: q * 24, as: SIMD4<Float>.self)
                            out.storeBytes(of: depth.highHalf.lowHalf, toByteOffset: q * 24 + 16, as: SIMD2<Float>.self)
                        }
                    }
                    p0 += 8
                }
            }
            for r in 0..<rows {
                let src = a + (i0 + r) * lda + pc
                for p in p0..<kc { dst[p * mr + r] = src[p] }
            }
        }
    }

    /// Packs columns `jc + panel·nr ..< +nr` of op(B), depths `pc ..< pc + kc`, as
    /// `dst[p·nr + j]`; columns past `n` are zero.
    func packB(panel: Int, n: Int, jc: Int, pc: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
        let nr = GEMM.nr
        let j0 = jc + panel * nr
        let columns = min(nr, n - j0)
        if columns < nr { dst.update(repeating: 0, count: nr * kc) }
        if transposeB {
            // op(B)[p, j] = b[j·ldb + p]: 16 rows of B × 16 depths at a time are transposed in
            // registers (see `Transpose`); the ragged rest goes element by element.
            var p0 = 0
            if columns == nr {
                while p0 + 16 <= kc {
                    for half in 0..<nr / 16 {
                        let src = UnsafeRawPointer(b + (j0 + 16 * half) * ldb + pc + p0)
                        let stride = ldb * MemoryLayout<Float>.stride
                        @inline(__always) func row(_ r: Int) -> SIMD16<Float> {
                            src.loadUnaligned(fromByteOffset: r * stride, as: SIMD16<Float>.self)
                        }
                        var v = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7),
                                 row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15))
                        GEMM.Transpose.round16(&v); GEMM.Transpose.round16(&v)
                        GEMM.Transpose.round16(&v); GEMM.Transpose.round16(&v)
                        let out = UnsafeMutableRawPointer(dst + p0 * nr + 16 * half)
                        let step = nr * MemoryLayout<Float>.stride
                        out.storeBytes(of: v.0, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.1, toByteOffset: step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.2, toByteOffset: 2 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.3, toByteOffset: 3 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.4, toByteOffset: 4 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.5, toByteOffset: 5 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.6, toByteOffset: 6 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.7, toByteOffset: 7 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.8, toByteOffset: 8 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.9, toByteOffset: 9 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.10, toByteOffset: 10 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.11, toByteOffset: 11 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.12, toByteOffset: 12 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.13, toByteOffset: 13 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.14, toByteOffset: 14 * step, as: SIMD16<Float>.self)
                        out.storeBytes(of: v.15, toByteOffset: 15 * step, as: SIMD16<Float>.self)
                    }
                    p0 += 16
                }
            }
            for j in 0..<columns {
                let src = b + (j0 + j) * ldb + pc
                for p in p0..<kc { dst[p * nr + j] = src[p] }
            }
        } else if columns == nr {
            for p in 0..<kc {
                let src = UnsafeRawPointer(b + (pc + p) * ldb + j0)
                let out = UnsafeMutableRawPointer(dst + p * nr)
                for offset in stride(from: 0, to: nr * MemoryLayout<Float>.stride, by: 64) {
                    out.storeBytes(of: src.loadUnaligned(fromByteOffset: offset, as: SIMD16<Float>.self),
                                   toByteOffset: offset, as: SIMD16<Float>.self)
                }
            }
        } else {
            for p in 0..<kc {
                let src = b + (pc + p) * ldb + j0
                for j in 0..<columns { dst[p * nr + j] = src[j] }
            }
        }
    }
}

extension GEMM {
    /// In-register transposes for packing, built from one shuffle: `unzip` splits the lanes of
    /// two joined vectors into even and odd. One round unzips rows (2i, 2i+1) into rows i and
    /// half + i, which rotates each element's (row bits, column bits) address right by one bit;
    /// four rounds move the 4 column bits in front of the row bits. For 16 rows that is the
    /// 16 × 16 transpose; for 8 rows the result, read in order, is the 8 rows interleaved
    /// element by element (`out[c·8 + r] = in[r][c]`), the layout packed A needs.
    enum Transpose {
        typealias V = SIMD16<Float>

        /// Lane by lane on purpose: LLVM turns the loop into two-source permutes, while the
        /// standard library's `SIMD32.evenHalf` stayed an out-of-line call in the packing loops
        /// (its vectors passed in 128-bit pieces), a fifth of a small product's time.
        /// Generic over the vector's width: with 8 floats, three rounds of `round8` transpose
        /// 8 vectors (the narrow tile's transposed stores and its packing of A).
        @inline(__always)
        static func unzip<S: SIMD>(_ a: S, _ b: S) -> (S, S) where S.Scalar == Float {
            let half = S.scalarCount / 2
            var even = S(), odd = S()
            for i in 0..<half {
                even[i] = a[2 * i]; odd[i] = a[2 * i + 1]
                even[i + half] = b[2 * i]; odd[i + half] = b[2 * i + 1]
            }
            return (even, odd)
        }

        @inline(__always)
        static func round8<S: SIMD>(_ v: inout (S, S, S, S, S, S, S, S)) where S.Scalar == Float {
            let (e0, o0) = unzip(v.0, v.1), (e1, o1) = unzip(v.2, v.3)
            let (e2, o2) = unzip(v.4, v.5), (e3, o3) = unzip(v.6, v.7)
            v = (e0, e1, e2, e3, o0, o1, o2, o3)
        }

        /// The columns of a tile of 8 rows held as two halves of 8 vectors each (`low` the first
        /// half of every row's lanes): the halves are transposed in registers (`round8`, as many
        /// rounds as a vector has lane bits) and `store(j, column)` gets column j's 8 floats, for
        /// j < `width`.
        @inline(__always)
        static func columns<S: SIMD>(_ low: (S, S, S, S, S, S, S, S), _ high: (S, S, S, S, S, S, S, S), width: Int,
                                     _ store: (Int, SIMD8<Float>) -> Void) where S.Scalar == Float {
            var low = low, high = high
            var lanes = S.scalarCount
            while lanes > 1 {
                round8(&low)
                round8(&high)
                lanes /= 2
            }
            // Now column j is 8 floats at j·8 of (low, high), read in order.
            var columns = (low, high)
            withUnsafeBytes(of: &columns) { bytes in
                for j in 0..<width {
                    store(j, bytes.loadUnaligned(fromByteOffset: j * 8 * MemoryLayout<Float>.stride, as: SIMD8<Float>.self))
                }
            }
        }

        /// Transposes 16 vectors of 16 floats (four `round16`s) and stores row i of the
        /// transpose at `dst + i·step` bytes: packing's 16 × 16 blocks.
        @inline(__always)
        static func store16(_ rows: (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V), to dst: UnsafeMutableRawPointer, step: Int) {
            var v = rows
            round16(&v); round16(&v); round16(&v); round16(&v)
            @inline(__always) func put(_ value: V, _ i: Int) { dst.storeBytes(of: value, toByteOffset: i * step, as: V.self) }
            put(v.0, 0); put(v.1, 1); put(v.2, 2); put(v.3, 3); put(v.4, 4); put(v.5, 5); put(v.6, 6); put(v.7, 7)
            put(v.8, 8); put(v.9, 9); put(v.10, 10); put(v.11, 11); put(v.12, 12); put(v.13, 13); put(v.14, 14); put(v.15, 15)
        }

        /// `store16` for 8 vectors of 8 floats (three `round8`s): 8 × 8 blocks, for 16 vector
        /// registers.
        @inline(__always)
        static func store8(_ rows: (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>,
                                    SIMD8<Float>, SIMD8<Float>), to dst: UnsafeMutableRawPointer, step: Int) {
            var v = rows
            round8(&v); round8(&v); round8(&v)
            @inline(__always) func put(_ value: SIMD8<Float>, _ i: Int) {
                dst.storeBytes(of: value, toByteOffset: i * step, as: SIMD8<Float>.self)
            }
            put(v.0, 0); put(v.1, 1); put(v.2, 2); put(v.3, 3); put(v.4, 4); put(v.5, 5); put(v.6, 6); put(v.7, 7)
        }

        @inline(__always)
        static func round16(_ v: inout (V, V, V, V, V, V, V, V, V, V, V, V, V, V, V, V)) {
            let (e0, o0) = unzip(v.0, v.1), (e1, o1) = unzip(v.2, v.3)
            let (e2, o2) = unzip(v.4, v.5), (e3, o3) = unzip(v.6, v.7)
            let (e4, o4) = unzip(v.8, v.9), (e5, o5) = unzip(v.10, v.11)
            let (e6, o6) = unzip(v.12, v.13), (e7, o7) = unzip(v.14, v.15)
            v = (e0, e1, e2, e3, e4, e5, e6, e7, o0, o1, o2, o3, o4, o5, o6, o7)
        }
    }
}
