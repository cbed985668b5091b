/// Direct stride-1 convolution vectorised over output width, for layers whose im2col matrix
/// is too small for GEMM to pay for its packing (LeNet-5: conv1 has a GEMM depth of 25).
///
/// Each image's source planes are copied once into a zero-bordered scratch whose rows are
/// long enough for whole `SIMD16` loads, so the inner loop has no bounds logic: a tile of
/// `rows × channels` output vectors (16 output columns each) accumulates every tap
/// `(ci, ky, kx)` as one shifted row load times one broadcast weight. The backward-data
/// pass is the same correlation of the zero-bordered dy with the flipped, transposed filter.
/// An image is computed wholly by one thread in a fixed tap order, so results do not depend
/// on the thread count.
enum DirectConv2D {
    /// Output columns (or channels) per segment: packing, scratch and tile layouts are in
    /// 16-float segments on every ISA.
    static let lanes = 16
    /// The vector the register tiles compute on: the ISA's own register (`ISA.Vector`). A
    /// segment is `tileParts` of them, and a tile runs once per part, so its accumulators fit
    /// the register file: on AVX2 the 16-float tiles had 20–32 ymm accumulators for 16
    /// registers and spilled (LeNet-5's conv2 backward-data: 795 µs a step against 466 µs on
    /// one AVX-512 thread).
    typealias TileVector = ISA.Vector
    /// Floats per tile vector, and tile vectors per 16-float segment.
    static var tileWidth: Int { TileVector.scalarCount }
    static var tileParts: Int { lanes / TileVector.scalarCount }

    /// One correlation `out[co, r, s] = Σ_{ci, ky, kx} padded(source)[ci, r + ky, s + kx] ·
    /// weight(co, ci, ky, kx)` over a batch, where `padded(source)` is the source shifted down
    /// by `top` rows and right by `left` columns inside a zero border.
    struct Problem {
        var n: Int
        /// Source planes per image and their size.
        var sourceChannels: Int, sourceHeight: Int, sourceWidth: Int
        /// Zero rows above / columns left of the source in the padded frame.
        var top: Int, left: Int
        /// Output planes per image and their size.
        var outChannels: Int, outHeight: Int, outWidth: Int
        var kh: Int, kw: Int
    }

    /// Register tile shapes: `rows × channels` accumulators of 16 floats (`tileParts` vectors).
    enum Tile: CaseIterable {
        /// 4 output rows × 3 output channels: suits few output channels (conv1: 6).
        case rows4channels3
        /// 2 output rows × 8 output channels: suits 8k output channels and few rows (conv2: 16).
        case rows2channels8
        /// 3 output rows × 4 output channels: 4k output channels where 16 accumulators are too
        /// many (AVX2's 16 ymm: 12 accumulators, 3 rows, 1 broadcast).
        case rows3channels4
        /// 8 output rows × 3 output channels (AVX-512's 32 zmm: 24 accumulators, 3 broadcasts,
        /// 1 row): each broadcast serves 8 rows, not 4 (a stem's backward data: 3 channels).
        case rows8channels3

        var rows: Int {
            switch self { case .rows4channels3: 4; case .rows2channels8: 2; case .rows3channels4: 3; case .rows8channels3: 8 }
        }
        var channels: Int {
            switch self { case .rows4channels3: 3; case .rows2channels8: 8; case .rows3channels4: 4; case .rows8channels3: 3 }
        }

        /// The tiles this ISA chooses from: 2 × 8 and 8 × 3 need 16 and 24 accumulators and 3 or
        /// 4 more registers, which only AVX-512's 32 leave room for.
        static let candidates: [Tile] = ISA.wideTile ? [.rows4channels3, .rows2channels8, .rows8channels3]
            : [.rows4channels3, .rows3channels4]
    }

    /// Whether the direct path should run this convolution: stride 1, padding smaller than
    /// the kernel (so the backward pass's border is non-negative), a GEMM depth small enough
    /// that im2col + GEMM would spend more on packing than on multiplying, and fewer than 32
    /// channels on one side or at most 32 on both. 32 channels against more go to the implicit
    /// GEMM (`ImplicitKernel.runs`).
    static func suits(_ g: Conv2DKernel.Geometry) -> Bool {
        g.strideH == 1 && g.strideW == 1 && g.padH < g.kh && g.padW < g.kw
            && g.patchSize <= 512 && (min(g.o, g.c) < 32 || max(g.o, g.c) <= 32) && !g.isPointwise
    }

    /// Whether a pass runs here: every pass of the layers `suits` takes, and the forward and
    /// backward-data passes of stride-1 layers with at most 8 channels on one side and a GEMM
    /// depth over 512 (a generator's last layer, 64 or more channels → 1 or 3). In im2col +
    /// GEMM those have 1–8 GEMM rows (forward) or a GEMM depth of 1–8 (backward data), and
    /// ran at 5–60 GFLOP/s (`kiln bench conv --shape`, AMD EPYC Zen 4, ms before → after,
    /// AVX2 / AVX-512, forward and backward data): 64 → 1 3×3 on 28×28, batch 64: 5.03 / 5.01
    /// → 1.45 / 1.31 and 4.17 / 3.69 → 0.88 / 0.85; 128 → 1 on 14×14: 3.13 / 3.37 → 0.74 /
    /// 0.92 and 2.83 / 3.22 → 0.46 / 0.72; 64 → 3 on 32×32, batch 128: 12.86 / 13.93 → 5.12 /
    /// 3.15 and 10.73 / 10.71 → 3.68 / 2.75; 512 → 1 on 16×16: 25.55 / 30.58 → 3.75 / 3.36;
    /// 128 → 8 on 14×14: 4.09 / 4.67 → 2.28 / 1.37. Their filter gradients run here only
    /// with at most 3 output channels and output rows of 16 or more (implicit GEMM → direct:
    /// 64 → 1 on 28×28: 4.62 / 4.59 → 4.49 / 2.14; 128 → 1 on 14×14: 2.48 / 2.59 → 2.08 / 1.48;
    /// 64 → 3 on 32×32: 12.13 / 12.33 → 11.99 / 6.87; 512 → 1: 11.91 / 11.83 → 11.11 / 6.35;
    /// but 64 → 3 on 64×64, batch 32: 12.28 / 11.70 → 13.60 / 7.23 on AVX2). With more output
    /// channels or narrower planes the implicit GEMM stays faster (128 → 8: 2.46 / 2.44 against
    /// 6.63 / 5.18; 256 → 4 on 8×8: 1.59 / 1.58 against 4.65 / 2.45).
    static func runs(_ g: Conv2DKernel.Geometry, _ pass: Conv2DKernel.Pass) -> Bool {
        if suits(g) { return true }
        guard g.strideH == 1 && g.strideW == 1 && g.padH < g.kh && g.padW < g.kw && min(g.o, g.c) <= 8 && !g.isPointwise else {
            return false
        }
        return pass != .backwardFilter || (g.o <= 3 && g.ow >= 16)
    }

    /// The correlation computing a convolution's forward pass: the input bordered by the padding.
    static func forwardProblem(_ g: Conv2DKernel.Geometry) -> Problem {
        Problem(n: g.n, sourceChannels: g.c, sourceHeight: g.h, sourceWidth: g.w, top: g.padH, left: g.padW,
                outChannels: g.o, outHeight: g.oh, outWidth: g.ow, kh: g.kh, kw: g.kw)
    }

    /// The correlation computing a convolution's backward-data pass: dy bordered by kh−1−padH
    /// rows and kw−1−padW columns, with the filter flipped in both axes and its channel axes
    /// swapped.
    static func backwardDataProblem(_ g: Conv2DKernel.Geometry) -> Problem {
        Problem(n: g.n, sourceChannels: g.o, sourceHeight: g.oh, sourceWidth: g.ow,
                top: g.kh - 1 - g.padH, left: g.kw - 1 - g.padW,
                outChannels: g.c, outHeight: g.h, outWidth: g.w, kh: g.kh, kw: g.kw)
    }

    /// The tile with the least padded work for `outChannels × outHeight`.
    static func tile(for p: Problem) -> Tile {
        func work(_ t: Tile) -> Int {
            (p.outChannels + t.channels - 1) / t.channels * t.channels
                * ((p.outHeight + t.rows - 1) / t.rows * t.rows)
        }
        // Least padded work; among equals, more accumulators (each broadcast and row load serves more).
        var best = Tile.candidates[0]
        for candidate in Tile.candidates.dropFirst()
        where (work(candidate), -candidate.rows * candidate.channels) < (work(best), -best.rows * best.channels) {
            best = candidate
        }
        return best
    }

    /// Image chunks of a correlation: one per thread when the batch is worth waking them for.
    static func correlateChunks(_ p: Problem, threads: Int) -> Int {
        let macs = p.n * p.outChannels * p.outHeight * p.outWidth * p.sourceChannels * p.kh * p.kw
        return macs >= 1 << 19 ? min(threads, p.n) : 1
    }

    /// The buffers `correlate` needs: the packed filter (shared) and, per image chunk, the
    /// zero-bordered source planes followed by the register tile's spill area.
    static func correlateBuffers(_ p: Problem, threads: Int) -> Buffers {
        let taps = p.sourceChannels * p.kh * p.kw
        let chunks = correlateChunks(p, threads: threads)
        if prefersChannelVectors(outChannels: p.outChannels, outWidth: p.outWidth) {
            let groups = (p.outChannels + lanes - 1) / lanes
            let (paddedPlane, _) = channelPadding(p)
            return Buffers(shared: groups * taps * lanes,
                           part: p.sourceChannels * paddedPlane + pixelRows * pixelColumns * lanes, parts: chunks)
        }
        let tile = tile(for: p)
        let groups = (p.outChannels + tile.channels - 1) / tile.channels
        let (paddedPlane, _) = columnPadding(p, tile)
        return Buffers(shared: groups * taps * tile.channels,
                       part: p.sourceChannels * paddedPlane + tile.rows * tile.channels * lanes, parts: chunks)
    }

    /// (plane, row) lengths of `correlate`'s bordered source: whole row groups of the tile and
    /// whole 16-column segments, plus the kernel's reach.
    static func columnPadding(_ p: Problem, _ tile: Tile) -> (plane: Int, width: Int) {
        let rowGroups = (p.outHeight + tile.rows - 1) / tile.rows
        let segments = (p.outWidth + lanes - 1) / lanes
        let width = segments * lanes + p.kw - 1
        return ((rowGroups * tile.rows + p.kh - 1) * width, width)
    }

    /// (plane, row) lengths of `correlateChannels`'s bordered source: whole pixel tiles plus
    /// the kernel's reach.
    static func channelPadding(_ p: Problem) -> (plane: Int, width: Int) {
        let rowGroups = (p.outHeight + pixelRows - 1) / pixelRows
        let columnGroups = (p.outWidth + pixelColumns - 1) / pixelColumns
        let width = columnGroups * pixelColumns + p.kw - 1
        return ((rowGroups * pixelRows + p.kh - 1) * width, width)
    }

    /// Runs the correlation on images split into fixed ranges; `weight(co, ci, ky, kx)` reads
    /// the filter tap (only at packing time). `buffers` come from `correlateBuffers` for this
    /// problem and thread count (made here when nil).
    static func correlate(_ p: Problem, source: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                          threads: Int, buffers: Buffers? = nil, weight: (Int, Int, Int, Int) -> Float) {
        let buffers = buffers ?? correlateBuffers(p, threads: threads)
        if prefersChannelVectors(outChannels: p.outChannels, outWidth: p.outWidth) {
            correlateChannels(p, source: source, out: out, threads: threads, buffers: buffers, weight: weight)
            return
        }
        let tile = tile(for: p)
        let groups = (p.outChannels + tile.channels - 1) / tile.channels
        let taps = p.sourceChannels * p.kh * p.kw
        let (paddedPlane, paddedWidth) = columnPadding(p, tile)
        let chunks = correlateChunks(p, threads: threads)
        buffers.check(shared: groups * taps * tile.channels,
                      part: p.sourceChannels * paddedPlane + tile.rows * tile.channels * lanes, parts: chunks)
        // Packed filter: [group][ci][ky][kx][channel in tile], zero past outChannels.
        let packed = buffers.shared
        var index = 0
        for group in 0..<groups {
            for ci in 0..<p.sourceChannels {
                for ky in 0..<p.kh {
                    for kx in 0..<p.kw {
                        for lane in 0..<tile.channels {
                            let co = group * tile.channels + lane
                            packed[index] = co < p.outChannels ? weight(co, ci, ky, kx) : 0
                            index += 1
                        }
                    }
                }
            }
        }

        let rowGroups = (p.outHeight + tile.rows - 1) / tile.rows
        let segments = (p.outWidth + lanes - 1) / lanes
        let sourceImage = p.sourceChannels * p.sourceHeight * p.sourceWidth
        let outPlane = p.outHeight * p.outWidth

        // Fixed image ranges. Each chunk's bordered source keeps its zero border from call to
        // call (only the interior is rewritten), so it is not cleared here.
        let parts = buffers.parts, partStride = buffers.partStride
        Parallel.forEach(chunks: chunks, threads: threads) { chunk in
            let padded = parts + chunk * partStride
            let scratch = padded + p.sourceChannels * paddedPlane
            for image in chunk * p.n / chunks..<(chunk + 1) * p.n / chunks {
                copyIntoBorder(p, source + image * sourceImage, padded, paddedPlane: paddedPlane, paddedWidth: paddedWidth)
                let dst = out + image * p.outChannels * outPlane
                for group in 0..<groups {
                    let w = packed + group * taps * tile.channels
                    let channels = min(tile.channels, p.outChannels - group * tile.channels)
                    for rowGroup in 0..<rowGroups {
                        let rows = min(tile.rows, p.outHeight - rowGroup * tile.rows)
                        for segment in 0..<segments {
                            let width = min(lanes, p.outWidth - segment * lanes)
                            // A whole tile is stored straight into the output; a ragged one (last
                            // channels, rows or columns) goes through the scratch and is copied.
                            let whole = channels == tile.channels && rows == tile.rows && width == lanes
                            let corner = dst + (group * tile.channels) * outPlane + rowGroup * tile.rows * p.outWidth
                                + segment * lanes
                            let (target, channelStride, rowStride) = whole
                                ? (corner, outPlane, p.outWidth) : (scratch, tile.rows * lanes, lanes)
                            for part in 0..<tileParts {
                                let x = padded + rowGroup * tile.rows * paddedWidth + segment * lanes + part * tileWidth
                                let o = target + part * tileWidth
                                switch tile {
                                case .rows4channels3:
                                    tile4x3(x, paddedWidth, paddedPlane, p.sourceChannels, p.kh, p.kw, w, o, channelStride, rowStride)
                                case .rows2channels8:
                                    tile2x8(x, paddedWidth, paddedPlane, p.sourceChannels, p.kh, p.kw, w, o, channelStride, rowStride)
                                case .rows3channels4:
                                    tile3x4(x, paddedWidth, paddedPlane, p.sourceChannels, p.kh, p.kw, w, o, channelStride, rowStride)
                                case .rows8channels3:
                                    tile8x3(x, paddedWidth, paddedPlane, p.sourceChannels, p.kh, p.kw, w, o, channelStride, rowStride)
                                }
                            }
                            if whole { continue }
                            for lane in 0..<channels {
                                for r in 0..<rows {
                                    let co = group * tile.channels + lane
                                    Conv2DKernel.copyFloats(
                                        dst + co * outPlane + (rowGroup * tile.rows + r) * p.outWidth + segment * lanes,
                                        scratch + (lane * tile.rows + r) * lanes, width)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Copies one source image into the interior of its zero-bordered buffer (the border is
    /// never written, so it stays zero from call to call).
    @inline(__always)
    static func copyIntoBorder(_ p: Problem, _ src: UnsafePointer<Float>, _ padded: UnsafeMutablePointer<Float>,
                               paddedPlane: Int, paddedWidth: Int) {
        for ci in 0..<p.sourceChannels {
            for row in 0..<p.sourceHeight {
                Conv2DKernel.copyFloats(padded + ci * paddedPlane + (p.top + row) * paddedWidth + p.left,
                                        src + (ci * p.sourceHeight + row) * p.sourceWidth, p.sourceWidth)
            }
        }
    }

    /// Whether vectors should run over 16 output channels rather than 16 output columns:
    /// when fewer lanes would be idle. LeNet-5's conv2 (16 channels, 10 columns) fills all
    /// lanes this way instead of 10 of 16.
    static func prefersChannelVectors(outChannels: Int, outWidth: Int) -> Bool {
        let channelSlots = (outChannels + lanes - 1) / lanes * lanes
        let columnSlots = (outWidth + lanes - 1) / lanes * lanes
        // outChannels / channelSlots > outWidth / columnSlots, without division.
        return outChannels * columnSlots > outWidth * channelSlots
    }

    /// Output pixels per `pixelTile`: rows × columns, each one vector of 16 output channels.
    static let pixelRows = 2, pixelColumns = 5

    /// `correlate` with vectors over output channels: a tile of 2 × 5 output pixels holds one
    /// `SIMD16` of channels per pixel and accumulates every tap as a weight vector times a
    /// broadcast source value. Same image split and tap order as `correlate`.
    static func correlateChannels(_ p: Problem, source: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                                  threads: Int, buffers: Buffers, weight: (Int, Int, Int, Int) -> Float) {
        let groups = (p.outChannels + lanes - 1) / lanes
        let taps = p.sourceChannels * p.kh * p.kw
        let (paddedPlane, paddedWidth) = channelPadding(p)
        let chunks = correlateChunks(p, threads: threads)
        buffers.check(shared: groups * taps * lanes,
                      part: p.sourceChannels * paddedPlane + pixelRows * pixelColumns * lanes, parts: chunks)
        // Packed filter: [group][ci][ky][kx][16 channels], zero past outChannels.
        let packed = buffers.shared
        var index = 0
        for group in 0..<groups {
            for ci in 0..<p.sourceChannels {
                for ky in 0..<p.kh {
                    for kx in 0..<p.kw {
                        for lane in 0..<lanes {
                            let co = group * lanes + lane
                            packed[index] = co < p.outChannels ? weight(co, ci, ky, kx) : 0
                            index += 1
                        }
                    }
                }
            }
        }

        let rowGroups = (p.outHeight + pixelRows - 1) / pixelRows
        let columnGroups = (p.outWidth + pixelColumns - 1) / pixelColumns
        let sourceImage = p.sourceChannels * p.sourceHeight * p.sourceWidth
        let outPlane = p.outHeight * p.outWidth

        let parts = buffers.parts, partStride = buffers.partStride
        Parallel.forEach(chunks: chunks, threads: threads) { chunk in
            let padded = parts + chunk * partStride
            let scratch = padded + p.sourceChannels * paddedPlane
            for image in chunk * p.n / chunks..<(chunk + 1) * p.n / chunks {
                copyIntoBorder(p, source + image * sourceImage, padded, paddedPlane: paddedPlane, paddedWidth: paddedWidth)
                let dst = out + image * p.outChannels * outPlane
                for group in 0..<groups {
                    let w = packed + group * taps * lanes
                    let channels = min(lanes, p.outChannels - group * lanes)
                    for rowGroup in 0..<rowGroups {
                        let rows = min(pixelRows, p.outHeight - rowGroup * pixelRows)
                        for columnGroup in 0..<columnGroups {
                            let columns = min(pixelColumns, p.outWidth - columnGroup * pixelColumns)
                            let corner = padded + rowGroup * pixelRows * paddedWidth + columnGroup * pixelColumns
                            if tileParts == 2 {
                                for r in 0..<pixelRows {
                                    pixelRowTile(corner + r * paddedWidth, paddedWidth, paddedPlane, p.sourceChannels,
                                                 p.kh, p.kw, w, scratch + r * pixelColumns * lanes)
                                }
                            } else {
                                for part in 0..<tileParts {
                                    pixelTile(corner, paddedWidth, paddedPlane, p.sourceChannels, p.kh, p.kw,
                                              w + part * tileWidth, scratch + part * tileWidth)
                                }
                            }
                            for r in 0..<rows {
                                for c in 0..<columns {
                                    let pixel = scratch + (r * pixelColumns + c) * lanes
                                    let target = dst + group * lanes * outPlane
                                        + (rowGroup * pixelRows + r) * p.outWidth + columnGroup * pixelColumns + c
                                    for lane in 0..<channels { target[lane * outPlane] = pixel[lane] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Accumulates 2 × 5 output pixels of 16 channels: `out[(r·5 + c)·16 + channel]`. `x`
    /// points at padded row 0, column 0 of the tile, source channel 0; `w` is packed
    /// `[ci][ky][kx][16]`. See `tile4x3`.
    @inline(never)
    static func pixelTile(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                          _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a04 = V()
        var a10 = V(), a11 = V(), a12 = V(), a13 = V(), a14 = V()
        var pw = UnsafeRawPointer(w)
        for ci in 0..<channels {
            for ky in 0..<kh {
                let r0 = x + ci * planeStride + ky * rowStride
                let r1 = r0 + rowStride
                for kx in 0..<kw {
                    let wv = pw.loadUnaligned(as: V.self)
                    a00.addProduct(wv, V(repeating: r0[kx])); a01.addProduct(wv, V(repeating: r0[kx + 1]))
                    a02.addProduct(wv, V(repeating: r0[kx + 2])); a03.addProduct(wv, V(repeating: r0[kx + 3]))
                    a04.addProduct(wv, V(repeating: r0[kx + 4]))
                    a10.addProduct(wv, V(repeating: r1[kx])); a11.addProduct(wv, V(repeating: r1[kx + 1]))
                    a12.addProduct(wv, V(repeating: r1[kx + 2])); a13.addProduct(wv, V(repeating: r1[kx + 3]))
                    a14.addProduct(wv, V(repeating: r1[kx + 4]))
                    pw += lanes * MemoryLayout<Float>.stride
                }
            }
        }
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: a00, toByteOffset: 0, as: V.self)
        o.storeBytes(of: a01, toByteOffset: 64, as: V.self)
        o.storeBytes(of: a02, toByteOffset: 128, as: V.self)
        o.storeBytes(of: a03, toByteOffset: 192, as: V.self)
        o.storeBytes(of: a04, toByteOffset: 256, as: V.self)
        o.storeBytes(of: a10, toByteOffset: 320, as: V.self)
        o.storeBytes(of: a11, toByteOffset: 384, as: V.self)
        o.storeBytes(of: a12, toByteOffset: 448, as: V.self)
        o.storeBytes(of: a13, toByteOffset: 512, as: V.self)
        o.storeBytes(of: a14, toByteOffset: 576, as: V.self)
    }

    /// `pixelTile` for one row of 5 pixels with all 16 channels in two vectors (AVX2's 8-float
    /// ymm): 10 accumulators, 2 weight vectors and 1 broadcast. Each broadcast source value
    /// feeds both halves of the channels, where `pixelTile` run once per half loaded it twice:
    /// one load per 2 multiply-adds instead of 1.1 (LeNet-5's conv2 on an AMD EPYC, Zen 1).
    /// Every accumulator gets `pixelTile`'s products in its order, so the bits are the same.
    @inline(never)
    static func pixelRowTile(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                             _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        typealias H = SIMD8<Float>
        var l0 = H(), l1 = H(), l2 = H(), l3 = H(), l4 = H()
        var h0 = H(), h1 = H(), h2 = H(), h3 = H(), h4 = H()
        var pw = UnsafeRawPointer(w)
        for ci in 0..<channels {
            for ky in 0..<kh {
                let r = x + ci * planeStride + ky * rowStride
                for kx in 0..<kw {
                    let wl = pw.loadUnaligned(as: H.self), wh = pw.loadUnaligned(fromByteOffset: 32, as: H.self)
                    var b = H(repeating: r[kx]); l0.addProduct(wl, b); h0.addProduct(wh, b)
                    b = H(repeating: r[kx + 1]); l1.addProduct(wl, b); h1.addProduct(wh, b)
                    b = H(repeating: r[kx + 2]); l2.addProduct(wl, b); h2.addProduct(wh, b)
                    b = H(repeating: r[kx + 3]); l3.addProduct(wl, b); h3.addProduct(wh, b)
                    b = H(repeating: r[kx + 4]); l4.addProduct(wl, b); h4.addProduct(wh, b)
                    pw += lanes * MemoryLayout<Float>.stride
                }
            }
        }
        let o = UnsafeMutableRawPointer(out)
        o.storeBytes(of: l0, toByteOffset: 0, as: H.self); o.storeBytes(of: h0, toByteOffset: 32, as: H.self)
        o.storeBytes(of: l1, toByteOffset: 64, as: H.self); o.storeBytes(of: h1, toByteOffset: 96, as: H.self)
        o.storeBytes(of: l2, toByteOffset: 128, as: H.self); o.storeBytes(of: h2, toByteOffset: 160, as: H.self)
        o.storeBytes(of: l3, toByteOffset: 192, as: H.self); o.storeBytes(of: h3, toByteOffset: 224, as: H.self)
        o.storeBytes(of: l4, toByteOffset: 256, as: H.self); o.storeBytes(of: h4, toByteOffset: 288, as: H.self)
    }

    /// Output channels × kernel columns accumulated together by `filterTile`.
    static let filterChannels = 3, filterColumns = 5

    /// dw = Σ over images and output pixels of dy · (the input window), for a stride-1
    /// geometry that `suits` accepts; overwrites dw.
    ///
    /// The batch is cut into `min(n, 8)` groups, a number that depends on the geometry only.
    /// Each group's images are bordered into a scratch (x) and copied into zero-padded 16-lane
    /// rows (dy); `filterTile` then sums, for one input channel, kernel row and block of
    /// 3 output channels × 5 kernel columns, the lane-wise products over the group's images,
    /// rows and column segments, and reduces the lanes at the end. Groups are added in group
    /// order, so the result is the same bits for any thread count.
    ///
    /// `buffers` come from `backwardFilterBuffers` for this geometry (made here when nil).
    static func backwardFilter(_ g: Conv2DKernel.Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                               dw: UnsafeMutablePointer<Float>, threads: Int, buffers: Buffers? = nil) {
        let buffers = buffers ?? backwardFilterBuffers(g)
        if prefersChannelVectors(outChannels: g.o, outWidth: g.ow) {
            backwardFilterChannels(g, x: x, dy: dy, dw: dw, threads: threads, buffers: buffers)
            return
        }
        let l = columnFilterLayout(g)
        let (paddedWidth, paddedPlane, paddedImage) = (l.paddedWidth, l.paddedPlane, l.paddedImage)
        let (segments, columnBlocks, channelBlocks) = (l.segments, l.columnBlocks, l.channelBlocks)
        let (dyRow, dyPlane, dyImage, maxImages) = (l.dyRow, l.dyPlane, l.dyImage, l.maxImages)
        buffers.check(shared: (imageGroups(g) - 1) * g.o * g.patchSize, part: l.part, parts: imageGroups(g))

        // Each group's bordered x and dy keep their zero borders and lanes from call to call
        // (only the same interiors are rewritten), so they are not cleared here.
        sumOverImageGroups(g, dw: dw, threads: threads, buffers: buffers) { target, first, end, part in
            let paddedX = part
            let paddedDy = paddedX + maxImages * paddedImage
            let sums = paddedDy + maxImages * dyImage
            for image in first..<end {
                let slot = image - first
                copyPadded(g, x, image: image, into: paddedX + slot * paddedImage, paddedPlane: paddedPlane,
                           paddedWidth: paddedWidth)
                for o in 0..<g.o {
                    for row in 0..<g.oh {
                        Conv2DKernel.copyFloats(paddedDy + slot * dyImage + o * dyPlane + row * dyRow,
                                                dy + ((image * g.o + o) * g.oh + row) * g.ow, g.ow)
                    }
                }
            }
            for ci in 0..<g.c {
                for ky in 0..<g.kh {
                    for block in 0..<channelBlocks {
                        for columnBlock in 0..<columnBlocks {
                            filterTile(paddedX + ci * paddedPlane + ky * paddedWidth + columnBlock * filterColumns,
                                       paddedWidth, paddedImage, paddedDy + block * filterChannels * dyPlane,
                                       dyPlane, dyImage, end - first, g.oh, segments, sums)
                            for lane in 0..<filterChannels {
                                let o = block * filterChannels + lane
                                guard o < g.o else { break }
                                for column in 0..<filterColumns {
                                    let kx = columnBlock * filterColumns + column
                                    guard kx < g.kw else { break }
                                    target[((o * g.c + ci) * g.kh + ky) * g.kw + kx] = sums[lane * filterColumns + column]
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Kernel rows accumulated together by `filterPixels` (with `filterColumns` columns).
    static let filterRows = 2

    /// `backwardFilter` with vectors over 16 output channels: dy is transposed to one vector
    /// per output pixel, and `filterPixels` sums, for one input channel and a block of
    /// 2 kernel rows × 5 kernel columns, dy(pixel) times the broadcast input each tap sees.
    /// Same image groups and group order as `backwardFilter`, so the same thread invariance.
    static func backwardFilterChannels(_ g: Conv2DKernel.Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                       dw: UnsafeMutablePointer<Float>, threads: Int, buffers: Buffers) {
        let l = channelFilterLayout(g)
        let (paddedWidth, paddedPlane, paddedImage) = (l.paddedWidth, l.paddedPlane, l.paddedImage)
        let (channelGroups, rowBlocks, columnBlocks) = (l.channelGroups, l.rowBlocks, l.columnBlocks)
        let (dyPlane, dyImage, maxImages) = (l.dyPlane, l.dyImage, l.maxImages)
        buffers.check(shared: (imageGroups(g) - 1) * g.o * g.patchSize, part: l.part, parts: imageGroups(g))
        let outPlane = g.outputPixels

        sumOverImageGroups(g, dw: dw, threads: threads, buffers: buffers) { target, first, end, part in
            let paddedX = part
            let transposedDy = paddedX + maxImages * paddedImage
            let sums = transposedDy + maxImages * dyImage
            for image in first..<end {
                let slot = image - first
                copyPadded(g, x, image: image, into: paddedX + slot * paddedImage, paddedPlane: paddedPlane,
                           paddedWidth: paddedWidth)
                for o in 0..<g.o {
                    let from = dy + (image * g.o + o) * outPlane
                    let to = transposedDy + slot * dyImage + o / lanes * dyPlane + o % lanes
                    for pixel in 0..<outPlane { to[pixel * lanes] = from[pixel] }
                }
            }
            for channelGroup in 0..<channelGroups {
                let channels = min(lanes, g.o - channelGroup * lanes)
                for ci in 0..<g.c {
                    for rowBlock in 0..<rowBlocks {
                        for columnBlock in 0..<columnBlocks {
                            for part in 0..<tileParts {
                                filterPixels(paddedX + ci * paddedPlane + rowBlock * filterRows * paddedWidth
                                                + columnBlock * filterColumns,
                                             paddedWidth, paddedImage, transposedDy + channelGroup * dyPlane + part * tileWidth,
                                             dyImage, end - first, g.oh, g.ow, sums + part * tileWidth)
                            }
                            for r in 0..<filterRows {
                                let ky = rowBlock * filterRows + r
                                guard ky < g.kh else { break }
                                for column in 0..<filterColumns {
                                    let kx = columnBlock * filterColumns + column
                                    guard kx < g.kw else { break }
                                    let tap = sums + (r * filterColumns + column) * lanes
                                    for lane in 0..<channels {
                                        let o = channelGroup * lanes + lane
                                        target[((o * g.c + ci) * g.kh + ky) * g.kw + kx] = tap[lane]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// sums[(r·5 + kx)·16 + channel] = Σ_{image, row, column} dy[row][column][channel] ·
    /// x[row + r][column + kx] for 2 kernel rows and 5 kernel columns. `x` and `dy` advance
    /// by `xImage` / `dyImage` floats per image; dy holds one 16-channel vector per pixel.
    /// Small and `@inline(never)`, see `tile4x3`.
    @inline(never)
    static func filterPixels(_ x: UnsafePointer<Float>, _ xRow: Int, _ xImage: Int,
                             _ dy: UnsafePointer<Float>, _ dyImage: Int,
                             _ images: Int, _ rows: Int, _ columns: Int, _ sums: UnsafeMutablePointer<Float>) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a04 = V()
        var a10 = V(), a11 = V(), a12 = V(), a13 = V(), a14 = V()
        for image in 0..<images {
            var pd = UnsafeRawPointer(dy + image * dyImage)
            for row in 0..<rows {
                let r0 = x + image * xImage + row * xRow
                let r1 = r0 + xRow
                for column in 0..<columns {
                    let d = pd.loadUnaligned(as: V.self)
                    pd += lanes * MemoryLayout<Float>.stride
                    a00.addProduct(d, V(repeating: r0[column])); a01.addProduct(d, V(repeating: r0[column + 1]))
                    a02.addProduct(d, V(repeating: r0[column + 2])); a03.addProduct(d, V(repeating: r0[column + 3]))
                    a04.addProduct(d, V(repeating: r0[column + 4]))
                    a10.addProduct(d, V(repeating: r1[column])); a11.addProduct(d, V(repeating: r1[column + 1]))
                    a12.addProduct(d, V(repeating: r1[column + 2])); a13.addProduct(d, V(repeating: r1[column + 3]))
                    a14.addProduct(d, V(repeating: r1[column + 4]))
                }
            }
        }
        let o = UnsafeMutableRawPointer(sums)
        o.storeBytes(of: a00, toByteOffset: 0, as: V.self)
        o.storeBytes(of: a01, toByteOffset: 64, as: V.self)
        o.storeBytes(of: a02, toByteOffset: 128, as: V.self)
        o.storeBytes(of: a03, toByteOffset: 192, as: V.self)
        o.storeBytes(of: a04, toByteOffset: 256, as: V.self)
        o.storeBytes(of: a10, toByteOffset: 320, as: V.self)
        o.storeBytes(of: a11, toByteOffset: 384, as: V.self)
        o.storeBytes(of: a12, toByteOffset: 448, as: V.self)
        o.storeBytes(of: a13, toByteOffset: 512, as: V.self)
        o.storeBytes(of: a14, toByteOffset: 576, as: V.self)
    }

    /// sums[ch·5 + kx] = Σ_{image, row, segment, lane} dy[ch][row][segment·16 + lane] ·
    /// x[row][segment·16 + lane + kx] for 3 dy channels and 5 shifts of one x plane.
    /// `x` and `dy` advance by `xImage` / `dyImage` floats per image; dy rows are 16·segments
    /// long with zero lanes past the output width. Small and `@inline(never)`, see `tile4x3`.
    @inline(never)
    static func filterTile(_ x: UnsafePointer<Float>, _ xRow: Int, _ xImage: Int,
                           _ dy: UnsafePointer<Float>, _ dyPlane: Int, _ dyImage: Int,
                           _ images: Int, _ rows: Int, _ segments: Int, _ sums: UnsafeMutablePointer<Float>) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a04 = V()
        var a10 = V(), a11 = V(), a12 = V(), a13 = V(), a14 = V()
        var a20 = V(), a21 = V(), a22 = V(), a23 = V(), a24 = V()
        let parts = tileParts, width = tileWidth
        let f = MemoryLayout<Float>.stride
        // Rows innermost: with one segment (conv2) a segment-inner loop ran once per row and
        // LLVM spilled the accumulators around it.
        for image in 0..<images {
            for segment in 0..<segments {
                let px = UnsafeRawPointer(x + image * xImage + segment * lanes)
                let pd = UnsafeRawPointer(dy + image * dyImage + segment * lanes)
                for row in 0..<rows {
                  for part in 0..<parts {
                    // A segment's parts go into the same accumulators, one after the other.
                    let s = (row * xRow + part * width) * f
                    let pd = pd + (row * segments * lanes + part * width) * f
                    let d0 = pd.loadUnaligned(as: V.self)
                    let d1 = pd.loadUnaligned(fromByteOffset: dyPlane * f, as: V.self)
                    let d2 = pd.loadUnaligned(fromByteOffset: 2 * dyPlane * f, as: V.self)
                    var v = px.loadUnaligned(fromByteOffset: s, as: V.self)
                    a00.addProduct(d0, v); a10.addProduct(d1, v); a20.addProduct(d2, v)
                    v = px.loadUnaligned(fromByteOffset: s + f, as: V.self)
                    a01.addProduct(d0, v); a11.addProduct(d1, v); a21.addProduct(d2, v)
                    v = px.loadUnaligned(fromByteOffset: s + 2 * f, as: V.self)
                    a02.addProduct(d0, v); a12.addProduct(d1, v); a22.addProduct(d2, v)
                    v = px.loadUnaligned(fromByteOffset: s + 3 * f, as: V.self)
                    a03.addProduct(d0, v); a13.addProduct(d1, v); a23.addProduct(d2, v)
                    v = px.loadUnaligned(fromByteOffset: s + 4 * f, as: V.self)
                    a04.addProduct(d0, v); a14.addProduct(d1, v); a24.addProduct(d2, v)
                  }
                }
            }
        }
        sums[0] = a00.sum(); sums[1] = a01.sum(); sums[2] = a02.sum(); sums[3] = a03.sum(); sums[4] = a04.sum()
        sums[5] = a10.sum(); sums[6] = a11.sum(); sums[7] = a12.sum(); sums[8] = a13.sum(); sums[9] = a14.sum()
        sums[10] = a20.sum(); sums[11] = a21.sum(); sums[12] = a22.sum(); sums[13] = a23.sum(); sums[14] = a24.sum()
    }

    /// Stores tile accumulator `a` of channel `c`, row `r` at `out + c·cs + r·rs`.
    @inline(__always)
    static func put(_ a: TileVector, _ out: UnsafeMutablePointer<Float>, _ c: Int, _ r: Int, _ cs: Int, _ rs: Int) {
        UnsafeMutableRawPointer(out + c * cs + r * rs).storeBytes(of: a, as: TileVector.self)
    }

    /// Accumulates a 4-row × 3-channel tile of 16 columns into `out[ch·outChannelStride +
    /// r·outRowStride ..< +16]` (the output itself, or a scratch of `[ch][r][16]`).
    /// `x` points at padded row `r = 0`, column 0 of the tile, channel 0; `w` is packed
    /// `[ci][ky][kx][3]`. Small and `@inline(never)` so the accumulators stay in registers
    /// (DESIGN.md, Build flags).
    @inline(never)
    static func tile4x3(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                        _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ outChannelStride: Int, _ outRowStride: Int) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a03 = V()
        var a10 = V(), a11 = V(), a12 = V(), a13 = V()
        var a20 = V(), a21 = V(), a22 = V(), a23 = V()
        var pw = w
        let step = rowStride * MemoryLayout<Float>.stride
        for ci in 0..<channels {
            for ky in 0..<kh {
                let row = UnsafeRawPointer(x + ci * planeStride + ky * rowStride)
                for kx in 0..<kw {
                    // Three broadcasts, then one row at a time: 12 accumulators + 3 weights + 1 row
                    // fill AVX2's 16 ymm exactly. Four rows held at once (17 registers) spilled an
                    // accumulator every tap (LeNet-5's conv1 on an AMD EPYC, Zen 1).
                    let p = row + kx * MemoryLayout<Float>.stride
                    let b0 = V(repeating: pw[0]), b1 = V(repeating: pw[1]), b2 = V(repeating: pw[2])
                    let x0 = p.loadUnaligned(as: V.self)
                    a00.addProduct(x0, b0); a10.addProduct(x0, b1); a20.addProduct(x0, b2)
                    let x1 = p.loadUnaligned(fromByteOffset: step, as: V.self)
                    a01.addProduct(x1, b0); a11.addProduct(x1, b1); a21.addProduct(x1, b2)
                    let x2 = p.loadUnaligned(fromByteOffset: 2 * step, as: V.self)
                    a02.addProduct(x2, b0); a12.addProduct(x2, b1); a22.addProduct(x2, b2)
                    let x3 = p.loadUnaligned(fromByteOffset: 3 * step, as: V.self)
                    a03.addProduct(x3, b0); a13.addProduct(x3, b1); a23.addProduct(x3, b2)
                    pw += 3
                }
            }
        }
        let cs = outChannelStride, rs = outRowStride
        put(a00, out, 0, 0, cs, rs); put(a01, out, 0, 1, cs, rs); put(a02, out, 0, 2, cs, rs); put(a03, out, 0, 3, cs, rs)
        put(a10, out, 1, 0, cs, rs); put(a11, out, 1, 1, cs, rs); put(a12, out, 1, 2, cs, rs); put(a13, out, 1, 3, cs, rs)
        put(a20, out, 2, 0, cs, rs); put(a21, out, 2, 1, cs, rs); put(a22, out, 2, 2, cs, rs); put(a23, out, 2, 3, cs, rs)
    }

    /// Accumulates a 2-row × 8-channel tile of 16 columns, stored as `tile4x3`'s; `w` is
    /// packed `[ci][ky][kx][8]`. See `tile4x3`.
    @inline(never)
    static func tile2x8(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                        _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ outChannelStride: Int, _ outRowStride: Int) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a10 = V(), a11 = V(), a20 = V(), a21 = V(), a30 = V(), a31 = V()
        var a40 = V(), a41 = V(), a50 = V(), a51 = V(), a60 = V(), a61 = V(), a70 = V(), a71 = V()
        var pw = w
        let step = rowStride * MemoryLayout<Float>.stride
        for ci in 0..<channels {
            for ky in 0..<kh {
                let row = UnsafeRawPointer(x + ci * planeStride + ky * rowStride)
                for kx in 0..<kw {
                    let p = row + kx * MemoryLayout<Float>.stride
                    let x0 = p.loadUnaligned(as: V.self)
                    let x1 = p.loadUnaligned(fromByteOffset: step, as: V.self)
                    var b = V(repeating: pw[0]); a00.addProduct(x0, b); a01.addProduct(x1, b)
                    b = V(repeating: pw[1]); a10.addProduct(x0, b); a11.addProduct(x1, b)
                    b = V(repeating: pw[2]); a20.addProduct(x0, b); a21.addProduct(x1, b)
                    b = V(repeating: pw[3]); a30.addProduct(x0, b); a31.addProduct(x1, b)
                    b = V(repeating: pw[4]); a40.addProduct(x0, b); a41.addProduct(x1, b)
                    b = V(repeating: pw[5]); a50.addProduct(x0, b); a51.addProduct(x1, b)
                    b = V(repeating: pw[6]); a60.addProduct(x0, b); a61.addProduct(x1, b)
                    b = V(repeating: pw[7]); a70.addProduct(x0, b); a71.addProduct(x1, b)
                    pw += 8
                }
            }
        }
        let cs = outChannelStride, rs = outRowStride
        put(a00, out, 0, 0, cs, rs); put(a01, out, 0, 1, cs, rs); put(a10, out, 1, 0, cs, rs); put(a11, out, 1, 1, cs, rs)
        put(a20, out, 2, 0, cs, rs); put(a21, out, 2, 1, cs, rs); put(a30, out, 3, 0, cs, rs); put(a31, out, 3, 1, cs, rs)
        put(a40, out, 4, 0, cs, rs); put(a41, out, 4, 1, cs, rs); put(a50, out, 5, 0, cs, rs); put(a51, out, 5, 1, cs, rs)
        put(a60, out, 6, 0, cs, rs); put(a61, out, 6, 1, cs, rs); put(a70, out, 7, 0, cs, rs); put(a71, out, 7, 1, cs, rs)
    }

    /// Accumulates a 3-row × 4-channel tile of 16 columns, stored as `tile4x3`'s; `w` is
    /// packed `[ci][ky][kx][4]`. See `tile4x3`.
    @inline(never)
    static func tile3x4(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                        _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ outChannelStride: Int, _ outRowStride: Int) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a10 = V(), a11 = V(), a12 = V()
        var a20 = V(), a21 = V(), a22 = V(), a30 = V(), a31 = V(), a32 = V()
        var pw = w
        let step = rowStride * MemoryLayout<Float>.stride
        for ci in 0..<channels {
            for ky in 0..<kh {
                let row = UnsafeRawPointer(x + ci * planeStride + ky * rowStride)
                for kx in 0..<kw {
                    let p = row + kx * MemoryLayout<Float>.stride
                    let x0 = p.loadUnaligned(as: V.self)
                    let x1 = p.loadUnaligned(fromByteOffset: step, as: V.self)
                    let x2 = p.loadUnaligned(fromByteOffset: 2 * step, as: V.self)
                    var b = V(repeating: pw[0]); a00.addProduct(x0, b); a01.addProduct(x1, b); a02.addProduct(x2, b)
                    b = V(repeating: pw[1]); a10.addProduct(x0, b); a11.addProduct(x1, b); a12.addProduct(x2, b)
                    b = V(repeating: pw[2]); a20.addProduct(x0, b); a21.addProduct(x1, b); a22.addProduct(x2, b)
                    b = V(repeating: pw[3]); a30.addProduct(x0, b); a31.addProduct(x1, b); a32.addProduct(x2, b)
                    pw += 4
                }
            }
        }
        let cs = outChannelStride, rs = outRowStride
        put(a00, out, 0, 0, cs, rs); put(a01, out, 0, 1, cs, rs); put(a02, out, 0, 2, cs, rs); put(a10, out, 1, 0, cs, rs)
        put(a11, out, 1, 1, cs, rs); put(a12, out, 1, 2, cs, rs); put(a20, out, 2, 0, cs, rs); put(a21, out, 2, 1, cs, rs)
        put(a22, out, 2, 2, cs, rs); put(a30, out, 3, 0, cs, rs); put(a31, out, 3, 1, cs, rs); put(a32, out, 3, 2, cs, rs)
    }

    /// Accumulates an 8-row × 3-channel tile of 16 columns, stored as `tile4x3`'s; `w` is
    /// packed `[ci][ky][kx][3]`. See `tile4x3`.
    @inline(never)
    static func tile8x3(_ x: UnsafePointer<Float>, _ rowStride: Int, _ planeStride: Int, _ channels: Int,
                        _ kh: Int, _ kw: Int, _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                        _ outChannelStride: Int, _ outRowStride: Int) {
        typealias V = TileVector
        var a00 = V(), a01 = V(), a02 = V(), a03 = V(), a04 = V(), a05 = V(), a06 = V(), a07 = V()
        var a10 = V(), a11 = V(), a12 = V(), a13 = V(), a14 = V(), a15 = V(), a16 = V(), a17 = V()
        var a20 = V(), a21 = V(), a22 = V(), a23 = V(), a24 = V(), a25 = V(), a26 = V(), a27 = V()
        var pw = w
        let step = rowStride * MemoryLayout<Float>.stride
        for ci in 0..<channels {
            for ky in 0..<kh {
                let row = UnsafeRawPointer(x + ci * planeStride + ky * rowStride)
                for kx in 0..<kw {
                    let p = row + kx * MemoryLayout<Float>.stride
                    let b0 = V(repeating: pw[0]), b1 = V(repeating: pw[1]), b2 = V(repeating: pw[2])
                    @inline(__always) func rowProducts(_ r: Int, _ c0: inout V, _ c1: inout V, _ c2: inout V) {
                        let xr = p.loadUnaligned(fromByteOffset: r * step, as: V.self)
                        c0.addProduct(xr, b0); c1.addProduct(xr, b1); c2.addProduct(xr, b2)
                    }
                    rowProducts(0, &a00, &a10, &a20); rowProducts(1, &a01, &a11, &a21)
                    rowProducts(2, &a02, &a12, &a22); rowProducts(3, &a03, &a13, &a23)
                    rowProducts(4, &a04, &a14, &a24); rowProducts(5, &a05, &a15, &a25)
                    rowProducts(6, &a06, &a16, &a26); rowProducts(7, &a07, &a17, &a27)
                    pw += 3
                }
            }
        }
        let cs = outChannelStride, rs = outRowStride
        put(a00, out, 0, 0, cs, rs); put(a01, out, 0, 1, cs, rs); put(a02, out, 0, 2, cs, rs); put(a03, out, 0, 3, cs, rs)
        put(a04, out, 0, 4, cs, rs); put(a05, out, 0, 5, cs, rs); put(a06, out, 0, 6, cs, rs); put(a07, out, 0, 7, cs, rs)
        put(a10, out, 1, 0, cs, rs); put(a11, out, 1, 1, cs, rs); put(a12, out, 1, 2, cs, rs); put(a13, out, 1, 3, cs, rs)
        put(a14, out, 1, 4, cs, rs); put(a15, out, 1, 5, cs, rs); put(a16, out, 1, 6, cs, rs); put(a17, out, 1, 7, cs, rs)
        put(a20, out, 2, 0, cs, rs); put(a21, out, 2, 1, cs, rs); put(a22, out, 2, 2, cs, rs); put(a23, out, 2, 3, cs, rs)
        put(a24, out, 2, 4, cs, rs); put(a25, out, 2, 5, cs, rs); put(a26, out, 2, 6, cs, rs); put(a27, out, 2, 7, cs, rs)
    }

    /// The batch is cut into this many image groups: a number from the geometry only.
    static func imageGroups(_ g: Conv2DKernel.Geometry) -> Int { min(g.n, 8) }

    /// Runs `body(target, firstImage, endImage)` once per image group (in parallel when the
    /// work is worth it), each group writing its filter gradient into its own buffer (the first
    /// group straight into `dw`), then adds the groups into `dw` in group order: the same bits
    /// for any thread count.
    ///
    /// Group `i` also gets part `i` of `buffers` as its scratch; the shared region holds the
    /// partial gradients of groups 1...
    static func sumOverImageGroups(_ g: Conv2DKernel.Geometry, dw: UnsafeMutablePointer<Float>, threads: Int,
                                   buffers: Buffers,
                                   _ body: (UnsafeMutablePointer<Float>, Int, Int, UnsafeMutablePointer<Float>) -> Void) {
        let groups = imageGroups(g)
        let filterSize = g.o * g.patchSize
        let partials = buffers.shared
        let parts = buffers.parts, partStride = buffers.partStride
        let macs = g.n * g.o * g.outputPixels * g.patchSize
        let workers = macs >= 1 << 19 ? threads : 1
        Parallel.forEach(chunks: groups, threads: workers) { group in
            body(group == 0 ? dw : partials + (group - 1) * filterSize, group * g.n / groups, (group + 1) * g.n / groups,
                 parts + group * partStride)
        }
        for group in 1..<groups {
            let partial = partials + (group - 1) * filterSize
            for i in 0..<filterSize { dw[i] += partial[i] }
        }
    }

    /// Sizes of `backwardFilter`'s per-group scratch (column vectors).
    struct ColumnFilterLayout {
        var segments: Int, columnBlocks: Int, channelBlocks: Int
        var paddedWidth: Int, paddedPlane: Int, paddedImage: Int
        var dyRow: Int, dyPlane: Int, dyImage: Int, maxImages: Int
        /// Floats of one group's part: bordered x, then 16-lane dy rows, then the tile sums.
        var part: Int { maxImages * (paddedImage + dyImage) + filterChannels * filterColumns }
    }

    static func columnFilterLayout(_ g: Conv2DKernel.Geometry) -> ColumnFilterLayout {
        let segments = (g.ow + lanes - 1) / lanes
        let columnBlocks = (g.kw + filterColumns - 1) / filterColumns
        let channelBlocks = (g.o + filterChannels - 1) / filterChannels
        let paddedWidth = segments * lanes + columnBlocks * filterColumns - 1
        let paddedPlane = (g.oh + g.kh - 1) * paddedWidth
        let dyRow = segments * lanes
        let dyPlane = g.oh * dyRow
        let groups = imageGroups(g)
        return ColumnFilterLayout(segments: segments, columnBlocks: columnBlocks, channelBlocks: channelBlocks,
                                  paddedWidth: paddedWidth, paddedPlane: paddedPlane, paddedImage: g.c * paddedPlane,
                                  dyRow: dyRow, dyPlane: dyPlane, dyImage: channelBlocks * filterChannels * dyPlane,
                                  maxImages: (g.n + groups - 1) / groups)
    }

    /// Sizes of `backwardFilterChannels`'s per-group scratch (channel vectors).
    struct ChannelFilterLayout {
        var channelGroups: Int, rowBlocks: Int, columnBlocks: Int
        var paddedWidth: Int, paddedPlane: Int, paddedImage: Int
        var dyPlane: Int, dyImage: Int, maxImages: Int
        /// Floats of one group's part: bordered x, then dy transposed to pixel vectors, then the tile sums.
        var part: Int { maxImages * (paddedImage + dyImage) + filterRows * filterColumns * lanes }
    }

    static func channelFilterLayout(_ g: Conv2DKernel.Geometry) -> ChannelFilterLayout {
        let channelGroups = (g.o + lanes - 1) / lanes
        let rowBlocks = (g.kh + filterRows - 1) / filterRows
        let columnBlocks = (g.kw + filterColumns - 1) / filterColumns
        // Taps past the kernel read zeros (or unused values) inside the buffer, never outside.
        let paddedWidth = g.ow + columnBlocks * filterColumns - 1
        let paddedPlane = (g.oh + rowBlocks * filterRows - 1) * paddedWidth
        let dyPlane = g.outputPixels * lanes
        let groups = imageGroups(g)
        return ChannelFilterLayout(channelGroups: channelGroups, rowBlocks: rowBlocks, columnBlocks: columnBlocks,
                                   paddedWidth: paddedWidth, paddedPlane: paddedPlane, paddedImage: g.c * paddedPlane,
                                   dyPlane: dyPlane, dyImage: channelGroups * dyPlane, maxImages: (g.n + groups - 1) / groups)
    }

    /// The buffers `backwardFilter` needs: the partial gradients of image groups 1... (shared)
    /// and one scratch part per image group. The same for any thread count.
    static func backwardFilterBuffers(_ g: Conv2DKernel.Geometry) -> Buffers {
        let groups = imageGroups(g)
        let part = prefersChannelVectors(outChannels: g.o, outWidth: g.ow)
            ? channelFilterLayout(g).part : columnFilterLayout(g).part
        return Buffers(shared: (groups - 1) * g.o * g.patchSize, part: part, parts: groups)
    }

    /// Scratch memory of one direct-convolution pass: a region every parallel part reads (the
    /// packed filter, or the partial filter gradients) and one region per part (an image chunk
    /// or group). Made once when a kernel is compiled, so running the pass allocates nothing.
    ///
    /// Zeroed once, here: the passes rewrite only the interiors of their bordered buffers, at
    /// the same places every call, so the zero borders survive from call to call. Not for
    /// concurrent calls.
    final class Buffers {
        let shared: UnsafeMutablePointer<Float>
        let parts: UnsafeMutablePointer<Float>
        /// Floats from one part to the next: whole cache lines, so parts on different threads
        /// never share one.
        let partStride: Int
        let sharedCount: Int, partCount: Int, partsCount: Int

        init(shared: Int, part: Int, parts: Int) {
            sharedCount = shared; partCount = part; partsCount = parts
            partStride = (part + 15) / 16 * 16
            self.shared = GEMM.allocateFloats(shared)
            self.shared.initialize(repeating: 0, count: max(1, shared))
            self.parts = GEMM.allocateFloats(parts * partStride)
            self.parts.initialize(repeating: 0, count: max(1, parts * partStride))
        }

        /// Stops a pass whose buffers were made for another problem or thread count.
        func check(shared: Int, part: Int, parts: Int) {
            precondition(shared <= sharedCount && part <= partCount && parts <= partsCount,
                         "DirectConv2D.Buffers: made for (\(sharedCount), \(partCount) × \(partsCount)) floats, "
                            + "pass needs (\(shared), \(part) × \(parts))")
        }

        deinit {
            shared.deallocate()
            parts.deallocate()
        }
    }

    /// Copies every channel of image `image` of `x` into a zero-bordered buffer whose planes are
    /// `paddedPlane` floats with rows of `paddedWidth`, offset by the geometry's padding.
    @inline(__always)
    static func copyPadded(_ g: Conv2DKernel.Geometry, _ x: UnsafePointer<Float>, image: Int,
                           into padded: UnsafeMutablePointer<Float>, paddedPlane: Int, paddedWidth: Int) {
        for ci in 0..<g.c {
            for row in 0..<g.h {
                Conv2DKernel.copyFloats(padded + ci * paddedPlane + (g.padH + row) * paddedWidth + g.padW,
                                        x + ((image * g.c + ci) * g.h + row) * g.w, g.w)
            }
        }
    }
}
