import Foundation
import KilnRuntime
import KilnGraph

/// Loader augmentation: random transformations applied to each training image's bytes per batch,
/// drawn from a generator keyed by (seed, epoch, example index), so a run is reproducible and an
/// example's transformation does not depend on the batch size or the order of the batch.
///
/// Geometric kinds combine into one affine map about the image centre, sampled bilinearly;
/// pixels that come from outside the image take the mean of the image's border (the background
/// for dark-on-light and light-on-dark images alike).
public struct Augmentation: Sendable, Equatable, CustomStringConvertible {
    /// One kind of transformation.
    public enum Kind: String, CaseIterable, Sendable {
        /// A sub-pixel translation of up to ±2 pixels on each axis.
        case shift
        /// A rotation of up to ±15°.
        case rotate
        /// A scaling by 0.9–1.1.
        case scale
        /// Gaussian pixel noise with σ = 8 intensity levels.
        case noise
        /// A horizontal mirror with probability ½.
        case flip
        /// Padding by 2 pixels and a random 28×28 (H×W) crop: an integer translation of up to ±2.
        case crop
        /// A horizontal shear x += k·(y − centre) with k in ±0.2.
        case shear
        /// With probability ½, a square of 4 to 10 pixels (scaled to the image size) at a random
        /// place filled with the border mean, as if erased.
        case erase
    }

    /// What `kiln train` turns on by default for small image sets: the transformations that keep
    /// a glyph's class (no mirror: mirrored glyphs may be another class).
    public static let defaultForSmallImageSets = Augmentation([.shift, .rotate, .scale, .noise, .shear, .erase])

    /// The kinds applied (all of them to every image, each with its own random amount).
    public var kinds: Set<Kind>

    public init(_ kinds: Set<Kind> = []) { self.kinds = kinds }

    /// No augmentation.
    public static let none = Augmentation()

    /// Whether it changes nothing.
    public var isEmpty: Bool { kinds.isEmpty }

    public var description: String {
        isEmpty ? "none" : Kind.allCases.filter(kinds.contains).map(\.rawValue).joined(separator: ",")
    }

    /// Parses a comma-separated list such as `shift,rotate,noise` (or `none`).
    public static func parse(_ text: String) throws -> Augmentation {
        if text == "none" || text.isEmpty { return .none }
        var kinds = Set<Kind>()
        for word in text.split(separator: ",") {
            guard let kind = Kind(rawValue: word.trimmingCharacters(in: .whitespaces)) else {
                throw KilnError.argument("unknown augmentation \"\(excerpt(String(word)))\"; known: \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            kinds.insert(kind)
        }
        return Augmentation(kinds)
    }

    /// The images of `data` at `indices`, each transformed, as a new set of `indices.count`
    /// images (labels carried along).
    public func apply(to data: ImageDataset, indices: ArraySlice<Int>, seed: UInt64, epoch: Int) -> ImageDataset {
        var batch = data.subset(Array(indices))
        guard !isEmpty else { return batch }
        let pixels = data.pixelsPerImage
        var scratch = [UInt8](repeating: 0, count: pixels)
        batch.images.withUnsafeMutableBufferPointer { images in
            for (slot, index) in indices.enumerated() {
                var random = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(epoch) &* 0xD1B5_4A32_D192_ED03
                                        ^ UInt64(index) &* 0x8CB9_2BA7_2F3D_8DD7)
                let image = UnsafeMutableBufferPointer(rebasing: images[slot * pixels ..< (slot + 1) * pixels])
                transform(image, channels: data.channels, height: data.height, width: data.width,
                          random: &random, scratch: &scratch)
            }
        }
        return batch
    }

    /// Applies every kind to one image (NHWC bytes) in place.
    private func transform(_ image: UnsafeMutableBufferPointer<UInt8>, channels: Int, height: Int, width: Int,
                           random: inout SplitMix64, scratch: inout [UInt8]) {
        // Draw every amount in a fixed order, whichever kinds are on, so turning one kind on
        // does not change the amounts of the others.
        let angle = random.uniform(-15, 15) * Double.pi / 180
        let factor = random.uniform(0.9, 1.1)
        let shift = SIMD2(random.uniform(-2, 2), random.uniform(-2, 2))
        let crop = SIMD2(Double(Int(random.next() % 5) - 2), Double(Int(random.next() % 5) - 2))
        let mirror = random.next() & 1 == 1
        let noiseSeed = random.next()
        // Drawn after the older kinds' amounts, so adding these kept those the same.
        let shearFactor = random.uniform(-0.2, 0.2)
        let eraseDraw = random.next()

        let geometric = kinds.contains(.rotate) || kinds.contains(.scale) || kinds.contains(.shift)
            || kinds.contains(.crop) || (kinds.contains(.flip) && mirror) || kinds.contains(.shear)
        if geometric {
            let theta = kinds.contains(.rotate) ? angle : 0
            let s = kinds.contains(.scale) ? factor : 1
            var offset = SIMD2<Double>(0, 0)
            if kinds.contains(.shift) { offset += shift }
            if kinds.contains(.crop) { offset += crop }
            let flip = kinds.contains(.flip) && mirror
            let k = kinds.contains(.shear) ? shearFactor : 0
            let center = SIMD2(Double(width - 1) / 2, Double(height - 1) / 2)
            let (c, sn) = (cos(theta) / s, sin(theta) / s)
            for p in 0..<image.count { scratch[p] = image[p] }
            for channel in 0..<channels {
                // Border mean: the value for samples from outside the image.
                var borderSum = 0, borderCount = 0
                for y in 0..<height {
                    for x in 0..<width where y == 0 || y == height - 1 || x == 0 || x == width - 1 {
                        borderSum += Int(scratch[(y * width + x) * channels + channel])
                        borderCount += 1
                    }
                }
                let fill = Double(borderSum) / Double(borderCount)
                func source(_ x: Int, _ y: Int) -> Double {
                    guard x >= 0, x < width, y >= 0, y < height else { return fill }
                    return Double(scratch[(y * width + x) * channels + channel])
                }
                for y in 0..<height {
                    for x in 0..<width {
                        // Inverse map: output pixel → source position.
                        let d = SIMD2(Double(x), Double(y)) - center - offset
                        // Undo the shear (x' = x + k·y), then the rotation and scale.
                        let e = SIMD2(d.x - k * d.y, d.y)
                        var sx = c * e.x + sn * e.y + center.x
                        let sy = -sn * e.x + c * e.y + center.y
                        if flip { sx = Double(width - 1) - sx }
                        let (x0, y0) = (Int(sx.rounded(.down)), Int(sy.rounded(.down)))
                        let (fx, fy) = (sx - Double(x0), sy - Double(y0))
                        let top = source(x0, y0) * (1 - fx) + source(x0 + 1, y0) * fx
                        let bottom = source(x0, y0 + 1) * (1 - fx) + source(x0 + 1, y0 + 1) * fx
                        let value = top * (1 - fy) + bottom * fy
                        image[(y * width + x) * channels + channel] = UInt8(Swift.min(Swift.max(value.rounded(), 0), 255))
                    }
                }
            }
        }
        if kinds.contains(.erase) && eraseDraw & 1 == 1 {
            let scale = Double(Swift.min(height, width)) / 28
            let side = Swift.max(1, Int((Double(4 + Int((eraseDraw >> 1) % 7)) * scale).rounded()))
            let top = Int((eraseDraw >> 8) % UInt64(Swift.max(1, height - side + 1)))
            let left = Int((eraseDraw >> 24) % UInt64(Swift.max(1, width - side + 1)))
            for channel in 0..<channels {
                var borderSum = 0, borderCount = 0
                for y in 0..<height {
                    for x in 0..<width where y == 0 || y == height - 1 || x == 0 || x == width - 1 {
                        borderSum += Int(image[(y * width + x) * channels + channel])
                        borderCount += 1
                    }
                }
                let fill = UInt8((Double(borderSum) / Double(borderCount)).rounded())
                for y in top ..< Swift.min(height, top + side) {
                    for x in left ..< Swift.min(width, left + side) { image[(y * width + x) * channels + channel] = fill }
                }
            }
        }
        if kinds.contains(.noise) {
            var noise = SplitMix64(seed: noiseSeed)
            for p in 0..<image.count {
                let value = Double(image[p]) + 8 * noise.normal()
                image[p] = UInt8(Swift.min(Swift.max(value.rounded(), 0), 255))
            }
        }
    }
}
