import KilnGraph

/// Runs a pipeline of passes: verifies the program at the start and after every pass that
/// changed it, checks in debug builds that a pass reporting "no change" really changed nothing,
/// and calls the instruments around each pass. Passes can be disabled by name, and the pipeline
/// can stop after N passes (for bisecting a miscompile).
public struct PassManager {
    public var passes: [Pass]
    public var instruments: [PassInstrument] = []
    /// Names of passes to skip.
    public var disabled: Set<String> = []
    /// Run at most this many (enabled) passes.
    public var stopAfter: Int?
    /// Verify between passes (on by default in debug builds and tests; cheap enough to keep on).
    public var verifies = true

    public init(passes: [Pass]) { self.passes = passes }

    /// Runs the pipeline over `program`.
    public func run(_ program: inout Program) throws {
        if verifies { try verify(program, after: "input") }
        var ran = 0
        for pass in passes where !disabled.contains(pass.name) {
            if let stopAfter, ran >= stopAfter { break }
            ran += 1
            for instrument in instruments { instrument.beforePass(pass, program: program) }
            #if DEBUG
            let before = program
            #endif
            let changed = try pass.run(&program)
            #if DEBUG
            precondition(changed || program == before, "pass \(pass.name) reported no change but changed the program")
            #endif
            if changed && verifies { try verify(program, after: pass.name) }
            for instrument in instruments { instrument.afterPass(pass, program: program, changed: changed) }
        }
    }

    /// Checks the graph's invariants, that kernels cover every node needing one exactly once in
    /// an order that respects dependencies, and that no two simultaneously live buffers overlap.
    public func verify(_ program: Program, after pass: String) throws {
        do {
            try program.graph.verify()
            if let kernels = program.kernels { try verifyKernels(kernels, program.graph) }
            if program.memory != nil { try verifyMemory(program) }
        } catch let KilnError.invalidGraph(message) {
            throw KilnError.invalidGraph("after pass \(pass): \(message)")
        }
    }

    private func verifyKernels(_ kernels: [KernelGroup], _ graph: Graph) throws {
        var owner = [Int](repeating: -1, count: graph.nodes.count)
        for (k, group) in kernels.enumerated() {
            guard group.members.contains(group.root) else { throw KilnError.invalidGraph("kernel \(k) does not contain its root %\(group.root)") }
            for member in group.members {
                guard owner[member] == -1 else { throw KilnError.invalidGraph("%\(member) is in kernels \(owner[member]) and \(k)") }
                guard graph.nodes[member].op.needsKernel else { throw KilnError.invalidGraph("kernel \(k) contains %\(member) (\(graph.nodes[member].op.name)), which needs none") }
                owner[member] = k
            }
        }
        for (id, node) in graph.nodes.enumerated() where node.op.needsKernel && owner[id] == -1 {
            throw KilnError.invalidGraph("%\(id) \(node.op.name) is in no kernel")
        }
        // Each kernel computes a member only after the members it reads (`evaluationOrder`, which
        // the runtime follows and the planner's in-place writes rely on).
        for (k, group) in kernels.enumerated() {
            var computed: Set<ValueID> = []
            let members = Set(group.members)
            for member in group.evaluationOrder {
                for input in graph.nodes[member].inputs where members.contains(input) && !computed.contains(input) {
                    throw KilnError.invalidGraph("kernel \(k) computes %\(member) before its input %\(input) (evaluation order \(group.evaluationOrder))")
                }
                computed.insert(member)
            }
        }
        // Every value read by a kernel is computed by an earlier kernel, a view of one, or a leaf.
        func producer(_ id: ValueID) -> Int { owner[graph.viewRoot(id)] }
        for (k, group) in kernels.enumerated() {
            for member in group.members {
                for input in graph.nodes[member].inputs {
                    let p = producer(input)
                    guard p <= k else { throw KilnError.invalidGraph("kernel \(k) reads %\(input) from later kernel \(p)") }
                    if p == k && !group.members.contains(input) && graph.nodes[input].op.isView {
                        throw KilnError.invalidGraph("kernel \(k) reads a view of its own member through %\(input)")
                    }
                }
            }
        }
    }

    private func verifyMemory(_ program: Program) throws {
        guard let memory = program.memory else { return }
        let intervals = BufferLiveness.intervals(of: program)
        try BufferLiveness.checkInputsUntouched(program)
        try BufferLiveness.checkNoOverlap(intervals, memory: memory)
    }
}
