import Foundation
import KilnGraph

/// One epoch's figures for a training plot; the optional ones are drawn when present.
public struct EpochSummary: Sendable, Equatable {
    /// 1-based epoch number (the x coordinate).
    public var epoch: Int
    public var trainLoss: Double
    public var validationLoss: Double?
    public var trainAccuracy: Double?
    public var validationAccuracy: Double?

    public init(epoch: Int, trainLoss: Double, validationLoss: Double? = nil, trainAccuracy: Double? = nil,
                validationAccuracy: Double? = nil) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.validationLoss = validationLoss
        self.trainAccuracy = trainAccuracy; self.validationAccuracy = validationAccuracy
    }
}

/// Training curves as an SVG: a loss panel (training and validation loss per epoch) and, when
/// any accuracy is given, an accuracy panel beside it; each with axes, "nice" ticks (1, 2, 5 ×
/// 10ⁿ steps), gridlines, axis labels and a legend. Self-contained SVG 1.1, no scripts or fonts
/// beyond the generic `sans-serif`, so any renderer (browsers, rsvg-convert, Inkscape) shows it.
public struct TrainingCurves: Sendable {
    public var epochs: [EpochSummary]
    public var title: String
    /// Legend names of the two loss curves (a GAN plots its generator and discriminator losses).
    public var lossNames: (train: String, validation: String)

    public init(_ epochs: [EpochSummary], title: String, lossNames: (String, String) = ("training loss", "validation loss")) {
        self.epochs = epochs; self.title = title; self.lossNames = (lossNames.0, lossNames.1.isEmpty ? "validation loss" : lossNames.1)
    }

    /// The curves of a classifier's fit: training loss and accuracy per epoch, and the validation
    /// figures when the fit had a validation set.
    public init(_ history: [EpochReport], title: String) {
        self.init(history.map { EpochSummary(epoch: $0.epoch, trainLoss: $0.trainLoss, validationLoss: $0.validation?.loss,
                                             trainAccuracy: $0.trainAccuracy, validationAccuracy: $0.validation?.accuracy) },
                  title: title)
    }

    /// A named polyline of (epoch, value) points.
    struct Series { var name: String; var colour: String; var dashed: Bool; var points: [(Double, Double)] }

    /// The SVG document.
    public var svg: String {
        let panelWidth = 420.0, panelHeight = 300.0
        let loss = [
            Series(name: lossNames.train, colour: "#1f77b4", dashed: false, points: epochs.map { (Double($0.epoch), $0.trainLoss) }),
            Series(name: lossNames.validation, colour: "#d62728", dashed: true,
                   points: epochs.compactMap { e in e.validationLoss.map { (Double(e.epoch), $0) } }),
        ].filter { !$0.points.isEmpty }
        let accuracy = [
            Series(name: "training accuracy", colour: "#1f77b4", dashed: false,
                   points: epochs.compactMap { e in e.trainAccuracy.map { (Double(e.epoch), $0) } }),
            Series(name: "validation accuracy", colour: "#d62728", dashed: true,
                   points: epochs.compactMap { e in e.validationAccuracy.map { (Double(e.epoch), $0) } }),
        ].filter { !$0.points.isEmpty }
        let panels = accuracy.isEmpty ? 1 : 2
        let width = panelWidth * Double(panels), height = panelHeight + 40
        var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="24" text-anchor="middle" font-size="16">\(escape(title))</text>

        """
        out += panel(loss, yLabel: "loss", left: 0, top: 40, width: panelWidth, height: panelHeight)
        if !accuracy.isEmpty {
            out += panel(accuracy, yLabel: "accuracy", left: panelWidth, top: 40, width: panelWidth, height: panelHeight)
        }
        return out + "</svg>\n"
    }

    /// Writes the SVG atomically.
    public func write(path: String) throws { try AtomicFile.write(Array(svg.utf8), to: path) }

    private func panel(_ series: [Series], yLabel: String, left: Double, top: Double, width: Double, height: Double) -> String {
        let plotLeft = left + 64, plotRight = left + width - 16, plotTop = top + 10, plotBottom = top + height - 50
        let xs = series.flatMap { $0.points.map(\.0) }, ys = series.flatMap { $0.points.map(\.1) }
        let xTicks = Self.ticks(xs.min() ?? 1, xs.max() ?? 1, integer: true)
        let yTicks = Self.ticks(ys.min() ?? 0, ys.max() ?? 1, integer: false)
        let (x0, x1) = (xTicks.first!, xTicks.last!), (y0, y1) = (yTicks.first!, yTicks.last!)
        func px(_ x: Double) -> Double { plotLeft + (x - x0) / (x1 - x0) * (plotRight - plotLeft) }
        func py(_ y: Double) -> Double { plotBottom - (y - y0) / (y1 - y0) * (plotBottom - plotTop) }
        var out = "<g class=\"panel\">\n"
        for y in yTicks {
            out += "<line x1=\"\(f(plotLeft))\" y1=\"\(f(py(y)))\" x2=\"\(f(plotRight))\" y2=\"\(f(py(y)))\" stroke=\"#e0e0e0\"/>\n"
            out += "<line x1=\"\(f(plotLeft - 5))\" y1=\"\(f(py(y)))\" x2=\"\(f(plotLeft))\" y2=\"\(f(py(y)))\" stroke=\"black\"/>\n"
            out += "<text x=\"\(f(plotLeft - 8))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\" font-size=\"11\">\(Self.label(y, ticks: yTicks))</text>\n"
        }
        for x in xTicks {
            out += "<line x1=\"\(f(px(x)))\" y1=\"\(f(plotBottom))\" x2=\"\(f(px(x)))\" y2=\"\(f(plotBottom + 5))\" stroke=\"black\"/>\n"
            out += "<text x=\"\(f(px(x)))\" y=\"\(f(plotBottom + 18))\" text-anchor=\"middle\" font-size=\"11\">\(Self.label(x, ticks: xTicks))</text>\n"
        }
        out += "<polyline points=\"\(f(plotLeft)),\(f(plotTop)) \(f(plotLeft)),\(f(plotBottom)) \(f(plotRight)),\(f(plotBottom))\" fill=\"none\" stroke=\"black\"/>\n"
        out += "<text x=\"\(f((plotLeft + plotRight) / 2))\" y=\"\(f(plotBottom + 36))\" text-anchor=\"middle\" font-size=\"12\">epoch</text>\n"
        let midY = (plotTop + plotBottom) / 2
        out += "<text x=\"\(f(left + 16))\" y=\"\(f(midY))\" text-anchor=\"middle\" font-size=\"12\" transform=\"rotate(-90 \(f(left + 16)) \(f(midY)))\">\(yLabel)</text>\n"
        for s in series {
            let points = s.points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            out += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(s.colour)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            for p in s.points { out += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"2.5\" fill=\"\(s.colour)\"/>\n" }
        }
        // Legend in the top-right corner of the plot area, on a white box so curves passing under it stay readable.
        out += "<rect x=\"\(f(plotRight - 156))\" y=\"\(f(plotTop))\" width=\"152\" height=\"\(f(Double(series.count) * 18 + 6))\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#c0c0c0\"/>\n"
        for (i, s) in series.enumerated() {
            let y = plotTop + 12 + Double(i) * 18, x = plotRight - 150
            out += "<line x1=\"\(f(x))\" y1=\"\(f(y - 4))\" x2=\"\(f(x + 24))\" y2=\"\(f(y - 4))\" stroke=\"\(s.colour)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>\n"
            out += "<text x=\"\(f(x + 30))\" y=\"\(f(y))\" font-size=\"11\">\(escape(s.name))</text>\n"
        }
        return out + "</g>\n"
    }

    /// Tick values covering [low, high] at a 1, 2 or 5 × 10ⁿ step, about five of them.
    static func ticks(_ low: Double, _ high: Double, integer: Bool) -> [Double] {
        var (low, high) = (low, high)
        if high - low < 1e-12 { (low, high) = integer ? (low - 1, high + 1) : (low - Swift.max(abs(low) * 0.1, 0.5), high + Swift.max(abs(high) * 0.1, 0.5)) }
        let rough = (high - low) / 5
        let magnitude = Foundation.pow(10, (Foundation.log10(rough)).rounded(.down))
        var step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough } ?? 10 * magnitude
        if integer { step = Swift.max(step.rounded(.up), 1) }
        let first = (low / step).rounded(.down) * step, last = (high / step).rounded(.up) * step
        return stride(from: first, through: last + step / 2, by: step).map { $0 }
    }

    /// A tick label with as many decimals as the step needs.
    static func label(_ value: Double, ticks: [Double]) -> String {
        let step = ticks.count > 1 ? ticks[1] - ticks[0] : 1
        let decimals = Swift.max(0, Int((-Foundation.log10(step)).rounded(.up)))
        return String(format: "%.\(decimals)f", value)
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
    private func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
