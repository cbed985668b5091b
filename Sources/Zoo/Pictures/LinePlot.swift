import Foundation
import KilnGraph

/// A line plot as SVG: any number of named series of (x, y) points on shared axes, each axis
/// linear or logarithmic, with ticks, gridlines, axis labels and a legend. Points with a
/// non-finite coordinate (or a non-positive one on a log axis) are left out, breaking the line.
/// Same conventions as `TrainingCurves`: self-contained SVG 1.1, generic `sans-serif` font.
public struct LinePlot: Sendable {
    /// One curve.
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]
        /// Dashed line (e.g. a reference value or the course's figure).
        public var dashed: Bool
        /// Draw a dot at each point.
        public var markers: Bool

        public init(_ name: String, _ points: [(x: Double, y: Double)], dashed: Bool = false, markers: Bool = true) {
            self.name = name; self.points = points; self.dashed = dashed; self.markers = markers
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var logX: Bool
    public var logY: Bool
    public var series: [Series]
    public var width = 560.0
    public var height = 380.0

    public init(title: String, xLabel: String, yLabel: String, logX: Bool = false, logY: Bool = false, series: [Series] = []) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.logX = logX; self.logY = logY; self.series = series
    }

    /// Ten distinguishable colours (matplotlib's tab10), cycled through the series.
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

    /// The SVG document.
    public var svg: String {
        func usable(_ v: Double, log: Bool) -> Bool { v.isFinite && (!log || v > 0) }
        func map(_ v: Double, log: Bool) -> Double { log ? Foundation.log10(v) : v }
        // Coordinates in axis space (log10 for log axes); nil breaks a polyline.
        let mapped: [[(Double, Double)?]] = series.map { s in
            s.points.map { p in
                usable(p.x, log: logX) && usable(p.y, log: logY) ? (map(p.x, log: logX), map(p.y, log: logY)) : nil
            }
        }
        let xs = mapped.flatMap { $0.compactMap { $0?.0 } }, ys = mapped.flatMap { $0.compactMap { $0?.1 } }
        let xTicks = Self.ticks(xs, log: logX), yTicks = Self.ticks(ys, log: logY)
        let (x0, x1) = (xTicks.first!, xTicks.last!), (y0, y1) = (yTicks.first!, yTicks.last!)
        // The legend sits right of the plot, as wide as its longest name (about 6.2 px a character at 11 px).
        // Wide enough for the title (about 8 px a character at 15 px).
        let width = Swift.max(self.width, 8 * Double(title.count) + 40)
        let legendWidth = Swift.max(120, 50 + 6.2 * Double(series.map(\.name.count).max() ?? 0))
        let plotLeft = 70.0, plotRight = width - legendWidth - 16, plotTop = 40.0, plotBottom = height - 50
        func px(_ x: Double) -> Double { plotLeft + (x - x0) / (x1 - x0) * (plotRight - plotLeft) }
        func py(_ y: Double) -> Double { plotBottom - (y - y0) / (y1 - y0) * (plotBottom - plotTop) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="24" text-anchor="middle" font-size="15">\(Self.escape(title))</text>

        """
        for y in yTicks {
            out += "<line x1=\"\(f(plotLeft))\" y1=\"\(f(py(y)))\" x2=\"\(f(plotRight))\" y2=\"\(f(py(y)))\" stroke=\"#e0e0e0\"/>\n"
            out += "<text x=\"\(f(plotLeft - 8))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\" font-size=\"11\">\(Self.label(y, ticks: yTicks, log: logY))</text>\n"
        }
        for x in xTicks {
            out += "<line x1=\"\(f(px(x)))\" y1=\"\(f(plotBottom))\" x2=\"\(f(px(x)))\" y2=\"\(f(plotBottom + 5))\" stroke=\"black\"/>\n"
            out += "<text x=\"\(f(px(x)))\" y=\"\(f(plotBottom + 18))\" text-anchor=\"middle\" font-size=\"11\">\(Self.label(x, ticks: xTicks, log: logX))</text>\n"
        }
        out += "<polyline points=\"\(f(plotLeft)),\(f(plotTop)) \(f(plotLeft)),\(f(plotBottom)) \(f(plotRight)),\(f(plotBottom))\" fill=\"none\" stroke=\"black\"/>\n"
        out += "<text x=\"\(f((plotLeft + plotRight) / 2))\" y=\"\(f(plotBottom + 38))\" text-anchor=\"middle\" font-size=\"12\">\(Self.escape(xLabel))</text>\n"
        let midY = (plotTop + plotBottom) / 2
        out += "<text x=\"16\" y=\"\(f(midY))\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 16 \(f(midY)))\">\(Self.escape(yLabel))</text>\n"
        for (i, s) in series.enumerated() {
            let colour = Self.palette[i % Self.palette.count]
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            // Split at unusable points so that a gap shows where a value is missing.
            var runs: [[(Double, Double)]] = [[]]
            for p in mapped[i] { if let p { runs[runs.count - 1].append(p) } else if !runs.last!.isEmpty { runs.append([]) } }
            for run in runs where !run.isEmpty {
                let points = run.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
                out += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(dash)/>\n"
                if s.markers { for p in run { out += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"2.5\" fill=\"\(colour)\"/>\n" } }
            }
            let ly = plotTop + 8 + Double(i) * 18, lx = plotRight + 16
            out += "<line x1=\"\(f(lx))\" y1=\"\(f(ly))\" x2=\"\(f(lx + 24))\" y2=\"\(f(ly))\" stroke=\"\(colour)\" stroke-width=\"2\"\(dash)/>\n"
            out += "<text x=\"\(f(lx + 30))\" y=\"\(f(ly + 4))\" font-size=\"11\">\(Self.escape(s.name))</text>\n"
        }
        return out + "</svg>\n"
    }

    /// Writes the SVG atomically.
    public func write(path: String) throws { try AtomicFile.write(Array(svg.utf8), to: path) }

    /// Ticks in axis space: whole powers of ten on a log axis, else 1/2/5 × 10ⁿ steps.
    static func ticks(_ values: [Double], log: Bool) -> [Double] {
        let low = values.min() ?? (log ? 0 : 0), high = values.max() ?? 1
        guard log else { return TrainingCurves.ticks(low, high, integer: false) }
        let first = low.rounded(.down), last = Swift.max(high.rounded(.up), first + 1)
        return stride(from: first, through: last, by: 1).map { $0 }
    }

    static func label(_ value: Double, ticks: [Double], log: Bool) -> String {
        guard log else { return TrainingCurves.label(value, ticks: ticks) }
        let e = Int(value.rounded())
        return e >= 0 && e <= 4 ? String(Int(Foundation.pow(10, Double(e)))) : "1e\(e)"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
