// Oxford lecture 13 (generative models), first part: a linear autoencoder x ↦ D E x trained by
// gradient descent on the squared reconstruction error learns the span of the top k principal
// directions (Baldi & Hornik 1989): its error equals the truncated SVD's (Eckart–Young), and the
// subspace of D equals the top-k right singular vectors of the centred data, up to rotation.
// Not here yet (issue 14): VAE and GAN samples, and a DDPM in the zoo.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "generative", summary: "a linear autoencoder against the SVD")
let started = Date()
let count = options.quick ? 500 : 5_000
let data = try options.loadData(validation: 1, trainLimit: count, testLimit: 1)
let d = 784
var x = [Double](repeating: 0, count: count * d)
for i in 0..<(count * d) { x[i] = Double(data.train.images[i]) / 255 }
var mean = [Double](repeating: 0, count: d)
for i in 0..<count { for j in 0..<d { mean[j] += x[i * d + j] / Double(count) } }
for i in 0..<count { for j in 0..<d { x[i * d + j] -= mean[j] } }
// Covariance C = XᵀX / n and its top eigenvectors by orthogonal (subspace) iteration.
var cov = [Double](repeating: 0, count: d * d)
x.withUnsafeBufferPointer { xp in
    for i in 0..<count { let row = xp.baseAddress! + i * d
        for a in 0..<d where row[a] != 0 { let v = row[a] / Double(count); for b in a..<d { cov[a * d + b] += v * row[b] } } }
}
for a in 0..<d { for b in 0..<a { cov[a * d + b] = cov[b * d + a] } }
let maxK = options.quick ? 8 : 32
var random = SplitMix64(seed: options.seed &+ 4)
var q = Matrix(rows: d, columns: maxK, using: &random).orthonormalized
for _ in 0..<(options.quick ? 40 : 150) {
    var next = Matrix(rows: d, columns: maxK)
    for a in 0..<d { for b in 0..<d { let c = cov[a * d + b]; if c == 0 { continue }; for k in 0..<maxK { next[a, k] += c * q[b, k] } } }
    q = next.orthonormalized
}
/// The Rayleigh quotient qₖᵀ C qₖ: the k-th eigenvalue once converged.
func rayleigh(_ k: Int) -> Double {
    var s = 0.0
    for a in 0..<d { var row = 0.0; for b in 0..<d { row += cov[a * d + b] * q[b, k] }; s += q[a, k] * row }
    return s
}
let eigen = (0..<maxK).map(rayleigh)
var total = 0.0
for a in 0..<d { total += cov[a * d + a] }

/// Trains E [d, k], D [k, d] by Adam on the mean squared reconstruction of the centred images.
func autoencoder(k: Int) throws -> (error: Double, decoder: [Float]) {
    let batch = 250, steps = options.quick ? 1_000 : 6_000
    let g = GraphBuilder()
    let input = g.input("x", [batch, d])
    let e = g.parameter("E", [d, k], initializer: .normal(mean: 0, std: 0.01)), dec = g.parameter("D", [k, d], initializer: .normal(mean: 0, std: 0.01))
    let loss = square(input.matmul(e).matmul(dec) - input).sum() / Double(batch)
    g.output("loss", loss)
    Optimizer.adam().appendUpdates(to: g, parameters: [e, dec], gradients: g.gradients(of: loss, withRespectTo: [e, dec]), learningRate: g.input("lr", .scalar))
    let store = ParameterStore(seed: options.seed &+ UInt64(k))
    let step = try Executable(graph: try g.build(), store: store)
    let floats = x.map(Float.init)
    for s in 0..<steps {
        let start = (s % (count / batch)) * batch
        try step.setInput("x", Array(floats[(start * d)..<((start + batch) * d)]))
        try step.setInput("lr", [Float(0.003 * 0.5 * (1 + cos(Double.pi * Double(s) / Double(steps))))])
        try step.run()
    }
    // Error over all images with the final weights (host, float64).
    let eW = store["E"]!.values.map(Double.init), dW = store["D"]!.values.map(Double.init)
    var err = 0.0
    for i in 0..<count {
        var code = [Double](repeating: 0, count: k)
        for j in 0..<d where x[i * d + j] != 0 { for c in 0..<k { code[c] += x[i * d + j] * eW[j * k + c] } }
        for j in 0..<d { var r = 0.0; for c in 0..<k { r += code[c] * dW[c * d + j] }; err += pow(r - x[i * d + j], 2) }
    }
    return (err / Double(count), store["D"]!.values)
}
var table = TextTable(["k", "autoencoder error", "SVD error Σ_{i>k} λ_i", "ratio", "largest principal angle (°)"])
var aePoints: [(x: Double, y: Double)] = [], svdPoints: [(x: Double, y: Double)] = []
for k in options.quick ? [2, 8] : [2, 4, 8, 16, 32] {
    let ae = try autoencoder(k: k)
    let svd = total - eigen.prefix(k).reduce(0, +)
    // Principal angles between span(Dᵀ) and the top-k eigenvectors: singular values of Q_kᵀ orth(Dᵀ).
    let basis = Matrix(rows: d, columns: k, values: (0..<d).flatMap { j in (0..<k).map { c in Double(ae.decoder[c * d + j]) } }).orthonormalized
    let top = Matrix(rows: d, columns: k, values: (0..<d).flatMap { a in (0..<k).map { q[a, $0] } })
    let overlap = top.transposed * basis                                    // k × k; its smallest singular value is cos θ_max
    let gram = overlap.transposed * overlap
    var v = Matrix(rows: k, columns: 1, values: [Double](repeating: 1, count: k)), lambda = 0.0
    let shift = 1.0                                                          // smallest eigenvalue of gram via power iteration on I − gram
    for _ in 0..<500 { var w = v; let gv = gram * v; for i in 0..<k { w[i, 0] = shift * v[i, 0] - gv[i, 0] }; lambda = w.norm / v.norm; v = (1 / w.norm) * w }
    let cosMin = max(0, shift - lambda).squareRoot()
    table.add(["\(k)", fixed(ae.error, 4), fixed(svd, 4), fixed(ae.error / svd, 4), fixed(acos(min(1, cosMin)) * 180 / Double.pi, 2)])
    aePoints.append((Double(k), ae.error)); svdPoints.append((Double(k), svd))
}
print("linear autoencoder (Adam, batches of 250) on \(count) centred Fashion-MNIST images against the truncated SVD (mean squared error per image):\n\(table)")
try LinePlot(title: "Linear autoencoder against the truncated SVD", xLabel: "code size k", yLabel: "reconstruction error per image", logX: true, logY: true,
             series: [LinePlot.Series("linear autoencoder (Adam)", aePoints), LinePlot.Series("SVD: Σ_{i>k} λ_i", svdPoints, dashed: true)]).write(path: try options.path("linear-autoencoder.svg"))
print("wrote linear-autoencoder.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
