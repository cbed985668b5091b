/// The vector instruction set the kernels were compiled for, and the register tiles that fit it:
/// the one place that decides vector widths and tile shapes. Kernels read these constants.
///
/// How the ISA is known at compile time: Swift has no `#if` test for target features (only
/// `arch`, `os`, `canImport`, …), so Package.swift derives it from the CPU the code is compiled
/// for (`KILN_TARGET_CPU`, default `native`: the flags in `/proc/cpuinfo`) and passes one
/// define, `KILN_ISA_AVX512` or `KILN_ISA_AVX2` (`KILN_ISA=avx512|avx2|generic` overrides).
/// The instructions themselves come from `-target-cpu` alone, so a wrong or missing define can
/// only cost speed, never correctness: the tiles below are plain Swift SIMD code that LLVM
/// lowers for whatever CPU it targets.
///
/// Elementwise and transcendental loops (`ElementwiseKernel`, `FastMath`, `AdamKernel`) run on
/// `Vector`: on AVX2 the 16-float vectors they used before spilled in log, tanh and softplus.
///
/// | ISA | vector registers | `Vector` | GEMM tile (mr × nr) | accumulators | dot tile |
/// |---|---|---|---|---|---|
/// | AVX-512 | 32 × 512-bit | `SIMD16<Float>` | 8 × 32 (2 vectors a row) | 16 zmm | 4 × 4, 16 lanes |
/// | AVX2 + FMA | 16 × 256-bit | `SIMD8<Float>` | 6 × 16 (2 vectors a row) | 12 ymm | 4 × 2, 8 lanes |
/// | arm64 NEON | 32 × 128-bit | `SIMD4<Float>` | 6 × 16 (4 vectors a row) | 24 q | 4 × 2, 8 lanes |
/// | other (SSE2, …) | 16 × 128-bit | `SIMD4<Float>` | 6 × 16 (correct, spills) | – | 4 × 2, 8 lanes |
///
/// The AVX2 tile is the one BLIS and OpenBLAS use on Haswell: 12 accumulators, 2 vectors of B
/// and one broadcast of A fill 15 of the 16 ymm registers; AVX-512's 8 × 32 uses 16 of 32 zmm,
/// leaving room for B and the broadcast. The NEON row is on paper: it is not built or run on the
/// project's x86-64 machine (6 × 16 gives 24 accumulators + 4 B vectors + 1 broadcast = 29 of
/// 32 q registers).
public enum ISA {
    #if arch(x86_64) && KILN_ISA_AVX512
    /// Name of the compiled ISA, as benchmarks report it.
    public static let name = "avx512"
    /// The native float vector: one register.
    public typealias Vector = SIMD16<Float>
    /// Integer vectors of the same lanes, for bit arithmetic on `Vector` (`FastMath`).
    public typealias IntVector = SIMD16<Int32>
    public typealias UIntVector = SIMD16<UInt32>
    /// Whether the GEMM runs the AVX-512 tile (`GEMM.MicroKernel`, 8 × 32) rather than the
    /// narrow one (`GEMM.NarrowKernel`, 6 × 16).
    static let wideTile = true
    /// Rows and columns of C per GEMM micro-kernel call (columns a multiple of 16: B is packed
    /// 16 columns at a time).
    static let gemmRows = 8, gemmColumns = 32
    /// Columns of the inner-product kernel's tile (`GEMM.DotKernel`; 4 rows) and floats of k per step.
    static let dotColumns = 4, dotLanes = 16
    #elseif arch(x86_64) && KILN_ISA_AVX2
    public static let name = "avx2"
    public typealias Vector = SIMD8<Float>
    public typealias IntVector = SIMD8<Int32>
    public typealias UIntVector = SIMD8<UInt32>
    static let wideTile = false
    static let gemmRows = 6, gemmColumns = 16
    static let dotColumns = 2, dotLanes = 8
    #elseif arch(arm64)
    public static let name = "neon"
    public typealias Vector = SIMD4<Float>
    public typealias IntVector = SIMD4<Int32>
    public typealias UIntVector = SIMD4<UInt32>
    static let wideTile = false
    static let gemmRows = 6, gemmColumns = 16
    static let dotColumns = 2, dotLanes = 8
    #else
    public static let name = "generic"
    public typealias Vector = SIMD4<Float>
    public typealias IntVector = SIMD4<Int32>
    public typealias UIntVector = SIMD4<UInt32>
    static let wideTile = false
    static let gemmRows = 6, gemmColumns = 16
    static let dotColumns = 2, dotLanes = 8
    #endif

    /// Floats per native vector register.
    public static var lanes: Int { Vector.scalarCount }

    /// One line for benchmark records: ISA, vector width, GEMM tile.
    public static var summary: String {
        "\(name): \(lanes * 32)-bit vectors, GEMM tile \(gemmRows)x\(gemmColumns)"
    }
}

/// acc += a·b lane by lane: one fused multiply-add where the ISA has it (AVX2, AVX-512, NEON);
/// a multiply and an add on the fallback, where a fused one would be a library call per lane.
@_transparent
public func multiplyAdd<V: SIMD>(_ acc: inout V, _ a: V, _ b: V) where V.Scalar == Float {
    #if (arch(x86_64) && (KILN_ISA_AVX512 || KILN_ISA_AVX2)) || arch(arm64)
    acc.addProduct(a, b)
    #else
    acc += a * b
    #endif
}
