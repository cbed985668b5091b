import Foundation
import Kiln

/// `kiln make-glyphs DIR [--train 500] [--test 10000] [--seed S]`: writes a course-style glyph
/// assignment (xy_train.csv, x_test.csv, and the hidden labels y_test.csv) for trying Task A.
func makeGlyphsCommand(_ words: [String]) throws {
    let args = try Arguments(words, options: ["--train", "--test", "--seed"], flags: [], command: "make-glyphs")
    guard args.positionals.count == 1 else { throw KilnError.argument("make-glyphs: give exactly one output DIRECTORY") }
    let directory = args.positionals[0]
    let train = try args.int("--train", default: 500, in: Limits.glyphs)
    let test = try args.int("--test", default: 10_000, in: Limits.glyphs)
    try CourseGlyphs.writeAssignment(directory: directory, train: train, test: test, seed: try args.seed())
    print("wrote \(directory)/\(CourseGlyphs.trainFile) (\(train) labelled), \(directory)/\(CourseGlyphs.testFile) (\(test), labels NA) "
          + "and \(directory)/\(CourseGlyphs.testLabelsFile) (the hidden test labels); classes \(CourseGlyphs.classNames.joined(separator: ", "))")
}
