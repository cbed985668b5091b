import Foundation
import KilnRuntime

/// A stand-in for the course's glyph assignment data (Part 2, Task A), for tests and demos:
/// three nonsense glyph classes drawn as the assignment shows them, `A` ⊗-like (a circle crossed
/// by an X), `B` ≡-like (three bars), `C` △-like (a triangle), 28×28 grey, light ink on dark.
///
/// Every image varies the stroke width, position, rotation, scale, aspect, ink and background
/// and adds pixel noise, and each control point is jittered. Not the demo's `Glyphs` (other
/// shapes, other variation): these follow the assignment's description.
public enum CourseGlyphs {
    /// The class names, by label.
    public static let classNames = ["A", "B", "C"]

    /// Side of the square images in pixels.
    public static let size = 28

    /// File names of an assignment directory, as the course hands them out (plus the hidden labels).
    public static let trainFile = "xy_train.csv", testFile = "x_test.csv", testLabelsFile = "y_test.csv"

    /// Makes `count` images with balanced classes (counts differ by at most one) in shuffled order.
    /// The same `count` and `seed` give the same bytes.
    public static func make(count: Int, seed: UInt64) -> ImageDataset {
        precondition(count >= 0, "glyph count must be non-negative")
        var random = SplitMix64(seed: seed ^ 0x436F_7572_7365_4731)
        var labels = (0..<count).map { Int32($0 % classNames.count) }
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) { labels.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        }
        var images = [UInt8](repeating: 0, count: count * size * size)
        var coverage = [Double](repeating: 0, count: size * size)
        for index in 0..<count {
            draw(class: Int(labels[index]), random: &random, coverage: &coverage)
            let ink = random.uniform(0.7, 1.0), background = random.uniform(0, 0.12), noise = random.uniform(0.02, 0.12)
            for p in 0..<(size * size) {
                let value = background + (ink - background) * coverage[p] + noise * random.normal()
                images[index * size * size + p] = UInt8((Swift.min(Swift.max(value, 0), 1) * 255).rounded())
            }
        }
        return ImageDataset(images: images, labels: labels, count: count, channels: 1, height: size, width: size,
                            classNames: classNames)
    }

    /// Writes an assignment directory: `xy_train.csv` (`train` labelled images), `x_test.csv`
    /// (`test` images, first column `NA`) and, for grading, `y_test.csv` (the hidden test labels,
    /// one per line). Train and test images come from independent streams of `seed`.
    public static func writeAssignment(directory: String, train: Int = 500, test: Int = 10_000, seed: UInt64 = 0) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        try CSVImages.write(make(count: train, seed: seed &* 2 &+ 1), to: path(trainFile))
        let testSet = make(count: test, seed: seed &* 2 &+ 2)
        var unlabelled = testSet
        unlabelled.labels = []
        try CSVImages.write(unlabelled, to: path(testFile))
        let labels = testSet.labels.map { classNames[Int($0)] + "\n" }.joined()
        try AtomicFile.write(Array(labels.utf8), to: path(testLabelsFile))
    }

    /// A stroke skeleton: polylines in a glyph box of [-1, 1]², y pointing down.
    private static func skeleton(of label: Int) -> [[SIMD2<Double>]] {
        func arc(radius: Double, from start: Double, to end: Double, steps: Int) -> [SIMD2<Double>] {
            (0...steps).map { k in
                let angle = start + (end - start) * Double(k) / Double(steps)
                return SIMD2(radius * cos(angle), radius * sin(angle))
            }
        }
        switch label {
        case 0:
            // ⊗: a circle and the two diagonals that cross inside it.
            let d = 0.8 * 0.7071
            return [arc(radius: 0.8, from: 0, to: 2 * Double.pi, steps: 20), [[-d, -d], [d, d]], [[-d, d], [d, -d]]]
        case 1:
            // ≡: three parallel bars.
            return [[[-0.8, -0.6], [0.8, -0.6]], [[-0.8, 0], [0.8, 0]], [[-0.8, 0.6], [0.8, 0.6]]]
        default:
            // △: an outlined triangle, apex up.
            return [[[0, -0.8], [0.85, 0.65], [-0.85, 0.65], [0, -0.8]]]
        }
    }

    /// Renders the stroke coverage (0...1) of one random instance of `label` into `coverage`.
    private static func draw(class label: Int, random: inout SplitMix64, coverage: inout [Double]) {
        let strokes = skeleton(of: label).map { line in
            line.map { $0 + SIMD2(random.uniform(-0.08, 0.08), random.uniform(-0.08, 0.08)) }
        }
        let angle = random.uniform(-0.5, 0.5)                  // about ±30°
        let scale = random.uniform(6.0, 10.5)                  // half-size in pixels
        let aspect = random.uniform(0.85, 1.15)
        let center = SIMD2(14 + random.uniform(-4, 4), 14 + random.uniform(-4, 4))
        let (c, s) = (cos(angle), sin(angle))
        func toPixels(_ p: SIMD2<Double>) -> SIMD2<Double> {
            let q = SIMD2(p.x * scale * aspect, p.y * scale / aspect)
            return center + SIMD2(c * q.x - s * q.y, s * q.x + c * q.y)
        }
        let halfWidth = random.uniform(0.5, 1.6)
        let reach = halfWidth + 0.5
        for p in coverage.indices { coverage[p] = 0 }
        for line in strokes {
            for k in 1..<line.count {
                let (a, b) = (toPixels(line[k - 1]), toPixels(line[k]))
                let (ax, ay, dx, dy) = (a.x, a.y, b.x - a.x, b.y - a.y)
                let lengthSquared = dx * dx + dy * dy
                // Only pixels within `reach` of the segment get ink: visit its bounding box.
                let x0 = Swift.max(0, Int((Swift.min(a.x, b.x) - reach).rounded(.down)))
                let x1 = Swift.min(size - 1, Int((Swift.max(a.x, b.x) + reach).rounded(.up)))
                let y0 = Swift.max(0, Int((Swift.min(a.y, b.y) - reach).rounded(.down)))
                let y1 = Swift.min(size - 1, Int((Swift.max(a.y, b.y) + reach).rounded(.up)))
                guard x0 <= x1, y0 <= y1 else { continue }
                for y in y0...y1 {
                    for x in x0...x1 {
                        let (px, py) = (Double(x) + 0.5 - ax, Double(y) + 0.5 - ay)
                        let t = lengthSquared > 0 ? Swift.min(Swift.max((px * dx + py * dy) / lengthSquared, 0), 1) : 0
                        let (ex, ey) = (px - t * dx, py - t * dy)
                        // Coverage falls off linearly over one pixel at the stroke's edge (cheap antialiasing).
                        let value = Swift.min(Swift.max(reach - (ex * ex + ey * ey).squareRoot(), 0), 1)
                        if value > coverage[y * size + x] { coverage[y * size + x] = value }
                    }
                }
            }
        }
    }
}
