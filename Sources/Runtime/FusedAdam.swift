import KilnGraph

/// A fused program that is exactly Adam's update (as `Optimizer.adam` spells it) runs as one
/// pass per tile with every value in registers, instead of thirteen passes through scratch:
///
///     m′ = m + c₁·(g − m)      v′ = β₂·v + c₂·g²      p′ = p − (α·m′) / (√v′ / s + ε)
///
/// (c₁ = 1 − β₁, c₂ = 1 − β₂, s = √(bias correction 2), α = lr / bias correction 1, all
/// scalars read at run time). The operations and their order are the generic evaluator's, with
/// no fused multiply-adds, so results are bit for bit the same. Recognised from the instruction
/// list; anything else — another optimizer, an extra output, a strided operand — stays generic.
struct FusedAdam {
    /// Off only in tests that compare this path with the generic evaluator.
    nonisolated(unsafe) static var isEnabled = true

    /// Operand indices of the streams (stride 1) and of the scalars (stride 0).
    let g, m, v, p: Int
    let c1, beta2, c2, s, epsilon, alpha: Int

    /// The matching plan for `instructions` over operands with inner `strides`, or nil.
    init?(_ instructions: [FusedElementwise.Instruction], strides: [Int]) {
        guard Self.isEnabled, instructions.count == 13 else { return nil }
        typealias S = FusedElementwise.Source
        func binary(_ i: Int, _ f: BinaryFunction) -> (S, S)? {
            guard case let .binary(actual) = instructions[i].operation, actual == f else { return nil }
            return (instructions[i].inputs[0], instructions[i].inputs[1])
        }
        func operand(_ s: S, stride: Int) -> Int? {
            guard case let .operand(k) = s, strides[k] == stride else { return nil }
            return k
        }
        func isSlot(_ s: S, _ slot: Int) -> Bool { if case .slot(slot) = s { return true } else { return false } }
        // Only m′, v′ and p′ leave the kernel.
        for (i, instruction) in instructions.enumerated() where (instruction.output != nil) != [2, 6, 12].contains(i) { return nil }
        guard let (a0, b0) = binary(0, .sub), let g = operand(a0, stride: 1), let m = operand(b0, stride: 1),
              let (a1, b1) = binary(1, .mul), let c1 = operand(a1, stride: 0), isSlot(b1, 0),
              let (a2, b2) = binary(2, .add), operand(a2, stride: 1) == m, isSlot(b2, 1),
              let (a3, b3) = binary(3, .mul), let beta2 = operand(a3, stride: 0), let v = operand(b3, stride: 1),
              case .unary(.square) = instructions[4].operation, operand(instructions[4].inputs[0], stride: 1) == g,
              let (a5, b5) = binary(5, .mul), let c2 = operand(a5, stride: 0), isSlot(b5, 4),
              let (a6, b6) = binary(6, .add), isSlot(a6, 3), isSlot(b6, 5),
              case .unary(.sqrt) = instructions[7].operation, isSlot(instructions[7].inputs[0], 6),
              let (a8, b8) = binary(8, .div), isSlot(a8, 7), let s = operand(b8, stride: 0),
              let (a9, b9) = binary(9, .add), isSlot(a9, 8), let epsilon = operand(b9, stride: 0),
              let (a10, b10) = binary(10, .mul), let alpha = operand(a10, stride: 0), isSlot(b10, 2),
              let (a11, b11) = binary(11, .div), isSlot(a11, 10), isSlot(b11, 9),
              let (a12, b12) = binary(12, .sub), let p = operand(a12, stride: 1), isSlot(b12, 11)
        else { return nil }
        (self.g, self.m, self.v, self.p) = (g, m, v, p)
        (self.c1, self.beta2, self.c2, self.s, self.epsilon, self.alpha) = (c1, beta2, c2, s, epsilon, alpha)
    }

    /// One tile of `n` elements. `operands` point at the tile (scalars at their value);
    /// `mOut`, `vOut`, `pOut` may be the buffers of m, v, p (in place); `scratch` holds n floats.
    @inline(__always)
    func run(_ operands: UnsafeMutableBufferPointer<UnsafePointer<Float>>, mOut: UnsafeMutablePointer<Float>,
             vOut: UnsafeMutablePointer<Float>, pOut: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, _ n: Int) {
        typealias V = ISA.Vector
        let g = operands[self.g], m = operands[self.m], v = operands[self.v], p = operands[self.p]
        let c1 = operands[self.c1][0], beta2 = operands[self.beta2][0], c2 = operands[self.c2][0]
        let s = operands[self.s][0], epsilon = operands[self.epsilon][0], alpha = operands[self.alpha][0]
        // Moments; √v′ waits in scratch (a scalar loop there becomes vsqrtps; the standard
        // library's SIMD squareRoot goes lane by lane).
        var i = 0
        while i + V.scalarCount <= n {
            let gi = Lanes.load(g, i), mi = Lanes.load(m, i)
            let newM = mi + V(repeating: c1) * (gi - mi)
            let newV = V(repeating: beta2) * Lanes.load(v, i) + V(repeating: c2) * (gi * gi)
            Lanes.store(newM, mOut, i)
            Lanes.store(newV, vOut, i)
            Lanes.store(newV, scratch, i)
            i += V.scalarCount
        }
        while i < n {
            let gi = g[i], mi = m[i]
            let newV = beta2 * v[i] + c2 * (gi * gi)
            mOut[i] = mi + c1 * (gi - mi)
            vOut[i] = newV
            scratch[i] = newV
            i += 1
        }
        for k in 0..<n { scratch[k] = scratch[k].squareRoot() }
        i = 0
        while i + V.scalarCount <= n {
            let denominator = Lanes.load(scratch, i) / V(repeating: s) + V(repeating: epsilon)
            let step = (V(repeating: alpha) * Lanes.load(mOut, i)) / denominator
            Lanes.store(Lanes.load(p, i) - step, pOut, i)
            i += V.scalarCount
        }
        while i < n {
            pOut[i] = p[i] - (alpha * mOut[i]) / (scratch[i] / s + epsilon)
            i += 1
        }
    }
}
