import CZlib
import KilnGraph

/// A minimal PNG encoder (8-bit greyscale or RGB, no interlacing), compressed with the system
/// zlib. Follows the PNG specification (W3C, 2003): signature, IHDR, one IDAT holding the zlib
/// stream of filtered rows (filter type 0, none), IEND; each chunk closed by its CRC-32.
public enum PNG {
    /// Encodes `pixels` (row-major, `channels` bytes per pixel: 1 = grey, 3 = RGB) as a PNG file.
    public static func encode(width: Int, height: Int, channels: Int = 1, pixels: [UInt8]) -> [UInt8] {
        precondition(width > 0 && height > 0, "PNG needs a positive size, got \(width)x\(height)")
        precondition(channels == 1 || channels == 3, "PNG encoder writes grey (1) or RGB (3), got \(channels) channels")
        precondition(pixels.count == width * height * channels, "\(pixels.count) bytes for \(width)x\(height)x\(channels)")
        var header: [UInt8] = []
        appendBigEndian(UInt32(width), to: &header)
        appendBigEndian(UInt32(height), to: &header)
        // Bit depth 8; colour type 0 (grey) or 2 (RGB); deflate; adaptive filtering; no interlace.
        header += [8, channels == 1 ? 0 : 2, 0, 0, 0]

        // Every row starts with its filter-type byte.
        let rowBytes = width * channels
        var raw = [UInt8]()
        raw.reserveCapacity(height * (rowBytes + 1))
        for row in 0..<height {
            raw.append(0)
            raw += pixels[(row * rowBytes)..<((row + 1) * rowBytes)]
        }
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        appendChunk("IHDR", header, to: &file)
        appendChunk("IDAT", zlibCompress(raw), to: &file)
        appendChunk("IEND", [], to: &file)
        return file
    }

    /// Encodes and writes atomically.
    public static func write(path: String, width: Int, height: Int, channels: Int = 1, pixels: [UInt8]) throws {
        try AtomicFile.write(encode(width: width, height: height, channels: channels, pixels: pixels), to: path)
    }

    /// The zlib (RFC 1950) stream of `data`, as IDAT wants it (not gzip: PNG has no gzip header).
    static func zlibCompress(_ data: [UInt8], level: Int32 = 9) -> [UInt8] {
        var length = compressBound(uLong(data.count))
        var output = [UInt8](repeating: 0, count: Int(length))
        let status = data.withUnsafeBufferPointer { input in
            output.withUnsafeMutableBufferPointer { out in
                compress2(out.baseAddress!, &length, input.baseAddress ?? UnsafePointer(bitPattern: 1), uLong(input.count), level)
            }
        }
        precondition(status == Z_OK, "zlib compress2 failed with \(status)")
        output.removeSubrange(Int(length)...)
        return output
    }

    /// CRC-32 (ISO 3309, as zlib computes it) of `bytes`.
    static func crc(_ bytes: [UInt8]) -> UInt32 {
        UInt32(bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) })
    }

    private static func appendChunk(_ type: String, _ data: [UInt8], to file: inout [UInt8]) {
        appendBigEndian(UInt32(data.count), to: &file)
        let typed = Array(type.utf8) + data
        file += typed
        appendBigEndian(crc(typed), to: &file)
    }

    private static func appendBigEndian(_ value: UInt32, to bytes: inout [UInt8]) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }
}
