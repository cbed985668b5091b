import Testing
@testable import KilnGraph

/// A hand-made broken graph and the exact message the verifier must give.
struct BrokenGraph: Sendable, CustomTestStringConvertible {
    var name: String
    var graph: Graph
    var message: String
    var testDescription: String { name }
}

private func f32(_ dims: Int...) -> TensorType { TensorType(Shape(dims), .float32) }

/// `%0 = input "x" f32[2, 3]`, `%1 = parameter "w" f32[3, 4]`, then `nodes`, outputs and updates as given.
private func graph(_ nodes: [Node], outputs: [NamedValue] = [], updates: [Update] = []) -> Graph {
    var g = Graph()
    g.nodes = [Node(op: .input(name: "x"), inputs: [], type: f32(2, 3)),
               Node(op: .parameter(name: "w", initializer: .zeros), inputs: [], type: f32(3, 4))] + nodes
    g.outputs = outputs
    g.updates = updates
    return g
}

private let matmul = Op.matmul(transposeA: false, transposeB: false)

let brokenGraphs: [BrokenGraph] = [
    BrokenGraph(name: "forward reference",
                graph: graph([Node(op: .unary(.relu), inputs: [3], type: f32(2, 4)), Node(op: matmul, inputs: [0, 1], type: f32(2, 4))]),
                message: "%2 relu reads %3, which is not an earlier node"),
    BrokenGraph(name: "self reference",
                graph: graph([Node(op: .unary(.relu), inputs: [2], type: f32(2, 4))]),
                message: "%2 relu reads %2, which is not an earlier node"),
    BrokenGraph(name: "negative id",
                graph: graph([Node(op: .unary(.exp), inputs: [-1], type: f32(2, 3))]),
                message: "%2 exp reads %-1, which is not an earlier node"),
    BrokenGraph(name: "wrong result type",
                graph: graph([Node(op: matmul, inputs: [0, 1], type: f32(2, 3))]),
                message: "%2 matmul has type f32[2, 3], its rule gives f32[2, 4]"),
    BrokenGraph(name: "wrong result dtype",
                graph: graph([Node(op: .unary(.tanh), inputs: [0], type: TensorType([2, 3], .float64))]),
                message: "%2 tanh has type f64[2, 3], its rule gives f32[2, 3]"),
    BrokenGraph(name: "operands the rule rejects",
                graph: graph([Node(op: matmul, inputs: [1, 1], type: f32(3, 4))]),
                message: "%2 matmul: inner dimensions differ: [3, 4] · [3, 4] (4 vs 3)"),
    BrokenGraph(name: "wrong number of operands",
                graph: graph([Node(op: .binary(.add), inputs: [0], type: f32(2, 3))]),
                message: "%2 add: expects 2 inputs, found 1"),
    BrokenGraph(name: "leaf with inputs",
                graph: graph([Node(op: .constant(values: [1]), inputs: [0], type: f32())]),
                message: "leaf %2 constant has inputs"),
    BrokenGraph(name: "constant with the wrong number of values",
                graph: graph([Node(op: .constant(values: [1, 2, 3]), inputs: [], type: f32(2, 2))]),
                message: "constant %2 has 3 values for shape [2, 2]"),
    BrokenGraph(name: "negative extent in a leaf",
                graph: graph([Node(op: .constant(values: [0]), inputs: [], type: f32(2, -3))]),
                message: "%2 constant has negative extent in [2, -3]"),
    BrokenGraph(name: "duplicate parameter names",
                graph: graph([Node(op: .parameter(name: "w", initializer: .ones), inputs: [], type: f32(4))]),
                message: "%2 and %1 are both parameter \"w\""),
    BrokenGraph(name: "duplicate input names",
                graph: graph([Node(op: .input(name: "x"), inputs: [], type: f32(2, 3))]),
                message: "%2 and %0 are both input \"x\""),
    BrokenGraph(name: "duplicate output names",
                graph: graph([], outputs: [NamedValue(name: "y", value: 0), NamedValue(name: "y", value: 1)]),
                message: "output \"y\" is defined twice"),
    BrokenGraph(name: "output of a missing node",
                graph: graph([], outputs: [NamedValue(name: "y", value: 2)]),
                message: "output \"y\" refers to missing %2"),
    BrokenGraph(name: "update of an input",
                graph: graph([Node(op: .unary(.neg), inputs: [0], type: f32(2, 3))], updates: [Update(target: 0, value: 2)]),
                message: "update target %0 is a input, not a parameter or state"),
    BrokenGraph(name: "update of a computed value",
                graph: graph([Node(op: .unary(.neg), inputs: [1], type: f32(3, 4)), Node(op: .unary(.neg), inputs: [2], type: f32(3, 4))],
                             updates: [Update(target: 2, value: 3)]),
                message: "update target %2 is a neg, not a parameter or state"),
    BrokenGraph(name: "update with a value of another type",
                graph: graph([Node(op: .unary(.neg), inputs: [0], type: f32(2, 3))], updates: [Update(target: 1, value: 2)]),
                message: "update %1 <- %2: types f32[3, 4] and f32[2, 3] differ"),
    BrokenGraph(name: "update from a missing node",
                graph: graph([], updates: [Update(target: 1, value: 7)]),
                message: "update %1 <- %7 refers to a missing node"),
    BrokenGraph(name: "update of a missing target",
                graph: graph([], updates: [Update(target: -1, value: 1)]),
                message: "update %-1 <- %1 refers to a missing node"),
    BrokenGraph(name: "two updates of one parameter",
                graph: graph([Node(op: .unary(.neg), inputs: [1], type: f32(3, 4))],
                             updates: [Update(target: 1, value: 2), Update(target: 1, value: 2)]),
                message: "%1 is updated twice"),
]

@Suite("Verifier")
struct VerifierTests {
    @Test("a broken graph is rejected with a message naming the broken invariant", arguments: brokenGraphs)
    func rejects(_ broken: BrokenGraph) {
        let error = #expect(throws: KilnError.self) { try broken.graph.verify() }
        #expect(error == .invalidGraph(broken.message))
        #expect(error?.description == "invalid graph: \(broken.message)")
    }

    @Test("a well-formed graph with state, outputs and updates passes")
    func accepts() throws {
        var g = graph([
            Node(op: matmul, inputs: [0, 1], type: f32(2, 4)),
            Node(op: .state(name: "w", initializer: .zeros), inputs: [], type: f32(3, 4)),
            Node(op: .input(name: "w"), inputs: [], type: f32(1)),
            Node(op: .constant(values: [0.5]), inputs: [], type: f32()),
            Node(op: .binary(.mul), inputs: [1, 5], type: f32(3, 4)),
            Node(op: .constant(values: [1, 2, 3, 4]), inputs: [], type: f32(2, 2)),
        ])
        g.outputs = [NamedValue(name: "y", value: 2), NamedValue(name: "w", value: 1)]
        g.updates = [Update(target: 1, value: 6), Update(target: 3, value: 1)]
        try g.verify()
        #expect(g.parameterIDs == [1] && g.stateIDs == [3] && g.inputIDs == [0, 4])
    }

    @Test("build() runs the verifier on what the builder made")
    func builderOutputVerifies() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 3])
        let w = g.parameter("w", [3, 2], initializer: .normal(mean: 0, std: 1))
        let y = softmax(x.matmul(w))
        g.output("y", y)
        g.update(w, to: w * 0.5)
        let built = try g.build()
        try built.verify()
        #expect(built.nodes.count == 6)
    }

    @Test("the verifier reports the first broken node, in graph order")
    func firstBroken() {
        let g = graph([Node(op: matmul, inputs: [0, 1], type: f32(9)), Node(op: .unary(.relu), inputs: [5], type: f32(2, 4))])
        let error = #expect(throws: KilnError.self) { try g.verify() }
        #expect(error == .invalidGraph("%2 matmul has type f32[9], its rule gives f32[2, 4]"))
    }
}
