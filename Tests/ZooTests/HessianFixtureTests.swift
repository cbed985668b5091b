import Foundation
import Testing
import KilnGraph
import KilnPasses
import KilnRuntime
@testable import KilnZoo

/// PyTorch's double-backward Hessian-vector product of a float64 tanh MLP, reproduced by
/// differentiating Kiln's gradient graph again and evaluating it on the reference interpreter.
@Suite("Second order against PyTorch")
struct HessianFixtureTests {
    @Test("loss, gradient and Hessian-vector product of the 4-8-3 tanh MLP match hvp-mlp.safetensors")
    func hessianVectorProduct() throws {
        let fixture = try Safetensors.read(path: fixtureDirectory + "/hvp-mlp.safetensors").tensors
        func tensor(_ name: String) -> HostTensor {
            let entry = fixture[name]!
            let values = entry.dtype == .int32 ? entry.int32s().map(Double.init) : entry.doubles()
            return HostTensor(TensorType(Shape(entry.shape), entry.dtype!), values)
        }
        let names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        let g = GraphBuilder()
        let x = g.input("x", [5, 4], dtype: .float64)
        let labels = g.input("labels", [5], dtype: .int32)
        let parameters = names.map { g.parameter($0, Shape(fixture["param.\($0)"]!.shape), dtype: .float64, initializer: .zeros) }
        let directions = names.map { g.input("v.\($0)", Shape(fixture["v.\($0)"]!.shape), dtype: .float64) }
        let hidden = tanh(x.matmul(parameters[0], transposeOther: true) + parameters[1])
        let logits = hidden.matmul(parameters[2], transposeOther: true) + parameters[3]
        let loss = softmaxCrossEntropy(logits, labels: labels).mean()
        let grads = g.gradients(of: loss, withRespectTo: parameters)
        let inner = zip(grads, directions).map { ($0 * $1).sum() }.reduce(g.constant(0, dtype: .float64), +)
        let hv = g.gradients(of: inner, withRespectTo: parameters)
        g.output("loss", loss)
        for (name, (gradient, product)) in zip(names, zip(grads, hv)) {
            g.output("grad.\(name)", gradient)
            g.output("hv.\(name)", product)
        }
        let graph = try g.build()
        var inputs = ["x": tensor("x"), "labels": tensor("labels")]
        var parameterValues: [String: HostTensor] = [:]
        for name in names {
            inputs["v.\(name)"] = tensor("v.\(name)")
            parameterValues[name] = tensor("param.\(name)")
        }
        let result = try Interpreter(graph: graph).outputs(inputs: inputs, parameters: parameterValues)
        func check(_ name: String) {
            let got = result[name]!.scalars, want = tensor(name).scalars
            let scale = want.map(abs).max()!
            let error = zip(got, want).map { abs($0 - $1) }.max()!
            #expect(error <= 1e-12 * scale, "\(name): max error \(error), scale \(scale)")
        }
        check("loss")
        for name in names { check("grad.\(name)"); check("hv.\(name)") }
    }
}
