/// 2-D convolution over NCHW data with OIHW weights: direct correlation (`DirectConv2D`) for
/// few channels (a CIFAR stem's backward data, and its forward pass on 16 vector registers, read
/// their source in place instead: `ConvStemKernels.swift`), Winograd F(2×2, 3×3) for the forward
/// and backward-data passes of 3×3 stride-1 "same" convolutions with many channels
/// (`WinogradConv.swift`), one fused kernel for all three passes of ResNet's 1×1 stride-2
/// shortcuts (`ConvShortcutKernel.swift`), an implicit GEMM for the forward and backward-data
/// passes of other strided convolutions (`ConvImplicitKernel.swift`), else im2col over groups of
/// images and `GEMM.sgemm` (`ConvGEMM.swift`). The backward-filter pass of every convolution
/// with at least 16 output channels but a pointwise one runs an implicit GEMM that never
/// writes the column matrix (`ConvFilterKernel.swift`), vectorised over output pixels for a
/// stem's few input channels (`ConvPixelFilterKernel.swift`).
///
/// For one image, im2col lays the input out as `col[c·kh·kw, oh·ow]` (row `(ci, ky, kx)`
/// holds the input pixel each output position sees through that weight tap, or 0 in the
/// padding), so the convolution is `y = W[o, c·kh·kw] · col` (Chellapilla et al. 2006).
/// The two backward passes are the adjoint products: `dcol = Wᵀ · dy` followed by the
/// scatter-add col2im, and `dW = Σ_images dy · colᵀ`.
public enum Conv2DKernel {
    /// Sizes of one convolution. Shapes: x `[n, c, h, w]`, weight `[o, c, kh, kw]`,
    /// y `[n, o, oh, ow]`; cross-correlation as in PyTorch, zero padding.
    public struct Geometry: Hashable, Sendable {
        /// Batch size.
        public let n: Int
        /// Input channels.
        public let c: Int
        /// Input height.
        public let h: Int
        /// Input width.
        public let w: Int
        /// Output channels.
        public let o: Int
        /// Kernel height.
        public let kh: Int
        /// Kernel width.
        public let kw: Int
        /// Vertical stride.
        public let strideH: Int
        /// Horizontal stride.
        public let strideW: Int
        /// Zero rows added above and below the input.
        public let padH: Int
        /// Zero columns added left and right of the input.
        public let padW: Int

        /// Output height: `(h + 2·padH − kh) / strideH + 1`.
        public var oh: Int { (h + 2 * padH - kh) / strideH + 1 }
        /// Output width: `(w + 2·padW − kw) / strideW + 1`.
        public var ow: Int { (w + 2 * padW - kw) / strideW + 1 }

        /// Creates a geometry; the kernel must fit the padded input.
        public init(n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int,
                    strideH: Int = 1, strideW: Int = 1, padH: Int = 0, padW: Int = 0) {
            precondition(n >= 1 && c >= 1 && h >= 1 && w >= 1 && o >= 1 && kh >= 1 && kw >= 1,
                         "Conv2DKernel.Geometry: sizes must be positive")
            precondition(strideH >= 1 && strideW >= 1 && padH >= 0 && padW >= 0,
                         "Conv2DKernel.Geometry: bad stride or padding")
            precondition(h + 2 * padH >= kh && w + 2 * padW >= kw,
                         "Conv2DKernel.Geometry: kernel \(kh)x\(kw) larger than padded input")
            self.n = n; self.c = c; self.h = h; self.w = w; self.o = o; self.kh = kh; self.kw = kw
            self.strideH = strideH; self.strideW = strideW; self.padH = padH; self.padW = padW
        }

        /// Rows of the im2col matrix (the GEMM depth of the forward pass): `c·kh·kw`.
        var patchSize: Int { c * kh * kw }
        /// Output positions per image (columns of the im2col matrix).
        var outputPixels: Int { oh * ow }
        /// A 1×1, stride-1, unpadded convolution reads the image itself as its im2col matrix.
        var isPointwise: Bool { kh == 1 && kw == 1 && strideH == 1 && strideW == 1 && padH == 0 && padW == 0 }
        /// The kernel covers the whole unpadded image: one output pixel, a dense layer over c·h·w
        /// (`wholeImage`).
        var isWholeImage: Bool { kh == h && kw == w && padH == 0 && padW == 0 }
    }

    /// y = conv2d(x, weight). Parallel over the images of the batch (or inside the GEMM);
    /// every image's arithmetic is the same for any thread count. The direct path's scratch
    /// comes from `workspace` (made for `.forward`, this geometry and thread count), or is
    /// allocated for the call; the GEMM path's from `ConvScratch`.
    public static func forward(_ g: Geometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                               y: UnsafeMutablePointer<Float>, threads: Int, workspace: Workspace? = nil) {
        workspace?.check(.forward, g, threads: threads)
        if g.isWholeImage { return wholeImage(g, .forward, x, weight, y, threads: threads) }
        if StemForwardKernel.runs(g) { return StemForwardKernel.run(g, x: x, weight: weight, y: y, threads: threads) }
        if DirectConv2D.runs(g, .forward) {
            let problem = DirectConv2D.forwardProblem(g)
            DirectConv2D.correlate(problem, source: x, out: y, threads: threads, buffers: workspace?.direct) { o, c, ky, kx in
                weight[((o * g.c + c) * g.kh + ky) * g.kw + kx]
            }
            return
        }
        if ShortcutKernel.runs(g, .forward) {
            return ShortcutKernel.run(ShortcutKernel.Plan(g, forward: true), source: x, weight: weight, out: y, threads: threads)
        }
        if ImplicitKernel.runs(g, .forward) {
            return ImplicitKernel.run(ImplicitKernel.Plan(g, forward: true), source: x, weight: weight, out: y, threads: threads)
        }
        if Winograd.suits(g) { return winogradForward(g, x: x, weight: weight, y: y, threads: threads) }
        gemmForward(g, x: x, weight: weight, y: y, threads: threads)
    }

    /// dx = adjoint of forward in x (overwrites dx). Scratch as in `forward` (a workspace
    /// made for `.backwardData`).
    public static func backwardData(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    dx: UnsafeMutablePointer<Float>, threads: Int, workspace: Workspace? = nil) {
        workspace?.check(.backwardData, g, threads: threads)
        if g.isWholeImage { return wholeImage(g, .backwardData, dy, weight, dx, threads: threads) }
        if StemDataKernel.suits(g) { return StemDataKernel.run(g, dy: dy, weight: weight, dx: dx, threads: threads) }
        if DirectConv2D.runs(g, .backwardData) {
            let problem = DirectConv2D.backwardDataProblem(g)
            DirectConv2D.correlate(problem, source: dy, out: dx, threads: threads, buffers: workspace?.direct) { c, o, ky, kx in
                weight[((o * g.c + c) * g.kh + g.kh - 1 - ky) * g.kw + g.kw - 1 - kx]
            }
            return
        }
        if ShortcutKernel.runs(g, .backwardData) {
            return ShortcutKernel.run(ShortcutKernel.Plan(g, forward: false), source: dy, weight: weight, out: dx, threads: threads)
        }
        if ImplicitKernel.runs(g, .backwardData) {
            return ImplicitKernel.run(ImplicitKernel.Plan(g, forward: false), source: dy, weight: weight, out: dx, threads: threads)
        }
        if Winograd.suits(g) { return winogradBackwardData(g, dy: dy, weight: weight, dx: dx, threads: threads) }
        gemmBackwardData(g, dy: dy, weight: weight, dx: dx, threads: threads)
    }

    /// dw = adjoint of forward in weight (overwrites dw), summed over the batch in a fixed
    /// order.
    ///
    /// Images are summed in groups whose size depends on the geometry only, in group order,
    /// so the result is the same bits for any thread count. Scratch as in `forward` (a
    /// workspace made for `.backwardFilter`).
    public static func backwardFilter(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                      dw: UnsafeMutablePointer<Float>, threads: Int, workspace: Workspace? = nil) {
        workspace?.check(.backwardFilter, g, threads: threads)
        if g.isWholeImage { return wholeImage(g, .backwardFilter, dy, x, dw, threads: threads) }
        if WinogradFilter.suits(g) { return winogradBackwardFilter(g, x: x, dy: dy, dw: dw, threads: threads) }
        if ShortcutKernel.runs(g, .backwardFilter) {
            return ShortcutKernel.backwardFilter(g, x: x, dy: dy, dw: dw, threads: threads)
        }
        if PixelFilterKernel.runs(g) {
            PixelFilterKernel.run(g, x: x, dy: dy, dw: dw, threads: threads)
            return
        }
        if FilterKernel.runs(g) {
            FilterKernel.run(g, x: x, dy: dy, dw: dw, threads: threads)
            return
        }
        if DirectConv2D.runs(g, .backwardFilter) {
            DirectConv2D.backwardFilter(g, x: x, dy: dy, dw: dw, threads: threads, buffers: workspace?.direct)
            return
        }
        gemmBackwardFilter(g, x: x, dy: dy, dw: dw, threads: threads)
    }

    /// Range of output columns `ox` whose input column `ox·stride − pad + tap` lies in `0..<size`.
    @inline(__always)
    static func validOutputs(tap: Int, stride: Int, pad: Int, size: Int, outputs: Int) -> Range<Int> {
        // ox·stride ≥ pad − tap and ox·stride ≤ size − 1 + pad − tap.
        let low = max(0, (pad - tap + stride - 1) / stride)
        let highNumerator = size - 1 + pad - tap
        let high = highNumerator < 0 ? 0 : min(outputs, highNumerator / stride + 1)
        return low..<max(low, high)
    }

    /// Fills `col[c·kh·kw, oh·ow]` (rows `ld` floats apart) for one image `x[c, h, w]`.
    /// With `outputRows`, only the columns of those output rows (`outputRows.count·ow` per row of col).
    static func im2col(_ g: Geometry, x: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, ld: Int,
                       outputRows: Range<Int>? = nil) {
        let (oh, ow) = (g.oh, g.ow)
        let outputRows = outputRows ?? 0..<oh
        // Stride 1 with output rows as wide as input rows ("same" padding): a tap's rows of col
        // are the input plane shifted by a constant, so they are one copy, then the padding
        // columns are zeroed (row by row copies of 4–32 floats cost more than the copy itself).
        let shifted = g.strideH == 1 && g.strideW == 1 && ow == g.w
        var row = col
        for channel in 0..<g.c {
            let plane = x + channel * g.h * g.w
            for ky in 0..<g.kh {
                let rows = validOutputs(tap: ky, stride: g.strideH, pad: g.padH, size: g.h, outputs: oh)
                for kx in 0..<g.kw {
                    let columns = validOutputs(tap: kx, stride: g.strideW, pad: g.padW, size: g.w, outputs: ow)
                    if shifted {
                        im2colShiftedTap(g, plane: plane, ky: ky, kx: kx, rows: rows, columns: columns,
                                         block: outputRows, out: row)
                        row += ld
                        continue
                    }
                    for oy in outputRows {
                        let out = row + (oy - outputRows.lowerBound) * ow
                        guard rows.contains(oy), !columns.isEmpty else {
                            zeroFloats(out, ow)
                            continue
                        }
                        let source = plane + (oy * g.strideH - g.padH + ky) * g.w - g.padW + kx
                        zeroFloats(out, columns.lowerBound)
                        if g.strideW == 1 {
                            copyFloats(out + columns.lowerBound, source + columns.lowerBound, columns.count)
                        } else if g.strideW == 2 {
                            copyEvenFloats(out, source, columns, sourceEnd: g.w + g.padW - kx)
                        } else {
                            for ox in columns { out[ox] = source[ox * g.strideW] }
                        }
                        zeroFloats(out + columns.upperBound, ow - columns.upperBound)
                    }
                    row += ld
                }
            }
        }
    }

    /// One tap's rows of col (output rows `block`) for stride 1 and `ow == w`: output j of the
    /// block reads input `j + (ky − padH)·w + kx − padW` of the plane, for the rows `rows` and
    /// columns `columns` that see the image; everything else is zero.
    @inline(__always)
    static func im2colShiftedTap(_ g: Geometry, plane: UnsafePointer<Float>, ky: Int, kx: Int, rows: Range<Int>,
                                 columns: Range<Int>, block: Range<Int>, out: UnsafeMutablePointer<Float>) {
        let ow = g.ow
        let low = max(rows.lowerBound, block.lowerBound), high = max(low, min(rows.upperBound, block.upperBound))
        zeroFloats(out, (low - block.lowerBound) * ow)
        zeroFloats(out + (high - block.lowerBound) * ow, (block.upperBound - high) * ow)
        let live = out + (low - block.lowerBound) * ow
        guard high > low else { return }
        guard !columns.isEmpty else {
            zeroFloats(live, (high - low) * ow)
            return
        }
        let shift = kx - g.padW
        let first = max(0, -shift), end = (high - low) * ow - max(0, shift)
        let source = plane + (low - g.padH + ky) * g.w + shift
        copyFloats(live + first, source + first, end - first)
        // The copy ran across row ends: zero the columns that see the padding.
        for oy in 0..<(high - low) {
            let r = live + oy * ow
            for ox in 0..<columns.lowerBound { r[ox] = 0 }
            for ox in columns.upperBound..<ow { r[ox] = 0 }
        }
    }

    /// `out[ox] = source[2·ox]` for `ox` in `columns`, 8 (then 4) at a time from 16 (8)
    /// consecutive floats while they end before `source[sourceEnd]`, the rest one by one.
    @inline(__always)
    static func copyEvenFloats(_ out: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, _ columns: Range<Int>,
                               sourceEnd: Int) {
        var ox = columns.lowerBound
        while ox + 8 <= columns.upperBound && 2 * ox + 16 <= sourceEnd {
            let v = UnsafeRawPointer(source + 2 * ox).loadUnaligned(as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(out + ox).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
            ox += 8
        }
        while ox + 4 <= columns.upperBound && 2 * ox + 8 <= sourceEnd {
            let v = UnsafeRawPointer(source + 2 * ox).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(out + ox).storeBytes(of: v.evenHalf, as: SIMD4<Float>.self)
            ox += 4
        }
        while ox < columns.upperBound {
            out[ox] = source[2 * ox]
            ox += 1
        }
    }

    /// Overwrites one image `dx[c, h, w]` with the scatter-add of `col[c·kh·kw, oh·ow]` (rows
    /// `ld` floats apart): the adjoint of `im2col`, adding taps in row order. With
    /// `outputRows`, col holds only those output rows' columns (`outputRows.count·ow` per row
    /// of col) and they are added to dx, which is not cleared first.
    static func col2im(_ g: Geometry, col: UnsafePointer<Float>, ld: Int, dx: UnsafeMutablePointer<Float>,
                       outputRows: Range<Int>? = nil) {
        let (oh, ow) = (g.oh, g.ow)
        if outputRows == nil && g.kh == 1 && g.kw == 1 && g.padH == 0 && g.padW == 0 {
            // An unpadded 1×1 layer (a ResNet shortcut, or a pointwise layer's group of images):
            // each row of dx is written once, in order, as the spread of one row of col or zeros;
            // no clearing pass, no scattered adds.
            // Rows by output row, not by a division per input row (layer4's 8×8 planes: 8 rows
            // of 8 floats each, where the division cost as much as the stores).
            let (sh, w) = (g.strideH, g.w)
            for channel in 0..<g.c {
                let plane = dx + channel * g.h * w, source = col + channel * ld
                for oy in 0..<oh {
                    let line = plane + oy * sh * w
                    spreadFloats(line, source + oy * ow, count: ow, stride: g.strideW, width: w)
                    for gap in 1..<sh where oy * sh + gap < g.h { zeroFloats(line + gap * w, w) }
                }
                // No rows after the last gap: unpadded, oh = (h − 1) / sh + 1, so oh·sh ≥ h.
            }
            return
        }
        if outputRows == nil { dx.update(repeating: 0, count: g.c * g.h * g.w) }
        let block = outputRows ?? 0..<oh
        var row = col
        for channel in 0..<g.c {
            let plane = dx + channel * g.h * g.w
            for ky in 0..<g.kh {
                let valid = validOutputs(tap: ky, stride: g.strideH, pad: g.padH, size: g.h, outputs: oh)
                let rows = max(valid.lowerBound, block.lowerBound)..<max(max(valid.lowerBound, block.lowerBound),
                                                                         min(valid.upperBound, block.upperBound))
                for kx in 0..<g.kw {
                    let columns = validOutputs(tap: kx, stride: g.strideW, pad: g.padW, size: g.w, outputs: ow)
                    for oy in rows {
                        let input = row + (oy - block.lowerBound) * ow
                        let target = plane + (oy * g.strideH - g.padH + ky) * g.w - g.padW + kx
                        if g.strideW == 1 {
                            let (to, from) = (target + columns.lowerBound, input + columns.lowerBound)
                            for i in 0..<columns.count { to[i] += from[i] }
                        } else {
                            for ox in columns { target[ox * g.strideW] += input[ox] }
                        }
                    }
                    row += ld
                }
            }
        }
    }

    // A libc memcpy/memset call per image row (often under 32 floats) costs more than the
    // copy itself, and LLVM turns plain copy loops into those calls; explicit vector moves
    // avoid both.

    /// Copies `count` floats between non-overlapping ranges.
    @inline(__always)
    static func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(
                of: UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
            i += 16
        }
        while i + 4 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(
                of: UnsafeRawPointer(src + i).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
            i += 4
        }
        if i < count { dst[i] = src[i] }
        if i + 1 < count { dst[i + 1] = src[i + 1] }
        if i + 2 < count { dst[i + 2] = src[i + 2] }
    }

    /// `line[0..<width]` = `source[j]` at `j·stride` for j in 0..<count, zero elsewhere
    /// (`(count − 1)·stride < width`); stride 1 as one copy, stride 2 eight (then four) floats at a time.
    @inline(__always)
    static func spreadFloats(_ line: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int, stride: Int,
                             width: Int) {
        if stride == 1 {
            copyFloats(line, source, count)
            zeroFloats(line + count, width - count)
            return
        }
        var j = 0
        if stride == 2 {
            while j + 8 <= count && 2 * j + 16 <= width {
                var spread = SIMD16<Float>()
                spread.evenHalf = UnsafeRawPointer(source + j).loadUnaligned(as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(line + 2 * j).storeBytes(of: spread, as: SIMD16<Float>.self)
                j += 8
            }
            while j + 4 <= count && 2 * j + 8 <= width {
                var spread = SIMD8<Float>()
                spread.evenHalf = UnsafeRawPointer(source + j).loadUnaligned(as: SIMD4<Float>.self)
                UnsafeMutableRawPointer(line + 2 * j).storeBytes(of: spread, as: SIMD8<Float>.self)
                j += 4
            }
        }
        zeroFloats(line + j * stride, width - j * stride)
        while j < count {
            line[j * stride] = source[j]
            j += 1
        }
    }

    /// Sets `count` floats to zero.
    @inline(__always)
    static func zeroFloats(_ dst: UnsafeMutablePointer<Float>, _ count: Int) {
        var i = 0
        while i + 16 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
            i += 16
        }
        while i + 4 <= count {
            UnsafeMutableRawPointer(dst + i).storeBytes(of: SIMD4<Float>(), as: SIMD4<Float>.self)
            i += 4
        }
        if i < count { dst[i] = 0 }
        if i + 1 < count { dst[i + 1] = 0 }
        if i + 2 < count { dst[i + 2] = 0 }
    }
}
