/// The part of ONNX's `onnx.proto` (IR version 3 and later) that Kiln reads and writes:
/// ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto with tensor
/// types and shapes, OperatorSetIdProto. Field numbers are those of onnx.proto; fields Kiln does
/// not use are skipped on reading and not written.

/// TensorProto.DataType values Kiln handles.
public enum ONNXDataType: Int, Sendable {
    case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, bool = 9, double = 11

    /// The name in onnx.proto, for messages about any data type number.
    static func name(_ code: Int) -> String {
        let names = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
                     8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64", 14: "COMPLEX64",
                     15: "COMPLEX128", 16: "BFLOAT16"]
        return names[code] ?? "data type \(code)"
    }
}

/// TensorProto: a named tensor (an initializer or a constant).
public struct ONNXTensor: Sendable, Equatable {
    public var name = ""
    public var dims: [Int64] = []
    public var dataType = 0
    public var rawData: [UInt8]?
    public var floatData: [Float] = []
    public var int32Data: [Int32] = []
    public var int64Data: [Int64] = []
    public var doubleData: [Double] = []
    /// 1 (EXTERNAL): the data lives in another file, which Kiln does not read.
    public var dataLocation = 0

    public init() {}

    /// A float32 tensor (written as raw_data).
    public init(name: String, dims: [Int], floats: [Float]) {
        self.name = name
        self.dims = dims.map(Int64.init)
        self.dataType = ONNXDataType.float.rawValue
        var raw: [UInt8] = []
        raw.reserveCapacity(floats.count * 4)
        for v in floats {
            let bits = v.bitPattern
            for i in 0..<4 { raw.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i)))) }
        }
        self.rawData = raw
    }

    /// An int64 tensor (written as raw_data).
    public init(name: String, dims: [Int], int64s: [Int64]) {
        self.name = name
        self.dims = dims.map(Int64.init)
        self.dataType = ONNXDataType.int64.rawValue
        var raw: [UInt8] = []
        for v in int64s {
            let bits = UInt64(bitPattern: v)
            for i in 0..<8 { raw.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
        }
        self.rawData = raw
    }

    static func read(_ r: inout ProtobufReader) throws -> ONNXTensor {
        var t = ONNXTensor()
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, _): try r.appendInt64s(wire, to: &t.dims)
            case (2, .varint): t.dataType = Int(try r.int32())
            case (4, _): try r.appendFloats(wire, to: &t.floatData)
            case (5, _): try r.appendInt32s(wire, to: &t.int32Data)
            case (7, _): try r.appendInt64s(wire, to: &t.int64Data)
            case (8, .lengthDelimited): t.name = try r.string()
            case (9, .lengthDelimited): t.rawData = try r.bytesField()
            case (10, _): try r.appendDoubles(wire, to: &t.doubleData)
            case (14, .varint): t.dataLocation = Int(try r.int32())
            default: try r.skip(wire)
            }
        }
        return t
    }

    func write(_ w: inout ProtobufWriter) {
        w.packedInt64s(1, dims)
        w.int(2, dataType)
        w.packedFloats(4, floatData)
        w.packedInt64s(7, int64Data)
        if !name.isEmpty { w.string(8, name) }
        if let rawData { w.bytes(9, rawData) }
    }

    /// The shape, with every dimension checked (0 ≤ d, product ≤ `limit`).
    public func shape(limit: Int) throws -> [Int] {
        var count = 1
        var shape: [Int] = []
        for d in dims {
            guard d >= 0 else { throw ONNXError("tensor \"\(name)\" has dimension \(d)") }
            guard d <= Int64(limit) else { throw ONNXError("tensor \"\(name)\" of shape \(dims) is too large (more than \(limit) values)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, product <= limit else { throw ONNXError("tensor \"\(name)\" of shape \(dims) is too large") }
            count = product
            shape.append(Int(d))
        }
        return shape
    }

    /// The element count, checked against the data present (so never more than the file holds).
    func elementCount(bytesPerElement: Int) throws -> Int {
        guard dataLocation == 0 else { throw ONNXError("tensor \"\(name)\" keeps its data in an external file, which Kiln does not read") }
        let available: Int
        if let rawData { available = rawData.count / bytesPerElement }
        else { available = floatData.count + int32Data.count + int64Data.count + doubleData.count }
        let count = try shape(limit: Swift.max(available, 1)).reduce(1, *)
        if let rawData, rawData.count != count * bytesPerElement {
            throw ONNXError("tensor \"\(name)\" of shape \(dims) has \(rawData.count) bytes of raw_data, needs \(count * bytesPerElement)")
        }
        return count
    }

    private func raw<T>(_ count: Int, _ size: Int, _ decode: (UInt64) -> T) -> [T] {
        let raw = rawData!
        return (0..<count).map { i in
            var bits: UInt64 = 0
            for b in 0..<size { bits |= UInt64(raw[i * size + b]) << (8 * UInt64(b)) }
            return decode(bits)
        }
    }

    /// The values as floats: FLOAT and DOUBLE tensors (and integer ones, converted).
    public func floats() throws -> [Float] {
        switch ONNXDataType(rawValue: dataType) {
        case .float:
            let n = try elementCount(bytesPerElement: 4)
            if rawData != nil { return raw(n, 4) { Float(bitPattern: UInt32(truncatingIfNeeded: $0)) } }
            guard floatData.count == n else { throw ONNXError("tensor \"\(name)\" of shape \(dims) has \(floatData.count) values, needs \(n)") }
            return floatData
        case .double:
            let n = try elementCount(bytesPerElement: 8)
            if rawData != nil { return raw(n, 8) { Float(Double(bitPattern: $0)) } }
            guard doubleData.count == n else { throw ONNXError("tensor \"\(name)\" of shape \(dims) has \(doubleData.count) values, needs \(n)") }
            return doubleData.map(Float.init)
        case .int64, .int32:
            return try integers().map { Float($0) }
        default:
            throw ONNXError("tensor \"\(name)\" is \(ONNXDataType.name(dataType)); Kiln reads FLOAT, DOUBLE, INT32 and INT64 tensors")
        }
    }

    /// The values as integers: INT64 and INT32 tensors.
    public func integers() throws -> [Int64] {
        switch ONNXDataType(rawValue: dataType) {
        case .int64:
            let n = try elementCount(bytesPerElement: 8)
            if rawData != nil { return raw(n, 8) { Int64(bitPattern: $0) } }
            guard int64Data.count == n else { throw ONNXError("tensor \"\(name)\" of shape \(dims) has \(int64Data.count) values, needs \(n)") }
            return int64Data
        case .int32:
            let n = try elementCount(bytesPerElement: 4)
            if rawData != nil { return raw(n, 4) { Int64(Int32(truncatingIfNeeded: $0)) } }
            guard int32Data.count == n else { throw ONNXError("tensor \"\(name)\" of shape \(dims) has \(int32Data.count) values, needs \(n)") }
            return int32Data.map(Int64.init)
        default:
            throw ONNXError("tensor \"\(name)\" is \(ONNXDataType.name(dataType)), not INT64 or INT32")
        }
    }
}

/// AttributeProto.
public struct ONNXAttribute: Sendable, Equatable {
    public enum Kind: Int, Sendable {
        case undefined = 0, float = 1, int = 2, string = 3, tensor = 4, graph = 5, floats = 6, ints = 7, strings = 8
    }
    public var name = ""
    public var type = 0
    public var f: Float = 0
    public var i: Int64 = 0
    public var s: [UInt8] = []
    public var t: ONNXTensor?
    public var floats: [Float] = []
    public var ints: [Int64] = []
    /// A subgraph (If, Loop, Scan): present only so the importer can refuse it by name.
    public var hasGraph = false

    public init(name: String) { self.name = name }
    public init(name: String, int: Int) { self.name = name; type = Kind.int.rawValue; i = Int64(int) }
    public init(name: String, float: Float) { self.name = name; type = Kind.float.rawValue; f = float }
    public init(name: String, ints: [Int]) { self.name = name; type = Kind.ints.rawValue; self.ints = ints.map(Int64.init) }
    public init(name: String, string: String) { self.name = name; type = Kind.string.rawValue; s = Array(string.utf8) }
    public init(name: String, tensor: ONNXTensor) { self.name = name; type = Kind.tensor.rawValue; t = tensor }

    static func read(_ r: inout ProtobufReader) throws -> ONNXAttribute {
        var a = ONNXAttribute(name: "")
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, .lengthDelimited): a.name = try r.string()
            case (2, .fixed32): a.f = try r.float()
            case (3, .varint): a.i = try r.int64()
            case (4, .lengthDelimited): a.s = try r.bytesField()
            case (5, .lengthDelimited):
                var m = try r.message()
                a.t = try ONNXTensor.read(&m)
            case (6, .lengthDelimited):
                _ = try r.lengthDelimited()
                a.hasGraph = true
            case (7, _): try r.appendFloats(wire, to: &a.floats)
            case (8, _): try r.appendInt64s(wire, to: &a.ints)
            case (11, .lengthDelimited):
                _ = try r.lengthDelimited()
                a.hasGraph = true
            case (20, .varint): a.type = Int(try r.int32())
            default: try r.skip(wire)
            }
        }
        return a
    }

    func write(_ w: inout ProtobufWriter) {
        w.string(1, name)
        switch Kind(rawValue: type) {
        case .float: w.float(2, f)
        case .int: w.int64(3, i)
        case .string: w.bytes(4, s)
        case .tensor: if let t { w.message(5) { t.write(&$0) } }
        case .ints: w.packedInt64s(8, ints)
        case .floats: w.packedFloats(7, floats)
        default: break
        }
        w.int(20, type)
    }
}

/// NodeProto.
public struct ONNXNode: Sendable, Equatable {
    public var inputs: [String] = []
    public var outputs: [String] = []
    public var name = ""
    public var opType = ""
    public var domain = ""
    public var attributes: [ONNXAttribute] = []

    public init() {}
    public init(_ opType: String, _ inputs: [String], _ outputs: [String], name: String, attributes: [ONNXAttribute] = []) {
        self.opType = opType; self.inputs = inputs; self.outputs = outputs; self.name = name; self.attributes = attributes
    }

    public func attribute(_ name: String) -> ONNXAttribute? { attributes.first { $0.name == name } }

    static func read(_ r: inout ProtobufReader) throws -> ONNXNode {
        var n = ONNXNode()
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, .lengthDelimited): n.inputs.append(try r.string())
            case (2, .lengthDelimited): n.outputs.append(try r.string())
            case (3, .lengthDelimited): n.name = try r.string()
            case (4, .lengthDelimited): n.opType = try r.string()
            case (5, .lengthDelimited):
                var m = try r.message()
                n.attributes.append(try ONNXAttribute.read(&m))
            case (7, .lengthDelimited): n.domain = try r.string()
            default: try r.skip(wire)
            }
        }
        return n
    }

    func write(_ w: inout ProtobufWriter) {
        for i in inputs { w.string(1, i) }
        for o in outputs { w.string(2, o) }
        if !name.isEmpty { w.string(3, name) }
        w.string(4, opType)
        for a in attributes { w.message(5) { a.write(&$0) } }
        if !domain.isEmpty { w.string(7, domain) }
    }
}

/// ValueInfoProto of a tensor: name, element type and shape (dimensions known or named).
public struct ONNXValueInfo: Sendable, Equatable {
    public enum Dimension: Sendable, Equatable {
        case value(Int64)
        case parameter(String)
        case unknown
    }
    public var name = ""
    public var elementType = 0
    public var dims: [Dimension]?

    public init() {}
    public init(name: String, elementType: ONNXDataType = .float, dims: [Dimension]) {
        self.name = name; self.elementType = elementType.rawValue; self.dims = dims
    }

    static func read(_ r: inout ProtobufReader) throws -> ONNXValueInfo {
        var v = ONNXValueInfo()
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, .lengthDelimited): v.name = try r.string()
            case (2, .lengthDelimited):
                var type = try r.message()  // TypeProto
                while let (tf, tw) = try type.nextField() {
                    guard tf == 1, tw == .lengthDelimited else { try type.skip(tw); continue }
                    var tensor = try type.message()  // TypeProto.Tensor
                    while let (f, w) = try tensor.nextField() {
                        switch (f, w) {
                        case (1, .varint): v.elementType = Int(try tensor.int32())
                        case (2, .lengthDelimited):
                            var shape = try tensor.message()  // TensorShapeProto
                            var dims: [Dimension] = []
                            while let (sf, sw) = try shape.nextField() {
                                guard sf == 1, sw == .lengthDelimited else { try shape.skip(sw); continue }
                                var dim = try shape.message()
                                var d = Dimension.unknown
                                while let (df, dw) = try dim.nextField() {
                                    switch (df, dw) {
                                    case (1, .varint): d = .value(try dim.int64())
                                    case (2, .lengthDelimited): d = .parameter(try dim.string())
                                    default: try dim.skip(dw)
                                    }
                                }
                                dims.append(d)
                            }
                            v.dims = dims
                        default: try tensor.skip(w)
                        }
                    }
                }
            default: try r.skip(wire)
            }
        }
        return v
    }

    func write(_ w: inout ProtobufWriter) {
        w.string(1, name)
        w.message(2) { type in
            type.message(1) { tensor in
                tensor.int(1, elementType)
                if let dims {
                    tensor.message(2) { shape in
                        for d in dims {
                            shape.message(1) { dim in
                                switch d {
                                case let .value(v): dim.int64(1, v)
                                case let .parameter(p): dim.string(2, p)
                                case .unknown: break
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// GraphProto.
public struct ONNXGraph: Sendable, Equatable {
    public var nodes: [ONNXNode] = []
    public var name = ""
    public var initializers: [ONNXTensor] = []
    public var inputs: [ONNXValueInfo] = []
    public var outputs: [ONNXValueInfo] = []
    /// Whether the graph has sparse initializers (refused: Kiln reads dense tensors only).
    public var hasSparseInitializers = false

    public init() {}

    static func read(_ r: inout ProtobufReader) throws -> ONNXGraph {
        var g = ONNXGraph()
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, .lengthDelimited):
                var m = try r.message()
                g.nodes.append(try ONNXNode.read(&m))
            case (2, .lengthDelimited): g.name = try r.string()
            case (5, .lengthDelimited):
                var m = try r.message()
                g.initializers.append(try ONNXTensor.read(&m))
            case (11, .lengthDelimited):
                var m = try r.message()
                g.inputs.append(try ONNXValueInfo.read(&m))
            case (12, .lengthDelimited):
                var m = try r.message()
                g.outputs.append(try ONNXValueInfo.read(&m))
            case (15, .lengthDelimited):
                _ = try r.lengthDelimited()
                g.hasSparseInitializers = true
            default: try r.skip(wire)
            }
        }
        return g
    }

    func write(_ w: inout ProtobufWriter) {
        for n in nodes { w.message(1) { n.write(&$0) } }
        w.string(2, name)
        for t in initializers { w.message(5) { t.write(&$0) } }
        for i in inputs { w.message(11) { i.write(&$0) } }
        for o in outputs { w.message(12) { o.write(&$0) } }
    }
}

/// ModelProto.
public struct ONNXModelProto: Sendable, Equatable {
    public var irVersion: Int64 = 0
    /// OperatorSetIdProto entries: domain ("" or "ai.onnx" is the default operator set) and version.
    public var opsetImports: [(domain: String, version: Int64)] = []
    public var producerName = ""
    public var producerVersion = ""
    public var graph = ONNXGraph()
    public var hasGraph = false

    public init() {}

    public static func == (a: ONNXModelProto, b: ONNXModelProto) -> Bool {
        a.irVersion == b.irVersion && a.opsetImports.elementsEqual(b.opsetImports, by: { $0 == $1 })
            && a.producerName == b.producerName && a.producerVersion == b.producerVersion && a.graph == b.graph
            && a.hasGraph == b.hasGraph
    }

    /// Parses a serialized ModelProto.
    public static func parse(_ bytes: [UInt8]) throws -> ONNXModelProto {
        var r = ProtobufReader(bytes)
        var m = ONNXModelProto()
        while let (field, wire) = try r.nextField() {
            switch (field, wire) {
            case (1, .varint): m.irVersion = try r.int64()
            case (2, .lengthDelimited): m.producerName = try r.string()
            case (3, .lengthDelimited): m.producerVersion = try r.string()
            case (7, .lengthDelimited):
                var g = try r.message()
                m.graph = try ONNXGraph.read(&g)
                m.hasGraph = true
            case (8, .lengthDelimited):
                var o = try r.message()
                var domain = "", version: Int64 = 0
                while let (f, w) = try o.nextField() {
                    switch (f, w) {
                    case (1, .lengthDelimited): domain = try o.string()
                    case (2, .varint): version = try o.int64()
                    default: try o.skip(w)
                    }
                }
                m.opsetImports.append((domain, version))
            default: try r.skip(wire)
            }
        }
        return m
    }

    /// The serialized ModelProto.
    public func serialized() -> [UInt8] {
        var w = ProtobufWriter()
        w.int64(1, irVersion)
        for (domain, version) in opsetImports {
            w.message(8) { o in
                if !domain.isEmpty { o.string(1, domain) }
                o.int64(2, version)
            }
        }
        if !producerName.isEmpty { w.string(2, producerName) }
        if !producerVersion.isEmpty { w.string(3, producerVersion) }
        w.message(7) { graph.write(&$0) }
        return w.bytes
    }

    /// The version of the default operator set ("" or "ai.onnx"), if imported.
    public var defaultOpset: Int64? {
        opsetImports.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version
    }
}

/// A problem with an ONNX model's content (the importer adds the file's path).
public struct ONNXError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
