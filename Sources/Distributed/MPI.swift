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
    /// first call, at `MPI_THREAD_FUNNELED`: make this call and train (every collective) on one
    /// thread. Throws `missingMessage` when this build has no MPI. `timeout`: seconds one
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
/// Overlapped steps use the same two steps as `MPI_Ialltoall` and `MPI_Iallgather`, one bucket
/// at a time, progressed by `MPIBucketReduction` between kernels.
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

    init(timeout: Double) throws {
        var provided: Int32 = 0
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        // Every MPI call comes from the thread that initialised MPI (the trainer progresses
        // overlapped reductions from its own thread, between kernels; the watchdog makes none).
        if initialized == 0 {
            let code = MPI_Init_thread(nil, nil, kiln_mpi_thread_funneled(), &provided)
            guard code == kiln_mpi_success() else { throw KilnError.feed("MPI_Init_thread failed (\(code))") }
        } else {
            MPI_Query_thread(&provided)
        }
        threadLevel = provided
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

    /// Blocking `MPI_Alltoall`, the rank-ordered sum of this rank's chunk, blocking `MPI_Allgather`.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
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
                try call("MPI_Alltoall") {
                    MPI_Alltoall(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world())
                }
                Self.sumChunks(r, into: s, chunk: chunk, size: size)
                try call("MPI_Allgather") {
                    MPI_Allgather(s, Int32(chunk), kiln_mpi_float(), r, Int32(chunk), kiln_mpi_float(), kiln_mpi_comm_world())
                }
                buffer.baseAddress!.update(from: r, count: n)
            }
        }
    }

    /// This rank's chunk of the sum, in rank order: received[0..<chunk] + received[chunk..<2·chunk] + …
    static func sumChunks(_ received: UnsafePointer<Float>, into sum: UnsafeMutablePointer<Float>, chunk: Int, size: Int) {
        for i in 0..<chunk { sum[i] = received[i] }
        for j in 1..<size {
            let from = received + j * chunk
            for i in 0..<chunk { sum[i] += from[i] }
        }
    }

    func makeBucketReduction(buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) -> BucketReduction {
        MPIBucketReduction(communicator: self, buffer: buffer, buckets: buckets)
    }

    /// Runs `body` (a blocking wait) under the watchdog; for `MPIBucketReduction`.
    func waiting(_ what: String, _ body: () -> Int32) throws { try call(what, body) }

    /// Turns an MPI error code from a non-blocking call into a thrown error.
    func check(_ what: String, _ code: Int32) throws {
        if code != kiln_mpi_success() { try call(what) { code } }
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
/// One step's buckets through `MPI_Ialltoall`, the rank-ordered sum, `MPI_Iallgather`, strictly
/// one collective at a time and bucket after bucket (MPI matches non-blocking collectives by the
/// order in which each rank starts them, so every rank must start them in the same order: starting
/// bucket b + 1's while bucket b's all-gather is still to be started would depend on timing).
/// `progress()` is one `MPI_Test` (which also runs Open MPI's progress engine), and when the
/// collective has completed, the next step of the bucket; `finish()` waits with `MPI_Wait`.
final class MPIBucketReduction: BucketReduction {
    private enum Phase { case idle, exchanging, gathering }
    let communicator: MPICommunicator
    let buffer: UnsafeMutablePointer<Float>
    let buckets: [Range<Int>]
    private(set) var finishedBuckets = 0
    private var posted = 0
    private var phase = Phase.idle
    private var request: MPI_Request?
    private let send: UnsafeMutablePointer<Float>
    private let receive: UnsafeMutablePointer<Float>
    private let capacity: Int

    init(communicator: MPICommunicator, buffer: UnsafeMutablePointer<Float>, buckets: [Range<Int>]) {
        self.communicator = communicator; self.buffer = buffer; self.buckets = buckets
        let size = communicator.size
        capacity = Swift.max(1, buckets.map { ($0.count + size - 1) / size * size }.max() ?? 1)
        send = .allocate(capacity: capacity); send.initialize(repeating: 0, count: capacity)
        receive = .allocate(capacity: capacity); receive.initialize(repeating: 0, count: capacity)
    }

    deinit { send.deallocate(); receive.deallocate() }

    func begin() {
        precondition(phase == .idle && finishedBuckets == posted, "a step began while a bucket was still being reduced")
        finishedBuckets = 0; posted = 0
    }

    func post(upTo count: Int) throws {
        posted = Swift.max(posted, Swift.min(count, buckets.count))
        try progress()
    }

    private var chunk: Int { (buckets[finishedBuckets].count + communicator.size - 1) / communicator.size }

    /// Starts the next collective of the current bucket (or the next bucket's first).
    private func start() throws {
        let size = communicator.size
        let c = chunk
        var made: MPI_Request?
        switch phase {
        case .idle:
            let bucket = buckets[finishedBuckets]
            send.update(from: buffer + bucket.lowerBound, count: bucket.count)
            if c * size > bucket.count { (send + bucket.count).update(repeating: 0, count: c * size - bucket.count) }
            try communicator.check("MPI_Ialltoall", MPI_Ialltoall(send, Int32(c), kiln_mpi_float(), receive, Int32(c), kiln_mpi_float(),
                                                                  kiln_mpi_comm_world(), &made))
            phase = .exchanging
        case .exchanging:
            MPICommunicator.sumChunks(receive, into: send, chunk: c, size: size)
            try communicator.check("MPI_Iallgather", MPI_Iallgather(send, Int32(c), kiln_mpi_float(), receive, Int32(c), kiln_mpi_float(),
                                                                    kiln_mpi_comm_world(), &made))
            phase = .gathering
        case .gathering:
            let bucket = buckets[finishedBuckets]
            (buffer + bucket.lowerBound).update(from: receive, count: bucket.count)
            finishedBuckets += 1
            phase = .idle
            return
        }
        request = made
    }

    /// Whether the collective in flight has completed (`blocking`: waits for it).
    private func completed(blocking: Bool) throws -> Bool {
        if blocking {
            try communicator.waiting(phase == .exchanging ? "MPI_Ialltoall (wait)" : "MPI_Iallgather (wait)") {
                MPI_Wait(&request, kiln_mpi_status_ignore())
            }
            return true
        }
        var flag: Int32 = 0
        try communicator.check("MPI_Test", MPI_Test(&request, &flag, kiln_mpi_status_ignore()))
        return flag != 0
    }

    private func advance(blocking: Bool) throws {
        while true {
            if phase == .idle {
                guard finishedBuckets < posted else { return }
                try start()
            }
            guard try completed(blocking: blocking) else { return }
            try start()              // the all-gather, or the copy back
            if phase == .idle { continue }
            guard try completed(blocking: blocking) else { return }
            try start()              // the copy back
        }
    }

    func progress() throws { try advance(blocking: false) }

    func finish() throws {
        posted = buckets.count
        try advance(blocking: true)
    }
}
#endif
