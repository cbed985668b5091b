import Foundation
import Kiln
import KilnCommandLine

/// `kiln make-glyphs DIR [--train 500] [--test 10000] [--seed S] [--difficulty easy|hard]`: writes a course-style glyph
/// assignment (xy_train.csv, x_test.csv, and the hidden labels y_test.csv) for trying Task A.
func makeGlyphsCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--train", "--test", "--seed", "--difficulty"], flags: [], command: "make-glyphs")
    guard args.positionals.count == 1 else { throw KilnError.argument("make-glyphs: give exactly one output DIRECTORY") }
    let directory = args.positionals[0]
    let train = try args.int("--train", default: 500, in: Limits.glyphs)
    let test = try args.int("--test", default: 10_000, in: Limits.glyphs)
    let name = args.options["--difficulty"] ?? "easy"
    guard let difficulty = CourseGlyphs.Difficulty(rawValue: name) else {
        throw KilnError.argument("make-glyphs: --difficulty must be easy or hard, found \"\(excerpt(name))\"")
    }
    let seed = try args.seed()
    try flagsChecked()
    try CourseGlyphs.writeAssignment(directory: directory, train: train, test: test, seed: seed, difficulty: difficulty)
    print("wrote \(directory)/\(CourseGlyphs.trainFile) (\(train) labelled), \(directory)/\(CourseGlyphs.testFile) (\(test), labels NA) "
          + "and \(directory)/\(CourseGlyphs.testLabelsFile) (the hidden test labels); \(difficulty.rawValue) set; classes \(CourseGlyphs.classNames.joined(separator: ", "))")
}
