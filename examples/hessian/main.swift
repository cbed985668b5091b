// Oxford lectures 9–10 (loss landscapes, the Hessian's spectrum, batch norm and smoothness): the
// largest eigenvalues of the Hessian of the training loss of an MLP on Fashion-MNIST, computed
// without forming the Hessian: Hessian-vector products Hv = ∇(∇L · v) are a graph Kiln gets by
// differentiating its own gradient, and Lanczos on them gives the top of the spectrum.
// Before and after training, for the same MLP with and without batch norm.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "hessian", summary: "top Hessian eigenvalues by Hessian-vector products and Lanczos, before and after training, with and without batch norm")
let started = Date()
let data = try options.loadData(validation: 5_000, trainLimit: options.quick ? 3_000 : 20_000, testLimit: 1)
let hidden = 100, classes = 10, pixels = data.train.pixelsPerImage
let curvatureBatch = options.quick ? 256 : 1_000               // the loss whose Hessian is taken: a fixed set of training images
let lanczosSteps = options.quick ? 12 : 30, epochs = options.quick ? 1 : 3, batch = 64

func mlp(_ g: GraphBuilder, _ x: Tensor, batchNorm: Bool, training: Bool) -> Tensor {
    var h = x
    for i in 0..<2 {
        h = g.dense(h, hidden, name: "fc\(i)")
        if batchNorm { h = g.batchNorm(h, name: "bn\(i)", training: training) }
        h = relu(h)
    }
    return g.dense(h, classes, name: "out")
}
func images(_ set: ImageDataset, _ indices: some Sequence<Int>) -> [Float] {
    indices.flatMap { i in set.images[(i * pixels)..<((i + 1) * pixels)].map { Float($0) / 255 } }
}

/// Hessian-vector products of the mean cross-entropy on a fixed batch: inputs `v.NAME`, outputs `hv.NAME`.
final class HessianOperator {
    let program: Executable
    let names: [String], sizes: [Int]
    init(store: ParameterStore, batchNorm: Bool) throws {
        let g = GraphBuilder()
        let logits = mlp(g, g.input("x", [curvatureBatch, pixels]), batchNorm: batchNorm, training: true)
        let loss = softmaxCrossEntropy(logits, labels: g.input("labels", [curvatureBatch], dtype: .int32)).mean()
        let parameters = g.parameters
        let grads = g.gradients(of: loss, withRespectTo: parameters)
        names = parameters.map { g.graph.leafName($0.id)! }
        sizes = parameters.map { $0.shape.count }
        var dot: Tensor?
        for (p, grad) in zip(parameters, grads) {
            let term = (grad * g.input("v.\(g.graph.leafName(p.id)!)", p.shape)).sum()
            dot = dot.map { $0 + term } ?? term
        }
        for (name, hv) in zip(names, g.gradients(of: dot!, withRespectTo: parameters)) { g.output("hv.\(name)", hv) }
        g.output("loss", loss)
        program = try Executable(graph: try g.build(), store: store)
        try program.setInput("x", images(data.train, 0..<curvatureBatch))
        try program.setInput("labels", Array(data.train.labels[0..<curvatureBatch]))
    }
    func callAsFunction(_ v: [Double]) throws -> [Double] {
        var offset = 0
        for (name, size) in zip(names, sizes) { try program.setInput("v.\(name)", v[offset..<(offset + size)].map(Float.init)); offset += size }
        try program.run()
        return try names.flatMap { try program.output("hv.\($0)").map(Double.init) }
    }
    var dimension: Int { sizes.reduce(0, +) }
}

/// Eigenvalues of the symmetric tridiagonal matrix (diagonal α, off-diagonal β), by Sturm bisection.
func tridiagonalEigenvalues(_ alpha: [Double], _ beta: [Double]) -> [Double] {
    let n = alpha.count
    let bound = (0..<n).map { i in Swift.abs(alpha[i]) + (i > 0 ? Swift.abs(beta[i - 1]) : 0) + (i < n - 1 ? Swift.abs(beta[i]) : 0) }.max()!
    func countBelow(_ x: Double) -> Int {           // eigenvalues < x: negative pivots of T − xI
        var count = 0, d = 1.0
        for i in 0..<n {
            d = alpha[i] - x - (i > 0 ? beta[i - 1] * beta[i - 1] / d : 0)
            if d == 0 { d = 1e-300 }
            if d < 0 { count += 1 }
        }
        return count
    }
    return (0..<n).map { k in
        var (lo, hi) = (-bound, bound)
        for _ in 0..<100 { let mid = (lo + hi) / 2; if countBelow(mid) > k { hi = mid } else { lo = mid } }
        return (lo + hi) / 2
    }.reversed()
}
/// The top eigenvalues by Lanczos with full reorthogonalisation, and the top one by power iteration.
func topEigenvalues(_ h: HessianOperator, seed: UInt64) throws -> (lanczos: [Double], power: Double) {
    var random = SplitMix64(seed: seed)
    let n = h.dimension
    func normalised(_ v: [Double]) -> [Double] { let s = v.reduce(0) { $0 + $1 * $1 }.squareRoot(); return v.map { $0 / s } }
    func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
    var basis = [normalised(gaussianSamples(n, using: &random))]
    var alpha: [Double] = [], beta: [Double] = []
    for j in 0..<lanczosSteps {
        var w = try h(basis[j])
        alpha.append(dot(w, basis[j]))
        for q in basis { let c = dot(w, q); for i in 0..<n { w[i] -= c * q[i] } }
        let norm = dot(w, w).squareRoot()
        if j == lanczosSteps - 1 || norm < 1e-10 { break }
        beta.append(norm)
        basis.append(w.map { $0 / norm })
    }
    var v = normalised(gaussianSamples(n, using: &random)), lambda = 0.0
    for _ in 0..<lanczosSteps { let w = try h(v); lambda = dot(w, v); v = normalised(w) }
    return (tridiagonalEigenvalues(alpha, Array(beta.prefix(alpha.count - 1))), lambda)
}

func train(store: ParameterStore, batchNorm: Bool) throws -> (trainLoss: Double, accuracy: Double) {
    let g = GraphBuilder()
    let logits = mlp(g, g.input("x", [batch, pixels]), batchNorm: batchNorm, training: true)
    let loss = softmaxCrossEntropy(logits, labels: g.input("labels", [batch], dtype: .int32)).mean()
    g.output("loss", loss)
    Optimizer.sgd(momentum: 0.9).appendUpdates(to: g, parameters: g.parameters, gradients: g.gradients(of: loss, withRespectTo: g.parameters),
                                               learningRate: g.input("lr", .scalar))
    let step = try Executable(graph: try g.build(), store: store)
    try step.setInput("lr", [Float(0.01)])
    var last = 0.0
    for epoch in 0..<epochs {
        let order = epochOrder(count: data.train.count, seed: options.seed, epoch: epoch)
        var total = 0.0, steps = 0
        for start in stride(from: 0, to: order.count - batch + 1, by: batch) {
            let indices = order[start..<(start + batch)]
            try step.setInput("x", images(data.train, indices))
            try step.setInput("labels", indices.map { data.train.labels[$0] })
            try step.run()
            total += Double(try step.output("loss")[0]); steps += 1
        }
        last = total / Double(steps)
    }
    let e = GraphBuilder()
    let evalBatch = 1_000
    let predicted = mlp(e, e.input("x", [evalBatch, pixels]), batchNorm: batchNorm, training: false)
    e.output("logits", predicted)
    let evaluate = try Executable(graph: try e.build(), store: store)
    var correct = 0
    for start in stride(from: 0, to: data.validation.count - evalBatch + 1, by: evalBatch) {
        try evaluate.setInput("x", images(data.validation, start..<(start + evalBatch)))
        try evaluate.run()
        let out = try evaluate.output("logits")
        for r in 0..<evalBatch {
            let row = out[(r * classes)..<((r + 1) * classes)]
            if Int32(row.firstIndex(of: row.max()!)! - r * classes) == data.validation.labels[start + r] { correct += 1 }
        }
    }
    return (last, Double(correct) / Double(data.validation.count / evalBatch * evalBatch))
}

var table = TextTable(["network", "when", "loss on the batch", "λ₁ (Lanczos)", "λ₁ (power)", "λ₂", "λ₃", "λ_min (Lanczos)", "validation accuracy"])
var spectra: [LinePlot.Series] = []
for batchNorm in [false, true] {
    let store = ParameterStore(seed: options.seed &+ 5)
    let name = batchNorm ? "MLP + batch norm" : "MLP"
    var accuracy = ""
    for when in ["initialisation", "after training"] {
        if when == "after training" { let r = try train(store: store, batchNorm: batchNorm); accuracy = fixed(r.accuracy) }
        let h = try HessianOperator(store: store, batchNorm: batchNorm)
        let top = try topEigenvalues(h, seed: options.seed &+ 9)
        let loss = Double(try h.program.output("loss")[0])
        table.add([name, when, fixed(loss), fixed(top.lanczos[0], 3), fixed(top.power, 3), fixed(top.lanczos[1], 3), fixed(top.lanczos[2], 3),
                   fixed(top.lanczos.last!, 3), accuracy])
        spectra.append(LinePlot.Series("\(name), \(when)", top.lanczos.prefix(10).enumerated().map { (Double($0 + 1), max($1, 1e-4)) }, dashed: when == "initialisation"))
    }
}
print("Hessian of the mean cross-entropy on \(curvatureBatch) training images, MLP \(pixels)-\(hidden)-\(hidden)-\(classes) (ReLU);")
print("Lanczos, \(lanczosSteps) Hessian-vector products; training: SGD momentum 0.9, lr 0.01, batch \(batch), \(epochs) epochs on \(data.train.count) images:\n\(table)")
try LinePlot(title: "Top of the Hessian spectrum (Lanczos)", xLabel: "index i", yLabel: "eigenvalue λ_i", logY: true, series: spectra)
    .write(path: try options.path("spectrum.svg"))
print("wrote spectrum.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
