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

/// The other kinds of closure the runtime hands to `Parallel.forEach`: one formed inside a
/// generic function (its context carries type metadata), one capturing an existential, and one
/// capturing a struct of pointers by value (the kernels' usual form).
@Suite("Closure words: every closure kind the kernels pass")
struct ClosureWordsKindsTests {
    private func generic<T: Numeric>(_ values: [T], _ scale: T) -> [T] {
        var out = [T](repeating: 0, count: values.count)
        out.withUnsafeMutableBufferPointer { buffer in
            callThroughWords(values.count) { i in buffer[i] = values[i] * scale }
        }
        return out
    }

    @Test("a closure inside a generic function")
    func genericContext() {
        #expect(generic([1, 2, 3], 4) == [4, 8, 12])
        #expect(generic([0.5, 1.5], 2.0) == [1.0, 3.0])
    }

    @Test("a closure capturing an existential and a struct of pointers")
    func existentialAndPointers() {
        let describe: any CustomStringConvertible = 42
        var seen: [String] = []
        callThroughWords(2) { seen.append("\(describe)-\($0)") }
        #expect(seen == ["42-0", "42-1"])
        struct Operands { let x: UnsafeMutablePointer<Float>; let y: UnsafeMutablePointer<Float>; let count: Int }
        let x = UnsafeMutablePointer<Float>.allocate(capacity: 8), y = UnsafeMutablePointer<Float>.allocate(capacity: 8)
        defer { x.deallocate(); y.deallocate() }
        for i in 0..<8 { x[i] = Float(i) }
        let operands = Operands(x: x, y: y, count: 8)
        callThroughWords(4) { chunk in
            for i in (chunk * 2)..<(chunk * 2 + 2) { operands.y[i] = operands.x[i] * 2 }
        }
        #expect((0..<8).map { y[$0] } == [0, 2, 4, 6, 8, 10, 12, 14])
    }
}
