import Testing
@testable import KilnGraph

/// One application of a type rule and the type it must give.
struct RuleCase: Sendable, CustomTestStringConvertible {
    var op: Op
    var inputs: [TensorType]
    var expected: TensorType
    var testDescription: String { "\(op.name) \(op.attributeText) \(inputs.map(\.description).joined(separator: ", ")) → \(expected)" }
}

/// One application of a type rule that must fail, and a fragment of the reason.
struct RuleFailureCase: Sendable, CustomTestStringConvertible {
    var op: Op
    var inputs: [TensorType]
    var reason: String
    var testDescription: String { "\(op.name) \(op.attributeText) \(inputs.map(\.description).joined(separator: ", ")) ✗" }
}

private func f32(_ dims: Int...) -> TensorType { TensorType(Shape(dims), .float32) }
private func i32(_ dims: Int...) -> TensorType { TensorType(Shape(dims), .int32) }

/// At least one case per op family and per attribute that changes the result.
let ruleCases: [RuleCase] = {
    var cases: [RuleCase] = []
    for f in UnaryFunction.allCases { cases.append(RuleCase(op: .unary(f), inputs: [f32(2, 3)], expected: f32(2, 3))) }
    cases.append(RuleCase(op: .unary(.neg), inputs: [i32(4)], expected: i32(4)))
    for f in BinaryFunction.allCases {
        cases.append(RuleCase(op: .binary(f), inputs: [f32(2, 1, 3), f32(4, 1)], expected: f32(2, 4, 3)))
    }
    cases.append(RuleCase(op: .binary(.add), inputs: [i32(3), i32()], expected: i32(3)))
    cases += [
        RuleCase(op: .power(exponent: 2.5), inputs: [f32(5)], expected: f32(5)),
        RuleCase(op: .select, inputs: [f32(2, 1), f32(1, 3), f32(3)], expected: f32(2, 3)),
        RuleCase(op: .adamUpdate(.firstMoment), inputs: [f32(2, 3), f32(2, 3), f32()], expected: f32(2, 3)),
        RuleCase(op: .adamUpdate(.secondMoment), inputs: [f32(2, 3), f32(2, 3), f32(), f32()], expected: f32(2, 3)),
        RuleCase(op: .adamUpdate(.parameter), inputs: [f32(2, 3), f32(2, 3), f32(2, 3), f32(), f32(), f32(1, 3)], expected: f32(2, 3)),
        RuleCase(op: .cast(.int32), inputs: [f32(2, 3)], expected: i32(2, 3)),
        RuleCase(op: .reduce(.sum, axes: [1], keepDims: false), inputs: [f32(2, 3, 4)], expected: f32(2, 4)),
        RuleCase(op: .reduce(.mean, axes: [0, 2], keepDims: true), inputs: [f32(2, 3, 4)], expected: f32(1, 3, 1)),
        RuleCase(op: .reduce(.max, axes: [0, 1, 2], keepDims: false), inputs: [i32(2, 3, 4)], expected: i32()),
        RuleCase(op: .matmul(transposeA: false, transposeB: false), inputs: [f32(2, 3), f32(3, 4)], expected: f32(2, 4)),
        RuleCase(op: .matmul(transposeA: true, transposeB: false), inputs: [f32(3, 2), f32(3, 4)], expected: f32(2, 4)),
        RuleCase(op: .matmul(transposeA: false, transposeB: true), inputs: [f32(2, 3), f32(4, 3)], expected: f32(2, 4)),
        RuleCase(op: .matmul(transposeA: true, transposeB: true), inputs: [f32(3, 2), f32(4, 3)], expected: f32(2, 4)),
        RuleCase(op: .reshape([6, 4]), inputs: [f32(2, 3, 4)], expected: f32(6, 4)),
        RuleCase(op: .reshape(.scalar), inputs: [i32(1, 1)], expected: i32()),
        RuleCase(op: .transpose(permutation: [2, 0, 1]), inputs: [f32(2, 3, 4)], expected: f32(4, 2, 3)),
        RuleCase(op: .broadcast([2, 3]), inputs: [f32(3)], expected: f32(2, 3)),
        RuleCase(op: .broadcast([2, 5]), inputs: [f32(2, 1)], expected: f32(2, 5)),
        RuleCase(op: .slice(start: [0, 1], size: [2, 2]), inputs: [f32(2, 3)], expected: f32(2, 2)),
        RuleCase(op: .pad(low: [1, 0], high: [2, 3]), inputs: [f32(2, 3)], expected: f32(5, 6)),
        RuleCase(op: .concat(axis: 1), inputs: [f32(2, 3), f32(2, 1), f32(2, 2)], expected: f32(2, 6)),
        RuleCase(op: .concat(axis: 0), inputs: [i32(2)], expected: i32(2)),
        RuleCase(op: .conv2d(Conv2DAttributes(stride: 1, padding: 1)), inputs: [f32(2, 3, 8, 8), f32(4, 3, 3, 3)],
                 expected: f32(2, 4, 8, 8)),
        RuleCase(op: .conv2d(Conv2DAttributes(stride: 2)), inputs: [f32(1, 1, 7, 7), f32(2, 1, 3, 3)], expected: f32(1, 2, 3, 3)),
        RuleCase(op: .conv2d(Conv2DAttributes(strideH: 2, strideW: 1, padH: 0, padW: 1)),
                 inputs: [f32(1, 1, 7, 5), f32(1, 1, 3, 3)], expected: f32(1, 1, 3, 5)),
        RuleCase(op: .conv2dBackwardData(Conv2DAttributes(stride: 1, padding: 1), inputShape: [2, 3, 8, 8]),
                 inputs: [f32(2, 4, 8, 8), f32(4, 3, 3, 3)], expected: f32(2, 3, 8, 8)),
        RuleCase(op: .conv2dBackwardFilter(Conv2DAttributes(stride: 1, padding: 1), filterShape: [4, 3, 3, 3]),
                 inputs: [f32(2, 3, 8, 8), f32(2, 4, 8, 8)], expected: f32(4, 3, 3, 3)),
        RuleCase(op: .maxPool2d(PoolAttributes(kernel: 2)), inputs: [f32(2, 3, 8, 8)], expected: f32(2, 3, 4, 4)),
        RuleCase(op: .maxPool2d(PoolAttributes(kernel: 3, stride: 2)), inputs: [f32(1, 1, 7, 7)], expected: f32(1, 1, 3, 3)),
        RuleCase(op: .maxPool2dBackward(PoolAttributes(kernel: 2)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 4, 4)],
                 expected: f32(2, 3, 8, 8)),
        RuleCase(op: .maxPool2dGather(PoolAttributes(kernel: 2)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 8, 8)],
                 expected: f32(2, 3, 4, 4)),
        RuleCase(op: .avgPool2d(PoolAttributes(kernelH: 2, kernelW: 3, strideH: 2, strideW: 1)), inputs: [f32(1, 2, 6, 6)],
                 expected: f32(1, 2, 3, 4)),
        RuleCase(op: .avgPool2dBackward(PoolAttributes(kernel: 2), inputShape: [2, 3, 8, 8]), inputs: [f32(2, 3, 4, 4)],
                 expected: f32(2, 3, 8, 8)),
        RuleCase(op: .softmax(axis: 1), inputs: [f32(4, 10)], expected: f32(4, 10)),
        RuleCase(op: .logSoftmax(axis: 0), inputs: [TensorType([4, 10], .float64)], expected: TensorType([4, 10], .float64)),
        RuleCase(op: .softmaxCrossEntropy, inputs: [f32(4, 10), i32(4)], expected: f32(4)),
        RuleCase(op: .oneHot(depth: 10, dtype: .float32), inputs: [i32(4)], expected: f32(4, 10)),
    ]
    return cases
}()

let ruleFailureCases: [RuleFailureCase] = [
    RuleFailureCase(op: .unary(.relu), inputs: [i32(3)], reason: "input must be floating point, found i32"),
    RuleFailureCase(op: .unary(.exp), inputs: [f32(3), f32(3)], reason: "expects 1 input"),
    RuleFailureCase(op: .binary(.add), inputs: [f32(2, 3), f32(4)], reason: "shapes [2, 3] and [4] do not broadcast"),
    RuleFailureCase(op: .adamUpdate(.firstMoment), inputs: [f32(2, 3), f32(2, 3)], reason: "expects 3 inputs"),
    RuleFailureCase(op: .adamUpdate(.secondMoment), inputs: [f32(2, 3), f32(3, 2), f32(), f32()], reason: "do not broadcast"),
    RuleFailureCase(op: .adamUpdate(.firstMoment), inputs: [i32(2), i32(2), i32()], reason: "input must be floating point"),
    RuleFailureCase(op: .binary(.mul), inputs: [f32(3), i32(3)], reason: "dtypes differ: f32[3] and i32[3]"),
    RuleFailureCase(op: .power(exponent: 2), inputs: [i32(3)], reason: "floating point"),
    RuleFailureCase(op: .select, inputs: [f32(2), f32(3), f32(3)], reason: "[2], [3], [3] do not broadcast"),
    RuleFailureCase(op: .reduce(.sum, axes: [2], keepDims: false), inputs: [f32(2, 3)], reason: "axes [2] are invalid"),
    RuleFailureCase(op: .reduce(.sum, axes: [0, 0], keepDims: false), inputs: [f32(2, 3)], reason: "axes [0, 0] are invalid"),
    RuleFailureCase(op: .reduce(.mean, axes: [0], keepDims: false), inputs: [i32(2)], reason: "floating point"),
    RuleFailureCase(op: .matmul(transposeA: false, transposeB: false), inputs: [f32(2, 3), f32(4, 5)],
                    reason: "inner dimensions differ: [2, 3] · [4, 5] (3 vs 4)"),
    RuleFailureCase(op: .matmul(transposeA: false, transposeB: false), inputs: [f32(2, 3, 4), f32(4, 5)],
                    reason: "expects rank-2 operands, found [2, 3, 4] and [4, 5]"),
    RuleFailureCase(op: .reshape([4]), inputs: [f32(2, 3)], reason: "cannot reshape [2, 3] (6 elements) to [4] (4 elements)"),
    RuleFailureCase(op: .reshape([-2, -3]), inputs: [f32(2, 3)], reason: "cannot reshape"),
    RuleFailureCase(op: .transpose(permutation: [0, 0]), inputs: [f32(2, 3)], reason: "permutation [0, 0] is invalid"),
    RuleFailureCase(op: .broadcast([2, 4]), inputs: [f32(3)], reason: "[3] does not broadcast to [2, 4]"),
    RuleFailureCase(op: .broadcast([-3]), inputs: [f32(1)], reason: "[1] does not broadcast to [-3]"),
    RuleFailureCase(op: .slice(start: [1], size: [3]), inputs: [f32(3)], reason: "out of bounds for [3]"),
    RuleFailureCase(op: .pad(low: [-1], high: [0]), inputs: [f32(3)], reason: "padding low [-1] high [0] is invalid"),
    RuleFailureCase(op: .concat(axis: 1), inputs: [f32(2, 3), f32(3, 3)], reason: "differ outside axis 1"),
    RuleFailureCase(op: .concat(axis: 0), inputs: [f32(2, 3), f32(3)], reason: "ranks differ"),
    RuleFailureCase(op: .concat(axis: 2), inputs: [f32(2, 3)], reason: "axis 2 is invalid"),
    RuleFailureCase(op: .concat(axis: 0), inputs: [], reason: "expects at least one input"),
    RuleFailureCase(op: .conv2d(Conv2DAttributes()), inputs: [f32(2, 3, 8, 8), f32(4, 1, 3, 3)],
                    reason: "input [2, 3, 8, 8] has 3 channels, weight [4, 1, 3, 3] expects 1"),
    RuleFailureCase(op: .conv2d(Conv2DAttributes()), inputs: [f32(3, 8, 8), f32(4, 3, 3, 3)], reason: "found [3, 8, 8]"),
    RuleFailureCase(op: .conv2d(Conv2DAttributes()), inputs: [f32(1, 1, 2, 2), f32(1, 1, 3, 3)], reason: "does not fit"),
    // A kernel one row too tall must not slip through truncating division: (2 - 3) / 2 + 1 == 1.
    RuleFailureCase(op: .conv2d(Conv2DAttributes(stride: 2)), inputs: [f32(1, 1, 2, 8), f32(1, 1, 3, 3)], reason: "does not fit"),
    RuleFailureCase(op: .conv2d(Conv2DAttributes(stride: 0)), inputs: [f32(1, 1, 8, 8), f32(1, 1, 3, 3)], reason: "does not fit"),
    RuleFailureCase(op: .conv2dBackwardData(Conv2DAttributes(), inputShape: [2, 3, 8, 8]), inputs: [f32(2, 4, 8, 8), f32(4, 3, 3, 3)],
                    reason: "gradient [2, 4, 8, 8] does not match output [2, 4, 6, 6]"),
    RuleFailureCase(op: .conv2dBackwardData(Conv2DAttributes(stride: 0), inputShape: [2, 3, 8, 8]),
                    inputs: [f32(2, 4, 8, 8), f32(4, 3, 3, 3)], reason: "does not fit"),
    RuleFailureCase(op: .conv2dBackwardFilter(Conv2DAttributes(), filterShape: [4, 2, 3, 3]), inputs: [f32(2, 3, 8, 8), f32(2, 4, 6, 6)],
                    reason: "input [2, 3, 8, 8] does not match filter shape [4, 2, 3, 3]"),
    RuleFailureCase(op: .conv2dBackwardFilter(Conv2DAttributes(stride: 0), filterShape: [4, 3, 3, 3]),
                    inputs: [f32(2, 3, 8, 8), f32(2, 4, 6, 6)], reason: "does not fit"),
    RuleFailureCase(op: .maxPool2d(PoolAttributes(kernel: 2)), inputs: [f32(3, 8, 8)], reason: "expects [N, C, H, W], found [3, 8, 8]"),
    RuleFailureCase(op: .maxPool2d(PoolAttributes(kernel: 3, stride: 2)), inputs: [f32(1, 1, 2, 8)], reason: "does not fit"),
    RuleFailureCase(op: .avgPool2d(PoolAttributes(kernel: 2, stride: 0)), inputs: [f32(1, 1, 8, 8)], reason: "does not fit"),
    RuleFailureCase(op: .maxPool2dBackward(PoolAttributes(kernel: 2)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 8, 8)],
                    reason: "gradient [2, 3, 8, 8] does not match pooled shape of [2, 3, 8, 8]"),
    RuleFailureCase(op: .maxPool2dBackward(PoolAttributes(kernel: 2, stride: 0)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 4, 4)],
                    reason: "does not fit"),
    RuleFailureCase(op: .maxPool2dGather(PoolAttributes(kernel: 2)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 4, 4)],
                    reason: "found [2, 3, 8, 8] and [2, 3, 4, 4]"),
    RuleFailureCase(op: .maxPool2dGather(PoolAttributes(kernel: 9)), inputs: [f32(2, 3, 8, 8), f32(2, 3, 8, 8)], reason: "does not fit"),
    RuleFailureCase(op: .avgPool2dBackward(PoolAttributes(kernel: 2), inputShape: [2, 3, 8, 8]), inputs: [f32(2, 3, 8, 8)],
                    reason: "gradient [2, 3, 8, 8] does not match pooled shape of [2, 3, 8, 8]"),
    RuleFailureCase(op: .avgPool2dBackward(PoolAttributes(kernel: 0), inputShape: [2, 3, 8, 8]), inputs: [f32(2, 3, 8, 8)],
                    reason: "does not fit"),
    RuleFailureCase(op: .softmax(axis: 2), inputs: [f32(4, 10)], reason: "axis 2 is invalid for [4, 10]"),
    RuleFailureCase(op: .logSoftmax(axis: 0), inputs: [i32(4)], reason: "floating point"),
    RuleFailureCase(op: .softmaxCrossEntropy, inputs: [f32(4, 10), f32(4)], reason: "labels must be i32, found f32"),
    RuleFailureCase(op: .softmaxCrossEntropy, inputs: [f32(4, 10), i32(5)], reason: "found [4, 10] and [5]"),
    RuleFailureCase(op: .oneHot(depth: 10, dtype: .float32), inputs: [f32(4)], reason: "labels must be i32"),
    RuleFailureCase(op: .oneHot(depth: 0, dtype: .float32), inputs: [i32(4)], reason: "depth must be positive"),
    RuleFailureCase(op: .input(name: "x"), inputs: [], reason: "leaf ops carry their own type"),
]

/// A two-layer perceptron with a loss, an output and an SGD update of one weight.
private func buildMLP(_ g: GraphBuilder) {
    let x = g.input("x", [8, 4])
    let labels = g.input("labels", [8], dtype: .int32)
    let w1 = g.parameter("fc1.w", [4, 16], initializer: .normal(mean: 0, std: 0.5))
    let b1 = g.parameter("fc1.b", [16], initializer: .zeros)
    let w2 = g.parameter("fc2.w", [16, 3], initializer: .uniform(low: -0.25, high: 0.25))
    let h = relu(x.matmul(w1) + b1)
    let logits = h.matmul(w2)
    let loss = softmaxCrossEntropy(logits, labels: labels).mean()
    g.output("loss", loss)
    g.update(w2, to: w2 - w2 * 0.125)
}

@Suite("Graph builder and shape inference")
struct GraphBuilderTests {
    @Test("each op's type rule gives the expected result type", arguments: ruleCases)
    func rule(_ c: RuleCase) throws {
        #expect(try c.op.resultType(inputs: c.inputs).get() == c.expected)
    }

    @Test("each op's type rule rejects bad inputs with a reason that names them", arguments: ruleFailureCases)
    func ruleFailure(_ c: RuleFailureCase) {
        switch c.op.resultType(inputs: c.inputs) {
        case let .success(type): Issue.record("accepted, gave \(type)")
        case let .failure(failure): #expect(failure.message.contains(c.reason), "\(failure.message)")
        }
    }

    @Test("the rule tables cover every op")
    func coverage() {
        var expected = Set(UnaryFunction.allCases.map(\.rawValue) + BinaryFunction.allCases.map(\.rawValue))
        expected.formUnion([
            "power", "select", "cast", "reduce_sum", "reduce_mean", "reduce_max", "matmul", "reshape", "transpose",
            "broadcast", "slice", "pad", "concat", "conv2d", "conv2d_backward_data", "conv2d_backward_filter",
            "max_pool2d", "max_pool2d_backward", "max_pool2d_gather", "avg_pool2d", "avg_pool2d_backward", "softmax",
            "log_softmax", "softmax_cross_entropy", "one_hot",
        ])
        #expect(expected.subtracting(ruleCases.map(\.op.name)).isEmpty)
        // Every non-leaf op that can fail has a failure case too (cast accepts any input).
        let failing = Set(ruleFailureCases.map(\.op.name))
        let untested = expected.subtracting(failing).subtracting(["cast"])
            .subtracting(UnaryFunction.allCases.map(\.rawValue)).subtracting(BinaryFunction.allCases.map(\.rawValue))
            .subtracting(["reduce_max"])
        #expect(untested.isEmpty, "\(untested.sorted())")
    }

    @Test("leaves carry the type they are given, and random streams are distinct")
    func leaves() throws {
        let g = GraphBuilder()
        #expect(g.input("x", [2, 3]).type == f32(2, 3))
        #expect(g.input("labels", [2], dtype: .int32).type == i32(2))
        #expect(g.parameter("w", [3, 4], dtype: .float64, initializer: .zeros).type == TensorType([3, 4], .float64))
        #expect(g.state("m", [3, 4]).type == f32(3, 4))
        #expect(g.constant(1.5).type == f32())
        #expect(g.constant(values: [1, 2, 3, 4, 5, 6], shape: [2, 3], dtype: .int32).type == i32(2, 3))
        let u = g.randomUniform([5]), n = g.randomNormal([5]), u2 = g.randomUniform([5])
        #expect(u.type == f32(5) && n.type == f32(5))
        #expect(g.graph[u.id].op == .randomUniform(stream: 0))
        #expect(g.graph[n.id].op == .randomNormal(stream: 1))
        #expect(g.graph[u2.id].op == .randomUniform(stream: 2))
        // A builder continuing a graph must not reuse a stream.
        let more = GraphBuilder(try g.build())
        let next = more.randomNormal([1])
        #expect(more.graph[next.id].op == .randomNormal(stream: 3))
    }

    @Test("the DSL normalises axes and infers shapes")
    func dsl() throws {
        let g = GraphBuilder()
        let x = g.input("x", [2, 3, 4, 5])
        let m = g.input("m", [3, 5])
        let labels = g.input("labels", [2], dtype: .int32)
        #expect(x.flatten().shape == [2, 60])
        #expect(m.T.shape == [5, 3])
        #expect(x.sum().shape == .scalar)
        #expect(x.mean(axis: -1, keepDims: true).shape == [2, 3, 4, 1])
        #expect(x.max(axes: [0, -1]).shape == [3, 4])
        #expect(x.slice(axis: -2, 1..<3).shape == [2, 3, 2, 5])
        #expect(concat([m, m], axis: -1).shape == [3, 10])
        let probabilities = softmax(m)
        #expect(probabilities.shape == [3, 5])
        #expect(g.graph[probabilities.id].op == .softmax(axis: 1), "axis -1 is stored as the last axis")
        #expect(oneHot(labels, depth: 7).shape == [2, 7])
        #expect(maxPool(x, 2).shape == [2, 3, 2, 2])
        #expect(avgPool(x, 3, stride: 1).shape == [2, 3, 2, 3])
        #expect(conv2d(x, g.parameter("k", [6, 3, 3, 3], initializer: .zeros), stride: 1, padding: 1).shape == [2, 6, 4, 5])
        #expect(binaryCrossEntropy(logits: m, targets: m).shape == [3, 5])
        #expect(dropout(m, rate: 0.25).shape == [3, 5])
        #expect((m + 1).shape == [3, 5] && (2 * m).shape == [3, 5] && pow(m, 3).shape == [3, 5])
        #expect(x.reshaped([2, 3, 4, 5]).id == x.id, "a reshape to the same shape adds nothing")
        #expect(g.errors.isEmpty, "\(g.errors)")
        _ = try g.build()
    }

    @Test("a small MLP prints as the expected text")
    func mlpText() throws {
        let g = GraphBuilder()
        buildMLP(g)
        let expected = """
        %0 = input() {"x"} : f32[8, 4]
        %1 = input() {"labels"} : i32[8]
        %2 = parameter() {"fc1.w" normal(0.0, 0.5)} : f32[4, 16]
        %3 = parameter() {"fc1.b" zeros} : f32[16]
        %4 = parameter() {"fc2.w" uniform(-0.25, 0.25)} : f32[16, 3]
        %5 = matmul(%0, %2) : f32[8, 16]
        %6 = add(%5, %3) : f32[8, 16]
        %7 = relu(%6) : f32[8, 16]
        %8 = matmul(%7, %4) : f32[8, 3]
        %9 = softmax_cross_entropy(%8, %1) : f32[8]
        %10 = reduce_mean(%9) {axes=[0]} : f32[]
        %11 = constant() {0.125} : f32[]
        %12 = mul(%4, %11) : f32[16, 3]
        %13 = sub(%4, %12) : f32[16, 3]
        output "loss" = %10
        update %4 <- %13
        """
        #expect(try g.build().description == expected)
    }

    @Test("a matmul shape error names the op, both shapes and the caller's line")
    func matmulError() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 3])
        let w = g.parameter("w", [5, 2], initializer: .zeros)
        let line = #line; _ = x.matmul(w)
        let error = #expect(throws: KilnError.self) { try g.build() }
        let message = "\(error.map { "\($0)" } ?? "")"
        #expect(message.hasPrefix("matmul: "), "\(message)")
        #expect(message.contains("[4, 3]") && message.contains("[5, 2]"), "\(message)")
        #expect(message.contains("GraphTests/GraphBuilderTests.swift:\(line)"), "\(message)")
        #expect(error == .shape(op: "matmul", message: "inner dimensions differ: [4, 3] · [5, 2] (3 vs 5)",
                                file: "GraphTests/GraphBuilderTests.swift", line: line))
    }

    @Test("a conv2d channel mismatch names both shapes and the caller's line")
    func convError() throws {
        let g = GraphBuilder()
        let x = g.input("x", [64, 3, 28, 28])
        let w = g.parameter("conv1.w", [6, 1, 5, 5], initializer: .zeros)
        let line = #line; let y = conv2d(x, w, padding: 2)
        #expect(y.shape == x.shape, "the placeholder keeps the first operand's shape so later ops can go on")
        let error = #expect(throws: KilnError.self) { try g.build() }
        #expect(error?.description ==
                "conv2d: input [64, 3, 28, 28] has 3 channels, weight [6, 1, 5, 5] expects 1 (GraphTests/GraphBuilderTests.swift:\(line))")
    }

    @Test("convTranspose2d has PyTorch's output size and weight layout, and names bad arguments")
    func convTransposeShapes() throws {
        let g = GraphBuilder()
        let z = g.input("z", [5, 16, 7, 7])
        let w = g.parameter("w", [16, 8, 4, 4], initializer: .zeros)
        // PyTorch: (7 − 1)·2 − 2·1 + 4 = 14; output_padding 1 gives 15.
        #expect(convTranspose2d(z, w, stride: 2, padding: 1).shape == [5, 8, 14, 14])
        #expect(convTranspose2d(z, w, stride: 2, padding: 1, outputPadding: 1).shape == [5, 8, 15, 15])
        #expect(convTranspose2d(z, w).shape == [5, 8, 10, 10])
        #expect(g.errors.isEmpty, "\(g.errors)")
        let channelsLine = #line; _ = convTranspose2d(g.input("x8", [5, 8, 7, 7]), w)
        let paddingLine = #line; _ = convTranspose2d(z, w, stride: 2, outputPadding: 2)
        let sizeLine = #line; _ = convTranspose2d(g.input("x1", [5, 16, 1, 1]), w, padding: 2)
        let messages = g.errors.map(\.description)
        #expect(messages == [
            "conv_transpose2d: expects input [N, C_in, H, W] and weight [C_in, C_out, KH, KW], found [5, 8, 7, 7] and [16, 8, 4, 4] (GraphTests/GraphBuilderTests.swift:\(channelsLine))",
            "conv_transpose2d: needs stride ≥ 1, padding ≥ 0 and 0 ≤ outputPadding < stride, found stride 2, padding 0, outputPadding 2 (GraphTests/GraphBuilderTests.swift:\(paddingLine))",
            "conv_transpose2d: output size 0x0 of input [5, 16, 1, 1], kernel 4x4, stride 1, padding 2 is not positive (GraphTests/GraphBuilderTests.swift:\(sizeLine))",
        ])
    }

    @Test("operator errors point at the line that created the left operand, never inside Kiln")
    func operatorErrorLocation() throws {
        let g = GraphBuilder()
        let line = #line; let a = g.input("a", [2, 3])
        let b = g.input("b", [4])
        _ = -a + b
        _ = (2 - a) * b
        let descriptions = g.errors.map(\.description)
        #expect(descriptions.count == 2)
        for description in descriptions {
            #expect(description.hasSuffix("(GraphTests/GraphBuilderTests.swift:\(line))"), "\(description)")
        }
    }

    @Test("DSL helpers record user mistakes instead of crashing")
    func helperErrors() throws {
        let g = GraphBuilder()
        let x = g.input("x", [2, 3])
        let s = g.constant(1)
        let flattenLine = #line; _ = s.flatten()
        let sliceLine = #line; _ = x.slice(axis: 2, 0..<1)
        let transposeLine = #line; _ = g.input("r3", [1, 2, 3]).T
        let dropoutLine = #line; _ = dropout(x, rate: 1)
        let constantLine = #line; _ = g.constant(values: [1, 2], shape: [3])
        let expected: [(String, Int)] = [("flatten", flattenLine), ("slice", sliceLine), ("transpose", transposeLine),
                                         ("dropout", dropoutLine), ("constant", constantLine)]
        #expect(g.errors.count == expected.count, "\(g.errors)")
        for (error, (op, line)) in zip(g.errors, expected) {
            guard case let .shape(found, _, file, foundLine) = error else { Issue.record("\(error)"); continue }
            #expect(found == op && file == "GraphTests/GraphBuilderTests.swift" && foundLine == line, "\(error)")
        }
    }

    @Test("a parameter name used twice is an error; one name across kinds is not")
    func duplicateNames() throws {
        let g = GraphBuilder()
        _ = g.parameter("w", [2], initializer: .zeros)
        _ = g.input("w", [2])
        _ = g.state("w", [2])
        #expect(g.errors.isEmpty)
        let line = #line; _ = g.parameter("w", [3], initializer: .ones)
        let error = #expect(throws: KilnError.self) { try g.build() }
        #expect(error == .shape(op: "parameter", message: "\"w\" is defined twice", file: "GraphTests/GraphBuilderTests.swift", line: line))
        let earlier = GraphBuilder()
        _ = earlier.state("m", [1])
        let again = GraphBuilder(try earlier.build())
        _ = again.state("m", [1])
        #expect(again.errors.count == 1, "a continued builder knows the names already in the graph")
    }

    @Test("build() throws the first mistake, not the last")
    func firstError() throws {
        let g = GraphBuilder()
        let x = g.input("x", [2, 3])
        let first = #line; _ = x.matmul(x)
        let second = #line; _ = x.reshaped([7])
        _ = softmax(x, axis: 5)
        #expect(g.errors.count == 3)
        let error = #expect(throws: KilnError.self) { try g.build() }
        #expect(error == g.errors.first)
        guard case let .shape(op, _, _, line) = error else { Issue.record("no shape error"); return }
        #expect(op == "matmul" && line == first && line != second)
    }

    @Test("outputs and updates are checked as they are added")
    func outputsAndUpdates() throws {
        let g = GraphBuilder()
        let x = g.input("x", [2])
        let w = g.parameter("w", [2], initializer: .zeros)
        g.output("y", x)
        let outputLine = #line; g.output("y", w)
        let targetLine = #line; g.update(x, to: w)
        let typeLine = #line; g.update(w, to: g.constant(0, shape: [3]))
        g.update(w, to: w * 2)
        let tripled = w * 3
        g.update(w, to: tripled)
        #expect(g.errors == [
            .shape(op: "output", message: "output \"y\" is defined twice", file: "GraphTests/GraphBuilderTests.swift", line: outputLine),
            .shape(op: "update", message: "target %0 is a input, not a parameter or state", file: "GraphTests/GraphBuilderTests.swift", line: targetLine),
            .shape(op: "update", message: "w has type f32[2], new value has f32[3]", file: "GraphTests/GraphBuilderTests.swift", line: typeLine),
        ])
        #expect(g.graph.updates == [Update(target: w.id, value: tripled.id)], "a second update of one target replaces the first")
        #expect(g.graph.output("y") == x.id)
    }
}
