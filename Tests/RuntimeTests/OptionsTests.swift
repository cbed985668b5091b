import Testing
import KilnGraph
import KilnPasses
@testable import KilnRuntime

/// Options travel in values (`CompileOptions`, `RunOptions`), not globals or the environment.
@Suite("Compile and run options")
struct OptionsTests {
    static func graph() throws -> Graph {
        let g = GraphBuilder()
        let x = g.input("x", [8, 16])
        let w = g.parameter("w", [16, 4], initializer: .uniform(low: -1, high: 1))
        g.output("y", relu(x.matmul(w) + 1).sum())
        return try g.build()
    }

    @Test("a disabled pass is skipped, an unknown pass name is an error naming the passes")
    func disabledPasses() throws {
        let graph = try Self.graph()
        let fused = try Executable(graph: graph, store: ParameterStore(seed: 1), options: CompileOptions(threads: 1))
        let unfused = try Executable(graph: graph, store: ParameterStore(seed: 1),
                                     options: CompileOptions(threads: 1, disabledPasses: ["fuse"]))
        #expect(unfused.program.schedule.count > fused.program.schedule.count)
        #expect(unfused.program.memory != nil)
        #expect(throws: KilnError.argument("no pass is called nope; passes: " + PassRegistry.standardNames.joined(separator: ", "))) {
            _ = try CompileOptions(disabledPasses: ["nope"]).pipeline()
        }
    }

    @Test("checkNumerics compiles without fusion and memory planning and turns the run check on")
    func checkNumerics() throws {
        let options = CompileOptions(threads: 1, checkNumerics: true)
        let executable = try Executable(graph: try Self.graph(), store: ParameterStore(seed: 1), options: options)
        #expect(executable.program.memory == nil)
        #expect(executable.program.schedule.allSatisfy { $0.members.count == 1 })
        #expect(executable.runOptions.checkNumerics)
    }

    @Test("profiling times every kernel group only while RunOptions.profile is set")
    func profile() throws {
        let executable = try Executable(graph: try Self.graph(), store: ParameterStore(seed: 1), options: CompileOptions(threads: 1))
        try executable.setInput("x", (0..<128).map { Float($0) / 128 } as [Float])
        try executable.run()
        #expect(executable.kernelSeconds.allSatisfy { $0 == 0 })
        executable.runOptions.profile = true
        for _ in 0..<3 { try executable.run() }
        #expect(executable.kernelSeconds.count == executable.program.schedule.count)
        #expect(executable.kernelSeconds.reduce(0, +) > 0)
        #expect(executable.profileReport.hasPrefix("kiln profile: "))
        #expect(executable.profileReport.contains("3 steps"))
        executable.runOptions.profile = false
    }
}
