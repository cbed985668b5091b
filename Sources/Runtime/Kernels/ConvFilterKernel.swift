/// The backward-filter pass of the GEMM-path convolutions without a column matrix:
/// `dW[o, K] = Σ_t dy[o, t] · x̂[K, t]` over every output pixel t of the batch, K = (c, ky, kx),
/// where x̂ is the im2col matrix that this kernel never writes.
///
/// Per group of images (`Plan.groupImages`):
/// 1. the group's input is copied once, zero-bordered, channel-major (`[c][image][hp][wp]`):
///    then row K of x̂ at pixel t is one float at `offset(K) + offset(t)`, both offsets
///    precomputed (K: channel, ky·wp + kx; t: image, oy·s·wp + ox·s);
/// 2. dyᵀ is packed in panels of `columns` output channels (`[panel][t][columns]`);
/// 3. a register tile of `rows` K's × `columns` o's runs over every t of the group, its `rows`
///    broadcasts read straight from the bordered copy, and adds its transpose to dW.
///
/// The copy in 1 is the input's size (the im2col matrix is kh·kw times larger and was written,
/// then read or packed: ResNet-18's deep stages moved 8 MB per group that way). Each element of
/// dW gets the t's of a group in order, in one register, then the groups in the fixed order of
/// `gemmBackwardFilter` (partitions summed in order, or group after group), so results never
/// depend on the thread count: threads split the tiles of dW, never t.
extension Conv2DKernel {
    enum FilterKernel {
        /// K rows of dW per register tile (broadcast side): 8 with the AVX-512 tile, 6 otherwise.
        static let rows = ISA.wideTile ? 8 : 6
        /// Output channels per register tile (vector side): 32 with AVX-512, 16 otherwise.
        static let columns = ISA.wideTile ? 32 : 16
        /// Largest packed dyᵀ of a group, in floats (1 MiB; its panels stream from L2 in blocks
        /// of `panelBlockBytes` while a tile's broadcasts stay in L1).
        static let maxPackedFloats = 1 << 18
        /// Output pixels a group aims for (its depth: deeper groups add to dW fewer times).
        static let targetColumns = 1024
        /// Bytes of packed dyᵀ panels that each K panel's tiles run over in turn (a quarter of L2,
        /// where they stay while the K panels pass). All of a group's panels at once (1 MiB for
        /// ResNet-18's deep layers) did not stay in a 1 MB L2 (AMD EPYC family 25 model 17), and
        /// every K panel read them again from L3.
        static let panelBlockBytes = (Platform.level2CacheBytes ?? 1 << 20) / 4

        /// How a geometry's filter gradient is cut into groups and laid out in scratch.
        struct Plan {
            let g: Geometry
            /// Bordered input plane: rows and columns.
            let hp: Int, wp: Int
            /// A strided unpadded 1×1 convolution copies only the pixels it reads (`hp × wp` =
            /// `oh × ow`), which it then reads with stride 1.
            let subsampled: Bool
            /// Floats between output pixels in the copy: along a row and between rows.
            let pixelStride: Int, rowStride: Int
            let groupImages: Int, groups: Int
            let oPanels: Int
            /// Output channels per packed panel: `columns`, or 16 for at most 16 channels on the
            /// AVX-512 tile (its half tile then reads no padding).
            let panelColumns: Int
            /// Floats between channels of the bordered copy (`groupImages` planes).
            var channelStride: Int { groupImages * hp * wp }
            var plane: Int { hp * wp }
            var maxDepth: Int { groupImages * g.outputPixels }
            /// Scratch floats: bordered copy, packed dyᵀ, pixel offsets (Int32), K offsets (Int).
            var copyFloats: Int { g.c * channelStride }
            var packedFloats: Int { oPanels * panelColumns * maxDepth }
            var scratchFloats: Int { copyFloats + packedFloats + maxDepth + 2 * g.patchSize + 16 }

            init(_ g: Geometry) {
                self.g = g
                subsampled = g.kh == 1 && g.kw == 1 && g.padH == 0 && g.padW == 0 && !g.isPointwise
                hp = subsampled ? g.oh : g.h + 2 * g.padH
                wp = subsampled ? g.ow : g.w + 2 * g.padW
                pixelStride = subsampled ? 1 : g.strideW
                rowStride = subsampled ? wp : g.strideH * wp
                panelColumns = g.o <= 16 ? 16 : FilterKernel.columns
                oPanels = (g.o + panelColumns - 1) / panelColumns
                let p = g.outputPixels
                let byDepth = (FilterKernel.targetColumns + p - 1) / p
                let byPacked = FilterKernel.maxPackedFloats / max(1, oPanels * panelColumns * p)
                groupImages = max(1, min(g.n, min(byDepth, byPacked)))
                groups = (g.n + groupImages - 1) / groupImages
            }

            func images(_ group: Int) -> Range<Int> { group * groupImages..<min(g.n, (group + 1) * groupImages) }
        }

        /// Whether the backward-filter pass of a geometry runs here: every one it suits but the
        /// direct path's with fewer than 16 output channels (LeNet-5's first layer: measured
        /// 2.6× slower here, its 6 channels fill 6 of 16 lanes).
        static func runs(_ g: Geometry) -> Bool {
            if !suits(g) { return false }
            return !DirectConv2D.runs(g, .backwardFilter) || g.o >= 16
        }

        /// Whether this kernel can run a geometry's filter gradient.
        /// A pointwise (1×1, stride 1, unpadded) convolution keeps the GEMM, which reads x in place.
        static func suits(_ g: Geometry) -> Bool {
            // Byte offsets of pixels are Int32.
            !g.isPointwise && Plan(g).copyFloats < Int(Int32.max / 8)
        }

        /// Pointers into one scratch entry for a plan.
        struct Buffers {
            let copy: UnsafeMutablePointer<Float>
            let packed: UnsafeMutablePointer<Float>
            let pixelOffsets: UnsafeMutableRawPointer
            let rowOffsets: UnsafeMutablePointer<Int>

            init(_ plan: Plan, _ floats: UnsafeMutablePointer<Float>) {
                copy = floats
                packed = floats + plan.copyFloats
                pixelOffsets = UnsafeMutableRawPointer(packed + plan.packedFloats)
                // Int-aligned: 2 floats per Int, after the pixel offsets.
                let raw = UnsafeMutableRawPointer(packed + plan.packedFloats + plan.maxDepth + 8)
                let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: raw) + 7) / 8 * 8)!
                rowOffsets = aligned.bindMemory(to: Int.self, capacity: plan.g.patchSize)
                let g = plan.g
                for channel in 0..<g.c {
                    for ky in 0..<g.kh {
                        for kx in 0..<g.kw {
                            let k = (channel * g.kh + ky) * g.kw + kx
                            rowOffsets[k] = (channel * plan.channelStride + ky * plan.wp + kx) * MemoryLayout<Float>.stride
                        }
                    }
                }
            }
        }

        /// Copies images `images` of x into the bordered channel-major layout (slot `slot` of
        /// the group), borders zero.
        static func copyImage(_ plan: Plan, x: UnsafePointer<Float>, image: Int, slot: Int, into copy: UnsafeMutablePointer<Float>) {
            let g = plan.g
            if plan.subsampled {
                for channel in 0..<g.c {
                    let target = copy + channel * plan.channelStride + slot * plan.plane
                    let source = x + (image * g.c + channel) * g.h * g.w
                    for oy in 0..<g.oh {
                        let line = target + oy * g.ow, from = source + oy * g.strideH * g.w
                        if g.strideW == 2 {
                            copyEvenFloats(line, from, 0..<g.ow, sourceEnd: g.w)
                        } else {
                            for ox in 0..<g.ow { line[ox] = from[ox * g.strideW] }
                        }
                    }
                }
                return
            }
            // The plane in memory order: the top border and row 0's left border, then each row
            // and the zeros after it up to the next row's first float (its right border and the
            // next left border, or the bottom border). A memset per border had been a tenth of
            // layer4.0.conv1's filter gradient (borders of 1 float).
            for channel in 0..<g.c {
                let target = copy + channel * plan.channelStride + slot * plan.plane
                let source = x + (image * g.c + channel) * g.h * g.w
                zeroFloats(target, g.padH * plan.wp + g.padW)
                for row in 0..<g.h {
                    let line = target + (row + g.padH) * plan.wp + g.padW
                    copyFloats(line, source + row * g.w, g.w)
                    zeroFloats(line + g.w, row + 1 < g.h ? 2 * g.padW : g.padW + g.padH * plan.wp)
                }
            }
        }

        /// Packs output channels `panel·width ..< +width` of the group's dy as
        /// `packed[panel][t][j]` (`width = plan.panelColumns`), channels past o zero: 16
        /// channels × 16 pixels at a time transposed in registers (`GEMM.Transpose`), a ragged
        /// pixel tail element by element.
        static func packPanel(_ plan: Plan, dy: UnsafePointer<Float>, images: Range<Int>, panel: Int,
                              into packed: UnsafeMutablePointer<Float>) {
            typealias V = SIMD16<Float>
            let g = plan.g, p = g.outputPixels, width = plan.panelColumns
            let depth = images.count * p
            let target = packed + panel * width * depth
            let first = panel * width, valid = min(width, g.o - first)
            let step = width * MemoryLayout<Float>.stride
            for (slot, image) in images.enumerated() {
                let out = target + slot * p * width
                let source = dy + (image * g.o + first) * p
                for half in stride(from: 0, to: width, by: 16) {
                    let channels = max(0, min(16, valid - half))
                    var t = 0
                    while t + 16 <= p {
                        let src = UnsafeRawPointer(source + half * p + t)
                        let rowBytes = p * MemoryLayout<Float>.stride
                        @inline(__always) func row(_ r: Int) -> V {
                            r < channels ? src.loadUnaligned(fromByteOffset: r * rowBytes, as: V.self) : V()
                        }
                        GEMM.Transpose.store16((row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7),
                                                row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15)),
                                               to: UnsafeMutableRawPointer(out + t * width + half), step: step)
                        t += 16
                    }
                    for q in t..<p {
                        let row = out + q * width + half
                        for j in 0..<16 { row[j] = j < channels ? source[(half + j) * p + q] : 0 }
                    }
                }
            }
        }

        /// Byte offsets of the group's output pixels in the bordered copy.
        static func fillPixelOffsets(_ plan: Plan, images: Int, into offsets: UnsafeMutableRawPointer) {
            let g = plan.g
            var t = 0
            for slot in 0..<images {
                for oy in 0..<g.oh {
                    for ox in 0..<g.ow {
                        let floats = slot * plan.plane + oy * plan.rowStride + ox * plan.pixelStride
                        offsets.storeBytes(of: Int32(floats * MemoryLayout<Float>.stride), toByteOffset: 4 * t, as: Int32.self)
                        t += 1
                    }
                }
            }
        }

        /// dw (+)= the group's contribution: copy, pack, then the tiles on `threads` (split by
        /// K panels: an element's sum never depends on the split).
        static func accumulateGroup(_ plan: Plan, _ images: Range<Int>, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                    dw: UnsafeMutablePointer<Float>, accumulate: Bool, buffers: Buffers, threads: Int,
                                    blockBytes: Int = panelBlockBytes) {
            let g = plan.g
            // Copies only: how they are split over threads cannot change a result.
            Parallel.forEach(chunks: images.count + plan.oPanels, threads: threads) { chunk in
                if chunk < images.count {
                    copyImage(plan, x: x, image: images.lowerBound + chunk, slot: chunk, into: buffers.copy)
                } else {
                    packPanel(plan, dy: dy, images: images, panel: chunk - images.count, into: buffers.packed)
                }
            }
            fillPixelOffsets(plan, images: images.count, into: buffers.pixelOffsets)
            let k = g.patchSize, depth = images.count * g.outputPixels
            let kPanels = (k + rows - 1) / rows
            let chunks = threads == 1 ? 1 : min(kPanels, 4 * threads)
            // The packed panels a K panel's tiles run over before the next K panel: a quarter of L2.
            let blockPanels = max(1, min(plan.oPanels, blockBytes / (plan.panelColumns * depth * MemoryLayout<Float>.stride)))
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                var offsets = (0, 0, 0, 0, 0, 0, 0, 0)
                for firstPanel in stride(from: 0, to: plan.oPanels, by: blockPanels) {
                    for panel in chunk * kPanels / chunks..<(chunk + 1) * kPanels / chunks {
                        let k0 = panel * rows, height = min(rows, k - k0)
                        withUnsafeMutableBytes(of: &offsets) { raw in
                            let o = raw.baseAddress!.assumingMemoryBound(to: Int.self)
                            for r in 0..<8 { o[r] = buffers.rowOffsets[k0 + min(r, height - 1)] }
                        }
                        let base = UnsafeRawPointer(buffers.copy)
                        let panelColumns = plan.panelColumns
                        for oPanel in firstPanel..<min(plan.oPanels, firstPanel + blockPanels) {
                            let width = min(panelColumns, g.o - oPanel * panelColumns)
                            let b = UnsafePointer(buffers.packed + oPanel * panelColumns * depth)
                            let c = dw + oPanel * panelColumns * k + k0
                            if ISA.wideTile {
                                if panelColumns == 16 {
                                    wideHalfTile(depth, base, offsets, UnsafeRawPointer(buffers.pixelOffsets), b, c, k,
                                                 height, width, accumulate)
                                } else {
                                    wideTile(depth, base, offsets, UnsafeRawPointer(buffers.pixelOffsets), b, c, k,
                                             height, width, accumulate)
                                }
                            } else {
                                narrowTile(depth, base, offsets, UnsafeRawPointer(buffers.pixelOffsets), b, c, k,
                                           height, width, accumulate)
                            }
                        }
                    }
                }
            }
        }

        /// dw = the filter gradient over all images: groups in the fixed order of
        /// `gemmBackwardFilter` (a small dW in `filterPartitions` partitions of the groups, one
        /// thread each, partials added in order; a large one group after group, every thread
        /// on the tiles).
        /// (`maxPartials`: the bound on partials, for tests of the group-after-group order;
        /// `blockBytes`: `panelBlockBytes`, for tests of blocks of panels.)
        static func run(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                        dw: UnsafeMutablePointer<Float>, threads: Int, maxPartials: Int = maxPartialFloats,
                        blockBytes: Int = panelBlockBytes) {
            let plan = Plan(g)
            let filter = g.o * g.patchSize
            // The groups' sum order is `gemmBackwardFilter`'s (`sumFilterGroups`). A group's
            // buffers cost a few microseconds to lay out (its K-row offsets), next to milliseconds of tiles.
            sumFilterGroups(plan.groups, filter: filter, dw: dw, threads: threads, maxPartials: maxPartials,
                            scratchFloats: plan.scratchFloats, gemm: (0, 0)) { group, target, accumulate, scratch, threads in
                accumulateGroup(plan, plan.images(group), x: x, dy: dy, dw: target, accumulate: accumulate,
                                buffers: Buffers(plan, scratch.floats), threads: threads, blockBytes: blockBytes)
            }
        }

        typealias Offsets = (Int, Int, Int, Int, Int, Int, Int, Int)

        /// One 8 × 32 tile (AVX-512): K rows at byte offsets `rows` from `base` plus the pixel's
        /// offset, 32 output channels from the packed panel `b` (32 floats per pixel); its
        /// transpose added to (or stored at) `c`, rows of C `ldc` apart.
        @inline(never)
        static func wideTile(_ depth: Int, _ base: UnsafeRawPointer, _ rows: Offsets, _ pixels: UnsafeRawPointer,
                             _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                             _ height: Int, _ width: Int, _ addToC: Bool) {
            typealias V = SIMD16<Float>
            var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
            var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
            let (s0, s1, s2, s3, s4, s5, s6, s7) = rows
            var pb = UnsafeRawPointer(b)
            var pp = pixels
            for _ in 0..<depth {
                let pa = base + Int(pp.load(as: Int32.self))
                let b0 = pb.loadUnaligned(as: V.self)
                let b1 = pb.loadUnaligned(fromByteOffset: 64, as: V.self)
                var a = V(repeating: pa.load(fromByteOffset: s0, as: Float.self)); c00.addProduct(a, b0); c01.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s1, as: Float.self)); c10.addProduct(a, b0); c11.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s2, as: Float.self)); c20.addProduct(a, b0); c21.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s3, as: Float.self)); c30.addProduct(a, b0); c31.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s4, as: Float.self)); c40.addProduct(a, b0); c41.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s5, as: Float.self)); c50.addProduct(a, b0); c51.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s6, as: Float.self)); c60.addProduct(a, b0); c61.addProduct(a, b1)
                a = V(repeating: pa.load(fromByteOffset: s7, as: Float.self)); c70.addProduct(a, b0); c71.addProduct(a, b1)
                pb += 32 * MemoryLayout<Float>.stride
                pp += 4
            }
            GEMM.MicroKernel.storeTile((c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71),
                                       c, ldc, height, width, addToC, true)
        }

        /// `wideTile` for at most 16 output channels (panels of 16 floats per pixel): each
        /// element gets the same multiply-adds in the same order.
        @inline(never)
        static func wideHalfTile(_ depth: Int, _ base: UnsafeRawPointer, _ rows: Offsets, _ pixels: UnsafeRawPointer,
                                 _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                                 _ height: Int, _ width: Int, _ addToC: Bool) {
            typealias V = SIMD16<Float>
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V(), c7 = V()
            let (s0, s1, s2, s3, s4, s5, s6, s7) = rows
            var pb = UnsafeRawPointer(b)
            var pp = pixels
            for _ in 0..<depth {
                let pa = base + Int(pp.load(as: Int32.self))
                let b0 = pb.loadUnaligned(as: V.self)
                c0.addProduct(V(repeating: pa.load(fromByteOffset: s0, as: Float.self)), b0)
                c1.addProduct(V(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                c2.addProduct(V(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                c3.addProduct(V(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                c4.addProduct(V(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                c5.addProduct(V(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                c6.addProduct(V(repeating: pa.load(fromByteOffset: s6, as: Float.self)), b0)
                c7.addProduct(V(repeating: pa.load(fromByteOffset: s7, as: Float.self)), b0)
                pb += 16 * MemoryLayout<Float>.stride
                pp += 4
            }
            let zero = V()
            GEMM.MicroKernel.storeTile((c0, zero, c1, zero, c2, zero, c3, zero, c4, zero, c5, zero, c6, zero, c7, zero),
                                       c, ldc, height, width, addToC, true)
        }

        /// One 6 × 16 tile (AVX2, NEON, fallback): `wideTile`'s shape for 16 vector registers;
        /// a row of 16 channels is one `SIMD16`, split by LLVM into the target's registers.
        @inline(never)
        static func narrowTile(_ depth: Int, _ base: UnsafeRawPointer, _ rows: Offsets, _ pixels: UnsafeRawPointer,
                               _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                               _ height: Int, _ width: Int, _ addToC: Bool) {
            typealias V = SIMD16<Float>
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
            let (s0, s1, s2, s3, s4, s5, _, _) = rows
            var pb = UnsafeRawPointer(b)
            var pp = pixels
            for _ in 0..<depth {
                let pa = base + Int(pp.load(as: Int32.self))
                let b0 = pb.loadUnaligned(as: V.self)
                multiplyAdd(&c0, V(repeating: pa.load(fromByteOffset: s0, as: Float.self)), b0)
                multiplyAdd(&c1, V(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                multiplyAdd(&c2, V(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                multiplyAdd(&c3, V(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                multiplyAdd(&c4, V(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                multiplyAdd(&c5, V(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                pb += 16 * MemoryLayout<Float>.stride
                pp += 4
            }
            GEMM.NarrowKernel.storeTile((c0, c1, c2, c3, c4, c5), c, ldc, height, width, addToC, true)
        }
    }
}
