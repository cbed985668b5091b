import Testing
@testable import KilnPasses
import KilnGraph

/// Kernels as one line each: `kind %root: op%id ... -> outputs`.
private func kernelText(_ graph: Graph) -> String {
    Fusion.groups(for: graph).map { k in
        let members = k.members.map { "\(graph.nodes[$0].op.name)%\($0)" }.joined(separator: " ")
        return "\(k.kind.rawValue) %\(k.root): \(members) -> \(k.outputs.map { "%\($0)" }.joined(separator: ","))"
    }.joined(separator: "\n")
}

/// The decisions `rule` made, as `joined %n into [%a %b]` or `refused %n from [%a]: reason`.
private func decisions(_ rule: String, _ graph: Graph) -> [String] {
    Fusion.decisions(for: graph).decisions.filter { $0.rule == rule && !$0.kernel.isEmpty }.map { d in
        let moving = d.moving.map { "%\($0)" }.joined(separator: " "), kernel = d.kernel.map { "%\($0)" }.joined(separator: " ")
        switch d.outcome {
        case .joined: return "joined \(moving) into [\(kernel)]"
        case let .refused(reason): return "refused \(moving) from [\(kernel)]: \(reason)"
        }
    }
}

/// One golden-text test per fusion rule (`FusionRule.all`), on the smallest graph where it acts.
@Suite("Fusion rules")
struct FusionRuleTests {
    @Test("the rules run in the documented order")
    func order() {
        #expect(FusionRule.all.map(\.name) == [
            "no-kernel", "elementwise-joins-producer", "elementwise-starts-kernel", "reduction-takes-prologue",
            "epilogue-root", "single", "elementwise-kernel-into-epilogue", "elementwise-kernels-merge",
            "broadcast-as-strided-load", "pooling-joins-convolution",
        ])
    }

    @Test("no-kernel: a reshape view and the input it views get no kernel")
    func noKernel() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        g.output("y", exp(x.reshaped([32])))
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %2: exp%2 -> %2")
        #expect(try Fusion.explain(1, 2, in: graph) == "%1 reshape needs no kernel (a view of its operand's buffer): no rule places it")
    }

    @Test("elementwise-joins-producer: a chain joins its producer; another iteration space does not")
    func elementwiseJoinsProducer() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 1])
        let z = g.input("z", [4, 8])
        let e = exp(x)          // %2, space [4, 1]
        let y = e + z           // %3, space [4, 8]: may not join %2's kernel
        g.output("y", relu(y))  // %4 joins %3's
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %2: exp%2 -> %2\nelementwise %4: add%3 relu%4 -> %4")
        #expect(decisions("elementwise-joins-producer", graph) == [
            "refused %3 from [%2]: iteration spaces differ ([4, 1] vs [4, 8])",
            "joined %4 into [%3]",
        ])
    }

    @Test("elementwise-joins-producer: a node stays out when an outside path comes back into the kernel")
    func elementwiseJoinsProducerCycle() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 4])
        let a = exp(x)                // %1
        let t = a.transposed([1, 0])  // %2 depends on %1's kernel
        g.output("c", a + t)          // %3 reads both
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %1: exp%1 -> %1\nsingle %2: transpose%2 -> %2\nelementwise %3: add%3 -> %3")
        #expect(decisions("elementwise-joins-producer", graph) == [
            "refused %3 from [%1]: an operand from outside depends on the kernel (a cycle)",
            "refused %3 from [%2]: the single kernel is closed",
        ])
    }

    @Test("elementwise-starts-kernel: an elementwise node over leaves starts its own kernel")
    func elementwiseStartsKernel() throws {
        let g = GraphBuilder()
        let x = g.input("x", [3])
        g.output("y", sigmoid(x))
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %1: sigmoid%1 -> %1")
        #expect(Fusion.decisions(for: graph).decisions.map(\.rule) == ["no-kernel", "elementwise-starts-kernel"])
    }

    @Test("reduction-takes-prologue: a sum joins the kernel computing its input, also when the input is stored; a second sum over the same axes joins too, one over other axes does not")
    func reductionTakesPrologue() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let squares = x * x
        g.output("s", squares.sum(axes: [1]))
        let graph = try g.build()
        #expect(kernelText(graph) == "reduction %2: mul%1 reduce_sum%2 -> %2")
        #expect(decisions("reduction-takes-prologue", graph) == ["joined %2 into [%1]"])

        let h = GraphBuilder()
        let y = h.input("y", [4, 8])
        let e = exp(y)
        h.output("e", e)
        h.output("s", e.sum(axes: [1]))
        let stored = try h.build()
        #expect(kernelText(stored) == "reduction %2: exp%1 reduce_sum%2 -> %1,%2")
        #expect(decisions("reduction-takes-prologue", stored) == ["joined %2 into [%1]"])

        let m = GraphBuilder()
        let z = m.input("z", [4, 8])
        let t = tanh(z)                  // %1
        m.output("a", t.sum(axes: [1]))  // %2 joins %1's kernel
        let u = t * z                    // %3 joins the reduction kernel (it reads no reduced value)
        m.output("b", u.mean(axes: [1])) // %4: a second reduction over the same axes
        m.output("c", u.sum(axes: [0]))  // %5: other axes
        let several = try m.build()
        #expect(kernelText(several) == "reduction %2: tanh%1 reduce_sum%2 mul%3 reduce_mean%4 -> %2,%3,%4\nsingle %5: reduce_sum%5 -> %5")
        #expect(decisions("reduction-takes-prologue", several) == [
            "joined %2 into [%1]", "joined %4 into [%1 %2 %3]",
            "refused %5 from [%1 %2 %3 %4]: it reduces other axes than the kernel's reduction %2",
        ])
    }

    @Test("epilogue-root: a matmul opens a kernel its bias add and activation join")
    func epilogueRoot() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 3], initializer: .zeros)
        g.output("y", relu(x.matmul(w)))
        let graph = try g.build()
        #expect(kernelText(graph) == "epilogue %2: matmul%2 relu%3 -> %3")
        #expect(Fusion.decisions(for: graph).decisions.first { $0.moving == [2] }?.rule == "epilogue-root")
    }

    @Test("elementwise-joins-producer: a value a reduction reads stays out of an epilogue and is reduced as it is computed")
    func reducedValueStaysOutOfEpilogue() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 3], initializer: .zeros)
        let k = g.parameter("k", [3], initializer: .zeros)
        let d = x.matmul(w) - k.broadcast(to: [4, 3])   // %4 broadcast, %5 sub
        g.output("s", square(d).mean(axes: [0]))          // %6 square, %7 mean
        g.output("y", relu(d))                            // %8
        let graph = try g.build()
        // In the matmul's epilogue, d and d² would be stored for a lone mean to read back.
        #expect(kernelText(graph) == "single %3: matmul%3 -> %3\nreduction %7: broadcast%4 sub%5 square%6 reduce_mean%7 relu%8 -> %7,%8")
        #expect(decisions("elementwise-joins-producer", graph).contains { $0.hasPrefix("refused %5 from [%3]: a reduction reads it") })
    }

    @Test("single: a transpose and an int32 elementwise op run alone")
    func single() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let n = g.input("n", [4], dtype: .int32)
        g.output("t", relu(x.transposed([1, 0])))
        g.output("m", n.greater(n))
        let graph = try g.build()
        #expect(kernelText(graph) == "single %2: transpose%2 -> %2\nelementwise %3: relu%3 -> %3\nsingle %4: greater%4 -> %4")
        #expect(Fusion.decisions(for: graph).decisions.filter { $0.rule == "single" }.map(\.moving) == [[2], [4]])
    }

    @Test("elementwise-kernel-into-epilogue: an update reading the state and a matmul's square moves into the matmul's kernel")
    func elementwiseKernelIntoEpilogue() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let w = g.parameter("w", [8, 8], initializer: .zeros)
        let s = g.state("s", [4, 8], initializer: .zeros)
        let decayed = s * 0.9              // %4: its own elementwise kernel (reads leaves)
        let m = x.matmul(w)                // %5: epilogue root
        let squared = m * m                // %6 joins the epilogue
        g.output("v", decayed + squared)   // %7 joins %4's kernel, which then moves into the epilogue
        let graph = try g.build()
        #expect(kernelText(graph) == "epilogue %5: mul%4 matmul%5 mul%6 add%7 -> %7")
        #expect(decisions("elementwise-kernel-into-epilogue", graph) == ["joined %4 %7 into [%5 %6]"])
    }

    @Test("elementwise-kernels-merge: a node reading two elementwise kernels brings the second in")
    func elementwiseKernelsMerge() throws {
        let g = GraphBuilder()
        let x = g.input("x", [5])
        let y = g.input("y", [5])
        let a = exp(x)       // %2
        let b = tanh(y)      // %3: another kernel
        g.output("c", a * b) // %4 joins %2's kernel, then %3's kernel moves in
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %4: exp%2 tanh%3 mul%4 -> %4")
        #expect(decisions("elementwise-kernels-merge", graph) == ["joined %3 into [%2 %4]"])
    }

    @Test("elementwise-kernels-merge: a mask kept out of its producer for its readers does not pull the producer in")
    func elementwiseKernelsMergeKeepsMaskOut() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let r = relu(x)                                     // %1: the forward kernel
        let far = r.transposed([1, 0]).transposed([1, 0])   // %2 %3: r leaves its kernel anyway
        let mask = r.greater(0)                             // %4 %5: read only by %6
        g.output("y", mask * far)                           // %6 cannot join %1's kernel
        let graph = try g.build()
        #expect(kernelText(graph) == "elementwise %1: relu%1 -> %1\nsingle %2: transpose%2 -> %2\nsingle %3: transpose%3 -> %3\nelementwise %6: greater%5 mul%6 -> %6")
        #expect(decisions("elementwise-kernels-merge", graph) == [
            "refused %1 from [%5]: its readers will absorb %5 (the merge would store it and keep it live)",
        ])
        #expect(decisions("elementwise-joins-producer", graph).contains("joined %6 into [%5]"))
    }

    @Test("broadcast-as-strided-load: a bias broadcast read by one kernel of its shape becomes a load in it")
    func broadcastAsStridedLoad() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 8])
        let b = g.parameter("b", [8], initializer: .zeros)
        let bias = b.broadcast(to: [4, 8])  // %2
        g.output("y", exp(x) + bias)        // %3, %4
        g.output("z", bias.transposed([1, 0]))
        let graph = try g.build()
        // Read by a transpose too: the broadcast stays a kernel of its own.
        #expect(kernelText(graph) == "single %2: broadcast%2 -> %2\nelementwise %4: exp%3 add%4 -> %4\nsingle %5: transpose%5 -> %5")
        #expect(decisions("broadcast-as-strided-load", graph) == ["refused %2 from [%3 %4]: its readers sit in several kernels"])

        let h = GraphBuilder()
        let x2 = h.input("x", [4, 8])
        let b2 = h.parameter("b", [8], initializer: .zeros)
        h.output("y", exp(x2) + b2.broadcast(to: [4, 8]))
        let absorbed = try h.build()
        #expect(kernelText(absorbed) == "elementwise %4: exp%2 broadcast%3 add%4 -> %4")
        #expect(decisions("broadcast-as-strided-load", absorbed) == ["joined %3 into [%2 %4]"])
    }

    @Test("pooling-joins-convolution: a pooling of a convolution's only result joins its kernel; not when the result is stored")
    func poolingJoinsConvolution() throws {
        for stored in [false, true] {
            let g = GraphBuilder()
            let x = g.input("x", [2, 3, 8, 8])
            let w = g.parameter("w", [4, 3, 3, 3], initializer: .zeros)
            let activation = relu(conv2d(x, w, padding: 1))  // %2 conv2d, %3 relu
            g.output("y", maxPool(activation, 2))            // %4
            if stored { g.output("a", activation) }
            let graph = try g.build()
            if stored {
                #expect(kernelText(graph) == "epilogue %2: conv2d%2 relu%3 -> %3\nsingle %4: max_pool2d%4 -> %4")
                #expect(decisions("pooling-joins-convolution", graph) == ["refused %4 from [%2 %3]: its input is read elsewhere or stored"])
            } else {
                #expect(kernelText(graph) == "pooled %2: conv2d%2 relu%3 max_pool2d%4 -> %4")
                #expect(decisions("pooling-joins-convolution", graph) == ["joined %4 into [%2 %3]"])
            }
        }
    }

    @Test("--why names the rule that joined two nodes, or each rule that kept them apart")
    func explain() throws {
        let g = GraphBuilder()
        let x = g.input("x", [4, 1])
        let z = g.input("z", [4, 8])
        g.output("y", relu(exp(x) + z))
        let graph = try g.build()
        let fused = try Fusion.explain(3, 4, in: graph), apart = try Fusion.explain(2, 3, in: graph)
        #expect(fused == """
            %3 add and %4 relu are fused: kernel 1 (elementwise, root %4) holds both
              elementwise-joins-producer: %4 relu joined the kernel of %3
            """)
        #expect(apart == """
            %2 exp and %3 add are in different kernels: 0 (elementwise) and 1 (elementwise)
              elementwise-joins-producer kept %3 add out of the kernel of %2: iteration spaces differ ([4, 1] vs [4, 8])
              elementwise-kernels-merge kept %2 exp out of the kernel of %3: iteration spaces differ ([4, 1] vs [4, 8])
            """)
        #expect(throws: KilnError.self) { try Fusion.explain(2, 9, in: graph) }
    }
}
