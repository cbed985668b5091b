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
        forEachPlane(g, threads: threads) { plane in
            let xPlane = x + plane * g.h * g.w, dxPlane = dx + plane * g.h * g.w
            let dyPlane = dy + plane * g.oh * g.ow
            dxPlane.update(repeating: 0, count: g.h * g.w)
            for oy in 0..<g.oh {
                for ox in 0..<g.ow {
                    dxPlane[firstMaximum(g, xPlane, oy, ox)] += dyPlane[oy * g.ow + ox]
                }
            }
        }
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
