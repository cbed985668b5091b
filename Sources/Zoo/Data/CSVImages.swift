import Foundation
import KilnGraph

/// The course's CSV image files (`xy_train.csv`, `x_test.csv`, `predictions.csv`, `new.csv`):
/// no header; one image per row; the first column is the label (`A`, `B`, …, or `NA`/empty when
/// unlabelled), then H×W grey intensities 0–255, row-major. 785 columns mean 28×28.
///
/// Reading streams the file in chunks and keeps pixels as bytes. CRLF or LF line ends, quoted
/// fields (`"A"`, `"12"`, `""` for a quote inside) and a missing final newline are accepted;
/// blank lines are skipped, as R's `read.csv` does. Every malformed input is one
/// `KilnError.file` naming the file, the line and the column.
public enum CSVImages {
    /// Longest label (class name) a file may hold, in bytes.
    public static let maximumLabelBytes = 100
    /// Largest image side `--image-size` accepts.
    public static let maximumImageSide = 4096

    /// Side lengths of the images: `785` columns are 28×28 unless stated otherwise.
    public static let defaultImageSize = (height: 28, width: 28)

    /// Reads a CSV image file.
    ///
    /// - `classNames == nil` (training): every row must carry a label; the class names are the
    ///   distinct labels sorted (byte order of their UTF-8, so `A` < `B` < `a`), and class index
    ///   `i` is `classNames[i]`.
    /// - `classNames` given (a model's classes, for eval and predict): labels are optional, but any
    ///   label present must be one of `classNames`; with `requireLabels` every row must carry one.
    ///   The returned set is labelled only when every row is.
    public static func read(path: String, imageSize: (height: Int, width: Int)? = nil,
                            classNames: [String]? = nil, requireLabels: Bool = false) throws -> ImageDataset {
        let size = imageSize ?? defaultImageSize
        precondition(size.height > 0 && size.width > 0, "image sizes are positive")
        var sink = ImageRowSink(path: path, height: size.height, width: size.width, sizeWasGiven: imageSize != nil,
                                knownClasses: classNames, requireLabels: requireLabels || classNames == nil)
        try CSVTokenizer.scan(path: path, into: &sink)
        return try sink.finish()
    }

    /// Writes `data` in the course layout: label (its class name, or `NA` when unlabelled), then
    /// every pixel as an integer, LF line ends; atomically (temporary file, fsync, rename).
    public static func write(_ data: ImageDataset, to path: String) throws {
        precondition(data.channels == 1, "the course CSV layout holds grey images only")
        try AtomicFile.write(serialize(data), to: path)
    }

    /// The bytes `write` puts in a file.
    public static func serialize(_ data: ImageDataset) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count * (data.pixelsPerImage * 4 + 4))
        let digits = (0...255).map { Array(String($0).utf8) }
        for i in 0..<data.count {
            out.append(contentsOf: data.isLabelled ? field(data.classNames[Int(data.labels[i])]) : Array("NA".utf8))
            for p in data.images[i * data.pixelsPerImage ..< (i + 1) * data.pixelsPerImage] {
                out.append(UInt8(ascii: ","))
                out.append(contentsOf: digits[Int(p)])
            }
            out.append(UInt8(ascii: "\n"))
        }
        return out
    }

    /// Writes a copy of the CSV file at `input` to `output` in which the first field of the i-th
    /// row is `labels[i]`; every other byte (other fields as written, quotes, line ends, blank
    /// lines) is kept. The course's `predictions.csv` is this with the predicted labels.
    public static func writePredictions(input: String, labels: [String], to output: String) throws {
        let bytes = try FileBytes.read(input)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + labels.count)
        var position = 0, row = 0, line = 1
        let (newline, cr, quote, comma) = (UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\""), UInt8(ascii: ","))
        while position < bytes.count {
            // A blank line (possibly just CR) is copied as it is and takes no label.
            var lookahead = position
            while lookahead < bytes.count && bytes[lookahead] == cr { lookahead += 1 }
            if lookahead == bytes.count || bytes[lookahead] == newline {
                let end = Swift.min(lookahead + 1, bytes.count)
                out.append(contentsOf: bytes[position..<end])
                position = end
                line += 1
                continue
            }
            guard row < labels.count else {
                throw KilnError.file(path: input, message: "line \(line): more rows than the \(labels.count) predictions")
            }
            // Skip the first field: quoted (with "" inside) or up to the first comma or line end.
            var cursor = position
            if bytes[cursor] == quote {
                cursor += 1
                while cursor < bytes.count {
                    if bytes[cursor] == quote {
                        if cursor + 1 < bytes.count && bytes[cursor + 1] == quote { cursor += 2; continue }
                        cursor += 1
                        break
                    }
                    cursor += 1
                }
            }
            while cursor < bytes.count && bytes[cursor] != comma && bytes[cursor] != newline && bytes[cursor] != cr {
                cursor += 1
            }
            out.append(contentsOf: field(labels[row]))
            // Copy the rest of the record verbatim, up to and including its newline (outside quotes).
            var inQuotes = false
            let restStart = cursor
            while cursor < bytes.count {
                let byte = bytes[cursor]
                cursor += 1
                if byte == quote { inQuotes.toggle() }
                if byte == newline {
                    line += 1
                    if !inQuotes { break }
                }
            }
            out.append(contentsOf: bytes[restStart..<cursor])
            position = cursor
            row += 1
        }
        guard row == labels.count else {
            throw KilnError.file(path: input, message: "\(row) rows, but \(labels.count) predictions to write")
        }
        try AtomicFile.write(out, to: output)
    }

    /// A label as a CSV field: quoted only when it must be.
    private static func field(_ text: String) -> [UInt8] {
        if text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return Array(("\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"").utf8)
        }
        return Array(text.utf8)
    }

    /// Parses "WxH"-style `--image-size` text, written `HxW` (e.g. `28x28`).
    public static func parseImageSize(_ text: String) throws -> (height: Int, width: Int) {
        // A long value is refused before it is split (a 100 kB "xxx…" would make 100,000 pieces).
        let parts = text.utf8.count <= 32 ? text.lowercased().split(separator: "x", omittingEmptySubsequences: false) : []
        guard parts.count == 2, let h = Int(parts[0]), let w = Int(parts[1]), (1...maximumImageSide).contains(h),
              (1...maximumImageSide).contains(w) else {
            throw KilnError.argument("--image-size needs HxW with integers 1 to \(maximumImageSide) (e.g. 28x28), found \"\(excerpt(text))\"")
        }
        return (h, w)
    }
}

/// Receives the fields of a CSV file one at a time.
protocol CSVFieldSink {
    /// One field's bytes (unquoted, `""` already turned into `"`), its 1-based line and column.
    mutating func field(_ bytes: UnsafeBufferPointer<UInt8>, line: Int, column: Int) throws
    /// The end of a non-blank record that started on `line` and had `columns` fields.
    mutating func endRecord(line: Int, columns: Int) throws
}

/// Splits a CSV file into fields and records (RFC 4180, LF or CRLF), reading it in chunks so a
/// large file never sits in memory as text.
enum CSVTokenizer {
    private enum State { case fieldStart, unquoted, quoted, quoteInQuoted }

    static func scan<Sink: CSVFieldSink>(path: String, into sink: inout Sink) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KilnError.file(path: path, message: "no such file")
        }
        if isDirectory.boolValue { throw KilnError.file(path: path, message: "is a directory, expected a file") }
        guard let file = fopen(path, "rb") else {
            throw KilnError.file(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }

        let chunkSize = 1 << 20
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        var fieldBytes = [UInt8]()
        fieldBytes.reserveCapacity(64)
        var state = State.fieldStart
        var line = 1, recordLine = 1, column = 1
        // Whether the current record has any content (a blank line has none and is skipped).
        var recordHasContent = false

        func emitField() throws {
            try fieldBytes.withUnsafeBufferPointer { try sink.field($0, line: recordLine, column: column) }
            fieldBytes.removeAll(keepingCapacity: true)
        }

        var first = true
        while true {
            let count = fread(chunk, 1, chunkSize, file)
            if count == 0 {
                if ferror(file) != 0 {
                    throw KilnError.file(path: path, message: "cannot read: \(String(cString: strerror(errno)))")
                }
                break
            }
            // A UTF-8 byte-order mark (spreadsheets write one) is not part of the first field.
            let skip = first && count >= 3 && chunk[0] == 0xEF && chunk[1] == 0xBB && chunk[2] == 0xBF ? 3 : 0
            first = false
            for i in skip..<count {
                let byte = chunk[i]
                switch state {
                case .quoted:
                    if byte == UInt8(ascii: "\"") { state = .quoteInQuoted } else {
                        if byte == UInt8(ascii: "\n") { line += 1 }
                        fieldBytes.append(byte)
                    }
                    continue
                case .quoteInQuoted:
                    if byte == UInt8(ascii: "\"") { fieldBytes.append(byte); state = .quoted; continue }
                    if byte != UInt8(ascii: ",") && byte != UInt8(ascii: "\n") && byte != UInt8(ascii: "\r") {
                        throw KilnError.file(path: path, message: "line \(line), column \(column): unexpected \(describe(byte)) after a closing quote")
                    }
                case .fieldStart, .unquoted:
                    break
                }
                switch byte {
                case UInt8(ascii: ","):
                    recordHasContent = true
                    try emitField()
                    column += 1
                    state = .fieldStart
                case UInt8(ascii: "\n"):
                    if recordHasContent || state != .fieldStart {
                        try emitField()
                        try sink.endRecord(line: recordLine, columns: column)
                    }
                    line += 1
                    recordLine = line
                    column = 1
                    recordHasContent = false
                    state = .fieldStart
                case UInt8(ascii: "\r"):
                    break  // CRLF: the LF ends the record.
                case UInt8(ascii: "\""):
                    if state == .fieldStart { state = .quoted } else { fieldBytes.append(byte) }
                    recordHasContent = true
                default:
                    fieldBytes.append(byte)
                    state = .unquoted
                    recordHasContent = true
                }
            }
        }
        if state == .quoted {
            throw KilnError.file(path: path, message: "line \(recordLine), column \(column): quoted field never closed before the end of the file")
        }
        // A last record without a final newline.
        if recordHasContent || state != .fieldStart {
            try emitField()
            try sink.endRecord(line: recordLine, columns: column)
        }
    }

    static func describe(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? "\"\(Character(Unicode.Scalar(byte)))\"" : "byte 0x\(String(byte, radix: 16))"
    }
}

/// Turns CSV fields into an `ImageDataset`: label text per row, pixels as bytes.
private struct ImageRowSink: CSVFieldSink {
    let path: String
    let height: Int, width: Int
    let sizeWasGiven: Bool
    let knownClasses: [String]?
    let knownIndex: [String: Int32]
    let requireLabels: Bool
    let expectedColumns: Int

    var images: [UInt8] = []
    /// Label text per row (nil when unlabelled), turned into indices at the end.
    var rowLabels: [String?] = []
    var rows = 0
    var labelledRows = 0

    init(path: String, height: Int, width: Int, sizeWasGiven: Bool, knownClasses: [String]?, requireLabels: Bool) {
        self.path = path
        self.height = height
        self.width = width
        self.sizeWasGiven = sizeWasGiven
        self.knownClasses = knownClasses
        self.requireLabels = requireLabels
        expectedColumns = 1 + height * width
        var index: [String: Int32] = [:]
        for (i, name) in (knownClasses ?? []).enumerated() { index[name] = Int32(i) }
        knownIndex = index
    }

    private func fail(_ line: Int, _ column: Int?, _ message: String) -> KilnError {
        KilnError.file(path: path, message: "line \(line)" + (column.map { ", column \($0)" } ?? "") + ": " + message)
    }

    /// What a row should hold, for messages.
    private var layout: String {
        "\(expectedColumns) columns (a label and \(height)×\(width) pixels)"
            + (sizeWasGiven ? "" : "; give --image-size HxW for images of another size")
    }

    mutating func field(_ bytes: UnsafeBufferPointer<UInt8>, line: Int, column: Int) throws {
        if column == 1 {
            guard bytes.count <= CSVImages.maximumLabelBytes else {
                throw fail(line, 1, "label of \(bytes.count) bytes (\"\(excerpt(String(decoding: bytes, as: UTF8.self)))\"); a class name has at most \(CSVImages.maximumLabelBytes)")
            }
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if text.isEmpty || text == "NA" {
                if requireLabels { throw fail(line, 1, "row has no label (\"\(text)\"); every row of a training or evaluation file needs one") }
                rowLabels.append(nil)
            } else {
                if let knownClasses, knownIndex[text] == nil {
                    throw fail(line, 1, "label \"\(excerpt(text))\" is not one of the classes \(excerpt(knownClasses.joined(separator: ", "), limit: 200))")
                }
                if text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "\u{FFFD}" }) {
                    let shown = text.unicodeScalars.map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
                    throw fail(line, 1, "label \"\(excerpt(shown))\" holds control characters or invalid UTF-8")
                }
                labelledRows += 1
                rowLabels.append(text)
            }
            return
        }
        guard column <= expectedColumns else {
            if rows == 0 { throw fail(line, column, "too many columns: expected \(layout)") }
            throw fail(line, column, "ragged row: more columns than the \(expectedColumns) of the rows before")
        }
        images.append(try pixel(bytes, line: line, column: column))
    }

    /// One intensity: an integer 0–255, optionally written with a zero fraction (`12.0`) or padded with spaces.
    private func pixel(_ bytes: UnsafeBufferPointer<UInt8>, line: Int, column: Int) throws -> UInt8 {
        var start = 0, end = bytes.count
        while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
        while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        guard start < end else { throw fail(line, column, "empty pixel value; intensities are integers 0–255") }
        var value = 0, i = start, sawDigit = false
        var negative = false
        if bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") { negative = bytes[i] == UInt8(ascii: "-"); i += 1 }
        while i < end, bytes[i] >= 0x30, bytes[i] <= 0x39 {
            value = Swift.min(value * 10 + Int(bytes[i] - 0x30), 1_000_000)
            sawDigit = true
            i += 1
        }
        var fractionIsZero = true
        if i < end && bytes[i] == UInt8(ascii: ".") {
            i += 1
            while i < end, bytes[i] >= 0x30, bytes[i] <= 0x39 {
                if bytes[i] != 0x30 { fractionIsZero = false }
                sawDigit = true
                i += 1
            }
        }
        let text = excerpt(String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self))
        guard sawDigit, i == end else { throw fail(line, column, "pixel value \"\(text)\" is not a number; intensities are integers 0–255") }
        guard fractionIsZero else { throw fail(line, column, "pixel value \(text) is not an integer; intensities are integers 0–255") }
        guard !negative || value == 0, value <= 255 else { throw fail(line, column, "pixel value \(text) is out of range 0–255") }
        return UInt8(value)
    }

    mutating func endRecord(line: Int, columns: Int) throws {
        if columns != expectedColumns {
            if rows == 0 {
                throw fail(line, nil, "\(columns) column\(columns == 1 ? "" : "s"), expected \(layout)")
            }
            throw fail(line, columns + 1, "ragged row: \(columns) columns, the rows before have \(expectedColumns)")
        }
        rows += 1
    }

    func finish() throws -> ImageDataset {
        guard rows > 0 else { throw KilnError.file(path: path, message: "empty file: no rows of images") }
        let names = knownClasses ?? Array(Set(rowLabels.compactMap { $0 })).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var labels: [Int32] = []
        if labelledRows == rows {
            var index: [String: Int32] = [:]
            for (i, name) in names.enumerated() { index[name] = Int32(i) }
            labels = rowLabels.map { index[$0!]! }
        }
        return ImageDataset(images: images, labels: labels, count: rows, channels: 1, height: height, width: width,
                            classNames: names)
    }
}
