// Lectures 7–8: SGD, momentum, Nesterov, AdaGrad and Adam on the same
// network and data across step sizes from 10⁻⁴ to 10; AdaGrad's (and Adam's) normalisation
// keeps training reliable over a wider range of step sizes (Ward et al.) than plain SGD.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "optimizers", summary: "five optimizers across step sizes on one network")
let started = Date()
let data = try options.loadData(trainLimit: options.quick ? 2_000 : 20_000, testLimit: options.quick ? 2_000 : nil)
let epochs = options.quick ? 1 : 2
let stepSizes: [Double] = options.quick ? [1e-3, 1e-1, 10] : [1e-4, 1e-3, 1e-2, 1e-1, 1, 10]
let optimizers: [(String, Optimizer)] = [("SGD", .sgd()), ("momentum 0.9", .sgd(momentum: 0.9)),
                                         ("Nesterov 0.9", .sgd(momentum: 0.9, nesterov: true)),
                                         ("AdaGrad", .adagrad()), ("Adam", .adam())]
print("data: \(data.directory), \(data.train.count) training images, \(epochs) epochs at batch 64; MLP 784-100-10")

var table = TextTable(["optimizer"] + stepSizes.map { "lr \($0)" })
var series: [LinePlot.Series] = []
for (name, optimizer) in optimizers {
    var accuracies: [Double] = []
    for lr in stepSizes {
        let trainer = ClassifierTrainer(model: mlp(hidden: [100]), optimizer: optimizer, seed: options.seed)
        do {
            for epoch in 0..<epochs {
                try trainer.trainEpoch(data.train, order: epochOrder(count: data.train.count, seed: options.seed, epoch: epoch),
                                       batchSize: 64, learningRate: lr)
            }
            accuracies.append(try trainer.evaluate(data.validation).accuracy)
        } catch KilnError.feed {
            accuracies.append(.nan)       // the loss became NaN or infinite: diverged
        }
    }
    table.add([name] + accuracies.map { $0.isNaN ? "diverged" : fixed($0, 3) })
    series.append(LinePlot.Series(name, zip(stepSizes, accuracies).map { ($0, $1) }))
    print(table.rows.last!.joined(separator: "  "))
}
print("\nvalidation accuracy after \(epochs) epochs (\"diverged\": the loss became NaN or infinite)\n\(table)")
for s in series {
    let good = s.points.filter { $0.y >= 0.75 }.map(\.x)
    print("\(s.name): accuracy ≥ 0.75 for step sizes \(good.isEmpty ? "none" : "\(good.min()!) … \(good.max()!)")")
}
let plot = LinePlot(title: "Validation accuracy against step size (gaps: diverged)", xLabel: "step size (learning rate)",
                    yLabel: "validation accuracy", logX: true, series: series)
let path = try options.path("step-sizes.svg")
try plot.write(path: path)
print("wrote \(path); total \(fixed(Date().timeIntervalSince(started), 1)) s")
