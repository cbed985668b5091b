import Foundation
import KilnRuntime

/// A CIFAR-shaped stand-in (3×32×32 colour images, 10 classes) drawn from a seeded generator,
/// for training and benchmarking the CIFAR ResNets without a download. It is not CIFAR-10.
///
/// Class k is a plane wave of orientation k·18° and a class-specific colour mix, at a random
/// phase, frequency jitter and contrast, over a random background colour, plus pixel noise;
/// a small CNN separates the classes, a linear model on pixels much less well.
public enum SyntheticCIFAR {
    /// The class names, by label.
    public static let classNames = (0..<10).map { "class\($0)" }
    /// Side of the square images in pixels.
    public static let size = 32

    /// Makes `count` images with balanced, shuffled labels; the same `count` and `seed` give the same bytes.
    public static func make(count: Int, seed: UInt64) -> ImageDataset {
        precondition(count >= 0, "image count must be non-negative")
        var random = SplitMix64(seed: seed)
        var labels = (0..<count).map { Int32($0 % classNames.count) }
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) { labels.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        }
        let plane = size * size
        var images = [UInt8](repeating: 0, count: count * plane * 3)
        for index in 0..<count {
            let label = Int(labels[index])
            let angle = Double(label) * Double.pi / 10
            let frequency = (0.35 + 0.05 * Double(label % 3)) * random.uniform(0.85, 1.15)
            let phase = random.uniform(0, 2 * Double.pi)
            let contrast = random.uniform(0.25, 0.45)
            let colour = (0..<3).map { c in 0.5 + 0.5 * cos(Double(label) * 0.9 + Double(c) * 2.1) }
            let background = (0..<3).map { _ in random.uniform(0.3, 0.7) }
            let (dx, dy) = (cos(angle), sin(angle))
            for y in 0..<size {
                for x in 0..<size {
                    let wave = sin(frequency * (Double(x) * dx + Double(y) * dy) + phase)
                    for c in 0..<3 {
                        let value = background[c] + contrast * colour[c] * wave + 0.08 * random.normal()
                        // NHWC, as image files and `ImageDataset` store pixels.
                        images[(index * plane + y * size + x) * 3 + c] = UInt8((min(max(value, 0), 1) * 255).rounded())
                    }
                }
            }
        }
        return ImageDataset(images: images, labels: labels, count: count, channels: 3, height: size, width: size,
                            classNames: classNames)
    }
}
