// Lecture 12: the fast gradient sign method of Goodfellow, Shlens &
// Szegedy (2015), x' = clip(x + ε·sign(∇ₓ loss), 0, 1), against LeNet-5 on Fashion-MNIST:
// test accuracy against ε, and the adversarial images.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "fgsm", summary: "FGSM adversarial examples against LeNet-5")
let started = Date()
let data = try options.loadData(trainLimit: options.quick ? 4_000 : nil, testLimit: options.quick ? 500 : nil)
let epochs = options.quick ? 1 : 3
let model = lenet5()
let trainer = ClassifierTrainer(model: model, optimizer: .sgd(momentum: 0.9), seed: options.seed)
for epoch in 0..<epochs {
    try trainer.trainEpoch(data.train, order: epochOrder(count: data.train.count, seed: options.seed, epoch: epoch),
                           batchSize: 64, learningRate: 0.01)
}
print("LeNet-5, \(epochs) epochs on \(data.train.count) images (\(fixed(Date().timeIntervalSince(started), 1)) s); attacking \(data.test.count) test images")

// The input gradient at each clean image, once; every ε moves along its sign.
let gradients = InputGradients(model: model, store: trainer.store)
let epsilons: [Double] = [0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]
let shown = [0, 0.05, 0.1, 0.2]                               // rows of the picture
let pixels = data.test.pixelsPerImage, batch = 500, columns = 12
var correct = [Int](repeating: 0, count: epsilons.count)
var pictureRows: [[UInt8]] = Array(repeating: [], count: shown.count)
var start = 0
while start < data.test.count {
    let indices = Array(start..<min(start + batch, data.test.count))
    let clean = try gradients.compute(data.test, indices: indices[...])
    var images = [Float](repeating: 0, count: indices.count * pixels)
    images.withUnsafeMutableBufferPointer { data.test.fillBatch(indices: indices[...], into: $0.baseAddress!, labels: nil) }
    let labels = indices.map { data.test.labels[$0] }
    for (e, epsilon) in epsilons.enumerated() {
        let adversarial = zip(images, clean.gradient).map { x, g in min(max(x + Float(epsilon) * (g > 0 ? 1 : g < 0 ? -1 : 0), 0), 1) }
        let logits = try gradients.compute(images: adversarial, labels: labels).logits
        for i in indices.indices {
            let row = logits[(i * 10)..<(i * 10 + 10)]
            if row.indices.max(by: { row[$0] < row[$1] })! - i * 10 == Int(labels[i]) { correct[e] += 1 }
        }
        if start == 0, let r = shown.firstIndex(of: epsilon) {
            pictureRows[r] = adversarial.prefix(columns * pixels).map { UInt8(($0 * 255).rounded()) }
        }
    }
    start += batch
}

var table = TextTable(["ε", "test accuracy"])
let accuracy = correct.map { Double($0) / Double(data.test.count) }
for (epsilon, a) in zip(epsilons, accuracy) { table.add([fixed(epsilon, 2), fixed(a)]) }
print("\n\(table)")
print("(Goodfellow et al. 2015, MNIST, ε = 0.25: a shallow softmax classifier 99.9% error, a maxout network 89.4%)")

let plot = LinePlot(title: "FGSM against LeNet-5 (Fashion-MNIST test set)", xLabel: "ε (pixel range 0–1)", yLabel: "test accuracy",
                    series: [LinePlot.Series("LeNet-5 under FGSM", zip(epsilons, accuracy).map { ($0, $1) })])
let plotPath = try options.path("accuracy.svg")
try plot.write(path: plotPath)

// Rows: ε = 0, 0.05, 0.1, 0.2; columns: the first test images.
let grid = ImageDataset(images: pictureRows.flatMap { $0 }, labels: [], count: shown.count * columns, channels: 1, height: 28, width: 28,
                        classNames: [])
let picturePath = try options.path("adversarial.png")
try ImageGrid(grid, rows: (0..<shown.count).map { r in Array((r * columns)..<((r + 1) * columns)) }, scale: 2).writePNG(path: picturePath)
print("wrote \(plotPath) and \(picturePath) (rows ε = \(shown.map { fixed($0, 2) }.joined(separator: ", "))); total \(fixed(Date().timeIntervalSince(started), 1)) s")
