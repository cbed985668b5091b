import Foundation
import KilnGraph

/// CIFAR-10 (Krizhevsky 2009) in its binary distribution (`cifar-10-batches-bin`): files of
/// records, each one label byte (0–9) and 3,072 image bytes, the 32×32 red plane, then green,
/// then blue, row by row. Training is `data_batch_1.bin` … `data_batch_5.bin` (10,000 records
/// each), testing `test_batch.bin`. Kiln downloads nothing: point it at a directory holding them.
public enum CIFAR10 {
    public static let classNames = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    /// Bytes per record: the label and 3 × 32 × 32 pixels.
    public static let recordSize = 1 + 3 * 32 * 32

    /// The file names of a split, in order.
    public static func fileNames(split: FashionMNIST.Split) -> [String] {
        split == .train ? (1...5).map { "data_batch_\($0).bin" } : ["test_batch.bin"]
    }

    /// Loads one split from `directory`: every file of the split that exists, in order (at least
    /// one must). A file whose length is not a whole number of records, or a label above 9, throws
    /// `KilnError.file` naming the file, the record and the value.
    public static func load(split: FashionMNIST.Split, directory: String) throws -> ImageDataset {
        let paths = fileNames(split: split).map { (directory as NSString).appendingPathComponent($0) }
            .filter { FileManager.default.fileExists(atPath: $0) }
        guard !paths.isEmpty else {
            throw KilnError.file(path: directory, message: "no CIFAR-10 binary batches (\(fileNames(split: split).joined(separator: ", "))) here; "
                                 + "the binary version is cifar-10-binary.tar.gz of the CIFAR-10 page")
        }
        var images: [UInt8] = [], labels: [Int32] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else { throw KilnError.file(path: path, message: "cannot read") }
            guard data.count % recordSize == 0, !data.isEmpty else {
                throw KilnError.file(path: path, message: "\(data.count) bytes is not a whole number of \(recordSize)-byte CIFAR-10 records")
            }
            let bytes = [UInt8](data)
            images.reserveCapacity(images.count + bytes.count)
            for record in 0..<(bytes.count / recordSize) {
                let start = record * recordSize
                guard bytes[start] < 10 else {
                    throw KilnError.file(path: path, message: "record \(record): label \(bytes[start]) is outside 0..<10")
                }
                labels.append(Int32(bytes[start]))
                images.append(contentsOf: bytes[(start + 1)..<(start + recordSize)])
            }
        }
        return ImageDataset(images: images, labels: labels, count: labels.count, channels: 3, height: 32, width: 32, classNames: classNames)
    }
}
