import Foundation
import Testing
@testable import KilnGraph

/// A small classifier touching every drawing kind: inputs, parameters, state, constants,
/// random draws, elementwise, conv, pooling, data movement, matmul, reduction, loss, updates.
private func convNet() throws -> Graph {
    let g = GraphBuilder()
    let x = g.input("x", [2, 1, 8, 8])
    let labels = g.input("labels", [2], dtype: .int32)
    let kernel = g.parameter("conv.w", [4, 1, 3, 3], initializer: .normal(mean: 0, std: 0.1))
    let bias = g.parameter("conv.b", [1, 4, 1, 1], initializer: .zeros)
    var h = relu(conv2d(x, kernel, padding: 1) + bias)
    h = maxPool(h, 2)
    h = dropout(h, rate: 0.5)
    let w = g.parameter("fc.w", [64, 10], initializer: .uniform(low: -0.125, high: 0.125))
    let b = g.parameter("fc.b", [10], initializer: .zeros)
    let logits = h.flatten().matmul(w) + b
    let loss = softmaxCrossEntropy(logits, labels: labels).mean()
    g.output("loss", loss)
    g.output("logits", logits)
    let velocity = g.state("fc.w.velocity", [64, 10])
    let newVelocity = velocity * 0.9 + w
    g.update(velocity, to: newVelocity)
    g.update(w, to: w - newVelocity * 0.01)
    return try g.build()
}

/// `x · w` through a ReLU, with one output and one update: small enough for golden text.
private func tinyGraph() throws -> Graph {
    let g = GraphBuilder()
    let x = g.input("x", [2, 3])
    let w = g.parameter("w", [3, 4], initializer: .zeros)
    let y = relu(x.matmul(w))
    g.output("y", y)
    g.update(w, to: w * 2)
    return try g.build()
}

/// The lines of `text` that declare node `nID` (inside or outside clusters).
private func declarations(of id: ValueID, in text: String) -> [String] {
    text.split(separator: "\n").map(String.init).filter {
        $0.trimmingCharacters(in: .whitespaces).hasPrefix("n\(id) [")
    }
}

@Suite("DOT export")
struct DotTests {
    @Test("a tiny graph renders to the expected text, byte for byte")
    func golden() throws {
        let expected = #"""
        digraph "kiln" {
          graph [label="kiln", labelloc=t, fontname="Helvetica", rankdir=TB, newrank=true];
          node [fontname="Helvetica", fontsize=10, style=filled];
          edge [fontname="Helvetica", fontsize=9];
          n0 [label="%0 input\n\"x\"\nf32[2, 3]", shape=invhouse, style="filled", fillcolor="#c6dbef"];
          n1 [label="%1 parameter\n\"w\" zeros\nf32[3, 4]", shape=box, style="filled,bold", fillcolor="#fdae6b"];
          n2 [label="%2 matmul\nf32[2, 4]", shape=box, style="filled,rounded", fillcolor="#fc9272"];
          n3 [label="%3 relu\nf32[2, 4]\noutput \"y\"", shape=ellipse, style="filled", fillcolor="#ffffff", peripheries=2];
          n4 [label="%4 constant\n2\nf32[]", shape=box, style="filled,dotted", fillcolor="#f0f0f0"];
          n5 [label="%5 mul\nf32[3, 4]", shape=ellipse, style="filled", fillcolor="#ffffff"];
          n0 -> n2 [label="0"];
          n1 -> n2 [label="1"];
          n2 -> n3;
          n1 -> n5 [label="0"];
          n4 -> n5 [label="1"];
          n5 -> n1 [label="update", style=dashed, constraint=false];
        }

        """#
        #expect(try tinyGraph().dot() == expected)
    }

    @Test("the same graph gives the same bytes, whatever order the annotations were inserted in")
    func deterministic() throws {
        let first = try convNet(), second = try convNet()
        let ids = Array(first.nodes.indices)
        var forward: [ValueID: String] = [:]
        for id in ids { forward[id] = "offset \(id * 256)" }
        var backward: [ValueID: String] = [:]
        for id in ids.reversed() { backward[id] = "offset \(id * 256)" }
        let clusters = [DotCluster(name: "fused conv", label: "conv+bias+relu", members: [6, 5, 7]),
                        DotCluster(name: "head", label: "head", members: [15, 14, 16])]
        let a = first.dot(title: "net", clusters: clusters, annotations: forward)
        let b = second.dot(title: "net", clusters: clusters, annotations: backward)
        #expect(a == b)
        #expect(Array(a.utf8) == Array(first.dot(title: "net", clusters: clusters, annotations: forward).utf8))
        #expect(first.dot() == second.dot())
    }

    @Test("every node is declared once, every operand and update is one edge")
    func structure() throws {
        let graph = try convNet()
        let text = graph.dot()
        for id in graph.nodes.indices {
            #expect(declarations(of: id, in: text).count == 1, "n\(id)")
        }
        let edges = text.split(separator: "\n").filter { $0.contains(" -> ") }
        #expect(edges.count == graph.nodes.map(\.inputs.count).reduce(0, +) + graph.updates.count)
        #expect(text.hasPrefix("digraph \"kiln\" {\n"))
        #expect(text.hasSuffix("}\n"))
    }

    @Test("each kind of op gets the shape and colour of its kind")
    func kinds() throws {
        let graph = try convNet()
        let text = graph.dot()
        func line(_ id: ValueID) -> String { declarations(of: id, in: text).first ?? "" }
        func ids(where predicate: (Op) -> Bool) -> [ValueID] { graph.nodes.indices.filter { predicate(graph.nodes[$0].op) } }
        for id in graph.inputIDs { #expect(line(id).contains("shape=invhouse"), "\(line(id))") }
        for id in graph.parameterIDs { #expect(line(id).contains("shape=box, style=\"filled,bold\", fillcolor=\"#fdae6b\""), "\(line(id))") }
        for id in graph.stateIDs { #expect(line(id).contains("style=\"filled,rounded,dashed\""), "\(line(id))") }
        let conv = ids { if case .conv2d = $0 { return true } else { return false } }
        let matmul = ids { if case .matmul = $0 { return true } else { return false } }
        let pool = ids { if case .maxPool2d = $0 { return true } else { return false } }
        let random = ids { if case .randomUniform = $0 { return true } else { return false } }
        let loss = ids { $0 == .softmaxCrossEntropy }
        let reduce = ids { if case .reduce = $0 { return true } else { return false } }
        let reshape = ids { if case .reshape = $0 { return true } else { return false } }
        #expect(!conv.isEmpty && !matmul.isEmpty && !pool.isEmpty && !random.isEmpty && !loss.isEmpty && !reduce.isEmpty && !reshape.isEmpty)
        // Matmul and conv share a kind; every other pair of kinds must differ.
        #expect(line(conv[0]).contains("fillcolor=\"#fc9272\"") && line(matmul[0]).contains("fillcolor=\"#fc9272\""))
        let kinds = [graph.inputIDs[0], graph.parameterIDs[0], graph.stateIDs[0], conv[0], pool[0], random[0],
                     loss[0], reduce[0], reshape[0]].map { graph.nodes[$0].op.dotStyle }
        #expect(Set(kinds).count == kinds.count)
        #expect(Set(kinds.map(\.fillColor)).count == kinds.count, "each kind has its own colour")
    }

    @Test("outputs have a double border and their names; updates are dashed edges labelled update")
    func outputsAndUpdates() throws {
        let graph = try convNet()
        let text = graph.dot()
        for output in graph.outputs {
            let line = declarations(of: output.value, in: text).first ?? ""
            #expect(line.contains("peripheries=2"), "\(line)")
            #expect(line.contains(#"output \"\#(output.name)\""#), "\(line)")
        }
        let plain = graph.nodes.indices.filter { id in !graph.outputs.contains { $0.value == id } }
        for id in plain { #expect(!(declarations(of: id, in: text).first ?? "").contains("peripheries")) }
        for update in graph.updates {
            #expect(text.contains("  n\(update.value) -> n\(update.target) [label=\"update\", style=dashed, constraint=false];\n"))
        }
    }

    @Test("clusters hold their members, sorted and once; annotations add a label line")
    func clustersAndAnnotations() throws {
        let graph = try tinyGraph()
        let text = graph.dot(clusters: [DotCluster(name: "fused matmul+relu", label: "kernel 0", members: [3, 2, 3])],
                             annotations: [2: "arena +0 (32 B)", 0: "input \"x\" @ 64"])
        #expect(text.contains(#"""
          subgraph cluster_0_fused_matmul_relu {
            label="kernel 0"; style="rounded,filled"; fillcolor="#f7f7f7"; color="#969696";
            n2 [label="%2 matmul\nf32[2, 4]\narena +0 (32 B)", shape=box, style="filled,rounded", fillcolor="#fc9272"];
            n3 [label="%3 relu\nf32[2, 4]\noutput \"y\"", shape=ellipse, style="filled", fillcolor="#ffffff", peripheries=2];
          }
        """#))
        #expect(declarations(of: 2, in: text).count == 1)
        #expect(declarations(of: 3, in: text).count == 1)
        #expect(text.contains(#"n0 [label="%0 input\n\"x\"\nf32[2, 3]\ninput \"x\" @ 64""#))
    }

    @Test("quotes, backslashes and line breaks in names cannot break out of a label")
    func escaping() throws {
        let g = GraphBuilder()
        let x = g.input(#"say "hi"\n"#, [2])
        g.output("a\nb", exp(x))
        let text = try g.build().dot(title: #"t"\"#)
        #expect(text.hasPrefix(#"digraph "t\"\\" {"#))
        #expect(text.contains(#"n0 [label="%0 input\n\"say \"hi\"\\n\"\nf32[2]""#))
        #expect(text.contains(#"output \"a\nb\"""#))
        // Every line is balanced: an even number of unescaped quotes.
        for line in text.split(separator: "\n") {
            var quotes = 0, escaped = false
            for character in line {
                if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" { quotes += 1 }
            }
            #expect(quotes % 2 == 0, "\(line)")
        }
    }

    @Test("Graphviz renders the DOT of a conv, pool and dense net to SVG",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/dot")))
    func rendersWithGraphviz() throws {
        let graph = try convNet()
        let clusters = [DotCluster(name: "conv", label: "conv+bias+relu", members: [4, 5, 6])]
        let annotations = Dictionary(uniqueKeysWithValues: graph.nodes.indices.map { ($0, "offset \($0 * 64)") })
        for text in [graph.dot(), graph.dot(title: #"a "quoted" \ title"#, clusters: clusters, annotations: annotations)] {
            let (status, svg, errors) = try render(text)
            #expect(status == 0, "dot failed: \(errors)")
            #expect(startsWithSVGElement(svg), "\(svg.prefix(300))")
            #expect(errors.isEmpty, "dot warned: \(errors)")
        }
    }

    /// Whether the first element of `document` is `<svg`, after the XML declaration, doctype and comments.
    private func startsWithSVGElement(_ document: String) -> Bool {
        guard let start = document.range(of: "<svg") else { return false }
        let prolog = document[..<start.lowerBound]
        return zip(prolog, prolog.dropFirst()).allSatisfy { $0 != "<" || $1 == "?" || $1 == "!" }
    }

    /// Pipes `text` through `/usr/bin/dot -Tsvg`; returns exit status, stdout and stderr.
    private func render(_ text: String) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dot")
        process.arguments = ["-Tsvg"]
        let input = Pipe(), output = Pipe(), errors = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // dot reads all of its input before it writes, so writing first cannot deadlock.
        try input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
        try input.fileHandleForWriting.close()
        let svg = try output.fileHandleForReading.readToEnd() ?? Data()
        let messages = try errors.fileHandleForReading.readToEnd() ?? Data()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: svg, as: UTF8.self), String(decoding: messages, as: UTF8.self))
    }
}
