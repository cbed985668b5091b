/// A small reader and writer of the protocol-buffer wire format: just what ONNX files need
/// (varints, 32- and 64-bit fixed fields, length-delimited fields, packed repeated numbers).
/// No schema, no reflection: the messages in `ONNXProto.swift` read their own fields.
///
/// Every length is checked against the bytes that are left before anything is read or
/// allocated from it, so a corrupt or truncated file costs at most its own size and ends in a
/// `ProtobufError`, never a trap.

/// A malformed message: what was wrong and the byte offset where it was found.
public struct ProtobufError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var offset: Int
    public var description: String { "\(message) (byte \(offset))" }
}

/// The wire types ONNX uses (3 and 4, groups, are long deprecated and refused).
enum WireType: Int {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
}

/// Reads fields from `bytes[start..<end]`; nested messages are readers over a sub-range of the same bytes.
struct ProtobufReader {
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int

    init(_ bytes: [UInt8]) { self.init(bytes, range: 0..<bytes.count) }
    init(_ bytes: [UInt8], range: Range<Int>) {
        self.bytes = bytes
        self.position = range.lowerBound
        self.end = range.upperBound
    }

    var isAtEnd: Bool { position >= end }

    func error(_ message: String) -> ProtobufError { ProtobufError(message: message, offset: position) }

    /// The next field's number and wire type, or nil at the end of the message.
    mutating func nextField() throws -> (number: Int, wire: WireType)? {
        guard !isAtEnd else { return nil }
        let start = position
        let key = try varint()
        let number = key >> 3
        guard number > 0, number < 1 << 29 else {
            throw ProtobufError(message: "field number \(number) out of range", offset: start)
        }
        guard let wire = WireType(rawValue: Int(key & 7)) else {
            throw ProtobufError(message: "unsupported wire type \(key & 7) of field \(number)", offset: start)
        }
        return (Int(number), wire)
    }

    /// A base-128 varint of at most 10 bytes.
    mutating func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        let start = position
        while true {
            guard position < end else { throw ProtobufError(message: "truncated varint", offset: start) }
            let byte = bytes[position]
            position += 1
            if shift == 63 && byte > 1 { throw ProtobufError(message: "varint longer than 64 bits", offset: start) }
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw ProtobufError(message: "varint longer than 10 bytes", offset: start) }
        }
    }

    /// An int64 field (two's complement in a varint).
    mutating func int64() throws -> Int64 { Int64(bitPattern: try varint()) }

    /// An int32 or enum field: the low 32 bits of the varint, sign-extended.
    mutating func int32() throws -> Int32 { Int32(truncatingIfNeeded: try varint()) }

    mutating func fixed32() throws -> UInt32 {
        guard end - position >= 4 else { throw error("truncated 32-bit field") }
        var value: UInt32 = 0
        for i in 0..<4 { value |= UInt32(bytes[position + i]) << (8 * UInt32(i)) }
        position += 4
        return value
    }

    mutating func fixed64() throws -> UInt64 {
        guard end - position >= 8 else { throw error("truncated 64-bit field") }
        var value: UInt64 = 0
        for i in 0..<8 { value |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += 8
        return value
    }

    /// The range of a length-delimited field's payload (checked against the bytes left).
    mutating func lengthDelimited() throws -> Range<Int> {
        let start = position
        let length = try varint()
        guard length <= UInt64(end - position) else {
            throw ProtobufError(message: "length \(length) runs past the end of the message (\(end - position) bytes left)", offset: start)
        }
        let range = position..<(position + Int(length))
        position = range.upperBound
        return range
    }

    mutating func bytesField() throws -> [UInt8] { Array(bytes[try lengthDelimited()]) }

    mutating func string() throws -> String { String(decoding: bytes[try lengthDelimited()], as: UTF8.self) }

    /// A nested message's reader.
    mutating func message() throws -> ProtobufReader { ProtobufReader(bytes, range: try lengthDelimited()) }

    mutating func float() throws -> Float { Float(bitPattern: try fixed32()) }
    mutating func double() throws -> Double { Double(bitPattern: try fixed64()) }

    /// Skips a field of an unknown number.
    mutating func skip(_ wire: WireType) throws {
        switch wire {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try lengthDelimited()
        }
    }

    /// One or more values of a repeated varint field, packed or not.
    mutating func appendInt64s(_ wire: WireType, to values: inout [Int64]) throws {
        switch wire {
        case .varint: values.append(try int64())
        case .lengthDelimited:
            var packed = try message()
            while !packed.isAtEnd { values.append(try packed.int64()) }
        default: throw error("repeated integer field with wire type \(wire.rawValue)")
        }
    }

    mutating func appendInt32s(_ wire: WireType, to values: inout [Int32]) throws {
        switch wire {
        case .varint: values.append(try int32())
        case .lengthDelimited:
            var packed = try message()
            while !packed.isAtEnd { values.append(try packed.int32()) }
        default: throw error("repeated integer field with wire type \(wire.rawValue)")
        }
    }

    /// One or more values of a repeated float field, packed or not.
    mutating func appendFloats(_ wire: WireType, to values: inout [Float]) throws {
        switch wire {
        case .fixed32: values.append(try float())
        case .lengthDelimited:
            let range = try lengthDelimited()
            guard range.count % 4 == 0 else { throw error("packed floats of \(range.count) bytes, not a multiple of 4") }
            var packed = ProtobufReader(bytes, range: range)
            values.reserveCapacity(values.count + range.count / 4)
            while !packed.isAtEnd { values.append(try packed.float()) }
        default: throw error("repeated float field with wire type \(wire.rawValue)")
        }
    }

    mutating func appendDoubles(_ wire: WireType, to values: inout [Double]) throws {
        switch wire {
        case .fixed64: values.append(try double())
        case .lengthDelimited:
            let range = try lengthDelimited()
            guard range.count % 8 == 0 else { throw error("packed doubles of \(range.count) bytes, not a multiple of 8") }
            var packed = ProtobufReader(bytes, range: range)
            values.reserveCapacity(values.count + range.count / 8)
            while !packed.isAtEnd { values.append(try packed.double()) }
        default: throw error("repeated double field with wire type \(wire.rawValue)")
        }
    }
}

/// Appends fields in the wire format. Fields are written in the order called (readers accept any order).
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wire: WireType) { appendVarint(UInt64(field << 3 | wire.rawValue)) }

    mutating func int64(_ field: Int, _ value: Int64) {
        key(field, .varint)
        appendVarint(UInt64(bitPattern: value))
    }

    mutating func int(_ field: Int, _ value: Int) { int64(field, Int64(value)) }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        let bits = value.bitPattern
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i)))) }
    }

    mutating func bytes(_ field: Int, _ payload: [UInt8]) {
        key(field, .lengthDelimited)
        appendVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    mutating func string(_ field: Int, _ text: String) { bytes(field, Array(text.utf8)) }

    mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        bytes(field, inner.bytes)
    }

    /// A packed repeated int64 field (nothing when empty).
    mutating func packedInt64s(_ field: Int, _ values: [Int64]) {
        guard !values.isEmpty else { return }
        var inner = ProtobufWriter()
        for v in values { inner.appendVarint(UInt64(bitPattern: v)) }
        bytes(field, inner.bytes)
    }

    /// A packed repeated float field (nothing when empty).
    mutating func packedFloats(_ field: Int, _ values: [Float]) {
        guard !values.isEmpty else { return }
        var payload: [UInt8] = []
        payload.reserveCapacity(values.count * 4)
        for v in values {
            let bits = v.bitPattern
            for i in 0..<4 { payload.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt32(i)))) }
        }
        bytes(field, payload)
    }
}
