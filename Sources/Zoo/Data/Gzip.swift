import CZlib
import Foundation
import KilnGraph
import KilnRuntime

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
        try checkHeader(data.prefix(2), path: path)
        return try data.withUnsafeBufferPointer { input in
            var given = false
            return try inflateAll(capacity: initialCapacity(for: data), path: path) { stream in
                if given { return false }
                given = true
                stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!)
                stream.avail_in = UInt32(input.count)
                return true
            }
        }
    }

    /// Inflates the gzip file at `path`, reading it a megabyte at a time: the compressed bytes
    /// never sit in memory next to the inflated ones (26 MB less at the peak for Fashion-MNIST).
    public static func decompress(file path: String) throws -> [UInt8] {
        let (fd, size) = try FileBytes.openForReading(path)
        defer { close(fd) }
        // Header and trailer (the trailer's size field sizes the output buffer).
        var head = [UInt8](repeating: 0, count: min(2, size)), tail = [UInt8](repeating: 0, count: min(4, size))
        guard pread(fd, &head, head.count, 0) == head.count, pread(fd, &tail, tail.count, off_t(size - tail.count)) == tail.count else {
            throw FileBytes.readError(path)
        }
        try checkHeader(head[...], path: path)
        let chunkSize = 1 << 20
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }
        let stated = isGzip(head) && size >= 18
            ? Int(tail[0]) | Int(tail[1]) << 8 | Int(tail[2]) << 16 | Int(tail[3]) << 24 : 4 * size
        return try inflateAll(capacity: outputCapacity(stated: stated, compressedSize: size), path: path) { stream in
            // Unconsumed bytes move to the front, new ones follow them.
            let kept = Int(stream.avail_in)
            if kept > 0 && stream.next_in != chunk { chunk.update(from: stream.next_in, count: kept) }
            while true {
                let n = read(fd, chunk + kept, chunkSize - kept)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw FileBytes.readError(path) }
                stream.next_in = chunk
                stream.avail_in = UInt32(kept + n)
                return n > 0
            }
        }
    }

    private static func checkHeader(_ start: ArraySlice<UInt8>, path: String) throws {
        let bytes = Array(start)
        if bytes.isEmpty { throw KilnError.file(path: path, message: "not gzip data: the file is empty") }
        guard isGzip(bytes) || isZlib(bytes) else {
            let found = bytes.map { String($0, radix: 16) }.map { $0.count == 1 ? "0" + $0 : $0 }
            throw KilnError.file(path: path, message:
                "not gzip data: starts with \(found.joined(separator: " ")), expected the gzip magic 1f 8b")
        }
    }

    /// The inflate loop. `refill` appends more input after the stream's unconsumed bytes and
    /// returns false when there is none left; the output starts at `capacity` bytes and grows when a stream needs more.
    private static func inflateAll(capacity: Int, path: String, refill: (inout z_stream) throws -> Bool) throws -> [UInt8] {
        var stream = z_stream()
        var status = inflateInit2_(&stream, 15 + 32, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            throw KilnError.file(path: path, message: "zlib could not start inflating (error \(status))")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: capacity)
        var produced = 0
        var inputLeft = try refill(&stream)
        while true {
            if stream.avail_in == 0 && inputLeft { inputLeft = try refill(&stream) }
            if produced == output.count {
                // Growth is checked against memory first: a small "gzip bomb" must be an error, not an OOM kill.
                let grown = output.count + max(output.count, 1 << 16)
                guard grown <= MemoryBudget.availableBytes / 2 else {
                    throw KilnError.file(path: path, message:
                        "gzip data inflates to more than \(produced) bytes (\(MemoryBudget.describe(produced))), beyond half the memory this process may use")
                }
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
                while stream.avail_in < 2 && inputLeft { inputLeft = try refill(&stream) }
                if stream.avail_in == 0 {
                    output.removeSubrange(produced...)
                    return output
                }
                guard stream.avail_in >= 2, stream.next_in[0] == 0x1f, stream.next_in[1] == 0x8b else {
                    throw KilnError.file(path: path, message:
                        "corrupt gzip data: \(stream.avail_in) unexpected bytes after the end of the compressed stream")
                }
                inflateReset(&stream)
            case Z_BUF_ERROR where stream.avail_in == 0 && !inputLeft:
                throw KilnError.file(path: path, message:
                    "truncated gzip data: the compressed stream ends early (after \(produced) uncompressed bytes)")
            case Z_BUF_ERROR:
                continue  // the output was full (the loop grows it) or the input ran out (refilled above)
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                throw KilnError.file(path: path, message: "corrupt gzip data: \(reason)")
            }
        }
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
        return outputCapacity(stated: stated, compressedSize: n)
    }

    private static func outputCapacity(stated: Int, compressedSize n: Int) -> Int {
        // Deflate expands at most ~1032x; a larger claim is a corrupt trailer (or a >4 GiB file).
        // The spare bytes let inflate read the trailer without a regrow that would double the buffer.
        max(1 << 16, min(stated, 1032 * n) + 64)
    }
}
