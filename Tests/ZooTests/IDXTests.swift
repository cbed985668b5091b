import Foundation
import Testing
import KilnRuntime
import KilnGraph
@testable import KilnZoo

/// The bytes of an IDX file: magic `00 00 type rank`, big-endian sizes, then `body`.
private func idx(type: UInt8 = 0x08, dims: [Int], body: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims { bytes += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)] }
    return bytes + body
}

/// Five 3x4 images whose pixels are distinct, and their labels.
private let pixels: [UInt8] = (0..<60).map { UInt8(($0 * 37 + 11) % 256) }
private let smallLabels: [UInt8] = [2, 0, 1, 1, 2]

@Suite("IDX and gzip")
struct IDXTests {
    @Test("a gzip-compressed IDX pair written with zlib reads back as the same data set")
    func gzipRoundTrip() throws {
        let dir = TemporaryDirectory()
        let imagesGz = Gzip.compress(idx(dims: [5, 3, 4], body: pixels))
        #expect(imagesGz.prefix(2) == [0x1f, 0x8b])
        let images = dir.write("images.gz", imagesGz)
        let labels = dir.write("labels.gz", Gzip.compress(idx(dims: [5], body: smallLabels)))

        let read = try IDX.read(path: images)
        #expect(read.dims == [5, 3, 4])
        #expect(read.bytes == pixels)

        let set = try IDX.loadDataset(images: images, labels: labels, classNames: ["x", "y", "z"])
        #expect(set.count == 5 && set.channels == 1 && set.height == 3 && set.width == 4)
        #expect(set.images == pixels)
        #expect(set.labels == [2, 0, 1, 1, 2])
        #expect(set.classNames == ["x", "y", "z"])
        #expect(set.pixelsPerImage == 12)
    }

    @Test("an uncompressed IDX file reads the same as its gzip")
    func uncompressed() throws {
        let dir = TemporaryDirectory()
        let plain = dir.write("plain", idx(dims: [5, 12], body: pixels))
        let read = try IDX.read(path: plain)
        #expect(read.dims == [5, 12] && read.bytes == pixels)
    }

    @Test("gzip inflates concatenated members and large inputs exactly")
    func gzipMembers() throws {
        var random = SplitMix64(seed: 7)
        let big = (0..<300_000).map { _ in UInt8(random.next() % 7) }  // compressible, several inflate rounds
        let joined = Gzip.compress(Array(big.prefix(1000))) + Gzip.compress(Array(big.dropFirst(1000)), level: 9)
        #expect(try Gzip.decompress(joined, path: "mem") == big)
        #expect(try Gzip.decompress(Gzip.compress([]), path: "empty") == [])
    }

    @Test("a gzip file streams through zlib a megabyte at a time, members split across reads included")
    func gzipFileStreaming() throws {
        var random = SplitMix64(seed: 3)
        // A stored (level 0) first member sized so it ends one byte before the first 1 MiB read
        // does: the second member's magic bytes straddle two reads.
        var size = (1 << 20) - 200
        var first = Gzip.compress((0..<size).map { _ in UInt8(random.next() & 0xff) }, level: 0)
        while first.count != (1 << 20) - 1 {
            size += (1 << 20) - 1 - first.count
            random = SplitMix64(seed: 3)
            first = Gzip.compress((0..<size).map { _ in UInt8(random.next() & 0xff) }, level: 0)
        }
        let tail = (0..<500_000).map { UInt8($0 % 13) }
        let dir = TemporaryDirectory()
        let path = dir.write("two.gz", first + Gzip.compress(tail))
        let expected = try Gzip.decompress(first, path: "mem") + tail
        #expect(try Gzip.decompress(file: path) == expected)
        let cut = dir.write("cut.gz", Array((first + Gzip.compress(tail)).dropLast(100)))
        #expect(throws: KilnError.self) { try Gzip.decompress(file: cut) }
    }

    @Test("a missing file is named in the error")
    func missingFile() {
        let dir = TemporaryDirectory()
        let path = dir.file("nope.gz")
        #expect(throws: KilnError.file(path: path, message: "no such file")) { try IDX.read(path: path) }
    }

    @Test("corrupt gzip data is reported as corrupt, with zlib's reason")
    func corruptGzip() {
        let dir = TemporaryDirectory()
        let path = dir.write("bad.gz", [0x1f, 0x8b, 0x08, 0x00] + [UInt8](repeating: 0xff, count: 30))
        #expect(throws: KilnError.file(path: path, message: "corrupt gzip data: invalid block type")) {
            try IDX.read(path: path)
        }
    }

    @Test("a gzip stream cut short is reported as truncated")
    func truncatedGzip() {
        let dir = TemporaryDirectory()
        let whole = Gzip.compress(idx(dims: [5, 3, 4], body: pixels))
        let path = dir.write("cut.gz", Array(whole.prefix(whole.count - 10)))
        #expect(throws: KilnError.self) { try IDX.read(path: path) }
        do {
            _ = try IDX.read(path: path)
        } catch let KilnError.file(errorPath, message) {
            #expect(errorPath == path)
            #expect(message.hasPrefix("truncated gzip data: the compressed stream ends early"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("data that is neither gzip nor zlib is not gzip, with the bytes found")
    func notGzip() {
        #expect(throws: KilnError.file(path: "x.gz", message: "not gzip data: starts with 50 4b, expected the gzip magic 1f 8b")) {
            try Gzip.decompress([0x50, 0x4B, 3, 4], path: "x.gz")
        }
        #expect(throws: KilnError.file(path: "x.gz", message: "not gzip data: the file is empty")) {
            try Gzip.decompress([], path: "x.gz")
        }
    }

    @Test("bytes after the end of a gzip stream are corruption")
    func trailingGarbage() {
        let dir = TemporaryDirectory()
        let path = dir.write("tail.gz", Gzip.compress(idx(dims: [2], body: [1, 2])) + [1, 2, 3])
        #expect(throws: KilnError.file(path: path, message:
            "corrupt gzip data: 3 unexpected bytes after the end of the compressed stream")) {
            try IDX.read(path: path)
        }
    }

    @Test("a bad magic number says which bytes were found")
    func badMagic() {
        let dir = TemporaryDirectory()
        let path = dir.write("zip", [0x50, 0x4B, 0x03, 0x04, 9, 9, 9, 9])
        #expect(throws: KilnError.file(path: path, message:
            "bad IDX magic number 50 4B 03 04: expected 00 00 <type> <dimension count> (not an IDX file, or compressed with something other than gzip)")) {
            try IDX.read(path: path)
        }
    }

    @Test("an element type other than unsigned byte is refused by name")
    func unsupportedType() {
        let dir = TemporaryDirectory()
        let path = dir.write("floats", idx(type: 0x0D, dims: [2], body: [UInt8](repeating: 0, count: 8)))
        #expect(throws: KilnError.file(path: path, message:
            "unsupported IDX element type 0D (float32): only 08 (unsigned byte) is supported")) {
            try IDX.read(path: path)
        }
    }

    @Test("data shorter than the dimensions is truncated, with both sizes")
    func truncatedData() {
        let dir = TemporaryDirectory()
        let path = dir.write("short.gz", Gzip.compress(idx(dims: [5, 3, 4], body: Array(pixels.prefix(59)))))
        #expect(throws: KilnError.file(path: path, message:
            "truncated IDX data: dimensions [5, 3, 4] need 60 bytes, found 59")) {
            try IDX.read(path: path)
        }
        let header = dir.write("header", [0, 0, 8, 3, 0, 0])
        #expect(throws: KilnError.file(path: header, message:
            "truncated IDX header: 3 dimensions need 16 bytes, found 6")) {
            try IDX.read(path: header)
        }
    }

    @Test("image and label counts must agree")
    func countMismatch() {
        let dir = TemporaryDirectory()
        let images = dir.write("images", idx(dims: [5, 3, 4], body: pixels))
        let labels = dir.write("labels", idx(dims: [4], body: [0, 1, 2, 0]))
        #expect(throws: KilnError.file(path: labels, message:
            "image/label count mismatch: 4 labels for 5 images in \(images)")) {
            try IDX.loadDataset(images: images, labels: labels, classNames: ["a", "b", "c"])
        }
    }

    @Test("a label beyond the class names is out of range, with its index")
    func labelOutOfRange() {
        let dir = TemporaryDirectory()
        let images = dir.write("images", idx(dims: [5, 3, 4], body: pixels))
        let labels = dir.write("labels", idx(dims: [5], body: [0, 1, 2, 3, 0]))
        #expect(throws: KilnError.file(path: labels, message:
            "label 3 at index 3 is out of range: 3 classes (0...2)")) {
            try IDX.loadDataset(images: images, labels: labels, classNames: ["a", "b", "c"])
        }
    }

    @Test("an images file must have three dimensions")
    func imageRank() {
        let dir = TemporaryDirectory()
        let images = dir.write("images", idx(dims: [5, 12], body: pixels))
        let labels = dir.write("labels", idx(dims: [5], body: smallLabels))
        #expect(throws: KilnError.file(path: images, message:
            "expected an images file with dimensions [count, rows, columns], found [5, 12]")) {
            try IDX.loadDataset(images: images, labels: labels, classNames: ["a", "b", "c"])
        }
    }

    @Test("fillBatch writes x/255 as IEEE float division, in index order, NCHW")
    func fillBatch() {
        let set = ImageDataset(images: pixels, labels: [2, 0, 1, 1, 2], count: 5, channels: 1, height: 3,
                               width: 4, classNames: ["a", "b", "c"])
        var floats = [Float](repeating: -1, count: 3 * 12)
        var labels = [Int32](repeating: -1, count: 3)
        set.fillBatch(indices: [4, 0, 4][...], into: &floats, labels: &labels)
        #expect(labels == [2, 2, 2])
        #expect(floats[0..<12].elementsEqual(pixels[48..<60].map { Float($0) / 255 }))
        #expect(floats[12..<24].elementsEqual(pixels[0..<12].map { Float($0) / 255 }))
        #expect(floats[24..<36] == floats[0..<12])
        // Every byte value, bit for bit against the division (a reciprocal multiply differs for some).
        let all = ImageDataset(images: (0...255).map { UInt8($0) }, labels: [], count: 1, channels: 1,
                               height: 16, width: 16, classNames: [])
        var row = [Float](repeating: 0, count: 256)
        all.fillBatch(indices: [0][...], into: &row, labels: nil)
        #expect(row.map(\.bitPattern) == (0...255).map { (Float($0) / 255).bitPattern })

        // Three interleaved channels (NHWC bytes) come out as planes (NCHW floats).
        let rgb = ImageDataset(images: [1, 2, 3, 4, 5, 6], labels: [], count: 1, channels: 3, height: 1,
                               width: 2, classNames: [])
        var planes = [Float](repeating: 0, count: 6)
        rgb.fillBatch(indices: [0][...], into: &planes, labels: nil)
        #expect(planes == [1, 4, 2, 5, 3, 6].map { Float($0) / 255 })
    }

    @Test("subset keeps images and labels together, in the order asked")
    func subset() {
        let set = ImageDataset(images: pixels, labels: [2, 0, 1, 1, 2], count: 5, channels: 1, height: 3,
                               width: 4, classNames: ["a", "b", "c"])
        let sub = set.subset([3, 1])
        #expect(sub.count == 2 && sub.labels == [1, 0] && sub.classNames == set.classNames)
        #expect(sub.images == Array(pixels[36..<48] + pixels[12..<24]))
        #expect(sub.classCounts() == [1, 1, 0])
    }

    @Test("a missing Fashion-MNIST directory says which package to install")
    func fashionMissing() {
        let dir = TemporaryDirectory()
        let missing = dir.file("absent")
        do {
            _ = try FashionMNIST.load(split: .test, directory: missing)
            Issue.record("loading from a missing directory succeeded")
        } catch let KilnError.file(path, message) {
            #expect(path == missing)
            #expect(message.contains("dataset-fashion-mnist"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        // A directory without the files names the first missing file.
        do {
            _ = try FashionMNIST.load(split: .train, directory: dir.path)
            Issue.record("loading from an empty directory succeeded")
        } catch let KilnError.file(path, message) {
            #expect(path == dir.file("train-images-idx3-ubyte.gz"))
            #expect(message.contains("dataset-fashion-mnist"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("Fashion-MNIST loads from a given directory, gzip or not, and checks the image size")
    func fashionDirectory() throws {
        let dir = TemporaryDirectory()
        let image = (0..<784).map { UInt8($0 % 256) }
        dir.write("t10k-images-idx3-ubyte.gz", Gzip.compress(idx(dims: [2, 28, 28], body: image + image.reversed())))
        dir.write("t10k-labels-idx1-ubyte", idx(dims: [2], body: [9, 0]))
        let set = try FashionMNIST.load(split: .test, directory: dir.path)
        #expect(set.count == 2 && set.labels == [9, 0] && set.classNames == FashionMNIST.classNames)
        #expect(Array(set.images.prefix(784)) == image)

        dir.write("train-images-idx3-ubyte", idx(dims: [1, 3, 4], body: Array(pixels.prefix(12))))
        dir.write("train-labels-idx1-ubyte", idx(dims: [1], body: [1]))
        #expect(throws: KilnError.file(path: dir.file("train-images-idx3-ubyte"), message:
            "Fashion-MNIST images are 28x28, found 3x4")) {
            try FashionMNIST.load(split: .train, directory: dir.path)
        }
    }

    @Test("the installed Fashion-MNIST test split has 10000 images, the first an ankle boot",
          .enabled(if: FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory),
                   "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"))
    func fashionTestSplit() throws {
        let set = try FashionMNIST.load(split: .test, directory: FashionMNIST.defaultDirectory)
        #expect(set.count == 10000 && set.height == 28 && set.width == 28 && set.channels == 1)
        #expect(set.images.count == 10000 * 784)
        #expect(set.labels.first == 9)
        #expect(set.classNames[Int(set.labels[0])] == "Ankle boot")
        #expect(set.classCounts() == [Int](repeating: 1000, count: 10))
    }
}
