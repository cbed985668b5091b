import Foundation
import KilnGraph

/// Zalando's Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey clothing images in ten
/// classes, 60 000 for training and 10 000 for testing, in MNIST's IDX format.
///
/// Kiln downloads nothing: the files come from the Debian package `dataset-fashion-mnist`.
public enum FashionMNIST {
    /// Where the Debian package installs the files (`load`'s default; the command-line tool's
    /// `--data-dir` or `FMNIST_DIR` point elsewhere).
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"

    /// The ten class names, by label.
    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    /// Which half of the data set.
    public enum Split: String, Sendable, CaseIterable {
        /// The 60 000 training images (`train-*`).
        case train
        /// The 10 000 test images (`t10k-*`).
        case test

        /// The file name prefix the IDX files use.
        var filePrefix: String { self == .train ? "train" : "t10k" }
    }

    /// Loads one split from `directory` (default `defaultDirectory`).
    ///
    /// Reads `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz` (or `t10k-*`), or the same
    /// names without `.gz`. A missing directory or file throws `KilnError.file` saying how to get it.
    public static func load(split: Split, directory: String? = nil) throws -> ImageDataset {
        let dir = directory ?? defaultDirectory
        let images = try locate("\(split.filePrefix)-images-idx3-ubyte", in: dir)
        let labels = try locate("\(split.filePrefix)-labels-idx1-ubyte", in: dir)
        let dataset = try IDX.loadDataset(images: images, labels: labels, classNames: classNames)
        guard dataset.height == 28, dataset.width == 28 else {
            throw KilnError.file(path: images, message:
                "Fashion-MNIST images are 28x28, found \(dataset.height)x\(dataset.width)")
        }
        return dataset
    }

    /// The path of `name.gz` or `name` in `directory`, preferring the compressed file as distributed.
    private static func locate(_ name: String, in directory: String) throws -> String {
        let hint = "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
            + "or point --data-dir (or FMNIST_DIR) at a directory holding the IDX files"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw KilnError.file(path: directory, message: "Fashion-MNIST directory not found; \(hint)")
        }
        for candidate in ["\(name).gz", name] {
            let path = (directory as NSString).appendingPathComponent(candidate)
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        throw KilnError.file(path: (directory as NSString).appendingPathComponent("\(name).gz"),
                             message: "Fashion-MNIST file missing; \(hint)")
    }
}
