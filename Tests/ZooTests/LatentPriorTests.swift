import Foundation
import Testing
import Kiln

@Suite("Latent prior of a VAE")
struct LatentPriorTests {
    @Test("fit gives each group's mean and a factor whose L Lᵀ is its covariance (+ 1e-4 I)")
    func fitMatchesNaiveMoments() {
        var random = SplitMix64(seed: 3)
        let codes: [[Float]] = (0..<60).map { _ in
            let a = Float(random.normal()), b = Float(random.normal())
            return [a + 2, 0.5 * a + b, -1]
        }
        let groups = [Array(0..<30), Array(30..<60)]
        let prior = LatentPrior.fit(codes: codes, groups: groups, latent: 3)
        #expect(prior.rows == 2 && prior.latent == 3)
        for (row, members) in groups.enumerated() {
            let n = Double(members.count)
            let mean = (0..<3).map { j in members.map { Double(codes[$0][j]) }.reduce(0, +) / n }
            for j in 0..<3 { #expect(abs(Double(prior.means[row * 3 + j]) - mean[j]) < 1e-5) }
            for a in 0..<3 {
                for b in 0..<3 {
                    let cov = members.map { (Double(codes[$0][a]) - mean[a]) * (Double(codes[$0][b]) - mean[b]) }.reduce(0, +) / (n - 1)
                        + (a == b ? 1e-4 : 0)
                    let llt = (0..<3).map { k in Double(prior.factors[(row * 3 + a) * 3 + k]) * Double(prior.factors[(row * 3 + b) * 3 + k]) }.reduce(0, +)
                    #expect(abs(llt - cov) < 1e-4 * Swift.max(1, abs(cov)))
                }
                // Lower triangular.
                for b in (a + 1)..<3 where b < 3 { #expect(prior.factors[(row * 3 + a) * 3 + b] == 0) }
            }
        }
        // transform: z = mean + L ε.
        var z: [Float] = [1, -2, 0.5]
        let eps = z
        z.withUnsafeMutableBufferPointer { prior.transform($0.baseAddress!, row: 1) }
        for a in 0..<3 {
            let expected = prior.means[3 + a] + (0...a).map { prior.factors[(3 + a) * 3 + $0] * eps[$0] }.reduce(0, +)
            #expect(abs(z[a] - expected) < 1e-6)
        }
    }

    @Test("a conditional VAE's fitted prior is saved, loaded, and changes what it samples")
    func savedAndUsed() throws {
        let dir = TemporaryDirectory()
        let data = CourseGlyphs.make(count: 24, seed: 5)
        let trainer = GenerativeTrainer(model: try Zoo.generative("cvae", classes: 3), seed: 2, threads: 1)
        try trainer.initializeParameters()
        let before = try trainer.samplePerClass(2, seed: 9, classNames: data.classNames)
        try trainer.fitLatentPrior(data)
        let prior = try #require(trainer.latentPrior)
        #expect(prior.rows == 3 && prior.latent == trainer.model.latentSize)
        // The means are the encoder's codes averaged per class.
        let codes = try trainer.encoderMeans(data)
        let members = (0..<24).filter { data.labels[$0] == 1 }
        let mean0 = members.map { Double(codes[$0][0]) }.reduce(0, +) / Double(members.count)
        #expect(abs(Double(prior.means[prior.latent]) - mean0) < 1e-5)
        let after = try trainer.samplePerClass(2, seed: 9, classNames: data.classNames)
        #expect(after.images != before.images)
        try trainer.save(path: dir.file("g.safetensors"), classNames: data.classNames, extraMetadata: ["kiln.note": "x"])
        let (loaded, _) = try GenerativeTrainer.load(path: dir.file("g.safetensors"), threads: 1)
        #expect(loaded.latentPrior == prior)
        #expect(try loaded.samplePerClass(2, seed: 9, classNames: data.classNames).images == after.images)
        #expect(try Checkpoint.read(path: dir.file("g.safetensors")).metadata["kiln.note"] == "x")
    }
}
