import KilnGraph
import KilnPasses

extension Lowering {
    /// A `pooled` kernel: per slice of images, the convolution into per-thread scratch, its
    /// epilogue in place there, then the pooling into the output. Slices have a fixed size (a
    /// divisor of the batch chosen from the shapes alone) and each image's arithmetic is the same
    /// in every slice, so results never depend on the thread count.
    func lowerPooled(_ group: KernelGroup) throws {
        let root = group.root, poolID = group.members.last!
        let conv = graph.nodes[root], pool = graph.nodes[poolID]
        guard case let .conv2d(attributes) = conv.op else { preconditionFailure("pooled kernel of %\(root) is no convolution") }
        let value = pool.inputs[0]
        let inputShape = graph.nodes[conv.inputs[0]].type.shape, filterShape = graph.nodes[conv.inputs[1]].type.shape
        let outShape = conv.type.shape, pooledShape = pool.type.shape
        let batch = inputShape[0]
        let imageFloats = outShape.count / Swift.max(batch, 1)
        // About 64 KiB of activations per slice (stays in L2), and a divisor of the batch.
        let target = Swift.max(1, Swift.min(batch, 16_384 / Swift.max(imageFloats, 1)))
        let images = (1...target).last { batch % $0 == 0 }!
        let slices = batch / images
        var sliceInput = inputShape.dims, sliceOutput = outShape.dims
        sliceInput[0] = images
        sliceOutput[0] = images
        let convGeometry = Conv2DKernel.Geometry(attributes, input: Shape(sliceInput), filter: filterShape)
        let poolGeometry: Pool2DKernel.Geometry
        let isMax: Bool
        switch pool.op {
        case let .maxPool2d(p): poolGeometry = Pool2DKernel.Geometry(p, input: Shape(sliceOutput)); isMax = true
        case let .avgPool2d(p): poolGeometry = Pool2DKernel.Geometry(p, input: Shape(sliceOutput)); isMax = false
        default: preconditionFailure("pooled kernel ends in \(pool.op.name), not a pooling")
        }
        let x = buffers.floats(conv.inputs[0]), w = buffers.floats(conv.inputs[1]), y = buffers.floats(poolID)
        let inputStride = inputShape.count / Swift.max(batch, 1) * images
        let outputStride = pooledShape.count / Swift.max(batch, 1) * images
        let epilogue = group.nonRootEvaluationOrder.filter { $0 != poolID }
        let parts = Swift.min(threads, slices)
        var lanes: [(scratch: UnsafeMutablePointer<Float>, workspace: Conv2DKernel.Workspace, epilogue: FusedElementwise?)] = []
        for _ in 0..<parts {
            let scratchFloats = buffers.scratchFloats(imageFloats * images)
            let fused = epilogue.isEmpty ? nil : FusedElementwise(
                graph: graph, members: epilogue, space: Shape(sliceOutput), outputs: [value: scratchFloats],
                pointer: { [buffers] in $0 == root ? scratchFloats : buffers.floats($0) }, threads: 1, batchSlice: true)
            lanes.append((scratchFloats, Conv2DKernel.Workspace(.forward, convGeometry, threads: 1), fused))
        }
        emit {
            Parallel.forEach(chunks: parts, threads: parts) { part in
                let lane = lanes[part]
                for slice in (part * slices / parts)..<((part + 1) * slices / parts) {
                    Conv2DKernel.forward(convGeometry, x: x + slice * inputStride, weight: w, y: lane.scratch, threads: 1,
                                         workspace: lane.workspace)
                    lane.epilogue?.run()
                    if isMax {
                        Pool2DKernel.maxForward(poolGeometry, x: lane.scratch, y: y + slice * outputStride, threads: 1)
                    } else {
                        Pool2DKernel.avgForward(poolGeometry, x: lane.scratch, y: y + slice * outputStride, threads: 1)
                    }
                }
            }
        }
    }
}
