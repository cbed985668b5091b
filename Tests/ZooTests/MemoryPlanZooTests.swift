import Testing
import KilnGraph
import KilnPasses
import KilnRuntime
@testable import KilnZoo

/// Memory planning on a real training graph: LeNet-5 with SGD + momentum, one kernel per node.
@Suite("Memory planning on zoo models")
struct MemoryPlanZooTests {
    private func plannedLeNet(batch: Int) throws -> Program {
        let graph = try ClassifierTrainer.trainingGraph(model: lenet5(), batch: batch, optimizer: .sgd(momentum: 0.9))
        var program = Program(graph: graph, kernels: graph.singletonGroups())
        try PassManager(passes: [MemoryPlanning()]).run(&program)
        return program
    }

    @Test("LeNet-5 training plan: no live overlap, between the lower bound and naive, every update in place")
    func lenetPlan() throws {
        let program = try plannedLeNet(batch: 64)
        let memory = try #require(program.memory)
        try BufferLiveness.checkNoOverlap(BufferLiveness.intervals(of: program), memory: memory)
        #expect(memory.arenaBytes >= memory.lowerBoundBytes)
        #expect(memory.arenaBytes <= memory.naiveBytes)
        // Every parameter and momentum update is computed straight into its target.
        for update in program.graph.updates {
            #expect(BufferLiveness.owner(of: update.value, in: program) == update.target)
        }
        let kib = { (bytes: Int) in "\(bytes / 1024) KiB" }
        let unplanned = program.graph.nodes.reduce(0) { total, node in
            switch node.op {
            case .parameter, .state, .reshape: return total
            default: return total + ArenaLayout.aligned(node.type.byteCount)
            }
        }
        print("""
            lenet5 batch 64 sgd(momentum 0.9), \(program.kernelCount) singleton kernels, strategy \(memory.strategy):
              one slot per value \(kib(unplanned)), naive (after in-place) \(kib(memory.naiveBytes)), \
            lower bound \(kib(memory.lowerBoundBytes)), arena \(kib(memory.arenaBytes))
              arena / lower bound = \(Double(memory.arenaBytes) / Double(memory.lowerBoundBytes)), \
            arena / naive = \(Double(memory.arenaBytes) / Double(memory.naiveBytes)), \
            in-place aliases \(memory.aliases.filter { !program.graph.nodes[$0.key].op.isView }.count)
            """)
    }

    @Test("LeNet-5 training plan after fusion stays between the lower bound and naive")
    func lenetFusedPlan() throws {
        let graph = try ClassifierTrainer.trainingGraph(model: lenet5(), batch: 64, optimizer: .sgd(momentum: 0.9))
        var program = Program(graph: graph)
        try PassRegistry.standardPipeline().run(&program)
        let memory = try #require(program.memory)
        #expect(memory.arenaBytes >= memory.lowerBoundBytes)
        #expect(memory.arenaBytes <= memory.naiveBytes)
        print("""
            lenet5 batch 64 fused (\(program.kernelCount) kernels), strategy \(memory.strategy): naive \(memory.naiveBytes / 1024) KiB, \
            lower bound \(memory.lowerBoundBytes / 1024) KiB, arena \(memory.arenaBytes / 1024) KiB, \
            arena / lower bound = \(Double(memory.arenaBytes) / Double(memory.lowerBoundBytes)), \
            arena / naive = \(Double(memory.arenaBytes) / Double(memory.naiveBytes))
            """)
    }

    @Test("a planned LeNet-5 training step equals the unplanned one bit for bit")
    func lenetPlannedStep() throws {
        let program = try plannedLeNet(batch: 4)
        let graph = program.graph
        let x: [Float] = (0..<3136).map { (i: Int) -> Float in Float((i * 7919) % 255) / 255 }
        let labels: [Int32] = [3, 1, 4, 1]
        var results: [[String: [Float]]] = []
        for executable in [try Executable(graph: graph, store: ParameterStore(seed: 5), threads: 1, pipeline: nil),
                           try Executable(program: program, store: ParameterStore(seed: 5), threads: 1)] {
            var result: [String: [Float]] = [:]
            for step in 0..<2 {
                try executable.setInput("x", x)
                try executable.setInput("labels", labels)
                try executable.setInput("lr", [0.05])
                try executable.run()
                result["loss\(step)"] = try executable.output("loss")
            }
            for name in executable.store.names { result[name] = executable.store[name]!.values }
            results.append(result)
        }
        #expect(results[0] == results[1])
    }
}
