import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// Trains a small CNN on procedural glyphs made in memory: no download needed.
func demoCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--epochs", "--seed", "--threads", "-o"], flags: ["--json"], command: "demo")
    let epochs = try args.int("--epochs", default: 4, in: 1...1000)
    let seed = try args.seed()
    let threads = try args.threads()
    let dotPath = args.options["-o"] ?? "kiln-demo.dot"
    let json = args.flags.contains("--json")

    let train = Glyphs.make(count: 3000, seed: 1 &+ seed)
    let test = Glyphs.make(count: 1000, seed: 1_000_003 &+ seed)
    let model = glyphCNN(classes: train.classNames.count)
    let trainer = ClassifierTrainer(model: model, optimizer: .sgd(momentum: 0.9), seed: seed, threads: threads)
    if !json {
        print("Kiln demo: \(model.summary)")
        print("data: \(train.count) procedural glyphs (\(train.classNames.joined(separator: ", "))), \(test.count) held out")
    }
    let batch = 32
    let start = Date()
    var evaluation = try trainer.evaluate(test)
    if !json { print(String(format: "before training: test accuracy %.3f (chance %.3f)", evaluation.accuracy, 1 / Double(model.classes))) }
    for epoch in 0..<epochs {
        let order = epochOrder(count: train.count, seed: seed, epoch: epoch)
        let loss = try trainer.trainEpoch(train, order: order, batchSize: batch, learningRate: 0.02) { done, total, meanLoss in
            if done % (batch * 10) < batch || done == total {
                showProgress("epoch \(epoch + 1)/\(epochs)", done: done, total: total, detail: String(format: "loss %.4f", meanLoss))
            }
        }
        evaluation = try trainer.evaluate(test)
        if !json { print(String(format: "epoch %d/%d  train loss %.4f  test accuracy %.3f", epoch + 1, epochs, loss, evaluation.accuracy)) }
    }
    let seconds = Date().timeIntervalSince(start)
    // The compiled training step the demo ran: fused kernels as clusters, arena offsets on values.
    let program = try trainer.trainingProgram(batch: batch).program
    let graph = program.graph
    let unfused = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9))
    let dot = program.dot(title: "glyph-cnn training step, fused and planned")
    do { try dot.write(toFile: dotPath, atomically: true, encoding: .utf8) } catch {
        throw KilnError.file(path: dotPath, message: "cannot write: \(error.localizedDescription)")
    }
    if json {
        print(jsonObject([("model", model.name), ("test_accuracy", evaluation.accuracy), ("train_seconds", seconds), ("dot", dotPath),
                          ("kernels_unfused", unfused.unfusedKernelCount), ("kernels_fused", program.kernelCount),
                          ("arena_bytes", program.memory?.arenaBytes ?? 0), ("naive_bytes", program.memory?.naiveBytes ?? 0)]))
    } else {
        print(String(format: "test accuracy %.3f after %d epochs in %.1f s", evaluation.accuracy, epochs, seconds))
        if let memory = program.memory {
            print("compiled training step: \(unfused.nodes.count) nodes → \(graph.nodes.count) after simplification, "
                  + "\(unfused.unfusedKernelCount) kernels → \(program.kernelCount) fused, "
                  + "memory \(memory.naiveBytes / 1024) KiB naive → \(memory.arenaBytes / 1024) KiB arena")
        }
        print("wrote the fused, planned training step to \(dotPath); render it with: dot -Tsvg \(dotPath) -o kiln-demo.svg")
    }
}
