import Foundation
import Kiln
import KilnCommandLine
import KilnBench

/// `kiln generate MODEL.safetensors --per-class N -o new.csv [--grid FILE.png] [--seed S]`: samples
/// exactly N images of every class from a conditional generative model (or `--count N` images
/// from an unconditional one) and writes them in the course CSV layout. `--temperature T` < 1
/// draws z from N(0, T²) for more typical images.
func generateCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--per-class", "--count", "--seed", "--temperature", "--threads", "--grid", "-o",
                                                       "--judge", "--train"],
                             flags: ["--json"], command: "generate")
    guard args.positionals.count == 1 else { throw KilnError.argument("generate: give exactly one MODEL file") }
    guard let output = args.options["-o"] else { throw KilnError.argument("generate: -o FILE.csv is required") }
    let seed = try args.seed()
    // Every flag is checked before the model file is read.
    let threads = try args.threads()
    let givenTemperature = try args.options["--temperature"].map { _ in try args.double("--temperature", default: 1, in: Limits.temperature) }
    let perClass = try args.options["--per-class"].map { _ in try args.int("--per-class", default: 1, in: Limits.perClass) }
    let count = try args.options["--count"].map { _ in try args.int("--count", default: 1, in: Limits.count) }
    if perClass != nil && count != nil { throw KilnError.argument("generate: give --per-class or --count, not both") }
    let (trainer, classNames) = try GenerativeTrainer.load(path: args.positionals[0], seed: seed, threads: threads)
    try flagsChecked()
    // A VAE with a fitted latent prior samples at 0.8 by default: more typical images of the stated class.
    let temperature = givenTemperature ?? (trainer.latentPrior != nil ? defaultPriorTemperature : 1)
    if givenTemperature == nil && trainer.latentPrior != nil && !args.flags.contains("--json") {
        print("sampling z from the model's per-class Gaussians at temperature \(defaultPriorTemperature) (--temperature 1 for their full spread)")
    }
    let start = Date()
    let samples: ImageDataset
    if let perClass {
        samples = try trainer.samplePerClass(perClass, seed: seed, classNames: classNames, temperature: temperature)
    } else if let count {
        guard !trainer.model.isConditional else { throw KilnError.argument("generate: \(trainer.model.name) is conditional; use --per-class N") }
        samples = try trainer.sample(count: count, seed: seed, temperature: temperature)
    } else {
        throw KilnError.argument("generate: --per-class N (conditional models) or --count N (unconditional) is required")
    }
    try CSVImages.write(samples, to: output)
    if let grid = args.options["--grid"] { try ImageGrid(checking: samples, perClass: 10, scale: 2).writePNG(path: grid) }
    let seconds = Date().timeIntervalSince(start)
    let quality = try generatedQuality(samples, modelPath: args.positionals[0], args: args, threads: threads)
    if args.flags.contains("--json") {
        print(jsonObject([("model", trainer.model.name), ("images", samples.count), ("classes", classNames), ("seconds", seconds), ("output", output)]))
    } else {
        print("wrote \(samples.count) images (\(trainer.model.name)\(trainer.model.isConditional ? ", \(samples.count / Swift.max(classNames.count, 1)) per class" : "")) to \(output) in \(String(format: "%.2f", seconds)) s")
        for line in quality?.lines(classNames: classNames) ?? [] { print(line) }
    }
}

/// `kiln show DATA.csv --grid FILE.png [--per-class N] [--scale K]`: draws the first N images of
/// every class (or of an unlabelled set) as a PNG grid. `DATA` may also name a data set (fashion-mnist, glyphs).
func showCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--grid", "--per-class", "--scale", "--data-dir"], flags: [], command: "show")
    guard args.positionals.count == 1 else { throw KilnError.argument("show: give exactly one DATA.csv (or data set name)") }
    guard let grid = args.options["--grid"] else { throw KilnError.argument("show: --grid FILE.png is required") }
    let source = args.positionals[0]
    let data: ImageDataset
    if source.lowercased().hasSuffix(".csv") {
        // A labelled file is drawn one row per class; an unlabelled one (x_test.csv) as it comes.
        do { data = try CSVImages.read(path: source) } catch let labelled {
            guard let unlabelled = try? CSVImages.read(path: source, classNames: []) else { throw labelled }
            data = unlabelled
        }
    } else {
        data = try loadDataset(source, directory: Environment.dataDirectory(args.options["--data-dir"])).train
    }
    let perClass = try args.int("--per-class", default: 10, in: 1...1000)
    let scale = try args.int("--scale", default: 2, in: Limits.scale)
    try flagsChecked()
    let picture = try ImageGrid(checking: data, perClass: perClass, scale: scale)
    try picture.writePNG(path: grid)
    print("wrote \(grid) (\(picture.width)x\(picture.height) pixels)")
}

/// The samples' quality when a classifier is known: `--judge FILE`, else the one the model file
/// names (`kiln.judge`, the labeller it was trained with); the copy check when the training
/// images are known (`--train FILE`, else `kiln.train_file`). Nil when neither is known.
private func generatedQuality(_ samples: ImageDataset, modelPath: String, args: Arguments, threads: Int) throws -> SampleQuality? {
    let metadata = try Checkpoint.read(path: modelPath).metadata
    func known(_ option: String, _ key: String) -> String? {
        if let given = args.options[option] { return given }
        guard let recorded = metadata[key], FileManager.default.fileExists(atPath: recorded) else { return nil }
        return recorded
    }
    var quality = SampleQuality(stated: [], recognised: [])
    var any = false
    if let judgePath = known("--judge", GenerativeFileKeys.judge), samples.isLabelled {
        let judge = try Checkpoint.read(path: judgePath).makeClassifier(threads: threads)
        guard judge.classes == samples.classNames.count else {
            throw KilnError.file(path: judgePath, message: "classifies \(judge.classes) classes, the samples have \(samples.classNames.count)")
        }
        (quality.stated, quality.recognised) = try SampleQuality.recognition(samples, judge: judge)
        any = true
    }
    if let trainPath = known("--train", GenerativeFileKeys.trainFile) {
        let train = try CSVImages.read(path: trainPath, imageSize: (samples.height, samples.width), classNames: samples.classNames)
        guard train.pixelsPerImage == samples.pixelsPerImage, train.count >= 2 else {
            throw KilnError.file(path: trainPath, message: "needs two or more images of the samples' size for the copy check")
        }
        let own = median(SampleQuality.nearestDistances(train, to: train, excludingSelf: true))
        let distances = SampleQuality.nearestDistances(samples, to: train)
        quality.trainingDistance = own
        quality.sampleDistance = median(distances)
        quality.copies = distances.filter { $0 < SampleQuality.copyFraction * own }.count
        any = true
    }
    return any ? quality : nil
}

/// `generate`'s temperature for a model with a latent prior when none is given.
let defaultPriorTemperature = 0.8
