// Compiled out under scripts/sanitize.sh: a sanitizer's malloc replaces the counting one.
#if !KILN_SANITIZING
import KilnAllocationCounter
import KilnGraph
import KilnPasses
import Testing
@testable import KilnRuntime

/// Whether zoo programs allocate in a steady-state step is checked in release by the
/// `allocation-check` executable (Tests/AllocationCheck, run by .ci/run): unoptimised builds
/// allocate inside the standard library.
@Suite("Steady-state allocation", .serialized)
struct SteadyStateAllocationTests {
    @Test("the allocation counter sees Swift allocations")
    func counterCounts() {
        let before = kiln_thread_allocation_count()
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
        let array = [Int](repeating: 1, count: Int(before % 7) + 100)
        let after = kiln_thread_allocation_count()
        pointer.deallocate()
        #expect(after - before >= 2, "allocation counter missed allocations (saw \(after - before))")
        #expect(array.count >= 100)
    }
}

#endif
