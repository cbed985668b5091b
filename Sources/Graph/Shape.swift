/// A static tensor shape: the extent of each axis, outermost first (row-major).
public struct Shape: Hashable, Sendable, CustomStringConvertible, ExpressibleByArrayLiteral {
    /// Extent of each axis.
    public var dims: [Int]

    public init(_ dims: [Int]) { self.dims = dims }
    public init(arrayLiteral elements: Int...) { self.dims = elements }

    /// A rank-0 shape (one element).
    public static let scalar = Shape([])

    /// Number of axes.
    public var rank: Int { dims.count }
    /// Number of elements (1 for a scalar).
    public var count: Int { dims.reduce(1, *) }
    public subscript(axis: Int) -> Int { dims[axis] }

    /// Row-major strides in elements.
    public var strides: [Int] {
        var strides = [Int](repeating: 1, count: dims.count)
        var running = 1
        for axis in stride(from: dims.count - 1, through: 0, by: -1) {
            strides[axis] = running
            running *= dims[axis]
        }
        return strides
    }

    public var description: String { "[" + dims.map(String.init).joined(separator: ", ") + "]" }

    /// The numpy-style broadcast of two shapes, or nil if they are incompatible.
    public static func broadcast(_ a: Shape, _ b: Shape) -> Shape? {
        let rank = max(a.rank, b.rank)
        var result = [Int](repeating: 1, count: rank)
        for i in 0..<rank {
            let da = i < rank - a.rank ? 1 : a.dims[i - (rank - a.rank)]
            let db = i < rank - b.rank ? 1 : b.dims[i - (rank - b.rank)]
            if da == db || db == 1 { result[i] = da } else if da == 1 { result[i] = db } else { return nil }
        }
        return Shape(result)
    }

    /// Whether this shape broadcasts to `target` under numpy rules.
    public func broadcasts(to target: Shape) -> Bool {
        guard rank <= target.rank else { return false }
        let offset = target.rank - rank
        for i in 0..<rank where dims[i] != 1 && dims[i] != target.dims[i + offset] { return false }
        return true
    }
}

/// The static type of a value: shape and element type.
public struct TensorType: Hashable, Sendable, CustomStringConvertible {
    public var shape: Shape
    public var dtype: DType

    public init(_ shape: Shape, _ dtype: DType = .float32) {
        self.shape = shape
        self.dtype = dtype
    }

    /// Bytes the tensor occupies.
    public var byteCount: Int { shape.count * dtype.byteSize }
    public var description: String { "\(dtype.shortName)\(shape)" }
}
