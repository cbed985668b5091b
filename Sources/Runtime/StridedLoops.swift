import KilnGraph

/// Index arithmetic shared by the runtime's data-movement, broadcast and reduction kernels.
/// Everything here runs at compile time or in simple odometer loops over row-major shapes.
enum StridedLoops {
    /// Strides of `input` viewed in the rank of `output` under numpy broadcasting (0 on broadcast axes).
    static func broadcastStrides(_ input: Shape, to output: Shape) -> [Int] {
        let offset = output.rank - input.rank
        let strides = input.strides
        return (0..<output.rank).map { axis in
            axis < offset ? 0 : (input.dims[axis - offset] == 1 ? 0 : strides[axis - offset])
        }
    }

    /// Row decomposition of an elementwise op over `shape` whose operands have the given strides:
    /// merges axes that stay contiguous for every operand, then lists, per row of the innermost
    /// axis, the offset of each operand. Inner strides are 0 or 1 for every operand.
    struct Rows {
        var inner: Int
        var innerStrides: [Int]
        /// offsets[operand][row]
        var offsets: [[Int]]
        var rowCount: Int { offsets.first?.count ?? 0 }
    }

    static func rows(shape: Shape, operandStrides: [[Int]]) -> Rows {
        var dims = shape.dims
        var strides = operandStrides
        if dims.isEmpty { dims = [1]; strides = strides.map { _ in [0] } }
        // Merge axis i into i+1 while every operand keeps stride[i] == stride[i+1] * dims[i+1].
        var axis = dims.count - 2
        while axis >= 0 {
            let mergeable = strides.allSatisfy { $0[axis] == $0[axis + 1] * dims[axis + 1] }
            if mergeable {
                dims[axis + 1] *= dims[axis]
                dims.remove(at: axis)
                for i in strides.indices { strides[i].remove(at: axis) }
            }
            axis -= 1
        }
        let inner = dims.last!
        let innerStrides = strides.map { $0.last! }
        let outerDims = Array(dims.dropLast())
        let rowCount = outerDims.reduce(1, *)
        var offsets = [[Int]](repeating: [], count: strides.count)
        for i in strides.indices { offsets[i].reserveCapacity(rowCount) }
        var index = [Int](repeating: 0, count: outerDims.count)
        for _ in 0..<rowCount {
            for i in strides.indices {
                var offset = 0
                for (a, value) in index.enumerated() { offset += value * strides[i][a] }
                offsets[i].append(offset)
            }
            var a = outerDims.count - 1
            while a >= 0 {
                index[a] += 1
                if index[a] < outerDims[a] { break }
                index[a] = 0
                a -= 1
            }
        }
        return Rows(inner: inner, innerStrides: innerStrides, offsets: offsets)
    }

    /// Copies a box of `shape` elements: destination element at multi-index i is source element at
    /// `sourceOffset + Σ i[a]·sourceStrides[a]`, written to `destinationOffset + Σ i[a]·destinationStrides[a]`.
    static func copy<T>(shape: [Int], source: UnsafePointer<T>, sourceOffset: Int, sourceStrides: [Int],
                        destination: UnsafeMutablePointer<T>, destinationOffset: Int, destinationStrides: [Int]) {
        let count = shape.reduce(1, *)
        if count == 0 { return }
        if shape.isEmpty { destination[destinationOffset] = source[sourceOffset]; return }
        let last = shape.count - 1
        let inner = shape[last], sInner = sourceStrides[last], dInner = destinationStrides[last]
        // The multi-index of the current row, on the stack: a kernel calls this every step, and a
        // step allocates nothing.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(last, 1)) { index in
            index.initialize(repeating: 0)
            let rows = count / inner
            for _ in 0..<rows {
                var s = sourceOffset, d = destinationOffset
                for a in 0..<last { s += index[a] * sourceStrides[a]; d += index[a] * destinationStrides[a] }
                if sInner == 1 && dInner == 1 {
                    (destination + d).update(from: source + s, count: inner)
                } else {
                    for j in 0..<inner { destination[d + j * dInner] = source[s + j * sInner] }
                }
                var a = last - 1
                while a >= 0 {
                    index[a] += 1
                    if index[a] < shape[a] { break }
                    index[a] = 0
                    a -= 1
                }
            }
        }
    }
}
