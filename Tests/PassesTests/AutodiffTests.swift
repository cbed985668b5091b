import Foundation
import Testing
import KilnGraph
import KilnPasses
import KilnRuntime

// Every VJP rule is checked against central finite differences in float64 on the reference
// interpreter. Each op's output y is reduced to the scalar loss sum(y * r) with a fixed random
// r, so every output component takes part. Inputs are drawn away from kinks (0 for relu/abs,
// ties for max/pooling) so the finite difference sees a smooth function.
//
// Tolerance: |analytic − numeric| ≤ 1e-6 · max(1, |numeric|) per component. With h = 1e-6 the
// truncation error is O(h²) ≈ 1e-12 and the rounding error ≈ ε·|loss|/h ≈ 1e-10, so a wrong
// rule (off by a factor, a sign, a transpose) fails by orders of magnitude.

/// SplitMix64 (Steele et al. 2014): seeded, so every failure is reproducible from the seed printed.
typealias SeededGenerator = SplitMix64

/// How a test input is drawn.
enum InputKind: Sendable {
    /// Uniform in [-1, 1).
    case normal
    /// Uniform in [0.5, 2): for log, sqrt, reciprocal, fractional powers, divisors.
    case positive
    /// |x| in [0.2, 1.5) with a random sign: away from the kink of relu, abs, sign.
    case awayFromZero
    /// Distinct values at least 0.06 apart across all separated inputs of a case: no ties for
    /// max, maximum/minimum, comparisons and pooling.
    case separated
    /// Integer class labels in 0..<classes (int32, not differentiable).
    case labels(classes: Int)
}

/// One input of a gradient case.
struct InputSpec: Sendable {
    var shape: Shape
    var kind: InputKind
    init(_ shape: Shape, _ kind: InputKind = .normal) { self.shape = shape; self.kind = kind }
    var dtype: DType { if case .labels = kind { return .int32 } else { return .float64 } }
}

/// An op (or tiny composition) whose gradient is checked against finite differences.
struct GradientCase: Sendable, CustomStringConvertible {
    var name: String
    var inputs: [InputSpec]
    /// Finite-difference step and relative tolerance (only casts through float32 loosen them).
    var step = 1e-6
    var tolerance = 1e-6
    var build: @Sendable ([Tensor]) -> Tensor

    init(_ name: String, _ inputs: [InputSpec], step: Double = 1e-6, tolerance: Double = 1e-6,
         _ build: @escaping @Sendable ([Tensor]) -> Tensor) {
        self.name = name; self.inputs = inputs; self.step = step; self.tolerance = tolerance; self.build = build
    }
    var description: String { name }
}

let seed: UInt64 = 0x6B69_6C6E

/// Draws the values of `specs` (jointly, so separated values never tie across inputs).
func drawInputs(_ specs: [InputSpec], using rng: inout SeededGenerator) -> [HostTensor] {
    let separatedCount = specs.reduce(0) { count, spec in
        if case .separated = spec.kind { return count + spec.shape.count } else { return count }
    }
    var pool = (0..<separatedCount).shuffled(using: &rng).map { index in
        (Double(index) - Double(separatedCount) / 2) * 0.1 + rng.uniform(-0.02, 0.02)
    }
    return specs.map { spec in
        let scalars: [Double] = (0..<spec.shape.count).map { _ in
            switch spec.kind {
            case .normal: return rng.uniform(-1, 1)
            case .positive: return rng.uniform(0.5, 2)
            case .awayFromZero: return (Bool.random(using: &rng) ? 1 : -1) * rng.uniform(0.2, 1.5)
            case .separated: return pool.removeLast()
            case let .labels(classes): return Double(Int.random(in: 0..<classes, using: &rng))
            }
        }
        return HostTensor(shape: spec.shape, dtype: spec.dtype, scalars: scalars)
    }
}

/// The feeds of a graph whose inputs are called x0, x1, ….
func feeds(_ values: [HostTensor]) -> [String: HostTensor] {
    Dictionary(uniqueKeysWithValues: values.enumerated().map { ("x\($0.offset)", $0.element) })
}

/// A case built as a graph: its inputs x0, x1, … and the scalar loss sum(y * r).
struct CaseGraph {
    var builder: GraphBuilder
    var inputs: [Tensor]
    var loss: Tensor
    /// Indices of the float inputs (the ones with gradients).
    var differentiable: [Int]

    init(_ c: GradientCase, using rng: inout SeededGenerator) {
        builder = GraphBuilder()
        let b = builder
        inputs = c.inputs.enumerated().map { b.input("x\($0.offset)", $0.element.shape, dtype: $0.element.dtype) }
        let y = c.build(inputs)
        #expect(y.dtype == .float64, "\(c.name): output is \(y.type)")
        let weights = (0..<y.shape.count).map { _ in rng.uniform(-1, 1) }
        loss = (y * b.constant(values: weights, shape: y.shape, dtype: .float64)).sum()
        differentiable = c.inputs.indices.filter { c.inputs[$0].dtype == .float64 }
    }
}

/// Differentiates `c`'s loss and returns the worst relative error between analytic and
/// numeric gradients over all elements of all float inputs.
func worstGradientError(_ c: GradientCase) throws -> Double {
    var rng = SeededGenerator(seed: seed)
    let values = drawInputs(c.inputs, using: &rng)
    let forward = CaseGraph(c, using: &rng)
    let forwardGraph = try forward.builder.build()

    // Differentiate a copy, so the finite differences run the forward graph alone.
    let backward = GraphBuilder(forwardGraph)
    let grads = backward.gradients(of: backward.tensor(forward.loss.id),
                                   withRespectTo: forward.differentiable.map { backward.tensor(forward.inputs[$0].id) })
    let backwardGraph = try backward.build()  // throws on recorded errors, then verifies

    let analytic = try Interpreter(graph: backwardGraph).run(inputs: feeds(values))
    let forwardRun = Interpreter(graph: forwardGraph)
    func lossAt(_ values: [HostTensor]) throws -> Double { try forwardRun.run(inputs: feeds(values))[forward.loss.id].scalars[0] }

    var worst = 0.0
    for (k, input) in forward.differentiable.enumerated() {
        let gradient = analytic[grads[k].id]
        #expect(gradient.type == TensorType(c.inputs[input].shape, .float64), "\(c.name): gradient of x\(input) has type \(gradient.type)")
        for element in 0..<values[input].scalars.count {
            var plus = values, minus = values
            plus[input].scalars[element] += c.step
            minus[input].scalars[element] -= c.step
            let numeric = (try lossAt(plus) - lossAt(minus)) / (2 * c.step)
            worst = max(worst, abs(gradient.scalars[element] - numeric) / max(1, abs(numeric)))
        }
    }
    return worst
}

/// Differentiates `c`'s gradient again along a random direction v (the Hessian-vector product
/// ∇<∇loss, v>) and returns its worst relative error against (∇loss(x + hv) − ∇loss(x − hv)) / 2h.
/// This exercises the VJP rules of the ops each backward rule emits.
func worstHessianVectorError(_ c: GradientCase) throws -> Double {
    var rng = SeededGenerator(seed: seed)
    let values = drawInputs(c.inputs, using: &rng)
    let g = CaseGraph(c, using: &rng)
    let b = g.builder
    let xs = g.differentiable.map { g.inputs[$0] }
    let grads = b.gradients(of: g.loss, withRespectTo: xs)
    let directions = xs.map { x in (0..<x.shape.count).map { _ in rng.uniform(-1, 1) } }
    let terms = zip(grads, zip(xs, directions)).map { gradient, direction in
        (gradient * b.constant(values: direction.1, shape: direction.0.shape, dtype: .float64)).sum()
    }
    let hvp = b.gradients(of: terms.dropFirst().reduce(terms[0]) { $0 + $1 }, withRespectTo: xs)
    let run = Interpreter(graph: try b.build())

    let analytic = try run.run(inputs: feeds(values))
    var plus = values, minus = values
    for (k, input) in g.differentiable.enumerated() {
        for element in directions[k].indices {
            plus[input].scalars[element] += c.step * directions[k][element]
            minus[input].scalars[element] -= c.step * directions[k][element]
        }
    }
    let gradPlus = try run.run(inputs: feeds(plus)), gradMinus = try run.run(inputs: feeds(minus))
    var worst = 0.0
    for k in xs.indices {
        for element in directions[k].indices {
            let numeric = (gradPlus[grads[k].id].scalars[element] - gradMinus[grads[k].id].scalars[element]) / (2 * c.step)
            worst = max(worst, abs(analytic[hvp[k].id].scalars[element] - numeric) / max(1, abs(numeric)))
        }
    }
    return worst
}

// MARK: The op table

/// A unary function of a [3, 4] input drawn as `kind`.
func unaryCase(_ name: String, _ kind: InputKind, _ f: @escaping @Sendable (Tensor) -> Tensor) -> GradientCase {
    GradientCase(name, [InputSpec([3, 4], kind)]) { f($0[0]) }
}

let unaryCases: [GradientCase] = [
    unaryCase("neg", .normal) { x in -x },
    unaryCase("exp", .normal) { x in exp(x) },
    unaryCase("log", .positive) { x in log(x) },
    unaryCase("sqrt", .positive) { x in sqrt(x) },
    unaryCase("square", .normal) { x in square(x) },
    unaryCase("tanh", .normal) { x in tanh(x) },
    unaryCase("sigmoid", .normal) { x in sigmoid(x) },
    unaryCase("relu", .awayFromZero) { x in relu(x) },
    unaryCase("softplus", .normal) { x in softplus(x) },
    unaryCase("abs", .awayFromZero) { x in abs(x) },
    unaryCase("sign", .awayFromZero) { x in sign(x) },
    unaryCase("reciprocal", .positive) { x in reciprocal(x) },
    unaryCase("power 3", .normal) { x in pow(x, 3) },
    unaryCase("power 2", .normal) { x in pow(x, 2) },
    unaryCase("power 1", .normal) { x in pow(x, 1) },
    unaryCase("power 0", .normal) { x in pow(x, 0) },
    unaryCase("power 0.5", .positive) { x in pow(x, 0.5) },
    unaryCase("power -1.5", .positive) { x in pow(x, -1.5) },
]

let binaryCases: [GradientCase] = [
    GradientCase("add", [InputSpec([3, 4]), InputSpec([3, 4])]) { $0[0] + $0[1] },
    GradientCase("sub", [InputSpec([3, 4]), InputSpec([3, 4])]) { $0[0] - $0[1] },
    GradientCase("mul", [InputSpec([3, 4]), InputSpec([3, 4])]) { $0[0] * $0[1] },
    GradientCase("div", [InputSpec([3, 4]), InputSpec([3, 4], .positive)]) { $0[0] / $0[1] },
    GradientCase("maximum", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { maximum($0[0], $0[1]) },
    GradientCase("minimum", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { minimum($0[0], $0[1]) },
    GradientCase("add broadcast [3,4]+[4]", [InputSpec([3, 4]), InputSpec([4])]) { $0[0] + $0[1] },
    GradientCase("sub broadcast [3,1]-[1,4]", [InputSpec([3, 1]), InputSpec([1, 4])]) { $0[0] - $0[1] },
    GradientCase("mul broadcast [2,3,4]*[3,1]", [InputSpec([2, 3, 4]), InputSpec([3, 1])]) { $0[0] * $0[1] },
    GradientCase("mul broadcast scalar", [InputSpec([]), InputSpec([2, 3])]) { $0[0] * $0[1] },
    GradientCase("div broadcast [2,3]/[3]", [InputSpec([2, 3]), InputSpec([3], .positive)]) { $0[0] / $0[1] },
    GradientCase("div broadcast [3]/[2,3]", [InputSpec([3]), InputSpec([2, 3], .positive)]) { $0[0] / $0[1] },
    GradientCase("maximum broadcast [3,4] vs [4]", [InputSpec([3, 4], .separated), InputSpec([4], .separated)]) { maximum($0[0], $0[1]) },
    GradientCase("minimum broadcast [1,4] vs [3,1]", [InputSpec([1, 4], .separated), InputSpec([3, 1], .separated)]) { minimum($0[0], $0[1]) },
    // Comparisons are piecewise constant: zero gradient (times x1 so the loss is not constant in it).
    GradientCase("less", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { $0[0].less($0[1]) * $0[1] },
    GradientCase("lessEqual", [InputSpec([3, 4], .separated), InputSpec([4], .separated)]) { $0[0].lessEqual($0[1]) * $0[0] },
    GradientCase("greater", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { $0[0].greater($0[1]) },
    GradientCase("greaterEqual", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { $0[0].greaterEqual($0[1]) * $0[0] },
    GradientCase("equal", [InputSpec([3, 4], .separated), InputSpec([3, 4], .separated)]) { $0[0].equal($0[1]) + $0[0] },
    GradientCase("select", [InputSpec([3, 4], .awayFromZero), InputSpec([3, 4]), InputSpec([3, 4])]) {
        select($0[0].greater(0), $0[1], $0[2])
    },
    GradientCase("select broadcast", [InputSpec([3, 1], .awayFromZero), InputSpec([3, 4]), InputSpec([4])]) {
        select($0[0].greater(0), $0[1], $0[2])
    },
    GradientCase("select on a float condition", [InputSpec([3, 4], .awayFromZero), InputSpec([3, 4]), InputSpec([3, 4])]) {
        select(relu($0[0]), $0[1], $0[2] * $0[0])
    },
    // Adam's update formulas, with scalar operands broadcast as `Optimizer.adam` emits them.
    GradientCase("adam first moment", [InputSpec([3, 4]), InputSpec([3, 4]), InputSpec([])]) {
        adamUpdate(.firstMoment, [$0[0], $0[1], $0[2]])
    },
    GradientCase("adam second moment", [InputSpec([3, 4], .positive), InputSpec([3, 4]), InputSpec([]), InputSpec([])]) {
        adamUpdate(.secondMoment, [$0[0], $0[1], $0[2], $0[3]])
    },
    GradientCase("adam parameter", [InputSpec([3, 4]), InputSpec([3, 4]), InputSpec([3, 4], .positive), InputSpec([]),
                                    InputSpec([], .positive), InputSpec([], .positive)]) {
        adamUpdate(.parameter, [$0[0], $0[1], $0[2], $0[3], $0[4], $0[5]])
    },
    // float32 rounds x ± h, so this one case uses a larger step and a looser tolerance.
    GradientCase("cast f64 → f32 → f64", [InputSpec([3, 4])], step: 1e-3, tolerance: 1e-3) {
        tanh($0[0].cast(to: .float32)).cast(to: .float64)
    },
    GradientCase("cast f64 → f64", [InputSpec([3, 4])]) { square($0[0]).cast(to: .float64) },
    GradientCase("cast through int32 (zero gradient)", [InputSpec([3, 4])]) {
        ($0[0] * 3).cast(to: .int32).cast(to: .float64) + $0[0]
    },
]

let reductionCases: [GradientCase] = [
    GradientCase("sum all", [InputSpec([2, 3, 4])]) { $0[0].sum() },
    GradientCase("sum axes [0,2]", [InputSpec([2, 3, 4])]) { $0[0].sum(axes: [0, 2]) },
    GradientCase("sum axis 1 keep", [InputSpec([2, 3, 4])]) { $0[0].sum(axis: 1, keepDims: true) },
    GradientCase("mean axis 1", [InputSpec([2, 3, 4])]) { $0[0].mean(axis: 1) },
    GradientCase("mean axes [0,2] keep", [InputSpec([2, 3, 4])]) { $0[0].mean(axes: [0, 2], keepDims: true) },
    GradientCase("mean all", [InputSpec([2, 3, 4])]) { $0[0].mean() },
    GradientCase("max axis 1", [InputSpec([2, 3, 4], .separated)]) { $0[0].max(axis: 1) },
    GradientCase("max axes [0,2] keep", [InputSpec([2, 3, 4], .separated)]) { $0[0].max(axes: [0, 2], keepDims: true) },
    GradientCase("max all", [InputSpec([2, 3, 4], .separated)]) { $0[0].max() },
]

let linearAlgebraCases: [GradientCase] = [
    GradientCase("matmul", [InputSpec([3, 4]), InputSpec([4, 5])]) { matmul($0[0], $0[1]) },
    GradientCase("matmul tA", [InputSpec([4, 3]), InputSpec([4, 5])]) { matmul($0[0], $0[1], transposeA: true) },
    GradientCase("matmul tB", [InputSpec([3, 4]), InputSpec([5, 4])]) { matmul($0[0], $0[1], transposeB: true) },
    GradientCase("matmul tA tB", [InputSpec([4, 3]), InputSpec([5, 4])]) { matmul($0[0], $0[1], transposeA: true, transposeB: true) },
    GradientCase("matmul with a shared operand", [InputSpec([3, 3])]) { matmul($0[0], $0[0], transposeB: true) },
]

let dataMovementCases: [GradientCase] = [
    GradientCase("reshape", [InputSpec([2, 3, 4])]) { $0[0].reshaped([6, 4]) },
    GradientCase("transpose [2,0,1]", [InputSpec([2, 3, 4])]) { $0[0].transposed([2, 0, 1]) },
    GradientCase("transpose [1,0]", [InputSpec([3, 5])]) { $0[0].T },
    GradientCase("broadcast [3,1] → [2,3,4]", [InputSpec([3, 1])]) { $0[0].broadcast(to: [2, 3, 4]) },
    GradientCase("broadcast [4] → [3,4]", [InputSpec([4])]) { $0[0].broadcast(to: [3, 4]) },
    GradientCase("slice", [InputSpec([4, 5])]) { $0[0].slice(start: [1, 2], size: [2, 3]) },
    GradientCase("pad", [InputSpec([2, 3])]) { $0[0].padded(low: [1, 0], high: [2, 1]) },
    GradientCase("concat axis 1", [InputSpec([2, 3]), InputSpec([2, 1]), InputSpec([2, 2])]) { concat($0, axis: 1) },
    GradientCase("concat axis 0 with a repeated input", [InputSpec([2, 3]), InputSpec([1, 3])]) { concat([$0[0], $0[1], $0[0]], axis: 0) },
]

let convolutionCases: [GradientCase] = [
    GradientCase("conv2d stride 2 pad 1", [InputSpec([2, 3, 5, 5]), InputSpec([4, 3, 3, 3])]) { conv2d($0[0], $0[1], stride: 2, padding: 1) },
    GradientCase("conv2d stride 1 pad 0", [InputSpec([1, 2, 4, 5]), InputSpec([3, 2, 2, 3])]) { conv2d($0[0], $0[1]) },
    GradientCase("conv2dBackwardData", [InputSpec([2, 4, 3, 3]), InputSpec([4, 3, 3, 3])]) {
        $0[0].builder.apply(.conv2dBackwardData(Conv2DAttributes(stride: 2, padding: 1), inputShape: [2, 3, 6, 5]), $0)
    },
    GradientCase("convTranspose2d stride 2 pad 1 output padding 1", [InputSpec([2, 3, 3, 2]), InputSpec([3, 2, 3, 3])]) {
        convTranspose2d($0[0], $0[1], stride: 2, padding: 1, outputPadding: 1)
    },
    GradientCase("convTranspose2d 4x4 stride 2 to one channel", [InputSpec([1, 4, 3, 3]), InputSpec([4, 1, 4, 4])]) {
        convTranspose2d($0[0], $0[1], stride: 2, padding: 1)
    },
    GradientCase("conv2dBackwardFilter", [InputSpec([2, 3, 5, 6]), InputSpec([2, 4, 3, 3])]) {
        $0[0].builder.apply(.conv2dBackwardFilter(Conv2DAttributes(stride: 2, padding: 1), filterShape: [4, 3, 3, 3]), $0)
    },
    GradientCase("maxPool2d k2", [InputSpec([1, 2, 4, 4], .separated)]) { maxPool($0[0], 2) },
    GradientCase("maxPool2d k3 s1 (overlapping)", [InputSpec([1, 2, 5, 4], .separated)]) { maxPool($0[0], 3, stride: 1) },
    GradientCase("maxPool2dBackward", [InputSpec([1, 2, 5, 4], .separated), InputSpec([1, 2, 3, 2])]) {
        $0[0].builder.apply(.maxPool2dBackward(PoolAttributes(kernel: 3, stride: 1)), $0)
    },
    GradientCase("maxPool2dGather", [InputSpec([1, 2, 4, 4], .separated), InputSpec([1, 2, 4, 4])]) {
        $0[0].builder.apply(.maxPool2dGather(PoolAttributes(kernel: 2)), $0)
    },
    GradientCase("avgPool2d k2", [InputSpec([1, 2, 4, 4])]) { avgPool($0[0], 2) },
    GradientCase("avgPool2d k3 s2", [InputSpec([2, 1, 7, 6])]) { avgPool($0[0], 3, stride: 2) },
    GradientCase("avgPool2dBackward", [InputSpec([2, 1, 3, 2])]) {
        $0[0].builder.apply(.avgPool2dBackward(PoolAttributes(kernel: 3, stride: 2), inputShape: [2, 1, 7, 6]), $0)
    },
]

let normalisationCases: [GradientCase] = [
    GradientCase("softmax axis 1", [InputSpec([3, 5])]) { softmax($0[0]) },
    GradientCase("softmax axis 0", [InputSpec([3, 5])]) { softmax($0[0], axis: 0) },
    GradientCase("logSoftmax axis 1", [InputSpec([3, 5])]) { logSoftmax($0[0]) },
    GradientCase("logSoftmax axis 1 of 3", [InputSpec([2, 3, 4])]) { logSoftmax($0[0], axis: 1) },
    GradientCase("softmaxCrossEntropy", [InputSpec([4, 5]), InputSpec([4], .labels(classes: 5))]) {
        softmaxCrossEntropy($0[0], labels: $0[1])
    },
    GradientCase("oneHot (labels get nothing)", [InputSpec([4], .labels(classes: 5)), InputSpec([4, 5])]) {
        oneHot($0[0], depth: 5, dtype: .float64) * $0[1]
    },
    GradientCase("random and constant leaves", [InputSpec([3, 4])]) { inputs in
        let x = inputs[0], b = x.builder
        return x * b.randomUniform([3, 4], dtype: .float64) + b.randomNormal([4], dtype: .float64) * x
            + b.constant(values: (0..<12).map(Double.init), shape: [3, 4], dtype: .float64) * x
    },
]

let compositeCases: [GradientCase] = [
    GradientCase("value with several users", [InputSpec([3, 4])]) { inputs in
        let x = inputs[0]
        return tanh(x) * x + exp(x).sum(axis: 0) * x
    },
    GradientCase("binary cross-entropy", [InputSpec([3, 4], .awayFromZero), InputSpec([3, 4], .positive)]) {
        binaryCrossEntropy(logits: $0[0], targets: $0[1] / 2)
    },
    GradientCase("dense layer", [InputSpec([4, 3]), InputSpec([3, 5]), InputSpec([5])]) {
        softplus(matmul($0[0], $0[1]) + $0[2])
    },
]

@Suite("Autodiff: finite differences per op")
struct AutodiffFiniteDifferenceTests {
    @Test("unary VJPs match finite differences", arguments: unaryCases)
    func unary(_ c: GradientCase) throws { try check(c) }

    @Test("binary, select and cast VJPs match finite differences (with broadcasting)", arguments: binaryCases)
    func binary(_ c: GradientCase) throws { try check(c) }

    @Test("reduction VJPs match finite differences", arguments: reductionCases)
    func reductions(_ c: GradientCase) throws { try check(c) }

    @Test("matmul VJPs match finite differences for all transposes", arguments: linearAlgebraCases)
    func linearAlgebra(_ c: GradientCase) throws { try check(c) }

    @Test("data movement VJPs match finite differences", arguments: dataMovementCases)
    func dataMovement(_ c: GradientCase) throws { try check(c) }

    @Test("convolution and pooling VJPs match finite differences", arguments: convolutionCases)
    func convolution(_ c: GradientCase) throws { try check(c) }

    @Test("softmax, cross-entropy and leaf VJPs match finite differences", arguments: normalisationCases)
    func normalisation(_ c: GradientCase) throws { try check(c) }

    @Test("compositions match finite differences", arguments: compositeCases)
    func composite(_ c: GradientCase) throws { try check(c) }

    private func check(_ c: GradientCase) throws {
        let worst = try worstGradientError(c)
        #expect(worst <= c.tolerance, "\(c.name): worst relative error \(worst) > \(c.tolerance) (seed \(seed))")
    }
}

/// Every case of the op table.
let allCases = unaryCases + binaryCases + reductionCases + linearAlgebraCases + dataMovementCases
    + convolutionCases + normalisationCases + compositeCases

@Suite("Autodiff: gradients of gradients per op")
struct AutodiffHessianVectorTests {
    @Test("Hessian-vector products match finite differences of the gradient for every op", arguments: allCases)
    func hessianVectorProduct(_ c: GradientCase) throws {
        let worst = try worstHessianVectorError(c)
        #expect(worst <= c.tolerance, "\(c.name): worst relative error \(worst) > \(c.tolerance) (seed \(seed))")
    }
}

// MARK: Second order

/// An elementwise function with its second derivative in closed form.
struct SecondOrderCase: Sendable, CustomStringConvertible {
    var name: String
    var kind: InputKind
    var function: @Sendable (Tensor) -> Tensor
    var secondDerivative: @Sendable (Double) -> Double
    var description: String { name }
}

let secondOrderCases: [SecondOrderCase] = [
    SecondOrderCase(name: "tanh", kind: .normal, function: { tanh($0) }) { x in
        let t = Foundation.tanh(x); return -2 * t * (1 - t * t)
    },
    SecondOrderCase(name: "softplus", kind: .normal, function: { softplus($0) }) { x in
        let s = 1 / (1 + Foundation.exp(-x)); return s * (1 - s)
    },
    SecondOrderCase(name: "x³ as power", kind: .normal, function: { pow($0, 3) }) { 6 * $0 },
    SecondOrderCase(name: "x³ as products", kind: .normal, function: { $0 * $0 * $0 }) { 6 * $0 },
    SecondOrderCase(name: "sigmoid", kind: .normal, function: { sigmoid($0) }) { x in
        let s = 1 / (1 + Foundation.exp(-x)); return s * (1 - s) * (1 - 2 * s)
    },
    SecondOrderCase(name: "log", kind: .positive, function: { log($0) }) { -1 / ($0 * $0) },
    SecondOrderCase(name: "x / (1 + x²)", kind: .normal, function: { $0 / (1 + square($0)) }) { x in
        2 * x * (x * x - 3) / Foundation.pow(1 + x * x, 3)
    },
]

@Suite("Autodiff: second order")
struct AutodiffSecondOrderTests {
    @Test("d²/dx² matches the closed form and finite differences of the first gradient", arguments: secondOrderCases)
    func secondDerivative(_ c: SecondOrderCase) throws {
        var rng = SeededGenerator(seed: seed)
        let x = drawInputs([InputSpec([7], c.kind)], using: &rng)[0]
        let b = GraphBuilder()
        let input = b.input("x0", [7], dtype: .float64)
        let first = b.gradients(of: c.function(input), withRespectTo: [input])[0]
        // The function is elementwise, so the gradient of sum(f'(x)) is the diagonal f''(x).
        let second = b.gradients(of: first, withRespectTo: [input])[0]
        let graph = try b.build()
        let run = Interpreter(graph: graph)

        let analytic = try run.run(inputs: ["x0": x])[second.id].scalars
        let h = 1e-6
        var plus = x, minus = x
        for i in 0..<7 { plus.scalars[i] += h; minus.scalars[i] -= h }
        let firstPlus = try run.run(inputs: ["x0": plus])[first.id].scalars
        let firstMinus = try run.run(inputs: ["x0": minus])[first.id].scalars
        for i in 0..<7 {
            let closed = c.secondDerivative(x.scalars[i])
            let numeric = (firstPlus[i] - firstMinus[i]) / (2 * h)
            #expect(abs(analytic[i] - closed) <= 1e-10 * max(1, abs(closed)), "\(c.name) at \(x.scalars[i]): \(analytic[i]) vs closed form \(closed)")
            #expect(abs(analytic[i] - numeric) <= 1e-6 * max(1, abs(numeric)), "\(c.name) at \(x.scalars[i]): \(analytic[i]) vs finite difference \(numeric)")
        }
    }

    @Test("Hessian-vector product of a tanh MLP matches finite differences of its gradient")
    func hessianVectorProduct() throws {
        let shapes: [Shape] = [[3, 5], [5], [5, 2]]
        let b = GraphBuilder()
        let x = b.input("x", [4, 3], dtype: .float64), target = b.input("t", [4, 2], dtype: .float64)
        let params = shapes.enumerated().map { b.input("w\($0.offset)", $0.element, dtype: .float64) }
        let directions = shapes.enumerated().map { b.input("v\($0.offset)", $0.element, dtype: .float64) }
        let hidden = tanh(matmul(x, params[0]) + params[1])
        let loss = square(matmul(hidden, params[2]) - target).mean()
        let grads = b.gradients(of: loss, withRespectTo: params)
        let terms = zip(grads, directions).map { gradient, direction in (gradient * direction).sum() }
        let directional = terms.dropFirst().reduce(terms[0]) { $0 + $1 }
        let hvp = b.gradients(of: directional, withRespectTo: params)
        let graph = try b.build()

        var rng = SeededGenerator(seed: seed)
        var feeds: [String: HostTensor] = [:]
        var named: [(String, Shape)] = [("x", [4, 3]), ("t", [4, 2])]
        for (i, shape) in shapes.enumerated() { named += [("w\(i)", shape), ("v\(i)", shape)] }
        for (name, shape) in named {
            feeds[name] = HostTensor(shape: shape, dtype: .float64, scalars: (0..<shape.count).map { _ in rng.uniform(-1, 1) })
        }
        let run = Interpreter(graph: graph)
        let analytic = try run.run(inputs: feeds)
        let h = 1e-6
        var plus = feeds, minus = feeds
        for i in shapes.indices {
            let v = feeds["v\(i)"]!.scalars
            for k in v.indices { plus["w\(i)"]!.scalars[k] += h * v[k]; minus["w\(i)"]!.scalars[k] -= h * v[k] }
        }
        let gradPlus = try run.run(inputs: plus), gradMinus = try run.run(inputs: minus)
        var worst = 0.0, largest = 0.0
        for i in shapes.indices {
            let product = analytic[hvp[i].id].scalars
            for k in product.indices {
                let numeric = (gradPlus[grads[i].id].scalars[k] - gradMinus[grads[i].id].scalars[k]) / (2 * h)
                worst = max(worst, abs(product[k] - numeric) / max(1, abs(numeric)))
                largest = max(largest, abs(numeric))
            }
        }
        #expect(largest > 1e-3, "the Hessian-vector product should not vanish")
        #expect(worst <= 1e-6, "worst relative error \(worst)")
    }
}

// MARK: Structure

@Suite("Autodiff: graph structure and errors")
struct AutodiffStructureTests {
    @Test("gradients of a small convolutional network form a graph that passes verify()")
    func verifies() throws {
        let b = GraphBuilder()
        let x = b.input("x", [2, 1, 8, 8]), labels = b.input("y", [2], dtype: .int32)
        let w1 = b.parameter("conv", [4, 1, 3, 3], initializer: .normal(mean: 0, std: 0.1))
        let w2 = b.parameter("dense", [36, 10], initializer: .normal(mean: 0, std: 0.1))
        let bias = b.parameter("bias", [10], initializer: .zeros)
        let h = maxPool(relu(conv2d(x, w1, stride: 1, padding: 1)), 2)
        let pooled = avgPool(h, 2, stride: 1)  // [2, 4, 3, 3]
        let logits = matmul(pooled.flatten(), w2) + bias
        let loss = softmaxCrossEntropy(logits, labels: labels).mean()
        let before = b.graph.nodes.count
        let grads = gradients(of: loss, withRespectTo: b.parameters)
        #expect(b.errors.isEmpty, "\(b.errors)")
        #expect(b.graph.nodes.count > before)
        #expect(zip(grads, b.parameters).allSatisfy { $0.type == $1.type })
        try b.graph.verify()
        // And the backward graph differentiates again.
        let second = gradients(of: (grads[0] * grads[0]).sum(), withRespectTo: [w1])
        #expect(b.errors.isEmpty, "\(b.errors)")
        #expect(second[0].type == w1.type)
        _ = try b.build()
    }

    @Test("only nodes on a path to a requested value get backward nodes")
    func pruning() throws {
        let b = GraphBuilder()
        let a = b.input("a", [3]), c = b.input("c", [3]), d = b.input("d", [3]), unused = b.input("e", [2, 2])
        let loss = (a * a).sum() + (c * d).sum()
        let before = b.graph.nodes.count
        let grads = b.gradients(of: loss, withRespectTo: [a, unused])
        let appended = b.graph.nodes[before...]
        #expect(!appended.contains { $0.inputs.contains(c.id) || $0.inputs.contains(d.id) }, "\(b.graph)")
        #expect(b.graph[grads[1].id].op == .constant(values: [0]))
        #expect(grads[1].type == unused.type)
        _ = try b.build()
    }

    @Test("the backward graph of x·x has the expected text form")
    func goldenText() throws {
        let b = GraphBuilder()
        let x = b.input("x", [2])
        let loss = (x * x).sum()
        _ = b.gradients(of: loss, withRespectTo: [x])
        let expected = """
            %0 = input() {"x"} : f32[2]
            %1 = mul(%0, %0) : f32[2]
            %2 = reduce_sum(%1) {axes=[0]} : f32[]
            %3 = constant() {1} : f32[]
            %4 = reshape(%3) {[1]} : f32[1]
            %5 = broadcast(%4) {[2]} : f32[2]
            %6 = mul(%5, %0) : f32[2]
            %7 = mul(%5, %0) : f32[2]
            %8 = add(%6, %7) : f32[2]
            """
        #expect(b.graph.description == expected)
    }

    @Test("asking for the gradient of an int32 value records an error")
    func integerValue() {
        let b = GraphBuilder()
        let x = b.input("x", [3]), labels = b.input("labels", [3], dtype: .int32)
        let loss = (x * labels.cast(to: .float32)).sum()
        let grads = b.gradients(of: loss, withRespectTo: [x, labels])
        #expect(b.errors.count == 1)
        #expect(b.errors.first?.description.contains("i32") == true, "\(b.errors)")
        #expect(grads[1].type == labels.type)
        #expect(throws: KilnError.self) { try b.build() }
    }

    @Test("a seed of the wrong type records an error")
    func badSeed() {
        let b = GraphBuilder()
        let x = b.input("x", [3])
        _ = b.gradients(of: x * x, withRespectTo: [x], seed: b.constant(1, shape: [4]))
        #expect(b.errors.count == 1)
    }

    @Test("a seed gives a vector-Jacobian product; the loss's own gradient is the seed")
    func seeded() throws {
        let b = GraphBuilder()
        let x = b.input("x", [3], dtype: .float64), s = b.input("s", [3], dtype: .float64)
        let y = x * x
        let grads = b.gradients(of: y, withRespectTo: [x, y], seed: s)
        let values = try Interpreter(graph: try b.build()).run(inputs: [
            "x": HostTensor(shape: [3], dtype: .float64, scalars: [1, -2, 3]),
            "s": HostTensor(shape: [3], dtype: .float64, scalars: [0.5, 1, -1]),
        ])
        #expect(values[grads[0].id].scalars == [1, -4, -6])
        #expect(values[grads[1].id].scalars == [0.5, 1, -1])
    }

    @Test("detached() passes the value and stops the gradient: d/dx of x·detached(x) is x, not 2x; compiled, it costs no kernel")
    func detached() throws {
        let b = GraphBuilder()
        let x = b.input("x", [3])
        let y = (x * x.detached()).sum()
        let grad = b.gradients(of: y, withRespectTo: [x])[0]
        b.output("y", y)
        b.output("dx", grad)
        let graph = try b.build()
        let xs: [Float] = [1, -2, 3]
        let reference = try Interpreter(graph: graph).outputs(inputs: ["x": HostTensor(shape: [3], scalars: xs.map(Double.init))])
        #expect(reference["y"]!.scalars == [14])
        #expect(reference["dx"]!.scalars == [1, -2, 3])
        let program = try Executable(graph: graph, store: ParameterStore(seed: 0), threads: 1)
        try program.setInput("x", xs)
        try program.run()
        #expect(try program.output("y") == [14])
        #expect(try program.output("dx") == [1, -2, 3])
        #expect(!program.program.graph.nodes.contains { if case .stopGradient = $0.op { return true } else { return false } },
                "simplify-algebra removes it once the gradients exist")
    }

    @Test("an intermediate value and the leaf behind it both get their gradients")
    func intermediateValue() throws {
        let b = GraphBuilder()
        let x = b.input("x", [3], dtype: .float64)
        let h = tanh(x)
        let grads = b.gradients(of: (h * h).sum(), withRespectTo: [h, x])
        let xs = [0.3, -1.2, 0.8]
        let values = try Interpreter(graph: try b.build()).run(inputs: ["x": HostTensor(shape: [3], dtype: .float64, scalars: xs)])
        for i in 0..<3 {
            let t = Foundation.tanh(xs[i])
            #expect(abs(values[grads[0].id].scalars[i] - 2 * t) <= 1e-14)
            #expect(abs(values[grads[1].id].scalars[i] - 2 * t * (1 - t * t)) <= 1e-14)
        }
    }

    @Test("ties: max shares the gradient among maxima, maximum gives it to its first operand")
    func ties() throws {
        let b = GraphBuilder()
        let x = b.input("x", [4], dtype: .float64), other = b.input("o", [4], dtype: .float64)
        let gradMax = b.gradients(of: x.max(), withRespectTo: [x])[0]
        let gradMaximum = b.gradients(of: maximum(x, other), withRespectTo: [x, other])
        let values = try Interpreter(graph: try b.build()).run(inputs: [
            "x": HostTensor(shape: [4], dtype: .float64, scalars: [1, 3, 3, 2]),
            "o": HostTensor(shape: [4], dtype: .float64, scalars: [1, 4, 3, 0]),
        ])
        #expect(values[gradMax.id].scalars == [0, 0.5, 0.5, 0])
        #expect(values[gradMaximum[0].id].scalars == [1, 0, 1, 1])
        #expect(values[gradMaximum[1].id].scalars == [0, 1, 0, 0])
    }
}
