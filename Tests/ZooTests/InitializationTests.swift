import Foundation
import Testing
@testable import KilnZoo
import KilnGraph
import KilnRuntime

@Suite("Layer initialisations")
struct InitializationTests {
    func initializers(_ initialization: WeightInitialization) throws -> [String: Initializer] {
        let g = GraphBuilder()
        let h = g.conv2d(g.input("x", [1, 3, 8, 8]), outChannels: 4, kernel: 3, name: "conv", initialization: initialization)
        _ = g.dense(h.flatten(), 10, name: "fc", initialization: initialization)
        let graph = try g.build()
        var result: [String: Initializer] = [:]
        for id in graph.parameterIDs { if case let .parameter(name, initializer) = graph.nodes[id].op { result[name] = initializer } }
        return result
    }

    @Test("each option gives its formula's bounds or deviation from fan-in (27, 144) and fan-out (36, 10)")
    func formulas() throws {
        // conv: fan_in 3·3·3 = 27, fan_out 4·3·3 = 36; fc: fan_in 4·6·6 = 144, fan_out 10.
        #expect(try initializers(.pytorch)["conv.weight"] == .uniform(low: -1 / 27.0.squareRoot(), high: 1 / 27.0.squareRoot()))
        #expect(try initializers(.pytorch)["fc.bias"] == .uniform(low: -1 / 12.0, high: 1 / 12.0))
        #expect(try initializers(.kaimingUniform)["fc.weight"] == .uniform(low: -(6 / 144.0).squareRoot(), high: (6 / 144.0).squareRoot()))
        #expect(try initializers(.kaimingNormal)["conv.weight"] == .normal(mean: 0, std: (2 / 27.0).squareRoot()))
        #expect(try initializers(.xavierUniform)["fc.weight"] == .uniform(low: -(6 / 154.0).squareRoot(), high: (6 / 154.0).squareRoot()))
        #expect(try initializers(.xavierNormal)["conv.weight"] == .normal(mean: 0, std: (2 / 63.0).squareRoot()))
        #expect(try initializers(.kaimingUniform)["conv.bias"] == .zeros)
        let homework = try initializers(.normal(mean: 0.1, std: 0.1))
        #expect(homework.values.allSatisfy { $0 == .normal(mean: 0.1, std: 0.1) } && homework.count == 4)
    }

    @Test("normal(0.1, 0.1) draws have that mean and deviation in the store")
    func normalDraws() throws {
        let g = GraphBuilder()
        _ = g.dense(g.input("x", [1, 200]), 100, name: "fc", initialization: .normal(mean: 0.1, std: 0.1))
        let store = ParameterStore(seed: 4)
        try store.register(try g.build())
        let values = store["fc.weight"]!.values.map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)).squareRoot()
        #expect(abs(mean - 0.1) < 0.003 && abs(std - 0.1) < 0.003, "mean \(mean), std \(std)")
    }

    @Test("initialisation names parse and print back; unknown ones are errors",
          arguments: ["pytorch", "kaiming", "kaiming-normal", "xavier", "xavier-normal", "normal:0.1:0.1"])
    func parsing(_ text: String) throws {
        #expect(try WeightInitialization.parse(text).description == text)
        #expect(throws: KilnError.self) { try WeightInitialization.parse(text + "x") }
    }
}
