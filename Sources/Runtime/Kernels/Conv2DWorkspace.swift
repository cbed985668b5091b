extension Conv2DKernel {
    /// Which product of a convolution a workspace serves.
    public enum Pass: Sendable {
        /// y = conv2d(x, weight).
        case forward
        /// dx from dy and the weight.
        case backwardData
        /// dw from x and dy.
        case backwardFilter
    }

    /// Scratch memory for one convolution pass of one geometry on a fixed thread count, made
    /// once when a kernel is compiled (like `GEMM.Workspace`), so that running the pass
    /// allocates nothing. A workspace serves calls in sequence, never two at once.
    ///
    /// Only the direct path (`DirectConv2D`) keeps buffers here; the im2col + GEMM path takes
    /// its column buffers and packing workspace from the process-wide `ConvScratch`, which
    /// stops allocating once a program's first steps have sized it.
    public final class Workspace {
        /// The pass this workspace was made for.
        public let pass: Pass
        /// The geometry this workspace was made for.
        public let geometry: Geometry
        /// The thread count this workspace was made for (the direct forward and backward-data
        /// passes keep one bordered image buffer per thread).
        public let threads: Int
        let direct: DirectConv2D.Buffers?

        /// Allocates the buffers `pass` needs for `geometry` on `threads` threads.
        public init(_ pass: Pass, _ geometry: Geometry, threads: Int) {
            self.pass = pass
            self.geometry = geometry
            self.threads = threads
            guard !geometry.isWholeImage && DirectConv2D.runs(geometry, pass) && !(pass == .backwardFilter && (FilterKernel.runs(geometry) || PixelFilterKernel.runs(geometry)))
                    && !(pass == .backwardData && StemDataKernel.suits(geometry))
                    && !(pass == .forward && StemForwardKernel.runs(geometry)) else {
                direct = nil
                return
            }
            switch pass {
            case .forward:
                direct = DirectConv2D.correlateBuffers(DirectConv2D.forwardProblem(geometry), threads: threads)
            case .backwardData:
                direct = DirectConv2D.correlateBuffers(DirectConv2D.backwardDataProblem(geometry), threads: threads)
            case .backwardFilter:
                direct = DirectConv2D.backwardFilterBuffers(geometry)
            }
        }

        /// Stops a call whose workspace was made for another pass, geometry or thread count.
        func check(_ pass: Pass, _ geometry: Geometry, threads: Int) {
            precondition(pass == self.pass && geometry == self.geometry && threads == self.threads,
                         "Conv2DKernel.Workspace: made for \(self.pass) \(self.geometry) on \(self.threads) threads, "
                            + "used for \(pass) \(geometry) on \(threads)")
        }
    }
}
