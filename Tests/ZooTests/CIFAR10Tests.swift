import Foundation
import Testing
import KilnGraph
@testable import KilnZoo

@Suite struct CIFAR10Tests {
    /// Records in the binary layout with known labels and planes.
    private func records(_ labels: [UInt8]) -> [UInt8] {
        labels.enumerated().flatMap { i, label -> [UInt8] in
            [label] + (0..<3072).map { p in UInt8((p / 1024) * 50 + (p % 1024) % 7 + i) }     // plane r/g/b = 0/50/100 + a pattern
        }
    }

    @Test func readsTrainingBatchesInOrderAndTheTestBatch() throws {
        let dir = TemporaryDirectory()
        dir.write("data_batch_1.bin", records([3, 9]))
        dir.write("data_batch_2.bin", records([0]))
        dir.write("test_batch.bin", records([7, 1, 2]))
        let train = try CIFAR10.load(split: .train, directory: dir.path)
        #expect(train.count == 3 && train.labels == [3, 9, 0])
        #expect(train.channels == 3 && train.height == 32 && train.width == 32)
        // image 1, green plane (offset 1024), pixel 10: 50 + 10 % 7 + 1
        #expect(train.images[3072 + 1024 + 10] == 54)
        #expect(train.images[2 * 3072 + 2048] == 100)                    // image 2 (first of batch 2 has i = 0), blue, pixel 0
        let test = try CIFAR10.load(split: .test, directory: dir.path)
        #expect(test.labels == [7, 1, 2] && test.classNames[7] == "horse")
    }

    @Test func rejectsTruncatedFilesBadLabelsAndMissingDirectories() throws {
        let dir = TemporaryDirectory()
        dir.write("test_batch.bin", Array(records([1]).dropLast()))
        #expect(throws: KilnError.self) { try CIFAR10.load(split: .test, directory: dir.path) }
        dir.write("test_batch.bin", records([12]))
        let error = #expect(throws: KilnError.self) { try CIFAR10.load(split: .test, directory: dir.path) }
        #expect("\(error!)".contains("label 12"))
        #expect(throws: KilnError.self) { try CIFAR10.load(split: .train, directory: dir.path) }
    }
}
