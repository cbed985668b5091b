import KilnGraph

extension Conv2DKernel.Geometry {
    /// The geometry of a convolution with `attributes` of an NCHW `input` by an OIHW `filter`.
    init(_ attributes: Conv2DAttributes, input: Shape, filter: Shape) {
        self.init(n: input[0], c: input[1], h: input[2], w: input[3], o: filter[0], kh: filter[2], kw: filter[3],
                  strideH: attributes.strideH, strideW: attributes.strideW, padH: attributes.padH, padW: attributes.padW)
    }
}

extension Pool2DKernel.Geometry {
    /// The geometry of a pooling with `attributes` over an NCHW `input`.
    init(_ attributes: PoolAttributes, input: Shape) {
        self.init(n: input[0], c: input[1], h: input[2], w: input[3], kh: attributes.kernelH, kw: attributes.kernelW,
                  strideH: attributes.strideH, strideW: attributes.strideW)
    }
}
