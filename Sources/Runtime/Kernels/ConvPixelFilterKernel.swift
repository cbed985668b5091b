import CPlatform

/// The backward-filter pass of stride-1 convolutions with few input channels (a network's
/// stem: ResNet's 3 → 64 or 3 → 16 3×3 layer), vectorised over output pixels:
/// `dW[o, K] = Σ_t dy[o, t] · x̂[K, t]` with K = (c, ky, kx) and t the output pixels.
///
/// `FilterKernel` vectorises over output channels, so it first packs dyᵀ (every dy element
/// transposed once) and then reads each packed element for only c·kh·kw = 27 multiply-adds;
/// on ResNet-18's stem the packing cost as much as the tiles, and 27 rows filled a 32-row tile
/// to 84 %. Here a vector holds `lanes` consecutive output pixels of one output row instead:
/// - dy is read where it lies (NCHW: a row of pixels of one channel is contiguous);
/// - x̂[K, t..t+lanes] is `lanes` consecutive floats of a copy of the zero-bordered image
///   shifted left by kx (`[c][kx][hp][ow]`, hp = h + 2·padH): K = (c, ky, kx) at pixel t reads
///   plane (c, kx) at `ky·ow + t`, so every load is one aligned vector and the loop over an
///   image's pixels has no row ends;
/// - a register tile of 3 output channels × 9 K's (AVX-512; 4 × 3 with 16 registers) keeps one
///   vector accumulator per (o, K), each lane a partial sum over the pixels in that lane's
///   position, kept in a lane-wide scratch across the group's images and summed across lanes
///   once per group.
///
/// Needs stride 1 and output rows a whole number of vectors (`ow % lanes == 0`): the stems of
/// the zoo's ResNets (32-wide) on every ISA. Every element of dW is the same sum in the same
/// order for any thread count: threads split output-channel tiles, never pixels, and the groups
/// are summed in `sumFilterGroups`'s fixed order.
extension Conv2DKernel {
    enum PixelFilterKernel {
        typealias V = ISA.Vector
        /// Pixels per vector.
        static var lanes: Int { V.scalarCount }
        /// Output channels per register tile: 3 with 32 vector registers, 4 with 16.
        static let outputs = ISA.wideTile ? 3 : 4
        /// K rows per register tile (a K row: one input channel and kernel row, its 3 taps): 3
        /// with 32 vector registers (3 × 9 = 27 accumulators), 1 with 16 (4 × 3 = 12).
        static let kRows = ISA.wideTile ? 3 : 1
        /// K's per register tile.
        static var taps: Int { 3 * kRows }
        /// Largest K = c·kh·kw taken here: beyond it `FilterKernel`'s output-channel vectors
        /// fill their tile and reuse each packed dy element enough.
        static let maxPatch = 32
        /// Images per group: the batch in at most `filterPartitions` groups (one lane-wise sum
        /// per group), at most 16 (a group's shifted copies stay in L2).
        static func groupImages(_ g: Geometry) -> Int {
            max(1, min(16, (g.n + filterPartitions - 1) / filterPartitions))
        }

        /// Whether a geometry's filter gradient runs here: every one it suits but the direct
        /// path's with fewer than 16 output channels (as `FilterKernel.runs`).
        static func runs(_ g: Geometry) -> Bool {
            suits(g) && (g.o >= 16 || !DirectConv2D.runs(g, .backwardFilter))
        }

        /// Whether this kernel can run a geometry's filter gradient.
        static func suits(_ g: Geometry) -> Bool {
            g.strideH == 1 && g.strideW == 1 && g.kw == 3 && g.patchSize <= maxPatch && g.ow % lanes == 0 && !g.isPointwise
                && (g.h + 2 * g.padH) * g.ow * g.kw * g.c * groupImages(g) < Int(Int32.max / 8)
        }

        /// How a geometry is laid out in scratch.
        struct Plan {
            let g: Geometry
            /// Rows of the bordered image (h + 2·padH).
            let hp: Int
            let groupImages: Int, groups: Int
            /// Output-channel tiles (`outputs` channels) and K tiles (the last of each may be ragged).
            let outputTiles: Int, kTiles: Int
            /// Floats of one shifted plane: `hp` rows of `ow`.
            var plane: Int { hp * g.ow }
            var imageFloats: Int { g.c * g.kw * plane }
            /// Lane-wise partial sums: `[outputTile][kTile][outputs · taps][lanes]`.
            var partialFloats: Int { outputTiles * kTiles * outputs * taps * PixelFilterKernel.lanes }
            var scratchFloats: Int { groupImages * imageFloats + partialFloats }

            /// Whether the next image's dy is prefetched: when dy is at least `residentBytes` (half
            /// the last-level cache), each image's dy would come from memory.
            let prefetch: Bool

            init(_ g: Geometry, residentBytes: Int = ShortcutKernel.cacheResidentBytes) {
                self.g = g
                prefetch = g.n * g.o * g.outputPixels * MemoryLayout<Float>.stride >= residentBytes
                hp = g.h + 2 * g.padH
                groupImages = PixelFilterKernel.groupImages(g)
                groups = (g.n + groupImages - 1) / groupImages
                outputTiles = (g.o + outputs - 1) / outputs
                kTiles = (g.patchSize + taps - 1) / taps
            }

            func images(_ group: Int) -> Range<Int> { group * groupImages..<min(g.n, (group + 1) * groupImages) }

            /// Byte offset of K row `row` (input channel, kernel row) in an image's shifted copies
            /// (its tap kx is `kx` planes further); rows past the last repeat it (their sums are
            /// computed and never read).
            func rowOffset(_ row: Int) -> Int {
                let (channel, ky) = min(row, g.c * g.kh - 1).quotientAndRemainder(dividingBy: g.kh)
                return (channel * g.kw * plane + ky * g.ow) * MemoryLayout<Float>.stride
            }
        }

        static func algorithm(_ g: Geometry) -> String {
            let plan = Plan(g)
            return "pixel-vector b\(plan.groupImages) \(g.o)x\(g.patchSize)x\(plan.groupImages * g.outputPixels)"
        }

        /// dw = the filter gradient over all images.
        static func run(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                        dw: UnsafeMutablePointer<Float>, threads: Int, maxPartials: Int = maxPartialFloats,
                        residentBytes: Int = ShortcutKernel.cacheResidentBytes) {
            let plan = Plan(g, residentBytes: residentBytes)
            sumFilterGroups(plan.groups, filter: g.o * g.patchSize, dw: dw, threads: threads, maxPartials: maxPartials,
                            scratchFloats: plan.scratchFloats, gemm: (0, 0)) { group, target, accumulate, scratch, threads in
                accumulateGroup(plan, plan.images(group), x: x, dy: dy, dw: target, accumulate: accumulate,
                                scratch: scratch.floats, threads: threads)
            }
        }

        /// dw (+)= one group's contribution: shifted copies of its images, then the output-channel
        /// tiles split over `threads`, each running its tiles image after image.
        static func accumulateGroup(_ plan: Plan, _ images: Range<Int>, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                    dw: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: UnsafeMutablePointer<Float>,
                                    threads: Int) {
            let g = plan.g
            let copies = scratch, partials = copies + images.count * plan.imageFloats
            // Copies only: how they are split over threads cannot change a result.
            Parallel.forEach(chunks: images.count, threads: threads) { slot in
                copyShifted(plan, x: x + (images.lowerBound + slot) * g.c * g.h * g.w, into: copies + slot * plan.imageFloats)
            }
            let chunks = threads == 1 ? 1 : min(plan.outputTiles, 4 * threads)
            let tileFloats = outputs * taps * lanes
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                let tiles = chunk * plan.outputTiles / chunks..<(chunk + 1) * plan.outputTiles / chunks
                (partials + tiles.lowerBound * plan.kTiles * tileFloats).update(repeating: 0,
                                                                              count: tiles.count * plan.kTiles * tileFloats)
                let channels = tiles.lowerBound * outputs..<min(g.o, tiles.upperBound * outputs)
                for slot in 0..<images.count {
                    let base = UnsafeRawPointer(copies + slot * plan.imageFloats)
                    let image = dy + (images.lowerBound + slot) * g.o * g.outputPixels
                    // The next image's dy for these tiles, into L2, from the first tile on: a line after
                    // each vector of pixels inside the tile (issued at once after it, the prefetches
                    // waited on one another: 12–15 % of the pass's samples on them; spread evenly over
                    // all the tiles, the AVX2 pass was 4 % slower), and where the tiles have fewer
                    // vectors than the image has lines (few input channels on wide vectors) the rest
                    // after each tile.
                    let ahead = UnsafeRawPointer(image + (g.o + channels.lowerBound) * g.outputPixels)
                    let aheadLines = plan.prefetch && images.lowerBound + slot + 1 < g.n ? channels.count * g.outputPixels / 16 : 0
                    let calls = plan.kTiles * tiles.count
                    let perCall = max(g.outputPixels / lanes, (aheadLines + calls - 1) / max(1, calls))
                    var call = 0
                    // K tiles outer: one K tile's copies (3 planes of an input channel) stay in L1
                    // while the image's dy streams from L2 (a whole image's copies do not fit).
                    for kTile in 0..<plan.kTiles {
                        let rows = (plan.rowOffset(kTile * kRows), plan.rowOffset(kTile * kRows + 1),
                                    plan.rowOffset(kTile * kRows + 2))
                        for tile in tiles {
                            let o0 = tile * outputs, o1 = min(o0 + 1, g.o - 1), o2 = min(o0 + 2, g.o - 1)
                            let dy0 = UnsafeRawPointer(image + o0 * g.outputPixels)
                            let second = (o1 - o0) * g.outputPixels * MemoryLayout<Float>.stride
                            let third = (o2 - o0) * g.outputPixels * MemoryLayout<Float>.stride
                            let sums = partials + (tile * plan.kTiles + kTile) * tileFloats
                            let first = ahead + call * perCall * 64, lines = max(0, min(perCall, aheadLines - call * perCall))
                            let inTile = min(lines, g.outputPixels / lanes)
                            call += 1
                            if ISA.wideTile {
                                tile3x3(g.outputPixels, plan.plane, base, rows, dy0, second, third, sums, (first, inTile))
                            } else {
                                let fourth = (min(o0 + 3, g.o - 1) - o0) * g.outputPixels * MemoryLayout<Float>.stride
                                tile4x1(g.outputPixels, plan.plane, base + rows.0, dy0, (second, third, fourth), sums, (first, inTile))
                            }
                            for line in inTile..<lines { kiln_prefetch_l2(first + line * 64) }
                        }
                    }
                }
                // Lane sums, in a fixed order, into dw.
                for tile in tiles {
                    for r in 0..<outputs {
                        let o = tile * outputs + r
                        guard o < g.o else { break }
                        for k in 0..<g.patchSize {
                            let (kTile, j) = k.quotientAndRemainder(dividingBy: taps)
                            let lanesOf = UnsafeRawPointer(partials + (tile * plan.kTiles + kTile) * tileFloats + (r * taps + j) * lanes)
                            let sum = lanesOf.loadUnaligned(as: V.self).sum()
                            dw[o * g.patchSize + k] = accumulate ? dw[o * g.patchSize + k] + sum : sum
                        }
                    }
                }
            }
        }

        /// One image `x[c, h, w]` as `copy[c][kx][hp][ow]`: plane (c, kx) holds at (r, ox) the
        /// zero-bordered image's pixel (r, ox + kx), so that every load of the tiles is a whole
        /// aligned vector and a K row's taps are one plane apart.
        static func copyShifted(_ plan: Plan, x: UnsafePointer<Float>, into copy: UnsafeMutablePointer<Float>) {
            let g = plan.g, ow = g.ow
            for channel in 0..<g.c {
                let source = x + channel * g.h * g.w
                for kx in 0..<g.kw {
                    let target = copy + (channel * g.kw + kx) * plan.plane
                    // Columns ox whose input column ox + kx − padW lies in the image.
                    let low = min(ow, max(0, g.padW - kx)), high = max(low, min(ow, g.w + g.padW - kx))
                    zeroFloats(target, g.padH * ow)
                    for row in 0..<g.h {
                        let line = target + (row + g.padH) * ow
                        zeroFloats(line, low)
                        copyFloats(line + low, source + row * g.w + low + kx - g.padW, high - low)
                        zeroFloats(line + high, ow - high)
                    }
                    zeroFloats(target + (g.padH + g.h) * ow, (plan.hp - g.padH - g.h) * ow)
                }
            }
        }

        /// One image's (or block's) contribution to a tile of 3 output channels × 3 K rows (a K row
        /// is one input channel and kernel row; its taps kx = 0, 1, 2 are one shifted plane
        /// apart, `plane` floats): the 27 lane-wise sums at `sums` (`[output][row][kx][lanes]`)
        /// gain the Σ over `pixels` output pixels of dy (channels at `dy0`, `+ second` and
        /// `+ third` bytes) times x̂ (K rows at byte offsets `rowOffsets` from `base`). 27 of 32
        /// registers hold sums; 12 loads feed 27 multiply-adds.
        @inline(never)
        static func tile3x3(_ pixels: Int, _ plane: Int, _ base: UnsafeRawPointer, _ rowOffsets: (Int, Int, Int),
                            _ dy0: UnsafeRawPointer, _ second: Int, _ third: Int, _ sums: UnsafeMutablePointer<Float>,
                            _ ahead: (lines: UnsafeRawPointer, count: Int)) {
            let s = UnsafeMutableRawPointer(sums), step = V.scalarCount * MemoryLayout<Float>.stride
            @inline(__always) func load(_ i: Int) -> V { s.loadUnaligned(fromByteOffset: i * step, as: V.self) }
            var a0 = load(0), a1 = load(1), a2 = load(2), a3 = load(3), a4 = load(4), a5 = load(5)
            var a6 = load(6), a7 = load(7), a8 = load(8)
            var b0 = load(9), b1 = load(10), b2 = load(11), b3 = load(12), b4 = load(13), b5 = load(14)
            var b6 = load(15), b7 = load(16), b8 = load(17)
            var c0 = load(18), c1 = load(19), c2 = load(20), c3 = load(21), c4 = load(22), c5 = load(23)
            var c6 = load(24), c7 = load(25), c8 = load(26)
            let p1 = plane * MemoryLayout<Float>.stride, p2 = 2 * p1
            var r0 = base + rowOffsets.0, r1 = base + rowOffsets.1, r2 = base + rowOffsets.2
            var pd = dy0
            for i in 0..<pixels / V.scalarCount {
                if i < ahead.count { kiln_prefetch_l2(ahead.lines + i * 64) }
                let d0 = pd.loadUnaligned(as: V.self), d1 = pd.loadUnaligned(fromByteOffset: second, as: V.self)
                let d2 = pd.loadUnaligned(fromByteOffset: third, as: V.self)
                @inline(__always) func fma3(_ a: inout V, _ b: inout V, _ c: inout V, _ v: V) {
                    multiplyAdd(&a, d0, v); multiplyAdd(&b, d1, v); multiplyAdd(&c, d2, v)
                }
                fma3(&a0, &b0, &c0, r0.loadUnaligned(as: V.self))
                fma3(&a1, &b1, &c1, r0.loadUnaligned(fromByteOffset: p1, as: V.self))
                fma3(&a2, &b2, &c2, r0.loadUnaligned(fromByteOffset: p2, as: V.self))
                fma3(&a3, &b3, &c3, r1.loadUnaligned(as: V.self))
                fma3(&a4, &b4, &c4, r1.loadUnaligned(fromByteOffset: p1, as: V.self))
                fma3(&a5, &b5, &c5, r1.loadUnaligned(fromByteOffset: p2, as: V.self))
                fma3(&a6, &b6, &c6, r2.loadUnaligned(as: V.self))
                fma3(&a7, &b7, &c7, r2.loadUnaligned(fromByteOffset: p1, as: V.self))
                fma3(&a8, &b8, &c8, r2.loadUnaligned(fromByteOffset: p2, as: V.self))
                r0 += step; r1 += step; r2 += step
                pd += step
            }
            @inline(__always) func store(_ i: Int, _ v: V) { s.storeBytes(of: v, toByteOffset: i * step, as: V.self) }
            store(0, a0); store(1, a1); store(2, a2); store(3, a3); store(4, a4); store(5, a5); store(6, a6); store(7, a7)
            store(8, a8); store(9, b0); store(10, b1); store(11, b2); store(12, b3); store(13, b4); store(14, b5)
            store(15, b6); store(16, b7); store(17, b8); store(18, c0); store(19, c1); store(20, c2); store(21, c3)
            store(22, c4); store(23, c5); store(24, c6); store(25, c7); store(26, c8)
        }

        /// `tile3x3` for 16 vector registers: 4 output channels (dy at `dy0` and the byte offsets
        /// `others` from it) × 1 K row (x̂ at `row`, its taps a plane apart): 12 accumulators, fed
        /// by 4 loads of dy and 3 of x̂ (2 × 2 K rows took 8 loads, and the fifth K tile repeated a
        /// row: 9 rows in pairs).
        @inline(never)
        static func tile4x1(_ pixels: Int, _ plane: Int, _ row: UnsafeRawPointer, _ dy0: UnsafeRawPointer,
                            _ others: (Int, Int, Int), _ sums: UnsafeMutablePointer<Float>,
                            _ ahead: (lines: UnsafeRawPointer, count: Int)) {
            let s = UnsafeMutableRawPointer(sums), step = V.scalarCount * MemoryLayout<Float>.stride
            @inline(__always) func load(_ i: Int) -> V { s.loadUnaligned(fromByteOffset: i * step, as: V.self) }
            var a0 = load(0), a1 = load(1), a2 = load(2), b0 = load(3), b1 = load(4), b2 = load(5)
            var c0 = load(6), c1 = load(7), c2 = load(8), d0 = load(9), d1 = load(10), d2 = load(11)
            let p1 = plane * MemoryLayout<Float>.stride, p2 = 2 * p1
            var r = row, pd = dy0
            for i in 0..<pixels / V.scalarCount {
                if i < ahead.count { kiln_prefetch_l2(ahead.lines + i * 64) }
                let x0 = r.loadUnaligned(as: V.self), x1 = r.loadUnaligned(fromByteOffset: p1, as: V.self)
                let x2 = r.loadUnaligned(fromByteOffset: p2, as: V.self)
                var d = pd.loadUnaligned(as: V.self)
                multiplyAdd(&a0, d, x0); multiplyAdd(&a1, d, x1); multiplyAdd(&a2, d, x2)
                d = pd.loadUnaligned(fromByteOffset: others.0, as: V.self)
                multiplyAdd(&b0, d, x0); multiplyAdd(&b1, d, x1); multiplyAdd(&b2, d, x2)
                d = pd.loadUnaligned(fromByteOffset: others.1, as: V.self)
                multiplyAdd(&c0, d, x0); multiplyAdd(&c1, d, x1); multiplyAdd(&c2, d, x2)
                d = pd.loadUnaligned(fromByteOffset: others.2, as: V.self)
                multiplyAdd(&d0, d, x0); multiplyAdd(&d1, d, x1); multiplyAdd(&d2, d, x2)
                r += step
                pd += step
            }
            @inline(__always) func store(_ i: Int, _ v: V) { s.storeBytes(of: v, toByteOffset: i * step, as: V.self) }
            store(0, a0); store(1, a1); store(2, a2); store(3, b0); store(4, b1); store(5, b2)
            store(6, c0); store(7, c1); store(8, c2); store(9, d0); store(10, d1); store(11, d2)
        }
    }
}
