// Oxford lecture 13 (generative models). First part: a linear autoencoder x ↦ D E x trained by
// gradient descent on the squared reconstruction error learns the span of the top k principal
// directions (Baldi & Hornik 1989): its error equals the truncated SVD's (Eckart–Young), and the
// subspace of D equals the top-k right singular vectors of the centred data, up to rotation.
// Second part: the zoo's class-conditional VAE (cvae), GAN (cgan) and DDPM (ddpm) trained on
// 500 stand-in glyph images of the generative-models assignment (`kiln make-glyphs`), their samples
// judged by a glyph CNN trained on the same real images: the share it recognises as the stated class.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "generative", summary: "a linear autoencoder against the SVD; VAE, GAN and DDPM glyph samples")
let started = Date()
let count = options.quick ? 500 : options.full ? 5_000 : 2_000
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
let maxK = options.quick ? 8 : options.full ? 32 : 16
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
    let batch = 250, steps = options.quick ? 500 : options.full ? 6_000 : 2_000
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
for k in options.quick ? [2, 8] : options.full ? [2, 4, 8, 16, 32] : [2, 8, 16] {
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
let linearSeconds = Date().timeIntervalSince(started)

// Second part: generative models of the glyphs, judged by a classifier trained on the real images.
let glyphs = CourseGlyphs.make(count: options.quick ? 150 : 500, seed: options.seed &+ 11)
let heldOut = CourseGlyphs.make(count: options.quick ? 150 : 1_000, seed: options.seed &+ 12)
let names = CourseGlyphs.classNames
let judge = ClassifierTrainer(model: glyphCNN(), optimizer: .adam(), seed: options.seed)
for epoch in 0..<(options.quick ? 3 : 30) {
    try judge.trainEpoch(glyphs, order: epochOrder(count: glyphs.count, seed: options.seed, epoch: epoch), batchSize: 32, learningRate: 0.003)
}
let judgeAccuracy = try judge.evaluate(heldOut).accuracy
print("\njudge: glyph-cnn trained on the \(glyphs.count) real images, \(fixed(judgeAccuracy)) accuracy on \(heldOut.count) held-out real ones")
let perClass = options.quick ? 10 : 100
var genTable = TextTable(["model", "epochs", "first → last epoch loss", "train s", "sample s", "recognised as their class"])
var lossSeries: [LinePlot.Series] = []
var blocks: [ImageDataset] = [glyphs]
for (name, epochs, batch) in [("cvae", options.quick ? 2 : 60, 32), ("cgan", options.quick ? 1 : 10, 64), ("ddpm", options.quick ? 2 : 150, 64)] {
    let model = try Zoo.generative(name, imageShape: [1, 28, 28], classes: names.count)
    let trainer = GenerativeTrainer(model: model, seed: options.seed)
    let rate = trainer.defaultLearningRate
    var losses: [GenerativeLosses] = []
    let clock = Date()
    for epoch in 0..<epochs {
        losses.append(try trainer.trainEpoch(glyphs, order: epochOrder(count: glyphs.count, seed: options.seed, epoch: epoch), batchSize: batch,
                                             learningRate: { _ in rate }))
    }
    let trainSeconds = Date().timeIntervalSince(clock)
    let sampleClock = Date()
    let samples = try trainer.samplePerClass(perClass, seed: options.seed &+ 5, classNames: names)
    let sampleSeconds = Date().timeIntervalSince(sampleClock)
    let recognised = try judge.evaluate(samples).accuracy
    try ImageGrid(checking: samples, perClass: 10, scale: 2).writePNG(path: try options.path("\(name)-samples.png"))
    let lossText = model.family == .gan
        ? "G \(fixed(losses.first!.main, 3)) → \(fixed(losses.last!.main, 3)), D \(fixed(losses.first!.discriminator!, 3)) → \(fixed(losses.last!.discriminator!, 3))"
        : "\(fixed(losses.first!.main, 3)) → \(fixed(losses.last!.main, 3))"
    genTable.add([name, "\(epochs)", lossText, fixed(trainSeconds, 1), fixed(sampleSeconds, 1), fixed(recognised * 100, 1) + " %"])
    let what = model.family == .vae ? "negative ELBO" : model.family == .gan ? "generator" : "noise MSE"
    lossSeries.append(LinePlot.Series("\(name) \(what)", losses.enumerated().map { (Double($0 + 1), $1.main / losses[0].main) }, markers: false))
    if model.family == .gan {
        lossSeries.append(LinePlot.Series("cgan discriminator", losses.enumerated().map { (Double($0 + 1), $1.discriminator! / losses[0].discriminator!) },
                                          dashed: true, markers: false))
    }
    blocks.append(samples)
}
print("class-conditional generators on \(glyphs.count) glyph images (\(perClass) samples per class judged):\n\(genTable)")
try LinePlot(title: "Glyph generators: training loss relative to epoch 1", xLabel: "epoch", yLabel: "loss / loss at epoch 1", logY: true,
             series: lossSeries).write(path: try options.path("generator-losses.svg"))
// One picture: real images, then each model's samples, one row per class (A, B, C) and ten columns.
var images: [UInt8] = [], labels: [Int32] = [], rows: [[Int]] = []
for block in blocks {
    for c in 0..<Int32(names.count) {
        rows.append((0..<block.count).filter { block.labels[$0] == c }.prefix(10).map { images.count / 784 + $0 })
    }
    images += block.images; labels += block.labels
}
let all = ImageDataset(images: images, labels: labels, count: labels.count, channels: 1, height: 28, width: 28, classNames: names)
try ImageGrid(all, rows: rows, scale: 2).writePNG(path: try options.path("glyph-samples.png"))
print("wrote linear-autoencoder.svg, generator-losses.svg, glyph-samples.png (rows: real, cvae, cgan, ddpm; A, B, C each) and each model's samples in \(options.outputDirectory)")
print("linear autoencoder part \(fixed(linearSeconds, 1)) s; total \(fixed(Date().timeIntervalSince(started), 1)) s")
