import Foundation
import KilnGraph
import KilnRuntime

/// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of
/// JSON describing each tensor (`dtype`, `shape`, `data_offsets` into the data section) and an
/// optional `__metadata__` map of strings, then the raw little-endian tensor data.
///
/// Kiln's checkpoints use it so PyTorch and numpy read Kiln weights directly. Byte order is the
/// machine's, which is little-endian on every platform Kiln runs on (x86-64, arm64).
public enum Safetensors {
    /// One tensor of a file.
    public struct Entry: Sendable, Hashable {
        /// The tensor's name (the header key), e.g. `fc1.weight`.
        public var name: String
        /// The Kiln element type, or nil for a safetensors dtype Kiln has no type for (e.g. `U8`, `I64`).
        public var dtype: DType?
        /// The dtype as the file spells it: `F32`, `F64`, `I32`, `U8`, ...
        public var rawDType: String
        /// Dimensions, row-major.
        public var shape: [Int]
        /// Raw little-endian element bytes: `shape.product * elementSize`.
        public var data: [UInt8]

        /// Creates an entry from raw bytes; `data` must match the shape and dtype.
        public init(name: String, rawDType: String, shape: [Int], data: [UInt8]) {
            guard let size = Safetensors.elementSizes[rawDType] else {
                preconditionFailure("unknown safetensors dtype \(rawDType)")
            }
            precondition(data.count == shape.reduce(1, *) * size,
                         "\(name): \(data.count) bytes for shape \(shape) of \(rawDType)")
            self.name = name
            self.dtype = Safetensors.kilnTypes[rawDType]
            self.rawDType = rawDType
            self.shape = shape
            self.data = data
        }

        /// Creates an entry of a Kiln dtype from raw bytes.
        public init(name: String, dtype: DType, shape: [Int], data: [UInt8]) {
            self.init(name: name, rawDType: Safetensors.rawName(of: dtype), shape: shape, data: data)
        }

        /// A float32 (`F32`) tensor holding `values`.
        public init(name: String, shape: [Int], floats values: [Float]) {
            self.init(name: name, dtype: .float32, shape: shape, data: Safetensors.bytes(of: values))
        }

        /// A float64 (`F64`) tensor holding `values`.
        public init(name: String, shape: [Int], doubles values: [Double]) {
            self.init(name: name, dtype: .float64, shape: shape, data: Safetensors.bytes(of: values))
        }

        /// An int32 (`I32`) tensor holding `values`.
        public init(name: String, shape: [Int], int32s values: [Int32]) {
            self.init(name: name, dtype: .int32, shape: shape, data: Safetensors.bytes(of: values))
        }

        /// A uint8 (`U8`) tensor holding `values`.
        public init(name: String, shape: [Int], uint8s values: [UInt8]) {
            self.init(name: name, rawDType: "U8", shape: shape, data: values)
        }

        /// Number of elements (the product of `shape`; 1 for a scalar).
        public var elementCount: Int { shape.reduce(1, *) }

        /// The elements of an `F32` tensor. Check `dtype` first: any other dtype is a precondition failure.
        public func floats() -> [Float] { values(as: Float.self, expecting: "F32") }

        /// The elements of an `F64` tensor. Check `dtype` first: any other dtype is a precondition failure.
        public func doubles() -> [Double] { values(as: Double.self, expecting: "F64") }

        /// The elements of an `I32` tensor, or of a `U8` tensor widened (labels are often stored as
        /// bytes). Any other dtype is a precondition failure.
        public func int32s() -> [Int32] {
            if rawDType == "U8" { return data.map { Int32($0) } }
            return values(as: Int32.self, expecting: "I32")
        }

        private func values<T>(as type: T.Type, expecting expected: String) -> [T] {
            precondition(rawDType == expected, "tensor \(name) is \(rawDType), not \(expected)")
            if elementCount == 0 { return [] }
            return [T](unsafeUninitializedCapacity: elementCount) { buffer, initialized in
                _ = data.withUnsafeBytes { memcpy(buffer.baseAddress!, $0.baseAddress!, $0.count) }
                initialized = elementCount
            }
        }
    }

    /// Bytes per element of every dtype the safetensors specification names.
    static let elementSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8,
    ]

    /// The safetensors dtypes Kiln computes with.
    static let kilnTypes: [String: DType] = ["F32": .float32, "F64": .float64, "I32": .int32]

    /// The safetensors spelling of a Kiln dtype.
    public static func rawName(of dtype: DType) -> String {
        switch dtype {
        case .float32: return "F32"
        case .float64: return "F64"
        case .int32: return "I32"
        }
    }

    /// The raw little-endian bytes of `values` (for `write`'s `data`).
    public static func bytes<T: BitwiseCopyable>(of values: [T]) -> [UInt8] {
        values.withUnsafeBytes { [UInt8]($0) }
    }

    /// Headers beyond this are refused before allocating (the reference implementation's limit).
    static let maximumHeaderSize = 100 << 20

    // MARK: Reading

    /// Reads a safetensors file: every tensor by name, and the `__metadata__` strings (empty if none).
    ///
    /// Every dtype of the specification is read (`dtype` nil where Kiln has no type: read `data`).
    /// Throws `KilnError.file` naming the file for a missing or short file, a header length beyond
    /// the file, bad JSON, an unknown dtype, data offsets beyond the file or not matching the shape.
    public static func read(path: String) throws -> (tensors: [String: Entry], metadata: [String: String]) {
        try parse(try FileBytes.read(path), path: path)
    }

    /// Parses the bytes of a safetensors file; `path` only names it in errors.
    public static func parse(_ file: [UInt8], path: String) throws
        -> (tensors: [String: Entry], metadata: [String: String]) {
        func fail(_ message: String) -> KilnError { KilnError.file(path: path, message: message) }
        guard file.count >= 8 else {
            throw fail("too short for safetensors: \(file.count) bytes, the header length alone takes 8")
        }
        var headerLength: UInt64 = 0
        for i in (0..<8).reversed() { headerLength = headerLength << 8 | UInt64(file[i]) }
        guard headerLength <= UInt64(file.count - 8) else {
            throw fail("safetensors header length \(headerLength) goes beyond the file (\(file.count - 8) bytes after the length)")
        }
        guard headerLength <= UInt64(maximumHeaderSize) else {
            throw fail("safetensors header length \(headerLength) exceeds the \(maximumHeaderSize)-byte limit")
        }
        let dataStart = 8 + Int(headerLength)
        let dataLength = file.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(file[8..<dataStart]))
        } catch {
            throw fail("bad safetensors header: not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else {
            throw fail("bad safetensors header: expected a JSON object at the top level")
        }

        var metadata: [String: String] = [:]
        if let raw = header["__metadata__"] {
            guard let map = raw as? [String: Any] else { throw fail("bad safetensors header: __metadata__ is not an object") }
            for (key, value) in map {
                guard let text = value as? String else {
                    throw fail("bad safetensors header: __metadata__ value for \"\(excerpt(key))\" is not a string")
                }
                metadata[key] = text
            }
        }

        var tensors: [String: Entry] = [:]
        var spans: [(begin: Int, end: Int, name: String)] = []
        for (name, raw) in header where name != "__metadata__" {
            guard let info = raw as? [String: Any],
                  let rawDType = info["dtype"] as? String,
                  let shape = integers(info["shape"]),
                  let offsets = integers(info["data_offsets"]), offsets.count == 2 else {
                throw fail("bad safetensors header: tensor \"\(excerpt(name))\" needs \"dtype\" (string), \"shape\" (integers) and \"data_offsets\" ([begin, end])")
            }
            guard let elementSize = elementSizes[rawDType] else {
                throw fail("tensor \"\(excerpt(name))\" has unknown dtype \"\(excerpt(rawDType))\" (known: \(elementSizes.keys.sorted().joined(separator: ", ")))")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor \"\(excerpt(name))\" data offsets [\(begin), \(end)] go beyond the data section (\(dataLength) bytes)")
            }
            guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("tensor \"\(excerpt(name))\" has a negative dimension in \(shape)") }
            // Overflow-checked: a shape whose byte count does not fit an Int cannot match any offsets.
            guard let bytes = MemoryBudget.product(shape + [elementSize]) else {
                throw fail("tensor \"\(excerpt(name))\": shape \(shape) of \(rawDType) needs more bytes than an integer counts, data offsets [\(begin), \(end)] hold \(end - begin)")
            }
            guard bytes == end - begin else {
                throw fail("tensor \"\(excerpt(name))\": shape \(shape) of \(rawDType) needs \(bytes) bytes, data offsets [\(begin), \(end)] hold \(end - begin)")
            }
            spans.append((begin, end, name))
        }
        // The specification: the tensors' byte ranges tile the data section exactly, without
        // gaps or overlaps (an overlap would load one tensor's bytes as another's weights; a
        // header length off by one shifts every tensor and leaves a byte over).
        spans.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var covered = 0
        for span in spans {
            guard span.begin == covered else {
                throw fail(span.begin < covered
                    ? "tensor \"\(excerpt(span.name))\" data offsets [\(span.begin), \(span.end)] overlap the tensor before (which ends at \(covered))"
                    : "bytes \(covered)..<\(span.begin) of the data section belong to no tensor (before \"\(excerpt(span.name))\")")
            }
            covered = span.end
        }
        guard covered == dataLength else {
            throw fail("the data section has \(dataLength) bytes but its tensors cover \(covered): the header length or the offsets are wrong")
        }
        for span in spans {
            let info = header[span.name] as! [String: Any]
            let rawDType = info["dtype"] as! String
            tensors[span.name] = Entry(name: span.name, rawDType: rawDType, shape: integers(info["shape"])!,
                                       data: Array(file[dataStart + span.begin ..< dataStart + span.end]))
        }
        return (tensors, metadata)
    }

    /// An array of JSON integers as `[Int]`, or nil if it is anything else.
    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        for element in array {
            // JSONSerialization bridges only whole numbers to Int, so fractions are refused here.
            guard let int = element as? Int else { return nil }
            result.append(int)
        }
        return result
    }

    // MARK: Writing

    /// Writes tensors of Kiln dtypes and string metadata to `path` atomically (see `write(path:entries:metadata:)`).
    public static func write(path: String, tensors: [(name: String, dtype: DType, shape: [Int], data: [UInt8])],
                             metadata: [String: String]) throws {
        try write(path: path, entries: tensors.map { Entry(name: $0.name, dtype: $0.dtype, shape: $0.shape, data: $0.data) },
                  metadata: metadata)
    }

    /// Writes entries of any dtype and string metadata to `path` atomically: a temporary file in the
    /// same directory, fsync, then rename over `path`, so a crash leaves the old file or the new one.
    ///
    /// The header lists tensors sorted by name (deterministic bytes for the same input). The data is
    /// laid out by element size, largest first, then by name: readers reject gaps between tensors,
    /// so this order is what puts every tensor at an offset aligned to its element size (the data
    /// section itself starts 8-aligned, the header being padded with spaces). Names must be unique.
    public static func write(path: String, entries: [Entry], metadata: [String: String]) throws {
        try AtomicFile.write(serialize(entries: entries, metadata: metadata), to: path)
    }

    /// The bytes of a safetensors file holding `entries` and `metadata` (the layout `write` documents).
    public static func serialize(entries: [Entry], metadata: [String: String]) -> [UInt8] {
        precondition(Set(entries.map(\.name)).count == entries.count, "safetensors tensor names must be unique")
        precondition(!entries.contains { $0.name == "__metadata__" }, "__metadata__ is reserved")
        let layout = entries.sorted {
            let (a, b) = (elementSizes[$0.rawDType]!, elementSizes[$1.rawDType]!)
            return a != b ? a > b : $0.name < $1.name
        }
        var offsets: [String: (Int, Int)] = [:]
        var position = 0
        for entry in layout {
            offsets[entry.name] = (position, position + entry.data.count)
            position += entry.data.count
        }

        var json = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonStringLiteral($0)):\(jsonStringLiteral(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        for entry in entries.sorted(by: { $0.name < $1.name }) {
            let (begin, end) = offsets[entry.name]!
            fields.append("\(jsonStringLiteral(entry.name)):{\"dtype\":\"\(entry.rawDType)\",\"shape\":[\(entry.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(end)]}")
        }
        json += fields.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))

        var file: [UInt8] = []
        file.reserveCapacity(8 + header.count + position)
        for i in 0..<8 { file.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i)))) }
        file.append(contentsOf: header)
        for entry in layout { file.append(contentsOf: entry.data) }
        return file
    }
}
