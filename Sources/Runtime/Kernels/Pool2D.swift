/// 2-D max and average pooling over NCHW data, without padding.
///
/// Every channel plane is independent, so the kernels run parallel over planes; a plane's
/// windows are visited in row-major order by one thread, which fixes the order in which
/// overlapping windows add into the same input pixel.
public enum Pool2DKernel {
    /// Sizes of one pooling. x is `[n, c, h, w]`, y is `[n, c, oh, ow]`.
    public struct Geometry: Hashable, Sendable {
        /// Batch size.
        public let n: Int
        /// Channels.
        public let c: Int
        /// Input height.
        public let h: Int
        /// Input width.
        public let w: Int
        /// Window height.
        public let kh: Int
        /// Window width.
        public let kw: Int
        /// Vertical stride.
        public let strideH: Int
        /// Horizontal stride.
        public let strideW: Int

        /// Output height: `(h − kh) / strideH + 1`.
        public var oh: Int { (h - kh) / strideH + 1 }
        /// Output width: `(w − kw) / strideW + 1`.
        public var ow: Int { (w - kw) / strideW + 1 }

        /// A 2×2 window with stride 2: windows tile the input, the common CNN down-sampling.
        var isHalving: Bool { kh == 2 && kw == 2 && strideH == 2 && strideW == 2 }

        /// Creates a geometry; the window must fit the input. The stride defaults to the window.
        public init(n: Int, c: Int, h: Int, w: Int, kh: Int, kw: Int, strideH: Int? = nil, strideW: Int? = nil) {
            precondition(n >= 1 && c >= 1 && kh >= 1 && kw >= 1 && h >= kh && w >= kw,
                         "Pool2DKernel.Geometry: window \(kh)x\(kw) does not fit \(h)x\(w)")
            self.n = n; self.c = c; self.h = h; self.w = w; self.kh = kh; self.kw = kw
            self.strideH = strideH ?? kh; self.strideW = strideW ?? kw
            precondition(self.strideH >= 1 && self.strideW >= 1, "Pool2DKernel.Geometry: stride must be positive")
        }
    }

    /// y = the maximum of each window (NaN-free inputs assumed: comparisons skip NaN).
    public static func maxForward(_ g: Geometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                  threads: Int) {
        if g.isHalving {
            let total = g.n * g.c * g.h * g.w
            forEachPlane(g, threads: threads) { plane in
                for oy in 0..<g.oh {
                    halvingForwardRow(g, x, total, (plane * g.h + 2 * oy) * g.w, y + (plane * g.oh + oy) * g.ow)
                }
            }
            return
        }
        forEachPlane(g, threads: threads) { plane in
            let xPlane = x + plane * g.h * g.w, yPlane = y + plane * g.oh * g.ow
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    yPlane[oy * g.ow + ox] = xPlane[firstMaximum(g, xPlane, oy, ox)]
                }
            }
        }
    }

    /// dy routed to the FIRST maximum (row-major within the window) of each window, summed
    /// over overlaps; overwrites dx.
    public static func maxBackward(_ g: Geometry, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                                   dx: UnsafeMutablePointer<Float>, threads: Int) {
        let disjoint2x2 = g.kh == 2 && g.kw == 2 && g.strideH == 2 && g.strideW == 2
        forEachPlane(g, threads: threads) { plane in
            let xPlane = x + plane * g.h * g.w, dxPlane = dx + plane * g.h * g.w
            let dyPlane = dy + plane * g.oh * g.ow
            if disjoint2x2 {
                maxBackward2x2(g, xPlane, dyPlane, dxPlane)
                return
            }
            dxPlane.update(repeating: 0, count: g.h * g.w)
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    dxPlane[firstMaximum(g, xPlane, oy, ox)] += dyPlane[oy * g.ow + ox]
                }
            }
        }
    }

    /// Non-overlapping 2×2 windows: every dx element is written exactly once (dy at the window's
    /// first maximum in row-major order, 0 elsewhere), with no zero fill and no scatter.
    @inline(__always)
    static func maxBackward2x2(_ g: Geometry, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                               _ dx: UnsafeMutablePointer<Float>) {
        let w = g.w
        for oy in 0..<g.oh {
            let r0 = x + 2 * oy * w, r1 = r0 + w
            let d0 = dx + 2 * oy * w, d1 = d0 + w
            let gradients = dy + oy * g.ow
            for ox in 0..<g.ow {
                let c = 2 * ox
                let a = r0[c], b = r0[c + 1], e = r1[c], f = r1[c + 1]
                // First maximum with strict comparisons, as `firstMaximum`; selects rather than
                // branches, because which corner wins is data-dependent and unpredictable.
                let takeB = b > a
                let best1 = takeB ? b : a
                let takeE = e > best1
                let best2 = takeE ? e : best1
                let takeF = f > best2
                let v = gradients[ox]
                let index = takeF ? 3 : (takeE ? 2 : (takeB ? 1 : 0))
                d0[c] = index == 0 ? v : 0
                d0[c + 1] = index == 1 ? v : 0
                d1[c] = index == 2 ? v : 0
                d1[c + 1] = index == 3 ? v : 0
            }
            // An odd width leaves a last column no window covers.
            if w > 2 * g.ow { d0[w - 1] = 0; d1[w - 1] = 0 }
        }
        // An odd height leaves a last row no window covers.
        if g.h > 2 * g.oh { (dx + (g.h - 1) * w).update(repeating: 0, count: w) }
    }

    /// out[window] = source at that window's first-maximum position (source has x's shape).
    public static func maxGather(_ g: Geometry, x: UnsafePointer<Float>, source: UnsafePointer<Float>,
                                 out: UnsafeMutablePointer<Float>, threads: Int) {
        forEachPlane(g, threads: threads) { plane in
            let xPlane = x + plane * g.h * g.w, sourcePlane = source + plane * g.h * g.w
            let outPlane = out + plane * g.oh * g.ow
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    outPlane[oy * g.ow + ox] = sourcePlane[firstMaximum(g, xPlane, oy, ox)]
                }
            }
        }
    }

    /// y = the mean of each window (sum in row-major order, divided by kh·kw).
    public static func avgForward(_ g: Geometry, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                                  threads: Int) {
        let count = Float(g.kh * g.kw)
        forEachPlane(g, threads: threads) { plane in
            let xPlane = x + plane * g.h * g.w, yPlane = y + plane * g.oh * g.ow
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    let corner = xPlane + oy * g.strideH * g.w + ox * g.strideW
                    var sum: Float = 0
                    for ky in 0..<g.kh {
                        for kx in 0..<g.kw { sum += corner[ky * g.w + kx] }
                    }
                    yPlane[oy * g.ow + ox] = sum / count
                }
            }
        }
    }

    /// dx = adjoint of avgForward: each window spreads dy/(kh·kw) over its pixels, summed
    /// over overlaps; overwrites dx.
    public static func avgBackward(_ g: Geometry, dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>,
                                   threads: Int) {
        let count = Float(g.kh * g.kw)
        forEachPlane(g, threads: threads) { plane in
            let dxPlane = dx + plane * g.h * g.w, dyPlane = dy + plane * g.oh * g.ow
            dxPlane.update(repeating: 0, count: g.h * g.w)
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    let share = dyPlane[oy * g.ow + ox] / count
                    let corner = dxPlane + oy * g.strideH * g.w + ox * g.strideW
                    for ky in 0..<g.kh {
                        for kx in 0..<g.kw { corner[ky * g.w + kx] += share }
                    }
                }
            }
        }
    }

    /// One output row of a 2×2, stride-2 max pool: `x` rows `top` and `top + w` into `out`.
    ///
    /// Sixteen windows at a time: two 32-float loads per input row split into even and odd
    /// columns, compared in the window's row-major order with a strict `>` so ties keep the
    /// first value, exactly as `firstMaximum`. A load may run into the next row (its lanes
    /// are never stored) but never past `total`, the end of x.
    @inline(__always)
    static func halvingForwardRow(_ g: Geometry, _ x: UnsafePointer<Float>, _ total: Int, _ top: Int,
                                  _ out: UnsafeMutablePointer<Float>) {
        var ox = 0
        while ox < g.ow && top + g.w + 2 * ox + 32 <= total {
            let r0 = UnsafeRawPointer(x + top + 2 * ox).loadUnaligned(as: SIMD32<Float>.self)
            let r1 = UnsafeRawPointer(x + top + g.w + 2 * ox).loadUnaligned(as: SIMD32<Float>.self)
            var best = r0.evenHalf
            best.replace(with: r0.oddHalf, where: r0.oddHalf .> best)
            best.replace(with: r1.evenHalf, where: r1.evenHalf .> best)
            best.replace(with: r1.oddHalf, where: r1.oddHalf .> best)
            storeFirst(min(16, g.ow - ox), of: best, to: out + ox)
            ox += 16
        }
        while ox < g.ow {
            defer { ox += 1 }
            let p = x + top + 2 * ox
            var best = p[0]
            if p[1] > best { best = p[1] }
            if p[g.w] > best { best = p[g.w] }
            if p[g.w + 1] > best { best = p[g.w + 1] }
            out[ox] = best
        }
    }

    /// Stores the first `count` (1...16) lanes of `v` in pieces of 8, 4, 2 and 1 lanes taken
    /// from registers. Lane by lane, the vector went through the stack and each 4-byte reload
    /// of a 32-byte store stalled: on an AMD EPYC (Zen 1) that made this pooling 20 % of
    /// LeNet-5's inference, whose rows are 14 and 5 outputs long.
    @inline(__always)
    static func storeFirst(_ count: Int, of v: SIMD16<Float>, to out: UnsafeMutablePointer<Float>) {
        let raw = UnsafeMutableRawPointer(out)
        if count >= 16 {
            raw.storeBytes(of: v, as: SIMD16<Float>.self)
            return
        }
        var offset = 0
        var eight = v.lowHalf
        if count & 8 != 0 {
            raw.storeBytes(of: eight, as: SIMD8<Float>.self)
            offset = 32
            eight = v.highHalf
        }
        var four = eight.lowHalf
        if count & 4 != 0 {
            raw.storeBytes(of: four, toByteOffset: offset, as: SIMD4<Float>.self)
            offset += 16
            four = eight.highHalf
        }
        var two = four.lowHalf
        if count & 2 != 0 {
            raw.storeBytes(of: two, toByteOffset: offset, as: SIMD2<Float>.self)
            offset += 8
            two = four.highHalf
        }
        if count & 1 != 0 { raw.storeBytes(of: two.x, toByteOffset: offset, as: Float.self) }
    }

    /// Offset within a plane of the first maximum (row-major) of window (oy, ox).
    @inline(__always)
    static func firstMaximum(_ g: Geometry, _ plane: UnsafePointer<Float>, _ oy: Int, _ ox: Int) -> Int {
        var best = oy * g.strideH * g.w + ox * g.strideW
        var bestValue = plane[best]
        for ky in 0..<g.kh {
            let rowStart = (oy * g.strideH + ky) * g.w + ox * g.strideW
            for kx in 0..<g.kw where plane[rowStart + kx] > bestValue {
                best = rowStart + kx
                bestValue = plane[best]
            }
        }
        return best
    }

    /// Runs `body(plane)` for every (image, channel) plane. Small problems run inline
    /// because waking workers costs more than the loop; planes are independent, so the
    /// split never changes a result.
    static func forEachPlane(_ g: Geometry, threads: Int, _ body: (Int) -> Void) {
        let planes = g.n * g.c
        let threads = planes * g.h * g.w >= 1 << 15 ? threads : 1
        let chunks = min(planes, threads * 4)
        Parallel.forEach(chunks: chunks, threads: threads) { chunk in
            for plane in chunk * planes / chunks..<(chunk + 1) * planes / chunks { body(plane) }
        }
    }
}
