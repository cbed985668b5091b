import CPlatform

/// All three passes of ResNet's projection shortcuts: 1×1, stride-2, unpadded convolutions of
/// even planes (`suits`), as register-tiled products whose gather and scatter are fused into the
/// packing and the tile stores. The filter gradient is described at `FilterPlan`.
///
/// The forward and backward-data passes are `out[i, t] = Σ_k A[i, k] · B[k, t]` over the output pixels t of a group of
/// images (`Plan.groupImages`, 256 pixels; a function of the geometry only):
/// - forward: i = o, k = c, A = W, B[c, t] = x at (2·oy, 2·ox): the packing reads x's even
///   pixels of even rows (`gatherEven`), and each tile row's 16-pixel vectors are stored
///   straight into y (a vector never straddles two images: the plane holds a multiple of 16);
/// - backward data: i = c, k = o, A = Wᵀ, B = dy copied into panels; each tile row's vector is
///   *spread* into dx: its 16 values to the even pixels of the even rows it covers, zeros to
///   the pixels between and to the odd rows (`put`), 64 consecutive floats of dx when the row
///   holds 4 or 8 outputs, or 32 floats in two rows when it holds a multiple of 16. Every float
///   of dx is written once, in place of the GEMM path's product into scratch and `col2im`.
///
/// A is packed once per call in the GEMM's `rows × k` panels (`ISA.gemmRows`), B per group in
/// `k × columns` panels (`ISA.gemmColumns`); the tile is the ISA's GEMM tile (8 × 32 on AVX-512,
/// 6 × 16 otherwise). Each output element is one register's sum over k in k order, whoever
/// computes it: results never depend on the thread count or on how groups are split.
///
/// Why it is its own kernel (`kiln bench conv`, ResNet-18's shortcuts at batch 128, Xeon
/// family 6 model 207, 2 threads): on the GEMM path the separate gather (`im2col`) and scatter
/// (`col2im`) passes read and wrote memory while no multiply ran, about 40 % of each pass's
/// time; here the scatter is the tile's stores and the gather reads lines already in L2.
extension Conv2DKernel {
    enum ShortcutKernel {
        /// Bytes of a pass's data from which it is not expected to stay in the last-level cache:
        /// half that cache (`Platform.lastLevelCacheBytes`; unbounded where it is not known).
        /// From there the forward and backward data stream y and dx past the caches and the filter
        /// gradient prefetches the next group's x and dy (measured on an AMD EPYC family 25 model
        /// 17, 32 MB L3, where layer2's dx and x (33.5 MB), its y (16.8 MB) and layer3's x are past
        /// it; a Xeon with 320 MB, where neither had paid, never takes them).
        static let cacheResidentBytes = (Platform.lastLevelCacheBytes ?? Int.max) / 2

        /// Rows (output channels forward, input channels backward) and pixels of the tile.
        static let rows = ISA.gemmRows, columns = ISA.gemmColumns
        /// Pixels a group aims for: its packed B (k × 256 floats) stays in L2.
        static let targetGroupPixels = 256
        /// Pixels of a filter tile's run between two shares of the next group's prefetches.
        static let filterChunk = 32

        /// Whether a geometry is a shortcut this kernel runs: 1×1, stride 2, no padding, even
        /// input sides, and output rows of 4 or 8 pixels or a multiple of 16, in planes of a
        /// multiple of 16 pixels (ResNet-18's 16×16, 8×8 and 4×4 outputs).
        static func suits(_ g: Geometry) -> Bool {
            g.kh == 1 && g.kw == 1 && g.padH == 0 && g.padW == 0 && g.strideH == 2 && g.strideW == 2
                && g.h == 2 * g.oh && g.w == 2 * g.ow && (g.ow % 16 == 0 || g.ow == 8 || g.ow == 4)
                && g.outputPixels % 16 == 0
        }

        /// Images per group in every pass: enough for `targetGroupPixels` output pixels, at least 1.
        static func groupImages(_ g: Geometry) -> Int {
            max(1, min(g.n, (targetGroupPixels + g.outputPixels - 1) / g.outputPixels))
        }

        /// Whether a pass of a geometry runs here (every pass of the shapes it suits).
        static func runs(_ g: Geometry, _ pass: Pass) -> Bool { suits(g) }

        /// For tables: the product per group, m × pixels × k.
        static func algorithm(_ g: Geometry, _ pass: Pass) -> String {
            if pass == .backwardFilter {
                let plan = FilterPlan(g)
                return "fused 1x1 s2 b\(plan.groupImages) \(g.o)x\(g.c)x\(plan.groupImages * g.outputPixels)"
            }
            let plan = Plan(g, forward: pass == .forward)
            return "fused 1x1 s2 b\(plan.groupImages) \(plan.m)x\(plan.groupImages * g.outputPixels)x\(plan.k)"
        }

        /// How a pass is cut into groups and laid out in scratch.
        struct Plan {
            let g: Geometry
            let forward: Bool
            /// Rows of the product (output channels forward, input channels backward) and its depth.
            let m: Int, k: Int
            let groupImages: Int, groups: Int
            /// Whether the pass writes its output (y, or dx) with non-temporal stores (where it is
            /// 64-byte aligned): when the output is at least `residentBytes`, it would not be in
            /// cache when read next, and streaming it saves reading each line before it is written.
            /// Layer2's forward (y 16.8 MB, AMD EPYC family 25 model 17), 12 alternations: AVX2
            /// 3.12 → 2.94 ms, AVX-512 3.04 → 2.78; the ResNet-18 training step and inference did
            /// not move beyond the host's noise (5 and 3 alternations).
            let stream: Bool

            init(_ g: Geometry, forward: Bool, residentBytes: Int = cacheResidentBytes) {
                self.g = g
                self.forward = forward
                m = forward ? g.o : g.c
                k = forward ? g.c : g.o
                groupImages = ShortcutKernel.groupImages(g)
                groups = (g.n + groupImages - 1) / groupImages
                stream = (forward ? g.n * g.o * g.outputPixels : g.n * g.c * g.h * g.w) * MemoryLayout<Float>.stride >= residentBytes
            }

            var aPanels: Int { (m + rows - 1) / rows }
            var packedAFloats: Int { aPanels * rows * k }
            var packedBFloats: Int { (groupImages * g.outputPixels + columns - 1) / columns * columns * k }
            /// Floats of one image of the source (x forward, dy backward) and of the output.
            var sourceImage: Int { forward ? g.c * g.h * g.w : g.o * g.outputPixels }
            var outImage: Int { forward ? g.o * g.outputPixels : g.c * g.h * g.w }
            /// Floats between channels of the output (y's plane forward, dx's backward).
            var outChannel: Int { forward ? g.outputPixels : g.h * g.w }
            func images(_ group: Int) -> Range<Int> { group * groupImages..<min(g.n, (group + 1) * groupImages) }
        }

        /// Runs one pass: packs A, then the groups on `threads` (each thread a run of
        /// consecutive groups; with fewer groups than threads, groups × ranges of A panels).
        static func run(_ plan: Plan, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, threads: Int) {
            let shared = ConvScratch.shared.take(floats: plan.packedAFloats, gemm: (0, 0))
            defer { ConvScratch.shared.give(shared) }
            let packedA = shared.floats
            // Packing only: how it is split cannot change a result.
            Parallel.forEach(chunks: plan.aPanels, threads: threads) { packA(plan, weight: weight, panel: $0, into: packedA) }
            let parts = plan.groups >= threads ? 1 : min(plan.aPanels, (threads + plan.groups - 1) / plan.groups)
            let stream = plan.stream && Int(bitPattern: out) % 64 == 0
            let chunks = plan.groups * parts, lanes = max(1, min(threads, chunks))
            Parallel.forEach(chunks: lanes, threads: threads) { lane in
                let scratch = ConvScratch.shared.take(floats: plan.packedBFloats, gemm: (0, 0))
                defer { ConvScratch.shared.give(scratch) }
                let mine = lane * chunks / lanes..<(lane + 1) * chunks / lanes
                for chunk in mine {
                    let (group, part) = (chunk / parts, chunk % parts)
                    // The lane's next group, prefetched while this one runs.
                    let next = parts == 1 && chunk + 1 < mine.upperBound ? plan.images(group + 1) : nil
                    runGroup(plan, images: plan.images(group),
                             aPanels: part * plan.aPanels / parts..<(part + 1) * plan.aPanels / parts, prefetch: next,
                             source: source, packedA: packedA, packedB: scratch.floats, out: out, stream: stream)
                }
                if stream { kiln_store_fence() }
            }
        }

        /// A's panel `panel`: `k × rows` floats, row index fastest, rows past m zero.
        static func packA(_ plan: Plan, weight: UnsafePointer<Float>, panel: Int, into packed: UnsafeMutablePointer<Float>) {
            let c = plan.g.c, first = panel * rows, valid = min(rows, plan.m - first)
            let target = packed + panel * rows * plan.k
            for kk in 0..<plan.k {
                let row = target + kk * rows
                for r in 0..<rows {
                    // Forward A[o, c] = W[o, c]; backward A[c, o] = W[o, c].
                    row[r] = r >= valid ? 0 : plan.forward ? weight[(first + r) * c + kk] : weight[kk * c + first + r]
                }
            }
        }

        /// x's even pixels of even rows from `s` (x at (2·oy, 2·ox) of the vector's first pixel)
        /// for 16 consecutive output pixels of a plane with input rows `w` floats wide: one row
        /// (w ≥ 32), two (w = 16) or four (w = 8). Reads only inside those rows.
        @inline(__always)
        static func gatherEven(_ s: UnsafePointer<Float>, w: Int) -> SIMD16<Float> {
            let raw = UnsafeRawPointer(s)
            if w >= 32 {
                let a = raw.loadUnaligned(as: SIMD16<Float>.self), b = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self)
                return SIMD16(lowHalf: a.evenHalf, highHalf: b.evenHalf)
            }
            if w == 16 {
                let a = raw.loadUnaligned(as: SIMD16<Float>.self), b = raw.loadUnaligned(fromByteOffset: 128, as: SIMD16<Float>.self)
                return SIMD16(lowHalf: a.evenHalf, highHalf: b.evenHalf)
            }
            let a = raw.loadUnaligned(as: SIMD8<Float>.self), b = raw.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
            let c = raw.loadUnaligned(fromByteOffset: 128, as: SIMD8<Float>.self)
            let d = raw.loadUnaligned(fromByteOffset: 192, as: SIMD8<Float>.self)
            return SIMD16(lowHalf: SIMD8(lowHalf: a.evenHalf, highHalf: b.evenHalf),
                          highHalf: SIMD8(lowHalf: c.evenHalf, highHalf: d.evenHalf))
        }

        /// Fills the group's B panels (`[panel][k][columns]`, 16-pixel vectors in pixel order,
        /// a ragged last panel's missing vector zero): x's even pixels forward, dy backward.
        static func packB(_ plan: Plan, source: UnsafePointer<Float>, images: Range<Int>, into packed: UnsafeMutablePointer<Float>) {
            let g = plan.g, k = plan.k, perImage = g.outputPixels / 16, perPanel = columns / 16
            let vectors = images.count * perImage
            if vectors % perPanel != 0 {
                let last = packed + vectors / perPanel * columns * k
                for kk in 0..<k {
                    for u in vectors % perPanel..<perPanel {
                        UnsafeMutableRawPointer(last + kk * columns + u * 16).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
                    }
                }
            }
            let (ow, w) = (g.ow, g.w)
            for (slot, image) in images.enumerated() {
                for kk in 0..<k {
                    let plane = source + image * plan.sourceImage + kk * (plan.forward ? g.h * w : g.outputPixels)
                    for v in 0..<perImage {
                        let u = slot * perImage + v
                        let q = v * 16
                        let value = plan.forward ? gatherEven(plane + 2 * (q / ow) * w + 2 * (q % ow), w: w)
                            : UnsafeRawPointer(plane + q).loadUnaligned(as: SIMD16<Float>.self)
                        UnsafeMutableRawPointer(packed + u / perPanel * columns * k + kk * columns + u % perPanel * 16)
                            .storeBytes(of: value, as: SIMD16<Float>.self)
                    }
                }
            }
        }

        /// Where a tile's vectors go: row r's first (second) vector at `c0 + r·ldc` (`c1 + r·ldc`),
        /// stored as they are (`spreadWidth` 0) or spread into dx rows `spreadWidth` floats wide.
        struct Out {
            let c0: UnsafeMutablePointer<Float>, c1: UnsafeMutablePointer<Float>
            let ldc: Int, rows: Int, vectors: Int, spreadWidth: Int
            /// Whether the vectors go past the caches (`put`).
            let stream: Bool
        }

        /// Stores one 16-pixel vector (one whole line of y) at `q`, or (`w` > 0) spreads it into dx
        /// at `q` (dx at (2·oy, 2·ox) of its first pixel, rows `w` floats wide), zeros between and
        /// below: four whole 64-byte lines where dx is 64-byte aligned. So `stream` (non-temporal
        /// stores) writes lines without reading them first.
        @inline(__always)
        static func put(_ v: SIMD16<Float>, _ q: UnsafeMutablePointer<Float>, _ w: Int, stream: Bool) {
            typealias V = SIMD16<Float>
            guard w > 0 else {
                // Forward: one whole line of y (its planes hold a multiple of 16 pixels).
                return stream ? kiln_stream16(q, v) : UnsafeMutableRawPointer(q).storeBytes(of: v, as: V.self)
            }
            var z0 = V(), z1 = V()
            z0.evenHalf = v.lowHalf
            z1.evenHalf = v.highHalf
            @inline(__always) func store(_ value: V, _ offset: Int) {
                if stream {
                    kiln_stream16(q + offset, value)
                } else {
                    UnsafeMutableRawPointer(q + offset).storeBytes(of: value, as: V.self)
                }
            }
            if w >= 32 {
                // 16 pixels of one output row: 32 floats of row 2·oy, zeros under them.
                store(z0, 0); store(z1, 16); store(V(), w); store(V(), w + 16)
            } else if w == 16 {
                // Two output rows of 8: rows 2·oy … 2·oy + 3 of dx, 64 consecutive floats.
                store(z0, 0); store(V(), 16); store(z1, 32); store(V(), 48)
            } else {
                // Four output rows of 4: rows 2·oy … 2·oy + 7 of dx, 8 floats each.
                let zero = SIMD8<Float>()
                store(V(lowHalf: z0.lowHalf, highHalf: zero), 0); store(V(lowHalf: z0.highHalf, highHalf: zero), 16)
                store(V(lowHalf: z1.lowHalf, highHalf: zero), 32); store(V(lowHalf: z1.highHalf, highHalf: zero), 48)
            }
        }

        /// Prefetches into L2 (into every level: `toL1`), a share after each of `tiles` tiles, the
        /// even rows of x that images `images` will be gathered from (none for no images):
        /// - forward, for rows of 32 floats or more: a page's lines two on, two off, which the
        ///   hardware prefetcher did not follow (layer2's forward pass 1.82 → 1.68 ms, Xeon). Where
        ///   whole lines are read (rows of 8 or 16 floats, dy) it did, and prefetching made no
        ///   difference or slowed the pass (layer2's backward data 1.77 → 1.90 ms);
        /// - filter gradient, when x is past the cache (`FilterPlan.prefetch`): the gathers wait on
        ///   memory otherwise (layer2 4.06–4.19 → 3.65–3.78 ms, layer3 3.77–3.85 → 3.23–3.43 ms on
        ///   AMD EPYC family 25 model 17, 32 MB L3; on the Xeon, whose L3 held x, it had cost 3 %).
        struct EvenRowPrefetcher {
            let base: UnsafePointer<Float>, lines: Int, perTile: Int, lineRows: Int, rowStep: Int, toL1: Bool
            var line = 0
            /// Where `line` is: the even row's start and the line within it (no division a line).
            var row: UnsafePointer<Float>, column = 0

            init(_ g: Geometry, x: UnsafePointer<Float>, images: Range<Int>?, tiles: Int, toL1: Bool = false) {
                let lineRows = max(1, g.w / 16)
                self.lineRows = lineRows
                rowStep = 2 * g.w
                lines = (images?.count ?? 0) * g.c * g.oh * lineRows
                base = x + (images?.lowerBound ?? 0) * g.c * g.h * g.w
                row = base
                perTile = (lines + tiles - 1) / max(1, tiles)
                self.toL1 = toL1
            }

            @inline(__always)
            mutating func step() {
                let end = min(lines, line + perTile)
                while line < end {
                    ShortcutKernel.prefetch(row + column * 16, toL1: toL1)
                    line += 1
                    column += 1
                    if column == lineRows { column = 0; row += rowStep }
                }
            }
        }

        /// Prefetches into L2 (into every level: `toL1`), a share after each of `tiles` tiles, the
        /// 64-byte lines of `floats` consecutive floats from `base` (none for 0).
        struct LinePrefetcher {
            let base: UnsafePointer<Float>, lines: Int, perTile: Int, toL1: Bool
            var line = 0

            init(_ base: UnsafePointer<Float>, floats: Int, tiles: Int, toL1: Bool = false) {
                self.base = base
                lines = (floats + 15) / 16
                perTile = (lines + tiles - 1) / max(1, tiles)
                self.toL1 = toL1
            }

            @inline(__always)
            mutating func step() {
                let end = min(lines, line + perTile)
                while line < end {
                    ShortcutKernel.prefetch(base + line * 16, toL1: toL1)
                    line += 1
                }
            }
        }

        /// One line's prefetch: into every level (`toL1`) or into L2 (see `FilterPlan.prefetch`).
        @inline(__always)
        static func prefetch(_ address: UnsafePointer<Float>, toL1: Bool) {
            if toL1 { kiln_prefetch_l1(address) } else { kiln_prefetch_l2(address) }
        }

        /// One group: packs B, then every (B panel, A panel) tile, B's panel staying in L1 across
        /// the A panels; between tiles, prefetches into L2 the lines of the source that the
        /// lane's next group (`prefetch`) will pack.
        static func runGroup(_ plan: Plan, images: Range<Int>, aPanels: Range<Int>, prefetch: Range<Int>?,
                             source: UnsafePointer<Float>, packedA: UnsafePointer<Float>,
                             packedB: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, stream: Bool) {
            let g = plan.g, k = plan.k, p = g.outputPixels, perPanel = columns / 16
            packB(plan, source: source, images: images, into: packedB)
            let vectors = images.count * p / 16, panels = (vectors + perPanel - 1) / perPanel
            var prefetcher = EvenRowPrefetcher(g, x: source, images: plan.forward && g.w >= 32 ? prefetch : nil,
                                               tiles: panels * aPanels.count)
            // Backward, past the cache (`stream`): the next group's dy, which `packB` copies.
            var dyPrefetcher = LinePrefetcher(source + (prefetch?.lowerBound ?? 0) * plan.sourceImage,
                                              floats: !plan.forward && plan.stream ? (prefetch?.count ?? 0) * plan.sourceImage : 0,
                                              tiles: panels * aPanels.count)
            /// Output address of the group's 16-pixel vector u, channel 0.
            func address(_ u: Int) -> UnsafeMutablePointer<Float> {
                let (slot, q) = (u * 16 / p, u * 16 % p)
                let image = out + (images.lowerBound + slot) * plan.outImage
                return plan.forward ? image + q : image + 2 * (q / g.ow) * g.w + 2 * (q % g.ow)
            }
            for panel in 0..<panels {
                let first = panel * perPanel, count = min(perPanel, vectors - first)
                let c0 = address(first), c1 = count > 1 ? address(first + 1) : c0
                let b = packedB + panel * columns * k
                for aPanel in aPanels {
                    let row = aPanel * rows
                    let target = Out(c0: c0 + row * plan.outChannel, c1: c1 + row * plan.outChannel, ldc: plan.outChannel,
                                     rows: min(rows, plan.m - row), vectors: count, spreadWidth: plan.forward ? 0 : g.w,
                                     stream: stream)
                    if ISA.wideTile {
                        wideTile(k, packedA + aPanel * rows * k, b, target)
                    } else {
                        narrowTile(k, packedA + aPanel * rows * k, b, target)
                    }
                    prefetcher.step()
                    dyPrefetcher.step()
                }
            }
        }

        /// The 8 × 32 tile (AVX-512): A panel `k × 8`, B panel `k × 32` (`GEMM.MicroKernel`'s
        /// product), stored through `out`. `@inline(never)` for the reason given at
        /// `GEMM.MicroKernel.run`.
        @inline(never)
        static func wideTile(_ k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: Out) {
            typealias V = SIMD16<Float>
            let t = GEMM.MicroKernel.product(k, a, b, 32)
            let (ldc, w, two) = (out.ldc, out.spreadWidth, out.vectors == 2)
            @inline(__always) func row(_ r: Int, _ low: V, _ high: V) {
                guard r < out.rows else { return }
                put(low, out.c0 + r * ldc, w, stream: out.stream)
                if two { put(high, out.c1 + r * ldc, w, stream: out.stream) }
            }
            row(0, t.0, t.1); row(1, t.2, t.3); row(2, t.4, t.5); row(3, t.6, t.7)
            row(4, t.8, t.9); row(5, t.10, t.11); row(6, t.12, t.13); row(7, t.14, t.15)
        }

        /// The 6 × 16 tile (AVX2, NEON, fallback): A panel `k × 6`, B panel `k × 16`
        /// (`GEMM.NarrowKernel`'s product).
        @inline(never)
        static func narrowTile(_ k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ out: Out) {
            typealias V = SIMD16<Float>
            let t = GEMM.NarrowKernel.product(k, a, b, 16)
            let (ldc, w) = (out.ldc, out.spreadWidth)
            @inline(__always) func row(_ r: Int, _ value: V) {
                if r < out.rows { put(value, out.c0 + r * ldc, w, stream: out.stream) }
            }
            row(0, t.0); row(1, t.1); row(2, t.2); row(3, t.3); row(4, t.4); row(5, t.5)
        }

        // MARK: Filter gradient

        /// The filter gradient `dW[o, c] = Σ_t dy[o, t] · xs[c, t]` over the batch's output pixels t
        /// (xs: x's even pixels of even rows), per group of images (`FilterPlan`, 256 pixels):
        /// the group's xs is gathered and transposed into panels of `columns` input channels
        /// (`[panel][t][columns]`, 16 × 16 blocks transposed in registers), the smaller operand
        /// (c = o / 2 in ResNet's shortcuts); dy is read in place, `rows` output channels'
        /// broadcasts a pixel. Each tile (rows o × columns c) runs over the group's pixels image
        /// by image and adds to dW (stores, for a partition's first group). Groups are summed in
        /// the fixed partitions of `sumFilterGroups`, so the bits never depend on the thread count.
        struct FilterPlan {
            let g: Geometry
            let groupImages: Int, groups: Int
            /// Whether each group prefetches the next group's x and dy: when x is at least
            /// `residentBytes`, both come from memory, and the gathers and the tiles wait on them.
            /// With `prefetcht0` (into L1 and L2), not `prefetcht1` (L2) as elsewhere: on AMD EPYC
            /// family 25 model 17 (Zen 4), where `prefetcht1` is at times dropped, 15 alternations
            /// of each gave layer2 3.77 → 3.25 ms (AVX2) and 3.49 → 3.09 (AVX-512), layer3
            /// 3.01 → 2.83 and 2.92 → 2.79. The other prefetching passes were no faster with it
            /// (the stem's backward passes slower: 2.31 → 2.76 ms, AVX-512), so they keep L2.
            let prefetch: Bool
            var pixels: Int { groupImages * g.outputPixels }
            var cPanels: Int { (g.c + columns - 1) / columns }
            var packedFloats: Int { cPanels * columns * pixels }

            init(_ g: Geometry, residentBytes: Int = cacheResidentBytes) {
                self.g = g
                groupImages = ShortcutKernel.groupImages(g)
                groups = (g.n + groupImages - 1) / groupImages
                prefetch = g.n * g.c * g.h * g.w * MemoryLayout<Float>.stride >= residentBytes
            }

            func images(_ group: Int) -> Range<Int> { group * groupImages..<min(g.n, (group + 1) * groupImages) }
        }

        /// dw = the filter gradient of a shortcut over the batch.
        static func backwardFilter(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                   dw: UnsafeMutablePointer<Float>, threads: Int, maxPartials: Int = maxPartialFloats,
                                   residentBytes: Int = cacheResidentBytes) {
            let plan = FilterPlan(g, residentBytes: residentBytes)
            sumFilterGroups(plan.groups, filter: g.o * g.c, dw: dw, threads: threads, maxPartials: maxPartials,
                            scratchFloats: plan.packedFloats, gemm: (0, 0)) { group, target, accumulate, scratch, _ in
                // Every thread count runs a group on one thread: the groups are small.
                filterGroup(plan, group: group, x: x, dy: dy, dw: target, accumulate: accumulate, packed: scratch.floats)
            }
        }

        /// Gathers xs of images `images` transposed: `packed[panel][t][j]` = x[image, panel·columns
        /// + j] at output pixel t's (2·oy, 2·ox), channels past c zero: blocks of 16 channels ×
        /// 16 pixels (`gatherEven`) transposed in registers, or of 8 × 8 with 16 vector registers
        /// (AVX2, NEON, fallback), where the 16 × 16 blocks of two-register rows took 32 registers
        /// and spilled half of them (620 of the loop's 1,556 instructions touched the stack, now 3
        /// of 402). An 8-pixel vector is one row's 8 outputs or, with rows of 4 outputs (w = 8), two
        /// rows'.
        static func packTransposed(_ plan: FilterPlan, x: UnsafePointer<Float>, images: Range<Int>,
                                   into packed: UnsafeMutablePointer<Float>) {
            let g = plan.g, w = g.w, planeFloats = g.h * g.w, step = columns * MemoryLayout<Float>.stride
            if ISA.lanes >= 16 {
                typealias V = SIMD16<Float>
                forEachPackBlock(plan, x: x, images: images, block: 16, packed: packed) { planes, channels, target in
                    @inline(__always) func row(_ r: Int) -> V { r < channels ? gatherEven(planes + r * planeFloats, w: w) : V() }
                    GEMM.Transpose.store16((row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7),
                                            row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15)),
                                           to: target, step: step)
                }
                return
            }
            typealias E = SIMD8<Float>
            // The second half's offset in bytes: the next even row's (w = 8), else the same row's next 8 floats.
            let second = (w == 8 ? 2 * w : 8) * MemoryLayout<Float>.stride
            forEachPackBlock(plan, x: x, images: images, block: 8, packed: packed) { planes, channels, target in
                @inline(__always) func row(_ r: Int) -> E {
                    guard r < channels else { return E() }
                    let raw = UnsafeRawPointer(planes + r * planeFloats)
                    let a = raw.loadUnaligned(as: E.self), b = raw.loadUnaligned(fromByteOffset: second, as: E.self)
                    return E(lowHalf: a.evenHalf, highHalf: b.evenHalf)
                }
                GEMM.Transpose.store8((row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7)), to: target, step: step)
            }
        }

        /// The blocks of `packTransposed`, `block` channels × `block` pixels each: `body(planes,
        /// channels, target)` with x at the block's first pixel (2·oy, 2·ox) in its first
        /// channel's plane, the channels that exist (the rest are zero) and where row 0 of the
        /// transposed block goes.
        @inline(__always)
        static func forEachPackBlock(_ plan: FilterPlan, x: UnsafePointer<Float>, images: Range<Int>, block: Int,
                                     packed: UnsafeMutablePointer<Float>, _ body: (UnsafePointer<Float>, Int, UnsafeMutableRawPointer) -> Void) {
            let g = plan.g, p = g.outputPixels, (ow, w) = (g.ow, g.w)
            let depth = images.count * p
            for panel in 0..<plan.cPanels {
                for half in stride(from: 0, to: columns, by: block) {
                    let first = panel * columns + half, channels = max(0, min(block, g.c - first))
                    for (slot, image) in images.enumerated() {
                        let planes = x + (image * g.c + first) * g.h * w
                        for q in stride(from: 0, to: p, by: block) {
                            body(planes + 2 * (q / ow) * w + 2 * (q % ow), channels,
                                 UnsafeMutableRawPointer(packed + (panel * depth + slot * p + q) * columns + half))
                        }
                    }
                }
            }
        }

        /// One group's contribution to dw: pack, then for each channel panel (in L1) every block
        /// of `rows` output channels.
        static func filterGroup(_ plan: FilterPlan, group: Int, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                dw: UnsafeMutablePointer<Float>, accumulate: Bool, packed: UnsafeMutablePointer<Float>) {
            let g = plan.g, images = plan.images(group), p = g.outputPixels
            packTransposed(plan, x: x, images: images, into: packed)
            let depth = images.count * p, oBlocks = (g.o + rows - 1) / rows
            // x and dy past the cache: the next group's even rows of x and its dy, prefetched while
            // this group's tiles run (layer2, AMD EPYC family 25 model 17: dy's share took the pass
            // from 3.54–3.58 to 3.48 ms on AVX-512, 3.90–3.98 to 3.64–3.74 with AVX2).
            let next = group + 1 < plan.groups && plan.prefetch ? plan.images(group + 1) : nil
            // A share after every `filterChunk` pixels of a tile: issued all at once after a tile,
            // they waited on one another (a tenth of layer2's time in the issuing loop).
            let chunks = oBlocks * plan.cPanels * images.count * ((p + filterChunk - 1) / filterChunk)
            var prefetcher = EvenRowPrefetcher(g, x: x, images: next, tiles: chunks, toL1: true)
            var dyPrefetcher = LinePrefetcher(dy + (next?.lowerBound ?? 0) * g.o * p, floats: (next?.count ?? 0) * g.o * p,
                                              tiles: chunks, toL1: true)
            let segment = Segments(count: images.count, length: p, strideBytes: g.o * p * MemoryLayout<Float>.stride,
                                   rowBytes: p * MemoryLayout<Float>.stride)
            for block in 0..<oBlocks {
                let first = block * rows, height = min(rows, g.o - first)
                let a = UnsafeRawPointer(dy + (images.lowerBound * g.o + first) * p)
                for panel in 0..<plan.cPanels {
                    let b = UnsafePointer(packed + panel * depth * columns)
                    let width = min(columns, g.c - panel * columns)
                    let c = dw + first * g.c + panel * columns
                    if ISA.wideTile {
                        wideFilterTile(segment, a, height, b, c, g.c, width, accumulate, &prefetcher, &dyPrefetcher)
                    } else {
                        narrowFilterTile(segment, a, height, b, c, g.c, width, accumulate, &prefetcher, &dyPrefetcher)
                    }
                }
            }
        }

        /// How a tile's broadcasts walk dy: `count` images of `length` pixels, `strideBytes`
        /// apart; output channels (the tile's rows) `rowBytes` apart.
        struct Segments {
            let count: Int, length: Int, strideBytes: Int, rowBytes: Int
        }

        /// The 8 × 32 filter tile (AVX-512): dW[8 o, 32 c] (+)= Σ_t dy[o, t] · packed[t, c], dy read
        /// in place image by image (`GEMM.MicroKernel.accumulateInPlace`). Rows past `height`
        /// repeat the last valid row's broadcasts and are not stored.
        @inline(never)
        static func wideFilterTile(_ s: Segments, _ a: UnsafeRawPointer, _ height: Int, _ b: UnsafePointer<Float>,
                                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ width: Int, _ addToC: Bool,
                                   _ prefetcher: inout EvenRowPrefetcher, _ dyPrefetcher: inout LinePrefetcher) {
            typealias V = SIMD16<Float>
            var t: GEMM.MicroKernel.Tile = (V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V(), V())
            let r = s.rowBytes, last = height - 1
            let rows = (min(1, last) * r, min(2, last) * r, min(3, last) * r, min(4, last) * r, min(5, last) * r,
                        min(6, last) * r, min(7, last) * r)
            for image in 0..<s.count {
                for first in stride(from: 0, to: s.length, by: filterChunk) {
                    GEMM.MicroKernel.accumulateInPlace(&t, min(filterChunk, s.length - first),
                                                       a + image * s.strideBytes + first * MemoryLayout<Float>.stride, rows,
                                                       UnsafeRawPointer(b + (image * s.length + first) * 32), 128)
                    prefetcher.step()
                    dyPrefetcher.step()
                }
            }
            GEMM.MicroKernel.storeTile(t, c, ldc, height, width, addToC, false)
        }

        /// The 6 × 16 filter tile (AVX2, NEON, fallback), as `wideFilterTile`. Its loop is written
        /// out rather than taken from `GEMM.NarrowKernel.accumulateInPlace`: through that function
        /// LLVM emitted the same inner loop at another alignment and layer4's shortcut filter
        /// gradient (16-pixel images, so 16 iterations a call) ran 2.99–3.00 ms against 2.59–2.60
        /// (haswell build, 3 alternations).
        @inline(never)
        static func narrowFilterTile(_ s: Segments, _ a: UnsafeRawPointer, _ height: Int, _ b: UnsafePointer<Float>,
                                     _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ width: Int, _ addToC: Bool,
                                     _ prefetcher: inout EvenRowPrefetcher, _ dyPrefetcher: inout LinePrefetcher) {
            typealias V = SIMD16<Float>
            var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
            let r = s.rowBytes, last = height - 1
            let (s1, s2, s3, s4, s5) = (min(1, last) * r, min(2, last) * r, min(3, last) * r, min(4, last) * r, min(5, last) * r)
            var pb = UnsafeRawPointer(b)
            for image in 0..<s.count {
                var pa = a + image * s.strideBytes
                for first in stride(from: 0, to: s.length, by: filterChunk) {
                for _ in 0..<min(filterChunk, s.length - first) {
                    let b0 = pb.loadUnaligned(as: V.self)
                    multiplyAdd(&c0, V(repeating: pa.load(as: Float.self)), b0)
                    multiplyAdd(&c1, V(repeating: pa.load(fromByteOffset: s1, as: Float.self)), b0)
                    multiplyAdd(&c2, V(repeating: pa.load(fromByteOffset: s2, as: Float.self)), b0)
                    multiplyAdd(&c3, V(repeating: pa.load(fromByteOffset: s3, as: Float.self)), b0)
                    multiplyAdd(&c4, V(repeating: pa.load(fromByteOffset: s4, as: Float.self)), b0)
                    multiplyAdd(&c5, V(repeating: pa.load(fromByteOffset: s5, as: Float.self)), b0)
                    pa += MemoryLayout<Float>.stride
                    pb += 64
                }
                prefetcher.step()
                dyPrefetcher.step()
                }
            }
            GEMM.NarrowKernel.storeTile((c0, c1, c2, c3, c4, c5), c, ldc, height, width, addToC, false)
        }
    }
}
