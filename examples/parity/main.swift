// Berkeley CS189 homework 7, question 3 ("promises and pitfalls"): x uniform on {0, 1}^d, a hidden
// mask v* ∈ {0, 1}^d, labels y = (−1)^{v*ᵀx} (the parity of the bits v* selects), and the network
// f(x) = Σ_{i≤k} α_i max(0, w_iᵀx + b_i) + β.
//  (a) the exact construction (w_i = v*, biases −(2i − ½), −2i, −(2i + ½), weights 4, −8, 4, β = −1)
//      with k = 10d, checked on all 2^d inputs;
//  (b) gradient descent on the hinge loss max(0, 1 − y f(x)) for d = 5, 10, 30: the loss curves;
//  (c) why (b) fails for large d: the population gradient ∇R(p) hardly depends on v*; its variance
//      over all 2^d masks, E_v ‖∇R − E_v ∇R‖², against 2^−d.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "parity", summary: "a ReLU network that computes parity exactly, and gradient descent that cannot find it")
let started = Date()
var random = SplitMix64(seed: options.seed &+ 3)

/// The network's graph on a batch of n inputs: outputs `f`; with labels, the mean hinge loss `loss`,
/// and either the SGD update (`train`) or the gradient of every parameter (`grad.NAME`).
func network(d: Int, k: Int, n: Int, train: Bool = false, gradients: Bool = false) throws -> Graph {
    let g = GraphBuilder()
    let x = g.input("x", [n, d])
    let f = g.dense(relu(g.dense(x, k, name: "hidden")), 1, name: "out").reshaped([n])
    g.output("f", f)
    if train || gradients {
        let loss = hingeLoss(scores: f, targets: g.input("y", [n])).mean()
        g.output("loss", loss)
        let grads = g.gradients(of: loss, withRespectTo: g.parameters)
        if train { Optimizer.sgd(momentum: 0.9).appendUpdates(to: g, parameters: g.parameters, gradients: grads, learningRate: g.input("lr", .scalar)) }
        if gradients { for (p, grad) in zip(g.parameters, grads) { g.output("grad.\(g.graph.leafName(p.id)!)", grad) } }
    }
    return try g.build()
}
func bits(_ value: Int, _ d: Int) -> [Float] { (0..<d).map { Float((value >> $0) & 1) } }
func parity(_ x: ArraySlice<Float>, _ mask: [Float]) -> Float { zip(x, mask).reduce(0) { $0 + $1.0 * $1.1 }.truncatingRemainder(dividingBy: 2) == 0 ? 1 : -1 }
func randomMask(_ d: Int) -> [Float] { (0..<d).map { _ in Float(random.next() & 1) } }

// (a) The exact construction, every input.
var exactTable = TextTable(["d", "k = 10d", "units used", "|v*|", "inputs checked", "max |f(x) − y|"])
for d in options.quick ? [5, 10, 14] : [5, 10, 15, 20] {
    let k = 10 * d, mask = randomMask(d)
    let store = ParameterStore(seed: 0)
    let batch = min(1 << d, 1 << 14)
    let program = try Executable(graph: try network(d: d, k: k, n: batch), store: store)
    var w = [Float](repeating: 0, count: k * d), b = [Float](repeating: 0, count: k), alpha = [Float](repeating: 0, count: k)
    let used = 3 * (d / 2 + 1)
    for i in 0...(d / 2) {
        for (j, (bias, weight)) in [(-(2 * Float(i) - 0.5), Float(4)), (-2 * Float(i), -8), (-(2 * Float(i) + 0.5), 4)].enumerated() {
            let unit = 3 * i + j
            for c in 0..<d { w[unit * d + c] = mask[c] }
            b[unit] = bias; alpha[unit] = weight
        }
    }
    try store.set("hidden.weight", w); try store.set("hidden.bias", b)
    try store.set("out.weight", alpha); try store.set("out.bias", [-1])
    var worst: Float = 0
    for start in stride(from: 0, to: 1 << d, by: batch) {
        let x = (start..<(start + batch)).flatMap { bits($0, d) }
        try program.setInput("x", x)
        try program.run()
        let f = try program.output("f")
        for r in 0..<batch { worst = max(worst, Swift.abs(f[r] - parity(x[(r * d)..<((r + 1) * d)], mask))) }
    }
    exactTable.add(["\(d)", "\(k)", "\(used)", "\(Int(mask.reduce(0, +)))", "\(1 << d)", "\(worst)"])
}
print("(a) the exact construction on all 2^d inputs:\n\(exactTable)\n")

// (b) SGD with momentum on the hinge loss, fresh random inputs every step.
let iterations = options.quick ? 1_500 : 50_000, batch = 128, lr = 0.01
var curves: [LinePlot.Series] = []
var trainTable = TextTable(["d", "k", "iterations", "first-500 loss", "last-500 loss", "accuracy (fresh 4096)"])
for d in [5, 10, 30] {
    let k = 10 * d, mask = randomMask(d)
    let store = ParameterStore(seed: options.seed &+ UInt64(d))
    let step = try Executable(graph: try network(d: d, k: k, n: batch, train: true), store: store)
    try step.setInput("lr", [Float(lr)])
    var losses: [Double] = [], points: [(x: Double, y: Double)] = [], window = 0.0
    let every = max(1, iterations / 200)
    for it in 0..<iterations {
        let x = (0..<(batch * d)).map { _ in Float(random.next() & 1) }
        try step.setInput("x", x)
        try step.setInput("y", (0..<batch).map { parity(x[($0 * d)..<(($0 + 1) * d)], mask) })
        try step.run()
        let loss = Double(try step.output("loss")[0])
        losses.append(loss); window += loss
        if (it + 1) % every == 0 { points.append((Double(it + 1), window / Double(every))); window = 0 }
    }
    let test = try Executable(graph: try network(d: d, k: k, n: 4096), store: store)
    let x = (0..<(4096 * d)).map { _ in Float(random.next() & 1) }
    try test.setInput("x", x)
    try test.run()
    let f = try test.output("f")
    let correct = (0..<4096).filter { (f[$0] >= 0 ? 1 : -1) == parity(x[($0 * d)..<(($0 + 1) * d)], mask) }.count
    let window500 = min(500, iterations / 2)
    trainTable.add(["\(d)", "\(k)", "\(iterations)", fixed(losses.prefix(window500).reduce(0, +) / Double(window500)),
                    fixed(losses.suffix(window500).reduce(0, +) / Double(window500)), fixed(Double(correct) / 4096)])
    curves.append(LinePlot.Series("d = \(d)", points, markers: false))
}
print("(b) SGD (momentum 0.9, lr \(lr), batch \(batch) of fresh inputs) on the hinge loss:\n\(trainTable)\n")

// (c) The population gradient over every mask v*, at one random p per d.
var varianceTable = TextTable(["d", "masks", "E_v ‖∇R − E_v∇R‖²", "‖E_v ∇R‖²", "variance · 2^d"])
var variancePoints: [(x: Double, y: Double)] = [], reference: [(x: Double, y: Double)] = []
for d in options.quick ? Array(2...7) : Array(2...10) {
    let n = 1 << d, k = 10 * d
    let program = try Executable(graph: try network(d: d, k: k, n: n, gradients: true), store: ParameterStore(seed: options.seed &+ 100 &+ UInt64(d)))
    let x = (0..<n).flatMap { bits($0, d) }
    try program.setInput("x", x)
    let names = ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    var gradientsPerMask: [[Double]] = []
    for v in 0..<n {
        let mask = bits(v, d)
        try program.setInput("y", (0..<n).map { parity(x[($0 * d)..<(($0 + 1) * d)], mask) })
        try program.run()
        gradientsPerMask.append(try names.flatMap { try program.output("grad.\($0)").map(Double.init) })
    }
    let size = gradientsPerMask[0].count
    let mean = (0..<size).map { j in gradientsPerMask.reduce(0) { $0 + $1[j] } / Double(n) }
    let variance = gradientsPerMask.reduce(0.0) { total, g in total + zip(g, mean).reduce(0) { $0 + pow($1.0 - $1.1, 2) } } / Double(n)
    varianceTable.add(["\(d)", "\(n)", String(format: "%.3e", variance), String(format: "%.3e", mean.reduce(0) { $0 + $1 * $1 }),
                       fixed(variance * Double(n), 4)])
    variancePoints.append((Double(d), variance))
}
let c = variancePoints.first!.y * 4
reference = variancePoints.map { ($0.x, c * pow(2, -$0.x)) }
print("(c) the population gradient (all 2^d inputs) at a random p, over all 2^d masks v*:\n\(varianceTable)")

try LinePlot(title: "Hinge loss of SGD on parity, k = 10d", xLabel: "iteration", yLabel: "mean hinge loss", series: curves).write(path: try options.path("loss.svg"))
try LinePlot(title: "Variance of the population gradient across targets", xLabel: "d", yLabel: "E_v ‖∇R − E_v ∇R‖²", logY: true,
             series: [LinePlot.Series("Kiln, all masks", variancePoints), LinePlot.Series("C · 2^−d", reference, dashed: true, markers: false)])
    .write(path: try options.path("gradient-variance.svg"))
print("wrote loss.svg, gradient-variance.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
