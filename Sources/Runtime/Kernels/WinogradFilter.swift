/// The backward-filter pass of 3×3, stride-1 convolutions (padding 0, 1 or 2) with many channels by
/// Winograd's minimal filtering, F(3×3, m×m) with m = 4 or 2 (Lavin & Gray 2016 use the same
/// idea for the weight gradient).
///
/// `dW[o, c, ky, kx] = Σ_{n, y, x} dy[n, o, y, x] · x[n, c, y + ky − p, x + kx − p]` is, per m×m
/// tile of dy, a correlation of the α×α input patch around the tile (α = m + 2, the forward
/// pass's patch) with the tile, whose 3×3 result is
/// `Aᵀ [(G dy_tile Gᵀ) ⊙ (Bᵀ x_patch B)] A`. Aᵀ(·)A is linear, so the sum over tiles is taken
/// in the transform domain: for each of the α² positions e, one product
/// `M[e] (o × c) += U[e] (o × tiles) · V[e] (c × tiles)ᵀ` with `U = G dy Gᵀ` and `V = Bᵀ x B`,
/// then `dW[o, c] = Aᵀ M[·, o, c] A` once at the end. F(3×3, 4×4) does 36·o·c multiply-adds per
/// 16 output pixels instead of 144·o·c (4× fewer); F(3×3, 2×2) 16 per 4 (2.25× fewer).
///
/// The matrices share the forward pass's points (0, ±1, ±2, ∞), so Bᵀ, and the input transform
/// (`Winograd.inputTransform4`, `Winograd.inputTransform`), are the forward pass's. For m = 4:
/// G = [[¼, 0, 0, 0], [−⅙, −⅙, −⅙, −⅙], [−⅙, ⅙, −⅙, ⅙], [1⁄24, 1⁄12, ⅙, ⅓], [1⁄24, −1⁄12, ⅙, −⅓],
/// [0, 0, 0, 1]] and Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 1]]; for m = 2:
/// G = [[1, 0], [½, ½], [½, −½], [0, 1]] and Aᵀ = [[1, 1, 1, 0], [0, 1, −1, 0], [0, 1, 1, −1]].
///
/// Work runs in blocks of whole tile rows (about `targetTiles` tiles, a function of the geometry
/// only), block after block: the transforms of x and dy (split over channels), then the α²
/// products (split over positions, each on one thread, accumulating the blocks in order into
/// its own M[e]). Every element's arithmetic is therefore the same for any thread count.
/// (Giving each thread rows of positions for both steps, so that a position's V and U never
/// cross cores, was slower: each thread then repeats the horizontal half of every transform.
/// ResNet-18's 3×3 layers at batch 128, alternating runs, ms for layer1–4: AVX-512 26–27, 25,
/// 21–22, 23–24 against 22–27, 19–22, 18–19, 19–21; AVX2 37–38, 35–37, 36–37, 38 against
/// 28–35, 26–34, 23–31, 24–34. Blocks of 128 or 512 tiles instead of 256: no better.)
extension Conv2DKernel {
    /// Whether the backward-filter pass of 3×3 stride-1 convolutions may take the Winograd path
    /// (default true; `KILN_WINOGRAD_FILTER=0 kiln bench …` turns it off for comparisons). Set
    /// it before compiling or running anything, never while a convolution runs.
    nonisolated(unsafe) public static var winogradFilterEnabled = true
    /// The filter gradient's dy tile: 0 chooses per shape (`WinogradFilter.tileSize`), 2 or 4 force
    /// F(3×3, 2×2) or F(3×3, 4×4) (`KILN_WINOGRAD_FILTER=2|4 kiln bench …`). Same rules as above.
    nonisolated(unsafe) public static var winogradFilterTile = 0

    enum WinogradFilter {
        /// Tiles a block aims for (whole tile rows, at least one): the depth of its products.
        /// (AVX-512 Xeon, ResNet-18's 3×3 layers at batch 128: 256 ran 5–25 % faster than 128 or 64.)
        static let targetTiles = 256
        /// Fixed channel ranges of the transform step, each with its own row buffer.
        static let transformChunks = 16

        /// Whether the filter gradient of `g` runs here: the shapes whose forward pass is
        /// Winograd's (3×3, stride 1, at least 16 channels each way) with, for padding 1, at least
        /// 128 channels each way or dy planes at least 13 wide (4 tiles a row), and for padding 0
        /// or 2, dy planes at least `minUnpaddedWidth` wide. Narrower planes
        /// with fewer channels leave the transforms half-empty vectors and the products small:
        /// ResNet-20's 64-channel 8×8 stage took ~3.6 ms a pass here against ~1.9 with the
        /// implicit GEMM (AVX-512, batch 128), and its training step 0.148–0.166 → 0.174 s
        /// (AVX2 0.219–0.235 → 0.220–0.260), while ResNet-18's 64-channel 32×32 layer gained.
        static func suits(_ g: Geometry) -> Bool {
            guard winogradFilterEnabled && Winograd.suits(g) else { return false }
            return g.padH == 1 ? g.ow >= 13 || min(g.c, g.o) >= 128 : g.ow >= minUnpaddedWidth
        }

        /// Unpadded (or 2-padded) layers: the narrowest dy plane taken here. 13 and 14 wide (4
        /// tiles a row, 3 or 2 columns of the last one empty) ran slower than the implicit GEMM,
        /// 16–24 wide faster (`kiln bench conv --shape … --pass bwd-filter`, AMD EPYC Zen 4, ms,
        /// best of 3 rounds, two alternations, AVX-512 / AVX2, implicit → Winograd: 64 → 64 on
        /// 15×15 (13 wide), batch 128, 8.9 / 8.6 → 10.3 / 10.4; 48 → 64 on 16×16, batch 64, 3.50 /
        /// 3.51 → 4.1 / 4.0; 64 → 64 on 18×18 (16 wide) – / 5.70 → – / 4.97; on 20×20 7.4 → 5.9 / –;
        /// the MNIST example's 32 → 64 on 26×26 (24 wide) 6.65 / 6.62 → 5.6 / 5.9).
        static let minUnpaddedWidth = 16

        /// The dy tile: `winogradFilterTile` when it forces one, else 4 when dy's plane holds a 4×4
        /// tile (4×4 planes included: one F(3×3, 4×4) tile per image does 36 multiply-adds per
        /// (o, c) and image against 64 for four F(3×3, 2×2) tiles), else 2.
        static func tileSize(_ g: Geometry) -> Int {
            if winogradFilterTile == 2 || winogradFilterTile == 4 { return winogradFilterTile }
            return g.oh >= 4 && g.ow >= 4 ? 4 : 2
        }

        struct Problem {
            /// x is `[n, c, h, w]`, dy `[n, o, oh, ow]`.
            let n: Int, c: Int, h: Int, w: Int, o: Int
            /// The forward pass's padding (0, 1 or 2).
            let pad: Int
            /// The dy tile's side (2 or 4), the input patch's (α = m + 2), and α² positions.
            let m: Int
            var alpha: Int { m + 2 }
            var positions: Int { alpha * alpha }
            /// The forward problem whose input transform gives V: its tiles are dy's (its row buffer fits dy's rows too).
            var inputProblem: Winograd.Problem { .init(n: n, c: c, h: h, w: w, o: o, pad: pad, flipped: false, m: m) }
            var oh: Int { inputProblem.oh }
            var ow: Int { inputProblem.ow }
            var tilesX: Int { inputProblem.tilesX }
            var tilesY: Int { inputProblem.tilesY }
            var tileRows: Int { inputProblem.tileRows }
            var blockRows: Int { max(1, min(tileRows, WinogradFilter.targetTiles / tilesX)) }
            var blockCount: Int { (tileRows + blockRows - 1) / blockRows }
            var blockTiles: Int { blockRows * tilesX }
            var lastBlockTiles: Int { (tileRows - (blockCount - 1) * blockRows) * tilesX }
            /// Row stride of U and V: room for a last vector chunk's spill past the block's tiles.
            var ld: Int { Conv2DKernel.columnStride(blockTiles + Winograd.lanes) }
            var rowFloats: Int { inputProblem.rowFloats }
            var accumulatorFloats: Int { positions * o * c }
            /// M, then one block's V and U, then the transform chunks' row buffers.
            var scratchFloats: Int {
                accumulatorFloats + positions * (c + o) * ld + WinogradFilter.transformChunks * alpha * rowFloats
            }
            func gemmFloats(_ tiles: Int) -> (a: Int, b: Int) {
                GEMM.workspaceFloats(transposeA: false, transposeB: true, m: o, n: c, k: tiles)
            }
            var gemmWorkspace: (a: Int, b: Int) { Conv2DKernel.larger(gemmFloats(blockTiles), gemmFloats(lastBlockTiles)) }
        }

        static func problem(_ g: Geometry, tile: Int? = nil) -> Problem {
            Problem(n: g.n, c: g.c, h: g.h, w: g.w, o: g.o, pad: g.padH, m: tile ?? tileSize(g))
        }

        /// The table name: transform, tiles per block, the α² products' m×n×k.
        static func algorithm(_ g: Geometry) -> String {
            let p = problem(g)
            return "winograd F(3x3,\(p.m)x\(p.m)) \(p.o)x\(p.c)x\(p.blockTiles)"
        }

        /// dw = the filter gradient (overwritten).
        static func run(_ p: Problem, x: UnsafePointer<Float>, dy: UnsafePointer<Float>, dw: UnsafeMutablePointer<Float>,
                        threads: Int) {
            let scratch = ConvScratch.winogradFilter.take(floats: p.scratchFloats, gemm: (0, 0))
            defer { ConvScratch.winogradFilter.give(scratch) }
            let ld = p.ld
            let accumulators = scratch.floats, v = accumulators + p.accumulatorFloats
            let u = v + p.positions * p.c * ld, rowBuffers = u + p.positions * p.o * ld
            let inputProblem = p.inputProblem
            for block in 0..<p.blockCount {
                let rows = block * p.blockRows..<min(p.tileRows, (block + 1) * p.blockRows)
                let tiles = rows.count * p.tilesX
                // Transforms of channels `channels` (x's c, then dy's o).
                func transform(_ channels: Range<Int>, _ rowBuffer: UnsafeMutablePointer<Float>) {
                    func transforms<V: SIMD>(_ type: V.Type) where V.Scalar == Float {
                        for channel in channels {
                            // x's row buffer keeps a zero column −1 and dy's starts at column 0: clear per channel.
                            rowBuffer.update(repeating: 0, count: p.alpha * p.rowFloats)
                            for (slot, row) in rows.enumerated() {
                                let image = row / p.tilesY, ty = row % p.tilesY
                                if channel < p.c {
                                    let plane = x + (image * p.c + channel) * p.h * p.w
                                    let target = v + channel * ld + slot * p.tilesX
                                    if p.m == 4 {
                                        Winograd.inputTransform4(type, inputProblem, plane: plane, ty: ty, rowBuffer: rowBuffer,
                                                                 v: target, eStride: p.c * ld)
                                    } else {
                                        Winograd.inputTransform(type, inputProblem, plane: plane, ty: ty, rowBuffer: rowBuffer,
                                                                v: target, eStride: p.c * ld)
                                    }
                                } else {
                                    let o = channel - p.c
                                    let plane = dy + (image * p.o + o) * p.oh * p.ow
                                    let target = u + o * ld + slot * p.tilesX
                                    if p.m == 4 {
                                        gradientTransform4(type, p, plane: plane, ty: ty, rowBuffer: rowBuffer, u: target,
                                                           eStride: p.o * ld)
                                    } else {
                                        gradientTransform2(type, p, plane: plane, ty: ty, rowBuffer: rowBuffer, u: target,
                                                           eStride: p.o * ld)
                                    }
                                }
                            }
                        }
                    }
                    Winograd.withVectorWidth(p.tilesX, { transforms(SIMD4<Float>.self) }, { transforms(SIMD8<Float>.self) },
                                             { transforms(Winograd.Vector.self) })
                }
                // Transforms split over channels, then M[e] (+)= U[e] · V[e]ᵀ split over positions,
                // each product on one thread (the blocks reach M[e] in order).
                let channels = p.c + p.o, chunks = min(channels, transformChunks)
                Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                    transform(chunk * channels / chunks..<(chunk + 1) * channels / chunks,
                              rowBuffers + chunk * p.alpha * p.rowFloats)
                }
                let parts = min(p.positions, threads)
                Parallel.forEach(chunks: parts, threads: threads) { part in
                    let entry = ConvScratch.shared.take(floats: 0, gemm: p.gemmWorkspace)
                    defer { ConvScratch.shared.give(entry) }
                    let workspace = ConvScratch.shared.fit(entry, p.gemmFloats(tiles))
                    for e in part * p.positions / parts..<(part + 1) * p.positions / parts {
                        GEMM.sgemm(transposeA: false, transposeB: true, m: p.o, n: p.c, k: tiles, a: u + e * p.o * ld, lda: ld,
                                   b: v + e * p.c * ld, ldb: ld, c: accumulators + e * p.o * p.c, ldc: p.c,
                                   accumulate: block > 0, threads: 1, workspace: workspace)
                    }
                }
            }
            // dW[o, c] = Aᵀ M[·, o, c] A, split over output channels.
            let outChunks = min(p.o, 16)
            Parallel.forEach(chunks: outChunks, threads: threads) { chunk in
                for o in chunk * p.o / outChunks..<(chunk + 1) * p.o / outChunks {
                    outputTransform(p, accumulators: UnsafePointer(accumulators), o: o, dw: dw)
                }
            }
        }

        /// Row buffer i (of m) gets dy row m·ty + i of `plane` at columns 0…ow − 1, or zeros below
        /// the plane (the columns past ow stay zero).
        @inline(__always)
        static func fillGradientRows(_ p: Problem, plane: UnsafePointer<Float>, ty: Int, rowBuffer: UnsafeMutablePointer<Float>) {
            for i in 0..<p.m {
                let y = p.m * ty + i, target = rowBuffer + i * p.rowFloats
                if y < p.oh {
                    Conv2DKernel.copyFloats(target, plane + y * p.ow, p.ow)
                } else {
                    Conv2DKernel.zeroFloats(target, p.ow)
                }
            }
        }

        /// G f for m = 4 (f: the tile's 4 values along one axis).
        @inline(__always)
        static func g4<V: SIMD>(_ f: (V, V, V, V)) -> (V, V, V, V, V, V) where V.Scalar == Float {
            let even = f.0 + f.2, odd = f.1 + f.3
            let even4 = f.0 + V(repeating: 4) * f.2, odd4 = V(repeating: 2) * f.1 + V(repeating: 8) * f.3
            let sixth = V(repeating: -1.0 / 6), twentyFourth = V(repeating: 1.0 / 24)
            return (V(repeating: 0.25) * f.0, sixth * (even + odd), sixth * (even - odd),
                    twentyFourth * (even4 + odd4), twentyFourth * (even4 - odd4), f.3)
        }

        /// U[e][tile] = (G dy Gᵀ)[e] (e = 6·row + column) for m = 4, for the tiles of tile row `ty`
        /// of one channel's dy plane; e's rows `eStride` apart. Writes whole vectors: up to
        /// `lanes − 1` floats past the row's last tile.
        @inline(__always)
        static func gradientTransform4<V: SIMD>(_: V.Type, _ p: Problem, plane: UnsafePointer<Float>, ty: Int,
                                                rowBuffer: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>,
                                                eStride: Int) where V.Scalar == Float {
            fillGradientRows(p, plane: plane, ty: ty, rowBuffer: rowBuffer)
            let lanes = V.scalarCount
            var tx = 0
            while tx < p.tilesX {
                // Horizontal: G applied to each row's 4 columns (tile columns at 4tx + j).
                @inline(__always) func row(_ i: Int) -> (V, V, V, V, V, V) {
                    let base = UnsafePointer(rowBuffer + i * p.rowFloats + 4 * tx)
                    let a: V = Winograd.load(base), b: V = Winograd.load(base + lanes)
                    let c: V = Winograd.load(base + 2 * lanes), d: V = Winograd.load(base + 3 * lanes)
                    return g4((Winograd.unzip4(a, b, c, d, 0), Winograd.unzip4(a, b, c, d, 1),
                               Winograd.unzip4(a, b, c, d, 2), Winograd.unzip4(a, b, c, d, 3)))
                }
                let h0 = row(0), h1 = row(1), h2 = row(2), h3 = row(3)
                let target = u + tx
                // Vertical: G applied to column k of the four rows.
                @inline(__always) func column(_ k: Int, _ f: (V, V, V, V)) {
                    let t = g4(f)
                    Winograd.store(t.0, target + k * eStride); Winograd.store(t.1, target + (6 + k) * eStride)
                    Winograd.store(t.2, target + (12 + k) * eStride); Winograd.store(t.3, target + (18 + k) * eStride)
                    Winograd.store(t.4, target + (24 + k) * eStride); Winograd.store(t.5, target + (30 + k) * eStride)
                }
                column(0, (h0.0, h1.0, h2.0, h3.0))
                column(1, (h0.1, h1.1, h2.1, h3.1))
                column(2, (h0.2, h1.2, h2.2, h3.2))
                column(3, (h0.3, h1.3, h2.3, h3.3))
                column(4, (h0.4, h1.4, h2.4, h3.4))
                column(5, (h0.5, h1.5, h2.5, h3.5))
                tx += lanes
            }
        }

        /// U[e][tile] = (G dy Gᵀ)[e] (e = 4·row + column) for m = 2; as `gradientTransform4`.
        @inline(__always)
        static func gradientTransform2<V: SIMD>(_: V.Type, _ p: Problem, plane: UnsafePointer<Float>, ty: Int,
                                                rowBuffer: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>,
                                                eStride: Int) where V.Scalar == Float {
            fillGradientRows(p, plane: plane, ty: ty, rowBuffer: rowBuffer)
            let lanes = V.scalarCount
            let half = V(repeating: 0.5)
            @inline(__always) func g2(_ f0: V, _ f1: V) -> (V, V, V, V) { (f0, half * (f0 + f1), half * (f0 - f1), f1) }
            var tx = 0
            while tx < p.tilesX {
                @inline(__always) func row(_ i: Int) -> (V, V, V, V) {
                    let base = UnsafePointer(rowBuffer + i * p.rowFloats + 2 * tx)
                    let (f0, f1) = Winograd.unzip(Winograd.load(base) as V, Winograd.load(base + lanes) as V)
                    return g2(f0, f1)
                }
                let h0 = row(0), h1 = row(1)
                let target = u + tx
                @inline(__always) func column(_ k: Int, _ f0: V, _ f1: V) {
                    let t = g2(f0, f1)
                    Winograd.store(t.0, target + k * eStride); Winograd.store(t.1, target + (4 + k) * eStride)
                    Winograd.store(t.2, target + (8 + k) * eStride); Winograd.store(t.3, target + (12 + k) * eStride)
                }
                column(0, h0.0, h1.0); column(1, h0.1, h1.1); column(2, h0.2, h1.2); column(3, h0.3, h1.3)
                tx += lanes
            }
        }

        /// dW[o, c, ·, ·] = Aᵀ M[·, o, c] A for every input channel c of output channel o, eight
        /// channels at a time (M[e] rows `o·c` apart).
        static func outputTransform(_ p: Problem, accumulators: UnsafePointer<Float>, o: Int, dw: UnsafeMutablePointer<Float>) {
            typealias V = SIMD8<Float>
            let plane = p.o * p.c, alpha = p.alpha
            var c0 = 0
            while c0 < p.c {
                let count = min(8, p.c - c0)
                let base = accumulators + o * p.c + c0
                @inline(__always) func e(_ i: Int) -> V {
                    let source = base + i * plane
                    if count == 8 { return UnsafeRawPointer(source).loadUnaligned(as: V.self) }
                    var r = V()
                    for lane in 0..<count { r[lane] = source[lane] }
                    return r
                }
                // Aᵀ along each row i of the α×α block (→ kx), then down each column (→ ky).
                var result = (V(), V(), V(), V(), V(), V(), V(), V(), V())
                if alpha == 6 {
                    @inline(__always) func a3(_ m: (V, V, V, V, V, V)) -> (V, V, V) {
                        let sum = m.1 + m.2, difference = m.1 - m.2
                        return (m.0 + sum + m.3 + m.4, difference + V(repeating: 2) * (m.3 - m.4),
                                sum + V(repeating: 4) * (m.3 + m.4) + m.5)
                    }
                    @inline(__always) func row(_ i: Int) -> (V, V, V) {
                        a3((e(6 * i), e(6 * i + 1), e(6 * i + 2), e(6 * i + 3), e(6 * i + 4), e(6 * i + 5)))
                    }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5)
                    let k0 = a3((r0.0, r1.0, r2.0, r3.0, r4.0, r5.0))
                    let k1 = a3((r0.1, r1.1, r2.1, r3.1, r4.1, r5.1))
                    let k2 = a3((r0.2, r1.2, r2.2, r3.2, r4.2, r5.2))
                    result = (k0.0, k1.0, k2.0, k0.1, k1.1, k2.1, k0.2, k1.2, k2.2)
                } else {
                    @inline(__always) func a2(_ m: (V, V, V, V)) -> (V, V, V) {
                        (m.0 + m.1 + m.2, m.1 - m.2, m.1 + m.2 - m.3)
                    }
                    @inline(__always) func row(_ i: Int) -> (V, V, V) { a2((e(4 * i), e(4 * i + 1), e(4 * i + 2), e(4 * i + 3))) }
                    let r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3)
                    let k0 = a2((r0.0, r1.0, r2.0, r3.0))
                    let k1 = a2((r0.1, r1.1, r2.1, r3.1))
                    let k2 = a2((r0.2, r1.2, r2.2, r3.2))
                    result = (k0.0, k1.0, k2.0, k0.1, k1.1, k2.1, k0.2, k1.2, k2.2)
                }
                // dw[o][c][ky][kx]: 9 floats per (o, c), ky-major.
                let target = dw + (o * p.c + c0) * 9
                for lane in 0..<count {
                    let out = target + lane * 9
                    out[0] = result.0[lane]; out[1] = result.1[lane]; out[2] = result.2[lane]
                    out[3] = result.3[lane]; out[4] = result.4[lane]; out[5] = result.5[lane]
                    out[6] = result.6[lane]; out[7] = result.7[lane]; out[8] = result.8[lane]
                }
                c0 += 8
            }
        }
    }

    static func winogradBackwardFilter(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                       dw: UnsafeMutablePointer<Float>, threads: Int) {
        WinogradFilter.run(WinogradFilter.problem(g), x: x, dy: dy, dw: dw, threads: threads)
    }
}
