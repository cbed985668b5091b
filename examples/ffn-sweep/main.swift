// IST Deep Learning 2022-23, homework 1, question 2: a feed-forward
// network with dropout at Table 1's defaults (learning rate 0.01, hidden size 100, dropout 0.3,
// batch 16, ReLU, SGD, 20 epochs), each hyperparameter swept alone (learning rate
// {0.001, 0.01, 0.1}, hidden size {100, 200}, dropout {0.3, 0.5}, ReLU or tanh), then 2 and 3
// hidden layers. The default run trains 5 epochs per configuration (all 20: --full).
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "ffn-sweep", summary: "the homework's one-at-a-time hyperparameter sweep of a feed-forward network")
let started = Date()
let epochs = options.quick ? 1 : options.full ? 20 : 5
let data = try options.loadData(trainLimit: options.quick ? 3_000 : nil, testLimit: options.quick ? 2_000 : nil)
print("data: \(data.directory), \(data.train.count) training, \(data.validation.count) validation images; \(epochs) epochs per configuration")

struct Config: CustomStringConvertible {
    var learningRate = 0.01, hidden = 100, dropout = 0.3, tanhActivation = false, layers = 1
    var description: String {
        "lr \(learningRate), hidden \(hidden), dropout \(dropout), \(tanhActivation ? "tanh" : "relu"), \(layers) layer\(layers > 1 ? "s" : "")"
    }
    var model: ClassifierModel {
        let c = self
        return ClassifierModel(name: "ffn", summary: description, inputShape: [1, 28, 28], classes: 10) { x, training in
            let g = x.builder
            var h = x.flatten()
            for i in 0..<c.layers {
                h = g.dense(h, c.hidden, name: "fc\(i + 1)")
                h = c.tanhActivation ? tanh(h) : relu(h)
                if training { h = Kiln.dropout(h, rate: c.dropout) }
            }
            return g.dense(h, 10, name: "out")
        }
    }
}
let base = Config()
var sweep: [(group: String, config: Config)] = [("default (Table 1)", base)]
for lr in [0.001, 0.1] { var c = base; c.learningRate = lr; sweep.append(("learning rate", c)) }
do { var c = base; c.hidden = 200; sweep.append(("hidden size", c)) }
do { var c = base; c.dropout = 0.5; sweep.append(("dropout", c)) }
do { var c = base; c.tanhActivation = true; sweep.append(("activation", c)) }
for layers in [2, 3] { var c = base; c.layers = layers; sweep.append(("layers", c)) }
if options.quick { sweep = Array(sweep.prefix(3)) + [sweep[sweep.count - 2]] }

var table = TextTable(["sweep", "configuration", "validation", "test", "seconds"])
var curves: [LinePlot.Series] = []
var results: [(config: Config, validation: Double, test: Double)] = []
for (group, config) in sweep {
    let start = Date()
    let trainer = ClassifierTrainer(model: config.model, optimizer: .sgd(), seed: options.seed)
    var validation: [Double] = []
    for epoch in 0..<epochs {
        try trainer.trainEpoch(data.train, order: epochOrder(count: data.train.count, seed: options.seed, epoch: epoch),
                               batchSize: 16, learningRate: config.learningRate)
        validation.append(try trainer.evaluate(data.validation).accuracy)
    }
    let test = try trainer.evaluate(data.test).accuracy
    results.append((config, validation.last!, test))
    table.add([group, config.description, fixed(validation.last!), fixed(test), fixed(Date().timeIntervalSince(start), 1)])
    curves.append(LinePlot.Series(config.description, validation.enumerated().map { (Double($0 + 1), $1) }, dashed: config.layers > 1))
    print(table.rows.last!.joined(separator: "  "))
}
print("\n\(table)")
let oneLayer = results.filter { $0.config.layers == 1 }.max { $0.validation < $1.validation }!
let deeper = results.filter { $0.config.layers > 1 }.max { $0.validation < $1.validation }
print("best one-layer configuration by validation: \(oneLayer.config): test \(fixed(oneLayer.test)) (course, Kuzushiji-MNIST: 0.8813)")
if let deeper { print("best deeper network: \(deeper.config): test \(fixed(deeper.test)) (course: 2 layers of 200, 0.8939)") }

let path = try options.path("validation-accuracy.svg")
var plot = LinePlot(title: "Validation accuracy per epoch, one hyperparameter changed at a time", xLabel: "epoch",
                    yLabel: "validation accuracy", series: curves)
plot.width = 760
try plot.write(path: path)
print("wrote \(path); total \(fixed(Date().timeIntervalSince(started), 1)) s")
