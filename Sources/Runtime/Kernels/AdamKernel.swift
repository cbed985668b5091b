import KilnGraph

/// Adam's update formulas (`AdamFormula`) over `count` elements with operand strides 0 or 1.
/// When the streams have stride 1 and the scalars stride 0 (every update `Optimizer.adam`
/// emits) the loops run a vector at a time with the scalars splatted once; otherwise element by
/// element. The operations and their order are the interpreter's, with no fused multiply-adds,
/// so both paths give the same bits. The output may be any operand's buffer (in place): each
/// element is read before it is written.
enum AdamKernel {
    typealias V = ISA.Vector

    /// y = m + c₁·(g − m).
    static func firstMoment(_ m: UnsafePointer<Float>, _ sm: Int, _ g: UnsafePointer<Float>, _ sg: Int,
                            _ c1: UnsafePointer<Float>, _ sc1: Int, _ y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        if sm == 1 && sg == 1 && sc1 == 0 {
            let c = V(repeating: c1[0])
            while i + V.scalarCount <= count {
                let mi = Lanes.load(m, i)
                Lanes.store(mi + c * (Lanes.load(g, i) - mi), y, i)
                i += V.scalarCount
            }
        }
        while i < count {
            let mi = m[i * sm]
            y[i] = mi + c1[i * sc1] * (g[i * sg] - mi)
            i += 1
        }
    }

    /// y = β₂·v + c₂·g².
    static func secondMoment(_ v: UnsafePointer<Float>, _ sv: Int, _ g: UnsafePointer<Float>, _ sg: Int,
                             _ beta2: UnsafePointer<Float>, _ sb: Int, _ c2: UnsafePointer<Float>, _ sc2: Int,
                             _ y: UnsafeMutablePointer<Float>, count: Int) {
        var i = 0
        if sv == 1 && sg == 1 && sb == 0 && sc2 == 0 {
            let b = V(repeating: beta2[0]), c = V(repeating: c2[0])
            while i + V.scalarCount <= count {
                let gi = Lanes.load(g, i)
                Lanes.store(b * Lanes.load(v, i) + c * (gi * gi), y, i)
                i += V.scalarCount
            }
        }
        while i < count {
            let gi = g[i * sg]
            y[i] = beta2[i * sb] * v[i * sv] + c2[i * sc2] * (gi * gi)
            i += 1
        }
    }

    /// Elements per block of the parameter formula (its square roots wait on the stack).
    static let block = 256

    /// y = p − (α·m) / (√v·r + ε).
    static func parameter(_ p: UnsafePointer<Float>, _ sp: Int, _ m: UnsafePointer<Float>, _ sm: Int,
                          _ v: UnsafePointer<Float>, _ sv: Int, _ alpha: UnsafePointer<Float>, _ sa: Int,
                          _ r: UnsafePointer<Float>, _ sr: Int, _ epsilon: UnsafePointer<Float>, _ se: Int,
                          _ y: UnsafeMutablePointer<Float>, count: Int) {
        guard sp == 1 && sm == 1 && sv == 1 && sa == 0 && sr == 0 && se == 0 else {
            for i in 0..<count {
                y[i] = p[i * sp] - (alpha[i * sa] * m[i * sm]) / (v[i * sv].squareRoot() * r[i * sr] + epsilon[i * se])
            }
            return
        }
        let a = V(repeating: alpha[0]), rv = V(repeating: r[0]), e = V(repeating: epsilon[0])
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { roots in
            let root = roots.baseAddress!
            var start = 0
            while start < count {
                let n = Swift.min(block, count - start)
                // A scalar loop of square roots becomes vsqrtps; SIMD's squareRoot goes lane by lane.
                for k in 0..<n { root[k] = v[start + k].squareRoot() }
                let pb = p + start, mb = m + start, yb = y + start
                var i = 0
                while i + V.scalarCount <= n {
                    Lanes.store(Lanes.load(pb, i) - (a * Lanes.load(mb, i)) / (Lanes.load(root, i) * rv + e), yb, i)
                    i += V.scalarCount
                }
                while i < n {
                    yb[i] = pb[i] - (alpha[0] * mb[i]) / (root[i] * r[0] + epsilon[0])
                    i += 1
                }
                start += n
            }
        }
    }

    /// The three formulas for one parameter in one pass over `count` elements of unit-stride
    /// streams, `block` at a time: m′ and v′ are stored as they are computed, √v′ waits on the
    /// stack, then p′. The operations and their order are those of `firstMoment`,
    /// `secondMoment` and `parameter`, so the bits are theirs. Outputs may share their own
    /// input's buffer (m′ m's, v′ v's, p′ p's): each element is read before it is written.
    static func step(m: UnsafePointer<Float>, g: UnsafePointer<Float>, v: UnsafePointer<Float>, p: UnsafePointer<Float>,
                     c1: Float, beta2: Float, c2: Float, alpha: Float, r: Float, epsilon: Float,
                     mOut: UnsafeMutablePointer<Float>, vOut: UnsafeMutablePointer<Float>, pOut: UnsafeMutablePointer<Float>,
                     count: Int) {
        let c1v = V(repeating: c1), bv = V(repeating: beta2), c2v = V(repeating: c2)
        let av = V(repeating: alpha), rv = V(repeating: r), ev = V(repeating: epsilon)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { roots in
            let root = roots.baseAddress!
            var start = 0
            while start < count {
                let n = Swift.min(block, count - start)
                var i = 0
                while i + V.scalarCount <= n {
                    let k = start + i
                    let mi = Lanes.load(m, k), gi = Lanes.load(g, k), vi = Lanes.load(v, k)
                    let newV = bv * vi + c2v * (gi * gi)
                    Lanes.store(mi + c1v * (gi - mi), mOut, k)
                    Lanes.store(newV, vOut, k)
                    Lanes.store(newV, root, i)
                    i += V.scalarCount
                }
                while i < n {
                    let k = start + i
                    let mi = m[k], gi = g[k]
                    let newV = beta2 * v[k] + c2 * (gi * gi)
                    mOut[k] = mi + c1 * (gi - mi)
                    vOut[k] = newV
                    root[i] = newV
                    i += 1
                }
                // A scalar loop of square roots becomes vsqrtps; SIMD's squareRoot goes lane by lane.
                for k in 0..<n { root[k] = root[k].squareRoot() }
                i = 0
                while i + V.scalarCount <= n {
                    let k = start + i
                    Lanes.store(Lanes.load(p, k) - (av * Lanes.load(mOut, k)) / (Lanes.load(root, i) * rv + ev), pOut, k)
                    i += V.scalarCount
                }
                while i < n {
                    let k = start + i
                    pOut[k] = p[k] - (alpha * mOut[k]) / (root[i] * r + epsilon)
                    i += 1
                }
                start += n
            }
        }
    }
}
