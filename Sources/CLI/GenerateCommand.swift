import Foundation
import Kiln
import KilnBench

/// `kiln generate MODEL.safetensors --per-class N -o new.csv [--grid FILE.png] [--seed S]`: samples
/// exactly N images of every class from a conditional generative model (or `--count N` images
/// from an unconditional one) and writes them in the course CSV layout. `--temperature T` < 1
/// draws z from N(0, T²) for more typical images.
func generateCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--per-class", "--count", "--seed", "--temperature", "--threads", "--grid", "-o"],
                             flags: ["--json"], command: "generate")
    guard args.positionals.count == 1 else { throw KilnError.argument("generate: give exactly one MODEL file") }
    guard let output = args.options["-o"] else { throw KilnError.argument("generate: -o FILE.csv is required") }
    let seed = try args.seed()
    // Every flag is checked before the model file is read.
    let threads = try args.threads()
    let temperature = try args.double("--temperature", default: 1, in: Limits.temperature)
    let perClass = try args.options["--per-class"].map { _ in try args.int("--per-class", default: 1, in: Limits.perClass) }
    let count = try args.options["--count"].map { _ in try args.int("--count", default: 1, in: Limits.count) }
    if perClass != nil && count != nil { throw KilnError.argument("generate: give --per-class or --count, not both") }
    let (trainer, classNames) = try GenerativeTrainer.load(path: args.positionals[0], seed: seed, threads: threads)
    try flagsChecked()
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
    if args.flags.contains("--json") {
        print(jsonObject([("model", trainer.model.name), ("images", samples.count), ("classes", classNames), ("seconds", seconds), ("output", output)]))
    } else {
        print("wrote \(samples.count) images (\(trainer.model.name)\(trainer.model.isConditional ? ", \(samples.count / Swift.max(classNames.count, 1)) per class" : "")) to \(output) in \(String(format: "%.2f", seconds)) s")
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
