import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln predict MODEL.safetensors --test x_test.csv -o predictions.csv`: labels every row of a
/// course CSV file and writes the file again with the predicted labels in its first column.
func predictCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--test", "-o", "--batch", "--threads"], flags: ["--json"], command: "predict")
    guard args.positionals.count == 1 else { throw KilnError.argument("predict: give exactly one MODEL file (.safetensors from `kiln train -o`)") }
    guard let testPath = args.options["--test"] else { throw KilnError.argument("predict: --test CSV is required") }
    guard let output = args.options["-o"] else { throw KilnError.argument("predict: -o FILE is required (e.g. predictions.csv)") }
    let batch = try args.int("--batch", default: 500, in: Limits.batch)
    let threads = try args.threads()
    let json = args.flags.contains("--json")
    try flagsChecked()

    let start = Date()
    let checkpoint = try Checkpoint.read(path: args.positionals[0])
    let classes = checkpoint.description.classNames
    let classifier = try checkpoint.makeClassifier(threads: threads)
    let shape = checkpoint.description.inputShape
    let data = try CSVImages.read(path: testPath, imageSize: (shape[1], shape[2]), classNames: classes)
    let predictions = try classifier.predict(data, batchSize: batch).map { classes[$0] }
    try CSVImages.writePredictions(input: testPath, labels: predictions, to: output)
    let seconds = Date().timeIntervalSince(start)
    let counts = classes.map { name in predictions.lazy.filter { $0 == name }.count }
    if json {
        print(jsonObject([("model", checkpoint.description.modelName), ("rows", predictions.count), ("output", output),
                          ("classes", classes), ("counts", counts), ("seconds", seconds)]))
    } else {
        let tally = zip(classes, counts).map { "\($0): \($1)" }.joined(separator: ", ")
        print("wrote \(predictions.count) predictions to \(output) (\(tally)) in " + String(format: "%.2f s", seconds))
    }
}
