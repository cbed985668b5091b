import Testing
@testable import KilnRuntime

/// Runs `body` through its words, as a worker thread does.
private func callThroughWords(_ chunks: Int, _ body: (Int) -> Void) {
    let words = ClosureWords(body)
    for chunk in 0..<chunks { words(chunk) }
}

private func addTen(_ chunk: Int) { closureWordsTotal += 10 * chunk }
nonisolated(unsafe) private var closureWordsTotal = 0

@Suite("Closure words", .serialized)
struct ClosureWordsTests {
    @Test("a closure run through its words sees its captures and writes through them")
    func capturesSurvive() {
        let base = 1_000, scale = (2, 3, 5, 7)
        var seen: [Int] = []
        callThroughWords(4) { chunk in seen.append(base + chunk * scale.2 + scale.3) }
        #expect(seen == [1_007, 1_012, 1_017, 1_022])
    }

    @Test("a capture-free function and a closure over a class instance run through their words")
    func contextFreeAndObject() {
        closureWordsTotal = 0
        callThroughWords(3, addTen)
        #expect(closureWordsTotal == 30)
        final class Box { var values: [Int] = [] }
        let box = Box()
        callThroughWords(3) { box.values.append($0 * $0) }
        #expect(box.values == [0, 1, 4])
    }

    @Test("the worker pool runs every chunk of a job exactly once, over many jobs")
    func poolRunsEveryChunk() {
        let chunks = 37
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: chunks)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0, count: chunks)
        for job in 0..<200 {
            let offset = job % 3
            Parallel.forEach(chunks: chunks, threads: 2) { chunk in counts[chunk] += 1 + offset - offset }
        }
        #expect((0..<chunks).allSatisfy { counts[$0] == 200 })
    }
}
