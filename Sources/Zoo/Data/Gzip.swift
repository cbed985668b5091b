import CZlib
import KilnGraph

/// Gzip (and zlib) compression through the system zlib.
///
/// Data sets arrive as `.gz` files; keeping zlib behind this one file means the rest of the
/// Zoo never sees a `z_stream`.
public enum Gzip {
    /// Whether `data` starts with the gzip magic bytes `1f 8b`.
    public static func isGzip(_ data: [UInt8]) -> Bool {
        data.count >= 2 && data[0] == 0x1f && data[1] == 0x8b
    }

    /// Whether `data` starts with a valid zlib (RFC 1950) header: deflate method and a header checksum.
    static func isZlib(_ data: [UInt8]) -> Bool {
        data.count >= 2 && data[0] & 0x0f == 8 && (Int(data[0]) << 8 | Int(data[1])) % 31 == 0
    }

    /// Inflates gzip or zlib data (zlib detects which from the header: windowBits 15 + 32).
    ///
    /// Concatenated gzip members (as `cat a.gz b.gz` makes) are inflated one after another.
    /// `path` only names the file in errors. Throws `KilnError.file` for corrupt or truncated data.
    public static func decompress(_ data: [UInt8], path: String) throws -> [UInt8] {
        if data.isEmpty { throw KilnError.file(path: path, message: "not gzip data: the file is empty") }
        guard isGzip(data) || isZlib(data) else {
            let found = data.prefix(2).map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }
            throw KilnError.file(path: path, message:
                "not gzip data: starts with \(found.joined(separator: " ")), expected the gzip magic 1f 8b")
        }
        var stream = z_stream()
        var status = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            throw KilnError.file(path: path, message: "zlib could not start inflating (error \(status))")
        }
        defer { inflateEnd(&stream) }

        // The gzip trailer's last four bytes hold the uncompressed size modulo 2^32: a good first
        // guess for the output buffer, so a single-member file inflates without regrowing.
        var output = [UInt8](repeating: 0, count: initialCapacity(for: data))
        var produced = 0
        try data.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!)
            stream.avail_in = UInt32(input.count)
            while true {
                if produced == output.count {
                    output.append(contentsOf: repeatElement(0, count: max(output.count, 1 << 16)))
                }
                let room = min(output.count - produced, Int(UInt32.max))
                status = output.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress! + produced
                    stream.avail_out = UInt32(room)
                    let result = inflate(&stream, Z_NO_FLUSH)
                    produced += room - Int(stream.avail_out)
                    return result
                }
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    // Another gzip member may follow; anything else after the end is corruption.
                    if stream.avail_in == 0 { return }
                    let next = input.count - Int(stream.avail_in)
                    guard input.count - next >= 2, input[next] == 0x1f, input[next + 1] == 0x8b else {
                        throw KilnError.file(path: path, message:
                            "corrupt gzip data: \(stream.avail_in) unexpected bytes after the end of the compressed stream")
                    }
                    inflateReset(&stream)
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw KilnError.file(path: path, message:
                        "truncated gzip data: the compressed stream ends early (after \(produced) uncompressed bytes)")
                case Z_BUF_ERROR:
                    continue  // no progress possible only because the output was full; the loop grows it
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw KilnError.file(path: path, message: "corrupt gzip data: \(reason)")
                }
            }
        }
        output.removeSubrange(produced...)
        return output
    }

    /// Compresses `data` into a single gzip member (deflate windowBits 15 + 16), as `gzip -LEVEL` does.
    ///
    /// Used to write test fixtures and exported data sets; `level` is zlib's 0...9.
    public static func compress(_ data: [UInt8], level: Int32 = 6) -> [UInt8] {
        precondition((0...9).contains(level), "gzip level must be 0...9, got \(level)")
        var stream = z_stream()
        let status = deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY,
                                   zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        precondition(status == Z_OK, "deflateInit2 failed with \(status)")
        defer { deflateEnd(&stream) }
        precondition(data.count <= Int(UInt32.max), "gzip compress takes at most 4 GiB at once")
        let bound = Int(deflateBound(&stream, UInt(data.count)))
        var output = [UInt8](repeating: 0, count: bound)
        var input = data
        let produced = input.withUnsafeMutableBufferPointer { inBuffer in
            output.withUnsafeMutableBufferPointer { outBuffer in
                stream.next_in = inBuffer.baseAddress ?? UnsafeMutablePointer(bitPattern: 1)
                stream.avail_in = UInt32(inBuffer.count)
                stream.next_out = outBuffer.baseAddress!
                stream.avail_out = UInt32(outBuffer.count)
                // deflateBound guarantees one Z_FINISH call suffices.
                let result = deflate(&stream, Z_FINISH)
                precondition(result == Z_STREAM_END, "deflate did not finish (\(result))")
                return outBuffer.count - Int(stream.avail_out)
            }
        }
        output.removeSubrange(produced...)
        return output
    }

    /// Output buffer size to start with: the gzip trailer's size field, bounded to stay sane for corrupt input.
    private static func initialCapacity(for data: [UInt8]) -> Int {
        guard isGzip(data), data.count >= 18 else { return max(4 * data.count, 1 << 16) }
        let n = data.count
        let stated = Int(data[n - 4]) | Int(data[n - 3]) << 8 | Int(data[n - 2]) << 16 | Int(data[n - 1]) << 24
        // Deflate expands at most ~1032x; a larger claim is a corrupt trailer (or a >4 GiB file).
        // The spare bytes let inflate read the trailer without a regrow that would double the buffer.
        return max(1 << 16, min(stated, 1032 * n) + 64)
    }
}
