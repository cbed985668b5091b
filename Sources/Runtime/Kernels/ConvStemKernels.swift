import CPlatform

/// The backward-data pass of a CIFAR stem: a 3×3, stride-1, padding-1 convolution into at most
/// 3 channels on rows of 32 pixels (`suits`), reading dy in place.
///
/// `dx[c, y, x] = Σ_o Σ_ky Σ_kx W[o, c, ky, kx] · dy[o, y + 1 − ky, x + 1 − kx]`, zero outside
/// dy. dx has only 3 channels, so the vectors run along a row, and dy's row r gives, with its
/// neighbours one pixel right and left (unaligned loads inside the row, a zero shifted in at
/// its ends: that is the padding), the three kx taps of every dx row it touches. The tiles:
/// - AVX-512: 3 dx rows × 3 channels × 2 vectors (18 accumulators), over blocks of
///   `outChannelBlock` output channels, dx reloaded from L1 between blocks;
/// - 16 registers (AVX2): 4 dx rows × 3 channels × 8 pixels (12 accumulators: a 1-row tile of
///   6 was bound by the chain of three kx multiply-adds on each), over every o.
/// For each o a tile reads the rows + 2 dy rows it needs and broadcasts W.
///
/// The direct path this replaces first copied each image's 64 dy channels into a zero-bordered
/// buffer (296 KB: past L1, and written once per image), about 0.7 of its 1.8 ms on ResNet-18's
/// stem at batch 128 (AVX-512 Xeon family 6 model 207, 2 threads); with AVX2 it took 3.5 ms.
///
/// Every dx element is summed over o in order (in one register, or per block of o with the
/// partial kept in dx), then ky, kx in a fixed order: results never depend on the thread count
/// (threads split images).
extension Conv2DKernel {
    enum StemDataKernel {
        typealias V = SIMD16<Float>
        /// Output channels per pass of the AVX-512 tile over an image's row blocks: dx (12 KB)
        /// stays in L1 between passes, and each pass reads 16 dy planes top to bottom (stem,
        /// batch 128, AVX-512 Xeon: 1.35–1.36 ms with all 64 in one pass, 1.27–1.28 with 16).
        /// The AVX2 tile (4 rows × 8 pixels) gained nothing from it (2.50 against 2.52 ms) and
        /// runs every o in one pass.
        static let outChannelBlock = 16

        /// Whether the backward-data pass of a geometry runs here.
        static func suits(_ g: Geometry) -> Bool {
            g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == 1 && g.padW == 1
                && g.c <= 3 && g.w == 32
        }

        /// For tables.
        static func algorithm(_ g: Geometry) -> String { "direct in place, rows of \(ISA.wideTile ? 3 : 4)" }

        /// dx = the backward-data pass over the batch, images split over `threads`.
        static func run(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        dx: UnsafeMutablePointer<Float>, threads: Int) {
            let chunks = min(g.n, max(1, threads) * 4)
            withPaddedWeights(g, weight) { w in
                Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                    for image in chunk * g.n / chunks..<(chunk + 1) * g.n / chunks {
                        let source = dy + image * g.o * g.h * 32, target = dx + image * g.c * g.h * 32
                        if ISA.wideTile {
                            for o in stride(from: 0, to: g.o, by: outChannelBlock) {
                                for first in stride(from: 0, to: g.h, by: 3) {
                                    threeRows(g, first, o..<min(g.o, o + outChannelBlock), source, w, target)
                                }
                            }
                        } else {
                            for first in stride(from: 0, to: g.h, by: 4) {
                                for x0 in stride(from: 0, to: 32, by: 8) { fourRows(g, first, x0, 0..<g.o, source, w, target) }
                            }
                        }
                    }
                }
            }
        }

        /// dy's row as its two vectors and their one-pixel shifts: `right` is the row moved one
        /// pixel left (pixel x sees x + 1), `left` one pixel right (x sees x − 1), zeros shifted in
        /// at the row's ends. The two shifts that stay inside the row are unaligned loads; the two
        /// that shift a zero in are one lane permute each (four permutes, on the port the
        /// multiply-adds also use, had cost more than these loads).
        struct Shifted {
            let left0: V, center0: V, right0: V, left1: V, center1: V, right1: V

            @inline(__always)
            init(_ row: UnsafePointer<Float>) {
                let raw = UnsafeRawPointer(row), size = MemoryLayout<Float>.stride
                center0 = raw.loadUnaligned(as: V.self)
                center1 = raw.loadUnaligned(fromByteOffset: 16 * size, as: V.self)
                right0 = raw.loadUnaligned(fromByteOffset: size, as: V.self)
                left1 = raw.loadUnaligned(fromByteOffset: 15 * size, as: V.self)
                left0 = shiftedIn(center0)
                right1 = shiftedOut(center1)
            }
        }

        /// `[0, v0, …, v(n−2)]`: a vector moved one lane up, a zero shifted in.
        @inline(__always)
        static func shiftedIn<S: SIMD>(_ v: S) -> S where S.Scalar == Float {
            var r = S()
            for i in 1..<S.scalarCount { r[i] = v[i - 1] }
            return r
        }

        /// `[v1, …, v(n−1), 0]`: a vector moved one lane down, a zero shifted in.
        @inline(__always)
        static func shiftedOut<S: SIMD>(_ v: S) -> S where S.Scalar == Float {
            var r = S()
            for i in 0..<S.scalarCount - 1 { r[i] = v[i + 1] }
            return r
        }

        /// acc[c] (+)= the three kx taps of W[o, c, ky, ·] over one shifted dy row, both vectors.
        @inline(__always)
        static func taps(_ a: inout (V, V, V, V, V, V), _ s: Shifted, _ w: UnsafePointer<Float>, _ channelStride: Int) {
            // Pixel x of dx reads dy at x + 1 − kx: kx = 0 the right shift, 1 the row, 2 the left.
            var k = V(repeating: w[0])
            multiplyAdd(&a.0, k, s.right0); multiplyAdd(&a.1, k, s.right1)
            k = V(repeating: w[1]); multiplyAdd(&a.0, k, s.center0); multiplyAdd(&a.1, k, s.center1)
            k = V(repeating: w[2]); multiplyAdd(&a.0, k, s.left0); multiplyAdd(&a.1, k, s.left1)
            k = V(repeating: w[channelStride]); multiplyAdd(&a.2, k, s.right0); multiplyAdd(&a.3, k, s.right1)
            k = V(repeating: w[channelStride + 1]); multiplyAdd(&a.2, k, s.center0); multiplyAdd(&a.3, k, s.center1)
            k = V(repeating: w[channelStride + 2]); multiplyAdd(&a.2, k, s.left0); multiplyAdd(&a.3, k, s.left1)
            k = V(repeating: w[2 * channelStride]); multiplyAdd(&a.4, k, s.right0); multiplyAdd(&a.5, k, s.right1)
            k = V(repeating: w[2 * channelStride + 1]); multiplyAdd(&a.4, k, s.center0); multiplyAdd(&a.5, k, s.center1)
            k = V(repeating: w[2 * channelStride + 2]); multiplyAdd(&a.4, k, s.left0); multiplyAdd(&a.5, k, s.left1)
        }

        /// The AVX-512 tile: dx rows `first ..< first + 3` (those below h are not stored), all
        /// channels, both vectors; `weight` as `withPaddedWeights` lays it out.
        @inline(never)
        static func threeRows(_ g: Geometry, _ first: Int, _ outChannels: Range<Int>, _ dy: UnsafePointer<Float>,
                              _ weight: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
            var r0 = (V(), V(), V(), V(), V(), V()), r1 = r0, r2 = r0
            let plane = g.h * 32
            if outChannels.lowerBound > 0 {
                r0 = load(g, dx, row: first)
                if first + 1 < g.h { r1 = load(g, dx, row: first + 1) }
                if first + 2 < g.h { r2 = load(g, dx, row: first + 2) }
            }
            for o in outChannels {
                let channel = dy + o * plane, wo = weight + o * 27
                // dy row first − 1 + j feeds dx row first + t through ky = t + 2 − j.
                for j in 0..<5 {
                    let r = first - 1 + j
                    guard r >= 0 && r < g.h else { continue }
                    let s = Shifted(channel + r * 32)
                    switch j {
                    case 0: taps(&r0, s, wo + 6, 9)
                    case 1: taps(&r0, s, wo + 3, 9); taps(&r1, s, wo + 6, 9)
                    case 2: taps(&r0, s, wo, 9); taps(&r1, s, wo + 3, 9); taps(&r2, s, wo + 6, 9)
                    case 3: taps(&r1, s, wo, 9); taps(&r2, s, wo + 3, 9)
                    default: taps(&r2, s, wo, 9)
                    }
                }
            }
            store(g, r0, dx, row: first)
            if first + 1 < g.h { store(g, r1, dx, row: first + 1) }
            if first + 2 < g.h { store(g, r2, dx, row: first + 2) }
        }

        /// The 16-register tile (AVX2): dx rows `first ..< first + 4` (those below h are not
        /// stored), pixels `x0 ..< x0 + 8`, all channels: 12 accumulators, so that the three kx
        /// taps chained on each do not wait on one another (a 1-row tile of 6 was bound by that
        /// chain), and dy's row with its two shifts (3 registers) serves up to 3 dx rows.
        @inline(never)
        static func fourRows(_ g: Geometry, _ first: Int, _ x0: Int, _ outChannels: Range<Int>, _ dy: UnsafePointer<Float>,
                             _ weight: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>) {
            typealias E = SIMD8<Float>
            var r0 = (E(), E(), E()), r1 = r0, r2 = r0, r3 = r0
            let plane = g.h * 32, plane4 = plane * MemoryLayout<Float>.stride
            if outChannels.lowerBound > 0 {
                @inline(__always) func load(_ t: Int) -> (E, E, E) {
                    guard first + t < g.h else { return (E(), E(), E()) }
                    let raw = UnsafeRawPointer(dx + (first + t) * 32 + x0)
                    return (raw.loadUnaligned(as: E.self), g.c > 1 ? raw.loadUnaligned(fromByteOffset: plane4, as: E.self) : E(),
                            g.c > 2 ? raw.loadUnaligned(fromByteOffset: 2 * plane4, as: E.self) : E())
                }
                (r0, r1, r2, r3) = (load(0), load(1), load(2), load(3))
            }
            @inline(__always) func taps(_ a: inout (E, E, E), _ left: E, _ center: E, _ right: E, _ w: UnsafePointer<Float>) {
                multiplyAdd(&a.0, E(repeating: w[0]), right)
                multiplyAdd(&a.0, E(repeating: w[1]), center)
                multiplyAdd(&a.0, E(repeating: w[2]), left)
                multiplyAdd(&a.1, E(repeating: w[9]), right)
                multiplyAdd(&a.1, E(repeating: w[10]), center)
                multiplyAdd(&a.1, E(repeating: w[11]), left)
                multiplyAdd(&a.2, E(repeating: w[18]), right)
                multiplyAdd(&a.2, E(repeating: w[19]), center)
                multiplyAdd(&a.2, E(repeating: w[20]), left)
            }
            for o in outChannels {
                let channel = dy + o * plane + x0, wo = weight + o * 27
                // dy row first − 1 + j feeds dx row first + t through ky = t + 2 − j.
                for j in 0..<6 {
                    let r = first - 1 + j
                    guard r >= 0 && r < g.h else { continue }
                    let raw = UnsafeRawPointer(channel + r * 32), size = MemoryLayout<Float>.stride
                    let center = raw.loadUnaligned(as: E.self)
                    let left = x0 == 0 ? shiftedIn(center) : raw.loadUnaligned(fromByteOffset: -size, as: E.self)
                    let right = x0 == 24 ? shiftedOut(center) : raw.loadUnaligned(fromByteOffset: size, as: E.self)
                    switch j {
                    case 0: taps(&r0, left, center, right, wo + 6)
                    case 1: taps(&r0, left, center, right, wo + 3); taps(&r1, left, center, right, wo + 6)
                    case 2: taps(&r0, left, center, right, wo); taps(&r1, left, center, right, wo + 3)
                        taps(&r2, left, center, right, wo + 6)
                    case 3: taps(&r1, left, center, right, wo); taps(&r2, left, center, right, wo + 3)
                        taps(&r3, left, center, right, wo + 6)
                    case 4: taps(&r2, left, center, right, wo); taps(&r3, left, center, right, wo + 3)
                    default: taps(&r3, left, center, right, wo)
                    }
                }
            }
            @inline(__always) func store(_ t: Int, _ a: (E, E, E)) {
                guard first + t < g.h else { return }
                let target = UnsafeMutableRawPointer(dx + (first + t) * 32 + x0)
                target.storeBytes(of: a.0, as: E.self)
                if g.c > 1 { target.storeBytes(of: a.1, toByteOffset: plane4, as: E.self) }
                if g.c > 2 { target.storeBytes(of: a.2, toByteOffset: 2 * plane4, as: E.self) }
            }
            store(0, r0); store(1, r1); store(2, r2); store(3, r3)
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

        /// A tile row's channels (both vectors each) from dx row `row`; channels past c zero.
        @inline(__always)
        static func load(_ g: Geometry, _ dx: UnsafeMutablePointer<Float>, row: Int) -> (V, V, V, V, V, V) {
            let raw = UnsafeRawPointer(dx + row * 32), plane4 = g.h * 32 * MemoryLayout<Float>.stride
            var a = (raw.loadUnaligned(as: V.self), raw.loadUnaligned(fromByteOffset: 64, as: V.self), V(), V(), V(), V())
            if g.c > 1 { a.2 = raw.loadUnaligned(fromByteOffset: plane4, as: V.self); a.3 = raw.loadUnaligned(fromByteOffset: plane4 + 64, as: V.self) }
            if g.c > 2 { a.4 = raw.loadUnaligned(fromByteOffset: 2 * plane4, as: V.self); a.5 = raw.loadUnaligned(fromByteOffset: 2 * plane4 + 64, as: V.self) }
            return a
        }

        /// Stores a tile row's channels (both vectors each) at dx row `row`.
        @inline(__always)
        static func store(_ g: Geometry, _ a: (V, V, V, V, V, V), _ dx: UnsafeMutablePointer<Float>, row: Int) {
            let plane = g.h * 32
            let target = UnsafeMutableRawPointer(dx + row * 32)
            let plane4 = plane * MemoryLayout<Float>.stride
            target.storeBytes(of: a.0, as: V.self)
            target.storeBytes(of: a.1, toByteOffset: 64, as: V.self)
            if g.c > 1 {
                target.storeBytes(of: a.2, toByteOffset: plane4, as: V.self)
                target.storeBytes(of: a.3, toByteOffset: plane4 + 64, as: V.self)
            }
            if g.c > 2 {
                target.storeBytes(of: a.4, toByteOffset: 2 * plane4, as: V.self)
                target.storeBytes(of: a.5, toByteOffset: 2 * plane4 + 64, as: V.self)
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
            let step = MemoryLayout<V>.stride, row = 32 * MemoryLayout<Float>.stride
            var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V()
            var b0 = V(), b1 = V(), b2 = V(), b3 = V(), b4 = V(), b5 = V()
            for c in 0..<channels {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        let tap = c * 9 + ky * 3 + kx
                        let p = copy + (c * 3 + kx) * planeBytes + ky * row
                        let k0 = V(repeating: w0[tap]), k1 = V(repeating: w1[tap])
                        var v = p.loadUnaligned(as: V.self); multiplyAdd(&a0, k0, v); multiplyAdd(&b0, k1, v)
                        v = p.loadUnaligned(fromByteOffset: step, as: V.self); multiplyAdd(&a1, k0, v); multiplyAdd(&b1, k1, v)
                        v = p.loadUnaligned(fromByteOffset: 2 * step, as: V.self); multiplyAdd(&a2, k0, v); multiplyAdd(&b2, k1, v)
                        v = p.loadUnaligned(fromByteOffset: 3 * step, as: V.self); multiplyAdd(&a3, k0, v); multiplyAdd(&b3, k1, v)
                        v = p.loadUnaligned(fromByteOffset: 4 * step, as: V.self); multiplyAdd(&a4, k0, v); multiplyAdd(&b4, k1, v)
                        v = p.loadUnaligned(fromByteOffset: 5 * step, as: V.self); multiplyAdd(&a5, k0, v); multiplyAdd(&b5, k1, v)
                    }
                }
            }
            put(a0, y0, 0, stream); put(a1, y0, step, stream); put(a2, y0, 2 * step, stream)
            put(a3, y0, 3 * step, stream); put(a4, y0, 4 * step, stream); put(a5, y0, 5 * step, stream)
            guard let y1 else { return }
            put(b0, y1, 0, stream); put(b1, y1, step, stream); put(b2, y1, 2 * step, stream)
            put(b3, y1, 3 * step, stream); put(b4, y1, 4 * step, stream); put(b5, y1, 5 * step, stream)
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
            let step = MemoryLayout<V>.stride, row = 32 * MemoryLayout<Float>.stride
            var a0 = V(), a1 = V(), b0 = V(), b1 = V()
            for c in 0..<channels {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        let tap = c * 9 + ky * 3 + kx
                        let p = copy + (c * 3 + kx) * planeBytes + ky * row
                        let k0 = V(repeating: w0[tap]), k1 = V(repeating: w1[tap])
                        var v = p.loadUnaligned(as: V.self); multiplyAdd(&a0, k0, v); multiplyAdd(&b0, k1, v)
                        v = p.loadUnaligned(fromByteOffset: step, as: V.self); multiplyAdd(&a1, k0, v); multiplyAdd(&b1, k1, v)
                    }
                }
            }
            put(a0, y0, 0, stream); put(a1, y0, step, stream)
            guard let y1 else { return }
            put(b0, y1, 0, stream); put(b1, y1, step, stream)
        }
    }
}
