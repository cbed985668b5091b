import Foundation

/// A small dense float64 matrix for checking results in examples and tests (least squares,
/// products of weight matrices, determinants): plain loops, no speed claims.
public struct Matrix: Sendable, Equatable, CustomStringConvertible {
    public var rows: Int
    public var columns: Int
    /// Row-major, `rows * columns` values.
    public var values: [Double]

    public init(rows: Int, columns: Int, values: [Double]) {
        precondition(values.count == rows * columns, "\(values.count) values for \(rows)×\(columns)")
        self.rows = rows; self.columns = columns; self.values = values
    }

    /// The zero matrix, or `diagonal` on the diagonal.
    public init(rows: Int, columns: Int, diagonal: Double = 0) {
        self.init(rows: rows, columns: columns, values: [Double](repeating: 0, count: rows * columns))
        for i in 0..<Swift.min(rows, columns) { self[i, i] = diagonal }
    }

    /// Entries drawn from N(0, std²) (Box–Muller over `generator`).
    public init<G: RandomNumberGenerator>(rows: Int, columns: Int, std: Double = 1, using generator: inout G) {
        self.init(rows: rows, columns: columns, values: gaussianSamples(rows * columns, using: &generator).map { $0 * std })
    }

    public subscript(row: Int, column: Int) -> Double {
        get { values[row * columns + column] }
        set { values[row * columns + column] = newValue }
    }

    public var transposed: Matrix {
        var t = Matrix(rows: columns, columns: rows)
        for i in 0..<rows { for j in 0..<columns { t[j, i] = self[i, j] } }
        return t
    }

    public static func * (a: Matrix, b: Matrix) -> Matrix {
        precondition(a.columns == b.rows, "product of \(a.rows)×\(a.columns) and \(b.rows)×\(b.columns)")
        var c = Matrix(rows: a.rows, columns: b.columns)
        for i in 0..<a.rows { for k in 0..<a.columns where a[i, k] != 0 { for j in 0..<b.columns { c[i, j] += a[i, k] * b[k, j] } } }
        return c
    }
    public static func + (a: Matrix, b: Matrix) -> Matrix { a.combined(b, +) }
    public static func - (a: Matrix, b: Matrix) -> Matrix { a.combined(b, -) }
    public static func * (s: Double, a: Matrix) -> Matrix { Matrix(rows: a.rows, columns: a.columns, values: a.values.map { s * $0 }) }

    private func combined(_ other: Matrix, _ op: (Double, Double) -> Double) -> Matrix {
        precondition(rows == other.rows && columns == other.columns, "shapes differ")
        return Matrix(rows: rows, columns: columns, values: zip(values, other.values).map(op))
    }

    /// The Frobenius norm.
    public var norm: Double { values.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    /// X solving `self · X = b` for a square `self`, by Gaussian elimination with partial pivoting;
    /// nil when `self` is singular to working precision.
    public func solve(_ b: Matrix) -> Matrix? {
        precondition(rows == columns && b.rows == rows, "solve needs a square matrix and as many right-hand rows")
        var a = self, x = b
        let scale = values.map(abs).max() ?? 0
        for k in 0..<rows {
            let pivot = (k..<rows).max { abs(a[$0, k]) < abs(a[$1, k]) }!
            guard abs(a[pivot, k]) > 1e-13 * scale else { return nil }
            if pivot != k {
                for j in 0..<columns { (a[k, j], a[pivot, j]) = (a[pivot, j], a[k, j]) }
                for j in 0..<x.columns { (x[k, j], x[pivot, j]) = (x[pivot, j], x[k, j]) }
            }
            for i in (k + 1)..<rows where a[i, k] != 0 {
                let f = a[i, k] / a[k, k]
                for j in k..<columns { a[i, j] -= f * a[k, j] }
                for j in 0..<x.columns { x[i, j] -= f * x[k, j] }
            }
        }
        for k in stride(from: rows - 1, through: 0, by: -1) {
            for j in 0..<x.columns {
                var s = x[k, j]
                for i in (k + 1)..<rows { s -= a[k, i] * x[i, j] }
                x[k, j] = s / a[k, k]
            }
        }
        return x
    }

    /// The determinant of a square matrix (elimination with partial pivoting).
    public var determinant: Double {
        precondition(rows == columns, "determinant of a \(rows)×\(columns) matrix")
        var a = self, det = 1.0
        for k in 0..<rows {
            let pivot = (k..<rows).max { abs(a[$0, k]) < abs(a[$1, k]) }!
            if a[pivot, k] == 0 { return 0 }
            if pivot != k { for j in 0..<columns { (a[k, j], a[pivot, j]) = (a[pivot, j], a[k, j]) }; det = -det }
            det *= a[k, k]
            for i in (k + 1)..<rows { let f = a[i, k] / a[k, k]; for j in k..<columns { a[i, j] -= f * a[k, j] } }
        }
        return det
    }

    /// A matrix with orthonormal columns spanning the same space (modified Gram–Schmidt; the
    /// columns must be independent).
    public var orthonormalized: Matrix {
        var q = self
        for j in 0..<columns {
            for p in 0..<j {
                let dot = (0..<rows).reduce(0.0) { $0 + q[$1, p] * q[$1, j] }
                for i in 0..<rows { q[i, j] -= dot * q[i, p] }
            }
            let n = (0..<rows).reduce(0.0) { $0 + q[$1, j] * q[$1, j] }.squareRoot()
            precondition(n > 0, "dependent columns")
            for i in 0..<rows { q[i, j] /= n }
        }
        return q
    }

    /// The values as float32, for feeding a graph.
    public var floats: [Float] { values.map(Float.init) }

    public var description: String {
        (0..<rows).map { i in (0..<columns).map { String(format: "%9.4f", self[i, $0]) }.joined(separator: " ") }.joined(separator: "\n")
    }
}

/// `count` independent N(0, 1) samples (Box–Muller over `generator`).
public func gaussianSamples<G: RandomNumberGenerator>(_ count: Int, using generator: inout G) -> [Double] {
    var out: [Double] = []
    out.reserveCapacity(count + 1)
    while out.count < count {
        let u = Double.random(in: Double.ulpOfOne..<1, using: &generator), v = Double.random(in: 0..<1, using: &generator)
        let r = (-2 * Foundation.log(u)).squareRoot()
        out.append(r * Foundation.cos(2 * Double.pi * v))
        out.append(r * Foundation.sin(2 * Double.pi * v))
    }
    return Array(out.prefix(count))
}
