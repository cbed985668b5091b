/// Single-precision matrix multiplication on raw pointers.
///
/// The structure is Goto & van de Geijn, "Anatomy of high-performance matrix
/// multiplication" (ACM TOMS 2008), as refined in BLIS (Van Zee & van de Geijn 2015):
/// op(B) is packed into column panels of `nr`, op(A) into row panels of `mr`, both cut
/// along k into depth blocks of at most `kc`, and an `mr × nr` register-blocked micro-kernel
/// multiplies a row panel by a column panel.
///
/// Unlike BLIS, all depth blocks are packed up front in one parallel pass, and then each
/// work item (a rectangle of C) runs every depth block itself: two fork-joins per call
/// instead of two per depth block, and the item's rows of C stay in L2 across its depth
/// blocks. Work is split over C only, so an element's sum order never depends on the
/// thread count.
///
/// Training runs many products with a small m (the batch), where packing costs as much as
/// the multiply itself, so shortcuts skip it (see `Path`): when op(B) has contiguous
/// columns the micro-kernel reads B in place; when it has contiguous rows along k (A·Bᵀ,
/// the forward pass of a dense layer) and m is small, an inner-product kernel runs along k,
/// or, for m up to 128, Cᵀ = B·Aᵀ runs instead, packing only Aᵀ; and A with contiguous rows
/// is read in place when B is packed.
public enum GEMM {
    /// Rows of C per micro-kernel call, from the ISA's register tile (`ISA`): 8 on AVX-512
    /// (`MicroKernel`, 8 × 32), 6 elsewhere (`NarrowKernel`, 6 × 16).
    static let mr = ISA.gemmRows
    /// Columns of C per micro-kernel call (a multiple of 16).
    static let nr = ISA.gemmColumns
    /// Largest depth block; k is cut into near-equal blocks of at most this (`DepthBlocks`),
    /// which fixes the order of every element's k-sum. A 256-deep column panel of B read in
    /// place (32 KiB) still fits L1 (measured: 512 ran 10 % slower there, and no faster
    /// with B packed).
    static let kc = 256
    /// Largest depth block when B is packed: a row panel of A stays in L1 while packed B
    /// streams from L2 in column blocks of `bBlockFloats`, so the depth can be large, and
    /// fewer depth blocks mean fewer passes over C (measured: 1024³ +4 %, swapped A·Bᵀ +9 %
    /// over 256).
    static let packedKc = 1024
    /// Floats of packed B per column block within a work item: 1 MiB, half of L2.
    static let bBlockFloats = 1 << 18
    /// Rows of C per L2-resident block within a work item (a multiple of `mr`): its A block
    /// is 128 × 256 floats = 128 KiB (measured: 256 was no faster).
    static let mc = 128
    /// Below this many multiply-adds the wake-up of worker threads costs more than it saves
    /// (measured on the spinning pool: a 128×20×400 product, 1.02 M, takes 42 µs on one thread
    /// and 27 on two, while splitting the MLP's 16×200×200 ones, 0.64 M, made its epoch 7%
    /// slower; a Dispatch worker took tens of microseconds to wake, hence the old 2²¹).
    static let parallelThreshold = 1_000_000
    /// Multiply-adds per parallel work item of the inner-product kernel, at least.
    static let chunkWork = 1 << 19
    /// Up to this m, B with contiguous columns is read in place instead of packed (measured at
    /// m = 128 with k = 784: in place 5–10 % faster, since packing B is bound by memory).
    static let directBMaxM = 128
    /// Up to this m, A·Bᵀ runs as Cᵀ = B·Aᵀ (`Path.swapped`), packing the smaller operand.
    static let swapMaxM = 128

    /// A·Bᵀ with k below `swapMinK` and m from `unswappedMinM` on packs Bᵀ instead of swapping:
    /// a short k leaves each swapped tile few multiply-adds for its transposed store (median
    /// GFLOP/s, unswapped against swapped, 2 threads: 128×400×20 AVX2 85 against 60, AVX-512 136
    /// against 100; 64×400×20 63 against 48 and 117 against 88; at k = 48 swapping won again,
    /// 118 against 103 on AVX2, and at m = 16, k = 20 in 6 of 8 runs over both ISAs and 1–2 threads).
    static let swapMinK = 32, unswappedMinM = 64

    /// Up to this m, A·Bᵀ runs the inner-product kernel instead of packing Bᵀ (measured: at
    /// m = 64 packing already wins, even for k = 784).
    static let dotMaxM = 32
    /// From this k on, the inner-product kernel's final lane sums cost little next to its loop.
    static let dotMinK = 64
    /// From this n on, a product too small for two threads runs swapped rather than as inner
    /// products (AVX-512 Xeon, 1 thread, median GFLOP/s, dot → swapped: 16×200×200 51 → 154,
    /// 32×84×120 51 → 146, but 16×10×200 62 → 34). Products big enough for two threads keep the
    /// inner products, which split over columns of B where the swapped product does not
    /// (16×200×784 on 2 threads: 178 against 93).
    static let dotMaxSwappedN = 32

    /// Whether rows `rowFloats` apart (B's rows, read in place) land in many L1 sets: a
    /// stride that is a multiple of 512 bytes would crowd a column panel into a few sets.
    static func spreadsOverL1(rowFloats: Int) -> Bool {
        var a = rowFloats, b = 1024
        while b != 0 { (a, b) = (b, a % b) }
        return a <= 32
    }

    /// Which algorithm runs a shape; a function of the shape (and B's row stride), never of the
    /// thread count.
    enum Path: Equatable {
        /// Pack A and B (B in place when `directB`), then the ISA's `mr × nr` micro-kernel.
        case packed(directB: Bool)
        /// Inner products along k of rows of A with rows of B (A·Bᵀ with both contiguous in k).
        case dot
        /// A·Bᵀ for a small m, run as Cᵀ = B·Aᵀ: B's contiguous rows are read in place and
        /// only Aᵀ (m columns) is packed, instead of Bᵀ (n columns); tiles are stored transposed.
        case swapped
        /// Aᵀ·B with n narrower than a panel, run as Cᵀ = Bᵀ·A: n then pads to the tile's rows
        /// (`mr`) instead of its columns (`nr`: 20 columns fill 20 of 32 lanes, but 20 of 24 rows),
        /// and A, contiguous along m, is read in place as the swapped product's B when `directB`.
        /// Median GFLOP/s on AVX-512, 1 and 2 threads: 400×20×128 (a VAE head's weight gradient)
        /// 79–87 → 113–121 and 67–70 → 124–139; 400×20×784 67 → 110–121 and 109–111 → 164–169.
        /// With A not transposed, packing Aᵀ made it slower (128×20×400: 95–98 → 68–76 on 1 thread).
        case narrow(directB: Bool)
    }

    /// `ldb`: B's row stride when known (`sgemm` passes it), else n. B is read in place only when
    /// its rows spread over L1's sets: it is the stride that crowds them, so a caller that widens
    /// the rows of a B it builds (the convolutions' column matrices, `Conv2DKernel.columnStride`)
    /// gets B read in place (ResNet-18's stride-2 shortcuts: B's 256-float rows had been packed
    /// again after im2col).
    /// `lda`: A's row stride when known, else m (`narrow` reads A in place by it).
    static func path(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, lda: Int? = nil, ldb: Int? = nil) -> Path {
        if !transposeA && transposeB && m <= dotMaxM && k >= dotMinK
            && (n < dotMaxSwappedN || m * n * k >= parallelThreshold) { return .dot }
        if !transposeA && transposeB && m <= swapMaxM && n >= mr && (k >= swapMinK || m < unswappedMinM) { return .swapped }
        if transposeA && n < nr && (n + mr - 1) / mr * mr < nr && m >= nr {
            return .narrow(directB: n <= directBMaxM && spreadsOverL1(rowFloats: lda ?? m))
        }
        // B narrower than one panel is packed whole anyway: reading it in place would only force
        // A to be packed too (128×20×400 on AVX-512, alternating runs: 55 → 95 GFLOP/s on 1 thread, 67 → 86 on 2).
        return .packed(directB: !transposeB && m <= directBMaxM && n >= nr && spreadsOverL1(rowFloats: ldb ?? n))
    }

    /// Packing buffers for one GEMM shape, allocated once so repeated calls allocate nothing.
    ///
    /// Sized for the path the shape takes: all depth blocks of packed op(A) and op(B), less
    /// what is read in place (then only a zero-padded edge panel is packed). A workspace may
    /// serve several calls in sequence but not two concurrent calls.
    public final class Workspace {
        let buffers: PackingBuffers
        var packedA: UnsafeMutablePointer<Float> { buffers.packedA }
        var packedB: UnsafeMutablePointer<Float> { buffers.packedB }
        var aCapacity: Int { buffers.aFloats }
        var bCapacity: Int { buffers.bFloats }

        /// Buffers for `op(A)[m×k] · op(B)[k×n]` with the given transposes.
        public init(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int) {
            let (a, b) = GEMM.workspaceFloats(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k)
            buffers = PackingBuffers(aFloats: a, bFloats: b)
        }

        deinit { buffers.deallocate() }
    }

    /// Packed A and packed B in one allocation, each aligned to a cache line by hand.
    ///
    /// Why by hand: glibc serves an aligned request of a few MiB through `memalign`, which
    /// fragments its heap when such buffers come and go per call (measured: a 1024³ product
    /// without a workspace, called 24 times, raised peak RSS from 45 to 98 MB); a plain
    /// `malloc` of the same size is reused.
    struct PackingBuffers {
        let base: UnsafeMutableRawPointer
        let packedA: UnsafeMutablePointer<Float>, packedB: UnsafeMutablePointer<Float>
        let aFloats: Int, bFloats: Int

        init(aFloats: Int, bFloats: Int) {
            self.aFloats = aFloats
            self.bFloats = bFloats
            let line = 64
            let aBytes = (aFloats * MemoryLayout<Float>.stride + line - 1) / line * line
            base = UnsafeMutableRawPointer.allocate(byteCount: aBytes + bFloats * MemoryLayout<Float>.stride + line,
                                                    alignment: MemoryLayout<Float>.alignment)
            let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: base) + line - 1) / line * line)!
            packedA = aligned.bindMemory(to: Float.self, capacity: aFloats)
            packedB = (aligned + aBytes).bindMemory(to: Float.self, capacity: bFloats)
        }

        func deallocate() { base.deallocate() }
    }

    /// Whether full row panels of op(A) are read in place rather than packed.
    static func aInPlace(transposeA: Bool, directB: Bool) -> Bool { !transposeA && !directB }

    /// Floats of packed A and packed B a shape needs: all of op(A) and op(B), every depth
    /// block, so the multiply never waits for packing between depth blocks.
    static func workspaceFloats(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int) -> (a: Int, b: Int) {
        switch path(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k) {
        case .dot:
            return (0, 0)
        case .swapped:
            return packedFloats(transposeA: false, directB: false, m: n, n: m, k: k)
        case let .narrow(directB):
            // Whether A is read in place depends on its row stride: room for either.
            let chosen = packedFloats(transposeA: !transposeB, directB: directB, m: n, n: m, k: k)
            let other = packedFloats(transposeA: !transposeB, directB: !directB, m: n, n: m, k: k)
            return (Swift.max(chosen.a, other.a), Swift.max(chosen.b, other.b))
        case let .packed(directB):
            let chosen = packedFloats(transposeA: transposeA, directB: directB, m: m, n: n, k: k)
            // Whether B is read in place also depends on its row stride (`path`): room for either.
            guard !transposeB && m <= directBMaxM && n >= nr else { return chosen }
            let other = packedFloats(transposeA: transposeA, directB: !directB, m: m, n: n, k: k)
            return (Swift.max(chosen.a, other.a), Swift.max(chosen.b, other.b))
        }
    }

    /// Floats of packed A and packed B for the packed algorithm.
    static func packedFloats(transposeA: Bool, directB: Bool, m: Int, n: Int, k: Int) -> (a: Int, b: Int) {
        let fullPanels = aInPlace(transposeA: transposeA, directB: directB) ? m / mr : 0
        let aFloats = ((m + mr - 1) / mr - fullPanels) * mr * k
        let bPanels = directB ? (n % nr == 0 ? 0 : 1) : (n + nr - 1) / nr
        return (aFloats, bPanels * nr * k)
    }

    /// C[m×n] = op(A)·op(B) (+ C when accumulate), row-major with leading dimensions; op
    /// transposes when asked.
    ///
    /// op(A) is `m × k`: A is stored `m × k` (`lda ≥ k`), or `k × m` (`lda ≥ m`) when
    /// `transposeA`. op(B) is `k × n`: B is stored `k × n` (`ldb ≥ n`), or `n × k`
    /// (`ldb ≥ k`) when `transposeB`. C is `m × n` with `ldc ≥ n` and must not overlap A
    /// or B. Work is split over `threads` by blocks of C only, so every element's k-sum is
    /// added in the same order for any thread count and the result is bit-identical.
    /// Packing buffers come from `workspace` (made for this shape and transposes), or are
    /// allocated for the call when it is nil.
    public static func sgemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int,
                             workspace: Workspace? = nil) {
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
        let source = Operands(a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, transposeB: transposeB)
        let path = path(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, lda: lda, ldb: ldb)
        if path == .dot {
            DotKernel.run(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
                          accumulate: accumulate, threads: threads)
            return
        }
        let needed = workspaceFloats(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k)
        // Swapped and narrow both compute Cᵀ = op(B)ᵀ·op(A)ᵀ: B plays op(A) and A plays op(B), each
        // with its transpose flipped (swapped: B's contiguous rows as A, A packed as Bᵀ; narrow:
        // A read in place as B when `directB`).
        let problem: Problem
        switch path {
        case .swapped, .narrow:
            var directB = false
            if case let .narrow(inPlace) = path { directB = inPlace }
            problem = Problem(m: n, n: m, k: k,
                              source: Operands(a: b, lda: ldb, transposeA: !transposeB, b: a, ldb: lda, transposeB: !transposeA),
                              directB: directB, transposeC: true, depth: DepthBlocks(k: k, maxDepth: directB ? kc : packedKc))
        default:
            problem = Problem(m: m, n: n, k: k, source: source, directB: path == .packed(directB: true), transposeC: false,
                              depth: DepthBlocks(k: k, maxDepth: path == .packed(directB: true) ? kc : packedKc))
        }
        if let workspace {
            precondition(workspace.aCapacity >= needed.a && workspace.bCapacity >= needed.b,
                         "sgemm: workspace too small for m=\(m) n=\(n) k=\(k) tA=\(transposeA) tB=\(transposeB)")
            runPacked(problem, c: c, ldc: ldc, accumulate: accumulate, threads: threads,
                      packedA: workspace.packedA, packedB: workspace.packedB)
        } else {
            let buffers = PackingBuffers(aFloats: needed.a, bFloats: needed.b)
            defer { buffers.deallocate() }
            runPacked(problem, c: c, ldc: ldc, accumulate: accumulate, threads: threads,
                      packedA: buffers.packedA, packedB: buffers.packedB)
        }
    }

    /// One product for the packed algorithm: op(A)[m×k]·op(B)[k×n] from `source`, with B
    /// read in place when `directB`, and C (or Cᵀ when `transposeC`) as the result.
    struct Problem {
        let m: Int, n: Int, k: Int
        let source: Operands
        let directB: Bool, transposeC: Bool
        let depth: DepthBlocks
    }

    /// The split of k into near-equal blocks of at most `maxDepth`; a function of the shape
    /// alone, so it fixes every element's summation order whatever the thread count.
    struct DepthBlocks {
        let count: Int, base: Int, extra: Int

        init(k: Int, maxDepth: Int = GEMM.kc) {
            count = (k + maxDepth - 1) / maxDepth
            base = k / count
            extra = k % count
        }

        /// First depth of block `b`.
        func start(_ b: Int) -> Int { b * base + min(b, extra) }
        /// Depths in block `b`.
        func size(_ b: Int) -> Int { base + (b < extra ? 1 : 0) }
    }

    /// The packed algorithm: pack all of op(A) and op(B) (B only its ragged panel when read
    /// in place) in one parallel pass, then multiply blocks of C in parallel, each block
    /// running every depth block itself, so there are two fork-joins per call.
    static func runPacked(_ problem: Problem,
                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, threads: Int,
                          packedA: UnsafeMutablePointer<Float>, packedB: UnsafeMutablePointer<Float>) {
        let m = problem.m, n = problem.n, source = problem.source, directB = problem.directB, depth = problem.depth
        let mPanels = (m + mr - 1) / mr
        let nPanels = (n + nr - 1) / nr
        // Packing is pure copying, so how it is split cannot change any result.
        let packedBPanels = directB ? (n % nr == 0 ? 0 : 1) : nPanels
        // A with contiguous rows is read in place (full panels) when B is packed: its row panel
        // then stays in L1 for a whole row of tiles (measured +2–4 %); with B in place, or A
        // transposed, packing A measured faster.
        let fullAInPlace = aInPlace(transposeA: source.transposeA, directB: directB) ? m / mr : 0
        let packedAPanels = mPanels - fullAInPlace
        // Up to 8 panels a chunk, fewer when that leaves a thread without a chunk (the swapped
        // products of a small batch pack 4 panels of B: one chunk made one thread pack them all
        // while the other waited).
        let aPerChunk = max(1, min(8, packedAPanels / (2 * threads)))
        let bPerChunk = max(1, min(8, packedBPanels / (2 * threads)))
        let aChunks = (packedAPanels + aPerChunk - 1) / aPerChunk
        let bChunks = directB ? packedBPanels : (packedBPanels + bPerChunk - 1) / bPerChunk
        // Panels outermost, depth blocks inside: each source row is read front to back in one
        // go, which the hardware prefetcher follows (depth blocks outermost ran packing ~2×
        // slower for 1024³).
        Parallel.forEach(chunks: aChunks + bChunks, threads: threads) { chunk in
            if chunk < aChunks {
                let first = fullAInPlace + chunk * aPerChunk
                for panel in first..<min(mPanels, first + aPerChunk) {
                    for block in 0..<depth.count {
                        let pc = depth.start(block), kcCurrent = depth.size(block)
                        source.packA(panel: panel, m: m, pc: pc, kc: kcCurrent,
                                     into: packedA + pc * packedAPanels * mr + (panel - fullAInPlace) * mr * kcCurrent)
                    }
                }
            } else if directB {
                for block in 0..<depth.count {
                    let pc = depth.start(block), kcCurrent = depth.size(block)
                    source.packB(panel: nPanels - 1, n: n, jc: 0, pc: pc, kc: kcCurrent, into: packedB + pc * nr)
                }
            } else {
                let first = (chunk - aChunks) * bPerChunk
                for panel in first..<min(nPanels, first + bPerChunk) {
                    for block in 0..<depth.count {
                        let pc = depth.start(block), kcCurrent = depth.size(block)
                        source.packB(panel: panel, n: n, jc: 0, pc: pc, kc: kcCurrent,
                                     into: packedB + pc * nPanels * nr + panel * nr * kcCurrent)
                    }
                }
            }
        }

        let grid = WorkGrid(mPanels: mPanels, nPanels: nPanels, threads: threads, lastPanelColumns: n - (nPanels - 1) * nr)
        Parallel.forEach(chunks: grid.rowGroups * grid.columnGroups, threads: threads) { item in
            let rows = grid.rows(item / grid.columnGroups), columns = grid.columns(item % grid.columnGroups)
            let blockPanels = max(1, bBlockFloats / (depth.base + 1) / nr)
            // Rows outermost, then column blocks: the block of C stays in L2 across the depth
            // blocks, and so does its column block of packed B across the row panels of A.
            for ic in stride(from: rows.lowerBound, to: rows.upperBound, by: mc / mr) {
                let rowRange = ic * mr..<min(m, min(rows.upperBound, ic + mc / mr) * mr)
                for jc in stride(from: columns.lowerBound, to: columns.upperBound, by: blockPanels) {
                    let columnRange = jc * nr..<min(n, min(columns.upperBound, jc + blockPanels) * nr)
                    multiplyDepthBlocks(problem, rows: rowRange, columns: columnRange, c: c, ldc: ldc, accumulate: accumulate,
                                        packedA: packedA, packedB: packedB)
                }
            }
        }
    }

    /// Runs every depth block, in order, over one block of C.
    static func multiplyDepthBlocks(_ problem: Problem, rows rowRange: Range<Int>, columns columnRange: Range<Int>,
                                    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                                    packedA: UnsafeMutablePointer<Float>, packedB: UnsafeMutablePointer<Float>) {
        let m = problem.m, n = problem.n, source = problem.source, directB = problem.directB, depth = problem.depth
        let mPanels = (m + mr - 1) / mr, nPanels = (n + nr - 1) / nr
        let fullAInPlace = aInPlace(transposeA: source.transposeA, directB: directB) ? m / mr : 0
        let packedAPanels = mPanels - fullAInPlace
        for block in 0..<depth.count {
            let pc = depth.start(block), kcCurrent = depth.size(block)
            let panels = directB
                ? BPanels(direct: source.b + pc * source.ldb, ldb: source.ldb, packed: packedB + pc * nr,
                          kc: kcCurrent, lastFull: n / nr)
                : BPanels(direct: nil, ldb: 0, packed: packedB + pc * nPanels * nr, kc: kcCurrent, lastFull: nPanels)
            let aPanels = APanels(direct: source.a + pc, rowStride: source.lda, packed: packedA + pc * packedAPanels * mr,
                                  kc: kcCurrent, lastFull: fullAInPlace)
            multiplyBlock(rows: rowRange, columns: columnRange, kc: kcCurrent, aPanels: aPanels,
                          panels: panels, c: c, ldc: ldc, addToC: accumulate || block > 0,
                          transposeC: problem.transposeC)
        }
    }

    /// How the tiles of C are split into work items: `rowGroups × columnGroups` rectangles
    /// of near-equal size. The split may depend on the thread count because each element's
    /// arithmetic does not depend on which item computes it.
    struct WorkGrid {
        let mPanels: Int, nPanels: Int, rowGroups: Int, columnGroups: Int

        /// `lastPanelColumns`: the valid columns of the last column panel (a ragged edge costs
        /// less than a full panel: a column split 32 + 8 of n = 40 gave one thread 4/5 of the work
        /// and ran 128×40×400 slower on two threads than on one, 62 against 105 GFLOP/s).
        init(mPanels: Int, nPanels: Int, threads: Int, lastPanelColumns: Int = GEMM.nr) {
            self.mPanels = mPanels
            self.nPanels = nPanels
            guard threads > 1 else {
                rowGroups = 1
                columnGroups = 1
                return
            }
            // The grid of at most 4 items per thread whose largest item, run in rounds of
            // `threads`, finishes first. Among equals: while row groups keep at least an L2
            // block of rows, more items (a thread that a busy core slows down then takes fewer);
            // below that, fewer items, so a column panel of B serves many rows. Last, fewer
            // row groups (each reads all of its columns' B again).
            var best = (cost: Int.max, preference: Int.max, rows: 1, columns: 1)
            for rows in 1...min(mPanels, 4 * threads) {
                for columns in 1...min(nPanels, 4 * threads) where (rows * columns) % threads == 0 && rows * columns <= 4 * threads {
                    let rowPanels = (mPanels + rows - 1) / rows
                    // The widest column group in valid columns (the first groups hold one panel
                    // more; the last holds the ragged panel).
                    let first = Self.split(nPanels, into: columns, part: 0).count * GEMM.nr
                        - (columns == 1 ? GEMM.nr - lastPanelColumns : 0)
                    let last = Self.split(nPanels, into: columns, part: columns - 1).count * GEMM.nr - (GEMM.nr - lastPanelColumns)
                    let widest = max(first, last)
                    let largest = rowPanels * widest
                    let cost = (rows * columns / threads) * largest
                    let preference = rowPanels >= GEMM.mc / GEMM.mr ? -rows * columns : rows * columns
                    if (cost, preference, rows) < (best.cost, best.preference, best.rows) {
                        best = (cost, preference, rows, columns)
                    }
                }
            }
            if best.cost == Int.max { best = (0, 0, 1, min(nPanels, threads)) }
            rowGroups = best.rows
            columnGroups = best.columns
        }

        /// Row panels of row group `g`.
        func rows(_ g: Int) -> Range<Int> { Self.split(mPanels, into: rowGroups, part: g) }
        /// Column panels of column group `g`.
        func columns(_ g: Int) -> Range<Int> { Self.split(nPanels, into: columnGroups, part: g) }

        static func split(_ count: Int, into parts: Int, part: Int) -> Range<Int> {
            let base = count / parts, extra = count % parts
            let start = part * base + min(part, extra)
            return start..<start + base + (part < extra ? 1 : 0)
        }
    }

    /// Float storage aligned to a cache line (and to a 512-bit vector).
    static func allocateFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
        UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(1, count))
    }

    /// Where the micro-kernel finds the column panels of one `kc × n` depth block of op(B).
    struct BPanels {
        /// op(B) in place (row p of the block at `direct + p·ldb`), or nil when packed.
        let direct: UnsafePointer<Float>?
        let ldb: Int
        /// The packed panels; in place, only the ragged last panel.
        let packed: UnsafePointer<Float>
        let kc: Int
        /// Panels with all `nr` columns.
        let lastFull: Int

        /// The panel starting at column `jr` of the block and its row stride in floats.
        @inline(__always)
        func panel(_ jr: Int) -> (UnsafePointer<Float>, Int) {
            let index = jr / GEMM.nr
            guard let direct else { return (packed + index * GEMM.nr * kc, GEMM.nr) }
            return index < lastFull ? (direct + jr, ldb) : (packed, GEMM.nr)
        }
    }

    /// Where the micro-kernel finds the row panels of one `m × kc` block of op(A): the first
    /// `lastFull` panels in place (row r, depth p at `direct + r·rowStride + p`), the rest
    /// packed from `packed` on (the ragged last one zero-padded).
    struct APanels {
        let direct: UnsafePointer<Float>
        let rowStride: Int
        let packed: UnsafePointer<Float>
        let kc: Int
        /// Panels with all `mr` rows.
        let lastFull: Int
    }

    /// Multiplies the panels covering `rows × columns` of C (columns relative to `c`).
    ///
    /// B read in place keeps the BLIS order: its column panel stays in L1 while the row
    /// panels of A stream past it from L2 (a strided panel is costly to fetch, so it is
    /// fetched once). Packed B goes the other way round: a row panel of A stays in L1 while
    /// the contiguous column panels of B stream past it from L2 (measured 1–4 % faster).
    /// Edge tiles run the same micro-kernel on zero-padded panels and store only their valid
    /// part, so an element's arithmetic is the same whether or not it sits on an edge.
    static func multiplyBlock(rows: Range<Int>, columns: Range<Int>, kc: Int,
                              aPanels: APanels, panels: BPanels,
                              c: UnsafeMutablePointer<Float>, ldc: Int, addToC: Bool, transposeC: Bool) {
        @inline(__always)
        func tile(_ ir: Int, _ jr: Int) {
            let cTile = transposeC ? c + jr * ldc + ir : c + ir * ldc + jr
            let (bPanel, bStride) = panels.panel(jr)
            let height = min(mr, rows.upperBound - ir), width = min(nr, columns.upperBound - jr)
            if !ISA.wideTile {
                narrowTile(ir, cTile, bPanel, bStride, height, width)
                return
            }
            if ir / mr < aPanels.lastFull {
                let aRow = aPanels.direct + ir * aPanels.rowStride
                if width <= nr / 2 {
                    MicroKernel.runHalfInPlace(kc, aRow, aPanels.rowStride, bPanel, bStride,
                                               cTile, ldc, height, width, addToC, transposeC)
                } else {
                    MicroKernel.runInPlace(kc, aRow, aPanels.rowStride, bPanel, bStride,
                                           cTile, ldc, height, width, addToC, transposeC)
                }
                return
            }
            let aPanel = aPanels.packed + (ir / mr - aPanels.lastFull) * mr * kc
            if width <= nr / 2 {
                MicroKernel.runHalf(kc, aPanel, bPanel, bStride, cTile, ldc, height, width, addToC, transposeC)
            } else {
                MicroKernel.run(kc, aPanel, bPanel, bStride, cTile, ldc, height, width, addToC, transposeC)
            }
        }
        @inline(__always)
        func narrowTile(_ ir: Int, _ cTile: UnsafeMutablePointer<Float>, _ bPanel: UnsafePointer<Float>, _ bStride: Int,
                        _ height: Int, _ width: Int) {
            if ir / mr < aPanels.lastFull {
                let aRow = aPanels.direct + ir * aPanels.rowStride
                if width <= nr / 2 {
                    NarrowKernel.runHalfInPlace(kc, aRow, aPanels.rowStride, bPanel, bStride,
                                                cTile, ldc, height, width, addToC, transposeC)
                } else {
                    NarrowKernel.runInPlace(kc, aRow, aPanels.rowStride, bPanel, bStride,
                                            cTile, ldc, height, width, addToC, transposeC)
                }
                return
            }
            let aPanel = aPanels.packed + (ir / mr - aPanels.lastFull) * mr * kc
            if width <= nr / 2 {
                NarrowKernel.runHalf(kc, aPanel, bPanel, bStride, cTile, ldc, height, width, addToC, transposeC)
            } else {
                NarrowKernel.run(kc, aPanel, bPanel, bStride, cTile, ldc, height, width, addToC, transposeC)
            }
        }
        if panels.direct != nil {
            for jr in stride(from: columns.lowerBound, to: columns.upperBound, by: nr) {
                for ir in stride(from: rows.lowerBound, to: rows.upperBound, by: mr) { tile(ir, jr) }
            }
        } else {
            for ir in stride(from: rows.lowerBound, to: rows.upperBound, by: mr) {
                for jr in stride(from: columns.lowerBound, to: columns.upperBound, by: nr) { tile(ir, jr) }
            }
        }
    }

    /// The unpacked operands and how to read op(A) and op(B) from them.
    struct Operands {
        let a: UnsafePointer<Float>, lda: Int, transposeA: Bool
        let b: UnsafePointer<Float>, ldb: Int, transposeB: Bool
    }
}
