import Foundation
import Kiln

/// Loads a named data set's train and test splits.
func loadDataset(_ name: String, directory: String?) throws -> (train: ImageDataset, test: ImageDataset) {
    switch name {
    case "fashion-mnist":
        return (try FashionMNIST.load(split: .train, directory: directory), try FashionMNIST.load(split: .test, directory: directory))
    case "glyphs":
        return (Glyphs.make(count: 3000, seed: 1), Glyphs.make(count: 1000, seed: 2))
    default:
        throw KilnError.argument("unknown data set \"\(name)\"; known: fashion-mnist, glyphs")
    }
}

func parseOptimizer(_ args: Arguments) throws -> Optimizer {
    let momentum = try args.double("--momentum", default: 0.9)
    switch args.options["--optimizer"] ?? "sgd" {
    case "sgd": return .sgd(momentum: momentum)
    case "adam": return .adam()
    case "adagrad": return .adagrad()
    case let other: throw KilnError.argument("unknown optimizer \"\(other)\"; known: sgd, adam, adagrad")
    }
}

func trainCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--dataset", "--data-dir", "--epochs", "--batch", "--lr", "--momentum",
                                              "--optimizer", "--seed", "--threads", "--limit"],
                             flags: ["--json", "--no-fuse", "--no-plan"], command: "train")
    guard args.positionals.count == 1 else { throw KilnError.argument("train: give exactly one MODEL (see `kiln zoo`)") }
    let modelName = args.positionals[0]
    guard let datasetName = args.options["--dataset"] else { throw KilnError.argument("train: --dataset is required (fashion-mnist or glyphs)") }
    let epochs = try args.int("--epochs", default: 3)
    let batch = try args.int("--batch", default: 64)
    let learningRate = try args.double("--lr", default: 0.01)
    let seed = try args.seed()
    let threads = try args.int("--threads", default: defaultThreadCount())
    let json = args.flags.contains("--json")
    let optimizer = try parseOptimizer(args)

    var (train, test) = try loadDataset(datasetName, directory: args.options["--data-dir"])
    if let limit = args.options["--limit"] {
        guard let n = Int(limit), n > 0 else { throw KilnError.argument("--limit needs a positive integer") }
        train = train.subset(Array(0..<Swift.min(n, train.count)))
    }
    let model = try Zoo.classifier(modelName, inputShape: [train.channels, train.height, train.width], classes: train.classNames.count)
    let trainer = ClassifierTrainer(model: model, optimizer: optimizer, seed: seed, threads: threads)
    if args.flags.contains("--no-fuse") { trainer.disabledPasses.insert("fuse") }
    if args.flags.contains("--no-plan") { trainer.disabledPasses.insert("plan-memory") }
    if !json { print("training \(model.name) on \(datasetName): \(train.count) images, batch \(batch), \(optimizer), lr \(learningRate), \(threads) threads") }

    var epochSeconds: [Double] = []
    var evaluation: Evaluation?
    for epoch in 0..<epochs {
        // Fashion-MNIST follows the peers' order (numpy `default_rng([seed, epoch]).permutation`) so runs compare.
        let order = datasetName == "fashion-mnist" ? numpyEpochOrder(count: train.count, seed: seed, epoch: epoch)
                                                   : epochOrder(count: train.count, seed: seed, epoch: epoch)
        let start = Date()
        let loss = try trainer.trainEpoch(train, order: order, batchSize: batch, learningRate: learningRate) { done, total, meanLoss in
            if done % (batch * 20) < batch || done == total {
                showProgress("epoch \(epoch + 1)/\(epochs)", done: done, total: total, detail: String(format: "loss %.4f", meanLoss))
            }
        }
        epochSeconds.append(Date().timeIntervalSince(start))
        let result = try trainer.evaluate(test)
        evaluation = result
        if !json {
            print(String(format: "epoch %d/%d  train loss %.4f  test loss %.4f  test accuracy %.4f  %.1f s",
                         epoch + 1, epochs, loss, result.loss, result.accuracy, epochSeconds.last!))
        }
    }
    if json {
        print(jsonObject([("model", modelName), ("dataset", datasetName), ("epochs", epochs), ("batch", batch),
                          ("lr", learningRate), ("optimizer", "\(optimizer)"), ("threads", threads), ("seed", Int(seed)),
                          ("train_seconds", epochSeconds.reduce(0, +)), ("epoch_seconds", epochSeconds),
                          ("compile_seconds", trainer.compileSeconds),
                          ("test_accuracy", evaluation?.accuracy ?? 0), ("test_loss", evaluation?.loss ?? 0)]))
    }
}
