import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

/// A safetensors file from a header string and a data section, as a hand-made bad file.
private func safetensorsFile(header: String, data: [UInt8] = [], statedLength: UInt64? = nil) -> [UInt8] {
    let json = Array(header.utf8)
    let length = statedLength ?? UInt64(json.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + json + data
}

/// PyTorch's MLP fixture (Tests/Fixtures).
private let fixturePath = fixtureDirectory + "/mlp-sgd.safetensors"

@Suite("Safetensors")
struct SafetensorsTests {
    @Test("written tensors and metadata read back identical, every dtype")
    func roundTrip() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("model.safetensors")
        let weights: [Float] = [1.5, -2, 0.1, .infinity, -0.0, 3e-39]
        let tensors: [(name: String, dtype: DType, shape: [Int], data: [UInt8])] = [
            ("fc.weight", .float32, [2, 3], Safetensors.bytes(of: weights)),
            ("a.bias", .float32, [1], Safetensors.bytes(of: [Float(7)])),
            ("step", .int32, [], Safetensors.bytes(of: [Int32(-12)])),
            ("moments", .float64, [2], Safetensors.bytes(of: [0.1, -1e300])),
            ("empty", .float32, [0, 3], []),
        ]
        try Safetensors.write(path: path, tensors: tensors, metadata: ["format": "pt", "note": "quote \" and\nnewline"])
        let read = try Safetensors.read(path: path)
        #expect(read.metadata == ["format": "pt", "note": "quote \" and\nnewline"])
        #expect(read.tensors.keys.sorted() == ["a.bias", "empty", "fc.weight", "moments", "step"])
        #expect(read.tensors["empty"]?.shape == [0, 3] && read.tensors["empty"]?.floats() == [])
        let fc = try #require(read.tensors["fc.weight"])
        #expect(fc.dtype == .float32 && fc.rawDType == "F32" && fc.shape == [2, 3])
        #expect(fc.floats().map(\.bitPattern) == weights.map(\.bitPattern))
        #expect(read.tensors["step"]?.int32s() == [-12] && read.tensors["step"]?.shape == [])
        #expect(read.tensors["moments"]?.doubles() == [0.1, -1e300])
        #expect(read.tensors["a.bias"]?.floats() == [7])
        // No temporary file is left beside the result.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])
    }

    @Test("the layout is deterministic, 8-aligned, gap-free, and each tensor aligned to its element size")
    func layout() throws {
        let entries = [
            Safetensors.Entry(name: "b", shape: [3], uint8s: [1, 2, 3]),
            Safetensors.Entry(name: "a", shape: [1], floats: [1]),
            Safetensors.Entry(name: "c", shape: [1], doubles: [2]),
            Safetensors.Entry(name: "d", shape: [3], int32s: [4, 5, 6]),
        ]
        let bytes = Safetensors.serialize(entries: entries, metadata: [:])
        #expect(bytes == Safetensors.serialize(entries: entries.reversed(), metadata: [:]))
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        #expect(headerLength % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self)
        #expect(header.trimmingCharacters(in: .whitespaces) ==
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"b":{"dtype":"U8","shape":[3],"data_offsets":[24,27]},"c":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"d":{"dtype":"I32","shape":[3],"data_offsets":[12,24]}}"#)
        #expect(bytes.count == 8 + headerLength + 27)
        let read = try Safetensors.parse(bytes, path: "mem")
        #expect(read.tensors["b"]?.dtype == nil && read.tensors["b"]?.rawDType == "U8")
        #expect(read.tensors["b"]?.int32s() == [1, 2, 3])
        #expect(read.tensors["d"]?.int32s() == [4, 5, 6])
        #expect(Set(read.tensors.values) == Set(entries))
    }

    @Test("writing over an existing file replaces it")
    func overwrite() throws {
        let dir = TemporaryDirectory()
        let path = dir.write("ckpt.safetensors", [1, 2, 3])
        try Safetensors.write(path: path, entries: [.init(name: "x", shape: [2], floats: [1, 2])], metadata: [:])
        #expect(try Safetensors.read(path: path).tensors["x"]?.floats() == [1, 2])
        let missingDirectory = dir.file("no/such/dir/x.safetensors")
        #expect(throws: KilnError.self) {
            try Safetensors.write(path: missingDirectory, entries: [], metadata: [:])
        }
    }

    @Test("the PyTorch MLP fixture reads with the shapes its README lists")
    func peerFixture() throws {
        let read = try Safetensors.read(path: fixturePath)
        #expect(read.tensors.count == 24)
        #expect(read.tensors["init.fc1.weight"]?.shape == [200, 784])
        #expect(read.tensors["init.fc1.weight"]?.dtype == .float32)
        #expect(read.tensors["init.fc3.bias"]?.shape == [10])
        #expect(read.tensors["batch_indices"]?.shape == [20, 16] && read.tensors["batch_indices"]?.dtype == .int32)
        #expect(read.tensors["batch_labels"]?.rawDType == "U8" && read.tensors["batch_labels"]?.shape == [20, 16])
        #expect(read.tensors["loss"]?.shape == [20])
        #expect(read.tensors["logits0"]?.shape == [16, 10])
        #expect(read.metadata["train_images_sha256"] == "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012")
        // Values are sane: U(±1/sqrt(784)) init, losses near ln 10 at the start.
        let init1 = try #require(read.tensors["init.fc1.weight"]).floats()
        #expect(init1.allSatisfy { abs($0) <= 1 / Float(784).squareRoot() })
        let loss = try #require(read.tensors["loss"]).floats()
        #expect(abs(loss[0] - log(10)) < 0.2)
        let labels = try #require(read.tensors["batch_labels"]).int32s()
        #expect(labels.allSatisfy { (0..<10).contains($0) })
        let indices = try #require(read.tensors["batch_indices"]).int32s()
        #expect(Set(indices).count == 320 && indices.allSatisfy { (0..<60000).contains($0) })
    }

    @Test("a file shorter than the length field is too short")
    func tooShort() {
        let dir = TemporaryDirectory()
        let path = dir.write("short", [1, 2, 3])
        #expect(throws: KilnError.file(path: path, message:
            "too short for safetensors: 3 bytes, the header length alone takes 8")) {
            try Safetensors.read(path: path)
        }
    }

    @Test("a header length beyond the file is refused")
    func headerBeyondFile() {
        let dir = TemporaryDirectory()
        let path = dir.write("long", safetensorsFile(header: "{}", statedLength: 100))
        #expect(throws: KilnError.file(path: path, message:
            "safetensors header length 100 goes beyond the file (2 bytes after the length)")) {
            try Safetensors.read(path: path)
        }
    }

    @Test("a header that is not JSON is bad JSON")
    func badJSON() {
        let dir = TemporaryDirectory()
        let path = dir.write("json", safetensorsFile(header: "{\"a\": [1, 2"))
        do {
            _ = try Safetensors.read(path: path)
            Issue.record("bad JSON was accepted")
        } catch let KilnError.file(errorPath, message) {
            #expect(errorPath == path)
            #expect(message.hasPrefix("bad safetensors header: not valid JSON"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        let array = dir.write("array", safetensorsFile(header: "[1]"))
        #expect(throws: KilnError.file(path: array, message:
            "bad safetensors header: expected a JSON object at the top level")) {
            try Safetensors.read(path: array)
        }
        let fields = dir.write("fields", safetensorsFile(header: #"{"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        #expect(throws: KilnError.file(path: fields, message:
            #"bad safetensors header: tensor "t" needs "dtype" (string), "shape" (integers) and "data_offsets" ([begin, end])"#)) {
            try Safetensors.read(path: fields)
        }
    }

    @Test("data offsets beyond the file are refused, and so are offsets that do not fit the shape")
    func offsetsBeyondFile() {
        let dir = TemporaryDirectory()
        let path = dir.write("offsets", safetensorsFile(
            header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [UInt8](repeating: 0, count: 12)))
        #expect(throws: KilnError.file(path: path, message:
            #"tensor "w" data offsets [0, 16] go beyond the data section (12 bytes)"#)) {
            try Safetensors.read(path: path)
        }
        let mismatch = dir.write("mismatch", safetensorsFile(
            header: #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, data: [UInt8](repeating: 0, count: 12)))
        #expect(throws: KilnError.file(path: mismatch, message:
            #"tensor "w": shape [2, 2] of F32 needs 16 bytes, data offsets [0, 12] hold 12"#)) {
            try Safetensors.read(path: mismatch)
        }
    }

    @Test("an unknown dtype is named")
    func unknownDType() {
        let dir = TemporaryDirectory()
        let path = dir.write("dtype", safetensorsFile(
            header: #"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        #expect(throws: KilnError.file(path: path, message:
            #"tensor "w" has unknown dtype "F33" (known: BF16, BOOL, F16, F32, F64, F8_E4M3, F8_E5M2, I16, I32, I64, I8, U16, U32, U64, U8)"#)) {
            try Safetensors.read(path: path)
        }
    }

    @Test("metadata must map strings to strings")
    func badMetadata() {
        let dir = TemporaryDirectory()
        let path = dir.write("meta", safetensorsFile(header: #"{"__metadata__":{"epoch":3}}"#))
        #expect(throws: KilnError.file(path: path, message:
            #"bad safetensors header: __metadata__ value for "epoch" is not a string"#)) {
            try Safetensors.read(path: path)
        }
    }

    @Test("a shape whose byte count overflows is an error naming the tensor, not an overflow trap")
    func shapeOverflow() {
        let dir = TemporaryDirectory()
        // 2^61 elements fit an Int; times 4 bytes they do not (the error branch used to trap computing that product).
        let elements = dir.write("elements", safetensorsFile(
            header: #"{"w":{"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
        #expect(throws: KilnError.file(path: elements, message:
            #"tensor "w": shape [2305843009213693952] of F32 needs more bytes than an integer counts, data offsets [0, 4] hold 4"#)) {
            try Safetensors.read(path: elements)
        }
        let product = dir.write("product", safetensorsFile(
            header: #"{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,1]}}"#, data: [0]))
        #expect(throws: KilnError.file(path: product, message:
            #"tensor "w": shape [4294967296, 4294967296] of U8 needs more bytes than an integer counts, data offsets [0, 1] hold 1"#)) {
            try Safetensors.read(path: product)
        }
    }

    @Test("offsets must tile the data section: overlaps, gaps and bytes left over are refused")
    func offsetsTileData() {
        let dir = TemporaryDirectory()
        let overlap = dir.write("overlap", safetensorsFile(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            data: [UInt8](repeating: 0, count: 8)))
        #expect(throws: KilnError.file(path: overlap, message:
            #"tensor "b" data offsets [4, 8] overlap the tensor before (which ends at 8)"#)) {
            try Safetensors.read(path: overlap)
        }
        let gap = dir.write("gap", safetensorsFile(
            header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            data: [UInt8](repeating: 0, count: 12)))
        #expect(throws: KilnError.file(path: gap, message:
            #"bytes 4..<8 of the data section belong to no tensor (before "b")"#)) {
            try Safetensors.read(path: gap)
        }
        let extra = dir.write("extra", safetensorsFile(
            header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: [UInt8](repeating: 0, count: 5)))
        #expect(throws: KilnError.file(path: extra, message:
            "the data section has 5 bytes but its tensors cover 4: the header length or the offsets are wrong")) {
            try Safetensors.read(path: extra)
        }
    }

    @Test("a header length one byte short of a written file is refused (it would shift every weight by a byte)")
    func headerLengthOneShort() throws {
        let dir = TemporaryDirectory()
        var bytes = Safetensors.serialize(entries: [Safetensors.Entry(name: "w", shape: [3], floats: [1, 2, 3])], metadata: ["format": "pt"])
        let stated = bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: (stated - 1) >> (8 * UInt64(i))) }
        let path = dir.write("short", bytes)
        #expect(throws: KilnError.file(path: path, message:
            "the data section has 13 bytes but its tensors cover 12: the header length or the offsets are wrong")) {
            try Safetensors.read(path: path)
        }
    }

    @Test("a huge tensor name is quoted as a short excerpt")
    func longNameExcerpt() throws {
        let dir = TemporaryDirectory()
        let name = String(repeating: "n", count: 10_000)
        let path = dir.write("name", safetensorsFile(header: #"{""# + name + #"":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#,
                                                     data: [0, 0, 0, 0]))
        do {
            _ = try Safetensors.read(path: path)
            Issue.record("a bad dtype was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.count < 400 && message.contains("(10000 bytes)"))
        }
    }
}
