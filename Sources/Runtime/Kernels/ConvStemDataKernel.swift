/// The backward-data pass of a CIFAR stem: a 3×3, stride-1, padding-1 convolution into at most
/// 3 channels on rows of 32 pixels (`suits`), reading dy in place.
///
/// `dx[c, y, x] = Σ_o Σ_ky Σ_kx W[o, c, ky, kx] · dy[o, y + 1 − ky, x + 1 − kx]`, zero outside
/// dy. dx has only 3 channels, so the vectors run along a row: 32 pixels are 2 vectors, and dy's
/// row r gives, with its neighbours one pixel right and left (two-source lane shifts, a zero
/// shifted in at the row's ends: that is the padding), the three kx taps of every dx row it
/// touches. A register tile holds `rows` dx rows × 3 channels × 2 vectors (3 rows, 18
/// accumulators, with the AVX-512 tile; 1 row and one vector at a time on 16 registers); for
/// each output channel o it reads the rows − 1 + 3 dy rows it needs, which stay in L1 across
/// o's, and broadcasts W.
///
/// The direct path this replaces first copied each image's 64 dy channels into a zero-bordered
/// buffer (296 KB: past L1, and written once per image), about 0.7 of its 1.8 ms on ResNet-18's
/// stem at batch 128 (AVX-512 Xeon family 6 model 207, 2 threads).
///
/// Every dx element is one register's sum over o, then ky, kx in a fixed order: results never
/// depend on the thread count (threads split images).
extension Conv2DKernel {
    enum StemDataKernel {
        typealias V = SIMD16<Float>

        /// Whether the backward-data pass of a geometry runs here.
        static func suits(_ g: Geometry) -> Bool {
            g.kh == 3 && g.kw == 3 && g.strideH == 1 && g.strideW == 1 && g.padH == 1 && g.padW == 1
                && g.c <= 3 && g.w == 32
        }

        /// For tables.
        static func algorithm(_ g: Geometry) -> String { "direct in place, rows of \(ISA.wideTile ? 3 : 1)" }

        /// dx = the backward-data pass over the batch, images split over `threads`.
        static func run(_ g: Geometry, dy: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        dx: UnsafeMutablePointer<Float>, threads: Int) {
            let chunks = min(g.n, max(1, threads) * 4)
            withPaddedWeights(g, weight) { w in
                Parallel.forEach(chunks: chunks, threads: threads) { chunk in
                    for image in chunk * g.n / chunks..<(chunk + 1) * g.n / chunks {
                        let source = dy + image * g.o * g.h * 32, target = dx + image * g.c * g.h * 32
                        if ISA.wideTile {
                            for first in stride(from: 0, to: g.h, by: 3) { threeRows(g, first, source, w, target) }
                        } else {
                            for row in 0..<g.h {
                                oneRow(g, row, 0, source, w, target)
                                oneRow(g, row, 1, source, w, target)
                            }
                        }
                    }
                }
            }
        }

        /// dy's row as its two vectors and their one-pixel shifts: `right` is the row moved one
        /// pixel left (pixel x sees x + 1), `left` one pixel right (x sees x − 1), zeros shifted in.
        struct Shifted {
            var left0 = V(), center0 = V(), right0 = V(), left1 = V(), center1 = V(), right1 = V()

            @inline(__always)
            init(_ row: UnsafePointer<Float>) {
                let raw = UnsafeRawPointer(row)
                let a = raw.loadUnaligned(as: V.self), b = raw.loadUnaligned(fromByteOffset: 64, as: V.self)
                center0 = a
                center1 = b
                for i in 0..<15 {
                    right0[i] = a[i + 1]; right1[i] = b[i + 1]
                    left0[i + 1] = a[i]; left1[i + 1] = b[i]
                }
                right0[15] = b[0]
                left1[0] = a[15]
            }
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
        static func threeRows(_ g: Geometry, _ first: Int, _ dy: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                              _ dx: UnsafeMutablePointer<Float>) {
            var r0 = (V(), V(), V(), V(), V(), V()), r1 = r0, r2 = r0
            let plane = g.h * 32
            for o in 0..<g.o {
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

        /// The 16-register tile: dx row `row`, vector `half` (pixels 16·half ..< +16), all channels.
        @inline(never)
        static func oneRow(_ g: Geometry, _ row: Int, _ half: Int, _ dy: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                           _ dx: UnsafeMutablePointer<Float>) {
            var a0 = V(), a1 = V(), a2 = V()
            let plane = g.h * 32
            for o in 0..<g.o {
                let channel = dy + o * plane, wo = weight + o * 27
                for ky in 0..<3 {
                    let r = row + 1 - ky
                    guard r >= 0 && r < g.h else { continue }
                    let raw = UnsafeRawPointer(channel + r * 32)
                    let a = raw.loadUnaligned(as: V.self), b = raw.loadUnaligned(fromByteOffset: 64, as: V.self)
                    var right = V(), left = V()
                    let center = half == 0 ? a : b
                    for i in 0..<15 { right[i] = center[i + 1]; left[i + 1] = center[i] }
                    if half == 0 { right[15] = b[0] } else { left[0] = a[15] }
                    let k = wo + ky * 3
                    multiplyAdd(&a0, V(repeating: k[0]), right)
                    multiplyAdd(&a0, V(repeating: k[1]), center)
                    multiplyAdd(&a0, V(repeating: k[2]), left)
                    multiplyAdd(&a1, V(repeating: k[9]), right)
                    multiplyAdd(&a1, V(repeating: k[10]), center)
                    multiplyAdd(&a1, V(repeating: k[11]), left)
                    multiplyAdd(&a2, V(repeating: k[18]), right)
                    multiplyAdd(&a2, V(repeating: k[19]), center)
                    multiplyAdd(&a2, V(repeating: k[20]), left)
                }
            }
            let target = UnsafeMutableRawPointer(dx + row * 32 + 16 * half)
            let plane4 = plane * MemoryLayout<Float>.stride
            target.storeBytes(of: a0, as: V.self)
            if g.c > 1 { target.storeBytes(of: a1, toByteOffset: plane4, as: V.self) }
            if g.c > 2 { target.storeBytes(of: a2, toByteOffset: 2 * plane4, as: V.self) }
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
