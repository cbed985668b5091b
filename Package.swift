// swift-tools-version:6.2
import Foundation
import PackageDescription

/// Kernels are compiled for the CPU named by `KILN_TARGET_CPU` (default `native`):
/// without it swiftc emits no AVX at all. Code stays correct on any AVX2+FMA x86-64
/// (`haswell`) and on arm64; wider vectors are only a speed-up.
let targetCPU = Context.environment["KILN_TARGET_CPU"] ?? "native"

/// The vector ISA of `targetCPU`, as a define that Sources/Runtime/Kernels/ISA.swift reads to pick
/// vector widths and register tiles (Swift has no `#if` for target features). `KILN_ISA=avx512|avx2|generic`
/// overrides. A wrong guess costs speed only: the instructions come from `-target-cpu`.
func vectorISA(of cpu: String) -> String {
    if let forced = Context.environment["KILN_ISA"] { return forced }
    let name = cpu.lowercased()
    if name == "native" {
        // The build machine's own flags (Linux); elsewhere (macOS, where arm64 needs no define) assume AVX2.
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return "avx2" }
        let set = Set(flags.split(separator: " ").map(String.init))
        if set.contains("avx512f") { return "avx512" }
        return set.contains("avx2") && set.contains("fma") ? "avx2" : "generic"
    }
    let avx512 = ["x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake", "icelake-client",
                  "icelake-server", "tigerlake", "rocketlake", "sapphirerapids", "emeraldrapids", "graniterapids",
                  "graniterapids-d", "diamondrapids", "znver4", "znver5", "knl", "knm"]
    let avx2 = ["x86-64-v3", "haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake", "arrowlake",
                "arrowlake-s", "lunarlake", "pantherlake", "gracemont", "sierraforest", "grandridge", "clearwaterforest",
                "znver1", "znver2", "znver3", "bdver4"]
    if avx512.contains(name) { return "avx512" }
    if avx2.contains(name) { return "avx2" }
    return "generic"
}
let isaDefine: [SwiftSetting] = {
    switch vectorISA(of: targetCPU) {
    case "avx512": return [.define("KILN_ISA_AVX512")]
    case "avx2": return [.define("KILN_ISA_AVX2")]
    default: return []
    }
}()
let fastFlags: [SwiftSetting] = isaDefine + [
    .unsafeFlags(["-target-cpu", targetCPU, "-Ounchecked", "-Xcc", "-fno-math-errno"], .when(configuration: .release)),
    .unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .debug)),
]
let flags: [SwiftSetting] = isaDefine + [.unsafeFlags(["-target-cpu", targetCPU])]
/// `scripts/sanitize.sh` sets `KILN_SANITIZER`: the allocation counter's malloc cannot sit beside
/// a sanitizer's, so RuntimeTests is built without it and its allocation tests compile out.
let sanitizing = Context.environment["KILN_SANITIZER"] != nil

/// MPI for data-parallel training (issue 18) is optional: the `CMPI` system-library target and the
/// `KilnDistributed` code that calls it exist only where an MPI's pkg-config file is found (Open MPI's
/// `ompi`, or `mpi`; Debian: `apt-get install openmpi-bin libopenmpi-dev`). Without one, Kiln builds
/// the same and a distributed run says MPI is missing. `KILN_NO_MPI=1` builds as if it were missing.
let mpiPackage: String? = {
    if let off = Context.environment["KILN_NO_MPI"], !off.isEmpty, off != "0" { return nil }
    let searchPath = (Context.environment["PKG_CONFIG_PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/lib/aarch64-linux-gnu/pkgconfig", "/usr/lib64/pkgconfig",
           "/usr/lib/pkgconfig", "/usr/local/lib/pkgconfig", "/usr/share/pkgconfig", "/opt/homebrew/lib/pkgconfig"]
    for name in ["ompi", "mpi"] {
        if searchPath.contains(where: { FileManager.default.fileExists(atPath: "\($0)/\(name).pc") }) { return name }
    }
    return nil
}()
let mpiTargets: [Target] = mpiPackage.map { [.systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: $0)] } ?? []
let mpiDependency: [Target.Dependency] = mpiPackage == nil ? [] : ["CMPI"]

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        // The core alone (graph, passes, runtime): no Foundation, so a program on it does not load
        // Foundation, FoundationEssentials and ICU (the zoo, data loaders and optimizers are in `Kiln`).
        .library(name: "KilnCore", targets: ["KilnGraph", "KilnPasses", "KilnRuntime"]),
        .executable(name: "kiln", targets: ["CLI"]),
        .executable(name: "kiln-gemm", targets: ["GEMMTool"]),
    ],
    targets: mpiTargets + [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "KilnGraph", path: "Sources/Graph", swiftSettings: flags),
        .target(name: "KilnPasses", dependencies: ["KilnGraph"], path: "Sources/Passes", swiftSettings: flags),
        // The two GNU calls the runtime makes (affinity, thread names): the core needs no Foundation.
        .target(name: "CPlatform", path: "Sources/CPlatform"),
        .target(name: "KilnRuntime", dependencies: ["KilnGraph", "KilnPasses", "CPlatform"], path: "Sources/Runtime",
                swiftSettings: fastFlags),
        .target(name: "KilnZoo", dependencies: ["KilnGraph", "KilnPasses", "KilnRuntime", "CZlib"],
                path: "Sources/Zoo", swiftSettings: flags),
        // Data-parallel training over MPI (issue 18); calls MPI only when CMPI exists.
        .target(name: "KilnDistributed", dependencies: ["KilnGraph", "KilnPasses", "KilnRuntime", "KilnZoo"] + mpiDependency,
                path: "Sources/Distributed", swiftSettings: flags),
        .target(name: "Kiln", dependencies: ["KilnGraph", "KilnPasses", "KilnRuntime", "KilnZoo", "KilnDistributed"],
                path: "Sources/Kiln"),
        // Benchmark parity (issue 13): the peers' initial weights and data order (numpy's
        // generator), the JSONL record, the FMA peak. Used by `kiln bench` and the tests only.
        // Foundation-free, like the core, so that `kiln-gemm` loads neither.
        .target(name: "KilnBench", dependencies: ["KilnGraph", "KilnRuntime"], path: "Sources/Bench", swiftSettings: fastFlags),
        // `kiln fuzz` measures each input's peak heap bytes with the counting malloc (off until a
        // fuzz worker turns it on; left out under a sanitizer, whose malloc it cannot sit beside).
        // Argument parsing for `kiln` and `kiln-gemm` (Foundation-free).
        .target(name: "KilnCommandLine", dependencies: ["KilnGraph"], path: "Sources/CommandLine", swiftSettings: flags),
        .executableTarget(name: "CLI", dependencies: ["Kiln", "KilnBench", "KilnCommandLine"] + (sanitizing ? [] : ["KilnAllocationCounter"]),
                          path: "Sources/CLI", swiftSettings: flags + (sanitizing ? [.define("KILN_SANITIZING")] : [])),
        // `kiln bench gemm` in a tool with Kiln's core alone and the Swift runtime linked in: no
        // Foundation, as a program using only the core (bench/compare.sh's GEMM row).
        .executableTarget(name: "GEMMTool", dependencies: ["KilnBench", "KilnCommandLine", "KilnGraph", "KilnRuntime"],
                          path: "Sources/GEMMTool", swiftSettings: flags,
                          linkerSettings: [.unsafeFlags(["-static-executable"], .when(platforms: [.linux]))]),
        .executableTarget(name: "tour", dependencies: ["Kiln"], path: "examples/tour"),
        // The courses' experiments (issue 14): `swift run -c release NAME [--out DIR] [--quick]`.
        .executableTarget(name: "linear-classifiers", dependencies: ["Kiln"], path: "examples/linear-classifiers"),
        .executableTarget(name: "ffn-sweep", dependencies: ["Kiln"], path: "examples/ffn-sweep"),
        .executableTarget(name: "quadratic-activation", dependencies: ["Kiln"], path: "examples/quadratic-activation"),
        .executableTarget(name: "deep-linear", dependencies: ["Kiln"], path: "examples/deep-linear"),
        .executableTarget(name: "optimizers", dependencies: ["Kiln"], path: "examples/optimizers"),
        .executableTarget(name: "fgsm", dependencies: ["Kiln"], path: "examples/fgsm"),
        // The 2-rank checks of issue 18, run by scripts/distributed-check.sh under mpirun (from .ci/run).
        .executableTarget(name: "distributed-check", dependencies: ["Kiln"], path: "Tests/DistributedCheck", swiftSettings: flags),
        .executableTarget(name: "sawtooth", dependencies: ["Kiln"], path: "examples/sawtooth"),
        .executableTarget(name: "signal-propagation", dependencies: ["Kiln"], path: "examples/signal-propagation"),
        .executableTarget(name: "parity", dependencies: ["Kiln"], path: "examples/parity"),
        .executableTarget(name: "pinn", dependencies: ["Kiln"], path: "examples/pinn"),
        .executableTarget(name: "hessian", dependencies: ["Kiln"], path: "examples/hessian"),
        .executableTarget(name: "filters", dependencies: ["Kiln"], path: "examples/filters"),
        .executableTarget(name: "pruning", dependencies: ["Kiln"], path: "examples/pruning"),
        .executableTarget(name: "resnet-schedules", dependencies: ["Kiln"], path: "examples/resnet-schedules"),
        .executableTarget(name: "generative", dependencies: ["Kiln"], path: "examples/generative"),
        .testTarget(name: "GraphTests", dependencies: ["KilnGraph"], path: "Tests/GraphTests"),
        .testTarget(name: "PassesTests", dependencies: ["KilnPasses", "KilnRuntime"], path: "Tests/PassesTests"),
        // Counts heap allocations; linked only into RuntimeTests (it replaces malloc process-wide).
        .target(name: "KilnAllocationCounter", path: "Sources/AllocationCounter"),
        // Every zoo model's steady-state step allocates nothing, in release (.ci/run runs it).
        .executableTarget(name: "allocation-check", dependencies: ["Kiln", "KilnAllocationCounter"],
                          path: "Tests/AllocationCheck"),
        .testTarget(name: "RuntimeTests", dependencies: ["KilnRuntime"] + (sanitizing ? [] : ["KilnAllocationCounter"]),
                    path: "Tests/RuntimeTests", swiftSettings: flags + (sanitizing ? [.define("KILN_SANITIZING")] : [])),
        .testTarget(name: "ZooTests", dependencies: ["KilnZoo", "Kiln", "KilnBench"], path: "Tests/ZooTests"),
        // The command-line tool's flag checks and its fuzzer's quick run (issue 16).
        .testTarget(name: "CLITests", dependencies: ["CLI", "Kiln", "KilnBench", "KilnCommandLine"], path: "Tests/CLITests"),
    ],
    swiftLanguageModes: [.v5]
)
