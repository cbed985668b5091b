import Foundation
import Kiln

/// What `kiln generate` reports about its own samples (issue 17 item 4) when it knows a classifier
/// (`--judge`, or the one the model file names) and the training images (`--train`, or the file
/// the model was trained on): the fraction of each class's samples the classifier recognises as
/// that class, and each sample's distance to its nearest training image, flagging copies.
struct SampleQuality {
    /// Per class: samples stated to be of it, and how many the classifier put in it.
    var stated: [Int]
    var recognised: [Int]
    /// Median over samples of the RMS pixel distance (0–1 scale) to the nearest training image,
    /// the same median over training images to their nearest other training image, and the
    /// samples closer to a training image than `copyFraction` × that median (copies).
    var sampleDistance: Double?
    var trainingDistance: Double?
    var copies: Int?

    /// A sample nearer a training image than this fraction of the training images' own median
    /// nearest-neighbour distance is called a copy.
    static let copyFraction = 0.25

    /// Recognition by `judge` of `samples` (labelled with their stated class).
    static func recognition(_ samples: ImageDataset, judge: TrainedClassifier) throws -> (stated: [Int], recognised: [Int]) {
        let classes = judge.classes
        var stated = [Int](repeating: 0, count: classes), recognised = [Int](repeating: 0, count: classes)
        for (i, predicted) in try judge.predict(samples).enumerated() {
            let label = Int(samples.labels[i])
            guard label < classes else { continue }
            stated[label] += 1
            if predicted == label { recognised[label] += 1 }
        }
        return (stated, recognised)
    }

    /// RMS distances (pixels scaled to 0–1) from every image of `queries` to its nearest image of
    /// `reference`; with `excludingSelf`, `queries` is `reference` and an image's own row is skipped.
    static func nearestDistances(_ queries: ImageDataset, to reference: ImageDataset, excludingSelf: Bool = false) -> [Double] {
        let pixels = reference.pixelsPerImage
        let ref = reference.images.map { Float($0) / 255 }
        let query = queries.images.map { Float($0) / 255 }
        var result = [Double](repeating: 0, count: queries.count)
        result.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: queries.count) { q in
                var best = Float.infinity
                for r in 0..<reference.count where !(excludingSelf && r == q) {
                    var sum: Float = 0
                    for p in 0..<pixels {
                        let d = query[q * pixels + p] - ref[r * pixels + p]
                        sum += d * d
                        if sum >= best { break }
                    }
                    best = Swift.min(best, sum)
                }
                (base + q).pointee = Double((best / Float(pixels)).squareRoot())
            }
        }
        return result
    }

    /// The report's lines.
    func lines(classNames: [String]) -> [String] {
        var lines: [String] = []
        if !stated.isEmpty {
            let total = Double(recognised.reduce(0, +)) / Double(Swift.max(stated.reduce(0, +), 1))
            let perClass = classNames.indices.map { k in
                String(format: "%@ %.1f%%", classNames[k], 100 * Double(recognised[k]) / Double(Swift.max(stated[k], 1)))
            }
            lines.append(String(format: "recognised as their class: %.1f%% (", 100 * total) + perClass.joined(separator: ", ") + ")")
        }
        if let sampleDistance, let trainingDistance, let copies {
            lines.append(String(format: "nearest training image: median RMS distance %.3f (training images to each other: %.3f); ",
                                sampleDistance, trainingDistance)
                         + (copies == 0 ? "no sample within \(SampleQuality.copyFraction) of that: no copies"
                                        : "\(copies) samples within \(SampleQuality.copyFraction) of that: likely copies of training images"))
        }
        return lines
    }
}
