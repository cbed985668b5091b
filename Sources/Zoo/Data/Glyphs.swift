import Foundation
import KilnRuntime

/// The demo's procedural data set: three nonsense glyph classes, 28x28 grey, drawn from a seeded
/// generator, so the demo trains without downloading anything.
///
/// Each class is a fixed stroke skeleton; every sample moves its control points, rotates, scales,
/// shears and shifts it, draws it with a random stroke width and ink, sometimes adds a stray
/// stroke, and adds pixel noise. The variation is chosen so that a small CNN learns the classes
/// well (about 90-99 % accuracy) while a linear model on raw pixels clearly does worse.
public enum Glyphs {
    /// The class names, by label.
    public static let classNames = ["A", "B", "C"]

    /// Side of the square images in pixels.
    public static let size = 28

    /// Makes `count` images with balanced classes (counts differ by at most one) in shuffled order.
    /// The same `count` and `seed` give the same bytes.
    public static func make(count: Int, seed: UInt64) -> ImageDataset {
        precondition(count >= 0, "glyph count must be non-negative")
        var random = SplitMix64(seed: seed)
        var labels = (0..<count).map { Int32($0 % classNames.count) }
        // Fisher-Yates, so consecutive images mix the classes without a period.
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                labels.swapAt(i, Int(random.next() % UInt64(i + 1)))
            }
        }
        var images = [UInt8](repeating: 0, count: count * size * size)
        var canvas = [Float](repeating: 0, count: size * size)
        for index in 0..<count {
            draw(class: Int(labels[index]), random: &random, into: &canvas)
            for p in 0..<(size * size) {
                images[index * size * size + p] = UInt8((min(max(canvas[p], 0), 1) * 255).rounded())
            }
        }
        return ImageDataset(images: images, labels: labels, count: count, channels: 1,
                            height: size, width: size, classNames: classNames)
    }

    /// A stroke skeleton: polylines in a glyph box of [-1, 1]², y pointing down.
    private typealias Skeleton = [[SIMD2<Double>]]

    /// The three nonsense glyphs. They share stroke count and extent, so no single pixel or the
    /// amount of ink tells them apart; their topology does.
    private static func skeleton(of label: Int) -> Skeleton {
        switch label {
        case 0:
            // A square spiral: a hook curling inwards, open at the top left.
            return [[[-0.7, -0.7], [0.7, -0.7], [0.7, 0.7], [-0.7, 0.7], [-0.7, -0.1], [0.2, -0.1], [0.2, 0.3]]]
        case 1:
            // A ring with a tail that leaves it at the bottom and bends right, plus a short spur.
            let ring = (0...16).map { k -> SIMD2<Double> in
                let angle = Double(k) / 16 * 2 * Double.pi
                return [0.55 * cos(angle) - 0.1, 0.5 * sin(angle) - 0.3]
            }
            return [ring, [[-0.1, 0.2], [-0.1, 0.8], [0.6, 0.8]], [[0.45, -0.3], [0.8, -0.6]]]
        default:
            // A zigzag of three strokes crossed by a bar: like a lightning bolt struck through.
            return [[[-0.7, -0.75], [0.6, -0.35], [-0.6, 0.35], [0.7, 0.75]], [[-0.75, 0.0], [0.75, 0.0]]]
        }
    }

    /// Renders one random instance of `label` into `canvas` (floats in about 0...1, before clamping).
    private static func draw(class label: Int, random: inout SplitMix64, into canvas: inout [Float]) {
        // Per-sample distortion of the skeleton: each control point moves independently.
        var strokes = skeleton(of: label).map { line in
            line.map { $0 + SIMD2(random.uniform(-0.13, 0.13), random.uniform(-0.13, 0.13)) }
        }
        // One glyph in two gets a stray stroke, so "has ink here" is not a class signature.
        if random.uniform(0, 1) < 0.5 {
            let start = SIMD2(random.uniform(-0.9, 0.9), random.uniform(-0.9, 0.9))
            let angle = random.uniform(0, 2 * Double.pi)
            let length = random.uniform(0.3, 0.7)
            strokes.append([start, start + length * SIMD2(cos(angle), sin(angle))])
        }

        // Glyph box to pixels: rotation, anisotropic scale, shear, shift.
        let angle = random.uniform(-0.6, 0.6)                  // about ±35°
        let scale = random.uniform(7.0, 10.5)                  // half-size in pixels
        let aspect = random.uniform(0.85, 1.15)
        let shear = random.uniform(-0.25, 0.25)
        let center = SIMD2(14 + random.uniform(-3, 3), 14 + random.uniform(-3, 3))
        let (c, s) = (cos(angle), sin(angle))
        func toPixels(_ p: SIMD2<Double>) -> SIMD2<Double> {
            let q = SIMD2(p.x * scale * aspect + shear * p.y * scale, p.y * scale / aspect)
            return center + SIMD2(c * q.x - s * q.y, s * q.x + c * q.y)
        }
        var segments: [Segment] = []
        for line in strokes {
            for k in 1..<line.count { segments.append(Segment(toPixels(line[k - 1]), toPixels(line[k]))) }
        }

        let halfWidth = random.uniform(0.5, 1.5)
        let ink = random.uniform(0.6, 1.0)
        let background = random.uniform(0, 0.15)
        let noise = random.uniform(0.02, 0.15)
        // Coverage falls off linearly over one pixel at the stroke's edge (cheap antialiasing), so
        // only pixels within halfWidth + 0.5 of a segment get ink: visit just its bounding box.
        var coverage = [Double](repeating: 0, count: size * size)
        let reach = halfWidth + 0.5
        for segment in segments {
            let x0 = max(0, Int((min(segment.ax, segment.bx) - reach).rounded(.down)))
            let x1 = min(size - 1, Int((max(segment.ax, segment.bx) + reach).rounded(.up)))
            let y0 = max(0, Int((min(segment.ay, segment.by) - reach).rounded(.down)))
            let y1 = min(size - 1, Int((max(segment.ay, segment.by) + reach).rounded(.up)))
            guard x0 <= x1, y0 <= y1 else { continue }
            for y in y0...y1 {
                for x in x0...x1 {
                    let value = min(max(reach - segment.distance(Double(x) + 0.5, Double(y) + 0.5), 0), 1)
                    if value > coverage[y * size + x] { coverage[y * size + x] = value }
                }
            }
        }
        for p in 0..<(size * size) {
            canvas[p] = Float(background + (ink - background) * coverage[p] + noise * random.normal())
        }
    }

    /// A line segment in pixel coordinates, as scalars: the renderer's hot loop runs in debug
    /// builds too, where generic SIMD code is many times slower.
    private struct Segment {
        let ax, ay, bx, by, dx, dy, lengthSquared: Double

        init(_ a: SIMD2<Double>, _ b: SIMD2<Double>) {
            (ax, ay, bx, by) = (a.x, a.y, b.x, b.y)
            (dx, dy) = (b.x - a.x, b.y - a.y)
            lengthSquared = dx * dx + dy * dy
        }

        /// Distance from (x, y) to the segment.
        func distance(_ x: Double, _ y: Double) -> Double {
            let t = lengthSquared > 0 ? min(max(((x - ax) * dx + (y - ay) * dy) / lengthSquared, 0), 1) : 0
            let (ex, ey) = (x - ax - t * dx, y - ay - t * dy)
            return (ex * ex + ey * ey).squareRoot()
        }
    }
}

