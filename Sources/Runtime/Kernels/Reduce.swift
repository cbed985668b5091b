/// Reduction loops shared by the plain reduce kernel and the fused evaluator's reduction sink.
enum ReduceKernel {
    /// Doubles in one wide accumulator (`addRow`).
    static let lanes = 16

    /// The sum of `count` floats: 16 float lanes (each adds every 16th element in order), then
    /// the lanes and the tail added in float64. Fixed order, so the result never varies.
    static func rowSum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
        if count < 16 {
            // The same sum as below, whose lanes would all be zero: rows of 2 (an upsampling's
            // gradient) without a 16-lane horizontal add each.
            var total = 0.0
            for i in 0..<count { total += Double(x[i]) }
            return total
        }
        var lanes = SIMD16<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 16 <= count {
            lanes += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        var total = 0.0
        for lane in 0..<16 { total += Double(lanes[lane]) }
        while i < count { total += Double(x[i]); i += 1 }
        return total
    }

    /// Adds `count` floats into a wide accumulator of 16 doubles (`lanes`): element i goes to
    /// lane i mod 16, summed in float within the call (every 16th element in order) and the 16
    /// partial sums then added to the doubles. The lanes are added together only once, at the end
    /// (`laneTotal`), so rows of a few floats (a 4×4 plane) cost no horizontal sum each.
    /// Fixed order, so the result never varies.
    @inline(__always)
    static func addRow(_ x: UnsafePointer<Float>, _ count: Int, into accumulator: UnsafeMutablePointer<Double>) {
        var sum = SIMD16<Float>(repeating: 0)
        var i = 0
        let raw = UnsafeRawPointer(x)
        while i + 16 <= count {
            sum += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            i += 16
        }
        if i < count {
            var tail = SIMD16<Float>(repeating: 0)
            for j in 0..<(count - i) { tail[j] = x[i + j] }
            sum += tail
        }
        let a = UnsafeMutableRawPointer(accumulator)
        a.storeBytes(of: a.loadUnaligned(as: SIMD8<Double>.self) + SIMD8<Double>(sum.lowHalf), as: SIMD8<Double>.self)
        a.storeBytes(of: a.loadUnaligned(fromByteOffset: 64, as: SIMD8<Double>.self) + SIMD8<Double>(sum.highHalf),
                     toByteOffset: 64, as: SIMD8<Double>.self)
    }

    /// The 16 lanes of a wide accumulator added in lane order.
    @inline(__always)
    static func laneTotal(_ accumulator: UnsafePointer<Double>) -> Double {
        var total = 0.0
        for lane in 0..<16 { total += accumulator[lane] }
        return total
    }

    /// The length L of the runs `rows` rows come in: within a run, each row's offsets are
    /// `steps.first` and `steps.second` past the previous row's in `first` and `second`; runs all
    /// have length L, start at multiples of L, and L divides `unit`. 1 when the rows come in no such
    /// runs. (An upsampling's rows along W: input rows side by side, outputs one apart.)
    static func runLength(_ first: [Int], _ second: [Int], steps: (first: Int, second: Int), unit: Int) -> Int {
        let rows = first.count
        var length = 1
        while length < rows && first[length] == first[length - 1] + steps.first
                && second[length] == second[length - 1] + steps.second {
            length += 1
        }
        guard length > 1, rows % length == 0, unit % length == 0 else { return 1 }
        for r in 0..<rows where r % length != 0 {
            guard first[r] == first[r - 1] + steps.first && second[r] == second[r - 1] + steps.second else { return 1 }
        }
        return length
    }

    /// `sums[j] += Σ_i x[j·inner + i]` for j in 0..<count, each row summed in float64 in order
    /// (`rowSum`'s bits for rows under 16): rows of 2 (an upsampling's gradient) 8, then 4, at a time.
    @inline(__always)
    static func addShortRowSums(_ x: UnsafePointer<Float>, inner: Int, count: Int, into sums: UnsafeMutablePointer<Double>) {
        var j = 0
        if inner == 2 {
            let raw = UnsafeRawPointer(x), out = UnsafeMutableRawPointer(sums)
            while j + 8 <= count {
                let v = raw.loadUnaligned(fromByteOffset: 8 * j, as: SIMD16<Float>.self)
                let pair = SIMD8<Double>(v.evenHalf) + SIMD8<Double>(v.oddHalf)
                out.storeBytes(of: out.loadUnaligned(fromByteOffset: 8 * j, as: SIMD8<Double>.self) + pair,
                               toByteOffset: 8 * j, as: SIMD8<Double>.self)
                j += 8
            }
            if j + 4 <= count {
                let v = raw.loadUnaligned(fromByteOffset: 8 * j, as: SIMD8<Float>.self)
                let pair = SIMD4<Double>(v.evenHalf) + SIMD4<Double>(v.oddHalf)
                out.storeBytes(of: out.loadUnaligned(fromByteOffset: 8 * j, as: SIMD4<Double>.self) + pair,
                               toByteOffset: 8 * j, as: SIMD4<Double>.self)
                j += 4
            }
        }
        while j < count {
            sums[j] += rowSum(x + j * inner, inner)
            j += 1
        }
    }

    /// How many contiguous blocks of rows a reduction's `rows` (output offsets `outOffsets`,
    /// `inner` elements each, `innerOut` apart in the output) splits into such that block b
    /// writes only outputs `b·outputs/blocks ..< (b+1)·outputs/blocks`: `leading` (the count of
    /// indices before the first reduced axis) when that holds for every row, else 1.
    static func independentBlocks(rows: Int, outputs: Int, leading: Int, inner: Int, innerOut: Int,
                                  outOffsets: [Int]) -> Int {
        guard leading > 1, rows % leading == 0, outputs % leading == 0 else { return 1 }
        let (rowsPerBlock, outputsPerBlock) = (rows / leading, outputs / leading)
        let span = innerOut == 0 ? 1 : (inner - 1) * innerOut + 1
        for r in 0..<rows {
            let low = r / rowsPerBlock * outputsPerBlock
            guard outOffsets[r] >= low, outOffsets[r] + span <= low + outputsPerBlock else { return 1 }
        }
        return leading
    }

    /// Rows per part and parts of a reduction over `rows` rows of `inner` elements: a fixed
    /// number of contiguous parts from the problem size alone (never the thread count), each with
    /// its own accumulators, added in part order at the end.
    static func parts(rows: Int, inner: Int) -> Int {
        rows * inner >= 65536 ? Swift.min(8, Swift.max(1, rows)) : 1
    }

    /// Whether wide accumulators for `outputs` outputs in `parts` parts stay small (512 KiB):
    /// batch-norm statistics do (≤ 512 channels), a global average pool's many outputs of a
    /// few rows each do not.
    static func fitsWide(outputs: Int, parts: Int) -> Bool {
        outputs * lanes * parts <= 1 << 16
    }
}
