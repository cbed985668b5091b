// Lecture 14 (physics-informed neural networks): the boundary-value problem
//     −u″(x) = f(x) on (0, 1),  u(0) = −tanh(a/2),  u(1) = tanh(a/2),
// with f chosen so that u(x) = tanh(a(x − ½)), a steep layer at x = ½ (a = 15). A tanh network
// u_θ(x) is trained on the residual −u_θ″ − f at N collocation points plus the two boundary
// conditions. u_θ″ comes from Kiln's autodiff applied twice in x (gradients of gradients), and the
// parameter gradient of that loss differentiates through both: a third-order graph.
// Error against N, with uniform points and with residual-adaptive refinement (half uniform,
// half added in rounds where |−u_θ″ − f| is largest on a dense candidate grid).
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "pinn", summary: "a 1-D boundary-value problem solved by a tanh network with second derivatives from nested autodiff")
let started = Date()
let a = 15.0
func exact(_ x: Double) -> Double { Foundation.tanh(a * (x - 0.5)) }
func source(_ x: Double) -> Double { let t = Foundation.tanh(a * (x - 0.5)); return 2 * a * a * t * (1 - t * t) }   // −u″
let widths = [1, 32, 32, 1]

/// The network with explicit parameters, so that it can be applied to several inputs of one graph.
func makeParameters(_ g: GraphBuilder) -> [(w: Tensor, b: Tensor)] {
    (1..<widths.count).map { i in
        let bound = (6.0 / Double(widths[i - 1] + widths[i])).squareRoot()          // Xavier-uniform for tanh
        return (g.parameter("w\(i)", [widths[i - 1], widths[i]], initializer: .uniform(low: -bound, high: bound)),
                g.parameter("b\(i)", [widths[i]], initializer: .zeros))
    }
}
func apply(_ layers: [(w: Tensor, b: Tensor)], _ x: Tensor) -> Tensor {
    var h = 2 * x - 1                                              // inputs centred on [−1, 1]
    for (i, layer) in layers.enumerated() { h = h.matmul(layer.w) + layer.b; if i < layers.count - 1 { h = tanh(h) } }
    return h
}
/// u_θ″ at the points x [n, 1]: each u_θ(x_i) depends on x_i alone, so d/dx Σ u = u′ row by row, twice.
func secondDerivative(_ g: GraphBuilder, _ layers: [(w: Tensor, b: Tensor)], _ x: Tensor) -> Tensor {
    let u = apply(layers, x)
    let du = g.gradients(of: u.sum(), withRespectTo: [x])[0]
    return g.gradients(of: du.sum(), withRespectTo: [x])[0]
}
func trainingGraph(points: Int) throws -> Graph {
    let g = GraphBuilder()
    let layers = makeParameters(g)
    let x = g.input("x", [points, 1]), f = g.input("f", [points, 1])
    let residual = -secondDerivative(g, layers, x) - f
    let ends = apply(layers, g.input("ends", [2, 1]))
    let boundary = square(ends - g.input("endValues", [2, 1])).mean()
    let loss = square(residual).mean() / (a * a * a * a) + boundary     // residual scaled by f's size (~a²)
    g.output("loss", loss)
    let parameters = layers.flatMap { [$0.w, $0.b] }
    Optimizer.adam().appendUpdates(to: g, parameters: parameters, gradients: g.gradients(of: loss, withRespectTo: parameters),
                                   learningRate: g.input("lr", .scalar))
    return try g.build()
}
func evaluationGraph(points: Int) throws -> Graph {
    let g = GraphBuilder()
    let layers = makeParameters(g)
    let x = g.input("x", [points, 1])
    g.output("u", apply(layers, x))
    g.output("residual", -secondDerivative(g, layers, x) - g.input("f", [points, 1]))
    return try g.build()
}

let grid = (0...1000).map { Double($0) / 1000 }
let steps = options.quick ? 2_000 : 10_000, rounds = 4
let evaluator = try evaluationGraph(points: grid.count)
/// Trains from a fresh initialisation; `adaptive` starts from half the points and adds the rest in
/// `rounds` rounds at the largest residuals. Returns the max error on the grid and the final points.
func solve(points: Int, adaptive: Bool, seed: UInt64) throws -> (error: Double, values: [Float], points: [Double]) {
    let store = ParameterStore(seed: seed)
    let evaluate = try Executable(graph: evaluator, store: store, threads: 1)
    try evaluate.setInput("x", grid.map(Float.init))
    try evaluate.setInput("f", grid.map { Float(source($0)) })
    func uniform(_ n: Int) -> [Double] { (0..<n).map { (Double($0) + 0.5) / Double(n) } }
    var collocation = adaptive ? uniform(points / 2) : uniform(points)
    var step = 0
    let phases = adaptive ? rounds + 1 : 1
    for phase in 0..<phases {
        if phase > 0 {                                   // refine: the largest residuals not already taken
            try evaluate.run()
            let residual = try evaluate.output("residual")
            let add = (points - collocation.count) / (phases - phase)
            let ranked = grid.indices.sorted { Swift.abs(residual[$0]) > Swift.abs(residual[$1]) }
            var added = 0
            for i in ranked where added < add && !collocation.contains(where: { Swift.abs($0 - grid[i]) < 0.5 / Double(points) }) {
                collocation.append(grid[i]); added += 1
            }
        }
        let train = try Executable(graph: try trainingGraph(points: collocation.count), store: store, threads: 1)
        try train.setInput("x", collocation.map(Float.init))
        try train.setInput("f", collocation.map { Float(source($0)) })
        try train.setInput("ends", [Float(0), 1])
        try train.setInput("endValues", [Float(exact(0)), Float(exact(1))])
        let phaseSteps = phase == phases - 1 ? steps - step : steps / phases
        for _ in 0..<phaseSteps {
            try train.setInput("lr", [Float(0.01 * 0.5 * (1 + cos(Double.pi * Double(step) / Double(steps))))])
            try train.run()
            step += 1
        }
    }
    try evaluate.run()
    let u = try evaluate.output("u")
    return (zip(u, grid).map { Swift.abs(Double($0) - exact($1)) }.max()!, u, collocation.sorted())
}

let counts = options.quick ? [8, 16, 32] : [4, 8, 16, 32, 64]
let seeds = options.quick ? 1 : 3
var table = TextTable(["N points", "uniform: max |u − u*|", "adaptive: max |u − u*|", "adaptive points within 0.1 of ½"])
var uniformSeries: [(x: Double, y: Double)] = [], adaptiveSeries: [(x: Double, y: Double)] = []
var examplePlots: [LinePlot.Series] = [LinePlot.Series("exact tanh(a(x − ½))", grid.map { ($0, exact($0)) }, dashed: true, markers: false)]
for n in counts {
    var uniformErrors: [Double] = [], adaptiveErrors: [Double] = [], near = 0
    for s in 0..<seeds {
        let seed = options.seed &* 100 &+ UInt64(s)
        let u = try solve(points: n, adaptive: false, seed: seed), r = try solve(points: n, adaptive: true, seed: seed)
        uniformErrors.append(u.error); adaptiveErrors.append(r.error)
        near += r.points.filter { Swift.abs($0 - 0.5) < 0.1 }.count
        if n == 16 && s == 0 {
            examplePlots.append(LinePlot.Series("uniform, N = 16", zip(grid, u.values).map { ($0, Double($1)) }, markers: false))
            examplePlots.append(LinePlot.Series("adaptive, N = 16", zip(grid, r.values).map { ($0, Double($1)) }, markers: false))
        }
    }
    let median = { (v: [Double]) in v.sorted()[v.count / 2] }
    table.add(["\(n)", String(format: "%.2e", median(uniformErrors)), String(format: "%.2e", median(adaptiveErrors)),
               String(format: "%.1f of %d", Double(near) / Double(seeds), n)])
    uniformSeries.append((Double(n), median(uniformErrors))); adaptiveSeries.append((Double(n), median(adaptiveErrors)))
}
print("tanh network \(widths.map(String.init).joined(separator: "-")), Adam \(steps) steps (cosine from 0.01), median of \(seeds) seeds;")
print("u(x) = tanh(\(fixed(a, 0))(x − ½)), error on 1001 points (uniform N points in (0,1) hold \(fixed(0.2, 1)) · N within 0.1 of ½):\n\(table)")
try LinePlot(title: "PINN for −u″ = f: error against collocation points", xLabel: "collocation points N", yLabel: "max |u_θ − u|", logX: true, logY: true,
             series: [LinePlot.Series("uniform", uniformSeries), LinePlot.Series("residual-adaptive", adaptiveSeries)]).write(path: try options.path("error.svg"))
try LinePlot(title: "Solutions with 16 collocation points", xLabel: "x", yLabel: "u(x)", series: examplePlots).write(path: try options.path("solutions.svg"))
print("wrote error.svg, solutions.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
