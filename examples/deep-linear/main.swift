// Berkeley CS189 homework 7, question 2: linear neural networks
// f(x) = W_L ⋯ W_1 x with the loss R = ½‖W̄Xᵀ − Yᵀ‖²_F.
//  (e) the gradient ∂R/∂W_i = W̄_(L:i+1)ᵀ (W̄Xᵀ − Yᵀ) X W̄_(i−1:1)ᵀ against Kiln's autodiff;
//      W_i = 0 for all i is a critical point that is not a global minimum;
//  (a) W̄ can equal W₀ only if rank(W₀) ≤ min_i d_i: fitting a full-rank target through a
//      bottleneck of width d* leaves exactly the Eckart–Young error ½ Σ_{j>d*} s_j²;
//  (f) at a critical point with every W_i invertible, the loss is the global minimum.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "deep-linear", summary: "gradients, critical points and the rank condition of deep linear networks")
let started = Date()
var random = SplitMix64(seed: options.seed &+ 7)

/// The graph of R for widths d_0 … d_L and n examples; outputs `loss` and `grad.i` for every layer.
/// With `learningRate`, also an Adam step on the mean loss.
func network(widths: [Int], n: Int, train: Bool) throws -> Graph {
    let g = GraphBuilder()
    let x = g.input("X", [n, widths.first!]), y = g.input("Y", [n, widths.last!])
    let layers = (1..<widths.count).map { i in
        g.parameter("W\(i)", [widths[i], widths[i - 1]], initializer: .normal(mean: 0, std: 1 / Double(widths[i - 1]).squareRoot()))
    }
    var prediction = x                              // rows are examples: X W_1ᵀ ⋯ W_Lᵀ = (W̄ Xᵀ)ᵀ
    for w in layers { prediction = prediction.matmul(w, transposeOther: true) }
    let loss = 0.5 * square(prediction - y).sum()
    let grads = g.gradients(of: loss, withRespectTo: layers)
    g.output("loss", loss)
    for (i, grad) in grads.enumerated() { g.output("grad.\(i + 1)", grad) }
    if train { Optimizer.adam().appendUpdates(to: g, parameters: layers, gradients: grads, learningRate: g.input("lr", .scalar)) }
    return try g.build()
}
func weights(_ store: ParameterStore, _ widths: [Int]) -> [Matrix] {
    (1..<widths.count).map { Matrix(rows: widths[$0], columns: widths[$0 - 1], values: store["W\($0)"]!.values.map(Double.init)) }
}
/// W_b ⋯ W_a (1-based, inclusive); the identity of size d_{a−1} when b < a.
func product(_ w: [Matrix], from a: Int, to b: Int) -> Matrix {
    let size = a <= w.count ? w[a - 1].columns : w[w.count - 1].rows
    var p = Matrix(rows: size, columns: size, diagonal: 1)
    if b >= a { for i in a...b { p = w[i - 1] * p } }
    return p
}

// (e) The product formula against autodiff, on widths 6 → 4 → 5 → 3.
let widths = [6, 4, 5, 3], n = 40
let x = Matrix(rows: n, columns: widths.first!, using: &random), y = Matrix(rows: n, columns: widths.last!, using: &random)
let store = ParameterStore(seed: options.seed)
let program = try Executable(graph: network(widths: widths, n: n, train: false), store: store, threads: 1)
try program.setInput("X", x.floats)
try program.setInput("Y", y.floats)
try program.run()
let w = weights(store, widths), layerCount = widths.count - 1
let residual = product(w, from: 1, to: layerCount) * x.transposed - y.transposed        // W̄Xᵀ − Yᵀ
var table = TextTable(["layer", "shape", "‖∂R/∂W_i‖ (formula)", "relative difference to autodiff"])
for i in 1...layerCount {
    let formula = product(w, from: i + 1, to: layerCount).transposed * residual * x * product(w, from: 1, to: i - 1).transposed
    let autodiff = Matrix(rows: formula.rows, columns: formula.columns, values: try program.output("grad.\(i)").map(Double.init))
    table.add(["W\(i)", "\(w[i - 1].rows)×\(w[i - 1].columns)", fixed(formula.norm, 4), String(format: "%.1e", (autodiff - formula).norm / formula.norm)])
}
print("(e) gradients of R at random weights, widths \(widths):\n\(table)")

// A critical point that is not a global minimum: every W_i = 0 (L ≥ 2).
for i in 1...layerCount { try store.set("W\(i)", [Float](repeating: 0, count: w[i - 1].values.count)) }
try program.run()
let zeroGradient = try (1...layerCount).map { try program.output("grad.\($0)").map(abs).max()! }.max()!
let zeroLoss = Double(try program.output("loss")[0])
// The global minimum over W̄ of rank ≤ min d_i = 3 = p is the unconstrained least squares: W̄ = YᵀX(XᵀX)⁻¹.
let best = (x.transposed * x).solve(x.transposed * y)!.transposed
let bestLoss = 0.5 * pow((best * x.transposed - y.transposed).norm, 2)
print("\nW_i = 0: max |∂R/∂W_i| = \(zeroGradient) (a critical point), R = \(fixed(zeroLoss)) > global minimum \(fixed(bestLoss)) (least squares)")

// (a) and (f): fit a full-rank target W₀ = U diag(s) Vᵀ with X = I through widths 6 → 6 → d* → 6.
let size = 6, spectrum: [Double] = [5, 4, 3, 2, 1, 0.5]
let u = Matrix(rows: size, columns: size, using: &random).orthonormalized, v = Matrix(rows: size, columns: size, using: &random).orthonormalized
var s = Matrix(rows: size, columns: size)
for (i, value) in spectrum.enumerated() { s[i, i] = value }
let target = u * s * v.transposed
let steps = options.quick ? 1_500 : 8_000
var rankTable = TextTable(["bottleneck d*", "rank W₀", "final R", "Eckart–Young ½Σ_{j>d*} s_j²", "det W_i (d* = 6)"])
var fitted: [(x: Double, y: Double)] = [], theory: [(x: Double, y: Double)] = []
for bottleneck in 1...size {
    let shape = [size, size, bottleneck, size]
    let fitStore = ParameterStore(seed: options.seed &+ UInt64(bottleneck))
    let fit = try Executable(graph: network(widths: shape, n: size, train: true), store: fitStore, threads: 1)
    try fit.setInput("X", Matrix(rows: size, columns: size, diagonal: 1).floats)
    try fit.setInput("Y", target.transposed.floats)           // rows of Y are (W₀ e_j)ᵀ
    for step in 0..<steps {
        try fit.setInput("lr", [Float(0.005 * (1 + cos(Double.pi * Double(step) / Double(steps))))])
        try fit.run()
    }
    let final = 0.5 * pow((product(weights(fitStore, shape), from: 1, to: 3) - target).norm, 2)
    let bound = 0.5 * spectrum[bottleneck...].reduce(0) { $0 + $1 * $1 }
    let determinants = bottleneck == size ? weights(fitStore, shape).map { String(format: "%.2f", $0.determinant) }.joined(separator: ", ") : ""
    rankTable.add(["\(bottleneck)", "\(size)", String(format: "%.5f", final), String(format: "%.5f", bound), determinants])
    fitted.append((Double(bottleneck), final)); theory.append((Double(bottleneck), bound))
}
print("\n(a) rank condition: Adam, \(steps) steps per width, target singular values \(spectrum.map { fixed($0, 1) }.joined(separator: ", "))\n\(rankTable)")
print("(f) at d* = 6: final R = \(String(format: "%.2e", fitted.last!.y)) against the global minimum 0, with the determinants of W₁, W₂, W₃ above (nonzero: invertible)")

let plot = LinePlot(title: "Fitting a rank-6 target through a bottleneck of width d*", xLabel: "bottleneck width d*",
                    yLabel: "final loss R", series: [LinePlot.Series("Adam on W₁, W₂, W₃", fitted),
                                                     LinePlot.Series("Eckart–Young minimum", theory, dashed: true)])
let path = try options.path("rank.svg")
try plot.write(path: path)
print("wrote \(path); total \(fixed(Date().timeIntervalSince(started), 1)) s")
