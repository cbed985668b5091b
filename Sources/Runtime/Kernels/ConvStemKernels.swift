import CPlatform

/// The backward-data pass of a CIFAR stem: a 3×3, stride-1, padding-1 convolution into at most
/// 3 channels on rows of 32 pixels (`suits`), reading dy in place.
///
/// `dx[c, y, x] = Σ_o Σ_ky Σ_kx W[o, c, ky, kx] · dy[o, y + 1 − ky, x + 1 − kx]`, zero outside
/// dy. Rows of dx are taken a band at a time (the rows 4 vectors cover: 1 with 8 lanes, 2 with
/// 16), in two steps:
/// - `zBand` sums, for each channel c and tap kx, `Z[c, kx][r, u] = Σ_o Σ_ky W[o, c, ky, kx] ·
///   dy[o, r + 1 − ky, u]` over dy's unshifted rows (ky moves whole rows: aligned loads; a row
///   past the image reads zeros): 3 taps × 4 vectors (12 accumulators), fed per (o, ky) by 3
///   broadcasts of W and 4 loads;
/// - dx[c, r, x] = Z[c, 0][r, x + 1] + Z[c, 1][r, x] + Z[c, 2][r, x − 1], zero past the row's
///   ends (`band`).
/// With the shift after the sum, one broadcast of W serves 4 vectors. The tiles this replaces
/// shifted dy on load and broadcast W for every multiply-add or two (AVX2: 4 rows × 3 channels × 8
/// pixels; AVX-512: 3 rows × 3 channels × 2 vectors): on an AMD EPYC (Zen 4) 3.9–4.4 and 2.8–2.9
/// ms on ResNet-18's stem at batch 128, against 2.4 and 2.3 ms here.
///
/// Every dx element is summed over o, ky in order, then over kx in a fixed order: results never
/// depend on the thread count (threads split images).
extension Conv2DKernel {
    enum StemDataKernel {
        /// Whether the backward-data pass of a geometry runs here.
        static func suits(_ g: Geometry) -> Bool {
            g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == 1 && g.padW == 1
                && g.c <= 3 && g.w == 32
        }

        /// For tables.
        static func algorithm(_ g: Geometry) -> String { "shifted sums, 3 kx x 4 vectors" }

        /// dx = the backward-data pass over the batch, images split over `threads`. Past
        /// `residentBytes` of dy (half the last-level cache) each image's dy comes from memory, 64
        /// rows at once: the rows the next band reads are prefetched.
        static func run(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        dx: UnsafeMutablePointer<Float>, threads: Int, residentBytes: Int = ShortcutKernel.cacheResidentBytes) {
            let chunks = min(g.n, max(1, threads) * 4)
            let prefetch = g.n * g.o * g.h * 32 * MemoryLayout<Float>.stride >= residentBytes
            withPaddedWeights(g, weight) { w in
                Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                    // Z (`band`), once a chunk: past 1 KB a temporary allocation is on the heap, and
                    // one a band cost a malloc and a free each (1–2 % of the pass).
                    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 3 * 3 * 2 * 6) { z in
                        let z = UnsafeMutableRawPointer(z.baseAddress!)
                        for image in chunk * g.n / chunks..<(chunk + 1) * g.n / chunks {
                            let source = dy + image * g.o * g.h * 32, target = dx + image * g.c * g.h * 32
                            if ISA.Vector.scalarCount == 16 {
                                for y in stride(from: 0, to: g.h, by: 2) {
                                    band(g, y, source, w, target, z, prefetch: prefetch, SIMD16<Float>.self)
                                }
                            } else {
                                for y in 0..<g.h { band(g, y, source, w, target, z, prefetch: prefetch, SIMD8<Float>.self) }
                            }
                        }
                    }
                }
            }
        }

        /// dx rows `y ..< y + r` (those below h are not stored; r the rows 4 vectors of V cover) of
        /// every channel: `zBand` for each channel, then the shifted sum of its three taps. Z is
        /// at `base` (room for 3 · 3 · 2 rows of 48 floats).
        @inline(__always)
        static func band<V: SIMD>(_ g: Geometry, _ y: Int, _ dy: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                  _ dx: UnsafeMutablePointer<Float>, _ base: UnsafeMutableRawPointer, prefetch: Bool,
                                  _: V.Type) where V.Scalar == Float {
            typealias E = SIMD8<Float>
            let rows = max(1, 4 * V.scalarCount / 32), size = MemoryLayout<Float>.stride
            // Z's rows with 8 zeros either side: [c][kx][row][48], a row's pixels at 8.
            let zRow = 48 * size, zTap = rows * zRow, zChannel = 3 * zTap
            for c in 0..<g.c {
                zBand(g, y, c, dy, weight, base + c * zChannel, prefetch: prefetch && c == 0, V.self)
            }
            let plane = g.h * 32
            for r in 0..<min(rows, g.h - y) {
                for c in 0..<g.c {
                    let zc = UnsafeRawPointer(base + c * zChannel + r * zRow)
                    for v in 0..<4 {
                        let at = (8 + 8 * v) * size
                        var sum = zc.loadUnaligned(fromByteOffset: at + size, as: E.self)
                        sum += zc.loadUnaligned(fromByteOffset: zTap + at, as: E.self)
                        sum += zc.loadUnaligned(fromByteOffset: 2 * zTap + at - size, as: E.self)
                        UnsafeMutableRawPointer(dx + c * plane + (y + r) * 32 + 8 * v).storeBytes(of: sum, as: E.self)
                    }
                }
            }
        }

        /// 32 zeros: the dy row above and below the image.
        static let zeroRow: UnsafePointer<Float> = {
            let row = UnsafeMutablePointer<Float>.allocate(capacity: 32)
            row.initialize(repeating: 0, count: 32)
            return UnsafePointer(row)
        }()

        /// One channel's `Z[c, kx]` for dx rows `y ..< y + r` (see `band`) at `z`
        /// (`[kx][row][48]`, a row's pixels at 8, zeros stored either side): 3 taps × 4 vectors (12
        /// accumulators), fed per (o, ky) by 3 broadcasts of W and 4 loads of dy rows (a row past
        /// the image reads `zeroRow`). Its depth is every o and ky. With `prefetch`, dy's rows that
        /// the next band reads first are fetched into L2.
        @inline(never)
        static func zBand<V: SIMD>(_ g: Geometry, _ y: Int, _ c: Int, _ dy: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                   _ z: UnsafeMutableRawPointer, prefetch: Bool, _: V.Type) where V.Scalar == Float {
            let step = MemoryLayout<V>.stride, plane = g.h * 32, perRow = 32 / V.scalarCount
            let rows = max(1, 4 / perRow)
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), b0 = V(), b1 = V(), b2 = V(), b3 = V()
            var c0 = V(), c1 = V(), c2 = V(), c3 = V()
            let ahead = prefetch && y + rows + 1 < g.h ? (y + rows + 1) * 32 : -1
            let zero = UnsafeRawPointer(zeroRow)  // read once: a global's lazy check in the loop spilled every accumulator
            @inline(__always) func row(_ channel: UnsafePointer<Float>, _ r: Int) -> UnsafeRawPointer {
                r >= 0 && r < g.h ? UnsafeRawPointer(channel + r * 32) : zero
            }
            for o in 0..<g.o {
                let channel = dy + o * plane
                if ahead >= 0 {
                    for line in 0..<rows * 2 { kiln_prefetch_l2(channel + ahead + line * 16) }
                }
                let w = weight + o * 27 + c * 9
                @inline(__always) func taps(_ ky: Int) {
                    // Vector j: pixels (j % perRow)·lanes of dx row y + j / perRow, from dy row y + j / perRow + 1 − ky.
                    let p0 = row(channel, y + 1 - ky), p1 = rows > 1 ? row(channel, y + 2 - ky) : p0
                    let q1 = perRow > 1 ? p0 + step : p1, q2 = perRow > 2 ? p0 + 2 * step : p1
                    let q3 = perRow > 2 ? p0 + 3 * step : p1 + step
                    let k0 = V(repeating: w[ky * 3]), k1 = V(repeating: w[ky * 3 + 1]), k2 = V(repeating: w[ky * 3 + 2])
                    var d = p0.loadUnaligned(as: V.self)
                    multiplyAdd(&a0, k0, d); multiplyAdd(&b0, k1, d); multiplyAdd(&c0, k2, d)
                    d = q1.loadUnaligned(as: V.self)
                    multiplyAdd(&a1, k0, d); multiplyAdd(&b1, k1, d); multiplyAdd(&c1, k2, d)
                    d = q2.loadUnaligned(as: V.self)
                    multiplyAdd(&a2, k0, d); multiplyAdd(&b2, k1, d); multiplyAdd(&c2, k2, d)
                    d = q3.loadUnaligned(as: V.self)
                    multiplyAdd(&a3, k0, d); multiplyAdd(&b3, k1, d); multiplyAdd(&c3, k2, d)
                }
                taps(0); taps(1); taps(2)
            }
            // Vector j of tap kx at row j / perRow, pixels (j % perRow)·lanes, of Z's [kx][row][48].
            let zRow = 48 * MemoryLayout<Float>.stride
            @inline(__always) func store(_ kx: Int, _ v0: V, _ v1: V, _ v2: V, _ v3: V) {
                let t = z + kx * rows * zRow
                for r in 0..<rows {
                    (t + r * zRow).storeBytes(of: SIMD8<Float>(), as: SIMD8<Float>.self)
                    (t + r * zRow + 40 * MemoryLayout<Float>.stride).storeBytes(of: SIMD8<Float>(), as: SIMD8<Float>.self)
                }
                let at = 8 * MemoryLayout<Float>.stride
                @inline(__always) func put(_ j: Int, _ v: V) {
                    (t + (j / perRow) * zRow + at + (j % perRow) * step).storeBytes(of: v, as: V.self)
                }
                put(0, v0); put(1, v1); put(2, v2); put(3, v3)
            }
            store(0, a0, a1, a2, a3); store(1, b0, b1, b2, b3); store(2, c0, c1, c2, c3)
        }

        /// Calls `body` with W laid out as `[o][3 channels][3][3]` (27 floats an o): W itself
        /// when c = 3, else a copy with zero channels after c.
        static func withPaddedWeights(_ g: Geometry, _ weight: UnsafePointer<Float>, _ body: (UnsafePointer<Float>) -> Void) {
            if g.c == 3 { return body(weight) }
            withUnsafeTemporaryAllocation(of: Float.self, capacity: g.o * 27) { padded in
                for o in 0..<g.o {
                    for i in 0..<27 { padded[o * 27 + i] = i / 9 < g.c ? weight[o * g.c * 9 + i] : 0 }
                }
                body(UnsafePointer(padded.baseAddress!))
            }
        }
    }
}

/// The forward pass of a CIFAR stem: a 3×3, stride-1, padding-1 convolution of at most 3
/// channels on rows of 32 pixels (`StemDataKernel.suits`).
///
/// `y[o, t] = Σ_c Σ_ky Σ_kx W[o, c, ky, kx] · x̂[c, kx][t + ky·32]` with t = y·32 + x an output
/// pixel and x̂ each image's zero-bordered copy shifted left by kx (`PixelFilterKernel.copyShifted`,
/// `[c][kx][34][32]`, 39 KB): every tap of every pixel is one aligned load from it, and output
/// rows have no ends, so a tile may run across them. The tile: 2 output channels × 6 vectors of
/// pixels (12 accumulators; 48 pixels with AVX2, 96 with AVX-512), fed per tap by 2 broadcasts of
/// W and 6 loads. Its depth is the 27 taps. Rows are taken 6 at a time (192 pixels: 4 or 2 tiles;
/// the last 2 rows a tile and tails of 2 vectors), all output channels over them, so that the
/// band's copies (9 planes × 8 rows, 9 KB) stay in L1.
///
/// The tile it replaces (4 output channels × 3 rows × 8 pixels, x read in place) fed each
/// multiply-add with its own broadcast of W; on an AMD EPYC (Zen 4) a loop of such pairs runs at
/// three quarters of the peak, and that tile at half (ResNet-18's stem at batch 128, AVX2).
///
/// Every y element is one register's sum over c, ky, kx in a fixed order: results never depend
/// on the thread count (threads split images).
extension Conv2DKernel {
    enum StemForwardKernel {
        typealias V = ISA.Vector
        /// Output rows per band.
        static let bandRows = 6

        /// Whether the forward pass of a geometry runs here: the stem's shape.
        static func runs(_ g: Geometry) -> Bool { StemDataKernel.suits(g) }

        /// For tables.
        static let algorithm = "shifted copies, 2 o x 6 vectors"

        /// y = the forward pass over the batch, images split over `threads`.
        static func run(_ g: Geometry, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        y: UnsafeMutablePointer<Float>, threads: Int, residentBytes: Int = ShortcutKernel.cacheResidentBytes) {
            let chunks = min(g.n, max(1, threads) * 4)
            let plan = PixelFilterKernel.Plan(g)
            // Past half the last-level cache y would not be in cache when read: its lines are
            // written without being read first (where y is aligned for it).
            let stream = g.n * g.o * g.h * 32 * MemoryLayout<Float>.stride >= residentBytes
                && Int(bitPattern: y) % 64 == 0 && V.scalarCount >= 8
            Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                let scratch = ConvScratch.shared.take(floats: plan.imageFloats, gemm: (0, 0))
                defer { ConvScratch.shared.give(scratch) }
                let copy = scratch.floats
                for image in chunk * g.n / chunks..<(chunk + 1) * g.n / chunks {
                    PixelFilterKernel.copyShifted(plan, x: x + image * g.c * g.h * 32, into: copy)
                    let target = y + image * g.o * g.h * 32
                    for first in stride(from: 0, to: g.h, by: bandRows) {
                        band(g, plan, first * 32..<min(g.h, first + bandRows) * 32, copy, weight, target, stream: stream)
                    }
                }
                if stream { kiln_store_fence() }
            }
        }

        /// Output pixels `pixels` (whole rows) of every output channel.
        static func band(_ g: Geometry, _ plan: PixelFilterKernel.Plan, _ pixels: Range<Int>, _ copy: UnsafePointer<Float>,
                         _ weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, stream: Bool) {
            let lanes = V.scalarCount, taps = g.c * 9
            let planeBytes = plan.plane * MemoryLayout<Float>.stride
            for o0 in stride(from: 0, to: g.o, by: 2) {
                let o1 = min(o0 + 1, g.o - 1)
                let w0 = weight + o0 * taps, w1 = weight + o1 * taps
                let y0 = y + o0 * g.h * 32, y1 = o1 > o0 ? y + o1 * g.h * 32 : nil
                var t = pixels.lowerBound
                while t + 6 * lanes <= pixels.upperBound {
                    tile6(g.c, planeBytes, UnsafeRawPointer(copy + t), w0, w1, UnsafeMutableRawPointer(y0 + t),
                          y1.map { UnsafeMutableRawPointer($0 + t) }, stream)
                    t += 6 * lanes
                }
                while t < pixels.upperBound {
                    tile2(g.c, planeBytes, UnsafeRawPointer(copy + t), w0, w1, UnsafeMutableRawPointer(y0 + t),
                          y1.map { UnsafeMutableRawPointer($0 + t) }, stream)
                    t += 2 * lanes
                }
            }
        }

        /// 2 output channels (W at `w0`, `w1`; y at `y0`, and at `y1` unless nil) × 6 vectors of
        /// pixels from `copy` (x̂ at the tile's first pixel).
        @inline(never)
        static func tile6(_ channels: Int, _ planeBytes: Int, _ copy: UnsafeRawPointer, _ w0: UnsafePointer<Float>,
                          _ w1: UnsafePointer<Float>, _ y0: UnsafeMutableRawPointer, _ y1: UnsafeMutableRawPointer?, _ stream: Bool) {
            let step = MemoryLayout<V>.stride
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V()
            var b0 = V(), b1 = V(), b2 = V(), b3 = V(), b4 = V(), b5 = V()
            forEachTap(channels, planeBytes, copy, w0, w1) { p, k0, k1 in
                var v = p.loadUnaligned(as: V.self); multiplyAdd(&a0, k0, v); multiplyAdd(&b0, k1, v)
                v = p.loadUnaligned(fromByteOffset: step, as: V.self); multiplyAdd(&a1, k0, v); multiplyAdd(&b1, k1, v)
                v = p.loadUnaligned(fromByteOffset: 2 * step, as: V.self); multiplyAdd(&a2, k0, v); multiplyAdd(&b2, k1, v)
                v = p.loadUnaligned(fromByteOffset: 3 * step, as: V.self); multiplyAdd(&a3, k0, v); multiplyAdd(&b3, k1, v)
                v = p.loadUnaligned(fromByteOffset: 4 * step, as: V.self); multiplyAdd(&a4, k0, v); multiplyAdd(&b4, k1, v)
                v = p.loadUnaligned(fromByteOffset: 5 * step, as: V.self); multiplyAdd(&a5, k0, v); multiplyAdd(&b5, k1, v)
            }
            put(a0, y0, 0, stream); put(a1, y0, step, stream); put(a2, y0, 2 * step, stream)
            put(a3, y0, 3 * step, stream); put(a4, y0, 4 * step, stream); put(a5, y0, 5 * step, stream)
            guard let y1 else { return }
            put(b0, y1, 0, stream); put(b1, y1, step, stream); put(b2, y1, 2 * step, stream)
            put(b3, y1, 3 * step, stream); put(b4, y1, 4 * step, stream); put(b5, y1, 5 * step, stream)
        }

        /// Calls `body` for each tap (c, ky, kx) in order with x̂'s address for it (`copy` the tile's
        /// first pixel) and the two output channels' weights broadcast.
        @inline(__always)
        static func forEachTap(_ channels: Int, _ planeBytes: Int, _ copy: UnsafeRawPointer, _ w0: UnsafePointer<Float>,
                               _ w1: UnsafePointer<Float>, _ body: (UnsafeRawPointer, V, V) -> Void) {
            let row = 32 * MemoryLayout<Float>.stride
            for c in 0..<channels {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        let tap = c * 9 + ky * 3 + kx
                        body(copy + (c * 3 + kx) * planeBytes + ky * row, V(repeating: w0[tap]), V(repeating: w1[tap]))
                    }
                }
            }
        }

        /// Stores `v` at `offset` bytes from `p`: past the caches (a non-temporal store, `p` then
        /// aligned to the vector) if `stream`.
        @inline(__always)
        static func put(_ v: V, _ p: UnsafeMutableRawPointer, _ offset: Int, _ stream: Bool) {
            let q = (p + offset).assumingMemoryBound(to: Float.self)
            if stream && V.scalarCount == 16 {
                kiln_stream16(q, unsafeBitCast(v, to: SIMD16<Float>.self))
            } else if stream && V.scalarCount == 8 {
                kiln_stream8(q, unsafeBitCast(v, to: SIMD8<Float>.self))
            } else {
                (p + offset).storeBytes(of: v, as: V.self)
            }
        }

        /// `tile6` on 2 vectors of pixels: a band's tail.
        @inline(never)
        static func tile2(_ channels: Int, _ planeBytes: Int, _ copy: UnsafeRawPointer, _ w0: UnsafePointer<Float>,
                          _ w1: UnsafePointer<Float>, _ y0: UnsafeMutableRawPointer, _ y1: UnsafeMutableRawPointer?, _ stream: Bool) {
            let step = MemoryLayout<V>.stride
            var a0 = V(), a1 = V(), b0 = V(), b1 = V()
            forEachTap(channels, planeBytes, copy, w0, w1) { p, k0, k1 in
                var v = p.loadUnaligned(as: V.self); multiplyAdd(&a0, k0, v); multiplyAdd(&b0, k1, v)
                v = p.loadUnaligned(fromByteOffset: step, as: V.self); multiplyAdd(&a1, k0, v); multiplyAdd(&b1, k1, v)
            }
            put(a0, y0, 0, stream); put(a1, y0, step, stream)
            guard let y1 else { return }
            put(b0, y1, 0, stream); put(b1, y1, step, stream)
        }
    }
}
