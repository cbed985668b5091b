import Testing
@testable import KilnRuntime

/// SplitMix64: a small seeded generator so every test input is reproducible.
private typealias SeededGenerator = SplitMix64

private func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
}

/// One GEMM problem with padded leading dimensions, run against a float64 triple loop.
private struct Problem {
    let transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, accumulate: Bool
    var lda: Int { (transposeA ? m : k) + 3 }
    var ldb: Int { (transposeB ? k : n) + 5 }
    var ldc: Int { n + 2 }
    var aRows: Int { transposeA ? k : m }
    var bRows: Int { transposeB ? n : k }

    func elementA(_ a: [Float], _ i: Int, _ p: Int) -> Float { transposeA ? a[p * lda + i] : a[i * lda + p] }
    func elementB(_ b: [Float], _ p: Int, _ j: Int) -> Float { transposeB ? b[j * ldb + p] : b[p * ldb + j] }

    /// Runs sgemm on seeded inputs and returns (result, inputs C), with a workspace made for
    /// the shape when asked.
    func run(seed: UInt64, threads: Int, workspace: Bool = false) -> (c: [Float], a: [Float], b: [Float], c0: [Float]) {
        let space = workspace ? GEMM.Workspace(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k) : nil
        let a = randomFloats(max(1, aRows * lda), seed: seed)
        let b = randomFloats(max(1, bRows * ldb), seed: seed &+ 1)
        let c0 = randomFloats(max(1, m * ldc), seed: seed &+ 2)
        var c = c0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    GEMM.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                               a: a.baseAddress!, lda: lda, b: b.baseAddress!, ldb: ldb,
                               c: c.baseAddress!, ldc: ldc, accumulate: accumulate, threads: threads,
                               workspace: space)
                }
            }
        }
        return (c, a, b, c0)
    }
}

private let sizes: [(Int, Int, Int)] = [
    (1, 1, 1), (7, 13, 33), (33, 65, 7), (65, 130, 13), (130, 33, 65), (13, 1, 130), (1, 130, 7),
    (8, 32, 1), (16, 64, 256), (130, 130, 130), (9, 40, 600), (3, 4100, 5), (6, 16, 9), (18, 48, 70),
    // The shapes training runs (MLP and LeNet dense layers at batch 16 and 64, the VAE at 128)
    // and odd neighbours that reach every path: inner products (k ≥ 64, ragged k, ragged tiles),
    // B in place (m ≤ 64, ragged last panel) and packed.
    (16, 200, 784), (16, 784, 200), (200, 784, 16), (16, 10, 200), (64, 120, 400), (64, 84, 120),
    (128, 20, 400), (7, 13, 97), (13, 33, 65), (33, 7, 1000), (1, 1, 64), (61, 37, 129),
    // B's rows 256 floats wide but n + 5 apart: read in place (the stride spreads over L1), two depth blocks.
    (128, 256, 300),
    // Aᵀ·B narrower than a panel, run as Cᵀ = Bᵀ·A: A read in place (rows m + 3 apart), or
    // packed (61 + 3 = 64 floats apart crowd L1's sets).
    (400, 10, 128), (61, 10, 50),
]
private let variants: [(Bool, Bool)] = [(false, false), (false, true), (true, false), (true, true)]

@Test("sgemm matches a float64 triple loop for all transposes, odd sizes and padded leading dimensions",
      arguments: sizes.indices, variants.indices)
func sgemmMatchesNaive(sizeIndex: Int, variantIndex: Int) {
    let (m, n, k) = sizes[sizeIndex]
    let (transposeA, transposeB) = variants[variantIndex]
    for accumulate in [false, true] {
        let problem = Problem(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, accumulate: accumulate)
        let (c, a, b, c0) = problem.run(seed: UInt64(sizeIndex * 8 + variantIndex * 2 + (accumulate ? 1 : 0)), threads: 1,
                                        workspace: sizeIndex % 2 == 0)
        var worst: Double = 0
        var paddingIntact = true
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = accumulate ? Double(c0[i * problem.ldc + j]) : 0
                var magnitude: Double = abs(sum)
                for p in 0..<k {
                    let product = Double(problem.elementA(a, i, p)) * Double(problem.elementB(b, p, j))
                    sum += product
                    magnitude += abs(product)
                }
                // Float32 summation error grows with the sum of magnitudes; 1e-5 of it is generous.
                let error = abs(Double(c[i * problem.ldc + j]) - sum) / (magnitude * 1e-5 + 1e-30)
                worst = max(worst, error)
            }
            for j in n..<problem.ldc where c[i * problem.ldc + j] != c0[i * problem.ldc + j] {
                paddingIntact = false
            }
        }
        #expect(worst <= 1, "m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB) acc=\(accumulate)")
        #expect(paddingIntact, "sgemm wrote past n in a row of C")
    }
}

@Test("sgemm with k = 0 zeroes C, or leaves it when accumulating")
func sgemmEmptyDepth() {
    for accumulate in [false, true] {
        let problem = Problem(transposeA: false, transposeB: false, m: 5, n: 6, k: 0, accumulate: accumulate)
        let (c, _, _, c0) = problem.run(seed: 42, threads: 1)
        for i in 0..<5 {
            for j in 0..<6 {
                #expect(c[i * problem.ldc + j] == (accumulate ? c0[i * problem.ldc + j] : 0))
            }
        }
    }
}

@Test("sgemm gives the same bits on 1, 2 and 3 threads", arguments: variants.indices)
func sgemmThreadCountInvariant(variantIndex: Int) {
    let (transposeA, transposeB) = variants[variantIndex]
    // Several row blocks, column groups and depth blocks, so the threads split real work.
    let problem = Problem(transposeA: transposeA, transposeB: transposeB, m: 200, n: 300, k: 300, accumulate: true)
    let one = problem.run(seed: 7, threads: 1).c
    let two = problem.run(seed: 7, threads: 2).c
    let three = problem.run(seed: 7, threads: 3).c
    #expect(one.map(\.bitPattern) == two.map(\.bitPattern))
    #expect(one.map(\.bitPattern) == three.map(\.bitPattern))
}

/// Shapes above the parallel threshold, one per path, with ragged edges.
private let parallelShapes: [(tA: Bool, tB: Bool, m: Int, n: Int, k: Int)] = [
    (false, true, 16, 301, 790),   // inner products
    (false, true, 65, 200, 600),   // swapped, Cᵀ = B·Aᵀ
    (false, true, 130, 70, 300),   // Bᵀ packed
    (false, false, 33, 250, 400),  // B in place
    (true, false, 48, 785, 64),    // B in place, A transposed
    (true, false, 200, 785, 16),   // packed, A transposed
    (false, false, 130, 300, 300), // packed
]

@Test("every path of sgemm gives the same bits on 1, 2 and 3 threads, with and without a workspace",
      arguments: parallelShapes.indices)
func sgemmPathsThreadCountInvariant(index: Int) {
    let s = parallelShapes[index]
    #expect(s.m * s.n * s.k >= GEMM.parallelThreshold, "shape too small to run in parallel")
    let problem = Problem(transposeA: s.tA, transposeB: s.tB, m: s.m, n: s.n, k: s.k, accumulate: index % 2 == 0)
    let one = problem.run(seed: 11, threads: 1).c.map(\.bitPattern)
    #expect(one == problem.run(seed: 11, threads: 2).c.map(\.bitPattern))
    #expect(one == problem.run(seed: 11, threads: 3, workspace: true).c.map(\.bitPattern))
    #expect(one == problem.run(seed: 11, threads: 1, workspace: true).c.map(\.bitPattern))
}

@Test("the shapes training runs take the intended paths")
func sgemmPathChoice() {
    // MLP batch 16: forward by inner products, backward with B in place.
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 16, n: 200, k: 784) == .dot)
    // Too small for two threads: swapped, unless n is too narrow for it.
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 16, n: 200, k: 200) == .swapped)
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 16, n: 10, k: 200) == .dot)
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 16, n: 784, k: 200) == .packed(directB: true))
    #expect(GEMM.path(transposeA: true, transposeB: false, m: 200, n: 784, k: 16) == .packed(directB: false))
    // Small k leaves inner products for Cᵀ = B·Aᵀ; a large m packs B.
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 16, n: 200, k: 20) == .swapped)
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 129, n: 400, k: 784) == .packed(directB: false))
    // A short k and a large m: too few multiply-adds a tile for the swapped product's transposed stores.
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 128, n: 400, k: 20) == .packed(directB: false))
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 128, n: 400, k: 32) == .swapped)
    // The VAE at batch 128: B in place (its rows spread over L1); A·Bᵀ as Cᵀ = B·Aᵀ.
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 128, n: 400, k: 784) == .packed(directB: true))
    #expect(GEMM.path(transposeA: false, transposeB: true, m: 128, n: 400, k: 784) == .swapped)
    // A VAE head's weight gradient (Aᵀ·B, n narrower than a panel) as Cᵀ = Bᵀ·A, A in place
    // unless its rows crowd L1's sets; A not transposed keeps the packed product.
    #expect(GEMM.path(transposeA: true, transposeB: false, m: 400, n: 10, k: 128) == .narrow(directB: true))
    #expect(GEMM.path(transposeA: true, transposeB: false, m: 400, n: 10, k: 128, lda: 1024) == .narrow(directB: false))
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 400, n: 10, k: 128) == .packed(directB: false))
    // Rows 4 KiB apart would crowd B's column panel into a few L1 sets: packed.
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 128, n: 1024, k: 784) == .packed(directB: false))
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 129, n: 400, k: 784) == .packed(directB: false))
}

@Test("B's row stride decides whether it is read in place, and a shape's workspace has room for either")
func sgemmPathFollowsRowStride() {
    // A convolution's 256-pixel column matrix: rows 1 KiB apart crowd L1 (packed); widened by
    // 16 floats (`Conv2DKernel.columnStride`) they are read in place.
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 128, n: 256, k: 64) == .packed(directB: false))
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 128, n: 256, k: 64, ldb: 272) == .packed(directB: true))
    #expect(GEMM.path(transposeA: false, transposeB: false, m: 128, n: 400, k: 64, ldb: 1024) == .packed(directB: false))
    for (m, n, k) in [(128, 256, 64), (128, 1024, 784), (64, 512, 300), (128, 400, 784), (7, 16, 5)] {
        let room = GEMM.workspaceFloats(transposeA: false, transposeB: false, m: m, n: n, k: k)
        for directB in [false, true] {
            let needed = GEMM.packedFloats(transposeA: false, directB: directB, m: m, n: n, k: k)
            #expect(room.a >= needed.a && room.b >= needed.b, "m=\(m) n=\(n) k=\(k) directB=\(directB)")
        }
    }
}

@Test("depth blocks cover k in order with near-equal sizes of at most kc")
func depthBlocksCoverK() {
    for k in [1, 2, 255, 256, 257, 400, 511, 512, 513, 784, 1024, 1025, 3000] {
        let blocks = GEMM.DepthBlocks(k: k)
        var next = 0
        let sizes = (0..<blocks.count).map { blocks.size($0) }
        for b in 0..<blocks.count {
            #expect(blocks.start(b) == next, "k=\(k) block \(b)")
            next += blocks.size(b)
        }
        #expect(next == k, "k=\(k)")
        #expect(sizes.max()! <= GEMM.kc && sizes.max()! - sizes.min()! <= 1, "k=\(k) sizes \(sizes)")
        #expect(blocks.count == (k + GEMM.kc - 1) / GEMM.kc, "k=\(k): no more blocks than needed")
        let deep = GEMM.DepthBlocks(k: k, maxDepth: GEMM.packedKc)
        #expect(deep.count == (k + GEMM.packedKc - 1) / GEMM.packedKc && deep.size(0) <= GEMM.packedKc, "k=\(k) deep")
    }
}

@Test("the work grid covers every tile of C exactly once and balances two threads on the training shapes")
func workGridCoversTiles() {
    for (mPanels, nPanels) in [(1, 1), (16, 13), (16, 25), (50, 25), (98, 13), (128, 32), (3, 1), (1, 7), (5, 3)] {
        for threads in [1, 2, 3, 4] {
            let grid = GEMM.WorkGrid(mPanels: mPanels, nPanels: nPanels, threads: threads)
            var covered = [Int](repeating: 0, count: mPanels * nPanels)
            for r in 0..<grid.rowGroups {
                for c in 0..<grid.columnGroups {
                    for i in grid.rows(r) { for j in grid.columns(c) { covered[i * nPanels + j] += 1 } }
                }
            }
            #expect(covered.allSatisfy { $0 == 1 }, "\(mPanels)×\(nPanels) panels, \(threads) threads")
            if threads == 1 { #expect(grid.rowGroups * grid.columnGroups == 1) }
        }
    }
    // VAE shapes at batch 128 (8-row, 32-column panels): two equal halves.
    for (mPanels, nPanels) in [(16, 13), (16, 25), (50, 25), (98, 13)] {
        let grid = GEMM.WorkGrid(mPanels: mPanels, nPanels: nPanels, threads: 2)
        let sizes = (0..<grid.rowGroups * grid.columnGroups).map {
            grid.rows($0 / grid.columnGroups).count * grid.columns($0 % grid.columnGroups).count
        }
        #expect(sizes.count % 2 == 0 && Set(sizes).count == 1, "\(mPanels)×\(nPanels): items \(sizes)")
    }
}

@Test("an element's bits do not depend on which micro-kernel computed it (half-width edge panels)")
func narrowEdgeKernelMatchesFullKernel() {
    // n = 1.5·nr (48 for the 8×32 tile) ends in a half-width panel (half kernel); n = 1.75·nr
    // covers the same columns with the full kernel. Column j of C must be the same bits in
    // both, for B in place and Bᵀ packed (both widths take the same path, so the same depth blocks).
    let narrowN = GEMM.nr + GEMM.nr / 2, wideN = narrowN + GEMM.nr / 4
    for transposeB in [false, true] {
        let (m, k) = (20, 300)
        #expect(GEMM.path(transposeA: true, transposeB: transposeB, m: m, n: narrowN, k: k)
                == GEMM.path(transposeA: true, transposeB: transposeB, m: m, n: wideN, k: k))
        let wide = Problem(transposeA: true, transposeB: transposeB, m: m, n: wideN, k: k, accumulate: false)
        let narrow = Problem(transposeA: true, transposeB: transposeB, m: m, n: narrowN, k: k, accumulate: false)
        let aValues = randomFloats(k * wide.lda, seed: 5)
        let bWide = randomFloats(wide.bRows * wide.ldb, seed: 6)
        // The narrow B holds the first narrowN columns of the wide one.
        var bNarrow = [Float](repeating: 0, count: narrow.bRows * narrow.ldb)
        for p in 0..<k {
            for j in 0..<narrowN {
                let value = wide.elementB(bWide, p, j)
                if transposeB { bNarrow[j * narrow.ldb + p] = value } else { bNarrow[p * narrow.ldb + j] = value }
            }
        }
        func multiply(_ problem: Problem, _ b: [Float]) -> [Float] {
            var c = [Float](repeating: 0, count: m * problem.ldc)
            aValues.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        GEMM.sgemm(transposeA: true, transposeB: transposeB, m: m, n: problem.n, k: k,
                                   a: a.baseAddress!, lda: problem.lda, b: b.baseAddress!, ldb: problem.ldb,
                                   c: c.baseAddress!, ldc: problem.ldc, accumulate: false, threads: 1)
                    }
                }
            }
            return c
        }
        let cWide = multiply(wide, bWide), cNarrow = multiply(narrow, bNarrow)
        var same = true
        for i in 0..<m {
            for j in 0..<narrowN where cWide[i * wide.ldc + j].bitPattern != cNarrow[i * narrow.ldc + j].bitPattern { same = false }
        }
        #expect(same, "transposeB=\(transposeB)")
    }
}

@Test("Parallel.forEach runs every chunk exactly once")
func parallelRunsEveryChunk() {
    for threads in [1, 2, 5] {
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: 37)
        counts.initialize(repeating: 0, count: 37)
        defer { counts.deallocate() }
        Parallel.forEach(chunks: 37, threads: threads) { chunk in counts[chunk] += 1 }
        #expect((0..<37).allSatisfy { counts[$0] == 1 }, "threads=\(threads)")
    }
}
