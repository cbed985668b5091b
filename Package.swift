// swift-tools-version:6.2
import PackageDescription

/// Kernels are compiled for the CPU named by `KILN_TARGET_CPU` (default `native`):
/// without it swiftc emits no AVX at all. Code stays correct on any AVX2+FMA x86-64
/// (`haswell`) and on arm64; wider vectors are only a speed-up.
let targetCPU = Context.environment["KILN_TARGET_CPU"] ?? "native"
let fastFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", targetCPU, "-Ounchecked", "-Xcc", "-fno-math-errno"], .when(configuration: .release)),
    .unsafeFlags(["-target-cpu", targetCPU], .when(configuration: .debug)),
]
let flags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", targetCPU])]
/// `scripts/sanitize.sh` sets `KILN_SANITIZER`: the allocation counter's malloc cannot sit beside
/// a sanitizer's, so RuntimeTests is built without it and its allocation tests compile out.
let sanitizing = Context.environment["KILN_SANITIZER"] != nil

let package = Package(
    name: "Kiln",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .executable(name: "kiln", targets: ["CLI"]),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "KilnGraph", path: "Sources/Graph", swiftSettings: flags),
        .target(name: "KilnPasses", dependencies: ["KilnGraph"], path: "Sources/Passes", swiftSettings: flags),
        .target(name: "KilnRuntime", dependencies: ["KilnGraph", "KilnPasses"], path: "Sources/Runtime",
                swiftSettings: fastFlags),
        .target(name: "KilnZoo", dependencies: ["KilnGraph", "KilnPasses", "KilnRuntime", "CZlib"],
                path: "Sources/Zoo", swiftSettings: flags),
        .target(name: "Kiln", dependencies: ["KilnGraph", "KilnPasses", "KilnRuntime", "KilnZoo"],
                path: "Sources/Kiln"),
        .executableTarget(name: "CLI", dependencies: ["Kiln"], path: "Sources/CLI", swiftSettings: flags),
        .executableTarget(name: "tour", dependencies: ["Kiln"], path: "examples/tour"),
        .testTarget(name: "GraphTests", dependencies: ["KilnGraph"], path: "Tests/GraphTests"),
        .testTarget(name: "PassesTests", dependencies: ["KilnPasses", "KilnRuntime"], path: "Tests/PassesTests"),
        // Counts heap allocations; linked only into RuntimeTests (it replaces malloc process-wide).
        .target(name: "KilnAllocationCounter", path: "Sources/AllocationCounter"),
        .testTarget(name: "RuntimeTests", dependencies: ["KilnRuntime"] + (sanitizing ? [] : ["KilnAllocationCounter"]),
                    path: "Tests/RuntimeTests", swiftSettings: flags + (sanitizing ? [.define("KILN_SANITIZING")] : [])),
        .testTarget(name: "ZooTests", dependencies: ["KilnZoo", "Kiln"], path: "Tests/ZooTests"),
        // The command-line tool's flag checks and its fuzzer's quick run (issue 16).
        .testTarget(name: "CLITests", dependencies: ["CLI", "Kiln"], path: "Tests/CLITests"),
    ],
    swiftLanguageModes: [.v5]
)
