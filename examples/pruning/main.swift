// Oxford lecture 15 (sparsity and efficient fine-tuning):
//  1. lottery tickets (Frankle & Carbin 2019, with rewinding as in Frankle et al. 2020): train
//     LeNet-300-100 on Fashion-MNIST, remove the smallest-magnitude 20% of the remaining weights of
//     each layer, rewind the survivors to their values after a few hundred steps and train again;
//     accuracy against sparsity, beside the same masks with a fresh random initialisation.
//  2. LoRA (Hu et al. 2021): the trained network meets a shifted task (the images rotated by 90°);
//     full fine-tuning against training only the last layer and against low-rank adapters
//     W + AB (W frozen): parameters trained and accuracy.
// Masks are graph inputs multiplied into the weights; training a subset is an optimizer update
// over only those parameters. Both are plain public graph API.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "pruning", summary: "iterative magnitude pruning with rewinding, and LoRA against full fine-tuning")
let started = Date()
let data = try options.loadData(validation: 5_000, trainLimit: options.quick ? 3_000 : 20_000, testLimit: options.quick ? 1_000 : nil)
let widths = [784, 300, 100, 10], layers = widths.count - 1, batch = 64
let epochs = options.quick ? 1 : 2, rounds = options.quick ? 3 : 8, pruneFraction = 0.2
let rewindStep = options.quick ? 10 : 200                       // steps of training the survivors are rewound to
let pixels = 784

func images(_ set: ImageDataset, _ indices: some Sequence<Int>, rotated: Bool) -> [Float] {
    indices.flatMap { i -> [Float] in
        let base = i * pixels
        return (0..<pixels).map { p in
            let (y, x) = (p / 28, p % 28)
            return Float(set.images[base + (rotated ? x * 28 + (27 - y) : p)]) / 255           // 90° rotation
        }
    }
}
/// The network: `W\(l)` [in, out] and `b\(l)`, masked weights when `masks`, low-rank adapters when `rank` > 0.
struct Network {
    var masked = false, rank = 0
    func forward(_ g: GraphBuilder, _ x: Tensor) -> (logits: Tensor, weights: [Tensor], biases: [Tensor], adapters: [Tensor]) {
        var h = x, weights: [Tensor] = [], biases: [Tensor] = [], adapters: [Tensor] = []
        for l in 1...layers {
            let bound = 1 / Double(widths[l - 1]).squareRoot()
            let w = g.parameter("W\(l)", [widths[l - 1], widths[l]], initializer: .uniform(low: -bound, high: bound))
            let b = g.parameter("b\(l)", [widths[l]], initializer: .uniform(low: -bound, high: bound))
            var effective = masked ? w * g.input("mask\(l)", [widths[l - 1], widths[l]]) : w
            if rank > 0 {                                             // LoRA: W + A B, B starts at zero
                let a = g.parameter("A\(l)", [widths[l - 1], rank], initializer: .normal(mean: 0, std: 1 / Double(widths[l - 1]).squareRoot()))
                let bUp = g.parameter("B\(l)", [rank, widths[l]], initializer: .zeros)
                effective = effective + a.matmul(bUp)
                adapters += [a, bUp]
            }
            h = h.matmul(effective) + b
            if l < layers { h = relu(h) }
            weights.append(w); biases.append(b)
        }
        return (h, weights, biases, adapters)
    }
}
/// Compiled training step and evaluator over one store; `trained` picks the parameters the optimizer updates.
final class Run {
    let store: ParameterStore, network: Network, step: Executable, evaluate: Executable
    let rotated: Bool
    init(store: ParameterStore, network: Network, rotated: Bool = false,
         trained: (_ weights: [Tensor], _ biases: [Tensor], _ adapters: [Tensor]) -> [Tensor] = { $0 + $1 + $2 }) throws {
        self.store = store; self.network = network; self.rotated = rotated
        let g = GraphBuilder()
        let out = network.forward(g, g.input("x", [batch, pixels]))
        let loss = softmaxCrossEntropy(out.logits, labels: g.input("labels", [batch], dtype: .int32)).mean()
        g.output("loss", loss)
        let parameters = trained(out.weights, out.biases, out.adapters)
        Optimizer.sgd(momentum: 0.9).appendUpdates(to: g, parameters: parameters, gradients: g.gradients(of: loss, withRespectTo: parameters),
                                                   learningRate: g.input("lr", .scalar))
        step = try Executable(graph: try g.build(), store: store)
        try step.setInput("lr", [Float(0.01)])
        let e = GraphBuilder()
        e.output("logits", network.forward(e, e.input("x", [1_000, pixels])).logits)
        evaluate = try Executable(graph: try e.build(), store: store)
    }
    func setMasks(_ masks: [[Float]]) throws {
        for (l, m) in masks.enumerated() { try step.setInput("mask\(l + 1)", m); try evaluate.setInput("mask\(l + 1)", m) }
    }
    /// Trains `epochs` epochs; `snapshot` is called after `rewindStep` steps.
    func train(epochs: Int, seed: UInt64, snapshot: (() -> Void)? = nil) throws {
        var steps = 0
        for epoch in 0..<epochs {
            let order = epochOrder(count: data.train.count, seed: seed, epoch: epoch)
            for start in stride(from: 0, to: order.count - batch + 1, by: batch) {
                let indices = order[start..<(start + batch)]
                try step.setInput("x", images(data.train, indices, rotated: rotated))
                try step.setInput("labels", indices.map { data.train.labels[$0] })
                try step.run()
                steps += 1
                if steps == rewindStep { snapshot?() }
            }
        }
    }
    func accuracy() throws -> Double {
        var correct = 0, seen = 0
        for start in stride(from: 0, to: data.test.count - 999, by: 1_000) {
            try evaluate.setInput("x", images(data.test, start..<(start + 1_000), rotated: rotated))
            try evaluate.run()
            let out = try evaluate.output("logits")
            for r in 0..<1_000 {
                let row = out[(r * 10)..<(r * 10 + 10)]
                if Int32(row.firstIndex(of: row.max()!)! - r * 10) == data.test.labels[start + r] { correct += 1 }
            }
            seen += 1_000
        }
        return Double(correct) / Double(seen)
    }
}
func snapshot(_ store: ParameterStore) -> [String: [Float]] { Dictionary(uniqueKeysWithValues: store.names.map { ($0, store[$0]!.values) }) }
func restore(_ store: ParameterStore, _ values: [String: [Float]]) throws { for (name, v) in values { try store.set(name, v) } }

// 1. Iterative magnitude pruning with rewinding, and the random-reinitialisation control.
var masks = (1...layers).map { [Float](repeating: 1, count: widths[$0 - 1] * widths[$0]) }
let ticketStore = ParameterStore(seed: options.seed &+ 1)
let ticket = try Run(store: ticketStore, network: Network(masked: true))
var rewind: [String: [Float]] = [:]
var pruneTable = TextTable(["round", "weights left", "sparsity", "rewound ticket accuracy", "random re-init accuracy"])
var ticketCurve: [(x: Double, y: Double)] = [], randomCurve: [(x: Double, y: Double)] = []
let total = masks.reduce(0) { $0 + $1.count }
for round in 0...rounds {
    try ticket.setMasks(masks)
    if round > 0 { try restore(ticketStore, rewind) }
    try ticket.train(epochs: epochs, seed: options.seed &+ UInt64(round)) { if round == 0 { rewind = snapshot(ticketStore) } }
    let ticketAccuracy = try ticket.accuracy()
    let left = masks.reduce(0) { $0 + $1.reduce(0) { $0 + Int($1) } }
    var randomAccuracy = Double.nan
    if round > 0 {
        let control = try Run(store: ParameterStore(seed: options.seed &+ 1_000 &+ UInt64(round)), network: Network(masked: true))
        try control.setMasks(masks)
        try control.train(epochs: epochs, seed: options.seed &+ UInt64(round))
        randomAccuracy = try control.accuracy()
        randomCurve.append((100 * Double(left) / Double(total), randomAccuracy))
    }
    let sparsity = 1 - Double(left) / Double(total)
    pruneTable.add(["\(round)", "\(left)", fixed(100 * sparsity, 1) + "%", fixed(ticketAccuracy), round > 0 ? fixed(randomAccuracy) : "—"])
    ticketCurve.append((100 * Double(left) / Double(total), ticketAccuracy))
    // Prune: per layer, the smallest |w| of the survivors (the output layer at half the rate).
    for l in 0..<layers {
        let w = ticketStore["W\(l + 1)"]!.values
        let alive = masks[l].indices.filter { masks[l][$0] != 0 }.sorted { Swift.abs(w[$0]) < Swift.abs(w[$1]) }
        let cut = Int(Double(alive.count) * (l == layers - 1 ? pruneFraction / 2 : pruneFraction))
        for i in alive.prefix(cut) { masks[l][i] = 0 }
    }
}
print("1. LeNet-300-100 on \(data.train.count) Fashion-MNIST images, \(epochs) epochs per round (SGD momentum 0.9, lr 0.01);")
print("   prune \(Int(pruneFraction * 100))% per round (output layer \(Int(pruneFraction * 50))%), rewind to step \(rewindStep); test accuracy on \(data.test.count):\n\(pruneTable)\n")

// 2. LoRA on a shifted task: the pruning run's dense start network, trained on the upright images.
let baseStore = ParameterStore(seed: options.seed &+ 2)
let base = try Run(store: baseStore, network: Network())
try base.train(epochs: epochs, seed: options.seed)
let pretrained = snapshot(baseStore)
let uprightAccuracy = try base.accuracy()
var loraTable = TextTable(["fine-tuning on rotated images", "parameters trained", "of all", "rotated test accuracy"])
let allParameters = zip(widths, widths.dropFirst()).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }
let before = try Run(store: baseStore, network: Network(), rotated: true).accuracy()
loraTable.add(["none (upright-trained network)", "0", "0%", fixed(before)])
let methods: [(name: String, rank: Int, pick: ([Tensor], [Tensor], [Tensor]) -> [Tensor])] = [
    ("last layer only", 0, { w, b, _ in [w.last!, b.last!] }),
    ("LoRA rank 1 (+ biases)", 1, { _, b, a in a + b }),
    ("LoRA rank 4 (+ biases)", 4, { _, b, a in a + b }),
    ("LoRA rank 16 (+ biases)", 16, { _, b, a in a + b }),
    ("full fine-tuning", 0, { w, b, _ in w + b }),
]
var loraPoints: [(x: Double, y: Double)] = []
for method in methods {
    let store = ParameterStore(seed: options.seed &+ 3)
    let run = try Run(store: store, network: Network(rank: method.rank), rotated: true, trained: method.pick)
    try restore(store, pretrained.filter { !$0.key.hasSuffix(".momentum") })
    let g = GraphBuilder()
    let out = Network(rank: method.rank).forward(g, g.input("x", [1, pixels]))
    let trained = method.pick(out.weights, out.biases, out.adapters).reduce(0) { $0 + $1.shape.count }
    try run.train(epochs: epochs, seed: options.seed &+ 7)
    let accuracy = try run.accuracy()
    loraTable.add([method.name, "\(trained)", fixed(100 * Double(trained) / Double(allParameters), 2) + "%", fixed(accuracy)])
    loraPoints.append((Double(trained), accuracy))
}
print("2. the network above before pruning (upright test accuracy \(fixed(uprightAccuracy))), fine-tuned \(epochs) epochs on the images rotated by 90°:\n\(loraTable)")

try LinePlot(title: "Lottery tickets: accuracy against weights left", xLabel: "weights left (%)", yLabel: "test accuracy", logX: true,
             series: [LinePlot.Series("pruned, rewound to step \(rewindStep)", ticketCurve), LinePlot.Series("same masks, random re-initialisation", randomCurve, dashed: true)])
    .write(path: try options.path("lottery.svg"))
try LinePlot(title: "Fine-tuning on rotated images", xLabel: "parameters trained", yLabel: "test accuracy (rotated)", logX: true,
             series: [LinePlot.Series("last layer, LoRA r = 1, 4, 16, full", loraPoints)]).write(path: try options.path("lora.svg"))
print("wrote lottery.svg, lora.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
