import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// Reads one label per non-blank line (a course `y_test.csv`), as class indices of `classes`.
func readLabels(_ path: String, classes: [String]) throws -> [Int32] {
    guard let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
        throw KilnError.file(path: path, message: "no such file")
    }
    var labels: [Int32] = []
    // Lines split on LF bytes (a Swift Character "\r\n" is not "\n": CRLF files read as one line);
    // CR, spaces and a byte-order mark are trimmed.
    for (number, raw) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        var label = String(String.UnicodeScalarView(raw)).trimmingCharacters(in: .whitespacesAndNewlines.union(["\u{FEFF}"]))
        if label.hasPrefix("\"") && label.hasSuffix("\"") && label.count >= 2 { label = String(label.dropFirst().dropLast()) }
        if label.isEmpty { continue }
        guard let index = classes.firstIndex(of: label) else {
            throw KilnError.file(path: path, message: "line \(number + 1): label \"\(excerpt(label))\" is not a class the model knows (\(classes.joined(separator: ", ")))")
        }
        labels.append(Int32(index))
    }
    return labels
}

/// `kiln eval MODEL.safetensors --data FILE.csv [--labels y_test.csv]`: accuracy, mean loss and
/// a confusion matrix with class names, on a labelled course CSV file (or an unlabelled one with
/// its labels in a separate file, one per line).
func evalCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--data", "--labels", "--batch", "--threads"], flags: ["--json"], command: "eval")
    guard args.positionals.count == 1 else { throw KilnError.argument("eval: give exactly one MODEL file (.safetensors from `kiln train -o`)") }
    guard let dataPath = args.options["--data"] else { throw KilnError.argument("eval: --data CSV is required") }
    let batch = try args.int("--batch", default: 500, in: Limits.batch)
    let threads = try args.threads()
    let json = args.flags.contains("--json")
    try flagsChecked()

    let checkpoint = try Checkpoint.read(path: args.positionals[0])
    let classes = checkpoint.description.classNames
    let classifier = try checkpoint.makeClassifier(threads: threads)
    let shape = checkpoint.description.inputShape
    var data = try CSVImages.read(path: dataPath, imageSize: (shape[1], shape[2]), classNames: classes,
                                  requireLabels: args.options["--labels"] == nil)
    if let labelsPath = args.options["--labels"] {
        let labels = try readLabels(labelsPath, classes: classes)
        guard labels.count == data.count else {
            throw KilnError.file(path: labelsPath, message: "\(labels.count) labels for the \(data.count) images of \(dataPath)")
        }
        data.labels = labels
    }
    let result = try classifier.evaluate(data, batchSize: batch)
    if json {
        print(jsonObject([("model", checkpoint.description.modelName), ("data", dataPath), ("count", result.count),
                          ("accuracy", result.accuracy), ("loss", result.loss), ("classes", classes),
                          ("confusion", result.confusion.map { $0 as [Any] })]))
        return
    }
    print("\(checkpoint.description.modelName) on \(dataPath): \(result.count) images, accuracy "
          + String(format: "%.4f, mean loss %.4f", result.accuracy, result.loss))
    // Rows are true classes, columns predicted ones.
    let width = Swift.max(6, (classes.map(\.count) + result.confusion.flatMap { $0 }.map { String($0).count }).max()! + 1)
    print("confusion (rows: true, columns: predicted)")
    print("".padding(toLength: width, withPad: " ", startingAt: 0) + classes.map { $0.leftPadded(width) }.joined())
    for (name, row) in zip(classes, result.confusion) {
        print(name.padding(toLength: width, withPad: " ", startingAt: 0) + row.map { String($0).leftPadded(width) }.joined())
    }
}
