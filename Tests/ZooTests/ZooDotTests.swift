import Foundation
import Testing
import KilnGraph
import KilnPasses
import KilnRuntime
@testable import KilnZoo

/// Every zoo model's graph, at every compiler stage, is valid DOT that Graphviz renders.
@Suite("Zoo DOT renders with Graphviz")
struct ZooDotTests {
    static let stages = ["forward", "training", "fused", "planned"]

    @Test("dot -Tsvg accepts every zoo model at every stage",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/dot")), arguments: Zoo.classifierNames.filter { !$0.hasPrefix("resnet") })
    func renders(_ name: String) throws {
        let model = try Zoo.classifier(name)
        for stage in Self.stages {
            let graph = stage == "forward" ? try ClassifierTrainer.forwardGraph(model: model, batch: 8)
                : try ClassifierTrainer.trainingGraph(model: model, batch: 8, optimizer: .sgd(momentum: 0.9))
            var program = Program(graph: graph)
            if stage == "fused" || stage == "planned" {
                var manager = standardPipeline()
                if stage == "fused" { manager.disabled = ["plan-memory"] }
                try manager.run(&program)
            }
            let text = program.dot(title: "\(name) \(stage)")
            #expect(text == program.dot(title: "\(name) \(stage)"), "DOT must be deterministic")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/dot")
            process.arguments = ["-Tsvg"]
            let input = Pipe(), output = Pipe(), errors = Pipe()
            process.standardInput = input
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            input.fileHandleForWriting.write(Data(text.utf8))
            try input.fileHandleForWriting.close()
            let svg = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(name) \(stage): dot exited \(process.terminationStatus)")
            #expect(String(decoding: svg, as: UTF8.self).contains("<svg"), "\(name) \(stage): no SVG")
        }
    }
}
