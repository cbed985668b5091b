// Oxford lecture 11 (what CNN filters learn): a small CNN trained on Fashion-MNIST; its first-layer
// filters as an image, and inputs that maximise chosen units, found by gradient ascent on the
// input (Kiln's gradient with respect to a graph input): each class score of the last layer and
// a few channels of the second convolution (its centre unit), regularised by an L2 penalty,
// clipping to [0, 1] and a light blur every few steps.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "filters", summary: "first-layer filters of a trained CNN and inputs that maximise chosen units")
let started = Date()
let data = try options.loadData(trainLimit: options.quick ? 3_000 : 30_000, testLimit: options.quick ? 1_000 : nil)
let epochs = options.quick ? 1 : 2, firstChannels = 16, secondChannels = 32
/// The CNN; `probe` (when given) receives the second convolution's output [N, 32, 10, 10].
func cnnForward(_ images: Tensor, probe: ((Tensor) -> Void)? = nil) -> Tensor {
    let g = images.builder
    var h = maxPool(relu(g.conv2d(images, outChannels: firstChannels, kernel: 5, padding: 2, name: "conv1")), 2)
    let second = g.conv2d(h, outChannels: secondChannels, kernel: 5, name: "conv2")
    probe?(second)
    h = maxPool(relu(second), 2)
    h = relu(g.dense(h.flatten(), 128, name: "fc1"))
    return g.dense(h, 10, name: "fc2")
}
let model = ClassifierModel(name: "filters-cnn", summary: "conv 16@5x5, pool, conv 32@5x5, pool, 128-10", inputShape: [1, 28, 28], classes: 10) { x, _ in cnnForward(x) }
let trainer = ClassifierTrainer(model: model, optimizer: .sgd(momentum: 0.9), seed: options.seed)
for epoch in 0..<epochs {
    try trainer.trainEpoch(data.train, order: epochOrder(count: data.train.count, seed: options.seed, epoch: epoch), batchSize: 64, learningRate: 0.01)
}
let accuracy = try trainer.evaluate(data.test).accuracy
print("CNN conv \(firstChannels)@5×5 – conv \(secondChannels)@5×5 – 128 – 10, \(epochs) epochs on \(data.train.count) images: test accuracy \(fixed(accuracy)) on \(data.test.count)")

/// Pixels of several grey images side by side, each scaled by `scale`, separated by white gaps.
struct Canvas {
    var width: Int, height: Int, pixels: [UInt8]
    init(width: Int, height: Int) { self.width = width; self.height = height; pixels = [UInt8](repeating: 255, count: width * height) }
    mutating func draw(_ values: [Double], side: Int, at x0: Int, _ y0: Int, scale: Int, symmetric: Bool) {
        let lo = values.min()!, hi = values.max()!, m = max(Swift.abs(lo), Swift.abs(hi), 1e-12)
        for y in 0..<(side * scale) { for x in 0..<(side * scale) {
            let v = values[(y / scale) * side + x / scale]
            let t = symmetric ? 0.5 + 0.5 * v / m : (v - lo) / max(hi - lo, 1e-12)
            pixels[(y0 + y) * width + x0 + x] = UInt8(max(0, min(255, t * 255)))
        } }
    }
}

// First-layer filters, grey = 0, white positive, black negative.
let weights = trainer.store["conv1.weight"]!.values.map(Double.init)
let filterScale = 8, gap = 4, filterSide = 5 * filterScale
var filters = Canvas(width: 8 * (filterSide + gap) + gap, height: 2 * (filterSide + gap) + gap)
for f in 0..<firstChannels {
    filters.draw(Array(weights[(f * 25)..<((f + 1) * 25)]), side: 5, at: gap + (f % 8) * (filterSide + gap), gap + (f / 8) * (filterSide + gap), scale: filterScale, symmetric: true)
}
let filtersPath = try options.path("conv1-filters.png")
try PNG.write(path: filtersPath, width: filters.width, height: filters.height, pixels: filters.pixels)

// Activation maximisation: 10 class scores and 10 conv2 channels (centre unit), one image each, one graph.
let units = 20, pixels = 784
let g = GraphBuilder()
let x = g.input("x", [units, 1, 28, 28])
var conv2: Tensor?
let logits = cnnForward(x) { conv2 = $0 }
var select = [Double](repeating: 0, count: units * 10), selectChannel = [Double](repeating: 0, count: units * secondChannels * 100)
for c in 0..<10 { select[c * 10 + c] = 1 }
for k in 0..<10 { selectChannel[((10 + k) * secondChannels + k * 3) * 100 + 5 * 10 + 5] = 1 }    // channels 0, 3, …, 27 at (5, 5)
let objective = (logits * g.constant(values: select, shape: [units, 10])).sum()
    + (conv2! * g.constant(values: selectChannel, shape: [units, secondChannels, 10, 10])).sum()
g.output("units", (logits * g.constant(values: select, shape: [units, 10])).sum(axis: 1)
                  + (conv2! * g.constant(values: selectChannel, shape: [units, secondChannels, 10, 10])).sum(axes: [1, 2, 3]))
g.output("grad", g.gradients(of: objective - 0.05 * square(x - 0.5).sum(), withRespectTo: [x])[0])
let ascent = try Executable(graph: try g.build(), store: trainer.store)
var random = SplitMix64(seed: options.seed &+ 21)
var images = gaussianSamples(units * pixels, using: &random).map { 0.5 + 0.05 * $0 }
func unitValues() throws -> [Double] { try ascent.setInput("x", images.map(Float.init)); try ascent.run(); return try ascent.output("units").map(Double.init) }
let before = try unitValues()
let steps = options.quick ? 60 : 300
for step in 0..<steps {
    try ascent.setInput("x", images.map(Float.init))
    try ascent.run()
    let grad = try ascent.output("grad").map(Double.init)
    for u in 0..<units {                                      // normalised step per image
        let range = (u * pixels)..<((u + 1) * pixels)
        let norm = grad[range].reduce(0) { $0 + $1 * $1 }.squareRoot()
        for i in range { images[i] = min(1, max(0, images[i] + 2.0 * grad[i] / max(norm, 1e-12))) }
    }
    if step % 10 == 9 && step < steps - 10 {                  // a light 3×3 blur keeps high frequencies down
        var blurred = images
        for u in 0..<units { for y in 0..<28 { for xx in 0..<28 {
            var s = 0.0, n = 0.0
            for dy in -1...1 { for dx in -1...1 where (0..<28).contains(y + dy) && (0..<28).contains(xx + dx) {
                let w = dx == 0 && dy == 0 ? 4.0 : 1.0; s += w * images[u * pixels + (y + dy) * 28 + xx + dx]; n += w } }
            blurred[u * pixels + y * 28 + xx] = s / n
        } } }
        images = blurred
    }
}
let after = try unitValues()
var table = TextTable(["unit", "value at the start", "after ascent", "softmax of its class"])
let classNames = data.train.classNames
let probabilities = try trainer.logits(ImageDataset(images: images.prefix(10 * pixels).map { UInt8(max(0, min(255, ($0 * 255).rounded()))) },
                                                    labels: (0..<10).map(Int32.init), count: 10, channels: 1, height: 28, width: 28, classNames: classNames), batchSize: 10)
for u in 0..<units {
    var p = ""
    if u < 10 {
        let row = probabilities[u].map(Double.init), m = row.max()!
        p = fixed(exp(row[u] - m) / row.reduce(0) { $0 + exp($1 - m) }, 3)
    }
    table.add([u < 10 ? "class \(classNames[u])" : "conv2 channel \((u - 10) * 3), centre", fixed(before[u], 2), fixed(after[u], 2), p])
}
print("gradient ascent on the input, \(steps) steps from grey noise:\n\(table)")
let scale = 3, side = 28 * scale
var canvas = Canvas(width: 10 * (side + gap) + gap, height: 2 * (side + gap) + gap)
for u in 0..<units { canvas.draw(Array(images[(u * pixels)..<((u + 1) * pixels)]), side: 28, at: gap + (u % 10) * (side + gap), gap + (u / 10) * (side + gap), scale: scale, symmetric: false) }
let ascentPath = try options.path("maximising-inputs.png")
try PNG.write(path: ascentPath, width: canvas.width, height: canvas.height, pixels: canvas.pixels)
print("wrote \(filtersPath), \(ascentPath); total \(fixed(Date().timeIntervalSince(started), 1)) s")
