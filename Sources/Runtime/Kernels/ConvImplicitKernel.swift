/// The forward and backward-data passes of strided convolutions (ResNet's stride-2 3×3 and
/// 1×1 shortcut layers), and of stride-1 3×3 ones on small planes with few channels, as
/// implicit GEMMs: no column matrix is written.
///
/// Both passes are `out[j, t] = Σ_K B[K, j] · src[offset(K) + offset(t)]` over output pixels t
/// and output channels j:
/// - forward: src is x, bordered by the padding; K = (c, ky, kx), B = Wᵀ; t runs over the
///   output plane, offset(t) = oy·s·wp + ox·s (a strided unpadded 1×1 layer copies only the
///   pixels it reads, then offset(t) = t);
/// - backward data: dx's pixels are split into s_h·s_w *phases* (iy mod s_h, ix mod s_w).
///   Within a phase, dx pixel (a, b) sees dy pixel (a + dr, b + dc) through the taps
///   ky ≡ py + padH (mod s_h) with dr = (py + padH − ky) / s_h (and likewise in x), so each
///   phase is a stride-1 correlation of dy (bordered with zeros where oy leaves 0..<oh) with
///   its own taps: K = (o, ky, kx) of the phase, B = W[o, c-panel, ky, kx].
///
/// Per group of images (`Plan.groupImages`, a function of the geometry), the group's source
/// is copied once, zero-bordered and channel-major (`[channel][image][hp][wp]`), then for each
/// phase and panel of `columns` output channels a register tile of `rows` pixels × `columns`
/// channels runs over all of K: its broadcasts read the copy at the tile's pixel offsets plus
/// each K's offset (`FilterKernel`'s tiles, with the roles of its two offset lists swapped),
/// its vectors the packed B panel, which stays in L2 while every tile of the group reads it.
/// The tile is stored transposed (8 or 6 consecutive pixels per channel): straight into y in
/// the forward pass, into a phase-major plane per image in the backward-data pass, which is
/// then interleaved into dx.
///
/// Every output element is one register's sum over K in K order, whoever computes it: results
/// never depend on the thread count or on how groups and panels are split.
extension Conv2DKernel {
    enum ImplicitKernel {
        /// Output pixels per register tile (broadcast side) and output channels (vector side).
        static let rows = FilterKernel.rows, columns = FilterKernel.columns
        /// Pixels of one phase a group aims for: tiles that reuse a packed panel from L2.
        static let targetPhasePixels = 128
        /// Largest bordered copy of a group, in floats (1 MiB).
        static let maxCopyFloats = 1 << 18

        /// Whether a pass of a geometry runs here: strided convolutions the direct and Winograd
        /// paths do not take (pointwise stride-1 layers read x in place in the GEMM path), as
        /// measured on ResNet-18's layers (`kiln bench conv`, Xeon, both ISAs):
        /// - both passes with a kernel larger than 1×1 (stride-2 3×3 forward: AVX-512 17 → 13 ms,
        ///   AVX2 28 → 24–25 ms; backward data 16–17 → 14–16 and 27–30 → 26–27 ms);
        /// - a strided 1×1 layer only forward, on the AVX-512 tile, with at most 64 output pixels
        ///   (layer4's shortcut 2.1 → 1.7 ms). These layers are memory-bound; on larger planes the
        ///   in-place reads, 4 KiB apart per channel, thrash L1 sets and the GEMM path is faster;
        /// - and, on the AVX-512 tile, of the stride-1 3×3 layers Winograd takes, those with planes
        ///   under 16 wide and fewer than 128 channels either way, where a plane holds too few
        ///   tiles for the transforms to fill 16-float vectors (ResNet-20's 64-channel 8×8 stage:
        ///   2.9–3.4 → 2.0–2.4 ms forward and backward data; ResNet-18's 256- and 512-channel 8×8
        ///   and 4×4 layers stay faster in Winograd, 16–24 against 25–31 ms). With AVX2's 8-float
        ///   vectors Winograd stays ahead on that stage (2.80 against 3.06 ms);
        /// - and, on both ISAs, the stride-1 layers with 32 channels on the narrower side that the
        ///   direct path leaves (32 against more, or kernels over 3×3), and those of 33–63
        ///   channels with kernels over 3×3 (im2col + GEMM before) (`kiln bench conv --shape`, AMD
        ///   EPYC Zen 4, minimum ms of 3–5 alternations, forward / backward data, before → after):
        ///   PyTorch's MNIST example's 32 → 64 3×3 unpadded on 26×26, batch 64: AVX2 7.80 / 9.32
        ///   → 7.00 / 8.11, AVX-512 7.36 / 9.17 → 6.47 / 7.94; a conv VAE decoder's 64 → 32 3×3
        ///   on 14×14, batch 128: AVX2 6.87 / 7.12 → 5.08 / 5.20, AVX-512 5.01 / 4.87 → 4.94 /
        ///   4.87; a 32 → 64 5×5 padded on 14×14, batch 64 (im2col + GEMM before): AVX2 8.43 /
        ///   7.54 → 6.32 / 6.34, AVX-512 8.01 / 7.93 → 6.20 / 6.27; 48 → 64 5×5 padded on 14×14,
        ///   batch 64: AVX2 16.96 / 11.13 → 9.61 / 9.47, AVX-512 12.89 / 13.17 → 9.48 / 12.47.
        ///   A 48 → 64 3×3 unpadded (16×16) stayed in im2col + GEMM: its forward pass was faster
        ///   here (AVX2 6.52 → 4.15) but its backward data slower (4.98 → 5.28; AVX-512 5.22 →
        ///   5.93).
        ///
        /// Not the unpadded (or 2-padded) 3×3 layers Winograd takes (`Winograd.minUnpaddedSide`):
        /// F(4×4, 3×3) beat this kernel and im2col + GEMM on both passes and ISAs
        /// (`kiln bench conv --shape`, AMD EPYC Zen 4, ms, best of 3 rounds, two alternations,
        /// AVX-512 / AVX2, forward and backward data, before → after): the MNIST example's 32 → 64
        /// on 26×26 (this kernel before), batch 64: 6.44 / 6.75 → 3.96 / 4.65 and 7.72 / 7.93 →
        /// 5.45 / 7.15; 48 → 64 on 16×16, batch 64 (im2col + GEMM before): 4.5 / 4.63 → 3.2 / 3.6
        /// and 4.37 / 4.09 → 3.07 / 3.37; 64 → 64 on 15×15, batch 128: 10.8 / 11.45 → 9.0 / 9.3
        /// and 10.4 / 9.67 → 8.7 / 9.3; 64 → 64 on 18×18, batch 64 (AVX2): 7.15 → 4.5 and 6.60 → 5.98.
        ///
        /// Not the backward data of strided layers with fewer than 16 input channels (a DCGAN's
        /// last transposed convolution, a discriminator's first layer): there dx's channels are
        /// the tile's vector side, a 1- or 3-wide panel fills 1–3 of its 16 or 8 lanes, and
        /// im2col + GEMM (`dcol = Wᵀ · dy`, K = c·kh·kw rows, then col2im) runs 3–12 times
        /// faster (`kiln bench conv --shape`, AMD EPYC Zen 4, ms before → after, AVX2 / AVX-512):
        /// 1 → 64 4×4 stride 2 on 28×28, batch 64: 2.40 / 2.58 → 0.45 / 0.21; 3 → 64 on 32×32:
        /// 3.13 / 3.27 → 0.93 / 0.89; 8 → 64: 3.05 / 2.34 → 1.47 / 1.41; 12 → 64: 2.39 / 2.29 →
        /// 2.22 / 2.10; 1 → 32 5×5 stride 2: 1.79 / 1.77 → 0.24 / 0.21; 3 → 32 3×3 stride 2 on
        /// 32×32, batch 128: 1.95 / 2.44 → 0.62 / 1.27. At 16 channels the implicit GEMM is as
        /// fast or faster (16 → 64 4×4: 2.47 / 2.56 against 2.93 / 3.84).
        static func runs(_ g: Geometry, _ pass: Pass) -> Bool {
            guard pass != .backwardFilter, !DirectConv2D.runs(g, pass) else { return false }
            if g.strideH == 1 && g.strideW == 1 {
                if Winograd.suits(g) && g.padH != 1 { return false }
                let narrow = min(g.c, g.o)
                if !g.isPointwise && (32..<64).contains(narrow) && (narrow == 32 || g.kh * g.kw > 9) { return suits(g, pass) }
                return ISA.wideTile && Winograd.suits(g) && g.w < 16 && min(g.c, g.o) < 128 && suits(g, pass)
            }
            guard suits(g, pass), !ShortcutKernel.runs(g, pass) else { return false }
            if pass == .backwardData && g.c < 16 { return false }
            if g.kh * g.kw == 1 { return ISA.wideTile && pass == .forward && g.outputPixels <= 64 }
            return true
        }

        /// Whether this kernel can run a pass: byte offsets within a group's copy are Int32.
        static func suits(_ g: Geometry, _ pass: Pass) -> Bool {
            pass != .backwardFilter && Plan(g, forward: pass == .forward).copyFloats < Int(Int32.max / 8)
        }

        /// How a pass is cut into groups and phases, and laid out in scratch.
        struct Plan {
            let g: Geometry
            let forward: Bool
            /// Channels of the source (K's channel axis) and of the output.
            let sourceChannels: Int, outChannels: Int
            /// Forward pass of an unpadded strided 1×1 layer: only the pixels it reads are copied.
            let subsampled: Bool
            /// Bordered source plane, and where the unbordered source starts in it.
            let hp: Int, wp: Int, top: Int, left: Int
            /// Floats of one output channel's plane (oh·ow forward, h·w backward data).
            let outPlane: Int
            let phasesY: Int, phasesX: Int
            let groupImages: Int, groups: Int
            let panelColumns: Int, panels: Int
            var phases: Int { phasesY * phasesX }
            var plane: Int { hp * wp }
            /// Floats between channels, and between images, of the copy (`[image][channel][hp][wp]`).
            var channelStride: Int { plane }
            var imageStride: Int { sourceChannels * plane }
            /// The source is read in place (no border, every pixel kept): no copy.
            var inPlace: Bool {
                let (sh, sw) = forward ? (g.h, g.w) : (g.oh, g.ow)
                return !subsampled && top == 0 && left == 0 && hp == sh && wp == sw
            }
            var copyFloats: Int { inPlace ? 0 : groupImages * imageStride }
            /// A backward-data pass with several phases writes phase-major planes, then interleaves.
            var interleaves: Bool { !forward && phases > 1 }
            var outputFloats: Int { interleaves ? groupImages * outChannels * outPlane : 0 }
            /// Per group: the copy, the phase-major output and a zero row (phases without taps).
            var groupFloats: Int { copyFloats + outputFloats + g.w + 16 }
            /// Total K over the phases (each phase's K is `sourceChannels` × its taps).
            var totalDepth: Int { sourceChannels * g.kh * g.kw }
            /// Pixels of one image's output over all phases.
            var totalPixels: Int { forward ? g.outputPixels : g.h * g.w }
            /// Shared: packed B of every phase and panel, the pixel offsets of one image (Int,
            /// bytes, phase after phase), then the K offsets (Int32, bytes).
            var packedFloats: Int { panels * panelColumns * totalDepth }
            var sharedFloats: Int { packedFloats + 2 * totalPixels + totalDepth + 16 }

            init(_ g: Geometry, forward: Bool) {
                self.g = g
                self.forward = forward
                sourceChannels = forward ? g.c : g.o
                outChannels = forward ? g.o : g.c
                if forward {
                    subsampled = false
                    phasesY = 1; phasesX = 1
                    if subsampled {
                        (hp, wp, top, left) = (g.oh, g.ow, 0, 0)
                    } else {
                        (top, left) = (g.padH, g.padW)
                        hp = max(g.h + g.padH, (g.oh - 1) * g.strideH + g.kh)
                        wp = max(g.w + g.padW, (g.ow - 1) * g.strideW + g.kw)
                    }
                    outPlane = g.outputPixels
                } else {
                    subsampled = false
                    phasesY = g.strideH; phasesX = g.strideW
                    let y = Self.border(taps: g.kh, stride: g.strideH, pad: g.padH, size: g.h, outputs: g.oh)
                    let x = Self.border(taps: g.kw, stride: g.strideW, pad: g.padW, size: g.w, outputs: g.ow)
                    (top, hp) = y
                    (left, wp) = x
                    outPlane = g.h * g.w
                }
                panelColumns = ISA.wideTile && outChannels <= 16 ? 16 : ImplicitKernel.columns
                panels = (outChannels + panelColumns - 1) / panelColumns
                let perPhase = max(1, forward ? g.outputPixels : g.h * g.w / (g.strideH * g.strideW))
                let perImage = sourceChannels * hp * wp
                let byPixels = (ImplicitKernel.targetPhasePixels + perPhase - 1) / perPhase
                groupImages = max(1, min(g.n, min(byPixels, ImplicitKernel.maxCopyFloats / max(1, perImage))))
                groups = (g.n + groupImages - 1) / groupImages
            }

            /// Backward data along one axis: zero rows needed before dy (`top`) and the bordered
            /// size, so that every phase's every tap reads inside the copy.
            static func border(taps: Int, stride: Int, pad: Int, size: Int, outputs: Int) -> (Int, Int) {
                var low = 0, high = outputs
                for phase in 0..<stride {
                    let count = phaseCount(phase, stride: stride, size: size)
                    guard count > 0 else { continue }
                    for k in 0..<taps where (phase + pad - k) % stride == 0 {
                        let d = (phase + pad - k) / stride
                        low = max(low, -d)
                        high = max(high, count - 1 + d + 1)
                    }
                }
                return (low, low + high)
            }

            /// Pixels of dx along an axis whose index is ≡ phase (mod stride).
            static func phaseCount(_ phase: Int, stride: Int, size: Int) -> Int {
                phase < size ? (size - phase + stride - 1) / stride : 0
            }

            /// A phase's pixel rows and columns (the output plane itself in the forward pass).
            func phaseSize(_ phase: Int) -> (rows: Int, cols: Int) {
                if forward { return (g.oh, g.ow) }
                return (Self.phaseCount(phase / phasesX, stride: g.strideH, size: g.h),
                        Self.phaseCount(phase % phasesX, stride: g.strideW, size: g.w))
            }

            /// Taps of a phase along y and x (backward data), each as (k, offset in source rows/columns).
            func tapCount(_ phase: Int) -> Int {
                if forward { return g.kh * g.kw }
                let (py, px) = (phase / phasesX, phase % phasesX)
                var ny = 0, nx = 0
                for ky in 0..<g.kh where (py + g.padH - ky) % g.strideH == 0 { ny += 1 }
                for kx in 0..<g.kw where (px + g.padW - kx) % g.strideW == 0 { nx += 1 }
                return ny * nx
            }

            /// K of a phase.
            func depth(_ phase: Int) -> Int { sourceChannels * tapCount(phase) }

            /// K's before a phase (its packed panels and offsets start there).
            func depthBefore(_ phase: Int) -> Int {
                var total = 0
                for p in 0..<phase { total += depth(p) }
                return total
            }

            /// Pixels before a phase in the phase-major plane.
            func pixelsBefore(_ phase: Int) -> Int {
                var total = 0
                for p in 0..<phase { let s = phaseSize(p); total += s.rows * s.cols }
                return total
            }

            /// Float offset in the copy (from the group's start) of the pixel read by tap offset
            /// (0, 0) for phase pixel (a, b) of image slot `slot`.
            @inline(__always)
            func pixelOffset(slot: Int, a: Int, b: Int) -> Int {
                if forward {
                    let (sy, sx) = subsampled ? (1, 1) : (g.strideH, g.strideW)
                    return slot * imageStride + a * sy * wp + b * sx
                }
                return slot * imageStride + (a + top) * wp + b + left
            }

            func images(_ group: Int) -> Range<Int> { group * groupImages..<min(g.n, (group + 1) * groupImages) }
        }

        /// Fills the packed B panels (`[phase][panel][K][panelColumns]`, channels past the
        /// output's zero) of panel `panel` of `phase`, and that phase's K offsets when `panel == 0`.
        static func pack(_ plan: Plan, weight: UnsafePointer<Float>, phase: Int, panel: Int,
                         packed: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Int32>) {
            let g = plan.g, width = plan.panelColumns
            let depth = plan.depth(phase), before = plan.depthBefore(phase)
            let target = packed + plan.panels * width * before + panel * width * depth
            let first = panel * width, valid = min(width, plan.outChannels - first)
            let taps = g.kh * g.kw
            if plan.forward {
                // B[K, j] = W[first + j, K], K = (c, ky, kx): W's rows are K-contiguous.
                let k = g.patchSize
                for kk in 0..<k {
                    let row = target + kk * width
                    for j in 0..<width { row[j] = j < valid ? weight[(first + j) * k + kk] : 0 }
                    if panel == 0 {
                        let (c, tap) = (kk / taps, kk % taps)
                        let (ky, kx) = (tap / g.kw, tap % g.kw)
                        offsets[kk] = Int32((c * plan.channelStride + ky * plan.wp + kx) * MemoryLayout<Float>.stride)
                    }
                }
                return
            }
            // Backward data: K = (o, ky, kx) over the phase's taps; B[K, j] = W[o, first + j, ky, kx].
            let (py, px) = (phase / plan.phasesX, phase % plan.phasesX)
            var kk = 0
            for o in 0..<g.o {
                for ky in 0..<g.kh where (py + g.padH - ky) % g.strideH == 0 {
                    let dr = (py + g.padH - ky) / g.strideH
                    for kx in 0..<g.kw where (px + g.padW - kx) % g.strideW == 0 {
                        let dc = (px + g.padW - kx) / g.strideW
                        let row = target + kk * width
                        let source = weight + ((o * g.c + first) * g.kh + ky) * g.kw + kx
                        for j in 0..<width { row[j] = j < valid ? source[j * taps] : 0 }
                        if panel == 0 {
                            offsets[before + kk] = Int32((o * plan.channelStride + dr * plan.wp + dc) * MemoryLayout<Float>.stride)
                        }
                        kk += 1
                    }
                }
            }
        }

        /// Copies image `image` of the source into slot `slot` of the group's bordered copy.
        static func copyImage(_ plan: Plan, source: UnsafePointer<Float>, image: Int, slot: Int,
                              into copy: UnsafeMutablePointer<Float>) {
            let g = plan.g
            let (sh, sw) = plan.forward ? (g.h, g.w) : (g.oh, g.ow)
            for channel in 0..<plan.sourceChannels {
                let target = copy + slot * plan.imageStride + channel * plan.plane
                let from = source + (image * plan.sourceChannels + channel) * sh * sw
                if plan.subsampled {
                    for oy in 0..<g.oh {
                        let line = target + oy * g.ow, row = from + oy * g.strideH * g.w
                        if g.strideW == 2 {
                            copyEvenFloats(line, row, 0..<g.ow, sourceEnd: g.w)
                        } else {
                            for ox in 0..<g.ow { line[ox] = row[ox * g.strideW] }
                        }
                    }
                    continue
                }
                if plan.top > 0 { zeroFloats(target, plan.top * plan.wp) }
                let right = plan.wp - plan.left - sw
                for row in 0..<sh {
                    let line = target + (row + plan.top) * plan.wp
                    if plan.left > 0 { zeroFloats(line, plan.left) }
                    copyFloats(line + plan.left, from + row * sw, sw)
                    if right > 0 { zeroFloats(line + plan.left + sw, right) }
                }
                let below = plan.hp - plan.top - sh
                if below > 0 { zeroFloats(target + (plan.top + sh) * plan.wp, below * plan.wp) }
            }
        }

        /// Runs one pass: packs B, then the groups (× panel ranges when there are few groups) on `threads`.
        static func run(_ plan: Plan, source: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, threads: Int) {
            let shared = ConvScratch.shared.take(floats: plan.sharedFloats, gemm: (0, 0))
            defer { ConvScratch.shared.give(shared) }
            let packed = shared.floats
            // packedFloats is even (panels of 16 or 32 floats): the Int table is 8-byte aligned.
            let pixelTable = UnsafeMutableRawPointer(packed + plan.packedFloats).bindMemory(to: Int.self, capacity: plan.totalPixels)
            let offsets = UnsafeMutableRawPointer(packed + plan.packedFloats + 2 * plan.totalPixels)
                .bindMemory(to: Int32.self, capacity: plan.totalDepth)
            var entry = 0
            for phase in 0..<plan.phases {
                let (na, nb) = plan.phaseSize(phase)
                for a in 0..<na {
                    for b in 0..<nb {
                        pixelTable[entry] = plan.pixelOffset(slot: 0, a: a, b: b) * MemoryLayout<Float>.stride
                        entry += 1
                    }
                }
            }
            // Packing only: how it is split cannot change a result.
            Parallel.forEach(chunks: plan.phases * plan.panels, threads: threads) { chunk in
                pack(plan, weight: weight, phase: chunk / plan.panels, panel: chunk % plan.panels, packed: packed, offsets: offsets)
            }
            let parts = plan.groups >= 2 * threads ? 1 : min(plan.panels, (2 * threads + plan.groups - 1) / plan.groups)
            Parallel.forEach(chunks: plan.groups * parts, threads: threads) { chunk in
                let (group, part) = (chunk / parts, chunk % parts)
                let scratch = ConvScratch.shared.take(floats: plan.groupFloats, gemm: (0, 0))
                defer { ConvScratch.shared.give(scratch) }
                runGroup(plan, images: plan.images(group), panels: part * plan.panels / parts..<(part + 1) * plan.panels / parts,
                         source: source, packed: packed, pixelTable: pixelTable, offsets: offsets, out: out,
                         scratch: scratch.floats)
            }
        }

        /// One group of images and a range of output-channel panels: copy, tiles, interleave.
        static func runGroup(_ plan: Plan, images: Range<Int>, panels: Range<Int>, source: UnsafePointer<Float>,
                             packed: UnsafePointer<Float>, pixelTable: UnsafePointer<Int>, offsets: UnsafePointer<Int32>,
                             out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
            let copy = scratch, phaseOut = scratch + plan.copyFloats
            let zeroRow = phaseOut + plan.outputFloats
            if !plan.inPlace {
                for (slot, image) in images.enumerated() {
                    copyImage(plan, source: source, image: image, slot: slot, into: copy)
                }
            }
            let base = plan.inPlace ? UnsafeRawPointer(source + images.lowerBound * plan.imageStride) : UnsafeRawPointer(copy)
            let width = plan.panelColumns, outImage = plan.outChannels * plan.outPlane
            for phase in 0..<plan.phases {
                let depth = plan.depth(phase), kBefore = plan.depthBefore(phase)
                let (na, nb) = plan.phaseSize(phase)
                let pixels = na * nb
                // A phase without taps is zero: the interleave writes it from a zero row.
                guard pixels > 0, depth > 0 || !plan.interleaves else { continue }
                let before = plan.pixelsBefore(phase)
                let start = plan.interleaves ? before : 0
                let kOffsets = UnsafeRawPointer(offsets + kBefore)
                let table = pixelTable + before
                for panel in panels {
                    let b = packed + plan.panels * width * kBefore + panel * width * depth
                    let channels = min(width, plan.outChannels - panel * width)
                    // Tiles run over the group's pixels image after image; a tile that crosses
                    // into the next image (ragged phases: AVX2's 6-pixel tiles over 16-pixel
                    // planes) is stored to a local block, then copied to both images.
                    @inline(__always) func target(_ slot: Int) -> UnsafeMutablePointer<Float> {
                        (plan.interleaves ? phaseOut + slot * outImage : out + (images.lowerBound + slot) * outImage)
                            + panel * width * plan.outPlane + start
                    }
                    let total = images.count * pixels
                    var f = 0
                    while f < total {
                        let height = min(rows, total - f)
                        let (slot, t) = (f / pixels, f % pixels)
                        var pix = (0, 0, 0, 0, 0, 0, 0, 0)
                        withUnsafeMutableBytes(of: &pix) { raw in
                            let o = raw.baseAddress!.assumingMemoryBound(to: Int.self)
                            var (s, q) = (slot, t)
                            for r in 0..<8 {
                                o[r] = s * plan.imageStride * MemoryLayout<Float>.stride + table[q]
                                if r < height - 1 {
                                    q += 1
                                    if q == pixels { (s, q) = (s + 1, 0) }
                                }
                            }
                        }
                        if t + height <= pixels {
                            tile(depth, base, pix, kOffsets, b, target(slot) + t, plan.outPlane, height, channels, width)
                        } else {
                            var block = (SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                                         SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                                         SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(),
                                         SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>(), SIMD16<Float>())
                            withUnsafeMutableBytes(of: &block) { raw in
                                // 32 channels × 8 pixels: channel j's pixels at j·8.
                                let local = raw.baseAddress!.assumingMemoryBound(to: Float.self)
                                tile(depth, base, pix, kOffsets, b, local, 8, height, channels, width)
                                var (s, q) = (slot, t)
                                for r in 0..<height {
                                    let dst = target(s) + q
                                    for j in 0..<channels { dst[j * plan.outPlane] = local[j * 8 + r] }
                                    q += 1
                                    if q == pixels { (s, q) = (s + 1, 0) }
                                }
                            }
                        }
                        f += height
                    }
                }
            }
            if plan.interleaves {
                zeroFloats(zeroRow, plan.g.w)
                let channels = panels.lowerBound * width..<min(plan.outChannels, panels.upperBound * width)
                for (slot, image) in images.enumerated() {
                    interleave(plan, from: phaseOut + slot * outImage, to: out + image * outImage, channels: channels,
                               zeroRow: zeroRow)
                }
            }
        }

        /// One register tile of the ISA (`FilterKernel`'s), stored transposed: pixel r of the
        /// tile, channel j at `c + j·ldc + r`.
        @inline(__always)
        static func tile(_ depth: Int, _ base: UnsafeRawPointer, _ pixels: FilterKernel.Offsets, _ kOffsets: UnsafeRawPointer,
                         _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                         _ height: Int, _ channels: Int, _ panelWidth: Int) {
            if ISA.wideTile {
                if panelWidth == 16 {
                    FilterKernel.wideHalfTile(depth, base, pixels, kOffsets, b, c, ldc, height, channels, false)
                } else {
                    FilterKernel.wideTile(depth, base, pixels, kOffsets, b, c, ldc, height, channels, false)
                }
            } else {
                FilterKernel.narrowTile(depth, base, pixels, kOffsets, b, c, ldc, height, channels, false)
            }
        }

        /// dx[ch, iy, ix] = phase-major[ch, start(phase(iy, ix)) + (iy / s_h)·cols + ix / s_w]
        /// for the channels `channels` of one image.
        /// Phases without taps read `zeroRow` (`w` zeros) instead.
        static func interleave(_ plan: Plan, from: UnsafePointer<Float>, to: UnsafeMutablePointer<Float>, channels: Range<Int>,
                               zeroRow: UnsafePointer<Float>) {
            let g = plan.g
            let (sy, sx) = (g.strideH, g.strideW)
            if sy == 2 && sx == 2 {
                let (r0, c0) = plan.phaseSize(0), c1 = plan.phaseSize(1).cols
                let (s1, s2) = (r0 * c0, r0 * c0 + r0 * c1)
                let s3 = s2 + plan.phaseSize(2).rows * c0
                let live = (plan.depth(0) > 0, plan.depth(1) > 0, plan.depth(2) > 0, plan.depth(3) > 0)
                for ch in channels {
                    let plane = from + ch * plan.outPlane, dx = to + ch * plan.outPlane
                    for iy in 0..<g.h {
                        let a = iy / 2
                        let (evenLive, oddLive) = iy & 1 == 0 ? (live.0, live.1) : (live.2, live.3)
                        let even = evenLive ? plane + (iy & 1 == 0 ? 0 : s2) + a * c0 : zeroRow
                        let odd = oddLive ? plane + (iy & 1 == 0 ? s1 : s3) + a * c1 : zeroRow
                        let line = dx + iy * g.w
                        var b = 0
                        while b + 8 <= c1 && 2 * b + 16 <= g.w {
                            let e = UnsafeRawPointer(even + b).loadUnaligned(as: SIMD8<Float>.self)
                            let o = UnsafeRawPointer(odd + b).loadUnaligned(as: SIMD8<Float>.self)
                            var v = SIMD16<Float>()
                            for i in 0..<8 { v[2 * i] = e[i]; v[2 * i + 1] = o[i] }
                            UnsafeMutableRawPointer(line + 2 * b).storeBytes(of: v, as: SIMD16<Float>.self)
                            b += 8
                        }
                        for ix in 2 * b..<g.w { line[ix] = ix & 1 == 0 ? even[ix / 2] : odd[ix / 2] }
                    }
                }
                return
            }
            for ch in channels {
                let plane = from + ch * plan.outPlane, dx = to + ch * plan.outPlane
                for iy in 0..<g.h {
                    for ix in 0..<g.w {
                        let phase = (iy % sy) * sx + ix % sx
                        let cols = plan.phaseSize(phase).cols
                        dx[iy * g.w + ix] = plan.depth(phase) == 0 ? 0
                            : plane[plan.pixelsBefore(phase) + (iy / sy) * cols + ix / sx]
                    }
                }
            }
        }

        /// Which algorithm a pass runs, for tables.
        static func algorithm(_ g: Geometry, _ pass: Pass) -> String {
            let plan = Plan(g, forward: pass == .forward)
            let phases = plan.phases > 1 ? " \(plan.phases) phases" : ""
            return "implicit GEMM b\(plan.groupImages) \(plan.outChannels)x\(plan.sourceChannels * g.kh * g.kw)\(phases)"
        }
    }
}
