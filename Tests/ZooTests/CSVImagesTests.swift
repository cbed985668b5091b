import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

/// The message of the `KilnError` that `body` throws, or nil.
func kilnErrorMessage(_ body: () throws -> Void) -> String? {
    do { try body() } catch let error as KilnError { return error.description } catch { return "not a KilnError: \(error)" }
    return nil
}

@Suite("CSV images")
struct CSVImagesTests {
    @Test("a written set reads back identical; class names are the sorted training labels")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let set = CourseGlyphs.make(count: 31, seed: 4)
        let path = dir.file("xy.csv")
        try CSVImages.write(set, to: path)
        let read = try CSVImages.read(path: path)
        #expect(read == set)
        // Labels given out of order still give sorted class names.
        let other = dir.write("labels.csv", Array("C,1,2,3,4\nA,5,6,7,8\nC,0,0,0,0\n".utf8))
        let small = try CSVImages.read(path: other, imageSize: (2, 2))
        #expect(small.classNames == ["A", "C"])
        #expect(small.labels == [1, 0, 1])
        #expect(small.images == [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0])
    }

    @Test("CRLF, quoted fields, blank lines, spaces, 12.0 and a missing final newline are accepted")
    func lenientSyntax() throws {
        let dir = TemporaryDirectory()
        let plain = dir.write("plain.csv", Array("A,1,2,3,4\nB,5,6,7,8\nA,9,10,11,255\n".utf8))
        let fancy = dir.write("fancy.csv", Array("\"A\",1,\"2\",3,4\r\n\r\nB, 5 ,6,7.0,8\r\n\"A\",9,10,11,255".utf8))
        #expect(try CSVImages.read(path: fancy, imageSize: (2, 2)) == CSVImages.read(path: plain, imageSize: (2, 2)))
    }

    @Test("unlabelled rows (NA or empty) give an unlabelled set with the model's classes")
    func unlabelled() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("x.csv", Array("NA,1,2,3,4\n,5,6,7,8\n\"NA\",0,0,0,0\n".utf8))
        let set = try CSVImages.read(path: path, imageSize: (2, 2), classNames: ["A", "B"])
        #expect(!set.isLabelled && set.count == 3 && set.classNames == ["A", "B"])
        // Labels present and known: a labelled set indexed by the model's classes.
        let labelled = dir.write("y.csv", Array("B,1,2,3,4\nA,5,6,7,8\n".utf8))
        #expect(try CSVImages.read(path: labelled, imageSize: (2, 2), classNames: ["A", "B"]).labels == [1, 0])
    }

    /// One malformed file: what it shows, its contents, whether it uses 2×2 images, the model's
    /// classes (nil: a training read) and the expected message after "PATH: ".
    struct BadInput: Sendable, CustomTestStringConvertible {
        var what: String, contents: String, small: Bool, classes: [String]?, expected: String
        init(_ what: String, _ contents: String, _ small: Bool, _ classes: [String]?, _ expected: String) {
            (self.what, self.contents, self.small, self.classes, self.expected) = (what, contents, small, classes, expected)
        }
        var testDescription: String { what }
    }

    static let badInputs: [BadInput] = [
        BadInput("empty file", "", true, nil, "empty file: no rows of images"),
        BadInput("blank lines only", "\n\r\n\n", true, nil, "empty file: no rows of images"),
        BadInput("ragged row, too few", "A,1,2,3,4\nB,1,2,3\n", true, nil, "line 2, column 5: ragged row: 4 columns, the rows before have 5"),
        BadInput("ragged row, too many", "A,1,2,3,4\nB,1,2,3,4,5\n", true, nil, "line 2, column 6: ragged row: more columns than the 5 of the rows before"),
        BadInput("wrong column count", "A,1,2,3\n", true, nil, "line 1: 4 columns, expected 5 columns (a label and 2×2 pixels)"),
        BadInput("wrong count, default size", "A,1,2,3,4\n", false, nil,
         "line 1: 5 columns, expected 785 columns (a label and 28×28 pixels); give --image-size HxW for images of another size"),
        BadInput("too many in first row", "A,1,2,3,4,5\n", true, nil, "line 1, column 6: too many columns: expected 5 columns (a label and 2×2 pixels)"),
        BadInput("non-numeric pixel", "A,1,2,3,4\nB,1,x2,3,4\n", true, nil, "line 2, column 3: pixel value \"x2\" is not a number; intensities are integers 0–255"),
        BadInput("NA pixel", "A,1,2,NA,4\n", true, nil, "line 1, column 4: pixel value \"NA\" is not a number; intensities are integers 0–255"),
        BadInput("empty pixel", "A,1,,3,4\n", true, nil, "line 1, column 3: empty pixel value; intensities are integers 0–255"),
        BadInput("pixel above 255", "A,1,2,3,256\n", true, nil, "line 1, column 5: pixel value 256 is out of range 0–255"),
        BadInput("negative pixel", "A,-1,2,3,4\n", true, nil, "line 1, column 2: pixel value -1 is out of range 0–255"),
        BadInput("fractional pixel", "A,1,2.5,3,4\n", true, nil, "line 1, column 3: pixel value 2.5 is not an integer; intensities are integers 0–255"),
        BadInput("unlabelled training row", "A,1,2,3,4\nNA,1,2,3,4\n", true, nil,
         "line 2, column 1: row has no label (\"NA\"); every row of a training or evaluation file needs one"),
        BadInput("label the model never saw", "NA,1,2,3,4\nD,1,2,3,4\n", true, ["A", "B", "C"],
         "line 2, column 1: label \"D\" is not one of the classes A, B, C"),
        BadInput("a 10,000-character label", String(repeating: "L", count: 10_000) + ",1,2,3,4\n", true, nil,
         "line 1, column 1: label of 10000 bytes (\"" + String(repeating: "L", count: 40) + "… (10000 bytes)\"); a class name has at most 100"),
        BadInput("a label with a control character", "A\u{7},1,2,3,4\n", true, nil,
         "line 1, column 1: label \"A\\u{7}\" holds control characters or invalid UTF-8"),
        BadInput("a 5 MB pixel field is quoted as an excerpt", "A,1,2,3," + String(repeating: "9", count: 5_000_000) + "x\n", true, nil,
         "line 1, column 5: pixel value \"" + String(repeating: "9", count: 40) + "… (5000001 bytes)\" is not a number; intensities are integers 0–255"),
        BadInput("quote never closed", "A,1,2,3,4\n\"B,1,2,3,4\n", true, nil, "line 2, column 1: quoted field never closed before the end of the file"),
        BadInput("text after a closing quote", "\"A\"x,1,2,3,4\n", true, nil, "line 1, column 1: unexpected \"x\" after a closing quote"),
    ]

    @Test("every bad input is one error naming file, line and column", arguments: badInputs)
    func badInput(_ bad: BadInput) {
        let dir = TemporaryDirectory()
        let path = dir.write("bad.csv", Array(bad.contents.utf8))
        let message = kilnErrorMessage { _ = try CSVImages.read(path: path, imageSize: bad.small ? (2, 2) : nil, classNames: bad.classes) }
        #expect(message == "\(path): \(bad.expected)", "\(bad.what)")
    }

    @Test("a UTF-8 byte-order mark is not part of the first label, with LF or CRLF lines")
    func byteOrderMark() throws {
        let dir = TemporaryDirectory()
        for newline in ["\n", "\r\n"] {
            let path = dir.write("bom.csv", [0xEF, 0xBB, 0xBF] + Array("A,1,2,3,4\(newline)B,5,6,7,8\(newline)".utf8))
            let read = try CSVImages.read(path: path, imageSize: (2, 2))
            #expect(read.classNames == ["A", "B"] && read.labels == [0, 1] && read.images == [1, 2, 3, 4, 5, 6, 7, 8])
        }
    }

    @Test("a missing file and a directory are named")
    func missingFile() {
        let dir = TemporaryDirectory()
        let missing = dir.file("nope.csv")
        #expect(kilnErrorMessage { _ = try CSVImages.read(path: missing) } == "\(missing): no such file")
        #expect(kilnErrorMessage { _ = try CSVImages.read(path: dir.path) } == "\(dir.path): is a directory, expected a file")
    }

    @Test("predictions keep every byte of the input but the first field")
    func predictions() throws {
        let dir = TemporaryDirectory()
        let input = dir.write("x.csv", Array("NA,1,2,3,4\r\n\"NA\",\"5\", 6,7,8\r\n\r\n,0,0,0,0".utf8))
        let output = dir.file("predictions.csv")
        try CSVImages.writePredictions(input: input, labels: ["B", "A", "C,D"], to: output)
        let written = String(decoding: try Data(contentsOf: URL(fileURLWithPath: output)), as: UTF8.self)
        #expect(written == "B,1,2,3,4\r\nA,\"5\", 6,7,8\r\n\r\n\"C,D\",0,0,0,0")
        let read = try CSVImages.read(path: output, imageSize: (2, 2))
        #expect(read.classNames == ["A", "B", "C,D"] && read.labels == [1, 0, 2])
        #expect(kilnErrorMessage { try CSVImages.writePredictions(input: input, labels: ["A"], to: output) }
                == "\(input): line 2: more rows than the 1 predictions")
        #expect(kilnErrorMessage { try CSVImages.writePredictions(input: input, labels: ["A", "B", "C", "D"], to: output) }
                == "\(input): 3 rows, but 4 predictions to write")
    }

    @Test("image sizes parse as HxW")
    func imageSize() throws {
        #expect(try CSVImages.parseImageSize("16x12") == (16, 12))
        #expect(kilnErrorMessage { _ = try CSVImages.parseImageSize("16") }
                == "--image-size needs HxW with integers 1 to 4096 (e.g. 28x28), found \"16\"")
        #expect(kilnErrorMessage { _ = try CSVImages.parseImageSize("99999999999x99999999999") }
                == "--image-size needs HxW with integers 1 to 4096 (e.g. 28x28), found \"99999999999x99999999999\"")
    }

    @Test("hard course glyphs: deterministic per seed, variants at about 70/20/10 % per class, unlike the easy set")
    func hardCourseGlyphs() {
        let (set, variants) = CourseGlyphs.makeWithVariants(count: 3000, seed: 11, difficulty: .hard)
        let again = CourseGlyphs.makeWithVariants(count: 3000, seed: 11, difficulty: .hard)
        #expect(set == again.set && variants == again.variants)
        #expect(set.images != CourseGlyphs.make(count: 3000, seed: 12, difficulty: .hard).images)
        #expect(set.classCounts() == [1000, 1000, 1000])
        // Each class: the main form about 70 %, the two rarer variants about 20 % and 10 %
        // (binomial sd over 1000 images is 1.3 % and 0.95 %; the bounds allow about 3 sd).
        for label in 0..<3 {
            let forms = zip(set.labels, variants).filter { $0.0 == Int32(label) }.map(\.1)
            let share = (0..<3).map { v in Double(forms.filter { $0 == v }.count) / Double(forms.count) }
            #expect(abs(share[0] - 0.7) < 0.045 && abs(share[1] - 0.2) < 0.04 && abs(share[2] - 0.1) < 0.03, "class \(label): \(share)")
        }
        let easy = CourseGlyphs.makeWithVariants(count: 3000, seed: 11, difficulty: .easy)
        #expect(easy.variants.allSatisfy { $0 == 0 } && easy.set == CourseGlyphs.make(count: 3000, seed: 11))
        #expect(easy.set.images != set.images)
    }

    @Test("course glyphs: balanced, deterministic, and an assignment directory in the course layout")
    func courseGlyphs() throws {
        let set = CourseGlyphs.make(count: 30, seed: 2)
        #expect(set == CourseGlyphs.make(count: 30, seed: 2) && set.images != CourseGlyphs.make(count: 30, seed: 3).images)
        #expect(set.classCounts() == [10, 10, 10])
        let dir = TemporaryDirectory()
        try CourseGlyphs.writeAssignment(directory: dir.path, train: 12, test: 9, seed: 5)
        let train = try CSVImages.read(path: dir.file("xy_train.csv"))
        #expect(train.count == 12 && train.classNames == ["A", "B", "C"])
        let testText = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir.file("x_test.csv"))), as: UTF8.self)
        let rows = testText.split(separator: "\n")
        #expect(rows.count == 9 && rows.allSatisfy { $0.hasPrefix("NA,") && $0.split(separator: ",").count == 785 })
        let labels = String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir.file("y_test.csv"))), as: UTF8.self)
        #expect(labels.split(separator: "\n").count == 9)
    }
}
