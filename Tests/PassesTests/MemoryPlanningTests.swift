import Testing
import KilnGraph
import KilnPasses
import KilnRuntime

// Planner tests in the style of TFLite's arena_planner_test.cc: tiny graphs, exact offsets, and
// the allocation order spelled out beside them. Every graph runs with singleton kernels in graph
// order, so step k is the k-th node that needs a kernel. Buffers are 64-byte aligned.

/// Runs `plan-memory` through a pass manager (which verifies that no live buffers overlap) on
/// `graph` with one kernel per node.
private func planned(_ graph: Graph, strategies: [ArenaStrategy] = [GreedyBySize(), GreedyByBreadth()]) throws -> Program {
    var program = Program(graph: graph, kernels: graph.singletonGroups())
    try PassManager(passes: [MemoryPlanning(strategies: strategies)]).run(&program)
    let memory = try #require(program.memory)
    try BufferLiveness.checkNoOverlap(BufferLiveness.intervals(of: program), memory: memory)
    return program
}

/// Deterministic inputs in [-1, 1) for every graph input.
private func feeds(_ graph: Graph, seed: UInt64) -> [String: [Float]] {
    var rng = SeededGenerator(seed: seed)
    var result: [String: [Float]] = [:]
    for id in graph.inputIDs {
        result[graph.leafName(id)!] = (0..<graph.nodes[id].type.shape.count).map { _ in Float(rng.uniform(-1, 1)) }
    }
    return result
}

/// Outputs and updated parameters/state after one step, by name (`update:NAME` for updates).
private func runOnce(_ executable: Executable, _ inputs: [String: [Float]]) throws -> [String: [Float]] {
    for (name, values) in inputs { try executable.setInput(name, values) }
    try executable.run()
    let graph = executable.graph
    var result: [String: [Float]] = [:]
    for output in graph.outputs { result[output.name] = try executable.output(output.name) }
    for update in graph.updates {
        let name = graph.leafName(update.target)!
        result["update:\(name)"] = executable.store[name]!.values
    }
    return result
}

/// The planned program's step equals the unplanned one's bit for bit (same kernels, other buffers).
private func expectPlannedMatchesUnplanned(_ program: Program, seed: UInt64 = 1,
                                           sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
    let inputs = feeds(program.graph, seed: seed)
    let plain = try runOnce(Executable(graph: program.graph, store: ParameterStore(seed: 3), threads: 1, pipeline: nil), inputs)
    let fast = try runOnce(Executable(program: program, store: ParameterStore(seed: 3), threads: 1), inputs)
    #expect(plain == fast, sourceLocation: sourceLocation)
}

@Suite("Memory planning")
struct MemoryPlanningTests {
    // MARK: Exact offsets

    @Test("a chain of matmuls reuses the buffer two steps back")
    func matmulChain() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])                                    // %0, 128 B
        let w = g.parameter("w", [8, 8], initializer: .uniform(low: -1, high: 1))
        let a = x.matmul(w)                                               // %2, step 0
        let b = a.matmul(w)                                               // %3, step 1
        let c = b.matmul(w)                                               // %4, step 2
        g.output("y", c)
        let program = try planned(try g.build())
        // Largest first, ties by first use. The input lives through the whole step (a caller
        // sets it once and may run again), so its bytes are never reused:
        //   alloc %0 [0,3] at 0; alloc %2 [0,1] at 128 (overlaps %0)
        //   alloc %3 [1,2] at 256 (%0 and %2 live); alloc %4 [2,3] at 128 (%2 is dead)
        let memory = try #require(program.memory)
        #expect(memory.offsets == [x.id: 0, a.id: 128, b.id: 256, c.id: 128])
        #expect(memory.aliases.isEmpty)
        #expect(memory.arenaBytes == 384)
        #expect(memory.naiveBytes == 512)
        #expect(memory.lowerBoundBytes == 384)
        #expect(memory.strategy == "greedy-by-size")
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("buffers of different sizes pack largest first")
    func mixedSizes() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])                                      // %0, 128 B
        let w1 = g.parameter("w1", [8, 16], initializer: .uniform(low: -1, high: 1))
        let w2 = g.parameter("w2", [16, 4], initializer: .uniform(low: -1, high: 1))
        let w3 = g.parameter("w3", [4, 8], initializer: .uniform(low: -1, high: 1))
        let a = x.matmul(w1)                                              // %4, 256 B, step 0
        let b = a.matmul(w2)                                              // %5,  64 B, step 1
        let c = b.matmul(w3)                                              // %6, 128 B, step 2
        g.output("y", c)
        let program = try planned(try g.build())
        // Order by size: %4 (256), %0 (128, first used at 0), %6 (128, at 2), %5 (64).
        //   alloc %4 [0,1] at 0; alloc %0 [0,3] at 256 (above %4; an input lives all step)
        //   alloc %6 [2,3] at 0 (%4 is dead by step 2)
        //   alloc %5 [1,2] at 384: [0,256) is %4's at step 1 and %6's at step 2, [256,384) the input's
        let memory = try #require(program.memory)
        #expect(memory.offsets == [x.id: 256, a.id: 0, b.id: 384, c.id: 0])
        #expect(memory.arenaBytes == 448)
        #expect(memory.lowerBoundBytes == 448)                           // step 1: %0 + %4 + %5
        #expect(memory.naiveBytes == 576)
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("a chain of elementwise ops runs in place in one buffer")
    func elementwiseChain() throws {
        let g = GraphBuilder()
        let x = g.input("x", [32])                                        // %0, 128 B
        let a = exp(x)                                                    // %1, step 0: not into the input
        let b = -a                                                        // %2, step 1: into %1
        let c = tanh(b)                                                   // %3, step 2: into %1
        g.output("y", c)
        let program = try planned(try g.build())
        //   alloc %0 [0,3] at 0 (an input lives all step); alloc %1 [0,3] at 128 (holds %2 and %3 too)
        let memory = try #require(program.memory)
        #expect(memory.aliases == [b.id: a.id, c.id: a.id])
        #expect(memory.offsets == [x.id: 0, a.id: 128])
        #expect(memory.arenaBytes == 256)
        #expect(memory.naiveBytes == 512)                              // four tensors of 128 B, each its own buffer
        try expectPlannedMatchesUnplanned(program)
    }

    // MARK: Inputs

    @Test("inputs keep their bytes: set once, run twice, same inputs and same results")
    func inputsSurviveTheStep() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])                                      // read only by step 0
        let labels = g.input("labels", [4], dtype: .int32)
        let w = g.parameter("w", [8, 8], initializer: .uniform(low: -1, high: 1))
        let a = x.matmul(w)                                               // step 0
        let b = a.matmul(w)                                               // step 1: x is dead here, yet kept
        let loss = softmaxCrossEntropy(b, labels: labels).mean()
        g.output("loss", loss)
        g.update(w, to: w - 0.01 * g.gradients(of: loss, withRespectTo: [w])[0])
        let program = try planned(try g.build())
        let memory = try #require(program.memory)
        let inputBytes = [x.id, labels.id].map { (memory.offsets[$0]!, memory.offsets[$0]! + program.graph.nodes[$0].type.byteCount) }
        for (value, offset) in memory.offsets where value != x.id && value != labels.id {
            let end = offset + program.graph.nodes[value].type.byteCount
            for (start, stop) in inputBytes { #expect(end <= start || offset >= stop, "%\(value) shares an input's bytes") }
        }
        let executable = try Executable(program: program, store: ParameterStore(seed: 3), threads: 1)
        let xs = (0..<32).map { Float($0 % 7) / 7 - 0.5 }
        try executable.setInput("x", xs)
        try executable.setInput("labels", [Int32(0), 3, 5, 7])
        var losses: [Float] = []
        for _ in 0..<3 {
            try executable.run()
            losses.append(try executable.output("loss")[0])
            #expect(executable.value(x.id) == xs)
            #expect(executable.value(labels.id) == [0, 3, 5, 7])
        }
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(losses[2] < losses[0])
    }

    @Test("the verifier rejects a plan that puts another value in an input's bytes")
    func verifierRejectsInputReuse() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 8], initializer: .uniform(low: -1, high: 1))
        let a = x.matmul(w)
        let b = a.matmul(w)
        g.output("y", b)
        var program = try planned(try g.build())
        // What the planner did before inputs lived all step: b takes x's bytes once x is read.
        program.memory!.offsets[b.id] = program.memory!.offsets[x.id]
        #expect(throws: KilnError.invalidGraph("after pass test: buffer of %\(b.id) [0, 128) overlaps graph input %\(x.id) \"x\" [0, 128)")) {
            try PassManager(passes: []).verify(program, after: "test")
        }
        #expect(throws: KilnError.self) { _ = try Executable(program: program, store: ParameterStore(seed: 1), threads: 1) }
    }

    @Test("a kernel's evaluation order is declared: epilogue roots first, and the verifier rejects a member before its input")
    func evaluationOrderDeclared() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 8], initializer: .uniform(low: -1, high: 1))
        let bias = g.parameter("b", [8], initializer: .zeros)
        let z = g.input("z", [4, 8])
        g.output("y", relu(x.matmul(w) + bias))
        g.output("z", exp(z) * z + 1)
        var program = Program(graph: try g.build())
        try standardPipeline().run(&program)
        let kernels = program.kernels!
        let epilogue = try #require(kernels.first { $0.kind == .epilogue })
        #expect(epilogue.evaluationOrder.first == epilogue.root)
        #expect(Set(epilogue.evaluationOrder) == Set(epilogue.members))
        let fused = try #require(kernels.first { $0.kind == .elementwise && $0.members.count > 1 })
        #expect(fused.evaluationOrder.last == fused.root)
        for group in kernels {
            for (i, a) in group.evaluationOrder.enumerated() {
                for b in group.evaluationOrder[i...] { #expect(group.computes(a, notAfter: b)) }
            }
        }
        // Swap the first two members of a multi-member elementwise kernel whose second reads the first.
        let k = try #require(kernels.firstIndex { group in
            group.kind == .elementwise && group.members.count > 1
                && program.graph.nodes[group.members[1]].inputs.contains(group.members[0])
        })
        var members = kernels[k].members
        members.swapAt(0, 1)
        program.kernels![k].members = members
        #expect(throws: KilnError.invalidGraph("after pass test: kernel \(k) computes %\(members[0]) before its input %\(members[1]) (evaluation order \(program.kernels![k].evaluationOrder))")) {
            try PassManager(passes: []).verify(program, after: "test")
        }
    }

    // MARK: In-place legality

    @Test("an input read by a later kernel is not overwritten")
    func inputReadLater() throws {
        let g = GraphBuilder()
        let x = g.input("x", [16])
        let a = exp(x)                                                    // %1
        let b = -a                                                        // %2: %1 is read again by %3
        let c = b + a                                                     // %3: both die here; takes %2's
        g.output("y", c)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases == [c.id: b.id])
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("a broadcast operand is not overwritten, even at the same byte size")
    func broadcastOperand() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8]), v = g.input("v", [8])
        let small = exp(v)                                                // %2 [8], broadcast in %4
        let big = exp(x)                                                  // %3 [4, 8]
        let product = small * big                                         // %4: into %3, not %2
        let flat = exp(g.input("f", [32]))                                // %6 [32]
        let row = exp(g.input("r", [1, 32]))                              // %8 [1, 32]
        let sum = flat + row                                              // %9 [1, 32]: %6 has 128 B but shape [32]
        g.output("p", product)
        g.output("s", sum)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases == [product.id: big.id, sum.id: row.id])
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("graph outputs, graph inputs and non-elementwise kernels are not overwritten")
    func pinnedValues() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 4])
        let a = -x                                                        // %1: x is a graph input
        let b = exp(a)                                                    // %2: a is an output
        let c = b.transposed([1, 0])                                      // %3: not elementwise
        g.output("a", a)
        g.output("c", c)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases.isEmpty)
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("a reshape shares its input's buffer and passes in-place reuse through")
    func reshapeView() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let a = exp(x)                                                    // %1 [4, 8]
        let flat = a.reshaped([32])                                       // %2 view of %1
        let b = sigmoid(flat)                                             // %3 [32]: into %1 through the view
        g.output("y", b)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases == [flat.id: a.id, b.id: a.id])
        #expect(program.memory!.offsets == [x.id: 0, a.id: 128])
        try expectPlannedMatchesUnplanned(program)
    }

    // MARK: Parameter updates

    @Test("an update is computed straight into its parameter when no later kernel reads it")
    func updateIntoParameter() throws {
        let g = GraphBuilder()
        let x = g.input("x", [8])
        let w = g.parameter("w", [8], initializer: .uniform(low: -1, high: 1))
        let v = g.state("v", [8], initializer: .ones)
        let product = x * w                                               // step 0 reads w
        g.output("loss", product.sum())                                   // step 1
        let velocity = v * 0.9 + product                                  // v read at step 3, new value at step 4
        let updated = w - velocity * 0.1                                  // reads w at the step that writes it
        g.update(w, to: updated)
        g.update(v, to: velocity)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases[updated.id] == w.id)
        #expect(program.memory!.aliases[velocity.id] == v.id)
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("an update stays in the arena when a later kernel reads the old parameter")
    func updateReadLater() throws {
        let g = GraphBuilder()
        let x = g.input("x", [8])
        let w = g.parameter("w", [8], initializer: .uniform(low: -1, high: 1))
        let updated = w - x * 0.1
        let late = x * w                                                  // reads the old w after the update
        g.output("late", late)
        g.update(w, to: updated)
        let program = try planned(try g.build())
        // It may still run in place over x·0.1, which dies there; it just is not written into w.
        let owner = BufferLiveness.owner(of: updated.id, in: program)
        #expect(owner != w.id)
        #expect(program.memory!.offsets[owner] != nil)
        try expectPlannedMatchesUnplanned(program)
    }

    @Test("an update read back as an output of the old parameter stays in the arena")
    func updateOfOutputParameter() throws {
        let g = GraphBuilder()
        let x = g.input("x", [8])
        let w = g.parameter("w", [8], initializer: .uniform(low: -1, high: 1))
        let updated = w * x
        g.output("w", w.reshaped([2, 4]))
        g.update(w, to: updated)
        let program = try planned(try g.build())
        #expect(program.memory!.aliases[updated.id] == nil)
        try expectPlannedMatchesUnplanned(program)
    }

    // MARK: Strategies on hand-made intervals

    /// Intervals of ids 0… with the given (bytes, start, end).
    private func intervals(_ rows: [(Int, Int, Int)]) -> [BufferInterval] {
        rows.enumerated().map { BufferInterval(value: $0.offset, bytes: $0.element.0, start: $0.element.1, end: $0.element.2) }
    }

    private func check(_ strategy: ArenaStrategy, _ intervals: [BufferInterval], _ expected: [ValueID: Int], arena: Int) throws {
        let offsets = strategy.assign(intervals)
        #expect(offsets == expected, "\(strategy.name)")
        #expect(ArenaLayout.arenaBytes(intervals, offsets) == arena, "\(strategy.name)")
        let memory = MemoryPlan(offsets: offsets, aliases: [:], arenaBytes: arena, naiveBytes: 0, lowerBoundBytes: 0, strategy: strategy.name)
        try BufferLiveness.checkNoOverlap(intervals, memory: memory)
    }

    @Test("greedy by size beats greedy by breadth here")
    func sizeWins() throws {
        // %0 256 B [3,3], %1 128 B [1,4], %2 192 B [0,0], %3 128 B [0,1]; lower bound 384 (step 3).
        let set = intervals([(256, 3, 3), (128, 1, 4), (192, 0, 0), (128, 0, 1)])
        #expect(BufferLiveness.lowerBound(set) == 384)
        // By size: %0 at 0; %2 at 0 (disjoint in time); %3 at 192 (above %2);
        // %1 at 320 (above %0 [0,256) at step 3 and %3 [192,320) at step 1).
        try check(GreedyBySize(), set, [0: 0, 2: 0, 3: 192, 1: 320], arena: 448)
        // By breadth: step 3 (384 B) places %0 at 0, %1 at 256; step 0 (320 B) places %2 at 0
        // and %3 at 384, since [192, 320) would cut into %1 at step 1.
        try check(GreedyByBreadth(), set, [0: 0, 1: 256, 2: 0, 3: 384], arena: 512)
    }

    @Test("greedy by breadth beats greedy by size here")
    func breadthWins() throws {
        // %0 256 B [2,2], %1 192 B [3,3], %2 192 B [0,4], %3 192 B [3,3]; lower bound 576 (step 3).
        let set = intervals([(256, 2, 2), (192, 3, 3), (192, 0, 4), (192, 3, 3)])
        #expect(BufferLiveness.lowerBound(set) == 576)
        // By size: %0 at 0; %2 at 256 (above %0); %1 at 0 (under %2); %3 at 448.
        try check(GreedyBySize(), set, [0: 0, 2: 256, 1: 0, 3: 448], arena: 640)
        // By breadth: step 3 places %2, %1, %3 at 0, 192, 384; step 2 fits %0 at 192.
        try check(GreedyByBreadth(), set, [2: 0, 1: 192, 3: 384, 0: 192], arena: 576)
    }

    @Test("the pass keeps the smaller arena and reports its strategy")
    func keepsSmallest() throws {
        // The breadth-wins shape as a graph is hard to force; instead compare the pass's choice
        // with each strategy run alone on the same program.
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w1 = g.parameter("w1", [8, 16], initializer: .uniform(low: -1, high: 1))
        let w2 = g.parameter("w2", [16, 8], initializer: .uniform(low: -1, high: 1))
        let h = x.matmul(w1)
        let y = h.matmul(w2) + x
        let z = y.matmul(w1)
        g.output("z", z)
        let graph = try g.build()
        let both = try planned(graph).memory!
        let size = try planned(graph, strategies: [GreedyBySize()]).memory!
        let breadth = try planned(graph, strategies: [GreedyByBreadth()]).memory!
        #expect(both.arenaBytes == min(size.arenaBytes, breadth.arenaBytes))
        #expect(both.strategy == (size.arenaBytes <= breadth.arenaBytes ? size.strategy : breadth.strategy))
    }

    @Test("the registry makes plan-memory")
    func registry() {
        #expect(PassRegistry.standardNames.contains("plan-memory"))
        #expect(PassRegistry.make("plan-memory", options: PipelineOptions())?.name == "plan-memory")
    }

    // MARK: Random graphs

    @Test("random graphs: no live overlap, bounds hold, planned runs match the interpreter",
          arguments: 0..<60)
    func randomGraphs(seed: UInt64) throws {
        let graph = RandomGraphs.make(seed: seed)
        let program = try planned(graph)
        let memory = program.memory!
        #expect(memory.arenaBytes >= memory.lowerBoundBytes, "seed \(seed)")
        #expect(memory.arenaBytes <= memory.naiveBytes, "seed \(seed)")

        let inputs = feeds(graph, seed: seed)
        let plain = try runOnce(Executable(graph: graph, store: ParameterStore(seed: seed), threads: 1, pipeline: nil), inputs)
        let store = ParameterStore(seed: seed)
        let executable = try Executable(program: program, store: store, threads: 1)
        #expect(executable.arenaBytes == memory.arenaBytes)
        var parameters: [String: HostTensor] = [:], state: [String: HostTensor] = [:]
        for id in graph.parameterIDs + graph.stateIDs {
            let name = graph.leafName(id)!
            let tensor = HostTensor(graph.nodes[id].type, store[name]!.values.map(Double.init))
            if case .parameter = graph.nodes[id].op { parameters[name] = tensor } else { state[name] = tensor }
        }
        let fast = try runOnce(executable, inputs)
        #expect(plain == fast, "seed \(seed): planned differs from unplanned")

        var hostInputs: [String: HostTensor] = [:]
        for id in graph.inputIDs {
            let name = graph.leafName(id)!
            hostInputs[name] = HostTensor(graph.nodes[id].type, inputs[name]!.map(Double.init))
        }
        let reference = try Interpreter(graph: graph).outputs(inputs: hostInputs, parameters: parameters, state: state)
        for (name, expected) in reference {
            let actual = try #require(fast[name], "seed \(seed): \(name) missing")
            #expect(actual.count == expected.scalars.count, "seed \(seed): \(name)")
            let bad = zip(actual, expected.scalars).enumerated().first { _, pair in
                Swift.abs(Double(pair.0) - pair.1) > 1e-3 * Swift.max(1, Swift.abs(pair.1))
            }
            #expect(bad == nil, "seed \(seed): \(name) differs from the interpreter at \(bad.map { "\($0.offset): \($0.element)" } ?? "")")
        }
    }

    @Test("random graphs exercise in-place reuse and update aliasing")
    func randomGraphsReuse() throws {
        var inPlace = 0, updates = 0
        for seed in UInt64(0)..<60 {
            let program = try planned(RandomGraphs.make(seed: seed))
            for (value, owner) in program.memory!.aliases where !program.graph.nodes[value].op.isView {
                if BufferLiveness.isOutsideArena(owner, in: program.graph) { updates += 1 } else { inPlace += 1 }
            }
        }
        #expect(inPlace > 20)
        #expect(updates > 10)
    }
}

/// Seeded random float32 DAGs: elementwise, matmul, reduce, reshape, broadcast and transpose
/// nodes over small odd shapes, with fan-out, several outputs, and parameter/state updates, some
/// of whose parameters are read again after the update is computed.
enum RandomGraphs {
    static func make(seed: UInt64) -> Graph {
        var rng = SeededGenerator(seed: seed &* 7919 &+ 17)
        let g = GraphBuilder()
        let extents = [1, 3, 4, 7]
        func randomShape() -> Shape {
            Int.random(in: 0..<3, using: &rng) == 0 ? Shape([extents.randomElement(using: &rng)!])
                : Shape([extents.randomElement(using: &rng)!, extents.randomElement(using: &rng)!])
        }
        var pool: [Tensor] = [g.input("x0", randomShape()), g.input("x1", randomShape())]
        let p0 = g.parameter("p0", randomShape(), initializer: .uniform(low: -1, high: 1))
        let p1 = g.parameter("p1", randomShape(), initializer: .uniform(low: -1, high: 1))
        let s0 = g.state("s0", randomShape(), initializer: .ones)
        pool += [p0, p1, s0, g.constant(0.5)]
        let unaries: [UnaryFunction] = [.neg, .tanh, .sigmoid, .relu, .abs, .square]
        let binaries: [BinaryFunction] = [.add, .sub, .mul, .maximum, .minimum]

        func pick() -> Tensor {
            // Prefer recent values so chains form, but keep fan-out from older ones.
            Int.random(in: 0..<3, using: &rng) > 0 ? pool.suffix(5).randomElement(using: &rng)! : pool.randomElement(using: &rng)!
        }
        func partner(of a: Tensor, into target: Shape? = nil) -> Tensor? {
            let fits = pool.filter {
                guard let shape = Shape.broadcast(a.shape, $0.shape) else { return false }
                return target == nil || shape == target
            }
            return fits.randomElement(using: &rng)
        }
        func update(_ target: Tensor) {
            let step = partner(of: target, into: target.shape).map { $0 * 0.1 } ?? target * 0.1
            let value = target - step
            g.update(target, to: value)
            pool.append(value)
        }

        let count = Int.random(in: 6...18, using: &rng)
        let updateAt = Int.random(in: 0..<count, using: &rng)
        for index in 0..<count {
            if index == updateAt { update(p0) }
            let a = pick()
            var result: Tensor
            switch Int.random(in: 0..<10, using: &rng) {
            case 0, 1:
                result = g.apply(.unary(unaries.randomElement(using: &rng)!), [a])
            case 2, 3:
                let b = partner(of: a)!
                result = Bool.random(using: &rng) ? g.apply(.binary(binaries.randomElement(using: &rng)!), [a, b])
                    : g.apply(.binary(binaries.randomElement(using: &rng)!), [b, a])
            case 4:
                let b = partner(of: a)!
                let condition = g.apply(.binary(.greater), [a, b])
                result = g.apply(.select, [condition, a, b])
            case 5:
                guard a.rank == 2 else { result = g.apply(.power(exponent: 2), [a]); break }
                let k = a.shape[1]
                if let b = pool.first(where: { $0.rank == 2 && $0.shape[0] == k }) {
                    result = g.apply(.matmul(transposeA: false, transposeB: false), [a, b])
                } else if let b = pool.first(where: { $0.rank == 2 && $0.shape[1] == k }) {
                    result = g.apply(.matmul(transposeA: false, transposeB: true), [a, b])
                } else {
                    result = g.apply(.matmul(transposeA: true, transposeB: false), [a, a])
                }
                result = tanh(result)
            case 6:
                guard a.rank > 0 else { result = g.apply(.unary(.sigmoid), [a]); break }
                var axes = (0..<a.rank).filter { _ in Bool.random(using: &rng) }
                if axes.isEmpty { axes = [a.rank - 1] }
                let f: ReduceFunction = [.sum, .mean, .max].randomElement(using: &rng)!
                result = g.apply(.reduce(f, axes: axes, keepDims: Bool.random(using: &rng)), [a])
            case 7:
                let n = a.shape.count
                result = a.reshaped(Shape([[n], [1, n], [n, 1]].randomElement(using: &rng)!))
            case 8:
                var dims = a.shape.dims.map { $0 == 1 ? extents.randomElement(using: &rng)! : $0 }
                if dims.count < 2 { dims.insert(extents.randomElement(using: &rng)!, at: 0) }
                result = a.broadcast(to: Shape(dims))
            default:
                result = a.rank == 2 ? a.transposed([1, 0]) : g.apply(.unary(.neg), [a])
            }
            pool.append(result)
        }
        if Bool.random(using: &rng) { update(p1) }
        let velocity = s0 * 0.5 + (partner(of: s0, into: s0.shape) ?? s0)
        g.update(s0, to: velocity)
        pool.append(velocity)

        // Outputs are computed values: the executable reads outputs after the update copies, so
        // an output that is (a view of) an updated parameter would show its new value.
        let computed = pool.filter { !g.graph.nodes[$0.id].op.isLeaf && !g.graph.nodes[$0.id].op.isView }
        let outputs = Int.random(in: 1...3, using: &rng)
        g.output("o0", computed[computed.count - 2])
        for index in 1..<outputs { g.output("o\(index)", computed.randomElement(using: &rng)!) }
        do { return try g.build() } catch { fatalError("seed \(seed): random graph is invalid: \(error)") }
    }
}

extension MemoryPlanningTests {
    /// The whole standard pipeline (simplification, fusion, scheduling, planning) on random DAGs:
    /// fused kernels share buffers in place, and the result still matches the interpreter.
    @Test("random graphs through the full pipeline: no live overlap, same results as the interpreter",
          arguments: 0..<60)
    func randomGraphsFullPipeline(seed: UInt64) throws {
        let graph = RandomGraphs.make(seed: seed)
        var program = Program(graph: graph)
        try standardPipeline().run(&program)
        let memory = try #require(program.memory)
        try BufferLiveness.checkNoOverlap(BufferLiveness.intervals(of: program), memory: memory)
        #expect(memory.arenaBytes >= memory.lowerBoundBytes, "seed \(seed)")

        let inputs = feeds(graph, seed: seed)
        let store = ParameterStore(seed: seed)
        let executable = try Executable(program: program, store: store, threads: 2)
        var parameters: [String: HostTensor] = [:], state: [String: HostTensor] = [:]
        for id in graph.parameterIDs + graph.stateIDs {
            let name = graph.leafName(id)!
            let tensor = HostTensor(graph.nodes[id].type, store[name]!.values.map(Double.init))
            if case .parameter = graph.nodes[id].op { parameters[name] = tensor } else { state[name] = tensor }
        }
        let fast = try runOnce(executable, inputs)
        var hostInputs: [String: HostTensor] = [:]
        for id in graph.inputIDs {
            hostInputs[graph.leafName(id)!] = HostTensor(graph.nodes[id].type, inputs[graph.leafName(id)!]!.map(Double.init))
        }
        let reference = try Interpreter(graph: graph).outputs(inputs: hostInputs, parameters: parameters, state: state)
        for (name, expected) in reference {
            let actual = try #require(fast[name], "seed \(seed): \(name) missing")
            let bad = zip(actual, expected.scalars).enumerated().first { _, pair in
                Swift.abs(Double(pair.0) - pair.1) > 1e-3 * Swift.max(1, Swift.abs(pair.1))
            }
            #expect(bad == nil, "seed \(seed): \(name) differs from the interpreter at \(bad.map { "\($0.offset): \($0.element)" } ?? "")")
        }
    }
}
