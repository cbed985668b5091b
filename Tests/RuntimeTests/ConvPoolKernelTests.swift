import Testing
@testable import KilnRuntime

/// SplitMix64: a small seeded generator so every test input is reproducible.
private typealias SeededGenerator = SplitMix64

private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
}

/// Small integers, so pooling windows contain ties and the first-maximum rule is exercised.
private func randomSmallIntegers(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float(Int.random(in: 0...3, using: &generator)) }
}

/// Largest |got − expected| relative to a scale of `1e-5·magnitude` (≤ 1 passes).
private func worstError(_ got: [Float], _ expected: [Double], _ magnitude: [Double]) -> Double {
    var worst: Double = 0
    for i in expected.indices {
        worst = max(worst, abs(Double(got[i]) - expected[i]) / (magnitude[i] * 1e-5 + 1e-30))
    }
    return worst
}

/// `count` floats written by `body` at `offset` floats past 64-byte aligned memory, NaN before it
/// runs so that every float must be written (streamed stores need the alignment).
private func alignedOutput(count: Int, offset: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: (count + 16) * 4, alignment: 64)
    defer { raw.deallocate() }
    let out = raw.bindMemory(to: Float.self, capacity: count + 16) + offset
    out.update(repeating: .nan, count: count)
    body(out)
    return Array(UnsafeBufferPointer(start: out, count: count))
}

private func run(_ inputs: [[Float]], outputCount: Int,
                 _ body: ([UnsafePointer<Float>], UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    // Output starts as garbage so kernels that fail to overwrite are caught.
    var output = [Float](repeating: .nan, count: outputCount)
    let copies = inputs.map { input -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, input.count))
        p.initialize(from: input, count: input.count)
        return p
    }
    defer { copies.forEach { $0.deallocate() } }
    output.withUnsafeMutableBufferPointer { body(copies.map { UnsafePointer($0) }, $0.baseAddress!) }
    return output
}

// MARK: Convolution

private let convCases: [Conv2DKernel.Geometry] = [
    .init(n: 2, c: 1, h: 28, w: 28, o: 6, kh: 5, kw: 5, padH: 2, padW: 2),      // LeNet-5 conv1
    .init(n: 2, c: 6, h: 14, w: 14, o: 16, kh: 5, kw: 5),                       // LeNet-5 conv2
    .init(n: 1, c: 3, h: 7, w: 13, o: 5, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1),
    .init(n: 3, c: 2, h: 13, w: 7, o: 33, kh: 3, kw: 2, strideH: 1, strideW: 2, padH: 2, padW: 0),
    .init(n: 2, c: 7, h: 9, w: 9, o: 3, kh: 1, kw: 1),                         // pointwise: no im2col
    .init(n: 2, c: 4, h: 8, w: 11, o: 7, kh: 4, kw: 4, strideH: 2, strideW: 1, padH: 0, padW: 2),
    .init(n: 1, c: 1, h: 1, w: 1, o: 1, kh: 3, kw: 3, padH: 1, padW: 1),      // all padding but one tap
    .init(n: 5, c: 33, h: 5, w: 5, o: 9, kh: 3, kw: 3, padH: 1, padW: 1),      // GEMM depth > one panel edge
    .init(n: 3, c: 2, h: 7, w: 37, o: 13, kh: 3, kw: 4, padH: 1, padW: 2),     // direct: 3 column segments
    .init(n: 2, c: 5, h: 11, w: 9, o: 17, kh: 2, kw: 3, padH: 1, padW: 0),     // direct: 8-channel tile, tails
    .init(n: 2, c: 3, h: 13, w: 1, o: 7, kh: 3, kw: 1, padH: 1, padW: 0),      // direct: one column
    .init(n: 2, c: 3, h: 7, w: 6, o: 5, kh: 7, kw: 6),                         // direct: 1×1 output
    .init(n: 2, c: 40, h: 6, w: 7, o: 40, kh: 3, kw: 3, padH: 1, padW: 1),     // many channels: GEMM
    .init(n: 64, c: 1, h: 28, w: 28, o: 6, kh: 5, kw: 5, padH: 2, padW: 2),    // LeNet-5 conv1, full batch
    .init(n: 2, c: 3, h: 14, w: 16, o: 8, kh: 3, kw: 3, padH: 0, padW: 1),     // direct: 8-channel tile, full width
    .init(n: 2, c: 3, h: 12, w: 20, o: 8, kh: 3, kw: 3),                       // direct: AVX2's 3-row tile, ragged rows and segments
    .init(n: 3, c: 4, h: 9, w: 7, o: 20, kh: 3, kw: 4, padH: 1, padW: 1),      // channel vectors: 20 channels, odd kh
    .init(n: 2, c: 2, h: 8, w: 9, o: 16, kh: 3, kw: 7, padH: 0, padW: 2),      // channel vectors: 2 column blocks
    .init(n: 9, c: 6, h: 14, w: 14, o: 16, kh: 5, kw: 5),                       // LeNet-5 conv2, 8 unequal groups
    .init(n: 2, c: 20, h: 6, w: 5, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),      // channel vectors in backward-data only
    .init(n: 2, c: 5, h: 16, w: 20, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),     // direct: whole and ragged segments
    .init(n: 2, c: 3, h: 8, w: 32, o: 16, kh: 3, kw: 3, padH: 1, padW: 1),     // a stem: whole tiles only, stored in place
    .init(n: 2, c: 3, h: 16, w: 20, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),     // direct: AVX-512's 8-row tile, ragged segment
    // GEMM path over image groups (Conv2DKernel.groupImages): several groups, a ragged last one.
    .init(n: 5, c: 34, h: 17, w: 17, o: 36, kh: 3, kw: 3, padH: 1, padW: 1),   // 1-image groups; filter groups 4 + 1
    .init(n: 6, c: 40, h: 15, w: 15, o: 36, kh: 1, kw: 1, strideH: 2, strideW: 2), // 1×1 stride-2 projection, groups 4 + 2
    .init(n: 3, c: 20, h: 33, w: 34, o: 24, kh: 1, kw: 1, strideH: 2, strideW: 2), // 1×1 stride 2: dx rows spread 8 at a time, tail
    .init(n: 2, c: 18, h: 10, w: 9, o: 20, kh: 1, kw: 1, strideH: 3, strideW: 1), // 1×1 stride 3 down, 1 across: rows spread one by one
    .init(n: 3, c: 24, h: 9, w: 8, o: 20, kh: 1, kw: 1, strideH: 2, strideW: 2), // ResNet-18 layer4's shortcut: dx rows spread 4 at a time
    .init(n: 3, c: 33, h: 16, w: 16, o: 40, kh: 1, kw: 1),                     // pointwise in place; filter group of 3
    .init(n: 7, c: 36, h: 16, w: 16, o: 48, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // stride 2, groups 4 + 3
    .init(n: 2, c: 300, h: 19, w: 23, o: 8, kh: 3, kw: 3, padH: 1, padW: 1),   // every pass in row blocks of 4, ragged last
    .init(n: 3, c: 40, h: 3, w: 2, o: 20, kh: 5, kw: 5, padH: 2, padW: 2),     // shifted im2col: taps entirely in padding
    .init(n: 2, c: 33, h: 9, w: 41, o: 12, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // stride-2 copies: 8, 4, 1
    .init(n: 3, c: 1, h: 14, w: 14, o: 20, kh: 4, kw: 4, strideH: 2, strideW: 2, padH: 1, padW: 1), // a DCGAN's last transposed conv: backward data in GEMM
    // Direct forward and backward data past a GEMM depth of 512 (at most 8 channels on one side).
    .init(n: 2, c: 70, h: 9, w: 20, o: 1, kh: 3, kw: 3, padH: 1, padW: 1),     // a generator's last layer: 70 → 1
    .init(n: 2, c: 24, h: 7, w: 18, o: 3, kh: 5, kw: 5, padH: 2, padW: 2),     // 24 → 3, 5×5: depth 600
    .init(n: 2, c: 8, h: 11, w: 12, o: 20, kh: 9, kw: 9, padH: 4, padW: 4),    // 8 → 20, 9×9: depth 648
    // Kernels that cover the whole image: one GEMM per pass.
    .init(n: 5, c: 7, h: 4, w: 3, o: 9, kh: 4, kw: 3),                           // a dense layer over 7·4·3
    .init(n: 3, c: 130, h: 2, w: 2, o: 1, kh: 2, kw: 2, strideH: 2, strideW: 2), // a discriminator's last layer, strided
    .init(n: 4, c: 40, h: 4, w: 4, o: 33, kh: 4, kw: 4),                         // a DCGAN generator's first layer, transposed
    // Winograd F(2×2, 3×3) (forward and backward-data): odd sides, channels off the vector width.
    .init(n: 1, c: 33, h: 7, w: 9, o: 34, kh: 3, kw: 3, padH: 1, padW: 1),     // batch 1, ragged last tile row and column
    .init(n: 3, c: 60, h: 6, w: 35, o: 17, kh: 3, kw: 3, padH: 1, padW: 1),    // 18 tiles a row: two vector chunks
    .init(n: 3, c: 40, h: 4, w: 4, o: 40, kh: 3, kw: 3, padH: 1, padW: 1),     // ResNet-18 layer4's 4×4 planes
    .init(n: 9, c: 36, h: 16, w: 16, o: 33, kh: 3, kw: 3, padH: 1, padW: 1),   // blocks of 32 tile rows: 32, 32, 8
    .init(n: 2, c: 33, h: 1, w: 3, o: 40, kh: 3, kw: 3, padH: 1, padW: 1),     // one input row: patches mostly padding
    .init(n: 1, c: 33, h: 7, w: 70, o: 34, kh: 3, kw: 3, padH: 1, padW: 1),    // F(4×4): 18 tiles a row, ragged both ways
    .init(n: 40, c: 34, h: 9, w: 9, o: 33, kh: 3, kw: 3, padH: 1, padW: 1),    // F(4×4): blocks of 42 tile rows: 42, 42, 36
    // Winograd without padding (dx: the full correlation, padding 2) and with padding 2.
    .init(n: 2, c: 33, h: 14, w: 13, o: 40, kh: 3, kw: 3),                     // 12×11 out: ragged F(4×4) column; dx 14×13
    .init(n: 3, c: 36, h: 13, w: 14, o: 33, kh: 3, kw: 3, padH: 2, padW: 2),   // 15×16 out; dx unpadded
    .init(n: 2, c: 32, h: 13, w: 13, o: 34, kh: 3, kw: 3),                     // the smallest unpadded side taken
    .init(n: 2, c: 32, h: 26, w: 26, o: 40, kh: 3, kw: 3),                     // the MNIST example's conv2, narrowed: 24×24 out
]

private func xIndex(_ g: Conv2DKernel.Geometry, _ n: Int, _ c: Int, _ y: Int, _ x: Int) -> Int {
    ((n * g.c + c) * g.h + y) * g.w + x
}
private func wIndex(_ g: Conv2DKernel.Geometry, _ o: Int, _ c: Int, _ ky: Int, _ kx: Int) -> Int {
    ((o * g.c + c) * g.kh + ky) * g.kw + kx
}
private func yIndex(_ g: Conv2DKernel.Geometry, _ n: Int, _ o: Int, _ y: Int, _ x: Int) -> Int {
    ((n * g.o + o) * g.oh + y) * g.ow + x
}

/// Calls `visit(n, o, oy, ox, c, ky, kx, inputIndex)` for every (output, tap) pair that reads
/// a real (unpadded) input pixel: the one loop nest all three naive references share.
private func forEachTap(_ g: Conv2DKernel.Geometry,
                        _ visit: (Int, Int, Int, Int, Int, Int, Int, Int) -> Void) {
    for n in 0..<g.n { for o in 0..<g.o { for oy in 0..<g.oh { for ox in 0..<g.ow {
        for c in 0..<g.c { for ky in 0..<g.kh { for kx in 0..<g.kw {
            let iy = oy * g.strideH - g.padH + ky, ix = ox * g.strideW - g.padW + kx
            if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w { visit(n, o, oy, ox, c, ky, kx, xIndex(g, n, c, iy, ix)) }
        } } }
    } } } }
}

@Test("conv2d forward, backward-data and backward-filter match naive loops", arguments: convCases.indices)
func convMatchesNaive(caseIndex: Int) {
    let g = convCases[caseIndex]
    let xCount = g.n * g.c * g.h * g.w, wCount = g.o * g.c * g.kh * g.kw, yCount = g.n * g.o * g.oh * g.ow
    let x = randomFloats(xCount, seed: UInt64(caseIndex))
    let weight = randomFloats(wCount, seed: UInt64(caseIndex) + 100)
    let dy = randomFloats(yCount, seed: UInt64(caseIndex) + 200)

    var y = [Double](repeating: 0, count: yCount), yMagnitude = y
    var dx = [Double](repeating: 0, count: xCount), dxMagnitude = dx
    var dw = [Double](repeating: 0, count: wCount), dwMagnitude = dw
    forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
        let out = yIndex(g, n, o, oy, ox), tap = wIndex(g, o, c, ky, kx)
        y[out] += Double(x[input]) * Double(weight[tap]); yMagnitude[out] += abs(Double(x[input]) * Double(weight[tap]))
        dx[input] += Double(dy[out]) * Double(weight[tap]); dxMagnitude[input] += abs(Double(dy[out]) * Double(weight[tap]))
        dw[tap] += Double(dy[out]) * Double(x[input]); dwMagnitude[tap] += abs(Double(dy[out]) * Double(x[input]))
    }

    for threads in [1, 2] {
        let gotY = run([x, weight], outputCount: yCount) {
            Conv2DKernel.forward(g, x: $0[0], weight: $0[1], y: $1, threads: threads)
        }
        let gotDx = run([dy, weight], outputCount: xCount) {
            Conv2DKernel.backwardData(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads)
        }
        let gotDw = run([x, dy], outputCount: wCount) {
            Conv2DKernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: threads)
        }
        #expect(worstError(gotY, y, yMagnitude) <= 1, "forward \(g) threads=\(threads)")
        #expect(worstError(gotDx, dx, dxMagnitude) <= 1, "backwardData \(g) threads=\(threads)")
        #expect(worstError(gotDw, dw, dwMagnitude) <= 1, "backwardFilter \(g) threads=\(threads)")
    }
}

@Test("the case table runs both conv paths, channel and column vectors, and every direct register tile of this ISA")
func convCasesCoverEveryPath() {
    let direct = convCases.filter(DirectConv2D.suits)
    #expect(!direct.isEmpty && direct.count < convCases.count)
    // Forward and backward-filter choose by (o, ow); backward-data by (c, w).
    let channelVectors = direct.filter { DirectConv2D.prefersChannelVectors(outChannels: $0.o, outWidth: $0.ow) }
    #expect(!channelVectors.isEmpty && channelVectors.count < direct.count)
    #expect(channelVectors.contains { $0.o % DirectConv2D.lanes != 0 })
    #expect(direct.contains { !DirectConv2D.prefersChannelVectors(outChannels: $0.o, outWidth: $0.ow)
        && DirectConv2D.prefersChannelVectors(outChannels: $0.c, outWidth: $0.w) })
    let columnVectors = direct.filter { !DirectConv2D.prefersChannelVectors(outChannels: $0.o, outWidth: $0.ow) }
    let tiles = Set(columnVectors.map { g in
        DirectConv2D.tile(for: .init(n: g.n, sourceChannels: g.c, sourceHeight: g.h, sourceWidth: g.w,
                                     top: g.padH, left: g.padW, outChannels: g.o, outHeight: g.oh,
                                     outWidth: g.ow, kh: g.kh, kw: g.kw))
    })
    #expect(tiles == Set(DirectConv2D.Tile.candidates))
    // Winograd: odd and even sides, one block and several (a ragged last one), padding 0, 1 and 2.
    let winograd = convCases.filter(Conv2DKernel.Winograd.suits)
    #expect(Set(winograd.map(\.padH)) == [0, 1, 2])
    #expect(winograd.contains { $0.h % 2 == 1 && $0.w % 2 == 1 })
    #expect(winograd.contains { $0.n == 1 })
    for tile in [2, 4] {
        #expect(winograd.contains { Conv2DKernel.Winograd.forwardProblem($0, tile: tile).blockCount >= 3 }, "F(\(tile))")
        #expect(winograd.contains { Conv2DKernel.WinogradFilter.problem($0, tile: tile).blockCount >= 2
                    && Conv2DKernel.WinogradFilter.problem($0, tile: tile).lastBlockTiles
                        < Conv2DKernel.WinogradFilter.problem($0, tile: tile).blockTiles }, "filter F(\(tile)): a ragged last block")
        #expect(winograd.contains { Conv2DKernel.Winograd.forwardProblem($0, tile: tile).tilesX > Conv2DKernel.Winograd.lanes },
                "F(\(tile))")
        #expect(winograd.contains { $0.h % tile != 0 && $0.w % tile != 0 }, "F(\(tile)): ragged last tile row and column")
    }
    // The filter gradient's dispatch runs Winograd on some of those shapes and not on others.
    #expect(winograd.contains(where: Conv2DKernel.WinogradFilter.suits))
    #expect(winograd.contains { !Conv2DKernel.WinogradFilter.suits($0) })
    // Stride-1 3×3 layers go to Winograd on some shapes and, with the AVX-512 tile, to the
    // implicit GEMM on small planes with few channels.
    #expect(winograd.contains { Conv2DKernel.ImplicitKernel.runs($0, .forward) && Conv2DKernel.ImplicitKernel.runs($0, .backwardData) }
            == ISA.wideTile)
    #expect(winograd.contains { !Conv2DKernel.ImplicitKernel.runs($0, .forward) })
    // The per-shape choice takes both tiles somewhere in the table.
    #expect(Set(winograd.map(Conv2DKernel.Winograd.tileSize)) == [2, 4])
    #expect(convCases.contains { !DirectConv2D.suits($0) && !Conv2DKernel.Winograd.suits($0) && $0.kh == 3 && $0.strideH == 1 })
}

@Test("Winograd conv2d (all three passes) gives the same bits on 1, 2 and 3 threads, with fewer and more blocks than threads")
func winogradThreadCountInvariant() {
    for g in [Conv2DKernel.Geometry(n: 9, c: 36, h: 16, w: 16, o: 33, kh: 3, kw: 3, padH: 1, padW: 1),  // 3 blocks
              Conv2DKernel.Geometry(n: 2, c: 33, h: 5, w: 7, o: 40, kh: 3, kw: 3, padH: 1, padW: 1),   // 1 block
              Conv2DKernel.Geometry(n: 5, c: 60, h: 17, w: 17, o: 17, kh: 3, kw: 3, padH: 1, padW: 1),  // 2 blocks
              Conv2DKernel.Geometry(n: 20, c: 40, h: 16, w: 16, o: 36, kh: 3, kw: 3, padH: 1, padW: 1)] { // filter: 2 blocks
        #expect(Conv2DKernel.Winograd.suits(g))
        func outputs(_ threads: Int) -> [[UInt32]] { convPassBits(g, seed: 4, threads: threads) }
        let one = outputs(1)
        #expect(one == outputs(2), "\(g)")
        #expect(one == outputs(3), "\(g)")
    }
}

@Test("Winograd F(2×2, 3×3) and F(4×4, 3×3), and the filter gradient's F(3×3, 2×2) and F(3×3, 4×4), each forced, match naive loops and give the same bits on 1, 2 and 3 threads",
      arguments: [2, 4])
func winogradTilesMatchNaive(tile: Int) {
    for (index, g) in convCases.enumerated() where Conv2DKernel.Winograd.suits(g) {
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: UInt64(index) + 300)
        let weight = randomFloats(g.o * g.c * g.kh * g.kw, seed: UInt64(index) + 400)
        let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: UInt64(index) + 500)
        var y = [Double](repeating: 0, count: dy.count), yMagnitude = y
        var dx = [Double](repeating: 0, count: x.count), dxMagnitude = dx
        var dw = [Double](repeating: 0, count: weight.count), dwMagnitude = dw
        forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
            let out = yIndex(g, n, o, oy, ox), tap = wIndex(g, o, c, ky, kx)
            y[out] += Double(x[input]) * Double(weight[tap]); yMagnitude[out] += abs(Double(x[input]) * Double(weight[tap]))
            dx[input] += Double(dy[out]) * Double(weight[tap]); dxMagnitude[input] += abs(Double(dy[out]) * Double(weight[tap]))
            dw[tap] += Double(dy[out]) * Double(x[input]); dwMagnitude[tap] += abs(Double(dy[out]) * Double(x[input]))
        }
        func outputs(_ threads: Int) -> (y: [Float], dx: [Float], dw: [Float]) {
            let gotY = run([x, weight], outputCount: dy.count) {
                Conv2DKernel.Winograd.run(Conv2DKernel.Winograd.forwardProblem(g, tile: tile), source: $0[0], weight: $0[1],
                                          out: $1, threads: threads)
            }
            let gotDx = run([dy, weight], outputCount: x.count) {
                Conv2DKernel.Winograd.run(Conv2DKernel.Winograd.backwardDataProblem(g, tile: tile), source: $0[0],
                                          weight: $0[1], out: $1, threads: threads)
            }
            let gotDw = run([x, dy], outputCount: weight.count) {
                Conv2DKernel.WinogradFilter.run(Conv2DKernel.WinogradFilter.problem(g, tile: tile), x: $0[0], dy: $0[1],
                                                dw: $1, threads: threads)
            }
            return (gotY, gotDx, gotDw)
        }
        let one = outputs(1)
        #expect(worstError(one.y, y, yMagnitude) <= 1, "forward F(\(tile)) \(g)")
        #expect(worstError(one.dx, dx, dxMagnitude) <= 1, "backwardData F(\(tile)) \(g)")
        #expect(worstError(one.dw, dw, dwMagnitude) <= 1, "backwardFilter F(3x3,\(tile)x\(tile)) \(g)")
        for threads in [2, 3] {
            let other = outputs(threads)
            #expect(other.y.map(\.bitPattern) == one.y.map(\.bitPattern), "forward F(\(tile)) \(g) threads=\(threads)")
            #expect(other.dx.map(\.bitPattern) == one.dx.map(\.bitPattern), "backwardData F(\(tile)) \(g) threads=\(threads)")
            #expect(other.dw.map(\.bitPattern) == one.dw.map(\.bitPattern), "backwardFilter F(\(tile)) \(g) threads=\(threads)")
        }
    }
}

@Test("GEMM-path conv2d kernels (image groups) give the same bits on 1, 2 and 3 threads")
func convGroupsThreadCountInvariant() {
    // Forward groups of 1 image (P = 256) and 4 (P = 64), a ragged last group; filter groups of 4 and 16.
    for g in [Conv2DKernel.Geometry(n: 5, c: 40, h: 16, w: 16, o: 36, kh: 3, kw: 3, padH: 1, padW: 1),
              Conv2DKernel.Geometry(n: 7, c: 36, h: 16, w: 16, o: 40, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1),
              Conv2DKernel.Geometry(n: 6, c: 40, h: 15, w: 15, o: 36, kh: 1, kw: 1, strideH: 2, strideW: 2),
              // One-image groups in blocks of output rows in all three passes.
              Conv2DKernel.Geometry(n: 3, c: 300, h: 19, w: 23, o: 8, kh: 3, kw: 3, padH: 1, padW: 1)] {
        #expect(!DirectConv2D.suits(g))
        func outputs(_ threads: Int) -> [[UInt32]] { convPassBits(g, seed: 1, threads: threads) }
        let one = outputs(1)
        #expect(one == outputs(2), "\(g)")
        #expect(one == outputs(3), "\(g)")
    }
}

/// A filter-gradient kernel `run(g, x, dy, dw, threads, maxPartials)` against naive loops on
/// random x and dy (seeds `seed`, `seed + 1`), in both group orders (partitions of the groups at
/// the default bound, group after group with threads inside a group), and the same bits on 1, 2
/// and 3 threads.
private func expectFilterGradientMatchesNaive(
    _ g: Conv2DKernel.Geometry, seed: UInt64,
    _ run: (Conv2DKernel.Geometry, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
) {
    let x = randomFloats(g.n * g.c * g.h * g.w, seed: seed)
    let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: seed + 1)
    let wCount = g.o * g.c * g.kh * g.kw
    var dw = [Double](repeating: 0, count: wCount), magnitude = dw
    forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
        let tap = wIndex(g, o, c, ky, kx), product = Double(dy[yIndex(g, n, o, oy, ox)]) * Double(x[input])
        dw[tap] += product
        magnitude[tap] += abs(product)
    }
    for maxPartials in [Conv2DKernel.maxPartialFloats, 0] {
        func gradient(_ threads: Int) -> [Float] {
            RuntimeTests.run([x, dy], outputCount: wCount) { run(g, $0[0], $0[1], $1, threads, maxPartials) }
        }
        let one = gradient(1)
        #expect(worstError(one, dw, magnitude) <= 1, "\(g) maxPartials=\(maxPartials)")
        #expect(one.map(\.bitPattern) == gradient(2).map(\.bitPattern), "\(g) maxPartials=\(maxPartials)")
        #expect(one.map(\.bitPattern) == gradient(3).map(\.bitPattern), "\(g) maxPartials=\(maxPartials)")
    }
}

@Test("implicit-GEMM backward filter matches naive loops and gives the same bits on 1, 2 and 3 threads, in both group orders")
func filterKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 5, h: 9, w: 11, o: 13, kh: 3, kw: 3, padH: 1, padW: 1),     // o < 16: half tile, ragged; K = 45
        .init(n: 4, c: 7, h: 10, w: 7, o: 40, kh: 3, kw: 2, strideH: 2, strideW: 1, padH: 1, padW: 0), // 2 panels, K = 42
        .init(n: 5, c: 16, h: 8, w: 8, o: 33, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // last panel 1 wide
        .init(n: 2, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1),    // the stem's shape, K = 27
        .init(n: 3, c: 20, h: 5, w: 5, o: 16, kh: 5, kw: 5, padH: 2, padW: 2),     // 16 channels: one 16-wide panel
        .init(n: 17, c: 9, h: 12, w: 12, o: 20, kh: 3, kw: 3, padH: 1, padW: 1),   // groups of 8, 8, 1
        .init(n: 3, c: 20, h: 9, w: 9, o: 24, kh: 1, kw: 1, strideH: 2, strideW: 2), // 1×1 stride 2: subsampled copy
        .init(n: 2, c: 6, h: 8, w: 7, o: 17, kh: 1, kw: 1, strideH: 1, strideW: 3), // 1×1, stride along rows only
        .init(n: 2, c: 6, h: 6, w: 6, o: 17, kh: 1, kw: 1, padH: 1, padW: 1),    // padded 1×1: bordered copy
        .init(n: 2, c: 4, h: 7, w: 6, o: 18, kh: 4, kw: 3, strideH: 3, strideW: 2, padH: 2, padW: 1), // pixel tail
    ]
    for g in cases {
        #expect(Conv2DKernel.FilterKernel.suits(g))
        expectFilterGradientMatchesNaive(g, seed: 11) {
            Conv2DKernel.FilterKernel.run($0, x: $1, dy: $2, dw: $3, threads: $4, maxPartials: $5)
        }
    }
    // Packed panels in blocks (here one panel a block; ResNet-18's deep layers run blocks of a
    // quarter of L2): the same bits as all panels at once.
    for g in cases where Conv2DKernel.FilterKernel.Plan(g).oPanels > 1 {
        expectFilterGradientMatchesNaive(g, seed: 11) {
            Conv2DKernel.FilterKernel.run($0, x: $1, dy: $2, dw: $3, threads: $4, maxPartials: $5, blockBytes: 1)
        }
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 11), dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: 12)
        func gradient(_ blockBytes: Int) -> [Float] {
            run([x, dy], outputCount: g.o * g.patchSize) {
                Conv2DKernel.FilterKernel.run(g, x: $0[0], dy: $0[1], dw: $1, threads: 2, blockBytes: blockBytes)
            }
        }
        let blocked = gradient(1).map(\.bitPattern), whole = gradient(Conv2DKernel.FilterKernel.panelBlockBytes).map(\.bitPattern)
        #expect(blocked == whole, "\(g): \(zip(blocked, whole).filter { $0 != $1 }.count) elements differ")
    }
    // The dispatch: ResNet's layers and its stem suit it (the stem's is taken first by
    // `PixelFilterKernel`), LeNet-5's first layer and pointwise ones do not.
    #expect(Conv2DKernel.FilterKernel.runs(.init(n: 128, c: 16, h: 32, w: 32, o: 16, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(Conv2DKernel.FilterKernel.runs(.init(n: 128, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(!Conv2DKernel.FilterKernel.runs(.init(n: 64, c: 1, h: 28, w: 28, o: 6, kh: 5, kw: 5, padH: 2, padW: 2)))
    #expect(Conv2DKernel.FilterKernel.runs(.init(n: 128, c: 64, h: 32, w: 32, o: 128, kh: 1, kw: 1, strideH: 2, strideW: 2)))
    #expect(!Conv2DKernel.FilterKernel.runs(.init(n: 128, c: 64, h: 32, w: 32, o: 128, kh: 1, kw: 1)))
}

@Test("pixel-vector backward filter (a stem's few input channels) matches naive loops and gives the same bits on 1, 2 and 3 threads, in both group orders")
func pixelFilterKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 2, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1),    // ResNet-18's stem, K = 27
        .init(n: 17, c: 3, h: 16, w: 16, o: 16, kh: 3, kw: 3, padH: 1, padW: 1),   // ResNet-20's stem; groups of 3, last of 2
        .init(n: 3, c: 1, h: 5, w: 32, o: 7, kh: 3, kw: 3, padH: 1, padW: 1),      // odd o: last tile ragged; 3 K rows
        .init(n: 2, c: 2, h: 9, w: 18, o: 5, kh: 5, kw: 3),                        // unpadded, kh = 5: K = 30, 10 K rows
        .init(n: 3, c: 4, h: 6, w: 16, o: 11, kh: 1, kw: 3, padH: 0, padW: 1),     // kh = 1: 4 K rows
        .init(n: 2, c: 3, h: 4, w: 32, o: 20, kh: 3, kw: 3, padH: 2, padW: 1),     // rows of padding only
    ]
    for g in cases {
        #expect(Conv2DKernel.PixelFilterKernel.suits(g), "\(g)")
        guard Conv2DKernel.PixelFilterKernel.suits(g) else { continue }
        // The group-after-group order with the next image's dy prefetched (as past half the
        // last-level cache), the other without.
        expectFilterGradientMatchesNaive(g, seed: 21) {
            Conv2DKernel.PixelFilterKernel.run($0, x: $1, dy: $2, dw: $3, threads: $4, maxPartials: $5,
                                               residentBytes: $5 == 0 ? 0 : .max)
        }
    }
    // The dispatch: the stems run here; many input channels, strides, rows off the vector width,
    // kw other than 3, and LeNet-5's 6-channel first layer (the direct path's) do not.
    #expect(Conv2DKernel.PixelFilterKernel.runs(.init(n: 128, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(Conv2DKernel.PixelFilterKernel.runs(.init(n: 128, c: 3, h: 32, w: 32, o: 16, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(!Conv2DKernel.PixelFilterKernel.runs(.init(n: 128, c: 16, h: 32, w: 32, o: 16, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(!Conv2DKernel.PixelFilterKernel.runs(.init(n: 128, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)))
    #expect(!Conv2DKernel.PixelFilterKernel.runs(.init(n: 128, c: 3, h: 30, w: 30, o: 64, kh: 3, kw: 3, padH: 1, padW: 1)))
    #expect(!Conv2DKernel.PixelFilterKernel.runs(.init(n: 64, c: 1, h: 32, w: 32, o: 16, kh: 5, kw: 5, padH: 2, padW: 2)))
    #expect(!Conv2DKernel.PixelFilterKernel.runs(.init(n: 64, c: 1, h: 28, w: 28, o: 6, kh: 5, kw: 5, padH: 2, padW: 2)))
}

@Test("implicit-GEMM forward and backward data match naive loops and give the same bits on 1, 2 and 3 threads")
func implicitKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 5, h: 9, w: 11, o: 13, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // o, c < 16: half tiles, odd sides
        .init(n: 4, c: 7, h: 10, w: 7, o: 40, kh: 3, kw: 2, strideH: 2, strideW: 1, padH: 1, padW: 0), // 2 panels, 2 phases
        .init(n: 5, c: 36, h: 8, w: 8, o: 33, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // last panel 1 wide, groups
        .init(n: 17, c: 9, h: 6, w: 6, o: 20, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // 9-pixel phases, ragged group
        .init(n: 3, c: 20, h: 9, w: 9, o: 24, kh: 1, kw: 1, strideH: 2, strideW: 2),   // 1×1 stride 2: in place, 3 empty phases
        .init(n: 2, c: 40, h: 16, w: 16, o: 36, kh: 1, kw: 1, strideH: 2, strideW: 2), // shortcut shape, o > 32
        .init(n: 2, c: 6, h: 8, w: 7, o: 17, kh: 1, kw: 1, strideH: 1, strideW: 3),    // stride along rows only, 3 phases
        .init(n: 2, c: 4, h: 7, w: 6, o: 18, kh: 4, kw: 3, strideH: 3, strideW: 2, padH: 2, padW: 1), // 6 phases, tails
        .init(n: 2, c: 5, h: 7, w: 8, o: 9, kh: 2, kw: 2, strideH: 3, strideW: 3, padH: 2, padW: 0),  // taps < stride, pad ≥ kernel
        .init(n: 1, c: 33, h: 33, w: 35, o: 40, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // wide rows: SIMD interleave
        .init(n: 2, c: 8, h: 9, w: 9, o: 16, kh: 3, kw: 3, padH: 1, padW: 1),        // stride 1: one phase, written in place
        .init(n: 2, c: 32, h: 8, w: 9, o: 40, kh: 3, kw: 3),                          // stride 1 unpadded, 32 against 40 channels
        .init(n: 2, c: 33, h: 7, w: 6, o: 34, kh: 5, kw: 5, padH: 2, padW: 2),        // stride 1, 5×5 padded
        .init(n: 1, c: 1, h: 1, w: 1, o: 1, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1), // all padding but one tap
    ]
    for g in cases {
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 21)
        let weight = randomFloats(g.o * g.c * g.kh * g.kw, seed: 22)
        let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: 23)
        var y = [Double](repeating: 0, count: dy.count), yMagnitude = y
        var dx = [Double](repeating: 0, count: x.count), dxMagnitude = dx
        forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
            let out = yIndex(g, n, o, oy, ox), w = Double(weight[wIndex(g, o, c, ky, kx)])
            y[out] += w * Double(x[input]); yMagnitude[out] += abs(w * Double(x[input]))
            dx[input] += w * Double(dy[out]); dxMagnitude[input] += abs(w * Double(dy[out]))
        }
        #expect(Conv2DKernel.ImplicitKernel.suits(g, .forward) && Conv2DKernel.ImplicitKernel.suits(g, .backwardData))
        for forward in [true, false] {
            func result(_ threads: Int) -> [Float] {
                run([forward ? x : dy, weight], outputCount: forward ? dy.count : x.count) {
                    Conv2DKernel.ImplicitKernel.run(.init(g, forward: forward), source: $0[0], weight: $0[1], out: $1,
                                                    threads: threads)
                }
            }
            let one = result(1)
            #expect(forward ? worstError(one, y, yMagnitude) <= 1 : worstError(one, dx, dxMagnitude) <= 1,
                    "\(g) forward=\(forward)")
            #expect(one.map(\.bitPattern) == result(2).map(\.bitPattern), "\(g) forward=\(forward)")
            #expect(one.map(\.bitPattern) == result(3).map(\.bitPattern), "\(g) forward=\(forward)")
        }
    }
    // The dispatch: ResNet's strided 3×3 layers run here; its 1×1 shortcuts run in the fused
    // shortcut kernel instead; stride-1 ones and the backward filter do not.
    let strided = Conv2DKernel.Geometry(n: 128, c: 64, h: 32, w: 32, o: 128, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)
    #expect(Conv2DKernel.ImplicitKernel.runs(strided, .forward) && Conv2DKernel.ImplicitKernel.runs(strided, .backwardData))
    #expect(!Conv2DKernel.ImplicitKernel.runs(strided, .backwardFilter))
    let deep = Conv2DKernel.Geometry(n: 128, c: 256, h: 8, w: 8, o: 512, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)
    #expect(Conv2DKernel.ImplicitKernel.runs(deep, .forward))
    #expect(Conv2DKernel.ImplicitKernel.runs(deep, .backwardData))
    let shortcut = Conv2DKernel.Geometry(n: 128, c: 64, h: 32, w: 32, o: 128, kh: 1, kw: 1, strideH: 2, strideW: 2)
    #expect(!Conv2DKernel.ImplicitKernel.runs(shortcut, .forward) && !Conv2DKernel.ImplicitKernel.runs(shortcut, .backwardData))
    let deepShortcut = Conv2DKernel.Geometry(n: 128, c: 256, h: 8, w: 8, o: 512, kh: 1, kw: 1, strideH: 2, strideW: 2)
    #expect(!Conv2DKernel.ImplicitKernel.runs(deepShortcut, .forward) && !Conv2DKernel.ImplicitKernel.runs(deepShortcut, .backwardData))
    #expect(!Conv2DKernel.ImplicitKernel.runs(.init(n: 128, c: 64, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1), .forward))
    // Stride 1 with 32 channels against 64 or more, and 5×5 kernels of 32–63 channels, run here
    // on every ISA: a conv VAE decoder's first convolution, padded 5×5s; 32 against 32 (ResNet-20's
    // middle stage) and 16 against 64 stay direct; unpadded 3×3s from 13 pixels a side (PyTorch's
    // MNIST example's second convolution, 48 against 64) go to Winograd, all three passes when dy
    // is at least 16 wide, smaller ones to im2col + GEMM.
    for g in [Conv2DKernel.Geometry(n: 128, c: 64, h: 14, w: 14, o: 32, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 64, c: 32, h: 14, w: 14, o: 64, kh: 5, kw: 5, padH: 2, padW: 2),
              .init(n: 64, c: 48, h: 14, w: 14, o: 64, kh: 5, kw: 5, padH: 2, padW: 2)] {
        #expect(!DirectConv2D.suits(g) && Conv2DKernel.ImplicitKernel.runs(g, .forward) && Conv2DKernel.ImplicitKernel.runs(g, .backwardData), "\(g)")
        #expect(Conv2DKernel.algorithm(g, .forward).hasPrefix("implicit GEMM"), "\(g)")
    }
    for g in [Conv2DKernel.Geometry(n: 128, c: 32, h: 16, w: 16, o: 32, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 64, c: 16, h: 14, w: 14, o: 64, kh: 3, kw: 3, padH: 1, padW: 1)] {
        #expect(DirectConv2D.suits(g) && !Conv2DKernel.ImplicitKernel.runs(g, .forward), "\(g)")
    }
    let pointwise = Conv2DKernel.Geometry(n: 64, c: 32, h: 16, w: 16, o: 64, kh: 1, kw: 1)
    #expect(Conv2DKernel.algorithm(pointwise, .forward).hasPrefix("1x1 GEMM") && !Conv2DKernel.ImplicitKernel.runs(pointwise, .backwardData))
    for g in [Conv2DKernel.Geometry(n: 64, c: 32, h: 26, w: 26, o: 64, kh: 3, kw: 3),
              .init(n: 64, c: 48, h: 16, w: 16, o: 64, kh: 3, kw: 3),
              .init(n: 64, c: 64, h: 13, w: 13, o: 64, kh: 3, kw: 3, padH: 2, padW: 2)] {
        for pass in [Conv2DKernel.Pass.forward, .backwardData] {
            #expect(Conv2DKernel.algorithm(g, pass).hasPrefix("winograd F(4x4,3x3)") && !Conv2DKernel.ImplicitKernel.runs(g, pass), "\(g)")
        }
        #expect(Conv2DKernel.WinogradFilter.suits(g) == (g.ow >= 16), "\(g)")
    }
    let small = Conv2DKernel.Geometry(n: 64, c: 64, h: 12, w: 12, o: 64, kh: 3, kw: 3)
    #expect(!Conv2DKernel.Winograd.suits(small) && Conv2DKernel.algorithm(small, .forward).hasPrefix("im2col+GEMM"))
    #expect(!Conv2DKernel.Winograd.suits(.init(n: 64, c: 64, h: 16, w: 16, o: 64, kh: 3, kw: 3, padH: 1, padW: 0)))
    // Strided layers with fewer than 16 input channels (a DCGAN's last transposed convolution,
    // a discriminator's first layer) take only their forward pass here; their backward data runs
    // in im2col + GEMM, whose GEMM rows are c·kh·kw, not c.
    for g in [Conv2DKernel.Geometry(n: 64, c: 1, h: 28, w: 28, o: 64, kh: 4, kw: 4, strideH: 2, strideW: 2, padH: 1, padW: 1),
              .init(n: 64, c: 3, h: 32, w: 32, o: 64, kh: 4, kw: 4, strideH: 2, strideW: 2, padH: 1, padW: 1),
              .init(n: 128, c: 15, h: 32, w: 32, o: 32, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)] {
        #expect(Conv2DKernel.ImplicitKernel.runs(g, .forward) && !Conv2DKernel.ImplicitKernel.runs(g, .backwardData), "\(g)")
        #expect(Conv2DKernel.algorithm(g, .backwardData).hasPrefix("im2col+GEMM"), "\(g)")
    }
    let sixteen = Conv2DKernel.Geometry(n: 64, c: 16, h: 28, w: 28, o: 64, kh: 4, kw: 4, strideH: 2, strideW: 2, padH: 1, padW: 1)
    #expect(Conv2DKernel.ImplicitKernel.runs(sixteen, .backwardData))
}

@Test("fused 1×1 stride-2 shortcut kernel: all three passes match naive loops and give the same bits on 1, 2 and 3 threads")
func shortcutKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 5, h: 32, w: 32, o: 13, kh: 1, kw: 1, strideH: 2, strideW: 2),  // rows of 16: a group an image, ragged A panel
        .init(n: 5, c: 9, h: 16, w: 16, o: 20, kh: 1, kw: 1, strideH: 2, strideW: 2),  // rows of 8: groups of 4 + 1
        .init(n: 3, c: 7, h: 8, w: 8, o: 17, kh: 1, kw: 1, strideH: 2, strideW: 2),    // rows of 4: 16-pixel images, odd count
        .init(n: 1, c: 6, h: 8, w: 64, o: 9, kh: 1, kw: 1, strideH: 2, strideW: 2),    // rows of 32; one group, A panels split
        .init(n: 2, c: 40, h: 4, w: 32, o: 40, kh: 1, kw: 1, strideH: 2, strideW: 2),  // two output rows; 40 channels: ragged panels
        .init(n: 17, c: 4, h: 8, w: 8, o: 8, kh: 1, kw: 1, strideH: 2, strideW: 2),    // groups of 16 + 1
    ]
    for g in cases {
        #expect(Conv2DKernel.ShortcutKernel.runs(g, .forward) && Conv2DKernel.ShortcutKernel.runs(g, .backwardData)
                && Conv2DKernel.ShortcutKernel.runs(g, .backwardFilter), "\(g)")
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 31)
        let weight = randomFloats(g.o * g.c, seed: 32)
        let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: 33)
        var y = [Double](repeating: 0, count: dy.count), yMagnitude = y
        var dx = [Double](repeating: 0, count: x.count), dxMagnitude = dx
        var dw = [Double](repeating: 0, count: weight.count), dwMagnitude = dw
        forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
            let out = yIndex(g, n, o, oy, ox), tap = wIndex(g, o, c, ky, kx), w = Double(weight[tap])
            y[out] += w * Double(x[input]); yMagnitude[out] += abs(w * Double(x[input]))
            dx[input] += w * Double(dy[out]); dxMagnitude[input] += abs(w * Double(dy[out]))
            dw[tap] += Double(dy[out]) * Double(x[input]); dwMagnitude[tap] += abs(Double(dy[out]) * Double(x[input]))
        }
        func filter(_ threads: Int, maxPartials: Int = Conv2DKernel.maxPartialFloats) -> [Float] {
            run([x, dy], outputCount: weight.count) {
                Conv2DKernel.ShortcutKernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: threads, maxPartials: maxPartials)
            }
        }
        let gradient = filter(1)
        #expect(worstError(gradient, dw, dwMagnitude) <= 1, "backwardFilter \(g)")
        #expect(gradient.map(\.bitPattern) == filter(2).map(\.bitPattern), "backwardFilter \(g)")
        #expect(gradient.map(\.bitPattern) == filter(3).map(\.bitPattern), "backwardFilter \(g)")
        // Group after group (no room for partials), and through the dispatch.
        let serial = filter(1, maxPartials: 0)
        #expect(worstError(serial, dw, dwMagnitude) <= 1, "backwardFilter \(g), groups in turn")
        #expect(serial.map(\.bitPattern) == filter(2, maxPartials: 0).map(\.bitPattern), "backwardFilter \(g), groups in turn")
        let dispatched = run([x, dy], outputCount: weight.count) {
            Conv2DKernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: 2)
        }
        #expect(dispatched.map(\.bitPattern) == gradient.map(\.bitPattern), "backwardFilter \(g)")
        for forward in [true, false] {
            func result(_ threads: Int) -> [Float] {
                run([forward ? x : dy, weight], outputCount: forward ? dy.count : x.count) {
                    forward ? Conv2DKernel.forward(g, x: $0[0], weight: $0[1], y: $1, threads: threads)
                        : Conv2DKernel.backwardData(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads)
                }
            }
            let one = result(1)
            #expect(forward ? worstError(one, y, yMagnitude) <= 1 : worstError(one, dx, dxMagnitude) <= 1,
                    "\(g) forward=\(forward)")
            #expect(one.map(\.bitPattern) == result(2).map(\.bitPattern), "\(g) forward=\(forward)")
            #expect(one.map(\.bitPattern) == result(3).map(\.bitPattern), "\(g) forward=\(forward)")
        }
    }
    // The dispatch: ResNet-18's three shortcuts run here, forward and backward data; odd sides,
    // rows of other widths, other strides and padding do not.
    for (c, side) in [(64, 32), (128, 16), (256, 8)] {
        let g = Conv2DKernel.Geometry(n: 128, c: c, h: side, w: side, o: 2 * c, kh: 1, kw: 1, strideH: 2, strideW: 2)
        #expect(Conv2DKernel.ShortcutKernel.runs(g, .forward) && Conv2DKernel.ShortcutKernel.runs(g, .backwardData))
        #expect(Conv2DKernel.ShortcutKernel.runs(g, .backwardFilter) && !Conv2DKernel.ImplicitKernel.runs(g, .forward))
        for pass in [Conv2DKernel.Pass.forward, .backwardData, .backwardFilter] {
            #expect(Conv2DKernel.algorithm(g, pass).hasPrefix("fused 1x1 s2"))
        }
    }
    for g in [Conv2DKernel.Geometry(n: 2, c: 8, h: 9, w: 8, o: 8, kh: 1, kw: 1, strideH: 2, strideW: 2),
              .init(n: 2, c: 8, h: 24, w: 24, o: 8, kh: 1, kw: 1, strideH: 2, strideW: 2),
              .init(n: 2, c: 8, h: 16, w: 16, o: 8, kh: 1, kw: 1, strideH: 1, strideW: 2),
              .init(n: 2, c: 8, h: 16, w: 16, o: 8, kh: 1, kw: 1, strideH: 2, strideW: 2, padH: 1, padW: 1),
              .init(n: 2, c: 8, h: 16, w: 16, o: 8, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1)] {
        #expect(!Conv2DKernel.ShortcutKernel.suits(g), "\(g)")
    }
}

@Test("shortcut kernel past the cache: streamed y and dx and prefetched x give the cached path's bits, aligned or not")
func shortcutKernelStreamsAndPrefetches() {
    typealias Kernel = Conv2DKernel.ShortcutKernel
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 5, h: 32, w: 32, o: 13, kh: 1, kw: 1, strideH: 2, strideW: 2),  // rows of 16
        .init(n: 5, c: 9, h: 16, w: 16, o: 20, kh: 1, kw: 1, strideH: 2, strideW: 2),  // rows of 8
        .init(n: 3, c: 7, h: 8, w: 8, o: 17, kh: 1, kw: 1, strideH: 2, strideW: 2),    // rows of 4
        .init(n: 1, c: 6, h: 8, w: 64, o: 9, kh: 1, kw: 1, strideH: 2, strideW: 2),    // one group, A panels split
    ]
    for g in cases {
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 41)
        let weight = randomFloats(g.o * g.c, seed: 42)
        let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: 43)
        for forward in [true, false] {
            #expect(Kernel.Plan(g, forward: forward, residentBytes: 0).stream)
            #expect(!Kernel.Plan(g, forward: forward, residentBytes: .max).stream)
        }
        #expect(Kernel.FilterPlan(g, residentBytes: 0).prefetch && !Kernel.FilterPlan(g, residentBytes: .max).prefetch)
        /// y (forward) or dx into 64-byte aligned memory (`offset` floats past it).
        func pass(forward: Bool, _ residentBytes: Int, threads: Int, offset: Int = 0) -> [Float] {
            alignedOutput(count: forward ? dy.count : x.count, offset: offset) { out in
                (forward ? x : dy).withUnsafeBufferPointer { source in
                    weight.withUnsafeBufferPointer { w in
                        Kernel.run(Kernel.Plan(g, forward: forward, residentBytes: residentBytes), source: source.baseAddress!,
                                   weight: w.baseAddress!, out: out, threads: threads)
                    }
                }
            }
        }
        for forward in [true, false] {
            let cached = pass(forward: forward, .max, threads: 1)
            #expect(!cached.contains { $0.isNaN })
            for threads in 1...3 {
                #expect(pass(forward: forward, 0, threads: threads).map(\.bitPattern) == cached.map(\.bitPattern),
                        "streamed \(g) forward \(forward) \(threads)")
                // Not 64-byte aligned: stored as usual.
                #expect(pass(forward: forward, 0, threads: threads, offset: 1).map(\.bitPattern) == cached.map(\.bitPattern),
                        "\(g) forward \(forward) \(threads)")
            }
        }
        func filter(_ residentBytes: Int, _ threads: Int) -> [Float] {
            run([x, dy], outputCount: weight.count) {
                Kernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: threads, residentBytes: residentBytes)
            }
        }
        let gradient = filter(.max, 1)
        for threads in 1...3 {
            #expect(filter(0, threads).map(\.bitPattern) == gradient.map(\.bitPattern), "prefetched \(g) \(threads)")
        }
    }
}

@Test("the stem's backward data from unshifted sums matches naive loops and gives the same bits on 1, 2 and 3 threads, prefetched or not")
func stemDataKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1),  // CIFAR's stem
        .init(n: 2, c: 1, h: 5, w: 32, o: 7, kh: 3, kw: 3, padH: 1, padW: 1),    // one channel: padded weights; with 16 lanes a last band of 1 row
        .init(n: 5, c: 2, h: 4, w: 32, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),    // two channels
        .init(n: 1, c: 3, h: 1, w: 32, o: 2, kh: 3, kw: 3, padH: 1, padW: 1),    // one row: only ky = 1 sees dy
    ]
    for g in cases {
        #expect(Conv2DKernel.StemDataKernel.suits(g), "\(g)")
        let weight = randomFloats(g.o * g.c * 9, seed: 41)
        let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: 42)
        var dx = [Double](repeating: 0, count: g.n * g.c * g.h * g.w), dxMagnitude = dx
        forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
            let w = Double(weight[wIndex(g, o, c, ky, kx)])
            dx[input] += w * Double(dy[yIndex(g, n, o, oy, ox)]); dxMagnitude[input] += abs(w * Double(dy[yIndex(g, n, o, oy, ox)]))
        }
        func result(_ threads: Int) -> [Float] {
            run([dy, weight], outputCount: dx.count) {
                Conv2DKernel.backwardData(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads)
            }
        }
        /// With dy's next rows prefetched, as past half the last-level cache.
        func prefetched(_ threads: Int) -> [Float] {
            run([dy, weight], outputCount: dx.count) {
                Conv2DKernel.StemDataKernel.run(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads, residentBytes: 0)
            }
        }
        let one = result(1)
        #expect(worstError(one, dx, dxMagnitude) <= 1, "\(g)")
        for threads in 1...3 {
            #expect(one.map(\.bitPattern) == result(threads).map(\.bitPattern), "\(g) \(threads)")
            #expect(one.map(\.bitPattern) == prefetched(threads).map(\.bitPattern), "prefetched \(g) \(threads)")
        }
    }
    for g in [Conv2DKernel.Geometry(n: 2, c: 4, h: 32, w: 32, o: 8, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 2, c: 3, h: 32, w: 31, o: 8, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 2, c: 3, h: 32, w: 32, o: 8, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1),
              .init(n: 2, c: 3, h: 32, w: 32, o: 8, kh: 5, kw: 5, padH: 2, padW: 2)] {
        #expect(!Conv2DKernel.StemDataKernel.suits(g), "\(g)")
    }
    #expect(Conv2DKernel.algorithm(cases[0], .backwardData) == Conv2DKernel.StemDataKernel.algorithm(cases[0]))
}

@Test("the stem's forward from shifted copies matches naive loops, streamed or not, aligned or not, on 1, 2 and 3 threads")
func stemForwardKernelMatchesNaive() {
    let cases: [Conv2DKernel.Geometry] = [
        .init(n: 3, c: 3, h: 32, w: 32, o: 64, kh: 3, kw: 3, padH: 1, padW: 1),  // CIFAR's stem: bands of 6 rows, 2 left
        .init(n: 2, c: 1, h: 5, w: 32, o: 7, kh: 3, kw: 3, padH: 1, padW: 1),    // one channel; 7 = 3 pairs + 1 output channel
        .init(n: 5, c: 2, h: 4, w: 32, o: 2, kh: 3, kw: 3, padH: 1, padW: 1),    // two channels, two outputs
        .init(n: 1, c: 3, h: 1, w: 32, o: 5, kh: 3, kw: 3, padH: 1, padW: 1),    // one row: tails only
        .init(n: 2, c: 3, h: 13, w: 32, o: 4, kh: 3, kw: 3, padH: 1, padW: 1),   // 6 + 6 + 1 rows
    ]
    for g in cases {
        #expect(Conv2DKernel.StemForwardKernel.runs(g), "\(g)")
        let x = randomFloats(g.n * g.c * g.h * g.w, seed: 51)
        let weight = randomFloats(g.o * g.c * 9, seed: 52)
        var y = [Double](repeating: 0, count: g.n * g.o * g.oh * g.ow), yMagnitude = y
        forEachTap(g) { n, o, oy, ox, c, ky, kx, input in
            let w = Double(weight[wIndex(g, o, c, ky, kx)])
            y[yIndex(g, n, o, oy, ox)] += w * Double(x[input]); yMagnitude[yIndex(g, n, o, oy, ox)] += abs(w * Double(x[input]))
        }
        /// y into 64-byte aligned memory (`offset` floats past it); streamed past the caches where
        /// `residentBytes` is 0 and y aligned.
        func result(_ threads: Int, residentBytes: Int = .max, offset: Int = 0) -> [Float] {
            alignedOutput(count: y.count, offset: offset) { out in
                x.withUnsafeBufferPointer { xs in
                    weight.withUnsafeBufferPointer { w in
                        Conv2DKernel.StemForwardKernel.run(g, x: xs.baseAddress!, weight: w.baseAddress!, y: out, threads: threads,
                                                           residentBytes: residentBytes)
                    }
                }
            }
        }
        let one = result(1)
        #expect(worstError(one, y, yMagnitude) <= 1, "\(g)")
        for threads in 1...3 {
            #expect(one.map(\.bitPattern) == result(threads).map(\.bitPattern), "\(g) \(threads)")
            #expect(one.map(\.bitPattern) == result(threads, residentBytes: 0).map(\.bitPattern), "streamed \(g) \(threads)")
            #expect(one.map(\.bitPattern) == result(threads, residentBytes: 0, offset: 1).map(\.bitPattern),
                    "misaligned \(g) \(threads)")
        }
    }
    #expect(Conv2DKernel.algorithm(cases[0], .forward) == Conv2DKernel.StemForwardKernel.algorithm)
}

@Test("conv2d kernels give the same bits on 1, 2 and 4 threads")
func convThreadCountInvariant() {
    // Batch 10: 8 filter-gradient groups of unequal size; batch 1 and 3: GEMM-level threads.
    for n in [1, 3, 10] {
        let g = Conv2DKernel.Geometry(n: n, c: 6, h: 14, w: 14, o: 16, kh: 5, kw: 5, padH: 1, padW: 1)
        func outputs(_ threads: Int) -> [[UInt32]] { convPassBits(g, seed: 1, threads: threads) }
        let one = outputs(1)
        #expect(one == outputs(2), "n=\(n)")
        #expect(one == outputs(4), "n=\(n)")
    }
}

@Test("layers with at most 8 channels on one side and a GEMM depth over 512 run their forward and backward data direct, with workspace buffers; their filter gradient with at most 3 output channels on rows of 16 or more")
func fewChannelsDeepPatchesRunDirect() {
    for g in [Conv2DKernel.Geometry(n: 64, c: 64, h: 28, w: 28, o: 1, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 128, c: 64, h: 32, w: 32, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 64, c: 128, h: 14, w: 14, o: 8, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 64, c: 256, h: 8, w: 8, o: 3, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 2, c: 8, h: 11, w: 12, o: 20, kh: 9, kw: 9, padH: 4, padW: 4)] {
        #expect(!DirectConv2D.suits(g), "\(g)")
        #expect(Conv2DKernel.algorithm(g, .forward) == "direct" && Conv2DKernel.algorithm(g, .backwardData) == "direct", "\(g)")
        #expect(Conv2DKernel.Workspace(.forward, g, threads: 2).direct != nil, "\(g)")
        #expect(Conv2DKernel.Workspace(.backwardData, g, threads: 2).direct != nil, "\(g)")
        let directFilter = g.o <= 3 && g.ow >= 16
        #expect((Conv2DKernel.algorithm(g, .backwardFilter) == "direct") == directFilter, "\(g)")
        #expect((Conv2DKernel.Workspace(.backwardFilter, g, threads: 2).direct != nil) == directFilter, "\(g)")
        expectSameBitsOnThreads(g)
    }
    // Nine channels on the narrow side, strides, and pointwise layers keep their paths.
    for g in [Conv2DKernel.Geometry(n: 64, c: 128, h: 14, w: 14, o: 9, kh: 3, kw: 3, padH: 1, padW: 1),
              .init(n: 64, c: 64, h: 28, w: 28, o: 1, kh: 3, kw: 3, strideH: 2, strideW: 2, padH: 1, padW: 1),
              .init(n: 64, c: 600, h: 8, w: 8, o: 1, kh: 1, kw: 1)] {
        #expect(!DirectConv2D.runs(g, .forward) && !DirectConv2D.runs(g, .backwardData), "\(g)")
    }
}

/// The bits of all three passes of `g` (dispatched as in a program) on `threads` threads, from
/// random x, weight and dy (seeds `seed`, `seed + 1`, `seed + 2`).
private func convPassBits(_ g: Conv2DKernel.Geometry, seed: UInt64, threads: Int) -> [[UInt32]] {
    let x = randomFloats(g.n * g.c * g.h * g.w, seed: seed)
    let weight = randomFloats(g.o * g.c * g.kh * g.kw, seed: seed + 1)
    let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: seed + 2)
    let y = run([x, weight], outputCount: dy.count) { Conv2DKernel.forward(g, x: $0[0], weight: $0[1], y: $1, threads: threads) }
    let dx = run([dy, weight], outputCount: x.count) {
        Conv2DKernel.backwardData(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads)
    }
    let dw = run([x, dy], outputCount: weight.count) {
        Conv2DKernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: threads)
    }
    return [y, dx, dw].map { $0.map(\.bitPattern) }
}

/// All three passes of `g`, at batch `n`, give the same bits on 1, 2 and 3 threads.
private func expectSameBitsOnThreads(_ full: Conv2DKernel.Geometry, n: Int = 3) {
    let g = Conv2DKernel.Geometry(n: n, c: full.c, h: full.h, w: full.w, o: full.o, kh: full.kh, kw: full.kw,
                                  strideH: full.strideH, strideW: full.strideW, padH: full.padH, padW: full.padW)
    let one = convPassBits(g, seed: 31, threads: 1)
    #expect(one == convPassBits(g, seed: 31, threads: 2) && one == convPassBits(g, seed: 31, threads: 3), "\(g)")
}

@Test("kernels that cover the whole unpadded image run as one GEMM per pass; padded or smaller ones do not")
func wholeImageConvolutionsRunAsGEMM() {
    for g in [Conv2DKernel.Geometry(n: 64, c: 512, h: 4, w: 4, o: 100, kh: 4, kw: 4),
              .init(n: 64, c: 128, h: 7, w: 7, o: 1, kh: 7, kw: 7),
              .init(n: 64, c: 16, h: 5, w: 5, o: 120, kh: 5, kw: 5)] {
        for pass in [Conv2DKernel.Pass.forward, .backwardData, .backwardFilter] {
            #expect(Conv2DKernel.algorithm(g, pass).hasPrefix("whole-image GEMM"), "\(g) \(pass)")
            #expect(Conv2DKernel.Workspace(pass, g, threads: 2).direct == nil, "\(g) \(pass)")
        }
        #expect(g.oh == 1 && g.ow == 1)
        expectSameBitsOnThreads(g)
    }
    #expect(!Conv2DKernel.algorithm(.init(n: 64, c: 16, h: 3, w: 3, o: 120, kh: 3, kw: 3, padH: 1, padW: 1), .forward)
        .hasPrefix("whole-image"))
    #expect(!Conv2DKernel.algorithm(.init(n: 64, c: 16, h: 5, w: 5, o: 120, kh: 4, kw: 4), .forward).hasPrefix("whole-image"))
}

@Test("a conv2d workspace reused across calls gives the same bits as scratch made for the call")
func convWorkspaceReuse() {
    for g in convCases {
        for threads in [1, 2] {
            let forward = Conv2DKernel.Workspace(.forward, g, threads: threads)
            let backwardData = Conv2DKernel.Workspace(.backwardData, g, threads: threads)
            let backwardFilter = Conv2DKernel.Workspace(.backwardFilter, g, threads: threads)
            func outputs(seed: UInt64, reuse: Bool) -> [[UInt32]] {
                let x = randomFloats(g.n * g.c * g.h * g.w, seed: seed)
                let weight = randomFloats(g.o * g.c * g.kh * g.kw, seed: seed + 1)
                let dy = randomFloats(g.n * g.o * g.oh * g.ow, seed: seed + 2)
                let y = run([x, weight], outputCount: dy.count) {
                    Conv2DKernel.forward(g, x: $0[0], weight: $0[1], y: $1, threads: threads,
                                         workspace: reuse ? forward : nil)
                }
                let dx = run([dy, weight], outputCount: x.count) {
                    Conv2DKernel.backwardData(g, dy: $0[0], weight: $0[1], dx: $1, threads: threads,
                                              workspace: reuse ? backwardData : nil)
                }
                let dw = run([x, dy], outputCount: weight.count) {
                    Conv2DKernel.backwardFilter(g, x: $0[0], dy: $0[1], dw: $1, threads: threads,
                                                workspace: reuse ? backwardFilter : nil)
                }
                return [y, dx, dw].map { $0.map(\.bitPattern) }
            }
            // The first call leaves its data in the workspace; the second must not see it.
            _ = outputs(seed: 7, reuse: true)
            #expect(outputs(seed: 11, reuse: true) == outputs(seed: 11, reuse: false), "\(g) threads=\(threads)")
        }
    }
}

// MARK: Pooling

private let poolCases: [Pool2DKernel.Geometry] = [
    .init(n: 2, c: 6, h: 28, w: 28, kh: 2, kw: 2),                       // LeNet-5 pool1
    .init(n: 3, c: 2, h: 7, w: 13, kh: 3, kw: 3, strideH: 1, strideW: 1), // overlapping windows
    .init(n: 1, c: 3, h: 13, w: 7, kh: 3, kw: 2, strideH: 2, strideW: 1),
    .init(n: 2, c: 1, h: 5, w: 5, kh: 2, kw: 2),                         // odd size: last row unused
    .init(n: 1, c: 1, h: 1, w: 1, kh: 1, kw: 1),
    .init(n: 4, c: 33, h: 9, w: 9, kh: 3, kw: 3, strideH: 2, strideW: 2),
    .init(n: 3, c: 2, h: 7, w: 37, kh: 2, kw: 2),                        // 2×2: one vector + scalar tail
    .init(n: 2, c: 3, h: 4, w: 66, kh: 2, kw: 2),                        // 2×2: two full vectors + tail
    .init(n: 2, c: 16, h: 10, w: 10, kh: 2, kw: 2),                      // LeNet-5 pool2
    .init(n: 2, c: 3, h: 6, w: 30, kh: 2, kw: 2),                        // 2×2: 15 outputs a row, stored 8 + 4 + 2 + 1
    .init(n: 2, c: 2, h: 4, w: 14, kh: 2, kw: 2),                        // 2×2: 7 outputs a row, stored 4 + 2 + 1
]

private func poolInput(_ g: Pool2DKernel.Geometry, _ n: Int, _ c: Int, _ oy: Int, _ ox: Int, _ ky: Int, _ kx: Int) -> Int {
    ((n * g.c + c) * g.h + oy * g.strideH + ky) * g.w + ox * g.strideW + kx
}

@Test("pooling kernels match naive loops, with ties routed to the first maximum", arguments: poolCases.indices)
func poolMatchesNaive(caseIndex: Int) {
    let g = poolCases[caseIndex]
    let xCount = g.n * g.c * g.h * g.w, yCount = g.n * g.c * g.oh * g.ow
    let x = randomSmallIntegers(xCount, seed: UInt64(caseIndex))
    let dy = randomFloats(yCount, seed: UInt64(caseIndex) + 50)
    let source = randomFloats(xCount, seed: UInt64(caseIndex) + 60)

    var maxY = [Float](repeating: 0, count: yCount), gather = maxY
    var avgY = [Double](repeating: 0, count: yCount)
    var maxDx = [Double](repeating: 0, count: xCount), avgDx = maxDx
    let area = Double(g.kh * g.kw)
    var out = 0
    for n in 0..<g.n { for c in 0..<g.c { for oy in 0..<g.oh { for ox in 0..<g.ow {
        var best = poolInput(g, n, c, oy, ox, 0, 0)
        for ky in 0..<g.kh { for kx in 0..<g.kw {
            let i = poolInput(g, n, c, oy, ox, ky, kx)
            if x[i] > x[best] { best = i }
            avgY[out] += Double(x[i]) / area
            avgDx[i] += Double(dy[out]) / area
        } }
        maxY[out] = x[best]; gather[out] = source[best]; maxDx[best] += Double(dy[out])
        out += 1
    } } } }
    let scale = { (values: [Double]) in values.map { _ in 1.0 } }

    for threads in [1, 2] {
        let gotMax = run([x], outputCount: yCount) { Pool2DKernel.maxForward(g, x: $0[0], y: $1, threads: threads) }
        let gotGather = run([x, source], outputCount: yCount) {
            Pool2DKernel.maxGather(g, x: $0[0], source: $0[1], out: $1, threads: threads)
        }
        let gotMaxDx = run([x, dy], outputCount: xCount) {
            Pool2DKernel.maxBackward(g, x: $0[0], dy: $0[1], dx: $1, threads: threads)
        }
        let gotAvg = run([x], outputCount: yCount) { Pool2DKernel.avgForward(g, x: $0[0], y: $1, threads: threads) }
        let gotAvgDx = run([dy], outputCount: xCount) {
            Pool2DKernel.avgBackward(g, dy: $0[0], dx: $1, threads: threads)
        }
        #expect(gotMax == maxY, "maxForward \(g)")
        #expect(gotGather == gather, "maxGather \(g)")
        #expect(worstError(gotMaxDx, maxDx, scale(maxDx)) <= 1, "maxBackward \(g)")
        #expect(worstError(gotAvg, avgY, scale(avgY)) <= 1, "avgForward \(g)")
        #expect(worstError(gotAvgDx, avgDx, scale(avgDx)) <= 1, "avgBackward \(g)")
    }
}

@Test("the partitioned filter gradient's final sum adds the partials to dw in partition order, bit for bit, on 1, 2 and 3 threads")
func addPartialsKeepsPartitionOrder() {
    // Large enough for one range a thread (4,096 floats a range at least), with a ragged tail.
    for (filter, count) in [(8_200 + 5, 3), (100, 7), (2 * 4_096 + 16, 1)] {
        let start = randomFloats(filter, seed: 40)
        // Magnitudes far apart, so adding in another order gives other bits.
        let partials = (0..<count).flatMap { part in randomFloats(filter, seed: 41 + UInt64(part)).map { $0 * Float(1 << (9 * part)) } }
        var expected = start
        for part in 0..<count {
            for i in 0..<filter { expected[i] += partials[part * filter + i] }
        }
        for threads in 1...3 {
            var dw = start
            partials.withUnsafeBufferPointer { p in
                dw.withUnsafeMutableBufferPointer {
                    Conv2DKernel.addPartials($0.baseAddress!, p.baseAddress!, count: count, filter: filter, threads: threads)
                }
            }
            let differing = zip(dw, expected).filter { $0.bitPattern != $1.bitPattern }.count
            #expect(differing == 0, "filter \(filter), \(count) partials, \(threads) threads: \(differing) floats differ")
        }
    }
}
