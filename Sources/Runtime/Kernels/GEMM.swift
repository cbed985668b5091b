/// Single-precision matrix multiplication on raw pointers.
///
/// The structure is Goto & van de Geijn, "Anatomy of high-performance matrix
/// multiplication" (ACM TOMS 2008), as refined in BLIS (Van Zee & van de Geijn 2015):
/// op(B) is packed one `kc × nc` block at a time into column panels of `nr`, op(A) one
/// `m × kc` slice at a time into row panels of `mr`, and an `mr × nr` register-blocked
/// micro-kernel multiplies a row panel by a column panel. The cache blocks keep a column
/// panel of B in L1 and a `mc × kc` block of A in L2 while the micro-kernel streams them.
public enum GEMM {
    /// Rows of C per micro-kernel call: 8 rows × 2 vectors = 16 accumulators, half of the
    /// AVX-512 register file, leaving room for the two B vectors and the A broadcast.
    static let mr = 8
    /// Columns of C per micro-kernel call: two `SIMD16<Float>` vectors.
    static let nr = 32
    /// Depth of one packed block. It fixes the order of every element's k-sum (blocks are
    /// added in order), so it must never depend on the thread count.
    static let kc = 256
    /// Rows of A per L2-resident block (a multiple of `mr`): 128 × 256 floats = 128 KiB.
    static let mc = 128
    /// Columns of B per packed block (a multiple of `nr`).
    static let nc = 4096
    /// Columns of C per parallel work item (a multiple of `nr`).
    static let columnGroup = 256
    /// Below this many multiply-adds the wake-up of worker threads costs more than it saves.
    static let parallelThreshold = 1 << 18

    /// C[m×n] = op(A)·op(B) (+ C when accumulate), row-major with leading dimensions; op
    /// transposes when asked.
    ///
    /// op(A) is `m × k`: A is stored `m × k` (`lda ≥ k`), or `k × m` (`lda ≥ m`) when
    /// `transposeA`. op(B) is `k × n`: B is stored `k × n` (`ldb ≥ n`), or `n × k`
    /// (`ldb ≥ k`) when `transposeB`. C is `m × n` with `ldc ≥ n` and must not overlap A
    /// or B. Work is split over `threads` by blocks of C only, so every element's k-sum is
    /// added in the same order for any thread count and the result is bit-identical.
    /// Packing buffers are allocated per call.
    public static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int) {
        precondition(m >= 0 && n >= 0 && k >= 0, "sgemm: negative size m=\(m) n=\(n) k=\(k)")
        precondition(lda >= max(1, transposeA ? m : k), "sgemm: lda=\(lda) too small")
        precondition(ldb >= max(1, transposeB ? k : n), "sgemm: ldb=\(ldb) too small")
        precondition(ldc >= max(1, n), "sgemm: ldc=\(ldc) too small")
        precondition(threads >= 1, "sgemm: thread count \(threads) must be at least 1")
        if m == 0 || n == 0 { return }
        if k == 0 {
            if !accumulate {
                for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) }
            }
            return
        }
        let threads = m * n * k >= parallelThreshold ? threads : 1

        let mPanels = (m + mr - 1) / mr
        let kcMax = min(k, kc)
        let nPanelsMax = (min(n, nc) + nr - 1) / nr
        let packedA = allocateFloats(mPanels * mr * kcMax)
        let packedB = allocateFloats(nPanelsMax * nr * kcMax)
        defer {
            packedA.deallocate()
            packedB.deallocate()
        }
        let source = Operands(a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB)

        for jc in stride(from: 0, to: n, by: nc) {
            let ncCurrent = min(nc, n - jc)
            let nPanels = (ncCurrent + nr - 1) / nr
            for pc in stride(from: 0, to: k, by: kc) {
                let kcCurrent = min(kc, k - pc)
                // Packing is pure copying, so how it is split cannot change any result.
                let panelsPerChunk = 16
                let aChunks = (mPanels + panelsPerChunk - 1) / panelsPerChunk
                let bChunks = (nPanels + panelsPerChunk - 1) / panelsPerChunk
                Parallel.forEach(chunks: aChunks + bChunks, threads: threads) { chunk in
                    if chunk < aChunks {
                        for panel in chunk * panelsPerChunk..<min(mPanels, (chunk + 1) * panelsPerChunk) {
                            source.packA(panel: panel, m: m, pc: pc, kc: kcCurrent,
                                         into: packedA + panel * mr * kcCurrent)
                        }
                    } else {
                        let first = (chunk - aChunks) * panelsPerChunk
                        for panel in first..<min(nPanels, first + panelsPerChunk) {
                            source.packB(panel: panel, n: n, jc: jc, pc: pc, kc: kcCurrent,
                                         into: packedB + panel * nr * kcCurrent)
                        }
                    }
                }

                let addToC = accumulate || pc > 0
                let mBlocks = (m + mc - 1) / mc
                let nGroups = (ncCurrent + columnGroup - 1) / columnGroup
                Parallel.forEach(chunks: mBlocks * nGroups, threads: threads) { chunk in
                    let i0 = (chunk / nGroups) * mc
                    let j0 = (chunk % nGroups) * columnGroup
                    multiplyBlock(rows: i0..<min(m, i0 + mc), columns: j0..<min(ncCurrent, j0 + columnGroup),
                                  kc: kcCurrent, packedA: packedA, packedB: packedB,
                                  c: c + jc, ldc: ldc, addToC: addToC)
                }
            }
        }
    }

    /// Float storage aligned to a cache line (and to a 512-bit vector).
    static func allocateFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(1, count))
    }

    /// Multiplies the packed panels covering `rows × columns` of C (columns relative to `c`).
    ///
    /// Loop order as in BLIS: the column panel of B stays in L1 while the row panels of A
    /// stream past it from L2. Edge tiles run the same full-size micro-kernel into a
    /// scratch tile (packing padded A and B with zeros), so an element's arithmetic is the
    /// same whether or not it sits on an edge.
    static func multiplyBlock(rows: Range<Int>, columns: Range<Int>, kc: Int,
                              packedA: UnsafePointer<Float>, packedB: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, ldc: Int, addToC: Bool) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: mr * nr) { scratchBuffer in
            let scratch = scratchBuffer.baseAddress!
            for jr in stride(from: columns.lowerBound, to: columns.upperBound, by: nr) {
                let bPanel = packedB + (jr / nr) * nr * kc
                let width = min(nr, columns.upperBound - jr)
                for ir in stride(from: rows.lowerBound, to: rows.upperBound, by: mr) {
                    let aPanel = packedA + (ir / mr) * mr * kc
                    let height = min(mr, rows.upperBound - ir)
                    let tile = c + ir * ldc + jr
                    if height == mr && width == nr {
                        microKernel(kc, aPanel, bPanel, tile, ldc, addToC)
                    } else {
                        microKernel(kc, aPanel, bPanel, scratch, nr, false)
                        for r in 0..<height {
                            for j in 0..<width {
                                let value = scratch[r * nr + j]
                                tile[r * ldc + j] = addToC ? tile[r * ldc + j] + value : value
                            }
                        }
                    }
                }
            }
        }
    }

    /// C[8×32] (+)= A panel · B panel, with A packed `kc × 8` (row index fastest) and B
    /// packed `kc × 32`.
    ///
    /// Kept `@inline(never)` and small on purpose: inlined into a large caller, the same
    /// code was split into 128-bit operations and ran 7× slower (DESIGN.md, Build flags).
    /// The 16 accumulators are named variables so they can live in registers.
    @inline(never)
    static func microKernel(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                            _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ addToC: Bool) {
        typealias V = SIMD16<Float>
        var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
        var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
        var pa = a
        var pb = UnsafeRawPointer(b)
        for _ in 0..<kc {
            let b0 = pb.loadUnaligned(as: V.self)
            let b1 = pb.loadUnaligned(fromByteOffset: 64, as: V.self)
            var x = V(repeating: pa[0]); c00.addProduct(x, b0); c01.addProduct(x, b1)
            x = V(repeating: pa[1]); c10.addProduct(x, b0); c11.addProduct(x, b1)
            x = V(repeating: pa[2]); c20.addProduct(x, b0); c21.addProduct(x, b1)
            x = V(repeating: pa[3]); c30.addProduct(x, b0); c31.addProduct(x, b1)
            x = V(repeating: pa[4]); c40.addProduct(x, b0); c41.addProduct(x, b1)
            x = V(repeating: pa[5]); c50.addProduct(x, b0); c51.addProduct(x, b1)
            x = V(repeating: pa[6]); c60.addProduct(x, b0); c61.addProduct(x, b1)
            x = V(repeating: pa[7]); c70.addProduct(x, b0); c71.addProduct(x, b1)
            pa += mr
            pb += nr * MemoryLayout<Float>.stride
        }
        storeRow(c, c00, c01, addToC)
        storeRow(c + ldc, c10, c11, addToC)
        storeRow(c + 2 * ldc, c20, c21, addToC)
        storeRow(c + 3 * ldc, c30, c31, addToC)
        storeRow(c + 4 * ldc, c40, c41, addToC)
        storeRow(c + 5 * ldc, c50, c51, addToC)
        storeRow(c + 6 * ldc, c60, c61, addToC)
        storeRow(c + 7 * ldc, c70, c71, addToC)
    }

    /// Writes (or adds) one 32-float row of a micro-kernel result; C need not be aligned.
    @inline(__always)
    static func storeRow(_ c: UnsafeMutablePointer<Float>, _ low: SIMD16<Float>, _ high: SIMD16<Float>,
                         _ addToC: Bool) {
        let raw = UnsafeMutableRawPointer(c)
        var low = low, high = high
        if addToC {
            low = raw.loadUnaligned(as: SIMD16<Float>.self) + low
            high = raw.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self) + high
        }
        raw.storeBytes(of: low, as: SIMD16<Float>.self)
        raw.storeBytes(of: high, toByteOffset: 64, as: SIMD16<Float>.self)
    }

    /// The unpacked operands and how to read op(A) and op(B) from them.
    struct Operands {
        let a: UnsafePointer<Float>, lda: Int, transposeA: Bool
        let b: UnsafePointer<Float>, ldb: Int, transposeB: Bool

        /// Packs rows `panel·mr ..< panel·mr + mr` of op(A), depths `pc ..< pc + kc`, as
        /// `dst[p·mr + r]`; rows past `m` are zero so edge tiles need no special kernel.
        func packA(panel: Int, m: Int, pc: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
            let i0 = panel * GEMM.mr
            let rows = min(GEMM.mr, m - i0)
            if rows < GEMM.mr { dst.update(repeating: 0, count: GEMM.mr * kc) }
            if transposeA {
                // op(A)[i, p] = a[p·lda + i]: each depth holds the panel's rows contiguously.
                for p in 0..<kc {
                    let src = a + (pc + p) * lda + i0
                    for r in 0..<rows { dst[p * GEMM.mr + r] = src[r] }
                }
            } else {
                for r in 0..<rows {
                    let src = a + (i0 + r) * lda + pc
                    for p in 0..<kc { dst[p * GEMM.mr + r] = src[p] }
                }
            }
        }

        /// Packs columns `jc + panel·nr ..< +nr` of op(B), depths `pc ..< pc + kc`, as
        /// `dst[p·nr + j]`; columns past `n` are zero.
        func packB(panel: Int, n: Int, jc: Int, pc: Int, kc: Int, into dst: UnsafeMutablePointer<Float>) {
            let j0 = jc + panel * GEMM.nr
            let columns = min(GEMM.nr, n - j0)
            if columns < GEMM.nr { dst.update(repeating: 0, count: GEMM.nr * kc) }
            if transposeB {
                // op(B)[p, j] = b[j·ldb + p]: read along rows of B, write with stride nr.
                for j in 0..<columns {
                    let src = b + (j0 + j) * ldb + pc
                    for p in 0..<kc { dst[p * GEMM.nr + j] = src[p] }
                }
            } else if columns == GEMM.nr {
                for p in 0..<kc {
                    let src = UnsafeRawPointer(b + (pc + p) * ldb + j0)
                    let out = UnsafeMutableRawPointer(dst + p * GEMM.nr)
                    out.storeBytes(of: src.loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
                    out.storeBytes(of: src.loadUnaligned(fromByteOffset: 64, as: SIMD16<Float>.self),
                                   toByteOffset: 64, as: SIMD16<Float>.self)
                }
            } else {
                for p in 0..<kc {
                    let src = b + (pc + p) * ldb + j0
                    for j in 0..<columns { dst[p * GEMM.nr + j] = src[j] }
                }
            }
        }
    }
}
