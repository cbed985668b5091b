import Foundation
@testable import KilnZoo

/// PyTorch's reference files in `Tests/Fixtures` (made by `Tests/Fixtures/make_fixtures.py`,
/// see its README): part of the repository, so the tests that read them always run.
let fixtureDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

/// Fashion-MNIST's training images are where `FashionMNIST.load` looks (the trajectory tests replay
/// PyTorch's first steps on them; `.ci/run` installs them).
let haveTrainingImages = FileManager.default.fileExists(atPath: FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz")
