import KilnGraph

/// Writes image sets in the course's CSV layout: no header, one image per line, the class name
/// first, then `height × width` integers 0–255 row-major (785 columns for 28×28 greyscale).
public enum GeneratedCSV {
    /// The CSV text of a labelled greyscale set (an unlabelled set gets `NA` labels, as R writes them).
    public static func text(of data: ImageDataset) -> String {
        precondition(data.channels == 1, "the course CSV layout holds greyscale images, found \(data.channels) channels")
        var out = ""
        out.reserveCapacity(data.count * (data.pixelsPerImage * 4 + 8))
        let pixels = data.pixelsPerImage
        data.images.withUnsafeBufferPointer { bytes in
            for i in 0..<data.count {
                out += data.isLabelled ? data.classNames[Int(data.labels[i])] : "NA"
                for p in 0..<pixels {
                    out += ","
                    out += String(bytes[i * pixels + p])
                }
                out += "\n"
            }
        }
        return out
    }

    /// Writes `text(of:)` to `path` atomically.
    public static func write(_ data: ImageDataset, path: String) throws {
        try AtomicFile.write(Array(text(of: data).utf8), to: path)
    }
}
