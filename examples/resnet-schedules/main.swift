// CS189 homework 7, question 4: ResNet-18 (CIFAR form) with random crops (padding 4) and horizontal
// flips; one epoch each with a constant, an annealed (× a decay factor every step) and a special
// learning-rate schedule, then the best one for more epochs; the network as a DOT diagram with each
// value's dimensions. CIFAR-10's binary batches with `--data DIR` (data_batch_N.bin, test_batch.bin);
// otherwise Fashion-MNIST padded to 32×32 (one channel). Like the homework's `--subset-train`
// flags, it trains on a subset: ResNet-18 is 0.56 GFLOP per 32×32 image forward.
// The homework's special schedule lives in its starter code, which the course text does not show;
// PyTorch's one-cycle schedule (warm-up then cosine decay) stands in for it.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "resnet-schedules", summary: "ResNet-18 with crop+flip augmentation under three learning-rate schedules")
let started = Date()
// Default: 64 training images (2 steps per epoch), 128 test images, the best schedule for 2 epochs, so the
// run stays under 2 minutes on 2 cores; --full: the homework's suggested subset (--subset-train 128),
// 256 test images, the best for 3 epochs (about 4 minutes); --quick: one step per schedule.
let trainCount = options.quick ? 32 : options.full ? 128 : 64, testCount = options.quick ? 32 : options.full ? 256 : 128, batch = 32
let extraEpochs = options.quick ? 0 : options.full ? 2 : 1

/// CIFAR-10 when `--data` holds its binary batches, else an IDX set padded to 32×32.
func loadSets() throws -> (train: ImageDataset, test: ImageDataset, source: String) {
    if let dir = options.dataDirectory, FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("test_batch.bin")) {
        let train = try CIFAR10.load(split: .train, directory: dir), test = try CIFAR10.load(split: .test, directory: dir)
        return (train.subset(Array(0..<min(trainCount, train.count))), test.subset(Array(0..<min(testCount, test.count))), "CIFAR-10 (\(dir))")
    }
    let data = try options.loadData(validation: 1, trainLimit: trainCount, testLimit: testCount)
    func padded(_ set: ImageDataset) -> ImageDataset {
        var images = [UInt8](repeating: 0, count: set.count * 1024)
        for i in 0..<set.count { for y in 0..<28 { for x in 0..<28 { images[i * 1024 + (y + 2) * 32 + x + 2] = set.images[i * 784 + y * 28 + x] } } }
        return ImageDataset(images: images, labels: set.labels, count: set.count, channels: 1, height: 32, width: 32, classNames: set.classNames)
    }
    return (padded(data.train), padded(data.test), "Fashion-MNIST padded to 32×32 (\(data.directory))")
}
let sets = try loadSets()
let channels = sets.train.channels
/// Random 32×32 crops of the image padded by 4 (zeros), and a horizontal flip with probability ½.
func augmented(_ set: ImageDataset, seed: UInt64) -> ImageDataset {
    var random = SplitMix64(seed: seed)
    var images = [UInt8](repeating: 0, count: set.images.count)
    let plane = 1024
    for i in 0..<set.count {
        let dy = Int(random.next() % 9) - 4, dx = Int(random.next() % 9) - 4, flip = random.next() & 1 == 1
        for c in 0..<channels { for y in 0..<32 { for x in 0..<32 {
            let sy = y + dy, sxRaw = x + dx
            guard (0..<32).contains(sy), (0..<32).contains(sxRaw) else { continue }
            let tx = flip ? 31 - x : x
            images[(i * channels + c) * plane + y * 32 + tx] = set.images[(i * channels + c) * plane + sy * 32 + sxRaw]
        } } }
    }
    return ImageDataset(images: images, labels: set.labels, count: set.count, channels: channels, height: 32, width: 32, classNames: set.classNames)
}
let model = resnet18(inputShape: [channels, 32, 32], classes: 10)

// The diagram: the forward graph at batch 1, every value with its shape.
let g = GraphBuilder()
g.output("logits", model.forward(g.input("images", [1, channels, 32, 32]), false))
let diagram = try g.build()
let dotPath = try options.path("resnet18.dot")
try diagram.dot(title: "resnet18").write(toFile: dotPath, atomically: true, encoding: .utf8)

let baseRate = 0.05, decay = 0.97
let stepsPerEpoch = trainCount / batch
enum Scheme: String, CaseIterable { case constant, annealed, special }
func rate(_ scheme: Scheme, step: Int, totalSteps: Int) -> Double {
    switch scheme {
    case .constant: return baseRate
    case .annealed: return baseRate * pow(decay, Double(step))                   // previous rate × decay, every step
    case .special: return LearningRateSchedule.oneCycle(rampFraction: 0.3).rate(base: 2 * baseRate, step: step, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }
}
/// Trains `epochs` epochs under `scheme` from the seed's initialisation; the test accuracy after each.
func run(_ scheme: Scheme, epochs: Int) throws -> (accuracies: [Double], seconds: Double, rates: [(x: Double, y: Double)]) {
    let trainer = ClassifierTrainer(model: model, optimizer: .sgd(momentum: 0.9, weightDecay: 5e-4), seed: options.seed)
    let clock = Date()
    var accuracies: [Double] = [], rates: [(x: Double, y: Double)] = [], step = 0
    for epoch in 0..<epochs {
        let data = augmented(sets.train, seed: options.seed &* 1000 &+ UInt64(epoch))
        let order = epochOrder(count: data.count, seed: options.seed, epoch: epoch)
        for s in 0..<stepsPerEpoch {
            let lr = rate(scheme, step: step, totalSteps: epochs * stepsPerEpoch)
            _ = try trainer.trainEpoch(data, order: Array(order[(s * batch)..<((s + 1) * batch)]), batchSize: batch, learningRate: lr)
            rates.append((Double(step), lr)); step += 1
        }
        accuracies.append(try trainer.evaluate(sets.test, batchSize: 100).accuracy)
    }
    return (accuracies, Date().timeIntervalSince(clock), rates)
}

print("ResNet-18 (\(model.summary)), \(sets.source): \(sets.train.count) training images (crop pad 4, flip), \(sets.test.count) test images;")
print("SGD momentum 0.9, weight decay 5e-4, batch \(batch); diagram \(dotPath) (\(diagram.nodes.count) nodes)")
var table = TextTable(["schedule", "epochs", "test accuracy", "train seconds", "images per second"])
var results: [(Scheme, Double)] = [], rateSeries: [LinePlot.Series] = [], fastest = Double.infinity
for scheme in Scheme.allCases {
    let r = try run(scheme, epochs: 1)
    table.add([scheme.rawValue, "1", fixed(r.accuracies[0]), fixed(r.seconds, 1), fixed(Double(stepsPerEpoch * batch) / r.seconds, 1)])
    results.append((scheme, r.accuracies[0])); fastest = min(fastest, r.seconds)
    rateSeries.append(LinePlot.Series(scheme.rawValue, r.rates, markers: false))
}
let best = results.max { $0.1 < $1.1 }!.0
var curve: [(x: Double, y: Double)] = []
if extraEpochs > 0 {
    let r = try run(best, epochs: 1 + extraEpochs)
    table.add(["\(best.rawValue) (best)", "\(1 + extraEpochs)", fixed(r.accuracies.last!), fixed(r.seconds, 1), fixed(Double((1 + extraEpochs) * stepsPerEpoch * batch) / r.seconds, 1)])
    curve = r.accuracies.enumerated().map { (Double($0 + 1), $1) }
}
print(table)
let rate = Double(stepsPerEpoch * batch) / fastest          // train seconds include the test pass
print("at the fastest rate here, \(fixed(rate, 1)) training images per second, one epoch of CIFAR-10's 50,000 images takes \(fixed(50_000 / rate / 3600, 2)) h")
try LinePlot(title: "Learning-rate schedules, one epoch of ResNet-18", xLabel: "step", yLabel: "learning rate", series: rateSeries).write(path: try options.path("schedules.svg"))
if !curve.isEmpty {
    try LinePlot(title: "ResNet-18, best schedule (\(best.rawValue))", xLabel: "epoch", yLabel: "test accuracy", series: [LinePlot.Series(best.rawValue, curve)])
        .write(path: try options.path("accuracy.svg"))
}
print("wrote resnet18.dot, schedules.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
