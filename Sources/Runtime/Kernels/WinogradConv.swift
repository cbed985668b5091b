/// Winograd convolution F(2×2, 3×3) (Lavin & Gray 2016) for 3×3, stride-1, padding-1
/// convolutions with many channels: the forward pass, and the backward-data pass, which for this
/// geometry is the same convolution of dy with the weights flipped and the channels swapped.
///
/// Each output is cut into 2×2 tiles; tile t reads the 4×4 input patch d around it. With
/// `U = G g Gᵀ` (4×4 per weight pair (o, c)) and `V = Bᵀ d B` (4×4 per input tile and channel),
/// the tile's output is `Aᵀ [Σ_c U[o, c] ⊙ V[c, t]] A`: for each of the 16 positions e of the
/// 4×4 transform, one GEMM `M[e] = U[e] (o × c) · V[e] (c × tiles)`. That is 16·o·c
/// multiply-adds per 4 outputs instead of 36·o·c: 2.25× fewer.
///
/// Work runs in blocks of whole tile rows (about `targetTiles` tiles, a function of the
/// geometry only): input transform of the block → 16 one-block GEMMs → output transform, so
/// the block's V and M stay in L2 between the steps. Blocks run one per thread (each block's
/// GEMMs on that thread), or in turn with every thread on the GEMMs when there are fewer blocks
/// than threads. A tile's arithmetic never depends on the thread count (the GEMMs give the same
/// bits for any thread count, the transforms are per tile and channel), so results are
/// bit-identical on any number of threads.
///
/// The transforms are vectorised over the tiles of a tile row (`ISA.Vector` lanes): the input
/// rows are copied into a zero-bordered row buffer, whose even and odd columns give the four
/// columns of every tile's patch.
///
/// Scratch (U, and per block V, M, row buffers and the GEMM workspace) comes from
/// `ConvScratch`, so a compiled program's steady state allocates nothing.
extension Conv2DKernel {
    /// Whether 3×3 stride-1 convolutions may take the Winograd path (default true). A switch for
    /// before/after comparisons (`KILN_WINOGRAD=0 kiln bench …`): set it before compiling or
    /// running anything, never while a convolution runs.
    nonisolated(unsafe) public static var winogradEnabled = true

    enum Winograd {
        typealias Vector = ISA.Vector
        static var lanes: Int { Vector.scalarCount }
        /// Tiles a block aims for (whole tile rows; at least one row).
        static let targetTiles = 256
        /// Fewest channels (input and output) for which the transforms pay for themselves.
        static let minChannels = 16

        /// Whether forward and backward-data of `g` run here: 3×3, stride 1, padding 1, at
        /// least `minChannels` input and output channels, and not a direct-path shape.
        static func suits(_ g: Geometry) -> Bool {
            winogradEnabled && g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == 1 && g.padW == 1
                && g.c >= minChannels && g.o >= minChannels && !DirectConv2D.suits(g)
        }

        /// The correlation one call computes: `source [n, c, h, w]` → `out [n, o, h, w]`
        /// ("same" 3×3), with `weight(o, c, ky, kx)` read from OIHW storage, flipped and swapped
        /// for backward-data.
        struct Problem {
            let n: Int, c: Int, h: Int, w: Int, o: Int
            /// Backward-data: out channel i reads `W[c][i][2 − ky][2 − kx]` of the forward weight `W[o][c]`.
            let flipped: Bool
            var tilesX: Int { (w + 1) / 2 }
            var tilesY: Int { (h + 1) / 2 }
            var tileRows: Int { n * tilesY }
            /// Tile rows per block.
            var blockRows: Int { max(1, min(tileRows, targetTiles / tilesX)) }
            var blockCount: Int { (tileRows + blockRows - 1) / blockRows }
            var blockTiles: Int { blockRows * tilesX }
            /// Row stride of V and M: room for a last vector chunk's spill past the block's tiles.
            var ld: Int { Conv2DKernel.columnStride(blockTiles + Winograd.lanes) }
            /// Floats of the zero-bordered row buffer (4 rows).
            var rowFloats: Int { 2 * ((tilesX + Winograd.lanes - 1) / Winograd.lanes) * Winograd.lanes + 2 * Winograd.lanes + 2 }
            /// Floats of one block's scratch: V, M, the row buffer.
            var blockFloats: Int { 16 * (c + o) * ld + 4 * rowFloats }
            func gemmFloats(_ tiles: Int) -> (a: Int, b: Int) {
                GEMM.workspaceFloats(transposeA: false, transposeB: false, m: o, n: tiles, k: c)
            }
            var lastBlockTiles: Int { (tileRows - (blockCount - 1) * blockRows) * tilesX }
            var gemmWorkspace: (a: Int, b: Int) { Conv2DKernel.larger(gemmFloats(blockTiles), gemmFloats(lastBlockTiles)) }
        }

        static func forwardProblem(_ g: Geometry) -> Problem {
            Problem(n: g.n, c: g.c, h: g.h, w: g.w, o: g.o, flipped: false)
        }

        static func backwardDataProblem(_ g: Geometry) -> Problem {
            Problem(n: g.n, c: g.o, h: g.h, w: g.w, o: g.c, flipped: true)
        }

        /// The table name of the algorithm: transform, tiles per block, the 16 GEMMs' m×n×k.
        static func algorithm(_ g: Geometry, _ pass: Pass) -> String {
            let p = pass == .forward ? forwardProblem(g) : backwardDataProblem(g)
            return "winograd F(2x2,3x3) \(p.o)x\(p.blockTiles)x\(p.c)"
        }

        static func run(_ p: Problem, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, threads: Int) {
            let transformed = ConvScratch.shared.take(floats: 16 * p.o * p.c, gemm: (0, 0))
            defer { ConvScratch.shared.give(transformed) }
            let u = transformed.floats
            transformWeights(p, weight: weight, u: u, threads: threads)
            let blocks = p.blockCount
            func block(_ b: Int, gemmThreads: Int) {
                let scratch = ConvScratch.shared.take(floats: p.blockFloats, gemm: p.gemmWorkspace)
                defer { ConvScratch.shared.give(scratch) }
                let rows = b * p.blockRows..<min(p.tileRows, (b + 1) * p.blockRows)
                runBlock(p, rows: rows, source: source, u: UnsafePointer(u), out: out, scratch: scratch,
                         gemmThreads: gemmThreads)
            }
            Conv2DKernel.forEachGroup(blocks, threads: threads, block)
        }

        /// U[e][o][c] = (G g Gᵀ)[e] with G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]],
        /// split over threads by output channel (each element computed alone).
        static func transformWeights(_ p: Problem, weight: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                                     threads: Int) {
            let plane = p.o * p.c
            let chunks = min(p.o, 16)
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                for o in chunk * p.o / chunks..<(chunk + 1) * p.o / chunks {
                    for c in 0..<p.c {
                        // g[ky][kx] of this correlation.
                        var g = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())
                        if p.flipped {
                            // Forward weight W[c][o] (its out channel is this problem's in channel c).
                            let base = weight + (c * p.o + o) * 9
                            g.0 = SIMD4(base[8], base[7], base[6], 0)
                            g.1 = SIMD4(base[5], base[4], base[3], 0)
                            g.2 = SIMD4(base[2], base[1], base[0], 0)
                        } else {
                            let base = weight + (o * p.c + c) * 9
                            g.0 = SIMD4(base[0], base[1], base[2], 0)
                            g.1 = SIMD4(base[3], base[4], base[5], 0)
                            g.2 = SIMD4(base[6], base[7], base[8], 0)
                        }
                        // Rows of G g (4 × 3).
                        let r0 = g.0, r1 = 0.5 * (g.0 + g.1 + g.2), r2 = 0.5 * (g.0 - g.1 + g.2), r3 = g.2
                        let target = u + o * p.c + c
                        @inline(__always) func put(_ i: Int, _ r: SIMD4<Float>) {
                            target[(4 * i) * plane] = r[0]
                            target[(4 * i + 1) * plane] = 0.5 * (r[0] + r[1] + r[2])
                            target[(4 * i + 2) * plane] = 0.5 * (r[0] - r[1] + r[2])
                            target[(4 * i + 3) * plane] = r[2]
                        }
                        put(0, r0); put(1, r1); put(2, r2); put(3, r3)
                    }
                }
            }
        }

        /// One block of tile rows: V = input transform, M[e] = U[e]·V[e], output transform.
        static func runBlock(_ p: Problem, rows: Range<Int>, source: UnsafePointer<Float>, u: UnsafePointer<Float>,
                             out: UnsafeMutablePointer<Float>, scratch: ConvScratch.Entry, gemmThreads: Int) {
            let ld = p.ld, tiles = rows.count * p.tilesX
            let v = scratch.floats, m = v + 16 * p.c * ld, rowBuffer = m + 16 * p.o * ld
            rowBuffer.update(repeating: 0, count: 4 * p.rowFloats)
            // Channel by channel, tile rows in order: each plane is read front to back (and a
            // row's vector spill past its last tile is overwritten by the next row).
            func inputTransforms<V: SIMD>(_ type: V.Type) where V.Scalar == Float {
                for c in 0..<p.c {
                    for (slot, row) in rows.enumerated() {
                        let image = row / p.tilesY, ty = row % p.tilesY
                        inputTransform(type, p, plane: source + (image * p.c + c) * p.h * p.w, ty: ty, rowBuffer: rowBuffer,
                                       v: v + c * ld + slot * p.tilesX, eStride: p.c * ld)
                    }
                }
            }
            withVectorWidth(p.tilesX, { inputTransforms(SIMD4<Float>.self) }, { inputTransforms(SIMD8<Float>.self) },
                            { inputTransforms(Vector.self) })
            let workspace = ConvScratch.shared.fit(scratch, p.gemmFloats(tiles))
            for e in 0..<16 {
                GEMM.sgemm(transposeA: false, transposeB: false, m: p.o, n: tiles, k: p.c, a: u + e * p.o * p.c, lda: p.c,
                           b: v + e * p.c * ld, ldb: ld, c: m + e * p.o * ld, ldc: ld, accumulate: false,
                           threads: gemmThreads, workspace: workspace)
            }
            func outputTransforms<V: SIMD>(_ type: V.Type) where V.Scalar == Float {
                for o in 0..<p.o {
                    for (slot, row) in rows.enumerated() {
                        let image = row / p.tilesY, ty = row % p.tilesY
                        outputTransform(type, p, m: m + o * ld + slot * p.tilesX, eStride: p.o * ld,
                                        plane: out + (image * p.o + o) * p.h * p.w, ty: ty)
                    }
                }
            }
            withVectorWidth(p.tilesX, { outputTransforms(SIMD4<Float>.self) }, { outputTransforms(SIMD8<Float>.self) },
                            { outputTransforms(Vector.self) })
        }

        /// Even and odd lanes of the 2·lanes floats `a ++ b`.
        @inline(__always)
        static func unzip<V: SIMD>(_ a: V, _ b: V) -> (V, V) where V.Scalar == Float {
            var even = V(), odd = V()
            let half = V.scalarCount / 2
            for i in 0..<half {
                even[i] = a[2 * i]; odd[i] = a[2 * i + 1]
                even[i + half] = b[2 * i]; odd[i + half] = b[2 * i + 1]
            }
            return (even, odd)
        }

        /// `a ++ b` from alternate lanes of `even` and `odd`.
        @inline(__always)
        static func zip<V: SIMD>(_ even: V, _ odd: V) -> (V, V) where V.Scalar == Float {
            var a = V(), b = V()
            let half = V.scalarCount / 2
            for i in 0..<half {
                a[2 * i] = even[i]; a[2 * i + 1] = odd[i]
                b[2 * i] = even[i + half]; b[2 * i + 1] = odd[i + half]
            }
            return (a, b)
        }

        @inline(__always)
        static func load<V: SIMD>(_ p: UnsafePointer<Float>) -> V where V.Scalar == Float {
            UnsafeRawPointer(p).loadUnaligned(as: V.self)
        }

        @inline(__always)
        static func store<V: SIMD>(_ v: V, _ p: UnsafeMutablePointer<Float>) where V.Scalar == Float {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
        }

        /// The transforms run on vectors of `ISA.Vector`'s width, or narrower ones when a tile
        /// row has few tiles (ResNet's 8×8 and 4×4 planes have 4 and 2), so that fewer lanes are
        /// computed and stored for nothing.
        @inline(__always)
        static func withVectorWidth(_ tilesX: Int, _ body4: () -> Void, _ body8: () -> Void, _ bodyNative: () -> Void) {
            if tilesX <= 2 && lanes > 4 { body4() } else if tilesX <= 4 && lanes > 8 { body8() } else { bodyNative() }
        }

        /// V[e][tile] = (Bᵀ d B)[e] for the tiles of tile row `ty` of one channel's plane, with
        /// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]; e's rows `eStride`
        /// apart. Writes whole vectors: up to `lanes − 1` floats past the row's last tile.
        @inline(__always)
        static func inputTransform<V: SIMD>(_: V.Type, _ p: Problem, plane: UnsafePointer<Float>, ty: Int, rowBuffer: UnsafeMutablePointer<Float>,
                                   v: UnsafeMutablePointer<Float>, eStride: Int) where V.Scalar == Float {
            // Row buffer i holds input row 2ty − 1 + i at columns 1…w (column −1 and the tail stay zero).
            for i in 0..<4 {
                let y = 2 * ty - 1 + i, target = rowBuffer + i * p.rowFloats + 1
                if y >= 0 && y < p.h {
                    Conv2DKernel.copyFloats(target, plane + y * p.w, p.w)
                } else {
                    Conv2DKernel.zeroFloats(target, p.w)
                }
            }
            let lanes = V.scalarCount
            var tx = 0
            while tx < p.tilesX {
                // Horizontal transform of each row: d·B, columns j of the patch at 2tx + j.
                @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
                    let base = UnsafePointer(rowBuffer + i * p.rowFloats + 2 * tx)
                    let (d0, d1) = unzip(load(base) as V, load(base + lanes) as V)
                    let (d2, d3) = unzip(load(base + 2) as V, load(base + 2 + lanes) as V)
                    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
                }
                let h0 = row(0), h1 = row(1), h2 = row(2), h3 = row(3)
                let target = v + tx
                // Vertical: Bᵀ applied to the rows.
                store(h0.0 - h2.0, target); store(h0.1 - h2.1, target + eStride)
                store(h0.2 - h2.2, target + 2 * eStride); store(h0.3 - h2.3, target + 3 * eStride)
                store(h1.0 + h2.0, target + 4 * eStride); store(h1.1 + h2.1, target + 5 * eStride)
                store(h1.2 + h2.2, target + 6 * eStride); store(h1.3 + h2.3, target + 7 * eStride)
                store(h2.0 - h1.0, target + 8 * eStride); store(h2.1 - h1.1, target + 9 * eStride)
                store(h2.2 - h1.2, target + 10 * eStride); store(h2.3 - h1.3, target + 11 * eStride)
                store(h1.0 - h3.0, target + 12 * eStride); store(h1.1 - h3.1, target + 13 * eStride)
                store(h1.2 - h3.2, target + 14 * eStride); store(h1.3 - h3.3, target + 15 * eStride)
                tx += lanes
            }
        }

        /// Output rows 2ty and 2ty + 1 (those inside the plane) of one channel from M[e][tile]
        /// (e's rows `eStride` apart): Aᵀ m A with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]].
        @inline(__always)
        static func outputTransform<V: SIMD>(_: V.Type, _ p: Problem, m: UnsafeMutablePointer<Float>, eStride: Int,
                                             plane: UnsafeMutablePointer<Float>, ty: Int) where V.Scalar == Float {
            let lanes = V.scalarCount
            var tx = 0
            let secondRow = 2 * ty + 1 < p.h
            while tx < p.tilesX {
                let base = UnsafePointer(m + tx)
                @inline(__always) func e(_ i: Int) -> V { load(base + i * eStride) }
                // Aᵀ over the rows of the 4×4 block, column by column.
                let s00 = e(0) + e(4) + e(8), s01 = e(1) + e(5) + e(9)
                let s02 = e(2) + e(6) + e(10), s03 = e(3) + e(7) + e(11)
                let s10 = e(4) - e(8) - e(12), s11 = e(5) - e(9) - e(13)
                let s12 = e(6) - e(10) - e(14), s13 = e(7) - e(11) - e(15)
                let y00 = s00 + s01 + s02, y01 = s01 - s02 - s03
                let y10 = s10 + s11 + s12, y11 = s11 - s12 - s13
                let column = 2 * tx, count = min(2 * lanes, p.w - column)
                let top = plane + 2 * ty * p.w + column
                let (a0, b0) = zip(y00, y01)
                storeRow(a0, b0, top, count)
                if secondRow {
                    let (a1, b1) = zip(y10, y11)
                    storeRow(a1, b1, top + p.w, count)
                }
                tx += lanes
            }
        }

        /// Stores the first `count` floats of `a ++ b`.
        @inline(__always)
        static func storeRow<V: SIMD>(_ a: V, _ b: V, _ target: UnsafeMutablePointer<Float>, _ count: Int)
            where V.Scalar == Float {
            let lanes = V.scalarCount
            if count == 2 * lanes {
                store(a, target); store(b, target + lanes)
                return
            }
            for i in 0..<min(count, lanes) { target[i] = a[i] }
            if count > lanes { for i in 0..<(count - lanes) { target[lanes + i] = b[i] } }
        }
    }

    static func winogradForward(_ g: Geometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                y: UnsafeMutablePointer<Float>, threads: Int) {
        Winograd.run(Winograd.forwardProblem(g), source: x, weight: weight, out: y, threads: threads)
    }

    static func winogradBackwardData(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     dx: UnsafeMutablePointer<Float>, threads: Int) {
        Winograd.run(Winograd.backwardDataProblem(g), source: dy, weight: weight, out: dx, threads: threads)
    }
}
