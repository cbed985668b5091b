import KilnGraph

/// Dead-code elimination (`dce`): removes every node that no output and no update depends on.
///
/// Inputs, parameters and state are kept even when nothing reads them: they are the program's
/// bindings (a caller feeds inputs by name; parameters and state persist in the store), so
/// removing one would change the program's interface. Unused constants and random draws go.
///
/// Invariant: every output and update value is computed exactly as before; surviving nodes keep
/// their relative order (so the graph stays topologically sorted) and are renumbered densely.
/// One backward sweep marks the live nodes: linear time.
public struct DeadCode: Pass {
    public let name = "dce"
    public init() {}

    public func run(_ program: inout Program) throws -> Bool {
        program.requireUnscheduled(for: name)
        let graph = program.graph
        var live = [Bool](repeating: false, count: graph.nodes.count)
        for output in graph.outputs { live[output.value] = true }
        for update in graph.updates { live[update.target] = true; live[update.value] = true }
        for (id, node) in graph.nodes.enumerated() {
            // The caller's inputs and the persistent tensors stay, read or not.
            switch node.op.storage {
            case .input, .persistent: live[id] = true
            case .constant, .view, .computed: break
            }
        }
        // Inputs precede their readers, so one sweep from the back sees every reader first.
        for id in graph.nodes.indices.reversed() where live[id] {
            for input in graph.nodes[id].inputs { live[input] = true }
        }
        return GraphRewriter.rewrite(&program.graph) { rewriter, id in
            if live[id] { rewriter.keep(id) } else { rewriter.drop(id) }
        }
    }
}
