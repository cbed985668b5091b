import Foundation
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
        /// A denoising diffusion model: a network trained to predict the noise added to an image,
        /// sampled by iterated denoising (`DiffusionSchedule`).
        case diffusion
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
    /// Diffusion model: (noisy images x_t [N, C, H, W] scaled to [−1, 1], timestep embedding
    /// [N, latentSize], condition, training) → the predicted noise ε [N, C, H, W].
    public var denoise: (@Sendable (Tensor, Tensor, Tensor?, Bool) -> Tensor)? = nil
    /// Diffusion model: its noise schedule (number of steps T and the β's).
    public var schedule: DiffusionSchedule? = nil

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

/// The DCGAN of PyTorch's tutorial (Radford et al. 2016), sized for square images with sides
/// divisible by 4 (28×28: 7 → 14 → 28), in transposed convolutions. Generator: z (64) as a 1×1
/// image → transposed conv 128@7×7 (the whole 7×7 plane from one pixel), batch norm, ReLU →
/// transposed conv 64@4×4/2, batch norm, ReLU → transposed conv C@4×4/2 → logits.
/// Discriminator: conv 32@4×4/2, leaky ReLU 0.2 → conv 64@4×4/2, leaky ReLU → conv 1@7×7 over
/// the whole plane → one logit. The zoo's `gan` upsamples and convolves instead.
public func dcgan(imageShape: [Int] = [1, 28, 28], latent: Int = 64) -> GenerativeModel {
    let (channels, height, width) = (imageShape[0], imageShape[1], imageShape[2])
    precondition(height == width && height % 4 == 0, "dcgan needs square images with sides divisible by 4")
    let prefix = GenerativeModel.generatorPrefix, quarter = height / 4
    return GenerativeModel(
        name: "dcgan",
        summary: "DCGAN: G z \(latent) -convT- 128x\(quarter)x\(quarter) -convT 4x4/2- 64 -convT 4x4/2- \(channels) (BN), "
            + "D conv 32-64 4x4/2 leaky ReLU, conv 1@\(quarter)x\(quarter)",
        family: .gan, imageShape: imageShape, classes: 0, latentSize: latent,
        encode: nil,
        decode: { z, _, training in
            let g = z.builder
            var h = z.reshaped([z.shape[0], latent, 1, 1])
            h = g.convTranspose2d(h, outChannels: 128, kernel: quarter, name: prefix + "convT0", bias: false)
            h = relu(g.batchNorm(h, name: prefix + "bn0", training: training))
            h = g.convTranspose2d(h, outChannels: 64, kernel: 4, stride: 2, padding: 1, name: prefix + "convT1", bias: false)
            h = relu(g.batchNorm(h, name: prefix + "bn1", training: training))
            return g.convTranspose2d(h, outChannels: channels, kernel: 4, stride: 2, padding: 1, name: prefix + "convT2")
        },
        discriminate: { images, _, _ in
            let g = images.builder
            var h = leakyRelu(g.conv2d(images, outChannels: 32, kernel: 4, stride: 2, padding: 1, name: "disc.conv1"))
            h = leakyRelu(g.conv2d(h, outChannels: 64, kernel: 4, stride: 2, padding: 1, name: "disc.conv2"))
            return g.conv2d(h, outChannels: 1, kernel: quarter, name: "disc.conv3").flatten()
        })
}

/// A small class-conditional DDPM (Ho et al. 2020) for images: an MLP predicts the noise ε in
/// x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε from x_t, a sinusoidal embedding of t (`latent` numbers, in
/// `latentSize`) and the one-hot label, which join the input of every layer:
/// [pixels, t, y] → `hidden` ReLU → [h, t, y] → `hidden` ReLU → [h, t, y] → `hidden` ReLU → pixels,
/// plus a skip s(t)·x_t with s a linear function of t's embedding.
/// The cosine schedule of Nichol & Dhariwal 2021 with `timesteps` steps; images are scaled to
/// [−1, 1]. With `classes` 0 it is unconditional.
public func ddpm(imageShape: [Int] = [1, 28, 28], hidden: Int = 512, embedding: Int = 64, timesteps: Int = 200,
                 classes: Int = 0) -> GenerativeModel {
    let pixels = imageShape.reduce(1, *)
    precondition(embedding % 2 == 0 && embedding > 0, "the timestep embedding needs an even size")
    return GenerativeModel(
        name: "ddpm",
        summary: "\(classes > 0 ? "conditional " : "")DDPM: MLP noise predictor \(pixels)+t\(embedding)\(classes > 0 ? "+y" : "")-\(hidden)x3-\(pixels) ReLU + skip, cosine schedule T=\(timesteps)",
        family: .diffusion, imageShape: imageShape, classes: classes, latentSize: embedding,
        encode: nil,
        decode: { _, _, _ in preconditionFailure("a diffusion model samples by iterated denoising (GenerativeTrainer.sample), not by one decoder pass") },
        discriminate: nil,
        denoise: { noisy, time, condition, _ in
            let g = noisy.builder
            let extra = [time] + (condition.map { [$0] } ?? [])
            var h = noisy.flatten()
            for layer in 1...3 { h = relu(g.dense(concat([h] + extra, axis: 1), hidden, name: "den.fc\(layer)")) }
            // The skip s(t)·x_t carries the noise past the hidden layers (narrower than the image).
            let skip = g.dense(time, 1, name: "den.skip") * noisy.flatten()
            return (g.dense(h, pixels, name: "den.out") + skip).reshaped(Shape([noisy.shape[0]] + imageShape))
        },
        schedule: DiffusionSchedule(cosineSteps: timesteps))
}

/// The noise schedule of a diffusion model and its ancestral sampling step (Ho et al. 2020).
/// Steps are numbered t = 0…T−1 (the papers' 1…T); ᾱ_t = Π_{s≤t} (1 − β_s).
public struct DiffusionSchedule: Sendable, Equatable {
    /// β_t, the noise variance added at step t.
    public let betas: [Double]
    /// ᾱ_t = Π_{s≤t} (1 − β_s).
    public let alphaBars: [Double]
    public var steps: Int { betas.count }

    public init(betas: [Double]) {
        precondition(!betas.isEmpty && betas.allSatisfy { $0 > 0 && $0 < 1 }, "betas must lie in (0, 1)")
        self.betas = betas
        var product = 1.0
        alphaBars = betas.map { product *= 1 - $0; return product }
    }

    /// Nichol & Dhariwal 2021 (eq. 17): ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2), s = 0.008,
    /// β clipped at 0.999.
    public init(cosineSteps steps: Int) {
        precondition(steps > 0, "a schedule needs at least one step")
        func f(_ t: Int) -> Double { let c = cos((Double(t) / Double(steps) + 0.008) / 1.008 * Double.pi / 2); return c * c }
        self.init(betas: (1...steps).map { Swift.min(1 - f($0) / f($0 - 1), 0.999) })
    }

    /// Ho et al.'s linear schedule: β from `start` to `end` (1e-4 to 0.02 for T = 1000).
    public init(linearSteps steps: Int, start: Double = 1e-4, end: Double = 0.02) {
        precondition(steps > 0, "a schedule needs at least one step")
        self.init(betas: (0..<steps).map { steps == 1 ? end : start + (end - start) * Double($0) / Double(steps - 1) })
    }

    /// The sinusoidal embedding of step t (Vaswani et al. 2017): sin(t·ω_i) then cos(t·ω_i),
    /// ω_i = 10000^(−i/(size/2)), i < size/2.
    public static func embedding(step t: Int, size: Int) -> [Float] {
        let half = size / 2
        let angles = (0..<half).map { Double(t) * exp(-log(10_000) * Double($0) / Double(half)) }
        return angles.map { Float(sin($0)) } + angles.map { Float(cos($0)) }
    }

    /// One ancestral sampling step from x_t to x_{t−1} in place, given the predicted noise ε̂:
    /// x̂₀ = clip((x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, −1, 1), then the posterior q(x_{t−1} | x_t, x̂₀):
    /// mean √ᾱ_{t−1} β_t/(1−ᾱ_t) x̂₀ + √(1−β_t)(1−ᾱ_{t−1})/(1−ᾱ_t) x_t, variance β_t(1−ᾱ_{t−1})/(1−ᾱ_t),
    /// plus `noise` (standard normal draws, times `temperature`) scaled by its standard deviation.
    /// At t = 0 the result is x̂₀.
    public func denoiseStep(_ x: inout [Float], predictedNoise: [Float], step t: Int, noise: [Float], temperature: Double = 1) {
        precondition(x.count == predictedNoise.count && (t == 0 || noise.count == x.count), "one noise value per pixel")
        let alphaBar = alphaBars[t], previous = t > 0 ? alphaBars[t - 1] : 1, beta = betas[t]
        let (a, b) = (1 / alphaBar.squareRoot(), (1 - alphaBar).squareRoot())
        let c0 = previous.squareRoot() * beta / (1 - alphaBar), ct = (1 - beta).squareRoot() * (1 - previous) / (1 - alphaBar)
        let sigma = (beta * (1 - previous) / (1 - alphaBar)).squareRoot() * temperature
        for i in x.indices {
            let x0 = Swift.max(-1, Swift.min(1, (Double(x[i]) - b * Double(predictedNoise[i])) * a))
            x[i] = t == 0 ? Float(x0) : Float(c0 * x0 + ct * Double(x[i]) + sigma * Double(noise[i]))
        }
    }
}

extension Zoo {
    /// The zoo's generative models by name.
    public static let generativeNames = ["vae", "cvae", "conv-vae", "conv-cvae", "gan", "cgan", "dcgan", "ddpm"]

    /// The generative models that take a class label (`ddpm` is class-conditional).
    public static let conditionalGenerativeNames: Set<String> = ["cvae", "conv-cvae", "cgan", "ddpm"]

    /// Whether `name` is a generative model (the CLI routes those to the generative trainer).
    public static func isGenerative(_ name: String) -> Bool { generativeNames.contains(name) }

    /// A generative model by name; conditional ones (`cvae`, `conv-cvae`, `cgan`, `ddpm`) use `classes`.
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
        case "dcgan":
            guard imageShape.count == 3, imageShape[1] == imageShape[2], imageShape[1] % 4 == 0 else {
                throw KilnError.argument("dcgan needs square images with sides divisible by 4, found \(imageShape)")
            }
            return dcgan(imageShape: imageShape)
        case "ddpm":
            guard imageShape.count == 3 else { throw KilnError.argument("ddpm needs images [C, H, W], found \(imageShape)") }
            return ddpm(imageShape: imageShape, classes: classes)
        default:
            throw KilnError.argument("unknown generative model \"\(excerpt(name))\"; the zoo has \(generativeNames.joined(separator: ", "))")
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
