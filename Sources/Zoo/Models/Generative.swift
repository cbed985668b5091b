import KilnGraph

/// A generative model in the zoo: a variational autoencoder (encoder and decoder) or a GAN
/// (generator and discriminator), optionally conditioned on a class label.
///
/// Every network sees images [N, C, H, W] in [0, 1] and produces pixel *logits*: the decoder's
/// or generator's image is `sigmoid(logits)`. A conditional model receives its class as a
/// one-hot row [N, classes]; unconditional models receive nil.
public struct GenerativeModel: Sendable {
    /// How the model is trained.
    public enum Family: String, Sendable {
        /// Encoder and decoder trained together on the negative ELBO.
        case vae
        /// Generator and discriminator trained in alternating steps, each with its own optimizer.
        case gan
    }

    /// The zoo name (`vae`, `cvae`, `conv-vae`, `conv-cvae`, `gan`, `cgan`).
    public var name: String
    /// One line on what it is.
    public var summary: String
    public var family: Family
    /// Shape of one image, [C, H, W].
    public var imageShape: [Int]
    /// Number of classes the model is conditioned on; 0 for an unconditional model.
    public var classes: Int
    /// Size of the latent code z.
    public var latentSize: Int
    /// VAE encoder: (images, condition, training) → (mean, log variance), each [N, latentSize].
    public var encode: (@Sendable (Tensor, Tensor?, Bool) -> (mean: Tensor, logVariance: Tensor))?
    /// Decoder or generator: (z [N, latentSize], condition, training) → pixel logits [N, C, H, W].
    public var decode: @Sendable (Tensor, Tensor?, Bool) -> Tensor
    /// GAN discriminator: (images in [0, 1], condition, training) → one logit per image [N, 1].
    public var discriminate: (@Sendable (Tensor, Tensor?, Bool) -> Tensor)?

    /// Whether the model takes a class label.
    public var isConditional: Bool { classes > 0 }

    /// Prefix of the generator's parameter names in a GAN (everything else is the discriminator's).
    public static let generatorPrefix = "gen."
}

/// The MLP VAE of the peers' `vae-train` workload: 784 → 400 ReLU → mu, logvar (20);
/// decoder 20 → 400 ReLU → 784 logits. Parameter names `enc`, `mu`, `logvar`, `dec1`, `dec2`
/// as in PyTorch's fixture. With `classes > 0` it is a CVAE: the one-hot label is joined to the
/// encoder's input and to z (Sohn et al. 2015).
public func vae(imageShape: [Int] = [1, 28, 28], hidden: Int = 400, latent: Int = 20, classes: Int = 0) -> GenerativeModel {
    let pixels = imageShape.reduce(1, *)
    let conditional = classes > 0
    return GenerativeModel(
        name: conditional ? "cvae" : "vae",
        summary: "\(conditional ? "conditional " : "")MLP VAE \(pixels)-\(hidden)-\(latent)-\(hidden)-\(pixels), ReLU",
        family: .vae, imageShape: imageShape, classes: classes, latentSize: latent,
        encode: { images, condition, _ in
            let g = images.builder
            var input = images.flatten()
            if let condition { input = concat([input, condition], axis: 1) }
            let h = relu(g.dense(input, hidden, name: "enc"))
            return (g.dense(h, latent, name: "mu"), g.dense(h, latent, name: "logvar"))
        },
        decode: { z, condition, _ in
            let g = z.builder
            let input = condition.map { concat([z, $0], axis: 1) } ?? z
            let h = relu(g.dense(input, hidden, name: "dec1"))
            return g.dense(h, pixels, name: "dec2").reshaped(Shape([z.shape[0]] + imageShape))
        })
}

/// A convolutional VAE for 28×28 images: two stride-2 4×4 convolutions (32, 64 channels) and a
/// 256-unit layer encode; the decoder mirrors them with nearest-neighbour 2× upsampling followed
/// by 3×3 convolutions ("resize-convolution", which avoids the checkerboard pattern of
/// transposed convolutions: Odena et al. 2016). With `classes > 0` it is conditional: the label
/// enters the encoder as constant extra input channels and the decoder joined to z.
public func convVAE(imageShape: [Int] = [1, 28, 28], latent: Int = 16, classes: Int = 0) -> GenerativeModel {
    let conditional = classes > 0
    let (channels, height, width) = (imageShape[0], imageShape[1], imageShape[2])
    precondition(height % 4 == 0 && width % 4 == 0, "conv-vae needs image sides divisible by 4")
    return GenerativeModel(
        name: conditional ? "conv-cvae" : "conv-vae",
        summary: "\(conditional ? "conditional " : "")conv VAE: conv 32@4x4/2, conv 64@4x4/2, 256, z \(latent); upsample+conv decoder",
        family: .vae, imageShape: imageShape, classes: classes, latentSize: latent,
        encode: { images, condition, _ in
            let g = images.builder
            let input = condition.map { concat([images, labelPlanes($0, height: height, width: width)], axis: 1) } ?? images
            var h = relu(g.conv2d(input, outChannels: 32, kernel: 4, stride: 2, padding: 1, name: "enc.conv1"))
            h = relu(g.conv2d(h, outChannels: 64, kernel: 4, stride: 2, padding: 1, name: "enc.conv2"))
            h = relu(g.dense(h.flatten(), 256, name: "enc.fc"))
            return (g.dense(h, latent, name: "mu"), g.dense(h, latent, name: "logvar"))
        },
        decode: { z, condition, _ in
            let g = z.builder
            let input = condition.map { concat([z, $0], axis: 1) } ?? z
            var h = relu(g.dense(input, 256, name: "dec.fc1"))
            h = relu(g.dense(h, 64 * (height / 4) * (width / 4), name: "dec.fc2"))
            h = h.reshaped([z.shape[0], 64, height / 4, width / 4])
            h = relu(g.conv2d(upsampleNearest2x(h), outChannels: 32, kernel: 3, padding: 1, name: "dec.conv1"))
            return g.conv2d(upsampleNearest2x(h), outChannels: channels, kernel: 3, padding: 1, name: "dec.conv2")
        })
}

/// A small DCGAN-style GAN (Radford et al. 2016) for 28×28 images. Generator: z (64) → 128×7×7,
/// batch norm, ReLU → upsample, conv 64@3×3, batch norm, ReLU → upsample, conv C@3×3 → logits.
/// Discriminator: conv 32@4×4/2, leaky ReLU 0.2 → conv 64@4×4/2, leaky ReLU → one logit. With
/// `classes > 0` it is a cGAN (Mirza & Osindero 2014): the one-hot label is joined to z and
/// enters the discriminator as constant input channels.
public func gan(imageShape: [Int] = [1, 28, 28], latent: Int = 64, classes: Int = 0) -> GenerativeModel {
    let conditional = classes > 0
    let (channels, height, width) = (imageShape[0], imageShape[1], imageShape[2])
    precondition(height % 4 == 0 && width % 4 == 0, "gan needs image sides divisible by 4")
    let prefix = GenerativeModel.generatorPrefix
    return GenerativeModel(
        name: conditional ? "cgan" : "gan",
        summary: "\(conditional ? "conditional " : "")DCGAN: G z \(latent)-128x7x7-64-\(channels) (BN, upsample+conv), D conv 32-64-1 leaky ReLU",
        family: .gan, imageShape: imageShape, classes: classes, latentSize: latent,
        encode: nil,
        decode: { z, condition, training in
            let g = z.builder
            let input = condition.map { concat([z, $0], axis: 1) } ?? z
            var h = g.dense(input, 128 * (height / 4) * (width / 4), name: prefix + "fc")
            h = h.reshaped([z.shape[0], 128, height / 4, width / 4])
            h = relu(g.batchNorm(h, name: prefix + "bn0", training: training))
            h = g.conv2d(upsampleNearest2x(h), outChannels: 64, kernel: 3, padding: 1, name: prefix + "conv1")
            h = relu(g.batchNorm(h, name: prefix + "bn1", training: training))
            return g.conv2d(upsampleNearest2x(h), outChannels: channels, kernel: 3, padding: 1, name: prefix + "conv2")
        },
        discriminate: { images, condition, _ in
            let g = images.builder
            let input = condition.map { concat([images, labelPlanes($0, height: height, width: width)], axis: 1) } ?? images
            var h = leakyRelu(g.conv2d(input, outChannels: 32, kernel: 4, stride: 2, padding: 1, name: "disc.conv1"))
            h = leakyRelu(g.conv2d(h, outChannels: 64, kernel: 4, stride: 2, padding: 1, name: "disc.conv2"))
            return g.dense(h.flatten(), 1, name: "disc.fc")
        })
}

extension Zoo {
    /// The zoo's generative models by name.
    public static let generativeNames = ["vae", "cvae", "conv-vae", "conv-cvae", "gan", "cgan"]

    /// Whether `name` is a generative model (the CLI routes those to the generative trainer).
    public static func isGenerative(_ name: String) -> Bool { generativeNames.contains(name) }

    /// A generative model by name; conditional ones (`cvae`, `conv-cvae`, `cgan`) use `classes`.
    public static func generative(_ name: String, imageShape: [Int] = [1, 28, 28], classes: Int = 10) throws -> GenerativeModel {
        switch name {
        case "vae": return vae(imageShape: imageShape)
        case "cvae": return vae(imageShape: imageShape, classes: classes)
        case "conv-vae", "conv-cvae":
            guard imageShape.count == 3, imageShape[1] % 4 == 0, imageShape[2] % 4 == 0 else {
                throw KilnError.argument("\(name) needs image sides divisible by 4, found \(imageShape)")
            }
            return convVAE(imageShape: imageShape, classes: name == "conv-cvae" ? classes : 0)
        case "gan", "cgan":
            guard imageShape.count == 3, imageShape[1] % 4 == 0, imageShape[2] % 4 == 0 else {
                throw KilnError.argument("\(name) needs image sides divisible by 4, found \(imageShape)")
            }
            return gan(imageShape: imageShape, classes: name == "cgan" ? classes : 0)
        default:
            throw KilnError.argument("unknown generative model \"\(name)\"; the zoo has \(generativeNames.joined(separator: ", "))")
        }
    }
}

/// Leaky ReLU: x for x > 0, `slope`·x otherwise (as max(x, slope·x) for 0 < slope < 1).
public func leakyRelu(_ x: Tensor, slope: Double = 0.2, file: String = #fileID, line: Int = #line) -> Tensor {
    maximum(x, x * slope, file: file, line: line)
}

/// Nearest-neighbour 2× upsampling of [N, C, H, W]: each pixel becomes a 2×2 block. Built from
/// reshape and broadcast, so its gradient (sum over each block) comes from existing VJP rules.
public func upsampleNearest2x(_ x: Tensor, file: String = #fileID, line: Int = #line) -> Tensor {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    return x.reshaped([n, c, h, 1, w, 1], file: file, line: line)
        .broadcast(to: [n, c, h, 2, w, 2], file: file, line: line)
        .reshaped([n, c, 2 * h, 2 * w], file: file, line: line)
}

/// A one-hot condition [N, K] spread into K constant image planes [N, K, H, W].
func labelPlanes(_ condition: Tensor, height: Int, width: Int) -> Tensor {
    let (n, k) = (condition.shape[0], condition.shape[1])
    return condition.reshaped([n, k, 1, 1]).broadcast(to: [n, k, height, width])
}
