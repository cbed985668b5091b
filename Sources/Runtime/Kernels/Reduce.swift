/// Reduction loops shared by the plain reduce kernel and the fused evaluator's reduction sink.
enum ReduceKernel {
    /// The sum of `count` floats: 16 float lanes (each adds every 16th element in order), then
    /// the lanes and the tail added in float64. Fixed order, so the result never varies.
    static func rowSum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
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
}
