// Lectures 2–4 (depth separation, Telgarsky 2016): the tent map t(x) = 2 relu(x) − 4 relu(x − ½)
// on [0, 1] is a ReLU layer of width 2; composed k times it is a sawtooth with 2^k linear pieces,
// made by a network of depth k and 2k units. A network with one hidden layer of m ReLU units has
// at most m + 1 pieces, so it needs about 2^k units for the same function.
//  1. the composition as a Kiln graph: linear pieces counted on a fine grid against 2^k;
//  2. a shallow network (one hidden layer, widths m) and a deep one (several narrow layers)
//     trained by Adam on t^k: mean squared error and the pieces each ends with.
import Foundation
import Kiln

let options = ExampleOptions.parseOrExit(name: "sawtooth", summary: "the tent map's composition, linear pieces against depth, shallow and deep fits")
let started = Date()
let gridSize = 16_385                                 // 2^14 + 1 points: the kinks of t^k, k ≤ 12, lie on the grid, 4 or more apart
let grid = (0..<gridSize).map { Double($0) / Double(gridSize - 1) }

/// The linear pieces of a function sampled on `grid`: slopes between neighbours, a new piece
/// wherever the slope moves by more than `tolerance` (relative to the largest slope); a kink
/// between two grid points bends two neighbouring intervals and is counted once.
func linearPieces(_ values: [Float]) -> Int {
    let h = grid[1] - grid[0]
    let slopes = (1..<values.count).map { (Double(values[$0]) - Double(values[$0 - 1])) / h }
    let scale = max(1, slopes.map(Swift.abs).max() ?? 1)
    var pieces = 1, previousChanged = false
    for i in 1..<slopes.count {
        let changed = Swift.abs(slopes[i] - slopes[i - 1]) > 1e-2 * scale
        if changed && !previousChanged { pieces += 1 }
        previousChanged = changed
    }
    return pieces
}

/// t^k on the grid by the depth-k, width-2 ReLU network, built from graph ops.
func tentComposition(depth: Int) throws -> [Float] {
    let g = GraphBuilder()
    let x = g.input("x", [gridSize, 1])
    var y = x
    for _ in 0..<depth { y = 2 * relu(y) - 4 * relu(y - 0.5) }
    g.output("y", y)
    let program = try Executable(graph: try g.build(), store: ParameterStore(), threads: 1)
    try program.setInput("x", grid.map(Float.init))
    try program.run()
    return try program.output("y")
}

func tentExact(_ x: Double, depth: Int) -> Double {
    var y = x
    for _ in 0..<depth { y = y < 0.5 ? 2 * y : 2 - 2 * y }
    return y
}

// 1. Pieces against depth.
let maxDepth = options.quick ? 8 : 12
var pieceTable = TextTable(["depth k", "units (2k)", "pieces counted", "2^k", "max |Kiln − t^k|"])
var counted: [(x: Double, y: Double)] = [], theory: [(x: Double, y: Double)] = []
for depth in 1...maxDepth {
    let values = try tentComposition(depth: depth)
    let error = zip(values, grid).map { Swift.abs(Double($0) - tentExact($1, depth: depth)) }.max()!
    let pieces = linearPieces(values)
    pieceTable.add(["\(depth)", "\(2 * depth)", "\(pieces)", "\(1 << depth)", String(format: "%.1e", error)])
    counted.append((Double(depth), Double(pieces))); theory.append((Double(depth), Double(1 << depth)))
}
print("1. the tent map composed k times, on \(gridSize) points of [0, 1]:\n\(pieceTable)\n")

// 2. Shallow against deep fits of t^k.
let targetDepth = options.quick ? 3 : 4
let steps = options.quick ? 1_000 : 6_000
let seeds = options.quick ? 1 : 3
let trainCount = 1024
let trainX = (0..<trainCount).map { (Double($0) + 0.5) / Double(trainCount) }
let trainY = trainX.map { tentExact($0, depth: targetDepth) }
let targetGrid = grid.map { tentExact($0, depth: targetDepth) }

/// A ReLU network x → hidden widths → 1 on `x`.
func network(_ g: GraphBuilder, _ x: Tensor, hidden: [Int]) -> Tensor {
    var h = x
    for (i, width) in hidden.enumerated() { h = relu(g.dense(h, width, name: "fc\(i)", initialization: .kaimingUniform)) }
    return g.dense(h, 1, name: "out")
}
func parameterCount(_ hidden: [Int]) -> Int {
    zip([1] + hidden, hidden + [1]).reduce(0) { $0 + $1.0 * $1.1 + $1.1 }
}
/// Trains one network on t^k (full batch, Adam, cosine-annealed step); returns the grid MSE and values.
func fit(hidden: [Int], seed: UInt64) throws -> (mse: Double, values: [Float]) {
    let store = ParameterStore(seed: seed)
    let g = GraphBuilder()
    let x = g.input("x", [trainCount, 1]), y = g.input("y", [trainCount, 1])
    let loss = square(network(g, x, hidden: hidden) - y).mean()
    g.output("loss", loss)
    Optimizer.adam().appendUpdates(to: g, parameters: g.parameters, gradients: g.gradients(of: loss, withRespectTo: g.parameters),
                                   learningRate: g.input("lr", .scalar))
    let train = try Executable(graph: try g.build(), store: store, threads: 1)
    try train.setInput("x", trainX.map { Float(2 * $0 - 1) })      // centred input: kinks start spread over it
    try train.setInput("y", trainY.map(Float.init))
    for step in 0..<steps {
        try train.setInput("lr", [Float(0.01 * 0.5 * (1 + cos(Double.pi * Double(step) / Double(steps))))])
        try train.run()
    }
    let e = GraphBuilder()
    e.output("y", network(e, e.input("x", [gridSize, 1]), hidden: hidden))
    let evaluate = try Executable(graph: try e.build(), store: store, threads: 1)
    try evaluate.setInput("x", grid.map { Float(2 * $0 - 1) })
    try evaluate.run()
    let values = try evaluate.output("y")
    let mse = zip(values, targetGrid).reduce(0.0) { $0 + pow(Double($1.0) - $1.1, 2) } / Double(gridSize)
    return (mse, values)
}

let pieces = 1 << targetDepth
let architectures: [(name: String, hidden: [Int])] = [
    ("shallow, \(pieces / 2) units", [pieces / 2]),
    ("shallow, \(pieces) units", [pieces]),
    ("shallow, \(4 * pieces) units", [4 * pieces]),
    ("deep, \(targetDepth + 1) × 4 units", Array(repeating: 4, count: targetDepth + 1)),
    ("deep, \(targetDepth + 1) × 8 units", Array(repeating: 8, count: targetDepth + 1)),
]
var fitTable = TextTable(["network", "parameters", "best MSE", "median MSE", "pieces (best)"])
// The plot takes every 8th grid point (2049 per curve: still 8 per piece of t^4).
var curves: [LinePlot.Series] = [LinePlot.Series("t^\(targetDepth) (\(pieces) pieces)", stride(from: 0, to: gridSize, by: 8).map { (grid[$0], targetGrid[$0]) }, dashed: true, markers: false)]
for arch in architectures {
    var results: [(mse: Double, values: [Float])] = []
    for seed in 0..<seeds { results.append(try fit(hidden: arch.hidden, seed: options.seed &* 100 &+ UInt64(seed))) }
    let sorted = results.sorted { $0.mse < $1.mse }
    let best = sorted[0]
    fitTable.add([arch.name, "\(parameterCount(arch.hidden))", String(format: "%.2e", best.mse),
                  String(format: "%.2e", sorted[sorted.count / 2].mse), "\(linearPieces(best.values))"])
    curves.append(LinePlot.Series(arch.name, stride(from: 0, to: gridSize, by: 8).map { (grid[$0], Double(best.values[$0])) }, markers: false))
}
print("2. fitting t^\(targetDepth) (\(pieces) pieces; an exact network: depth \(targetDepth), \(2 * targetDepth) units, \(parameterCount(Array(repeating: 2, count: targetDepth))) parameters)")
print("   Adam, \(steps) full-batch steps on \(trainCount) points, best and median of \(seeds) seeds, MSE on the grid:\n\(fitTable)")

let piecesPlot = LinePlot(title: "Linear pieces of the tent map composed k times", xLabel: "depth k", yLabel: "linear pieces", logY: true,
                          series: [LinePlot.Series("counted on Kiln's output", counted), LinePlot.Series("2^k", theory, dashed: true)])
try piecesPlot.write(path: try options.path("pieces.svg"))
let fitPlot = LinePlot(title: "Shallow and deep ReLU networks fitted to t^\(targetDepth)", xLabel: "x", yLabel: "f(x)", series: curves)
let fitPath = try options.path("fits.svg")
try fitPlot.write(path: fitPath)
print("wrote \(try options.path("pieces.svg")), \(fitPath); total \(fixed(Date().timeIntervalSince(started), 1)) s")
