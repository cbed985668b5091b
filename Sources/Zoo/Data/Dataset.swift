/// An image classification/generation set kept as bytes; converted to floats per batch.
///
/// Keeping `UInt8` pixels makes Fashion-MNIST's 60 000 training images 47 MB instead of 188 MB,
/// and the conversion per batch costs far less than the step that consumes it.
public struct ImageDataset: Sendable, Equatable {
    /// Pixels, `count * height * width * channels`, row-major (one image after another, channels
    /// interleaved as in image files: NHWC). `fillBatch` reorders them to NCHW.
    public var images: [UInt8]
    /// One class index per image, or empty when the set is unlabelled.
    public var labels: [Int32]
    /// Number of images.
    public var count: Int
    /// Channels per pixel (1 for grey).
    public var channels: Int
    /// Image height in pixels.
    public var height: Int
    /// Image width in pixels.
    public var width: Int
    /// Human-readable name of each class index, e.g. Fashion-MNIST's ten names.
    public var classNames: [String]

    /// Creates a data set; the arrays must match the stated sizes.
    public init(images: [UInt8], labels: [Int32], count: Int, channels: Int, height: Int, width: Int,
                classNames: [String]) {
        precondition(count >= 0 && channels > 0 && height > 0 && width > 0, "bad image dataset dimensions")
        precondition(images.count == count * channels * height * width,
                     "images hold \(images.count) bytes, dimensions need \(count * channels * height * width)")
        precondition(labels.isEmpty || labels.count == count, "\(labels.count) labels for \(count) images")
        self.images = images
        self.labels = labels
        self.count = count
        self.channels = channels
        self.height = height
        self.width = width
        self.classNames = classNames
    }

    /// Bytes (and floats) per image: `channels * height * width`.
    public var pixelsPerImage: Int { channels * height * width }

    /// Whether every image has a label.
    public var isLabelled: Bool { !labels.isEmpty }

    /// Writes `images[indices]` as float32 `x / 255` into `into` (NCHW, `indices.count * pixelsPerImage`
    /// floats) and, when `labels` is given, their labels into it (`indices.count` entries).
    ///
    /// The division is the IEEE float32 one, `Float(x) / 255`, so batches equal PyTorch's
    /// `u8.float() / 255` bit for bit (multiplying by `1/255` would differ in the last bit).
    public func fillBatch(indices: ArraySlice<Int>, into: UnsafeMutablePointer<Float>,
                          labels: UnsafeMutablePointer<Int32>?) {
        precondition(labels == nil || isLabelled, "labels requested from an unlabelled dataset")
        let table = ImageDataset.byteToUnitFloat
        let pixels = pixelsPerImage
        let plane = height * width
        images.withUnsafeBufferPointer { source in
            table.withUnsafeBufferPointer { table in
                var out = into
                for index in indices {
                    precondition(index >= 0 && index < count, "image index \(index) out of range 0..<\(count)")
                    let image = source.baseAddress! + index * pixels
                    if channels == 1 {
                        for p in 0..<pixels { out[p] = table[Int(image[p])] }
                    } else {
                        // NHWC bytes to NCHW floats.
                        for c in 0..<channels {
                            for p in 0..<plane { out[c * plane + p] = table[Int(image[p * channels + c])] }
                        }
                    }
                    out += pixels
                }
            }
        }
        if let labels {
            for (slot, index) in indices.enumerated() { labels[slot] = self.labels[index] }
        }
    }

    /// The images (and labels) at `indices`, in that order; repeats are allowed.
    public func subset(_ indices: [Int]) -> ImageDataset {
        let pixels = pixelsPerImage
        var bytes = [UInt8]()
        bytes.reserveCapacity(indices.count * pixels)
        for index in indices {
            precondition(index >= 0 && index < count, "image index \(index) out of range 0..<\(count)")
            bytes.append(contentsOf: images[index * pixels ..< (index + 1) * pixels])
        }
        return ImageDataset(images: bytes, labels: isLabelled ? indices.map { labels[$0] } : [],
                            count: indices.count, channels: channels, height: height, width: width,
                            classNames: classNames)
    }

    /// How many images carry each class index (`classNames.count` entries).
    public func classCounts() -> [Int] {
        var counts = [Int](repeating: 0, count: classNames.count)
        for label in labels { counts[Int(label)] += 1 }
        return counts
    }

    /// `Float(i) / 255` for every byte value: the exact IEEE quotient, looked up instead of divided.
    private static let byteToUnitFloat: [Float] = (0...255).map { Float($0) / 255 }
}
