import Foundation
import Kiln
import KilnCommandLine
import KilnBench

func zooCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: [], flags: ["--json"], command: "zoo")
    var rows: [(String, Int, [Int], String)] = []
    for name in Zoo.classifierNames {
        let model = try Zoo.classifier(name, inputShape: Zoo.defaultInputShape(name), classes: name == "glyph-cnn" ? 3 : 10)
        let graph = try ClassifierTrainer.forwardGraph(model: model, batch: 1)
        let count = graph.parameterIDs.reduce(0) { $0 + graph.nodes[$1].type.shape.count }
        rows.append((name, count, model.inputShape, model.summary))
    }
    for name in Zoo.generativeNames {
        // Conditional models shown for 10 classes; the training graph holds every parameter
        // (a GAN's discriminator step holds both networks').
        let model = try Zoo.generative(name, classes: 10)
        let graph = try GenerativeTrainer.graph(of: model, batch: 2, training: true)
        let count = graph.parameterIDs.reduce(0) { $0 + graph.nodes[$1].type.shape.count }
        rows.append((name, count, model.imageShape, model.summary))
    }
    if args.flags.contains("--json") {
        print("[" + rows.map { jsonObject([("model", $0.0), ("parameters", $0.1), ("input_shape", $0.2), ("summary", $0.3)]) }.joined(separator: ", ") + "]")
        return
    }
    print("model       parameters  input       summary")
    for (name, count, shape, summary) in rows {
        let shapeText = shape.map(String.init).joined(separator: "x")
        print(name.padding(toLength: 12, withPad: " ", startingAt: 0) + String(count).leftPadded(10) + "  "
              + shapeText.padding(toLength: 10, withPad: " ", startingAt: 0) + "  " + summary)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
