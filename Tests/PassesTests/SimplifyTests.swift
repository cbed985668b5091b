import Testing
import KilnGraph
import KilnPasses
import KilnRuntime

// Golden-text tests of the four simplification passes (fold-constants, simplify-algebra, cse,
// dce): each builds a tiny graph, checks its text form, runs one pass and checks the text
// after, with the CHECK-line matcher in FileCheck.swift. Then: every pass reports "no change"
// on a graph it cannot change, and the whole pipeline leaves random graphs' outputs unchanged
// on the reference interpreter.

/// Builds a graph with a fresh builder.
private func graph(_ body: (GraphBuilder) -> Void) throws -> Graph {
    let g = GraphBuilder()
    body(g)
    return try g.build()
}

/// Runs `pass` on `graph`; returns the result and whether the pass reported a change.
/// The result must verify, and "no change" must mean an identical graph.
private func run(_ pass: Pass, on graph: Graph) throws -> (graph: Graph, changed: Bool) {
    var program = Program(graph: graph)
    let changed = try pass.run(&program)
    try program.graph.verify()
    if !changed { #expect(program.graph == graph, "\(pass.name) reported no change but changed the graph") }
    return (program.graph, changed)
}

/// Fails the test with the matcher's message if `text` does not match `pattern`.
private func expectMatch(_ text: String, _ pattern: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
    if let failure = fileCheck(text, pattern) { Issue.record(Comment(rawValue: failure), sourceLocation: sourceLocation) }
}

/// The four simplification passes (the standard pipeline goes on to fusion), verifying between passes.
private func simplificationPipeline() -> PassManager {
    let options = PipelineOptions(evaluator: InterpreterConstantEvaluator())
    return PassManager(passes: PassRegistry.simplificationNames.map { PassRegistry.make($0, options: options)! })
}

private let folding = ConstantFolding(evaluator: InterpreterConstantEvaluator())
private let algebra = AlgebraicSimplification()
private let cse = CommonSubexpressions()
private let dce = DeadCode()

/// One rewrite: a graph before, the pass, and golden text before and after.
struct RewriteCase: Sendable, CustomStringConvertible {
    var description: String
    var build: @Sendable (GraphBuilder) -> Void
    var before: String
    var after: String
}

private let x23: @Sendable (GraphBuilder) -> Tensor = { $0.input("x", [2, 3]) }

@Suite("Algebraic simplification")
struct AlgebraicSimplificationTests {
    static let cases: [RewriteCase] = [
        RewriteCase(description: "x * 1 → x", build: { g in g.output("y", x23(g) * 1) },
                    before: "CHECK: %2 = mul(%0, %1)\nCHECK: output \"y\" = %2",
                    after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "1 * x → x", build: { g in g.output("y", 1 * x23(g)) },
                    before: "CHECK: %2 = mul(%1, %0)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "x + 0 → x", build: { g in g.output("y", x23(g) + 0) },
                    before: "CHECK: %2 = add(%0, %1)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "0 + x → x", build: { g in g.output("y", 0 + x23(g)) },
                    before: "CHECK: %2 = add(%1, %0)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "x - 0 → x", build: { g in g.output("y", x23(g) - 0) },
                    before: "CHECK: %2 = sub(%0, %1)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "x / 1 → x", build: { g in g.output("y", x23(g) / 1) },
                    before: "CHECK: %2 = div(%0, %1)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "x ** 1 → x", build: { g in g.output("y", pow(x23(g), 1)) },
                    before: "CHECK: %1 = power(%0) {exponent=1}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "neg(neg(x)) → x", build: { g in g.output("y", -(-x23(g))) },
                    before: "CHECK: %1 = neg(%0)\nCHECK: %2 = neg(%1)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "neg four times → x in one sweep", build: { g in g.output("y", -(-(-(-x23(g))))) },
                    before: "CHECK: %4 = neg(%3)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "x * splat-1 constant of shape [3] → x",
                    build: { g in g.output("y", x23(g) * g.constant(values: [1, 1, 1], shape: [3])) },
                    before: "CHECK: %1 = constant() {[1,1,1]} : f32[3]\nCHECK: %2 = mul(%0, %1)",
                    after: "CHECK: output \"y\" = %0"),
        // Permutations that do not commute, so composing in the wrong order shows.
        RewriteCase(description: "transpose∘transpose composes",
                    build: { g in g.output("y", g.input("x", [2, 3, 4]).transposed([1, 0, 2]).transposed([0, 2, 1])) },
                    before: "CHECK: %1 = transpose(%0) {perm=[1,0,2]} : f32[3, 2, 4]\nCHECK: %2 = transpose(%1) {perm=[0,2,1]} : f32[3, 4, 2]",
                    after: "CHECK: %1 = transpose(%0) {perm=[1,0,2]}\nCHECK: %2 = transpose(%0) {perm=[1,2,0]} : f32[3, 4, 2]\nCHECK: output \"y\" = %2"),
        RewriteCase(description: "transpose∘transpose to the identity → x",
                    build: { g in g.output("y", x23(g).T.T) },
                    before: "CHECK: %2 = transpose(%1) {perm=[1,0]}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "reshape∘reshape → one reshape",
                    build: { g in g.output("y", x23(g).reshaped([3, 2]).reshaped([6])) },
                    before: "CHECK: %1 = reshape(%0) {[3, 2]}\nCHECK: %2 = reshape(%1) {[6]}",
                    after: "CHECK: %2 = reshape(%0) {[6]} : f32[6]\nCHECK: output \"y\" = %2"),
        RewriteCase(description: "reshape∘reshape back to the source shape → x",
                    build: { g in g.output("y", x23(g).reshaped([6]).reshaped([2, 3])) },
                    before: "CHECK: %2 = reshape(%1) {[2, 3]}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "reshape to the same shape → x",
                    build: { g in g.output("y", g.apply(.reshape([2, 3]), [x23(g)])) },
                    before: "CHECK: %1 = reshape(%0) {[2, 3]}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "broadcast to the same shape → x",
                    build: { g in g.output("y", g.apply(.broadcast([2, 3]), [x23(g)])) },
                    before: "CHECK: %1 = broadcast(%0) {[2, 3]}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "cast to the same dtype → x",
                    build: { g in g.output("y", g.apply(.cast(.float32), [x23(g)])) },
                    before: "CHECK: %1 = cast(%0) {to=f32}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "reduction over no axes → x",
                    build: { g in g.output("y", g.apply(.reduce(.sum, axes: [], keepDims: false), [x23(g)])) },
                    before: "CHECK: %1 = reduce_sum(%0) {axes=[]}", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "select with a true constant condition → first branch",
                    build: { g in
                        let a = x23(g), b = g.input("b", [2, 3])
                        g.output("y", select(g.constant(1, shape: [2, 3]), a, b))
                    },
                    before: "CHECK: %3 = select(%2, %0, %1)", after: "CHECK: output \"y\" = %0"),
        RewriteCase(description: "select with a false constant condition → second branch",
                    build: { g in
                        let a = x23(g), b = g.input("b", [2, 3])
                        g.output("y", select(g.constant(0), a, b))
                    },
                    before: "CHECK: %3 = select(%2, %0, %1)", after: "CHECK: output \"y\" = %1"),
    ]

    @Test("each rewrite, golden text before and after", arguments: cases)
    func rewrite(_ rewrite: RewriteCase) throws {
        let before = try graph(rewrite.build)
        expectMatch(before.description, rewrite.before)
        let (after, changed) = try run(algebra, on: before)
        #expect(changed)
        expectMatch(after.description, rewrite.after)
    }

    static let unchanged: [RewriteCase] = [
        // inf * 0 and NaN * 0 are NaN, so x * 0 is not 0.
        RewriteCase(description: "x * 0 is not folded", build: { g in g.output("y", x23(g) * 0) },
                    before: "CHECK: mul", after: "CHECK: %2 = mul(%0, %1)\nCHECK: output \"y\" = %2"),
        RewriteCase(description: "x + 0 that broadcasts x to a bigger shape is kept",
                    build: { g in g.output("y", g.input("x", [3]) + g.constant(0, shape: [2, 3])) },
                    before: "CHECK: add", after: "CHECK: %2 = add(%0, %1) : f32[2, 3]\nCHECK: output \"y\" = %2"),
        RewriteCase(description: "select whose chosen branch is smaller than the result is kept",
                    build: { g in g.output("y", select(g.constant(1), g.input("a", [3]), g.input("b", [2, 3]))) },
                    before: "CHECK: select", after: "CHECK: %3 = select(%0, %1, %2) : f32[2, 3]"),
        RewriteCase(description: "x * 2, x - 1, 0 - x and x ** 2 are kept",
                    build: { g in
                        let x = x23(g)
                        g.output("a", x * 2); g.output("b", x - 1); g.output("c", 0 - x); g.output("d", pow(x, 2))
                    },
                    before: "CHECK: mul", after: "CHECK: mul\nCHECK: sub\nCHECK: sub\nCHECK: power"),
        RewriteCase(description: "a single transpose, reshape, cast and reduction are kept",
                    build: { g in
                        let x = x23(g)
                        g.output("a", x.T); g.output("b", x.reshaped([6])); g.output("c", x.cast(to: .float64))
                        g.output("d", x.sum(axes: [1]))
                    },
                    before: "CHECK: transpose", after: "CHECK: transpose\nCHECK: reshape\nCHECK: cast\nCHECK: reduce_sum"),
    ]

    @Test("what must not be rewritten is left alone and reported unchanged", arguments: unchanged)
    func leftAlone(_ rewrite: RewriteCase) throws {
        let before = try graph(rewrite.build)
        expectMatch(before.description, rewrite.before)
        let (after, changed) = try run(algebra, on: before)
        #expect(!changed)
        expectMatch(after.description, rewrite.after)
    }
}

@Suite("Constant folding")
struct ConstantFoldingTests {
    @Test("a constant subgraph folds to one constant, splat results to one value")
    func foldsCascade() throws {
        let before = try graph { g in
            let x = g.input("x", [2, 3])
            let two = g.constant(2, shape: [2, 3])
            g.output("y", x * exp(two * 0))   // exp(2·0) = 1 everywhere: a splat
        }
        expectMatch(before.description, """
            CHECK: %1 = constant() {2} : f32[2, 3]
            CHECK: %3 = mul(%1, %2)
            CHECK: %4 = exp(%3)
            CHECK: %5 = mul(%0, %4)
            """)
        let (after, changed) = try run(folding, on: before)
        #expect(changed)
        expectMatch(after.description, """
            CHECK: %3 = constant() {0} : f32[2, 3]
            CHECK: %4 = constant() {1} : f32[2, 3]
            CHECK: %5 = mul(%0, %4)
            CHECK-NOT: exp
            CHECK: output "y" = %5
            """)
    }

    @Test("a non-splat result keeps one value per element, rounded to float32")
    func perElementValues() throws {
        let before = try graph { g in
            g.output("y", g.constant(values: [1, 2, 3, 4], shape: [2, 2]).T + 0.1)
        }
        let (after, changed) = try run(folding, on: before)
        #expect(changed)
        expectMatch(after.description, """
            CHECK: %1 = constant() {[1,3,2,4]} : f32[2, 2]
            CHECK: %3 = constant() {[1.100000023841858,3.0999999046325684,2.0999999046325684,4.099999904632568]} : f32[2, 2]
            CHECK: output "y" = %3
            """)
    }

    @Test("random draws, inputs and parameters are not folded; nor results over 65,536 elements")
    func notFolded() throws {
        let before = try graph { g in
            g.output("r", g.randomUniform([3]) * 2)
            g.output("x", g.input("x", [3]) + 1)
            g.output("p", g.parameter("p", [3], initializer: .zeros) + 1)
            g.output("big", g.constant(1).broadcast(to: [257, 256]))
        }
        let (after, changed) = try run(folding, on: before)
        #expect(!changed)
        #expect(after == before)
    }

    @Test("without an evaluator the pass does nothing")
    func noEvaluator() throws {
        let before = try graph { g in g.output("y", g.constant(1) + g.constant(2)) }
        let (after, changed) = try run(ConstantFolding(evaluator: nil), on: before)
        #expect(!changed)
        #expect(after == before)
        #expect(try run(folding, on: before).changed)
    }

    @Test("an int32 division by zero is left for run time")
    func evaluatorDeclines() throws {
        let before = try graph { g in
            g.output("y", g.constant(1, dtype: .int32) / g.constant(0, dtype: .int32))
        }
        #expect(try run(folding, on: before).changed == false)
    }
}

@Suite("Common subexpressions")
struct CommonSubexpressionTests {
    @Test("equal nodes merge into the first, chains included")
    func merges() throws {
        let before = try graph { g in
            let x = g.input("x", [3]), y = g.input("y", [3])
            g.output("a", exp(x + y))
            g.output("b", exp(x + y))
        }
        expectMatch(before.description, """
            CHECK: %2 = add(%0, %1)
            CHECK: %3 = exp(%2)
            CHECK: %4 = add(%0, %1)
            CHECK: %5 = exp(%4)
            CHECK: output "b" = %5
            """)
        let (after, changed) = try run(cse, on: before)
        #expect(changed)
        expectMatch(after.description, """
            CHECK: %2 = add(%0, %1)
            CHECK: %3 = exp(%2)
            CHECK-NOT: exp
            CHECK: output "a" = %3
            CHECK: output "b" = %3
            """)
    }

    @Test("constants merge by value and type; 0 and -0 (both printed 0) do not")
    func constants() throws {
        let before = try graph { g in
            let x = g.input("x", [3])
            g.output("a", x * 2); g.output("b", x * 2)
            g.output("c", x / g.constant(0)); g.output("d", x / g.constant(-0.0))
            g.output("e", g.constant(2, dtype: .float64))
        }
        let (after, changed) = try run(cse, on: before)
        #expect(changed)
        expectMatch(after.description, """
            CHECK: %1 = constant() {2} : f32[]
            CHECK: %2 = mul(%0, %1)
            CHECK: %3 = constant() {0} : f32[]
            CHECK: %4 = div(%0, %3)
            CHECK: %5 = constant() {0} : f32[]
            CHECK: %6 = div(%0, %5)
            CHECK: %7 = constant() {2} : f64[]
            CHECK: output "b" = %2
            CHECK: output "c" = %4
            CHECK: output "d" = %6
            """)
    }

    @Test("random draws and bindings never merge", arguments: ["random", "inputs", "parameters", "state"])
    func neverMerged(kind: String) throws {
        let before = try graph { g in
            let (a, b): (Tensor, Tensor)
            switch kind {
            case "random": (a, b) = (g.randomNormal([3]), g.randomNormal([3]))
            case "inputs": (a, b) = (g.input("a", [3]), g.input("b", [3]))
            case "parameters": (a, b) = (g.parameter("a", [3], initializer: .zeros), g.parameter("b", [3], initializer: .zeros))
            default: (a, b) = (g.state("a", [3]), g.state("b", [3]))
            }
            g.output("a", relu(a)); g.output("b", relu(b))
        }
        let (after, changed) = try run(cse, on: before)
        #expect(!changed)
        #expect(after == before)
    }
}

@Suite("Dead code")
struct DeadCodeTests {
    @Test("nodes no output or update reads are removed; inputs, parameters and state stay")
    func removes() throws {
        let before = try graph { g in
            let x = g.input("x", [3]), unused = g.input("unused", [3])
            let p = g.parameter("p", [3], initializer: .zeros), s = g.state("s", [3])
            _ = exp(unused) + g.randomUniform([3])
            g.update(p, to: p - x)
            g.output("y", relu(x))
            _ = s
        }
        expectMatch(before.description, """
            CHECK: %4 = exp(%1)
            CHECK: %5 = random_uniform() {stream=0}
            CHECK: %6 = add(%4, %5)
            CHECK: %7 = sub(%2, %0)
            CHECK: %8 = relu(%0)
            CHECK: update %2 <- %7
            """)
        let (after, changed) = try run(dce, on: before)
        #expect(changed)
        expectMatch(after.description, """
            CHECK: %0 = input() {"x"}
            CHECK: %1 = input() {"unused"}
            CHECK: %2 = parameter() {"p" zeros}
            CHECK: %3 = state() {"s" zeros}
            CHECK-NOT: exp
            CHECK-NOT: random
            CHECK: %4 = sub(%2, %0)
            CHECK: %5 = relu(%0)
            CHECK: output "y" = %5
            CHECK: update %2 <- %4
            """)
    }
}

@Suite("Simplification pipeline")
struct SimplificationPipelineTests {
    static let passes: [String] = PassRegistry.simplificationNames

    @Test("every pass reports no change on a graph it cannot change", arguments: passes)
    func noChange(name: String) throws {
        let pass = try #require(PassRegistry.make(name, options: PipelineOptions(evaluator: InterpreterConstantEvaluator())))
        let before = try graph { g in
            let x = g.input("x", [2, 3]), w = g.parameter("w", [3, 4], initializer: .uniform(low: -1, high: 1))
            let y = relu(x.matmul(w)) * 2
            g.output("y", y)
            g.update(w, to: w - x.T.matmul(y))
        }
        let (after, changed) = try run(pass, on: before)
        #expect(!changed)
        #expect(after == before)
    }

    @Test("the registry makes every standard simplification pass by its name, in order")
    func registry() {
        #expect(Array(PassRegistry.standardNames.prefix(4)) == ["fold-constants", "simplify-algebra", "cse", "dce"])
        let names = PassRegistry.standardPipeline().passes.map(\.name)
        #expect(Array(names.prefix(4)) == ["fold-constants", "simplify-algebra", "cse", "dce"])
        #expect(PassRegistry.make("no-such-pass", options: PipelineOptions()) == nil)
    }

    @Test("rewritten and kept nodes keep their source locations")
    func locations() throws {
        let before = try graph { g in
            // One op per line, so every node has its own location.
            let inner = g.input("x", [2, 3]).reshaped([3, 2])
            let outer = inner.reshaped([6])
            g.output("y", exp(outer))
        }
        #expect(before[1].location != before[2].location)
        var program = Program(graph: before)
        try simplificationPipeline().run(&program)
        let after = program.graph
        expectMatch(after.description, "CHECK: %1 = reshape(%0) {[6]}\nCHECK: %2 = exp(%1)")
        #expect(after[1].location != nil && after[1].location == before[2].location)  // the outer reshape's
        #expect(after[2].location != nil && after[2].location == before[3].location)
    }

    @Test("a folded NaN constant does not make later passes misreport a change")
    func nanConstants() throws {
        let before = try graph { g in g.output("y", g.input("x", [2]) + log(g.constant(-1))) }
        var program = Program(graph: before)
        try simplificationPipeline().run(&program)
        #expect(program.graph.description.contains("nan"))
        for name in PassRegistry.simplificationNames {
            let pass = PassRegistry.make(name, options: PipelineOptions(evaluator: InterpreterConstantEvaluator()))!
            let graphBefore = program.graph
            #expect(try pass.run(&program) == false, "\(name)")
            #expect(program.graph.nodes.count == graphBefore.nodes.count)
        }
    }

    @Test("optimised equals unoptimised on the interpreter for random graphs", arguments: 0..<60)
    func randomGraphs(seed: UInt64) throws {
        var maker = RandomGraphMaker(seed: seed)
        let original = try maker.make()
        var program = Program(graph: original)
        try simplificationPipeline().run(&program)
        let optimised = program.graph
        #expect(optimised.nodes.count <= original.nodes.count, "seed \(seed)")

        var feeds: [String: HostTensor] = [:]
        var rng = SeededGenerator(seed: seed ^ 0xFEED)
        for id in original.inputIDs {
            let type = original[id].type
            feeds[original.leafName(id)!] = HostTensor(type, (0..<type.shape.count).map { _ in rng.uniform(-2, 2) })
        }
        let expected = try Interpreter(graph: original).outputs(inputs: feeds, seed: 5, step: 3)
        let actual = try Interpreter(graph: optimised).outputs(inputs: feeds, seed: 5, step: 3)
        #expect(Set(expected.keys) == Set(actual.keys), "seed \(seed)")
        for (name, value) in expected {
            guard let other = actual[name] else { continue }
            // The rewrites are exact (folding runs the interpreter itself), so values agree bit for
            // bit up to the sign of zero and NaN payloads.
            let same = value.type == other.type && zip(value.scalars, other.scalars).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
            #expect(same, "seed \(seed): \(name) differs\noriginal:\n\(original)\noptimised:\n\(optimised)")
        }
    }
}

/// Seeded random graphs over elementwise, data-movement and reduction ops, biased towards the
/// patterns the passes rewrite: splat 0/1 constants, repeated nodes, chains of neg/transpose/reshape.
struct RandomGraphMaker {
    var rng: SeededGenerator
    init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    private mutating func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &rng)] }
    private mutating func chance(_ p: Double) -> Bool { rng.uniform(0, 1) < p }

    mutating func make() throws -> Graph {
        let g = GraphBuilder()
        var pool: [Tensor] = [g.input("x0", [2, 3]), g.input("x1", [3]), g.input("x2", [2, 3]), g.input("x3", .scalar),
                              g.input("x4", [2, 1, 3])]
        var splats: [Tensor] = []
        for value in [0.0, 1, -1, 2] {
            splats.append(g.constant(value, shape: pick([.scalar, [3], [2, 3]])))
        }
        pool += splats
        pool.append(g.constant(values: (0..<6).map { _ in (rng.uniform(-2, 2) * 4).rounded() / 4 }, shape: [2, 3]))
        pool.append(g.randomUniform([2, 3]))
        let state = g.state("s", [2, 3])
        pool.append(state)
        let leafCount = pool.count
        var last: (Op, [Tensor])?

        for _ in 0..<40 {
            // Repeat the previous node now and then so CSE has work.
            if let (op, inputs) = last, chance(0.15) { pool.append(g.apply(op, inputs)); continue }
            let a = pick(pool), b = pick(pool), c = pick(pool)
            let op: Op, inputs: [Tensor]
            switch Int.random(in: 0..<10, using: &rng) {
            case 0: op = .unary(pick([.neg, .neg, .exp, .tanh, .relu, .abs, .square, .sigmoid, .log, .sqrt])); inputs = [a]
            case 1, 2: op = .binary(pick([.add, .sub, .mul, .div, .maximum, .minimum, .less])); inputs = [a, b]
            case 3: op = .power(exponent: pick([1, 1, 2])); inputs = [a]
            case 4:
                op = .transpose(permutation: Array(0..<a.rank).shuffled(using: &rng)); inputs = [a]
            case 5:
                let dims = a.shape.dims
                op = .reshape(Shape(pick([[dims.reduce(1, *)], [1] + dims, dims, dims.reversed(), [dims.reduce(1, *), 1]])))
                inputs = [a]
            case 6: op = .broadcast(pick([a.shape, Shape([2] + a.shape.dims)])); inputs = [a]
            case 7: op = .cast(pick([.float32, .float32, .float64])); inputs = [a]
            case 8:
                let axes = (0..<a.rank).filter { _ in chance(0.4) }
                op = .reduce(pick([.sum, .mean, .max]), axes: axes, keepDims: chance(0.5)); inputs = [a]
            default: op = .select; inputs = [chance(0.5) ? pick(splats) : c, a, b]
            }
            guard a.rank <= 4, case .success = op.resultType(inputs: inputs.map(\.type)) else { continue }
            pool.append(g.apply(op, inputs))
            last = (op, inputs)
        }
        let computed = pool.suffix(from: leafCount)
        // Many outputs, so most rewritten nodes are read rather than dead.
        for (i, value) in computed.enumerated() where i == computed.count - 1 || chance(0.4) { g.output("v\(i)", value) }
        if let next = computed.last(where: { $0.type == state.type }) { g.update(state, to: next) }
        return try g.build()
    }
}
