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

    /// How hard a generated set is. `easy` is the original stand-in (one form per class);
    /// `hard` has, per class, a main form and two rarer variants (about 20 % and 10 % of the
    /// images), stroke width 0.8–2.8 px, rotation ±20°, shear, a smooth elastic wobble, varying
    /// ink and background, Gaussian noise, speckles, stray clutter strokes and, now and then,
    /// an erased square patch.
    public enum Difficulty: String, CaseIterable, Sendable {
        case easy, hard
    }

    /// Makes `count` images with balanced classes (counts differ by at most one) in shuffled order.
    /// The same `count`, `seed` and `difficulty` give the same bytes.
    public static func make(count: Int, seed: UInt64, difficulty: Difficulty = .easy) -> ImageDataset {
        makeWithVariants(count: count, seed: seed, difficulty: difficulty).set
    }

    /// `make`, plus each image's form within its class (0 the main form; 1 and 2 the rarer
    /// variants of a hard set; always 0 for an easy set).
    public static func makeWithVariants(count: Int, seed: UInt64, difficulty: Difficulty) -> (set: ImageDataset, variants: [Int]) {
        if difficulty == .hard { return makeHard(count: count, seed: seed) }
        return (makeEasy(count: count, seed: seed), [Int](repeating: 0, count: count))
    }

    private static func makeEasy(count: Int, seed: UInt64) -> ImageDataset {
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
    public static func writeAssignment(directory: String, train: Int = 500, test: Int = 10_000, seed: UInt64 = 0,
                                       difficulty: Difficulty = .easy) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
        try CSVImages.write(make(count: train, seed: seed &* 2 &+ 1, difficulty: difficulty), to: path(trainFile))
        let testSet = make(count: test, seed: seed &* 2 &+ 2, difficulty: difficulty)
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
    /// Inks the segment a–b (pixel coordinates) into `coverage` (size × size, kept at the
    /// maximum): full within `reach − 1` of the segment, falling off linearly over one pixel at
    /// the stroke's edge (cheap antialiasing). Only the segment's bounding box is visited.
    private static func ink(from a: SIMD2<Double>, to b: SIMD2<Double>, reach: Double, coverage: inout [Double]) {
        let (ax, ay, dx, dy) = (a.x, a.y, b.x - a.x, b.y - a.y)
        let lengthSquared = dx * dx + dy * dy
        let x0 = Swift.max(0, Int((Swift.min(a.x, b.x) - reach).rounded(.down)))
        let x1 = Swift.min(size - 1, Int((Swift.max(a.x, b.x) + reach).rounded(.up)))
        let y0 = Swift.max(0, Int((Swift.min(a.y, b.y) - reach).rounded(.down)))
        let y1 = Swift.min(size - 1, Int((Swift.max(a.y, b.y) + reach).rounded(.up)))
        guard x0 <= x1, y0 <= y1 else { return }
        for y in y0...y1 {
            for x in x0...x1 {
                let (px, py) = (Double(x) + 0.5 - ax, Double(y) + 0.5 - ay)
                let t = lengthSquared > 0 ? Swift.min(Swift.max((px * dx + py * dy) / lengthSquared, 0), 1) : 0
                let (ex, ey) = (px - t * dx, py - t * dy)
                let value = Swift.min(Swift.max(reach - (ex * ex + ey * ey).squareRoot(), 0), 1)
                if value > coverage[y * size + x] { coverage[y * size + x] = value }
            }
        }
    }

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
                ink(from: toPixels(line[k - 1]), to: toPixels(line[k]), reach: reach, coverage: &coverage)
            }
        }
    }

    // MARK: the hard set

    private static func makeHard(count: Int, seed: UInt64) -> (set: ImageDataset, variants: [Int]) {
        precondition(count >= 0, "glyph count must be non-negative")
        var random = SplitMix64(seed: seed ^ 0x4861_7264_476C_7970)
        var labels = (0..<count).map { Int32($0 % classNames.count) }
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) { labels.swapAt(i, Int(random.next() % UInt64(i + 1))) }
        }
        var images = [UInt8](repeating: 0, count: count * size * size)
        var variants = [Int](repeating: 0, count: count)
        var coverage = [Double](repeating: 0, count: size * size)
        for index in 0..<count {
            let u = random.uniform(0, 1)
            let variant = u < 0.7 ? 0 : (u < 0.9 ? 1 : 2)
            variants[index] = variant
            drawHard(class: Int(labels[index]), variant: variant, random: &random, coverage: &coverage)
            let background = random.uniform(0, 0.25), ink = random.uniform(Swift.max(0.5, background + 0.35), 1.0)
            let gradient = SIMD2(random.uniform(-0.004, 0.004), random.uniform(-0.004, 0.004))
            let noise = random.uniform(0.02, 0.15)
            // Now and then an erased square patch (set to the background, before the noise).
            if random.uniform(0, 1) < 0.25 {
                let side = Int(random.uniform(4, 8.99))
                let x0 = Int(random.uniform(4, Double(size - 4 - side) + 0.99)), y0 = Int(random.uniform(4, Double(size - 4 - side) + 0.99))
                for y in y0..<(y0 + side) { for x in x0..<(x0 + side) { coverage[y * size + x] = 0 } }
            }
            for y in 0..<size {
                for x in 0..<size {
                    let p = y * size + x
                    let level = background + gradient.x * Double(x - 14) + gradient.y * Double(y - 14)
                    let value = level + (ink - level) * coverage[p] + noise * random.normal()
                    images[index * size * size + p] = UInt8((Swift.min(Swift.max(value, 0), 1) * 255).rounded())
                }
            }
            // Speckles: a few isolated pixels of random level.
            let speckles = Int(random.uniform(0, 10.99))
            for _ in 0..<speckles {
                let p = Int(random.next() % UInt64(size * size))
                images[index * size * size + p] = UInt8((random.uniform(0, 1) * 255).rounded())
            }
        }
        let set = ImageDataset(images: images, labels: labels, count: count, channels: 1, height: size, width: size,
                               classNames: classNames)
        return (set, variants)
    }

    /// The hard set's forms: per class a main form (variant 0) and two rarer variants.
    private static func hardSkeleton(of label: Int, variant: Int) -> [[SIMD2<Double>]] {
        func arc(radius: Double, from start: Double, to end: Double, steps: Int) -> [SIMD2<Double>] {
            (0...steps).map { k in
                let angle = start + (end - start) * Double(k) / Double(steps)
                return SIMD2(radius * cos(angle), radius * sin(angle))
            }
        }
        let d = 0.8 * 0.7071
        switch (label, variant) {
        case (0, 1):
            // ⊕: the circle crossed upright instead of diagonally.
            return [arc(radius: 0.8, from: 0, to: 2 * Double.pi, steps: 20), [[-0.8, 0], [0.8, 0]], [[0, -0.8], [0, 0.8]]]
        case (0, 2):
            // ⊠: a square crossed by an X.
            return [[[-0.75, -0.75], [0.75, -0.75], [0.75, 0.75], [-0.75, 0.75], [-0.75, -0.75]],
                    [[-0.75, -0.75], [0.75, 0.75]], [[-0.75, 0.75], [0.75, -0.75]]]
        case (0, _):
            return [arc(radius: 0.8, from: 0, to: 2 * Double.pi, steps: 20), [[-d, -d], [d, d]], [[-d, d], [d, -d]]]
        case (1, 1):
            // Three wavy bars.
            return [-0.6, 0, 0.6].map { y in (0...8).map { k in
                let x = -0.8 + 1.6 * Double(k) / 8
                return SIMD2(x, y + 0.15 * sin(x * 2 * Double.pi))
            } }
        case (1, 2):
            // E-like: the three bars joined by an upright on the left.
            return [[[0.8, -0.6], [-0.8, -0.6], [-0.8, 0.6], [0.8, 0.6]], [[-0.8, 0], [0.6, 0]]]
        case (1, _):
            return [[[-0.8, -0.6], [0.8, -0.6]], [[-0.8, 0], [0.8, 0]], [[-0.8, 0.6], [0.8, 0.6]]]
        case (_, 1):
            // ▽: the triangle apex down.
            return [[[0, 0.8], [0.85, -0.65], [-0.85, -0.65], [0, 0.8]]]
        case (_, 2):
            // △ with a bar across its middle, like a capital A.
            return [[[0, -0.8], [0.85, 0.65], [-0.85, 0.65], [0, -0.8]], [[-0.45, 0.05], [0.45, 0.05]]]
        default:
            return [[[0, -0.8], [0.85, 0.65], [-0.85, 0.65], [0, -0.8]]]
        }
    }

    /// Renders the stroke coverage of one hard instance: jitter, rotation ±20°, scale, aspect,
    /// shear, a smooth elastic wobble and up to two stray clutter strokes.
    private static func drawHard(class label: Int, variant: Int, random: inout SplitMix64, coverage: inout [Double]) {
        var strokes = hardSkeleton(of: label, variant: variant).map { line in
            line.map { $0 + SIMD2(random.uniform(-0.08, 0.08), random.uniform(-0.08, 0.08)) }
        }
        let angle = random.uniform(-0.349, 0.349)              // ±20°
        let scale = random.uniform(6.5, 10.5)
        let aspect = random.uniform(0.85, 1.15)
        let shear = random.uniform(-0.3, 0.3)
        let center = SIMD2(14 + random.uniform(-3.5, 3.5), 14 + random.uniform(-3.5, 3.5))
        let (c, s) = (cos(angle), sin(angle))
        // Elastic wobble: a smooth displacement field of two random plane waves per axis, ≤ 1.6 px.
        var waves: [(kx: Double, ky: Double, phase: Double, amplitude: Double)] = []
        for _ in 0..<4 {
            waves.append((random.uniform(-0.35, 0.35), random.uniform(-0.35, 0.35), random.uniform(0, 2 * Double.pi),
                          random.uniform(0, 0.8)))
        }
        func toPixels(_ p: SIMD2<Double>) -> SIMD2<Double> {
            let q = SIMD2(p.x * scale * aspect + shear * p.y * scale, p.y * scale / aspect)
            let r = center + SIMD2(c * q.x - s * q.y, s * q.x + c * q.y)
            var shift = SIMD2<Double>(0, 0)
            for (k, w) in waves.enumerated() {
                let value = w.amplitude * sin(w.kx * r.x + w.ky * r.y + w.phase)
                if k % 2 == 0 { shift.x += value } else { shift.y += value }
            }
            return r + shift
        }
        // Stray clutter strokes: none, one or two short lines anywhere in the box.
        let clutter = random.uniform(0, 1) < 0.5 ? 0 : (random.uniform(0, 1) < 0.7 ? 1 : 2)
        for _ in 0..<clutter {
            let start = SIMD2(random.uniform(-1.2, 1.2), random.uniform(-1.2, 1.2))
            let direction = random.uniform(0, 2 * Double.pi), length = random.uniform(0.25, 0.6)
            strokes.append([start, start + length * SIMD2(cos(direction), sin(direction))])
        }
        // Densify every polyline (≤ 0.1 box units a piece) so the wobble bends straight strokes.
        let lines: [[SIMD2<Double>]] = strokes.map { line in
            var dense = [line[0]]
            for k in 1..<line.count {
                let (a, b) = (line[k - 1], line[k])
                let delta = b - a
                let pieces = Swift.max(1, Int(((delta * delta).sum().squareRoot() / 0.1).rounded(.up)))
                for j in 1...pieces { dense.append(a + delta * (Double(j) / Double(pieces))) }
            }
            return dense.map(toPixels)
        }
        let halfWidth = random.uniform(0.4, 1.4)                // stroke width 0.8–2.8 px
        let reach = halfWidth + 0.5
        for p in coverage.indices { coverage[p] = 0 }
        for line in lines {
            for k in 1..<line.count {
                ink(from: line[k - 1], to: line[k], reach: reach, coverage: &coverage)
            }
        }
    }
}
