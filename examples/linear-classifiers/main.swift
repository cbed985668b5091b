// IST Deep Learning 2022-23, homework 1, question 1: a perceptron
// (20 epochs), logistic regression (SGD, learning rate 0.001, batch 1) and an MLP with 200 ReLU
// units (SGD, learning rate 0.001, batch 1, weights N(0.1, 0.1²), zero biases), validation
// accuracy per epoch (5 epochs by default to stay under 2 minutes; the course's 20: --full).
// The course used Kuzushiji-MNIST (`--data DIR` with its IDX files);
// Fashion-MNIST by default.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "linear-classifiers",
                                         summary: "perceptron, logistic regression and a 200-unit MLP trained with batch-1 SGD")
let started = Date()
let epochs = options.quick ? 2 : options.full ? 20 : 5
let data = try options.loadData(trainLimit: options.quick ? 2_000 : nil, testLimit: options.quick ? 2_000 : nil)
print("data: \(data.directory), \(data.train.count) training, \(data.validation.count) validation, \(data.test.count) test images")

/// A linear layer on the flattened pixels with the given weight initialiser and zero bias.
func linear(_ name: String, weights: Initializer) -> ClassifierModel {
    ClassifierModel(name: name, summary: "linear 784-10", inputShape: [1, 28, 28], classes: 10) { x, _ in
        x.builder.dense(x.flatten(), 10, name: "fc", initializer: weights, initialization: .xavierUniform)  // xavier: zero bias
    }
}
let mlp200 = ClassifierModel(name: "mlp", summary: "MLP 784-200-10", inputShape: [1, 28, 28], classes: 10) { x, _ in
    let g = x.builder
    let normal = Initializer.normal(mean: 0.1, std: 0.1)
    let h = relu(g.dense(x.flatten(), 200, name: "fc1", initializer: normal, initialization: .xavierUniform))
    return g.dense(h, 10, name: "fc2", initializer: normal, initialization: .xavierUniform)
}

/// The perceptron's batch-1 step: SGD with learning rate 1 on the perceptron criterion is
/// Rosenblatt's rule (w_y += x, w_ŷ −= x when ŷ ≠ y).
func perceptronStep(_ model: ClassifierModel, store: ParameterStore) throws -> Executable {
    let g = GraphBuilder()
    let x = g.input("x", Shape([1] + model.inputShape)), labels = g.input("labels", [1], dtype: .int32)
    let loss = perceptronLoss(logits: model.forward(x, true), labels: labels).mean()
    Optimizer.sgd().appendUpdates(to: g, parameters: g.parameters, gradients: g.gradients(of: loss, withRespectTo: g.parameters),
                                  learningRate: g.constant(1))
    return try Executable(graph: g.build(), store: store, threads: 1)
}

struct Run { var name: String; var validation: [Double] = []; var test = 0.0; var seconds = 0.0; var seed: Double }
var runs: [Run] = []
for (name, model, seedAccuracy) in [("perceptron", linear("perceptron", weights: .uniform(low: -1e-6, high: 1e-6)), 0.6193),
                                    ("logistic regression", linear("logreg", weights: .zeros), 0.7028),
                                    ("MLP 200 ReLU", mlp200, 0.8610)] {
    let start = Date()
    // One thread: a batch-1 step is too small to share.
    let trainer = ClassifierTrainer(model: model, optimizer: .sgd(), seed: options.seed, threads: 1)
    let step = name == "perceptron" ? try perceptronStep(model, store: trainer.store) : nil
    var run = Run(name: name, seed: seedAccuracy)
    for epoch in 0..<epochs {
        let order = epochOrder(count: data.train.count, seed: options.seed, epoch: epoch)
        if let step {
            let x = try step.inputPointer("x").assumingMemoryBound(to: Float.self)
            let label = try step.inputPointer("labels").assumingMemoryBound(to: Int32.self)
            for i in order {
                data.train.fillBatch(indices: [i], into: x, labels: label)
                try step.run()
            }
        } else {
            try trainer.trainEpoch(data.train, order: order, batchSize: 1, learningRate: 0.001)
        }
        run.validation.append(try trainer.evaluate(data.validation).accuracy)
    }
    run.test = try trainer.evaluate(data.test).accuracy
    run.seconds = Date().timeIntervalSince(start)
    print("\(name): validation \(fixed(run.validation.last!)), test \(fixed(run.test)) (\(fixed(run.seconds, 1)) s)")
    runs.append(run)
}

var table = TextTable(["model", "validation", "test", "course (Kuzushiji-MNIST test)", "seconds"])
for run in runs { table.add([run.name, fixed(run.validation.last!), fixed(run.test), fixed(run.seed), fixed(run.seconds, 1)]) }
print("\n\(epochs) epochs, batch 1\n\(table)")

let plot = LinePlot(title: "Validation accuracy per epoch (\(URL(fileURLWithPath: data.directory).lastPathComponent))",
                    xLabel: "epoch", yLabel: "validation accuracy",
                    series: runs.map { run in LinePlot.Series(run.name, run.validation.enumerated().map { (Double($0 + 1), $1) }) })
let path = try options.path("accuracy.svg")
try plot.write(path: path)
print("wrote \(path); total \(fixed(Date().timeIntervalSince(started), 1)) s")
