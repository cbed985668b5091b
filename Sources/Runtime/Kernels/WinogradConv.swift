/// Winograd convolution F(m×m, 3×3) (Lavin & Gray 2016), m = 2 or 4, for 3×3, stride-1
/// convolutions with many channels and padding 0, 1 or 2: the forward pass, and the backward-data
/// pass, which for this geometry is the same convolution of dy with the weights flipped, the
/// channels swapped and padding 2 − p (an unpadded layer's dx is the full correlation of dy).
///
/// Each output is cut into m×m tiles; tile t reads the α×α input patch d around it (α = m + 2).
/// With `U = G g Gᵀ` (α×α per weight pair (o, c)) and `V = Bᵀ d B` (α×α per input tile and
/// channel), the tile's output is `Aᵀ [Σ_c U[o, c] ⊙ V[c, t]] A`: for each of the α² positions e
/// of the transform, one GEMM `M[e] = U[e] (o × c) · V[e] (c × tiles)`. F(2×2, 3×3) does 16·o·c
/// multiply-adds per 4 outputs instead of 36·o·c (2.25× fewer); F(4×4, 3×3) does 36·o·c per 16
/// outputs (4× fewer), with transforms that cost more per tile and a U 2.25× larger (read once
/// per block). `tileSize` picks m per shape.
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
/// rows are copied into a zero-bordered row buffer, whose columns taken m apart (even and odd
/// for m = 2; four phases for m = 4) give the α columns of every tile's patch.
///
/// Scratch (U, and per block V, M, row buffers and the GEMM workspace) comes from
/// `ConvScratch`, so a compiled program's steady state allocates nothing.
extension Conv2DKernel {
    /// Whether 3×3 stride-1 convolutions may take the Winograd path (default true). A switch for
    /// before/after comparisons (`KILN_WINOGRAD=0 kiln bench …`): set it before compiling or
    /// running anything, never while a convolution runs.
    nonisolated(unsafe) public static var winogradEnabled = true
    /// The Winograd output tile: 0 chooses per shape (`Winograd.tileSize`), 2 or 4 force
    /// F(2×2, 3×3) or F(4×4, 3×3) (`KILN_WINOGRAD=2|4 kiln bench …`). Same rules as `winogradEnabled`.
    nonisolated(unsafe) public static var winogradTile = 0

    enum Winograd {
        typealias Vector = ISA.Vector
        static var lanes: Int { Vector.scalarCount }
        /// Tiles a block aims for (whole tile rows; at least one row), by output tile side.
        /// (F(4×4) on ResNet-18's 32×32–8×8 planes: 128 tiles as fast as 64 or faster, 256 up to 10 % slower.)
        static func targetTiles(_ m: Int) -> Int { m == 2 ? 256 : 128 }
        /// Fewest channels (input and output) for which the transforms pay for themselves.
        static let minChannels = 16

        /// Whether forward and backward-data of `g` run here: 3×3, stride 1, at least
        /// `minChannels` input and output channels, not a direct-path shape, and padding 1 on
        /// both axes, or padding 0 or 2 on both with planes at least `minUnpaddedSide` on each.
        static func suits(_ g: Geometry) -> Bool {
            winogradEnabled && g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == g.padW
                && (g.padH == 1 || (g.padH <= 2 && min(g.h, g.w) >= minUnpaddedSide))
                && g.c >= minChannels && g.o >= minChannels && !DirectConv2D.suits(g)
        }

        /// The smallest input side of an unpadded (or 2-padded) layer taken here. Its backward
        /// data, dx = dy padded by 2 correlated with the flipped weights, fills its last tile
        /// row and column partly; below this side that made it slower than im2col + GEMM
        /// (`kiln bench conv --shape`, AMD EPYC Zen 4, batch 64–128, ms before → after, best of
        /// 3 rounds, two alternations: 64 → 64 on 10×10, AVX-512, 3.77 → 4.75; 12×12, AVX2,
        /// 3.07 → 3.51–3.60). From 13 on both passes gained on both ISAs (see `ImplicitKernel.runs`).
        static let minUnpaddedSide = 13

        /// The correlation one call computes: `source [n, c, h, w]`, padded by `pad` → `out [n, o,
        /// oh, ow]`, with `weight(o, c, ky, kx)` read from OIHW storage, flipped and swapped for
        /// backward-data.
        struct Problem {
            /// The source is `[n, c, h, w]`, the output `[n, o, oh, ow]`.
            let n: Int, c: Int, h: Int, w: Int, o: Int
            /// Zero rows and columns around the source on every side (0, 1 or 2).
            let pad: Int
            /// Backward-data: out channel i reads `W[c][i][2 − ky][2 − kx]` of the forward weight `W[o][c]`.
            let flipped: Bool
            /// The output tile's side (2 or 4), the input patch's (α = m + 2), and α² transform positions.
            let m: Int
            var alpha: Int { m + 2 }
            var positions: Int { alpha * alpha }
            var oh: Int { h + 2 * pad - 2 }
            var ow: Int { w + 2 * pad - 2 }
            var tilesX: Int { (ow + m - 1) / m }
            var tilesY: Int { (oh + m - 1) / m }
            var tileRows: Int { n * tilesY }
            /// Tile rows per block.
            var blockRows: Int { max(1, min(tileRows, targetTiles(m) / tilesX)) }
            var blockCount: Int { (tileRows + blockRows - 1) / blockRows }
            var blockTiles: Int { blockRows * tilesX }
            /// Row stride of V and M: room for a last vector chunk's spill past the block's tiles.
            var ld: Int { Conv2DKernel.columnStride(blockTiles + Winograd.lanes) }
            /// Floats of one row of the zero-bordered row buffer (α rows): m columns per tile, vectors
            /// of tiles rounded up, and the loads of a last vector chunk past them (up to
            /// 2·lanes + 2 for m = 2, m + m·lanes for m = 4); at least the padded source row.
            var rowFloats: Int {
                max(m * ((tilesX + Winograd.lanes - 1) / Winograd.lanes) * Winograd.lanes + 2 * Winograd.lanes + m, pad + w)
            }
            /// Floats of one block's scratch: V, M, the row buffer.
            var blockFloats: Int { positions * (c + o) * ld + alpha * rowFloats }
            func gemmFloats(_ tiles: Int) -> (a: Int, b: Int) {
                GEMM.workspaceFloats(transposeA: false, transposeB: false, m: o, n: tiles, k: c)
            }
            var lastBlockTiles: Int { (tileRows - (blockCount - 1) * blockRows) * tilesX }
            var gemmWorkspace: (a: Int, b: Int) { Conv2DKernel.larger(gemmFloats(blockTiles), gemmFloats(lastBlockTiles)) }
        }

        /// The output tile for an output plane of `height × width`: `winogradTile` when it forces
        /// one, else 4 when the plane holds more than one 4×4 tile each way, else 2. Measured on ResNet-18's shapes at batch
        /// 128 (AVX-512 Xeon, 2 threads): F(4×4) takes 14–30 % less time than F(2×2) on the
        /// 32×32, 16×16 and 8×8 planes, and about twice as long on the 4×4 ones (one tile per
        /// plane: the transforms fill one vector lane in four, and U is 2.25× larger for the
        /// same GEMM width).
        static func tileSize(height: Int, width: Int) -> Int {
            if winogradTile == 2 || winogradTile == 4 { return winogradTile }
            return height > 4 && width > 4 ? 4 : 2
        }

        /// The forward pass's tile (on y's plane).
        static func tileSize(_ g: Geometry) -> Int { tileSize(height: g.oh, width: g.ow) }

        static func forwardProblem(_ g: Geometry, tile: Int? = nil) -> Problem {
            Problem(n: g.n, c: g.c, h: g.h, w: g.w, o: g.o, pad: g.padH, flipped: false, m: tile ?? tileSize(g))
        }

        /// dx [n, c, h, w] from dy [n, o, oh, ow] padded by 2 − p: (oh + 2 − 2p) = h.
        static func backwardDataProblem(_ g: Geometry, tile: Int? = nil) -> Problem {
            Problem(n: g.n, c: g.o, h: g.oh, w: g.ow, o: g.c, pad: 2 - g.padH, flipped: true,
                    m: tile ?? tileSize(height: g.h, width: g.w))
        }

        /// The table name of the algorithm: transform, tiles per block, the α² GEMMs' m×n×k.
        static func algorithm(_ g: Geometry, _ pass: Pass) -> String {
            let p = pass == .forward ? forwardProblem(g) : backwardDataProblem(g)
            return "winograd F(\(p.m)x\(p.m),3x3) \(p.o)x\(p.blockTiles)x\(p.c)"
        }

        static func run(_ p: Problem, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, threads: Int) {
            let transformed = ConvScratch.shared.take(floats: p.positions * p.o * p.c + stagingFloats, gemm: (0, 0))
            defer { ConvScratch.shared.give(transformed) }
            let u = transformed.floats
            transformWeights(p, weight: weight, u: u, staging: u + p.positions * p.o * p.c, threads: threads)
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

        /// Chunks of the weight transform, input channels per staged run, and the staging floats
        /// they take after U in its scratch entry (a temporary allocation of this size came from
        /// the heap: allocation-check found it in every Winograd call).
        static let weightChunks = 16, stagingRun = 16
        static var stagingFloats: Int { weightChunks * 36 * stagingRun }

        /// U[e][o][c] = (G g Gᵀ)[e] (e = α·row + column), split over threads by output channel
        /// (each element computed alone). For m = 2, G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]];
        /// for m = 4, G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1⁄24, 1⁄12, ⅙], [1⁄24, −1⁄12, ⅙], [0, 0, 1]].
        static func transformWeights(_ p: Problem, weight: UnsafePointer<Float>, u: UnsafeMutablePointer<Float>,
                                     staging: UnsafeMutablePointer<Float>, threads: Int) {
            let plane = p.o * p.c
            let chunks = min(p.o, weightChunks)
            // G's columns (m = 4), lane i = row i.
            let g0 = SIMD8<Float>(1.0 / 4, -1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 24, 0, 0, 0)
            let g1 = SIMD8<Float>(0, -1.0 / 6, 1.0 / 6, 1.0 / 12, -1.0 / 12, 0, 0, 0)
            let g2 = SIMD8<Float>(0, -1.0 / 6, -1.0 / 6, 1.0 / 6, 1.0 / 6, 1, 0, 0)
            let positions = p.positions, run = stagingRun
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                // Runs of `run` input channels: each pair's α² values go to the chunk's staging
                // buffer, which is then stored as α² contiguous runs (U's planes are o·c floats apart).
                let staged = staging + chunk * 36 * run
                for o in chunk * p.o / chunks..<(chunk + 1) * p.o / chunks {
                    var c0 = 0
                    while c0 < p.c {
                        let count = min(run, p.c - c0)
                        for slot in 0..<count {
                            let c = c0 + slot
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
                            let target = staged + slot
                            if p.m == 4 {
                                // Columns k of G g (lane i = row i), then columns j of (G g) Gᵀ.
                                let t0 = g0 * g.0[0] + g1 * g.1[0] + g2 * g.2[0]
                                let t1 = g0 * g.0[1] + g1 * g.1[1] + g2 * g.2[1]
                                let t2 = g0 * g.0[2] + g1 * g.1[2] + g2 * g.2[2]
                                for j in 0..<6 {
                                    let column = t0 * g0[j] + t1 * g1[j] + t2 * g2[j]
                                    for i in 0..<6 { target[(6 * i + j) * run] = column[i] }
                                }
                                continue
                            }
                            // Rows of G g (4 × 3).
                            let r0 = g.0, r1 = 0.5 * (g.0 + g.1 + g.2), r2 = 0.5 * (g.0 - g.1 + g.2), r3 = g.2
                            @inline(__always) func put(_ i: Int, _ r: SIMD4<Float>) {
                                target[(4 * i) * run] = r[0]
                                target[(4 * i + 1) * run] = 0.5 * (r[0] + r[1] + r[2])
                                target[(4 * i + 2) * run] = 0.5 * (r[0] - r[1] + r[2])
                                target[(4 * i + 3) * run] = r[2]
                            }
                            put(0, r0); put(1, r1); put(2, r2); put(3, r3)
                        }
                        for e in 0..<positions {
                            Conv2DKernel.copyFloats(u + e * plane + o * p.c + c0, staged + e * run, count)
                        }
                        c0 += count
                    }
                }
            }
        }

        /// One block of tile rows: V = input transform, M[e] = U[e]·V[e], output transform.
        static func runBlock(_ p: Problem, rows: Range<Int>, source: UnsafePointer<Float>, u: UnsafePointer<Float>,
                             out: UnsafeMutablePointer<Float>, scratch: ConvScratch.Entry, gemmThreads: Int) {
            let ld = p.ld, tiles = rows.count * p.tilesX
            let v = scratch.floats, m = v + p.positions * p.c * ld, rowBuffer = m + p.positions * p.o * ld
            rowBuffer.update(repeating: 0, count: p.alpha * p.rowFloats)
            // Channel by channel, tile rows in order: each plane is read front to back (and a
            // row's vector spill past its last tile is overwritten by the next row).
            func inputTransforms<V: SIMD>(_ type: V.Type) where V.Scalar == Float {
                for c in 0..<p.c {
                    for (slot, row) in rows.enumerated() {
                        let image = row / p.tilesY, ty = row % p.tilesY
                        let plane = source + (image * p.c + c) * p.h * p.w, target = v + c * ld + slot * p.tilesX
                        if p.m == 4 {
                            inputTransform4(type, p, plane: plane, ty: ty, rowBuffer: rowBuffer, v: target, eStride: p.c * ld)
                        } else {
                            inputTransform(type, p, plane: plane, ty: ty, rowBuffer: rowBuffer, v: target, eStride: p.c * ld)
                        }
                    }
                }
            }
            withVectorWidth(p.tilesX, { inputTransforms(SIMD4<Float>.self) }, { inputTransforms(SIMD8<Float>.self) },
                            { inputTransforms(Vector.self) })
            let workspace = ConvScratch.shared.fit(scratch, p.gemmFloats(tiles))
            for e in 0..<p.positions {
                GEMM.sgemm(transposeA: false, transposeB: false, m: p.o, n: tiles, k: p.c, a: u + e * p.o * p.c, lda: p.c,
                           b: v + e * p.c * ld, ldb: ld, c: m + e * p.o * ld, ldc: ld, accumulate: false,
                           threads: gemmThreads, workspace: workspace)
            }
            func outputTransforms<V: SIMD>(_ type: V.Type) where V.Scalar == Float {
                for o in 0..<p.o {
                    for (slot, row) in rows.enumerated() {
                        let image = row / p.tilesY, ty = row % p.tilesY
                        let source = m + o * ld + slot * p.tilesX, plane = out + (image * p.o + o) * p.oh * p.ow
                        if p.m == 4 {
                            outputTransform4(type, p, m: source, eStride: p.o * ld, plane: plane, ty: ty)
                        } else {
                            outputTransform(type, p, m: source, eStride: p.o * ld, plane: plane, ty: ty)
                        }
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
        /// row has few tiles, so that fewer lanes are computed and stored for nothing: 4 lanes for
        /// up to 2 tiles, 8 for up to 8. (AVX-512, ResNet-18 at batch 128: F(4×4) on 32×32 planes,
        /// 8 tiles a row, took 21 → 16.5 ms with 8 lanes instead of 16; on 16×16 planes, 4 tiles,
        /// 4 lanes took 20 % longer than 8.)
        @inline(__always)
        static func withVectorWidth(_ tilesX: Int, _ body4: () -> Void, _ body8: () -> Void, _ bodyNative: () -> Void) {
            if tilesX <= 2 && lanes > 4 { body4() } else if tilesX <= 8 && lanes > 8 { body8() } else { bodyNative() }
        }

        /// Row buffer i (of α) gets input row m·ty − pad + i of `plane` at columns pad…pad + w − 1,
        /// or zeros outside the plane (the first `pad` columns and the tail stay zero).
        @inline(__always)
        static func fillRows(_ p: Problem, plane: UnsafePointer<Float>, ty: Int, rowBuffer: UnsafeMutablePointer<Float>) {
            for i in 0..<p.alpha {
                let y = p.m * ty - p.pad + i, target = rowBuffer + i * p.rowFloats + p.pad
                if y >= 0 && y < p.h {
                    Conv2DKernel.copyFloats(target, plane + y * p.w, p.w)
                } else {
                    Conv2DKernel.zeroFloats(target, p.w)
                }
            }
        }

        /// V[e][tile] = (Bᵀ d B)[e] for the tiles of tile row `ty` of one channel's plane, with
        /// Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]; e's rows `eStride`
        /// apart. Writes whole vectors: up to `lanes − 1` floats past the row's last tile.
        @inline(__always)
        static func inputTransform<V: SIMD>(_: V.Type, _ p: Problem, plane: UnsafePointer<Float>, ty: Int, rowBuffer: UnsafeMutablePointer<Float>,
                                   v: UnsafeMutablePointer<Float>, eStride: Int) where V.Scalar == Float {
            fillRows(p, plane: plane, ty: ty, rowBuffer: rowBuffer)
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

        /// Output rows 2ty and 2ty + 1 (those inside the `oh × ow` plane) of one channel from M[e][tile]
        /// (e's rows `eStride` apart): Aᵀ m A with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]].
        @inline(__always)
        static func outputTransform<V: SIMD>(_: V.Type, _ p: Problem, m: UnsafeMutablePointer<Float>, eStride: Int,
                                             plane: UnsafeMutablePointer<Float>, ty: Int) where V.Scalar == Float {
            let lanes = V.scalarCount
            var tx = 0
            let secondRow = 2 * ty + 1 < p.oh
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
                let column = 2 * tx, count = min(2 * lanes, p.ow - column)
                let top = plane + 2 * ty * p.ow + column
                let (a0, b0) = zip(y00, y01)
                storeRow(a0, b0, top, count)
                if secondRow {
                    let (a1, b1) = zip(y10, y11)
                    storeRow(a1, b1, top + p.ow, count)
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

        /// Lanes `phase`, `phase + 4`, `phase + 8`, … of the 4·lanes floats `a ++ b ++ c ++ d`.
        @inline(__always)
        static func unzip4<V: SIMD>(_ a: V, _ b: V, _ c: V, _ d: V, _ phase: Int) -> V where V.Scalar == Float {
            var r = V()
            let quarter = V.scalarCount / 4
            for i in 0..<quarter {
                r[i] = a[4 * i + phase]; r[i + quarter] = b[4 * i + phase]
                r[i + 2 * quarter] = c[4 * i + phase]; r[i + 3 * quarter] = d[4 * i + phase]
            }
            return r
        }

        /// The 4·lanes floats whose element 4t + k is lane t of `q.k` (the inverse of `unzip4`).
        @inline(__always)
        static func zip4<V: SIMD>(_ q: (V, V, V, V)) -> (V, V, V, V) where V.Scalar == Float {
            var r = (V(), V(), V(), V())
            let lanes = V.scalarCount
            @inline(__always) func pick(_ t: Int, _ k: Int) -> Float {
                switch k {
                case 0: return q.0[t]
                case 1: return q.1[t]
                case 2: return q.2[t]
                default: return q.3[t]
                }
            }
            for l in 0..<lanes {
                r.0[l] = pick(l / 4, l % 4); r.1[l] = pick((lanes + l) / 4, l % 4)
                r.2[l] = pick((2 * lanes + l) / 4, l % 4); r.3[l] = pick((3 * lanes + l) / 4, l % 4)
            }
            return r
        }

        /// Bᵀ d for F(4×4, 3×3): Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0], [0, 4, −4, −1, 1, 0],
        /// [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
        @inline(__always)
        static func inputTransform6<V: SIMD>(_ d: (V, V, V, V, V, V)) -> (V, V, V, V, V, V) where V.Scalar == Float {
            let four: V = V(repeating: 4), five: V = V(repeating: 5), two: V = V(repeating: 2)
            let t0 = d.4 - four * d.2, t1 = d.3 - four * d.1
            let t2 = d.4 - d.2, t3 = two * (d.3 - d.1)
            return (four * d.0 - five * d.2 + d.4, t0 + t1, t0 - t1, t2 + t3, t2 - t3, four * d.1 - five * d.3 + d.5)
        }

        /// Aᵀ m for F(4×4, 3×3): Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0],
        /// [0, 1, −1, 8, −8, 1]].
        @inline(__always)
        static func outputTransform6<V: SIMD>(_ m: (V, V, V, V, V, V)) -> (V, V, V, V) where V.Scalar == Float {
            let a = m.1 + m.2, b = m.1 - m.2, c = m.3 + m.4, d = m.3 - m.4
            return (m.0 + a + c, b + V(repeating: 2) * d, a + V(repeating: 4) * c, b + V(repeating: 8) * d + m.5)
        }

        /// F(4×4, 3×3)'s V[e][tile] = (Bᵀ d B)[e] (e = 6·row + column) for the tiles of tile row
        /// `ty` of one channel's plane; e's rows `eStride` apart. Writes whole vectors: up to
        /// `lanes − 1` floats past the row's last tile.
        @inline(__always)
        static func inputTransform4<V: SIMD>(_: V.Type, _ p: Problem, plane: UnsafePointer<Float>, ty: Int, rowBuffer: UnsafeMutablePointer<Float>,
                                             v: UnsafeMutablePointer<Float>, eStride: Int) where V.Scalar == Float {
            fillRows(p, plane: plane, ty: ty, rowBuffer: rowBuffer)
            let lanes = V.scalarCount
            var tx = 0
            while tx < p.tilesX {
                // Horizontal transform of each row: d·B, columns j of the patch at 4tx + j.
                @inline(__always) func row(_ i: Int) -> (V, V, V, V, V, V) {
                    let base = UnsafePointer(rowBuffer + i * p.rowFloats + 4 * tx)
                    let a: V = load(base), b: V = load(base + lanes), c: V = load(base + 2 * lanes), d: V = load(base + 3 * lanes)
                    let a4: V = load(base + 4), b4: V = load(base + 4 + lanes)
                    let c4: V = load(base + 4 + 2 * lanes), d4: V = load(base + 4 + 3 * lanes)
                    return inputTransform6((unzip4(a, b, c, d, 0), unzip4(a, b, c, d, 1), unzip4(a, b, c, d, 2),
                                            unzip4(a, b, c, d, 3), unzip4(a4, b4, c4, d4, 0), unzip4(a4, b4, c4, d4, 1)))
                }
                let h0 = row(0), h1 = row(1), h2 = row(2), h3 = row(3), h4 = row(4), h5 = row(5)
                let target = v + tx
                // Vertical: Bᵀ applied to column k of the six rows.
                @inline(__always) func column(_ k: Int, _ c: (V, V, V, V, V, V)) {
                    let t = inputTransform6(c)
                    store(t.0, target + k * eStride); store(t.1, target + (6 + k) * eStride)
                    store(t.2, target + (12 + k) * eStride); store(t.3, target + (18 + k) * eStride)
                    store(t.4, target + (24 + k) * eStride); store(t.5, target + (30 + k) * eStride)
                }
                column(0, (h0.0, h1.0, h2.0, h3.0, h4.0, h5.0))
                column(1, (h0.1, h1.1, h2.1, h3.1, h4.1, h5.1))
                column(2, (h0.2, h1.2, h2.2, h3.2, h4.2, h5.2))
                column(3, (h0.3, h1.3, h2.3, h3.3, h4.3, h5.3))
                column(4, (h0.4, h1.4, h2.4, h3.4, h4.4, h5.4))
                column(5, (h0.5, h1.5, h2.5, h3.5, h4.5, h5.5))
                tx += lanes
            }
        }

        /// F(4×4, 3×3)'s output rows 4ty … 4ty + 3 (those inside the plane) of one channel from
        /// M[e][tile] (e's rows `eStride` apart): Aᵀ m A.
        @inline(__always)
        static func outputTransform4<V: SIMD>(_: V.Type, _ p: Problem, m: UnsafeMutablePointer<Float>, eStride: Int,
                                              plane: UnsafeMutablePointer<Float>, ty: Int) where V.Scalar == Float {
            let lanes = V.scalarCount
            let rowsInside = min(4, p.oh - 4 * ty)
            var tx = 0
            while tx < p.tilesX {
                let base = UnsafePointer(m + tx)
                @inline(__always) func e(_ i: Int) -> V { load(base + i * eStride) }
                // Aᵀ along each row of the 6×6 block, then down each of the four columns.
                @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
                    outputTransform6((e(6 * i), e(6 * i + 1), e(6 * i + 2), e(6 * i + 3), e(6 * i + 4), e(6 * i + 5)))
                }
                let s0 = row(0), s1 = row(1), s2 = row(2), s3 = row(3), s4 = row(4), s5 = row(5)
                let c0 = outputTransform6((s0.0, s1.0, s2.0, s3.0, s4.0, s5.0))
                let c1 = outputTransform6((s0.1, s1.1, s2.1, s3.1, s4.1, s5.1))
                let c2 = outputTransform6((s0.2, s1.2, s2.2, s3.2, s4.2, s5.2))
                let c3 = outputTransform6((s0.3, s1.3, s2.3, s3.3, s4.3, s5.3))
                let column = 4 * tx, count = min(4 * lanes, p.ow - column)
                let top = plane + 4 * ty * p.ow + column
                storeRow4(zip4((c0.0, c1.0, c2.0, c3.0)), top, count)
                if rowsInside > 1 { storeRow4(zip4((c0.1, c1.1, c2.1, c3.1)), top + p.ow, count) }
                if rowsInside > 2 { storeRow4(zip4((c0.2, c1.2, c2.2, c3.2)), top + 2 * p.ow, count) }
                if rowsInside > 3 { storeRow4(zip4((c0.3, c1.3, c2.3, c3.3)), top + 3 * p.ow, count) }
                tx += lanes
            }
        }

        /// Stores the first `count` floats of `r.0 ++ r.1 ++ r.2 ++ r.3`.
        @inline(__always)
        static func storeRow4<V: SIMD>(_ r: (V, V, V, V), _ target: UnsafeMutablePointer<Float>, _ count: Int)
            where V.Scalar == Float {
            let lanes = V.scalarCount
            if count == 4 * lanes {
                store(r.0, target); store(r.1, target + lanes); store(r.2, target + 2 * lanes); store(r.3, target + 3 * lanes)
                return
            }
            storeRow(r.0, r.1, target, min(count, 2 * lanes))
            if count > 2 * lanes { storeRow(r.2, r.3, target + 2 * lanes, count - 2 * lanes) }
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
