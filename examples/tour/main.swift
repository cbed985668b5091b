// The README's tour as a program: `swift run -c release tour`.
import Foundation
import Kiln

let g = GraphBuilder()
let x = g.input("x", [64, 784])
let labels = g.input("labels", [64], dtype: .int32)
let w1 = g.parameter("w1", [784, 200], initializer: .uniform(low: -0.035, high: 0.035))
let b1 = g.parameter("b1", [200], initializer: .zeros)
let h = relu(x.matmul(w1) + b1)                       // reads like the maths
let logits = g.dense(h, 10, name: "fc2")               // layer helpers create parameters (PyTorch init)
let loss = softmaxCrossEntropy(logits, labels: labels).mean()

// Differentiate, and differentiate again: a Hessian-vector product.
let grads = g.gradients(of: loss, withRespectTo: g.parameters)
let v = g.input("v", [784, 200])
let hv = g.gradients(of: (grads[0] * v).sum(), withRespectTo: [w1])
g.output("loss", loss)
g.output("hv", hv[0])

let graph = try g.build()
print("\(graph.nodes.count) nodes; the first lines:")
print(graph.description.split(separator: "\n").prefix(6).joined(separator: "\n"))
try graph.dot().write(toFile: "tour.dot", atomically: true, encoding: .utf8)

// Compile, set the inputs once, and run it three times (run() never writes an input).
let store = ParameterStore(seed: 1)
let program = try Executable(graph: graph, store: store)
try program.setInput("x", (0..<(64 * 784)).map { _ in Float.random(in: 0..<1) })
try program.setInput("labels", (0..<64).map { _ in Int32.random(in: 0..<10) })
try program.setInput("v", [Float](repeating: 0.01, count: 784 * 200))
for _ in 0..<3 { try program.run() }
print("loss \(try program.output("loss")[0]), \(program.program.kernelCount) kernels, arena \(program.arenaBytes) bytes; wrote tour.dot")
