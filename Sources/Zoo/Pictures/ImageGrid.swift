import KilnGraph
import KilnRuntime

/// A picture of many images of a data set laid out in rows, for looking at samples: one row per
/// class (or rows of `columns` images), a margin of `spacing` pixels between images, each pixel
/// drawn as a `scale`×`scale` block.
public struct ImageGrid: Sendable {
    /// Width and height in pixels.
    public var width: Int, height: Int
    /// Bytes per pixel (1 grey, 3 RGB).
    public var channels: Int
    /// Row-major pixels, `width * height * channels` bytes.
    public var pixels: [UInt8]

    /// Lays out `rows` of image indices of `data` (rows may differ in length; the widest sets the width).
    /// The background between images is mid-grey, so black and white images both stand out.
    public init(_ data: ImageDataset, rows: [[Int]], spacing: Int = 2, scale: Int = 1) {
        precondition(data.channels == 1 || data.channels == 3, "grids draw grey or RGB images, found \(data.channels) channels")
        precondition(scale >= 1 && spacing >= 0, "bad grid scale \(scale) or spacing \(spacing)")
        let cellW = data.width * scale, cellH = data.height * scale
        let columns = Swift.max(rows.map(\.count).max() ?? 0, 1)
        width = spacing + columns * (cellW + spacing)
        height = spacing + Swift.max(rows.count, 1) * (cellH + spacing)
        channels = data.channels
        pixels = [UInt8](repeating: 128, count: width * height * channels)
        for (r, row) in rows.enumerated() {
            for (c, index) in row.enumerated() {
                let image = index * data.pixelsPerImage
                let left = spacing + c * (cellW + spacing), top = spacing + r * (cellH + spacing)
                for y in 0..<cellH {
                    for x in 0..<cellW {
                        let source = image + ((y / scale) * data.width + x / scale) * channels
                        let target = ((top + y) * width + left + x) * channels
                        for k in 0..<channels { pixels[target + k] = data.images[source + k] }
                    }
                }
            }
        }
    }

    /// The first `perClass` images of every class, one row per class in class order (a labelled
    /// set), or rows of `perClass` images up to 10 rows (an unlabelled set).
    public init(_ data: ImageDataset, perClass: Int, spacing: Int = 2, scale: Int = 1) {
        var rows: [[Int]] = []
        if data.isLabelled {
            rows = [[Int]](repeating: [], count: Swift.max(data.classNames.count, Int(data.labels.max() ?? 0) + 1))
            for (i, label) in data.labels.enumerated() where rows[Int(label)].count < perClass { rows[Int(label)].append(i) }
            rows.removeAll { $0.isEmpty }
        } else {
            let n = Swift.min(data.count, perClass * 10)
            rows = stride(from: 0, to: n, by: perClass).map { Array($0..<Swift.min(n, $0 + perClass)) }
        }
        self.init(data, rows: rows, spacing: spacing, scale: scale)
    }

    /// The grid of `init(_:perClass:spacing:scale:)`, refused with an error giving the bytes
    /// needed when the picture would not fit in memory (or its size overflows).
    public init(checking data: ImageDataset, perClass: Int, spacing: Int = 2, scale: Int = 1) throws {
        guard perClass >= 1, scale >= 1, spacing >= 0 else {
            throw KilnError.argument("a grid needs at least 1 image per row and scale 1, found \(perClass) and \(scale)")
        }
        let rows = data.isLabelled ? Swift.max(1, Set(data.labels).count) : Swift.max(1, Swift.min(10, (data.count + perClass - 1) / perClass))
        let columns = data.isLabelled || data.count >= perClass ? perClass : Swift.max(1, data.count)
        guard let cellW = MemoryBudget.product([data.width, scale]), let cellH = MemoryBudget.product([data.height, scale]),
              let w = MemoryBudget.product([columns, cellW + spacing]), let h = MemoryBudget.product([rows, cellH + spacing]) else {
            throw KilnError.argument("a grid of \(rows)x\(columns) images of \(data.height)x\(data.width) at scale \(scale) is too large to draw")
        }
        try MemoryBudget.check([w + spacing, h + spacing, data.channels], for: "a \(w + spacing)x\(h + spacing) grid picture")
        self.init(data, perClass: perClass, spacing: spacing, scale: scale)
    }

    /// Writes the grid as a PNG file (atomically).
    public func writePNG(path: String) throws {
        try PNG.write(path: path, width: width, height: height, channels: channels, pixels: pixels)
    }
}
