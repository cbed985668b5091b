#if canImport(Glibc)
import Glibc
#endif
import KilnRuntime
import Synchronization

/// How long a cache line takes to go from one core to the other and back, as two threads see it
/// when they pass a counter between them: what every kernel's fork-join, and every activation one
/// kernel's thread writes for the next kernel's, pays. On a virtual machine it shows how far apart
/// the host has placed the vCPUs, which nothing else in the guest does: on an AMD EPYC family 25
/// model 17 guest (KVM, 2 vCPUs) a C probe read 52–80 ns most of the time and 309–349 ns in the
/// host's slow spells, when the VAE's epoch took 1.71–1.96 s instead of 1.23–1.30 s (README,
/// twenty-fifth sitting). Every `kiln bench` record that measures the FMA peak carries it, so a
/// record from a spell can be told from the others. The threads are not pinned: two threads that
/// spin are kept on two cores where there are two. With other work on the cores the figure is
/// the scheduler's (microseconds to milliseconds), which a record should show too.
public enum CoreRoundTrip {
    /// The line the threads pass: odd values from the first thread, even from the second; -1 stops.
    final class Line: @unchecked Sendable {
        let value = Atomic<Int>(0)
        var nanoseconds = Double.nan
    }

    /// Median nanoseconds of a round trip over `bursts` bursts of `roundTrips` each, or nil with
    /// one online core. A burst stops early after 20 ms (a thread descheduled by other work costs
    /// a burst, not the call) and counts the round trips it made.
    public static func measure(roundTrips: Int = 20_000, bursts: Int = 5) -> Double? {
        guard sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2, roundTrips >= 1, bursts >= 1 else { return nil }
        var times: [Double] = []
        for _ in 0..<bursts {
            let line = Line()
            _ = PeakFMA.timedThreads(2) { index in
                if index == 1 {
                    var expected = 1
                    while true {
                        let value = line.value.load(ordering: .acquiring)
                        if value < 0 { return }
                        if value == expected {
                            line.value.store(value + 1, ordering: .releasing)
                            expected += 2
                        }
                    }
                }
                let start = Platform.monotonicSeconds()
                var done = 0
                while done < roundTrips {
                    line.value.store(2 * done + 1, ordering: .releasing)
                    while line.value.load(ordering: .acquiring) != 2 * done + 2 {}
                    done += 1
                    if done & 15 == 0 && Platform.monotonicSeconds() - start > 0.02 { break }
                }
                line.nanoseconds = (Platform.monotonicSeconds() - start) / Double(done) * 1e9
                line.value.store(-1, ordering: .releasing)
            }
            times.append(line.nanoseconds)
        }
        times.sort()
        return times[times.count / 2]
    }
}
