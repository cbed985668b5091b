import KilnGraph
import KilnRuntime

/// The IDX format of MNIST-style data sets (LeCun's MNIST page): a 4-byte magic number
/// `00 00 TYPE NDIMS`, NDIMS big-endian UInt32 sizes, then the elements in row-major order.
///
/// Files may be gzip-compressed (as distributed) or not; the gzip magic `1f 8b` decides.
/// Only unsigned bytes (type 0x08) are read, which is what every MNIST-format image and label
/// file uses.
public enum IDX {
    /// Reads an IDX file, gzip-compressed or not. Returns its dimensions and its bytes (ubyte data only).
    ///
    /// Throws `KilnError.file` naming the file for a missing file, corrupt gzip, a bad magic number,
    /// an element type other than unsigned byte, and data shorter or longer than the dimensions say.
    public static func read(path: String) throws -> (dims: [Int], bytes: [UInt8]) {
        // A .gz file streams through zlib and the header is dropped in place: a 47 MB image
        // file never exists twice, nor next to its compressed bytes (peak RSS matters on a laptop).
        var file = path.hasSuffix(".gz") ? try Gzip.decompress(file: path) : try FileBytes.read(path)
        if !path.hasSuffix(".gz") && Gzip.isGzip(file) { file = try Gzip.decompress(file, path: path) }
        let dims = try header(file, path: path)
        file.removeFirst(4 + 4 * dims.count)
        return (dims, file)
    }

    /// Parses the bytes of an (uncompressed) IDX file; `path` only names it in errors.
    public static func parse(_ file: [UInt8], path: String) throws -> (dims: [Int], bytes: [UInt8]) {
        let dims = try header(file, path: path)
        return (dims, Array(file[(4 + 4 * dims.count)...]))
    }

    /// Checks the header of an (uncompressed) IDX file against its size; returns the dimensions.
    static func header(_ file: [UInt8], path: String) throws -> [Int] {
        guard file.count >= 4 else {
            throw KilnError.file(path: path, message:
                "truncated IDX header: expected at least 4 bytes, found \(file.count)")
        }
        guard file[0] == 0, file[1] == 0, file[3] >= 1 else {
            let found = file[0..<4].map { hex($0) }.joined(separator: " ")
            throw KilnError.file(path: path, message:
                "bad IDX magic number \(found): expected 00 00 <type> <dimension count>"
                + (Gzip.isGzip(file) ? "" : " (not an IDX file, or compressed with something other than gzip)"))
        }
        guard file[2] == 0x08 else {
            throw KilnError.file(path: path, message:
                "unsupported IDX element type \(hex(file[2])) (\(typeName(file[2]))): only 08 (unsigned byte) is supported")
        }
        let rank = Int(file[3])
        let headerSize = 4 + 4 * rank
        guard file.count >= headerSize else {
            throw KilnError.file(path: path, message:
                "truncated IDX header: \(rank) dimensions need \(headerSize) bytes, found \(file.count)")
        }
        var dims = [Int]()
        for d in 0..<rank {
            let at = 4 + 4 * d
            dims.append(Int(file[at]) << 24 | Int(file[at + 1]) << 16 | Int(file[at + 2]) << 8 | Int(file[at + 3]))
        }
        let found = file.count - headerSize
        guard let elements = MemoryBudget.product(dims) else {
            throw KilnError.file(path: path, message:
                "oversized IDX dimensions \(dims): their product overflows an integer, the file holds \(found) bytes of data")
        }
        guard found == elements else {
            let kind = found < elements ? "truncated" : "oversized"
            throw KilnError.file(path: path, message:
                "\(kind) IDX data: dimensions \(dims) need \(elements) bytes, found \(found)")
        }
        return dims
    }

    /// Images file + labels file → `ImageDataset` with one channel.
    ///
    /// The images file must have dimensions [count, rows, columns], the labels file [count], and
    /// every label must index `classNames`.
    public static func loadDataset(images: String, labels: String, classNames: [String]) throws -> ImageDataset {
        let imageFile = try read(path: images)
        guard imageFile.dims.count == 3, imageFile.dims[1] > 0, imageFile.dims[2] > 0 else {
            throw KilnError.file(path: images, message:
                "expected an images file with dimensions [count, rows, columns], found \(imageFile.dims)")
        }
        let labelFile = try read(path: labels)
        guard labelFile.dims.count == 1 else {
            throw KilnError.file(path: labels, message:
                "expected a labels file with dimensions [count], found \(labelFile.dims)")
        }
        let count = imageFile.dims[0]
        guard labelFile.dims[0] == count else {
            throw KilnError.file(path: labels, message:
                "image/label count mismatch: \(labelFile.dims[0]) labels for \(count) images in \(images)")
        }
        if let bad = labelFile.bytes.firstIndex(where: { Int($0) >= classNames.count }) {
            throw KilnError.file(path: labels, message:
                "label \(labelFile.bytes[bad]) at index \(bad) is out of range: \(classNames.count) classes (0...\(classNames.count - 1))")
        }
        return ImageDataset(images: imageFile.bytes, labels: labelFile.bytes.map { Int32($0) }, count: count,
                            channels: 1, height: imageFile.dims[1], width: imageFile.dims[2],
                            classNames: classNames)
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16, uppercase: true)
        return digits.count == 1 ? "0" + digits : digits
    }

    /// The IDX element type names, so the error says what the file holds.
    private static func typeName(_ code: UInt8) -> String {
        switch code {
        case 0x08: return "unsigned byte"
        case 0x09: return "signed byte"
        case 0x0B: return "int16"
        case 0x0C: return "int32"
        case 0x0D: return "float32"
        case 0x0E: return "float64"
        default: return "unknown type"
        }
    }
}
