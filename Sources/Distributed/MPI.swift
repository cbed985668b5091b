import Foundation
import KilnGraph
#if canImport(CMPI)
import CMPI
#endif

/// Starting and stopping the MPI world of a process launched by `mpirun`.
public enum MPIWorld {
    /// Whether this build of Kiln has the MPI bridge (Open MPI's headers were found at build time).
    public static var isAvailable: Bool {
        #if canImport(CMPI)
        return true
        #else
        return false
        #endif
    }

    /// The one line a distributed run prints when this build has no MPI.
    public static let missingMessage = "this kiln was built without MPI, so it cannot train over several processes: "
        + "install Open MPI (`apt-get install openmpi-bin libopenmpi-dev`), then rebuild (`swift build -c release`)"

    /// Whether `mpirun`/`mpiexec` (Open MPI, MPICH, or a PMI/PMIx launcher such as Slurm's) started
    /// the process with this environment (the library reads none itself: pass `ProcessInfo.processInfo.environment`).
    public static func launchedByMPI(environment: [String: String]) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"].contains { environment[$0] != nil }
    }

    #if canImport(CMPI)
    nonisolated(unsafe) private static var world: MPICommunicator?
    #endif

    /// The communicator over every process of the job (`MPI_COMM_WORLD`), initialising MPI on the
    /// first call. Throws `missingMessage` when this build has no MPI. `timeout`: seconds one
    /// collective may wait before the process gives up on its peers (exit 1, one line on stderr).
    public static func communicator(timeout: Double = 600) throws -> Communicator {
        #if canImport(CMPI)
        if let world { return world }
        let made = try MPICommunicator(timeout: timeout)
        world = made
        return made
        #else
        throw KilnError.argument(missingMessage)
        #endif
    }

    /// Ends MPI after a successful run (`MPI_Finalize`, collective). After an error a rank exits
    /// instead, and `mpirun` stops the others.
    public static func finalize() {
        #if canImport(CMPI)
        if world != nil {
            world?.stopWatchdog()
            MPI_Finalize()
            world = nil
        }
        #endif
    }
}

#if canImport(CMPI)
/// `MPI_COMM_WORLD`. All-reduce is a reduce-scatter by `MPI_Alltoall` (rank r receives every rank's
/// r-th chunk and adds them in rank order), then `MPI_Allgather` of the summed chunks: each rank
/// sends and receives 2(N−1)/N of the buffer, as in a ring, and the sum's order is fixed by rank,
/// not by whichever algorithm Open MPI picks, so every rank and every run gets the same bytes.
///
/// A watchdog thread ends the process (exit code 1, one line on stderr) when one collective waits
/// longer than `timeout` seconds (the command-line tool's `KILN_MPI_TIMEOUT`, default 600): a peer
/// that hangs rather than dies (a peer that dies is Open MPI's to notice; `mpirun` then stops every rank).
final class MPICommunicator: Communicator {
    let rank: Int
    let size: Int
    private var send: [Float] = []
    private var receive: [Float] = []
    private let lock = NSLock()
    private var waitingSince: Date?
    private var waitingFor = ""
    private var watchdogRunning = true
    private let timeout: Double
    /// The thread level MPI provides (MPI_THREAD_*).
    let threadLevel: Int32
    let allowsCallsFromAnotherThread: Bool

    init(timeout: Double) throws {
        var provided: Int32 = 0
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        // DistributedTrainer's communication thread reduces gradients during backward while the
        // main thread computes (and makes the other calls, never at the same time as it), which
        // by the standard needs SERIALIZED. MULTIPLE is asked for because Open MPI 4.1.4 at
        // SERIALIZED corrupted the heap in this pattern over shared memory (the main thread
        // allocating and freeing while the other thread was inside MPI; not over TCP, nor with
        // `--mca memory ^patcher`): below MULTIPLE Open MPI leaves its internal locks off.
        if initialized == 0 {
            let code = MPI_Init_thread(nil, nil, kiln_mpi_thread_multiple(), &provided)
            guard code == kiln_mpi_success() else { throw KilnError.feed("MPI_Init_thread failed (\(code))") }
        } else {
            MPI_Query_thread(&provided)
        }
        // Below MULTIPLE the trainer reduces on the main thread after backward, without overlap.
        threadLevel = provided
        allowsCallsFromAnotherThread = provided >= kiln_mpi_thread_multiple()
        MPI_Comm_set_errhandler(kiln_mpi_comm_world(), kiln_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(kiln_mpi_comm_world(), &r)
        MPI_Comm_size(kiln_mpi_comm_world(), &s)
        rank = Int(r)
        size = Int(s)
        self.timeout = Swift.max(timeout, 0.1)
        let thread = Thread { [weak self] in self?.watch() }
        thread.stackSize = 1 << 16
        thread.start()
    }

    func stopWatchdog() { lock.lock(); watchdogRunning = false; lock.unlock() }

    private func watch() {
        while true {
            Thread.sleep(forTimeInterval: Swift.min(1, timeout / 4))
            lock.lock()
            let running = watchdogRunning, since = waitingSince, what = waitingFor
            lock.unlock()
            if !running { return }
            if let since, Date().timeIntervalSince(since) > timeout {
                FileHandle.standardError.write(Data(String(format: "kiln: rank %d waited %.0f s in %@ (the timeout, KILN_MPI_TIMEOUT): a peer is not responding; stopping\n",
                                                           rank, timeout, what).utf8))
                exit(1)
            }
        }
    }

    /// Runs one MPI call under the watchdog, turning an error code into a thrown error.
    private func call(_ what: String, _ body: () -> Int32) throws {
        lock.lock(); waitingSince = Date(); waitingFor = what; lock.unlock()
        let code = body()
        lock.lock(); waitingSince = nil; lock.unlock()
        guard code == kiln_mpi_success() else {
            var text = [CChar](repeating: 0, count: Int(kiln_mpi_max_error_string()) + 1)
            var length: Int32 = 0
            MPI_Error_string(code, &text, &length)
            throw KilnError.feed("rank \(rank): \(what) failed: \(String(cString: text))")
        }
    }

    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try reduce(buffer, polling: false) }

    func backgroundAllReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws { try reduce(buffer, polling: true) }

    /// Blocking calls, or (`polling`) their non-blocking forms (`MPI_Ialltoall`, `MPI_Iallgather`)
    /// completed by `MPI_Test` with sleeps of up to 100 µs between tests: Open MPI's blocking wait
    /// spins (yielding when oversubscribed), which would take a core from the computation the
    /// reduction overlaps. The same data moves and the same additions are made either way.
    private func reduce(_ buffer: UnsafeMutableBufferPointer<Float>, polling: Bool) throws {
        guard size > 1, buffer.count > 0 else { return }
        let chunk = (buffer.count + size - 1) / size
        let padded = chunk * size
        if send.count < padded { send = [Float](repeating: 0, count: padded); receive = send }
        let n = buffer.count
        try send.withUnsafeMutableBufferPointer { send in
            try receive.withUnsafeMutableBufferPointer { receive in
                let s = send.baseAddress!, r = receive.baseAddress!
                s.update(from: buffer.baseAddress!, count: n)
                if padded > n { (s + n).update(repeating: 0, count: padded - n) }
                // Rank j's chunk `rank` lands at receive[j·chunk ..< (j+1)·chunk].
                if polling {
                    try call("MPI_Ialltoall") {
                        var request: MPI_Request?
                        let code = MPI_Ialltoall(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world(), &request)
                        return code == kiln_mpi_success() ? Self.complete(&request) : code
                    }
                } else {
                    try call("MPI_Alltoall") {
                        MPI_Alltoall(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world())
                    }
                }
                // This rank's chunk of the sum, in rank order, into send[0..<chunk].
                for i in 0..<chunk { s[i] = r[i] }
                for j in 1..<size {
                    let from = r + j * chunk
                    for i in 0..<chunk { s[i] += from[i] }
                }
                if polling {
                    try call("MPI_Iallgather") {
                        var request: MPI_Request?
                        let code = MPI_Iallgather(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world(), &request)
                        return code == kiln_mpi_success() ? Self.complete(&request) : code
                    }
                } else {
                    try call("MPI_Allgather") {
                        MPI_Allgather(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world())
                    }
                }
                buffer.baseAddress!.update(from: r, count: n)
            }
        }
    }

    /// Tests `request` until it completes (each test also moves Open MPI's progress engine on):
    /// 64 tests in a row, then sleeps between tests from 2 µs, doubling to at most 100 µs.
    private static func complete(_ request: inout MPI_Request?) -> Int32 {
        var flag: Int32 = 0
        var pause = 2_000
        var tests = 0
        while true {
            let code = MPI_Test(&request, &flag, kiln_mpi_status_ignore())
            if code != kiln_mpi_success() || flag != 0 { return code }
            tests += 1
            if tests < 64 { continue }
            var wait = timespec(tv_sec: 0, tv_nsec: pause)
            nanosleep(&wait, nil)
            pause = Swift.min(pause * 2, 100_000)
        }
    }

    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        guard size > 1 else { return [bytes] }
        var result = [UInt8](repeating: 0, count: bytes.count * size)
        try bytes.withUnsafeBytes { mine in
            try result.withUnsafeMutableBytes { all in
                try call("MPI_Allgather") {
                    MPI_Allgather(mine.baseAddress, Int32(bytes.count), kiln_mpi_byte(), all.baseAddress, Int32(bytes.count),
                                  kiln_mpi_byte(), kiln_mpi_comm_world())
                }
            }
        }
        return (0..<size).map { Array(result[$0 * bytes.count ..< ($0 + 1) * bytes.count]) }
    }

    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard size > 1 else { return }
        var offset = 0
        // MPI counts are 32-bit: send in pieces of at most 1 GiB.
        while offset < buffer.count {
            let piece = Swift.min(buffer.count - offset, 1 << 30)
            try call("MPI_Bcast") {
                MPI_Bcast(buffer.baseAddress! + offset, Int32(piece), kiln_mpi_byte(), Int32(root), kiln_mpi_comm_world())
            }
            offset += piece
        }
    }

    func barrier() throws {
        guard size > 1 else { return }
        try call("MPI_Barrier") { MPI_Barrier(kiln_mpi_comm_world()) }
    }
}
#endif
