import Foundation
import Testing
@testable import KilnZoo
import KilnGraph

/// A tiny PNG decoder for the tests: checks the signature and every chunk's CRC (with its own
/// table, not zlib's), inflates IDAT and undoes filter type 0. Enough for what `PNG` writes.
struct DecodedPNG {
    var width = 0, height = 0, colourType = -1
    var pixels: [UInt8] = []

    static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
    static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        ~bytes.reduce(~UInt32(0)) { crcTable[Int(($0 ^ UInt32($1)) & 0xff)] ^ ($0 >> 8) }
    }

    init(_ file: [UInt8]) throws {
        func fail(_ why: String) -> Error { KilnError.file(path: "png", message: why) }
        func u32(_ i: Int) -> Int { Int(file[i]) << 24 | Int(file[i + 1]) << 16 | Int(file[i + 2]) << 8 | Int(file[i + 3]) }
        guard file.prefix(8) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw fail("bad signature") }
        var i = 8, compressed: [UInt8] = [], sawEnd = false
        while i + 12 <= file.count {
            let length = u32(i)
            let type = String(decoding: file[(i + 4)..<(i + 8)], as: UTF8.self)
            let data = Array(file[(i + 8)..<(i + 8 + length)])
            guard DecodedPNG.crc(file[(i + 4)..<(i + 8 + length)]) == UInt32(u32(i + 8 + length)) else { throw fail("bad CRC in \(type)") }
            switch type {
            case "IHDR":
                width = u32(i + 8); height = u32(i + 12); colourType = Int(data[9])
                guard data[8] == 8, data[12] == 0 else { throw fail("unsupported depth or interlace") }
            case "IDAT": compressed += data
            case "IEND": sawEnd = true
            default: break
            }
            i += 12 + length
        }
        guard sawEnd, i == file.count else { throw fail("no IEND at the end") }
        let raw = try Gzip.decompress(compressed, path: "IDAT")
        let channels = colourType == 0 ? 1 : 3
        let rowBytes = width * channels
        guard raw.count == height * (rowBytes + 1) else { throw fail("\(raw.count) bytes for \(height) rows") }
        for row in 0..<height {
            guard raw[row * (rowBytes + 1)] == 0 else { throw fail("filter type \(raw[row * (rowBytes + 1)])") }
            pixels += raw[(row * (rowBytes + 1) + 1)..<((row + 1) * (rowBytes + 1))]
        }
    }
}

@Suite("PNG grids and SVG plots")
struct PicturesTests {
    @Test("a PNG decodes to the size and pixels written, including odd sizes")
    func pngRoundTrip() throws {
        for (width, height) in [(1, 1), (7, 13), (33, 5)] {
            let pixels = (0..<(width * height)).map { UInt8(($0 * 37 + 11) % 256) }
            let decoded = try DecodedPNG(PNG.encode(width: width, height: height, pixels: pixels))
            #expect(decoded.width == width && decoded.height == height && decoded.colourType == 0)
            #expect(decoded.pixels == pixels)
        }
        let rgb = (0..<(4 * 3 * 3)).map { UInt8($0 * 7 % 256) }
        let decoded = try DecodedPNG(PNG.encode(width: 4, height: 3, channels: 3, pixels: rgb))
        #expect(decoded.colourType == 2 && decoded.pixels == rgb)
    }

    @Test("a per-class grid puts each class on its own row at the stated scale and spacing")
    func gridLayout() throws {
        // Six 2×3 images: class 0 bright (200 + i), class 1 dark (10 + i), interleaved.
        var bytes: [UInt8] = []
        let labels: [Int32] = [0, 1, 0, 1, 1, 0]
        for (i, label) in labels.enumerated() { bytes += [UInt8](repeating: label == 0 ? UInt8(200 + i) : UInt8(10 + i), count: 6) }
        let data = ImageDataset(images: bytes, labels: labels, count: 6, channels: 1, height: 2, width: 3, classNames: ["A", "B"])
        let grid = ImageGrid(data, perClass: 2, spacing: 1, scale: 2)
        // 2 columns of 6-pixel-wide cells, 2 rows of 4-pixel-high cells, 1-pixel margins.
        #expect(grid.width == 1 + 2 * 7 && grid.height == 1 + 2 * 5)
        let directory = TemporaryDirectory()
        try grid.writePNG(path: directory.file("grid.png"))
        let decoded = try DecodedPNG(Array(try Data(contentsOf: URL(fileURLWithPath: directory.file("grid.png")))))
        func pixel(_ x: Int, _ y: Int) -> UInt8 { decoded.pixels[y * decoded.width + x] }
        #expect(pixel(0, 0) == 128)               // margin
        #expect(pixel(1, 1) == 200 && pixel(6, 4) == 200)   // row 0, column 0: image 0 (class A)
        #expect(pixel(8, 1) == 202)               // row 0, column 1: image 2
        #expect(pixel(1, 6) == 11 && pixel(8, 6) == 13)     // row 1: images 1 and 3 (class B)
        #expect(pixel(7, 1) == 128)               // spacing between columns
    }

    static let history = [
        EpochSummary(epoch: 1, trainLoss: 1.2, validationLoss: 1.3, trainAccuracy: 0.6, validationAccuracy: 0.55),
        EpochSummary(epoch: 2, trainLoss: 0.7, validationLoss: 0.8, trainAccuracy: 0.8, validationAccuracy: 0.75),
        EpochSummary(epoch: 3, trainLoss: 0.5, validationLoss: 0.65, trainAccuracy: 0.86, validationAccuracy: 0.8),
    ]

    @Test("the SVG has both panels, ticks covering the data, and a legend entry per curve")
    func svgStructure() {
        let svg = TrainingCurves(Self.history, title: "lenet5 <test>").svg
        #expect(svg.contains("lenet5 &lt;test&gt;"))
        #expect(svg.components(separatedBy: "<g class=\"panel\">").count - 1 == 2)
        for name in ["training loss", "validation loss", "training accuracy", "validation accuracy"] { #expect(svg.contains(">\(name)</text>")) }
        // Each curve is a polyline with one point per epoch (plus the two axis polylines).
        let curves = svg.components(separatedBy: "<polyline points=\"").dropFirst().filter { $0.contains("stroke-width=\"2\"") }
        #expect(curves.count == 4)
        #expect(curves.allSatisfy { $0.prefix { $0 != "\"" }.split(separator: " ").count == 3 })
        let ticks = TrainingCurves.ticks(0.5, 1.3, integer: false)
        #expect(ticks.first! <= 0.5 && ticks.last! >= 1.3 && (4...9).contains(ticks.count))
        #expect(TrainingCurves.ticks(1, 3, integer: true).allSatisfy { $0 == $0.rounded() })
    }

    @Test("rsvg-convert renders the SVG to a PNG of its size",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/rsvg-convert")))
    func svgRenders() throws {
        let directory = TemporaryDirectory()
        try TrainingCurves(Self.history, title: "curves").write(path: directory.file("curves.svg"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/rsvg-convert")
        process.arguments = [directory.file("curves.svg"), "-o", directory.file("curves.png")]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0, "rsvg-convert: \(message)")
        let png = try DecodedPNGHeader(Array(try Data(contentsOf: URL(fileURLWithPath: directory.file("curves.png")))))
        #expect(png.width == 840 && png.height == 340)
    }
}

/// Width and height from a PNG's IHDR (rsvg writes RGBA, which the small decoder does not read).
struct DecodedPNGHeader {
    var width: Int, height: Int
    init(_ file: [UInt8]) throws {
        guard file.count > 24, String(decoding: file[12..<16], as: UTF8.self) == "IHDR" else { throw KilnError.file(path: "png", message: "no IHDR") }
        func u32(_ i: Int) -> Int { Int(file[i]) << 24 | Int(file[i + 1]) << 16 | Int(file[i + 2]) << 8 | Int(file[i + 3]) }
        width = u32(16); height = u32(20)
    }
}
