#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The GEMM path of `Conv2DKernel` for convolutions with many channels (ResNet's 16–512):
/// im2col of a *group* of images side by side into one wide column matrix, one `GEMM.sgemm`
/// per group, all scratch from `ConvScratch` (allocated on the first steps, reused after, so a
/// compiled program's steady state allocates nothing).
///
/// Grouping is what makes the deep stages fast: a 4×4 output plane (ResNet-18's last stage)
/// gives a per-image GEMM only 16 columns, while 16 images side by side give 256. The group
/// size is a function of the geometry and pass alone, never of the thread count, and every
/// GEMM gives the same bits for any thread count, so results never depend on it.
///
/// - forward: `col[K, B·P] = im2col(B images)`, `tmp[o, B·P] = W[o, K] · col`, scattered to
///   the B images of y (a group of one image writes y directly). Groups run in parallel, one
///   per thread, each with a one-thread GEMM (or in turn with every thread on the GEMM when
///   there are fewer groups than threads).
/// - backward data: the group's dy gathered to `[o, B·P]`, `dcol = Wᵀ · dy`, col2im per image.
/// - backward filter (pointwise convolutions, and any too large for `FilterKernel`):
///   `dW (+)= dy[o, B·P] · col[K, B·P]ᵀ` per group. A small dW (up to 2²⁰
///   floats of partials) is summed in 8 fixed partitions of the groups, one thread each, then
///   the partials in order; a large one group after group with every thread on the GEMM (the
///   im2col and gather split over threads by image). Either way the order is fixed.
///
/// A one-image group whose column matrix exceeds 1 MiB (ResNet's first stage: 576 × 1024) runs
/// in blocks of output rows in all three passes, so each block's columns stay in L2 between
/// im2col (or the GEMM) and the GEMM (or col2im).
///
/// K = c·kh·kw, P = oh·ow. A 1×1 stride-1 unpadded convolution of a one-image group reads x
/// (or writes dx) in place instead of copying it.
extension Conv2DKernel {
    /// Columns a group aims for in the forward and backward-data passes.
    static let targetGroupColumns = 256
    /// Columns a group aims for in the backward-filter pass (its GEMM depth: deeper groups mean
    /// fewer passes over dW).
    static let targetFilterColumns = 1024
    /// Upper bound on a group's column matrix, in floats (8 MiB): the deep stages' K is 4608.
    static let maxColumnFloats = 1 << 21

    /// Images per group for a pass: enough to reach the target column count, within the
    /// column-matrix bound, at least one.
    static func groupImages(_ g: Geometry, _ pass: Pass) -> Int {
        let target = pass == .backwardFilter ? targetFilterColumns : targetGroupColumns
        let p = g.outputPixels
        let wanted = (target + p - 1) / p
        let fitting = maxColumnFloats / max(1, g.patchSize * p)
        return max(1, min(g.n, min(wanted, fitting)))
    }

    /// Row stride of a group's column matrix: `B·P`, widened by 16 floats when it is a multiple
    /// of 512 bytes' worth of floats so that GEMM reads its rows in place (see
    /// `GEMM.spreadsOverL1`).
    static func columnStride(_ columns: Int) -> Int {
        GEMM.spreadsOverL1(rowFloats: columns) ? columns : columns + 16
    }

    /// Which algorithm runs a pass of a geometry, for tables: `direct`, or `im2col+GEMM` /
    /// `1x1 GEMM` with the images per group and the GEMM's m×n×k per group.
    public static func algorithm(_ g: Geometry, _ pass: Pass) -> String {
        if g.isWholeImage {
            let (m, n, k) = pass == .forward ? (g.n, g.o, g.patchSize)
                : pass == .backwardData ? (g.n, g.patchSize, g.o) : (g.o, g.patchSize, g.n)
            return "whole-image GEMM \(m)x\(n)x\(k)"
        }
        if pass == .backwardFilter && WinogradFilter.suits(g) { return WinogradFilter.algorithm(g) }
        if ShortcutKernel.runs(g, pass) { return ShortcutKernel.algorithm(g, pass) }
        if pass == .backwardData && StemDataKernel.suits(g) { return StemDataKernel.algorithm(g) }
        if pass == .forward && StemForwardKernel.runs(g) { return StemForwardKernel.algorithm }
        if pass == .backwardFilter && PixelFilterKernel.runs(g) { return PixelFilterKernel.algorithm(g) }
        if pass == .backwardFilter && FilterKernel.runs(g) {
            let plan = FilterKernel.Plan(g)
            return "implicit GEMM b\(plan.groupImages) \(g.o)x\(g.patchSize)x\(plan.maxDepth)"
        }
        if DirectConv2D.runs(g, pass) { return "direct" }
        if ImplicitKernel.runs(g, pass) { return ImplicitKernel.algorithm(g, pass) }
        if pass != .backwardFilter && Winograd.suits(g) { return Winograd.algorithm(g, pass) }
        let b = groupImages(g, pass), columns = b * g.outputPixels
        let kind = g.kh == 1 && g.kw == 1 ? "1x1 GEMM" : "im2col+GEMM"
        let (m, n, k) = pass == .forward ? (g.o, columns, g.patchSize)
            : pass == .backwardData ? (g.patchSize, columns, g.o) : (g.o, g.patchSize, columns)
        let blockRows = pass == .backwardFilter ? filterChunkRows(g) : forwardChunkRows(g)
        let blocks = b == 1 && !g.isPointwise && blockRows < g.oh ? " rows/\(blockRows)" : ""
        return "\(kind) b\(b) \(m)x\(n)x\(k)\(blocks)"
    }

    /// The groups' image ranges: `count` groups of `size` images, the last one possibly smaller.
    struct Groups {
        let size: Int, count: Int, n: Int
        init(_ g: Geometry, _ pass: Pass) {
            size = Conv2DKernel.groupImages(g, pass)
            n = g.n
            count = (g.n + size - 1) / size
        }
        func images(_ group: Int) -> Range<Int> { group * size..<min(n, (group + 1) * size) }
    }

    /// A convolution whose kernel covers the whole unpadded image (one output pixel: a DCGAN
    /// generator's first transposed convolution from 1×1, a discriminator's last 4×4 layer, the
    /// original LeNet-5's C5) is a dense layer over the flattened image, K = c·h·w: each pass is
    /// one GEMM on the tensors where they lie, with no im2col and no image groups.
    /// - forward: `y[n, o] = x[n, K] · W[o, K]ᵀ`;
    /// - backward data: `dx[n, K] = dy[n, o] · W[o, K]`;
    /// - backward filter: `dW[o, K] = dy[n, o]ᵀ · x[n, K]`.
    /// (`kiln bench conv --shape`, AMD EPYC Zen 4, ms, im2col + GEMM of 64-image groups → here,
    /// AVX2 / AVX-512, batch 64: 512 → 100 4×4 on 4×4 forward 9.79 / 11.65 → 0.73 / 0.61, backward
    /// data 7.74 / 8.18 → 0.67 / 0.56; 128 → 1 7×7 on 7×7 forward 4.82 / 7.55 → 0.11 / 0.13.)
    static func wholeImage(_ g: Geometry, _ pass: Pass, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                           _ out: UnsafeMutablePointer<Float>, threads: Int) {
        let k = g.patchSize
        let (transposeA, transposeB, m, n, depth, lda, ldb) = switch pass {
        case .forward: (false, true, g.n, g.o, k, k, k)
        case .backwardData: (false, false, g.n, k, g.o, g.o, k)
        case .backwardFilter: (true, false, g.o, k, g.n, g.o, k)
        }
        let scratch = ConvScratch.shared.take(floats: 0, gemm: GEMM.workspaceFloats(transposeA: transposeA, transposeB: transposeB,
                                                                                    m: m, n: n, k: depth))
        defer { ConvScratch.shared.give(scratch) }
        GEMM.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: depth, a: a, lda: lda, b: b, ldb: ldb,
                   c: out, ldc: n, accumulate: false, threads: threads, workspace: scratch.gemm)
    }

    static func gemmForward(_ g: Geometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                            y: UnsafeMutablePointer<Float>, threads: Int) {
        let groups = Groups(g, .forward)
        let (k, p, inImage, outImage) = (g.patchSize, g.outputPixels, g.c * g.h * g.w, g.o * g.outputPixels)
        let chunkRows = forwardChunkRows(g)
        func run(_ group: Int, gemmThreads: Int) {
            let images = groups.images(group)
            let inPlace = g.isPointwise && images.count == 1
            let direct = images.count == 1
            if direct && !inPlace && chunkRows < g.oh {
                forwardInRowChunks(g, image: images.lowerBound, rowsPerChunk: chunkRows, x: x, weight: weight, y: y,
                                   gemmThreads: gemmThreads)
                return
            }
            let columns = images.count * p
            let ld = columnStride(columns)
            let scratch = ConvScratch.shared.take(floats: (inPlace ? 0 : k * ld) + (direct ? 0 : g.o * ld),
                                                  gemm: GEMM.workspaceFloats(transposeA: false, transposeB: false,
                                                                             m: g.o, n: columns, k: k))
            defer { ConvScratch.shared.give(scratch) }
            let col = scratch.floats, tmp = scratch.floats + (inPlace ? 0 : k * ld)
            if !inPlace {
                for (slot, image) in images.enumerated() {
                    im2col(g, x: x + image * inImage, col: col + slot * p, ld: ld)
                }
            }
            let target = direct ? y + images.lowerBound * outImage : tmp
            GEMM.sgemm(transposeA: false, transposeB: false, m: g.o, n: columns, k: k, a: weight, lda: k,
                       b: inPlace ? x + images.lowerBound * inImage : UnsafePointer(col), ldb: inPlace ? p : ld,
                       c: target, ldc: direct ? p : ld, accumulate: false, threads: gemmThreads, workspace: scratch.gemm)
            if !direct {
                for (slot, image) in images.enumerated() {
                    let out = y + image * outImage
                    for channel in 0..<g.o { copyFloats(out + channel * p, tmp + channel * ld + slot * p, p) }
                }
            }
        }
        forEachGroup(groups.count, threads: threads, run)
    }

    /// Largest column block of one image's im2col matrix in the forward pass, in floats (1 MiB):
    /// an image with more (ResNet's first stage: 576 × 1024) is multiplied in blocks of output
    /// rows, so each block stays in L2 between its im2col and its GEMM.
    static let forwardChunkFloats = 1 << 18

    /// Output rows per block of one image's column matrix in every pass (all of them when the
    /// image fits one block): the fewest blocks within `forwardChunkFloats`, of near-equal height.
    static func forwardChunkRows(_ g: Geometry) -> Int {
        let most = max(1, min(g.oh, forwardChunkFloats / max(1, g.patchSize * g.ow)))
        let blocks = (g.oh + most - 1) / most
        return (g.oh + blocks - 1) / blocks
    }

    /// The GEMM workspace sizes of a pass over blocks of `rowsPerChunk` output rows (the full
    /// blocks and the last), so that the scratch fits whichever path each product takes.
    static func chunkWorkspace(_ g: Geometry, rowsPerChunk: Int,
                               _ sizes: (Int) -> (a: Int, b: Int)) -> (a: Int, b: Int) {
        let last = (g.oh - (g.oh - 1) / rowsPerChunk * rowsPerChunk) * g.ow
        return larger(sizes(rowsPerChunk * g.ow), sizes(last))
    }

    /// One image's forward pass in blocks of output rows: im2col of the block's columns, then
    /// y[:, block] = W · col with y's rows `P` floats apart.
    static func forwardInRowChunks(_ g: Geometry, image: Int, rowsPerChunk: Int, x: UnsafePointer<Float>,
                                   weight: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, gemmThreads: Int) {
        let (k, p) = (g.patchSize, g.outputPixels)
        let widest = rowsPerChunk * g.ow, last = (g.oh - (g.oh - 1) / rowsPerChunk * rowsPerChunk) * g.ow
        let scratch = ConvScratch.shared.take(floats: k * (widest + 16),
                                              gemm: larger(GEMM.workspaceFloats(transposeA: false, transposeB: false, m: g.o, n: widest, k: k),
                                                           GEMM.workspaceFloats(transposeA: false, transposeB: false, m: g.o, n: last, k: k)))
        defer { ConvScratch.shared.give(scratch) }
        let xImage = x + image * g.c * g.h * g.w, yImage = y + image * g.o * p
        for first in stride(from: 0, to: g.oh, by: rowsPerChunk) {
            let rows = first..<min(g.oh, first + rowsPerChunk)
            let columns = rows.count * g.ow
            let ld = columnStride(columns)
            im2col(g, x: xImage, col: scratch.floats, ld: ld, outputRows: rows)
            GEMM.sgemm(transposeA: false, transposeB: false, m: g.o, n: columns, k: k, a: weight, lda: k,
                       b: scratch.floats, ldb: ld, c: yImage + first * g.ow, ldc: p, accumulate: false, threads: gemmThreads,
                       workspace: ConvScratch.shared.fit(scratch, GEMM.workspaceFloats(transposeA: false, transposeB: false,
                                                                                       m: g.o, n: columns, k: k)))
        }
    }

    static func gemmBackwardData(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 dx: UnsafeMutablePointer<Float>, threads: Int) {
        let groups = Groups(g, .backwardData)
        let (k, p, inImage, outImage) = (g.patchSize, g.outputPixels, g.c * g.h * g.w, g.o * g.outputPixels)
        let chunkRows = forwardChunkRows(g)
        func run(_ group: Int, gemmThreads: Int) {
            let images = groups.images(group)
            let columns = images.count * p
            let ld = columnStride(columns)
            let inPlace = g.isPointwise && images.count == 1
            let direct = images.count == 1
            if direct && !inPlace && chunkRows < g.oh {
                backwardDataInRowChunks(g, image: images.lowerBound, rowsPerChunk: chunkRows, dy: dy, weight: weight,
                                        dx: dx, gemmThreads: gemmThreads)
                return
            }
            let scratch = ConvScratch.shared.take(floats: (inPlace ? 0 : k * ld) + (direct ? 0 : g.o * ld),
                                                  gemm: GEMM.workspaceFloats(transposeA: true, transposeB: false,
                                                                             m: k, n: columns, k: g.o))
            defer { ConvScratch.shared.give(scratch) }
            let dcol = scratch.floats, gathered = scratch.floats + (inPlace ? 0 : k * ld)
            if !direct {
                for (slot, image) in images.enumerated() {
                    let source = dy + image * outImage
                    for channel in 0..<g.o { copyFloats(gathered + channel * ld + slot * p, source + channel * p, p) }
                }
            }
            GEMM.sgemm(transposeA: true, transposeB: false, m: k, n: columns, k: g.o, a: weight, lda: k,
                       b: direct ? dy + images.lowerBound * outImage : UnsafePointer(gathered), ldb: direct ? p : ld,
                       c: inPlace ? dx + images.lowerBound * inImage : dcol, ldc: inPlace ? p : ld,
                       accumulate: false, threads: gemmThreads, workspace: scratch.gemm)
            if !inPlace {
                for (slot, image) in images.enumerated() {
                    col2im(g, col: dcol + slot * p, ld: ld, dx: dx + image * inImage)
                }
            }
        }
        forEachGroup(groups.count, threads: threads, run)
    }

    /// One image's backward-data pass in blocks of output rows, like `forwardInRowChunks`:
    /// `dcol[:, block] = Wᵀ · dy[:, block]`, then its scatter-add into dx (cleared first), so the
    /// block's column matrix stays in L2 between the GEMM and col2im.
    static func backwardDataInRowChunks(_ g: Geometry, image: Int, rowsPerChunk: Int, dy: UnsafePointer<Float>,
                                        weight: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, gemmThreads: Int) {
        let (k, p) = (g.patchSize, g.outputPixels)
        let scratch = ConvScratch.shared.take(floats: k * (rowsPerChunk * g.ow + 16),
                                              gemm: chunkWorkspace(g, rowsPerChunk: rowsPerChunk) {
                                                  GEMM.workspaceFloats(transposeA: true, transposeB: false, m: k, n: $0, k: g.o)
                                              })
        defer { ConvScratch.shared.give(scratch) }
        let dyImage = dy + image * g.o * p, dxImage = dx + image * g.c * g.h * g.w
        dxImage.update(repeating: 0, count: g.c * g.h * g.w)
        for first in stride(from: 0, to: g.oh, by: rowsPerChunk) {
            let rows = first..<min(g.oh, first + rowsPerChunk)
            let columns = rows.count * g.ow
            let ld = columnStride(columns)
            GEMM.sgemm(transposeA: true, transposeB: false, m: k, n: columns, k: g.o, a: weight, lda: k,
                       b: dyImage + first * g.ow, ldb: p, c: scratch.floats, ldc: ld, accumulate: false, threads: gemmThreads,
                       workspace: ConvScratch.shared.fit(scratch, GEMM.workspaceFloats(transposeA: true, transposeB: false,
                                                                                       m: k, n: columns, k: g.o)))
            col2im(g, col: scratch.floats, ld: ld, dx: dxImage, outputRows: rows)
        }
    }

    /// Fixed partitions of the groups for a filter gradient small enough to keep one partial per
    /// partition: each partition is summed by one thread with a one-thread GEMM, the partials are
    /// added in partition order. A function of the geometry, so the sum order never depends on
    /// the thread count.
    static let filterPartitions = 8
    /// Largest total of partial filter gradients, in floats, for the partitioned order.
    static let maxPartialFloats = 1 << 20

    static func gemmBackwardFilter(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                   dw: UnsafeMutablePointer<Float>, threads: Int) {
        let groups = Groups(g, .backwardFilter)
        let k = g.patchSize, filter = g.o * k
        let widest = groups.images(0).count * g.outputPixels
        // Any group's row stride (`columnStride` of at most `widest` columns) fits.
        let maxLd = widest + 16
        var gemmFloats = larger(GEMM.workspaceFloats(transposeA: false, transposeB: true, m: g.o, n: k, k: widest),
                                GEMM.workspaceFloats(transposeA: false, transposeB: true, m: g.o, n: k,
                                                     k: groups.images(groups.count - 1).count * g.outputPixels))
        if filterChunkRows(g) < g.oh {
            gemmFloats = larger(gemmFloats, chunkWorkspace(g, rowsPerChunk: filterChunkRows(g)) {
                GEMM.workspaceFloats(transposeA: false, transposeB: true, m: g.o, n: k, k: $0)
            })
        }
        sumFilterGroups(groups.count, filter: filter, dw: dw, threads: threads, maxPartials: maxPartialFloats,
                        scratchFloats: k * maxLd + g.o * maxLd, gemm: gemmFloats) { group, target, accumulate, scratch, threads in
            accumulateFilterGroup(g, groups.images(group), x: x, dy: dy, dw: target, accumulate: accumulate,
                                  scratch: scratch, threads: threads)
        }
    }

    /// dw = the sum over `groups` image groups of what `body(group, target, accumulate, scratch,
    /// threads)` adds into `target` (or stores there when `accumulate` is false), in a fixed
    /// order: a small dW (`filterPartitions` partitions' partials within `maxPartials` floats)
    /// in partitions of consecutive groups, one thread each, partials added to dw in partition
    /// order; a large one group after group, every thread inside `body`. The order depends on
    /// the group count and filter size only, so the bits never depend on the thread count.
    /// Each call of `body` gets a scratch entry of `scratchFloats` floats and a `gemm` workspace.
    static func sumFilterGroups(_ groups: Int, filter: Int, dw: UnsafeMutablePointer<Float>, threads: Int,
                                maxPartials: Int, scratchFloats: Int, gemm: (a: Int, b: Int),
                                _ body: (_ group: Int, _ target: UnsafeMutablePointer<Float>, _ accumulate: Bool,
                                         _ scratch: ConvScratch.Entry, _ threads: Int) -> Void) {
        let partitions = min(groups, filterPartitions)
        if partitions >= 2 && (partitions - 1) * filter <= maxPartials {
            let partials = ConvScratch.shared.take(floats: (partitions - 1) * filter, gemm: (0, 0))
            defer { ConvScratch.shared.give(partials) }
            Parallel.forEach(chunks: partitions, threads: threads) { part in
                let scratch = ConvScratch.shared.take(floats: scratchFloats, gemm: gemm)
                defer { ConvScratch.shared.give(scratch) }
                let first = part * groups / partitions, end = (part + 1) * groups / partitions
                for group in first..<end {
                    body(group, part == 0 ? dw : partials.floats + (part - 1) * filter, group > first, scratch, 1)
                }
            }
            addPartials(dw, partials.floats, count: partitions - 1, filter: filter, threads: threads)
            return
        }
        let scratch = ConvScratch.shared.take(floats: scratchFloats, gemm: gemm)
        defer { ConvScratch.shared.give(scratch) }
        for group in 0..<groups { body(group, dw, group > 0, scratch, threads) }
    }

    /// dw (+)= dy[o, B·P] · im2col(x)[K, B·P]ᵀ over one group of images, the copies split over
    /// `threads` by image and the GEMM on `threads`.
    static func accumulateFilterGroup(_ g: Geometry, _ images: Range<Int>, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                      dw: UnsafeMutablePointer<Float>, accumulate: Bool, scratch: ConvScratch.Entry,
                                      threads: Int) {
        let (k, p, inImage, outImage) = (g.patchSize, g.outputPixels, g.c * g.h * g.w, g.o * g.outputPixels)
        let columns = images.count * p
        let ld = columnStride(columns)
        let direct = images.count == 1
        let inPlace = g.isPointwise && direct
        let col = scratch.floats, gathered = scratch.floats + k * ld
        let chunkRows = filterChunkRows(g)
        if direct && !inPlace && chunkRows < g.oh {
            // One image in blocks of output rows: dw (+)= dy[:, block] · im2col(x)[:, block]ᵀ, the
            // block's column matrix still in L2 when the GEMM reads it.
            let image = images.lowerBound
            for first in stride(from: 0, to: g.oh, by: chunkRows) {
                let rows = first..<min(g.oh, first + chunkRows)
                let blockColumns = rows.count * g.ow, blockLd = columnStride(blockColumns)
                im2col(g, x: x + image * inImage, col: col, ld: blockLd, outputRows: rows)
                GEMM.sgemm(transposeA: false, transposeB: true, m: g.o, n: k, k: blockColumns,
                           a: dy + image * outImage + first * g.ow, lda: p, b: col, ldb: blockLd,
                           c: dw, ldc: k, accumulate: accumulate || first > 0, threads: threads,
                           workspace: ConvScratch.shared.fit(scratch, GEMM.workspaceFloats(transposeA: false, transposeB: true,
                                                                                           m: g.o, n: k, k: blockColumns)))
            }
            return
        }
        if !direct {
            // Copies only: how they are split over threads cannot change a result.
            Parallel.forEach(chunks: images.count, threads: threads) { slot in
                let image = images.lowerBound + slot
                im2col(g, x: x + image * inImage, col: col + slot * p, ld: ld)
                let source = dy + image * outImage
                for channel in 0..<g.o { copyFloats(gathered + channel * ld + slot * p, source + channel * p, p) }
            }
        } else if !inPlace {
            im2col(g, x: x + images.lowerBound * inImage, col: col, ld: ld)
        }
        GEMM.sgemm(transposeA: false, transposeB: true, m: g.o, n: k, k: columns,
                   a: direct ? dy + images.lowerBound * outImage : UnsafePointer(gathered), lda: direct ? p : ld,
                   b: inPlace ? x + images.lowerBound * inImage : UnsafePointer(col), ldb: inPlace ? p : ld,
                   c: dw, ldc: k, accumulate: accumulate, threads: threads,
                   workspace: ConvScratch.shared.fit(scratch, GEMM.workspaceFloats(transposeA: false, transposeB: true,
                                                                                   m: g.o, n: k, k: columns)))
    }

    /// Output rows per block of a one-image filter-gradient group (see `forwardChunkRows`); all
    /// of them when the group has several images.
    static func filterChunkRows(_ g: Geometry) -> Int {
        groupImages(g, .backwardFilter) == 1 ? forwardChunkRows(g) : g.oh
    }

    /// The larger of two workspace sizes in each part (a smaller product can take another GEMM
    /// path, which may pack what the larger reads in place).
    static func larger(_ a: (a: Int, b: Int), _ b: (a: Int, b: Int)) -> (a: Int, b: Int) { (max(a.a, b.a), max(a.b, b.b)) }

    /// dw[i] += partial 0[i] + partial 1[i] + … (`count` partials of `filter` floats, one after
    /// another), added in partition order (the bits of adding each partial to dw in turn), in one
    /// pass that reads each partial once, over ranges of dw split on `threads`. Layer4's shortcut
    /// filter gradient (seven 512 KB partials) had summed them on one thread, in seven passes.
    static func addPartials(_ dw: UnsafeMutablePointer<Float>, _ partials: UnsafePointer<Float>, count: Int, filter: Int,
                            threads: Int) {
        typealias V = SIMD16<Float>
        let vectors = (filter + 15) / 16
        // At least 4,096 floats a range: below that, waking a worker costs more than the sums.
        let ranges = max(1, min(threads, vectors / 256))
        Parallel.forEach(chunks: ranges, threads: threads) { range in
            let start = range * vectors / ranges * 16, end = min(filter, (range + 1) * vectors / ranges * 16)
            var i = start
            while i + 16 <= end {
                var sum = UnsafeRawPointer(dw + i).loadUnaligned(as: V.self)
                for part in 0..<count { sum += UnsafeRawPointer(partials + part * filter + i).loadUnaligned(as: V.self) }
                UnsafeMutableRawPointer(dw + i).storeBytes(of: sum, as: V.self)
                i += 16
            }
            while i < end {
                var sum = dw[i]
                for part in 0..<count { sum += partials[part * filter + i] }
                dw[i] = sum
                i += 1
            }
        }
    }

    /// Runs `body(group, gemmThreads)` for every group: one group per thread at a time with a
    /// one-thread GEMM when there are at least as many groups as threads, else the groups in
    /// turn with every thread on the GEMM.
    static func forEachGroup(_ count: Int, threads: Int, _ body: (Int, Int) -> Void) {
        if count >= threads && threads > 1 {
            Parallel.forEach(chunks: threads, threads: threads) { lane in
                for group in lane * count / threads..<(lane + 1) * count / threads { body(group, 1) }
            }
        } else {
            for group in 0..<count { body(group, threads) }
        }
    }
}

/// Scratch memory shared by every GEMM-path convolution in the process: a few entries, each a
/// float buffer plus a GEMM packing workspace, taken by a convolution call for its duration and
/// given back. An entry that is too small is regrown to the largest size requested so far, so
/// after a program's first steps every entry fits every request and no call allocates. There
/// are as many entries as calls ever ran at once (one per thread of a program).
final class ConvScratch: @unchecked Sendable {
    static let shared = ConvScratch()
    /// The Winograd filter gradient's own entries (its M and one block's transforms: 59 MB for
    /// ResNet-18's 512-channel layers). In `shared` they raised every entry to that size, and
    /// whichever entries that gradient happened to take were touched in full: ResNet-18 training's
    /// peak RSS went 924 → 1,042 MB.
    static let winogradFilter = ConvScratch()

    final class Entry {
        fileprivate(set) var floats: UnsafeMutablePointer<Float>
        fileprivate(set) var capacity: Int
        fileprivate(set) var gemm: GEMM.Workspace
        init(floats: Int, gemm: (a: Int, b: Int)) {
            capacity = floats
            self.floats = GEMM.allocateFloats(floats)
            self.gemm = ConvScratch.gemmWorkspace(gemm)
        }
        deinit { floats.deallocate() }
    }

    private let lock = PlatformLock()
    private var free: [Entry] = []
    private var largestFloats = 0
    private var largestGEMM = (a: 0, b: 0)

    /// An entry with at least `floats` floats and a GEMM workspace of at least `gemm` floats.
    ///
    /// Every entry is kept at the largest sizes requested so far: when a request raises them,
    /// the free entries are regrown at once, and an entry given back smaller is regrown before
    /// it is stored. Which entry a call gets depends on timing (how many threads joined the
    /// calls before, a caller running alone under contention), so an entry regrown only when it
    /// happened to be taken could still be regrown in a later step; this way sizes stop changing
    /// with the first step that requests them.
    func take(floats: Int, gemm: (a: Int, b: Int)) -> Entry {
        lock.lock()
        let grew = floats > largestFloats || gemm.a > largestGEMM.a || gemm.b > largestGEMM.b
        largestFloats = max(largestFloats, floats)
        largestGEMM = (max(largestGEMM.a, gemm.a), max(largestGEMM.b, gemm.b))
        let (wantFloats, wantGEMM) = (largestFloats, largestGEMM)
        if grew { for other in free { fitLargest(other, wantFloats, wantGEMM) } }
        let entry = free.popLast()
        lock.unlock()
        guard let entry else { return Entry(floats: wantFloats, gemm: wantGEMM) }
        fitLargest(entry, wantFloats, wantGEMM)
        return entry
    }

    /// Regrows `entry` to `floats` floats and a `gemm` workspace where it is smaller.
    private func fitLargest(_ entry: Entry, _ floats: Int, _ gemm: (a: Int, b: Int)) {
        if entry.capacity < floats {
            entry.floats.deallocate()
            entry.floats = GEMM.allocateFloats(floats)
            entry.capacity = floats
        }
        if entry.gemm.aCapacity < gemm.a || entry.gemm.bCapacity < gemm.b {
            entry.gemm = Self.gemmWorkspace(gemm)
        }
    }

    /// The entry's GEMM workspace, checked to hold `gemm` floats (it was sized for the largest request).
    func fit(_ entry: Entry, _ gemm: (a: Int, b: Int)) -> GEMM.Workspace {
        precondition(entry.gemm.aCapacity >= gemm.a && entry.gemm.bCapacity >= gemm.b, "ConvScratch: workspace too small")
        return entry.gemm
    }

    func give(_ entry: Entry) {
        lock.lock()
        fitLargest(entry, largestFloats, largestGEMM)
        free.append(entry)
        lock.unlock()
    }

    /// A GEMM workspace with at least `a` floats of packed A and `b` of packed B: the one of a
    /// packed product with A transposed and depth 1, whose packing needs ⌈m/mr⌉·mr and ⌈n/nr⌉·nr
    /// floats (m above `directBMaxM` so that B is packed).
    static func gemmWorkspace(_ floats: (a: Int, b: Int)) -> GEMM.Workspace {
        let workspace = GEMM.Workspace(transposeA: true, transposeB: false, m: max(floats.a, GEMM.directBMaxM + GEMM.mr),
                                       n: max(floats.b, 1), k: 1)
        precondition(workspace.aCapacity >= floats.a && workspace.bCapacity >= floats.b,
                     "ConvScratch: GEMM workspace sizing changed")
        return workspace
    }
}
