/// A group of nodes drawn inside one box in a DOT rendering (a fusion group, for example).
public struct DotCluster: Hashable, Sendable {
    /// An identifier for the group; it becomes part of the `subgraph cluster_…` name.
    public var name: String
    /// The caption drawn on the box.
    public var label: String
    /// The nodes inside the box. A node may belong to at most one cluster.
    public var members: [ValueID]

    /// A cluster called `name`, captioned `label`, holding `members`.
    public init(name: String, label: String, members: [ValueID]) {
        self.name = name; self.label = label; self.members = members
    }
}

extension Graph {
    /// The graph as Graphviz DOT text: one node per value (`n12` for `%12`), one edge per
    /// operand, dashed `update` edges from each new value to the parameter or state it
    /// replaces, and outputs drawn with a double border.
    ///
    /// The text depends only on the arguments, so the same graph gives the same bytes.
    /// Render it with `dot -Tsvg`; Kiln itself never runs Graphviz.
    ///
    /// - Parameters:
    ///   - title: The caption of the drawing.
    ///   - clusters: Groups of nodes to draw inside boxes, in the order given.
    ///   - annotations: One extra line of text for a node's label (a memory offset, say).
    public func dot(title: String = "kiln", clusters: [DotCluster] = [], annotations: [ValueID: String] = [:]) -> String {
        // Arrays indexed by node id, so nothing below iterates a dictionary or a set:
        // dictionary order changes from run to run and would leak into the bytes.
        var clusterOf = [Int?](repeating: nil, count: nodes.count)
        for (index, cluster) in clusters.enumerated() {
            for id in cluster.members {
                precondition(nodes.indices.contains(id), "cluster \"\(cluster.name)\" names missing node %\(id)")
                precondition(clusterOf[id] == nil || clusterOf[id] == index,
                             "%\(id) is in clusters \"\(clusters[clusterOf[id]!].name)\" and \"\(cluster.name)\"")
                clusterOf[id] = index
            }
        }
        for id in annotations.keys { precondition(nodes.indices.contains(id), "annotation names missing node %\(id)") }
        var outputNames = [[String]](repeating: [], count: nodes.count)
        for output in outputs where nodes.indices.contains(output.value) { outputNames[output.value].append(output.name) }

        var lines: [String] = []
        lines.append("digraph \(dotQuoted(title)) {")
        // `newrank`: one ranking over the whole graph, clusters included. Without it Graphviz
        // (2.43, Debian's) stops with "trouble in init_rank" on some clustered graphs, such as
        // the fused training step of PyTorch's MNIST example network (`mnist-cnn`).
        lines.append("  graph [label=\(dotQuoted(title)), labelloc=t, fontname=\"Helvetica\", rankdir=TB, newrank=true];")
        lines.append("  node [fontname=\"Helvetica\", fontsize=10, style=filled];")
        lines.append("  edge [fontname=\"Helvetica\", fontsize=9];")

        func nodeLine(_ id: ValueID, indent: String) -> String {
            let node = nodes[id]
            var text = ["%\(id) \(node.op.name)"]
            if !node.op.attributeText.isEmpty { text.append(node.op.attributeText) }
            text.append("\(node.type)")
            for name in outputNames[id] { text.append("output \"\(name)\"") }
            if let note = annotations[id] { text.append(note) }
            let style = node.op.dotStyle
            var attributes = ["label=\(dotQuoted(text))", "shape=\(style.shape)",
                              "style=\(dotQuoted(style.style))", "fillcolor=\(dotQuoted(style.fillColor))"]
            if !outputNames[id].isEmpty { attributes.append("peripheries=2") }
            return "\(indent)n\(id) [\(attributes.joined(separator: ", "))];"
        }

        // A cluster is written where its first member would be, so the node order in the
        // file (which nudges Graphviz's layout) stays close to graph order.
        var written = [Bool](repeating: false, count: clusters.count)
        for id in nodes.indices {
            guard let index = clusterOf[id] else { lines.append(nodeLine(id, indent: "  ")); continue }
            if written[index] { continue }
            written[index] = true
            let cluster = clusters[index]
            lines.append("  subgraph cluster_\(index)_\(dotIdentifier(cluster.name)) {")
            lines.append("    label=\(dotQuoted(cluster.label)); style=\"rounded,filled\"; fillcolor=\"#f7f7f7\"; color=\"#969696\";")
            for member in Set(cluster.members).sorted() { lines.append(nodeLine(member, indent: "    ")) }
            lines.append("  }")
        }

        for (id, node) in nodes.enumerated() {
            for (position, input) in node.inputs.enumerated() {
                // Operand numbers matter for sub, div, matmul and the like; a single operand needs none.
                lines.append(node.inputs.count > 1 ? "  n\(input) -> n\(id) [label=\"\(position)\"];" : "  n\(input) -> n\(id);")
            }
        }
        for update in updates {
            // constraint=false: the edge points back up the graph and must not stretch the ranks.
            lines.append("  n\(update.value) -> n\(update.target) [label=\"update\", style=dashed, constraint=false];")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// How a node of one op kind is drawn.
struct DotStyle: Hashable {
    var shape: String
    var style: String
    var fillColor: String
}

extension Op {
    /// The drawing style of the op's kind. One switch, no default: a new op must pick a kind.
    var dotStyle: DotStyle {
        switch self {
        case .input: return DotStyle(shape: "invhouse", style: "filled", fillColor: "#c6dbef")
        case .parameter: return DotStyle(shape: "box", style: "filled,bold", fillColor: "#fdae6b")
        case .state: return DotStyle(shape: "box", style: "filled,rounded,dashed", fillColor: "#e5d8bd")
        case .constant: return DotStyle(shape: "box", style: "filled,dotted", fillColor: "#f0f0f0")
        case .randomUniform, .randomNormal: return DotStyle(shape: "hexagon", style: "filled", fillColor: "#dadaeb")
        case .unary, .binary, .power, .select, .adamUpdate, .cast: return DotStyle(shape: "ellipse", style: "filled", fillColor: "#ffffff")
        case .reduce: return DotStyle(shape: "invtrapezium", style: "filled", fillColor: "#fee391")
        case .matmul, .conv2d, .conv2dBackwardData, .conv2dBackwardFilter:
            return DotStyle(shape: "box", style: "filled,rounded", fillColor: "#fc9272")
        case .reshape, .stopGradient, .transpose, .broadcast, .slice, .pad, .concat, .oneHot:
            return DotStyle(shape: "parallelogram", style: "filled", fillColor: "#d9d9d9")
        case .maxPool2d, .maxPool2dBackward, .maxPool2dGather, .avgPool2d, .avgPool2dBackward:
            return DotStyle(shape: "trapezium", style: "filled", fillColor: "#a1d99b")
        case .softmax, .logSoftmax, .softmaxCrossEntropy:
            return DotStyle(shape: "octagon", style: "filled", fillColor: "#fa9fb5")
        }
    }
}

/// A DOT quoted string holding `lines`, one per text line. User text cannot break out of
/// the quotes: backslashes and quotes are escaped, raw line breaks become DOT's `\n`.
func dotQuoted(_ lines: [String]) -> String {
    let escaped = lines.map { line -> String in
        var out = ""
        for character in line {
            switch character {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n", "\r", "\r\n": out += "\\n"
            default: out.append(character)
            }
        }
        return out
    }
    return "\"" + escaped.joined(separator: "\\n") + "\""
}

func dotQuoted(_ text: String) -> String { dotQuoted([text]) }

/// `name` reduced to the characters a bare DOT identifier allows.
func dotIdentifier(_ name: String) -> String {
    String(name.unicodeScalars.map { scalar -> Character in
        switch scalar {
        case "a"..."z", "A"..."Z", "0"..."9", "_": return Character(scalar)
        default: return "_"
        }
    })
}
