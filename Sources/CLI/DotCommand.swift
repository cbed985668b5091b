import Foundation
import Kiln

func dotCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--stage", "--batch", "-o"], flags: [], command: "dot")
    guard args.positionals.count == 1 else { throw KilnError.argument("dot: give exactly one MODEL (see `kiln zoo`)") }
    let name = args.positionals[0]
    let model = try Zoo.classifier(name, classes: name == "glyph-cnn" ? 3 : 10)
    let batch = try args.int("--batch", default: 64)
    let graph: Graph
    switch args.options["--stage"] ?? "forward" {
    case "forward": graph = try ClassifierTrainer.forwardGraph(model: model, batch: batch)
    case "training": graph = try ClassifierTrainer.trainingGraph(model: model, batch: batch, optimizer: .sgd(momentum: 0.9))
    case let other: throw KilnError.argument("dot: unknown stage \"\(other)\"; known: forward, training")
    }
    let text = graph.dot(title: "\(name) \(args.options["--stage"] ?? "forward")")
    if let path = args.options["-o"] {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw KilnError.file(path: path, message: "cannot write: \(error.localizedDescription)")
        }
        printError("wrote \(path) (\(graph.nodes.count) nodes); render with: dot -Tsvg \(path) -o \(name).svg")
    } else {
        print(text, terminator: "")
    }
}
