import KilnGraph
import KilnPasses

/// Telling the caller, while a step runs, that some outputs already hold their final values: the
/// hook data-parallel training uses to reduce gradients while backward is still running (issue 18).
///
/// The kernel order is fixed at compile time, so the kernel after which an output is final is
/// known before any step runs (`completionKernel(ofOutput:)`): the last closure of the scheduled
/// group that computes the output's buffer. Nothing later writes that buffer in the step, because
/// memory planning keeps every output's buffer to itself until the step ends.
extension Executable {
    /// The closures a step runs (an epilogue group runs as two).
    public var kernelCount: Int { kernels.count }

    /// The index of the kernel (0..<`kernelCount`) after which the named output holds this step's
    /// final value, or -1 when it is final before the first kernel (an input, a parameter, a
    /// constant, or a snapshot of an updated parameter, taken before the kernels).
    public func completionKernel(ofOutput name: String) throws -> Int {
        guard let id = outputIDs[name] else {
            throw KilnError.feed("the program has no output \"\(name)\"; it has \(outputIDs.keys.sorted())")
        }
        let root = graph.viewRoot(id)
        if graph.updates.contains(where: { $0.target == root }) { return -1 }
        var group = -1
        for (index, kernel) in program.schedule.enumerated() where kernel.members.contains(root) { group = index; break }
        if group < 0 { return -1 }
        let groupOfClosure = profiler.groupOfClosure
        guard let last = groupOfClosure.lastIndex(of: group) else {
            // Its group emitted no closure (nothing stored): final only once the step is over.
            return kernels.count - 1
        }
        return last
    }

    /// Runs one step like `run()`, calling `reached(k)` on this thread as soon as kernel
    /// `checkpoints[k]` has run (in order of k; `checkpoints` must be non-decreasing, each in
    /// -1..<`kernelCount`; -1 is reached before the first kernel). Allocates nothing and adds one
    /// comparison per kernel. Every checkpoint is reached before the step's updates are applied.
    /// With profiling or numerics checks the kernels run instrumented and every checkpoint is
    /// reached after the last kernel.
    ///
    /// `reached` must not run the executable, and what it starts must not write the program's
    /// buffers; it may read the outputs whose checkpoints have passed until the next step starts.
    public func run(checkpoints: UnsafeBufferPointer<Int>, reached: (Int) -> Void) throws {
        precondition(zip(checkpoints, checkpoints.dropFirst()).allSatisfy { $0 <= $1 }, "checkpoints must be in kernel order")
        precondition(checkpoints.allSatisfy { $0 >= -1 && $0 < kernels.count }, "a checkpoint names a kernel the program does not have")
        buffers.snapshotOutputs()
        var next = 0
        while next < checkpoints.count && checkpoints[next] < 0 { reached(next); next += 1 }
        if runOptions.profile || runOptions.checkNumerics {
            try runInstrumented()
        } else {
            for index in kernels.indices {
                kernels[index]()
                if state.fault != nil { try throwFault() }
                while next < checkpoints.count && checkpoints[next] <= index { reached(next); next += 1 }
            }
        }
        while next < checkpoints.count { reached(next); next += 1 }
        buffers.applyUpdates()
        state.step &+= 1
    }
}
