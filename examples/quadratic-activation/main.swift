// IST Deep Learning 2022-23, homework 1, question 3: a one-hidden-layer
// network with quadratic activation, ŷ = vᵀ(Wx)², is linear in the features
// φ(x) = (x₁², …, x_D², 2x₁x₂, …, 2x_{D−1}x_D) with coefficients c_Θ = vech(Wᵀ Diag(v) W), so
// least squares on φ(x) gives the global optimum in closed form. Gradient training of (W, v)
// with K ≥ D hidden units reaches that optimum; with K < D it cannot (rank(C) ≤ K).
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "quadratic-activation",
                                         summary: "closed-form least squares on φ(x) against gradient training of (W, v)")
let started = Date()
let (d, n) = (6, 300)
let steps = options.quick ? 1_500 : 6_000
var random = SplitMix64(seed: options.seed &+ 1)

// Data: y = xᵀ C* x + noise, so the optimum's loss is positive.
let x = Matrix(rows: n, columns: d, using: &random)
let truth = Matrix(rows: d, columns: d, using: &random)
let cStar = 0.5 * (truth + truth.transposed)
let noise = gaussianSamples(n, using: &random)
let y = (0..<n).map { i in
    (0..<d).reduce(0.0) { s, a in s + (0..<d).reduce(0.0) { $0 + x[i, a] * cStar[a, $1] * x[i, $1] } } + 0.5 * noise[i]
}

/// φ(x): squares first, then 2·x_a·x_b for a < b (D(D+1)/2 features).
func features(_ row: Int) -> [Double] {
    (0..<d).map { x[row, $0] * x[row, $0] } + (0..<d).flatMap { a in ((a + 1)..<d).map { b in 2 * x[row, a] * x[row, b] } }
}
/// The same order of the symmetric matrix C's entries: diagonal, then the upper triangle.
func vech(_ c: Matrix) -> [Double] { (0..<d).map { c[$0, $0] } + (0..<d).flatMap { a in ((a + 1)..<d).map { c[a, $0] } } }
func loss(_ c: [Double]) -> Double {
    (0..<n).reduce(0.0) { s, i in let e = zip(features(i), c).reduce(0.0) { $0 + $1.0 * $1.1 } - y[i]; return s + 0.5 * e * e }
}

// Closed form: ĉ = (ΦᵀΦ)⁻¹ Φᵀ y.
let phi = Matrix(rows: n, columns: d * (d + 1) / 2, values: (0..<n).flatMap(features))
let cHat = (phi.transposed * phi).solve(phi.transposed * Matrix(rows: n, columns: 1, values: y))!.values
let optimum = loss(cHat)
print("closed form: D = \(d), N = \(n), \(cHat.count) features, least-squares loss L* = \(fixed(optimum, 6))")

/// Trains (W, v) with K hidden units by full-batch Adam; returns the loss curve and c_Θ.
func train(hidden k: Int) throws -> (curve: [(x: Double, y: Double)], c: [Double], final: Double) {
    let g = GraphBuilder()
    let input = g.input("x", [n, d]), target = g.input("y", [n]), lr = g.input("lr", .scalar)
    let w = g.parameter("W", [k, d], initializer: .normal(mean: 0, std: 0.5))
    let v = g.parameter("v", [k], initializer: .normal(mean: 0, std: 0.5))
    let prediction = square(input.matmul(w, transposeOther: true)).matmul(v.reshaped([k, 1])).reshaped([n])
    let total = 0.5 * square(prediction - target).sum()
    let mean = total / Double(n)
    Optimizer.adam().appendUpdates(to: g, parameters: [w, v], gradients: g.gradients(of: mean, withRespectTo: [w, v]), learningRate: lr)
    g.output("loss", total)
    let store = ParameterStore(seed: options.seed &+ UInt64(k))
    let program = try Executable(graph: g.build(), store: store, threads: 1)
    try program.setInput("x", x.floats)
    try program.setInput("y", y.map(Float.init))
    var curve: [(x: Double, y: Double)] = []
    for step in 0..<steps {
        // Cosine decay from 0.02 lets Adam settle into the minimum instead of hovering around it.
        try program.setInput("lr", [Float(0.01 * (1 + cos(Double.pi * Double(step) / Double(steps))))])
        try program.run()
        if step % 20 == 0 { curve.append((Double(step), Double(try program.output("loss")[0]))) }
    }
    let wm = Matrix(rows: k, columns: d, values: store["W"]!.values.map(Double.init))
    var diag = Matrix(rows: k, columns: k)
    for (i, value) in store["v"]!.values.enumerated() { diag[i, i] = Double(value) }
    let c = vech(wm.transposed * diag * wm)
    return (curve, c, loss(c))
}

var table = TextTable(["model", "loss", "loss / L* − 1", "max |c − ĉ| / max |ĉ|"])
table.add(["closed form ĉ (least squares on φ)", fixed(optimum, 4), "0", "0"])
var series: [LinePlot.Series] = []
let scale = cHat.map(abs).max()!
for k in [d, d + 2, 2] {
    let run = try train(hidden: k)
    let gap = run.final / optimum - 1
    let distance = zip(run.c, cHat).map { abs($0 - $1) }.max()! / scale
    table.add(["Adam on (W, v), K = \(k)\(k < d ? " < D" : " ≥ D")", fixed(run.final, 4), String(format: "%.2e", gap), String(format: "%.2e", distance)])
    series.append(LinePlot.Series("K = \(k): loss − L*", run.curve.map { ($0.x, $0.y - optimum) }, markers: false))
}
print("\n\(table)")
let plot = LinePlot(title: "Quadratic activation: gradient training against the closed-form optimum L*",
                    xLabel: "Adam step", yLabel: "training loss − L*", logY: true, series: series)
let path = try options.path("loss.svg")
try plot.write(path: path)
print("wrote \(path); total \(fixed(Date().timeIntervalSince(started), 1)) s")
