// Lectures 5–6 (Poole et al. 2016, "Exponential expressivity in deep neural networks through
// transient chaos"): a deep tanh network with weights N(0, σ_w²/N) and biases N(0, σ_b²).
// In the wide limit the length q^l of the pre-activations follows the q-map
//     q^l = σ_w² E_z[tanh(√q^{l−1} z)²] + σ_b²,
// and the correlation c^l of two inputs the c-map (the same with two correlated Gaussians).
// At the fixed point q*, χ = σ_w² E_z[tanh′(√q* z)²] is the slope of the c-map at c = 1:
// χ < 1 is order (inputs become alike), χ > 1 chaos (nearby inputs decorrelate).
//  1. χ over (σ_w, σ_b) as a picture with the boundary χ = 1;
//  2. q^l and c^l through depth: the maps against random Kiln networks of width N.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "signal-propagation", summary: "q-map, c-map and the order-to-chaos boundary of deep tanh networks")
let started = Date()

// Gaussian expectations by the trapezoid rule on z ∈ [−8, 8] (exponentially accurate here).
let step = 0.1
let nodes = stride(from: -8.0, through: 8.0, by: step).map { $0 }
let weights = nodes.map { exp(-$0 * $0 / 2) * step / (2 * Double.pi).squareRoot() }
func expect(_ f: (Double) -> Double) -> Double { zip(nodes, weights).reduce(0) { $0 + $1.1 * f($1.0) } }
func derivative(_ x: Double) -> Double { let t = Foundation.tanh(x); return 1 - t * t }

/// One layer of the length and correlation maps for the pre-activation variances q11, q22 and covariance q12.
func layer(_ q11: Double, _ q22: Double, _ q12: Double, sw: Double, sb: Double) -> (Double, Double, Double) {
    let a = q11.squareRoot(), b = q22.squareRoot()
    let c = max(-1, min(1, q12 / (a * b)))
    let s = (1 - c * c).squareRoot()
    var cross = 0.0
    for (z1, w1) in zip(nodes, weights) {
        let t1 = Foundation.tanh(a * z1)
        cross += w1 * t1 * expect { z2 in Foundation.tanh(b * (c * z1 + s * z2)) }
    }
    return (sw * sw * expect { pow(Foundation.tanh(a * $0), 2) } + sb * sb,
            sw * sw * expect { pow(Foundation.tanh(b * $0), 2) } + sb * sb,
            sw * sw * cross + sb * sb)
}
/// The fixed point q* of the length map and χ there.
func chi(sw: Double, sb: Double, iterations: Int = 200) -> (qStar: Double, chi: Double) {
    var q = 1.0
    for _ in 0..<iterations {
        let next = sw * sw * expect { pow(Foundation.tanh(q.squareRoot() * $0), 2) } + sb * sb
        if Swift.abs(next - q) < 1e-12 { q = next; break }
        q = next
    }
    return (q, sw * sw * expect { pow(derivative(q.squareRoot() * $0), 2) })
}

// 1. χ over (σ_w, σ_b): a picture (blue order, red chaos, black χ = 1) and the boundary as a curve.
let (swRange, sbRange) = ((0.5, 4.0), (0.0, 2.0))
let pixels = options.quick ? 100 : 240
var image = [UInt8](repeating: 0, count: pixels * pixels * 3)
var logChi = [[Double]](repeating: [Double](repeating: 0, count: pixels), count: pixels)
for row in 0..<pixels {
    let sb = sbRange.1 - (sbRange.1 - sbRange.0) * Double(row) / Double(pixels - 1)       // σ_b up the picture
    for column in 0..<pixels {
        let sw = swRange.0 + (swRange.1 - swRange.0) * Double(column) / Double(pixels - 1)
        logChi[row][column] = Foundation.log(chi(sw: sw, sb: sb).chi)
    }
}
for row in 0..<pixels {
    for column in 0..<pixels {
        let v = logChi[row][column]
        let edge = (column + 1 < pixels && (v < 0) != (logChi[row][column + 1] < 0)) || (row + 1 < pixels && (v < 0) != (logChi[row + 1][column] < 0))
        let strength = min(1, Swift.abs(v) / 1.5)
        let rgb: (Double, Double, Double) = edge ? (0, 0, 0) : v < 0 ? (1 - strength, 1 - strength * 0.6, 1) : (1, 1 - strength * 0.8, 1 - strength)
        let at = (row * pixels + column) * 3
        image[at] = UInt8(rgb.0 * 255); image[at + 1] = UInt8(rgb.1 * 255); image[at + 2] = UInt8(rgb.2 * 255)
    }
}
let picturePath = try options.path("chi.png")
try PNG.write(path: picturePath, width: pixels, height: pixels, channels: 3, pixels: image)
/// σ_w where χ = 1 for this σ_b (bisection: χ grows with σ_w at fixed σ_b).
func boundary(sb: Double) -> Double {
    var (lo, hi) = (0.5, 6.0)
    for _ in 0..<40 { let mid = (lo + hi) / 2; if chi(sw: mid, sb: sb, iterations: 2000).chi < 1 { lo = mid } else { hi = mid } }
    return (lo + hi) / 2
}
let boundaryPoints = stride(from: 0.05, through: 2.0, by: options.quick ? 0.2 : 0.05).map { (x: boundary(sb: $0), y: $0) }
var boundaryTable = TextTable(["σ_b", "σ_w at χ = 1", "q* there"])
for sb in [0.05, 0.1, 0.3, 1.0, 2.0] { let sw = boundary(sb: sb); boundaryTable.add([fixed(sb, 2), fixed(sw, 4), fixed(chi(sw: sw, sb: sb, iterations: 2000).qStar, 4)]) }
print("1. the order-to-chaos boundary χ(σ_w, σ_b) = 1 of tanh networks:\n\(boundaryTable)\n")

// 2. Theory against random Kiln networks through depth.
let width = options.quick ? 300 : 1000, depth = options.quick ? 15 : 30, networks = options.quick ? 3 : 10
let inputLength = 1.0, inputCorrelation = 0.6
var random = SplitMix64(seed: options.seed &+ 11)
let u = gaussianSamples(width, using: &random), noise = gaussianSamples(width, using: &random)
func scaled(_ v: [Double]) -> [Double] { let n = (v.reduce(0) { $0 + $1 * $1 } / Double(width)).squareRoot(); return v.map { $0 * inputLength.squareRoot() / n } }
let x1 = scaled(u)
let x2 = scaled(zip(x1, scaled(noise)).map { inputCorrelation * $0 + (1 - inputCorrelation * inputCorrelation).squareRoot() * $1 })

/// The pre-activations h^1 … h^L of a random tanh network on the two inputs (rows), every layer an output.
func simulate(sw: Double, sb: Double, seed: UInt64) throws -> [(q: Double, c: Double)] {
    let g = GraphBuilder()
    var h = g.input("x", [2, width])
    for l in 1...depth {
        let w = g.parameter("W\(l)", [width, width], initializer: .normal(mean: 0, std: sw / Double(width).squareRoot()))
        let b = g.parameter("b\(l)", [width], initializer: .normal(mean: 0, std: sb))
        h = (l == 1 ? h : tanh(h)).matmul(w, transposeOther: true) + b
        g.output("h\(l)", h)
    }
    let program = try Executable(graph: try g.build(), store: ParameterStore(seed: seed))
    try program.setInput("x", (x1 + x2).map(Float.init))
    try program.run()
    return try (1...depth).map { l in
        let v = try program.output("h\(l)").map(Double.init)
        let a = v[..<width], b = v[width...]
        let q11 = a.reduce(0) { $0 + $1 * $1 } / Double(width), q22 = b.reduce(0) { $0 + $1 * $1 } / Double(width)
        let q12 = zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } / Double(width)
        return ((q11 + q22) / 2, q12 / (q11 * q22).squareRoot())
    }
}
func theory(sw: Double, sb: Double) -> [(q: Double, c: Double)] {
    let q0 = x1.reduce(0) { $0 + $1 * $1 } / Double(width), q0b = x2.reduce(0) { $0 + $1 * $1 } / Double(width)
    let c0 = zip(x1, x2).reduce(0) { $0 + $1.0 * $1.1 } / Double(width)
    var q = (sw * sw * q0 + sb * sb, sw * sw * q0b + sb * sb, sw * sw * c0 + sb * sb)     // layer 1 is linear in x
    var out = [((q.0 + q.1) / 2, q.2 / (q.0 * q.1).squareRoot())]
    for _ in 1..<depth { q = layer(q.0, q.1, q.2, sw: sw, sb: sb); out.append(((q.0 + q.1) / 2, q.2 / (q.0 * q.1).squareRoot())) }
    return out
}
let settings: [(sw: Double, sb: Double)] = [(1.2, 0.3), (2.5, 0.3)]
var table = TextTable(["σ_w, σ_b", "χ", "layer", "q theory", "q Kiln", "c theory", "c Kiln ± sd"])
var qSeries: [LinePlot.Series] = [], cSeries: [LinePlot.Series] = []
var worst = (q: 0.0, c: 0.0)
for s in settings {
    let predicted = theory(sw: s.sw, sb: s.sb)
    let runs = try (0..<networks).map { try simulate(sw: s.sw, sb: s.sb, seed: options.seed &* 1000 &+ UInt64($0)) }
    let meanQ = (0..<depth).map { l in runs.reduce(0) { $0 + $1[l].q } / Double(networks) }
    let meanC = (0..<depth).map { l in runs.reduce(0) { $0 + $1[l].c } / Double(networks) }
    let sdC = (0..<depth).map { l in (runs.reduce(0) { $0 + pow($1[l].c - meanC[l], 2) } / Double(max(1, networks - 1))).squareRoot() }
    let label = "σ_w = \(s.sw), σ_b = \(s.sb)"
    let chiHere = chi(sw: s.sw, sb: s.sb).chi
    for l in [1, 2, 5, 10, 20, 30] where l <= depth {
        table.add([l == 1 ? "\(s.sw), \(s.sb)" : "", l == 1 ? fixed(chiHere, 3) : "", "\(l)", fixed(predicted[l - 1].q, 4), fixed(meanQ[l - 1], 4),
                   fixed(predicted[l - 1].c, 4), fixed(meanC[l - 1], 4) + " ± " + fixed(sdC[l - 1], 4)])
    }
    for l in 0..<depth {
        worst.q = max(worst.q, Swift.abs(meanQ[l] - predicted[l].q) / predicted[l].q)
        worst.c = max(worst.c, Swift.abs(meanC[l] - predicted[l].c))
    }
    qSeries += [LinePlot.Series("q-map, \(label)", predicted.enumerated().map { (Double($0 + 1), $1.q) }, dashed: true, markers: false),
                LinePlot.Series("Kiln, \(label)", meanQ.enumerated().map { (Double($0 + 1), $1) })]
    cSeries += [LinePlot.Series("c-map, \(label) (χ = \(fixed(chiHere, 2)))", predicted.enumerated().map { (Double($0 + 1), $1.c) }, dashed: true, markers: false),
                LinePlot.Series("Kiln, \(label)", meanC.enumerated().map { (Double($0 + 1), $1) })]
}
print("2. two inputs with q⁰ = \(inputLength), c⁰ = \(inputCorrelation) through \(networks) random tanh networks of width \(width), depth \(depth):\n\(table)")
print("   largest gap over all layers: q \(fixed(100 * worst.q, 2))% (relative), c \(fixed(worst.c, 4)) (absolute)")

try LinePlot(title: "Order-to-chaos boundary of tanh networks (χ = 1)", xLabel: "σ_w", yLabel: "σ_b",
             series: [LinePlot.Series("χ = 1 (order left, chaos right)", boundaryPoints, markers: false)]).write(path: try options.path("boundary.svg"))
try LinePlot(title: "Correlation of two inputs through depth", xLabel: "layer l", yLabel: "c^l", series: cSeries).write(path: try options.path("c-map.svg"))
try LinePlot(title: "Length of the pre-activations through depth", xLabel: "layer l", yLabel: "q^l", series: qSeries).write(path: try options.path("q-map.svg"))
print("wrote \(picturePath), boundary.svg, c-map.svg, q-map.svg in \(options.outputDirectory); total \(fixed(Date().timeIntervalSince(started), 1)) s")
