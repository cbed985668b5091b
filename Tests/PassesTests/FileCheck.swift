import Testing

/// A minimal FileCheck (after LLVM's): checks text against a pattern of directive lines.
///
/// - `CHECK: s` — some later line contains `s`; matches are found in order, each after the
///   line the previous `CHECK:` matched.
/// - `CHECK-NOT: s` — no line between the previous `CHECK:` match (or the start) and the next
///   `CHECK:` match (or the end) contains `s`.
///
/// Other lines of the pattern are ignored; leading and trailing spaces of `s` are trimmed.
/// Returns nil when the text matches, else a message naming the failing directive.
func fileCheck(_ text: String, _ pattern: String) -> String? {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    var position = 0
    var pendingNots: [String] = []

    func trimmed<S: StringProtocol>(_ s: S) -> String {
        String(s.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
    func firstNot(in range: Range<Int>) -> String? {
        for not in pendingNots {
            if let hit = range.first(where: { lines[$0].contains(not) }) {
                return "CHECK-NOT: \(not) — found on line \(hit + 1): \(lines[hit])"
            }
        }
        return nil
    }

    for directive in pattern.split(separator: "\n").map({ trimmed($0) }) {
        if directive.hasPrefix("CHECK-NOT:") {
            pendingNots.append(trimmed(directive.dropFirst("CHECK-NOT:".count)))
        } else if directive.hasPrefix("CHECK:") {
            let wanted = trimmed(directive.dropFirst("CHECK:".count))
            guard let hit = (position..<lines.count).first(where: { lines[$0].contains(wanted) }) else {
                return "CHECK: \(wanted) — not found after line \(position)\n--- text ---\n\(text)"
            }
            if let failure = firstNot(in: position..<hit) { return failure + "\n--- text ---\n\(text)" }
            pendingNots = []
            position = hit + 1
        }
    }
    if let failure = firstNot(in: position..<lines.count) { return failure + "\n--- text ---\n\(text)" }
    return nil
}

@Suite("FileCheck matcher")
struct FileCheckTests {
    static let text = "%0 = input\n%1 = exp(%0)\n%2 = neg(%1)\noutput \"y\" = %2"

    @Test("CHECK lines match in order; CHECK-NOT holds between matches")
    func matches() {
        #expect(fileCheck(Self.text, "CHECK: input\nCHECK-NOT: relu\nCHECK: neg\nCHECK: output") == nil)
        // A CHECK-NOT only covers its range: exp appears, but after the `input` line.
        #expect(fileCheck(Self.text, "CHECK-NOT: exp\nCHECK: input\nCHECK: neg") == nil)
    }

    @Test("a missing or out-of-order CHECK fails")
    func checkFails() {
        #expect(fileCheck(Self.text, "CHECK: relu") != nil)
        #expect(fileCheck(Self.text, "CHECK: neg\nCHECK: exp") != nil)
        // One line cannot satisfy two CHECKs.
        #expect(fileCheck(Self.text, "CHECK: exp\nCHECK: exp") != nil)
    }

    @Test("a CHECK-NOT fails when its text appears in its range, before or after the last CHECK")
    func checkNotFails() {
        #expect(fileCheck(Self.text, "CHECK: input\nCHECK-NOT: exp\nCHECK: neg") != nil)
        #expect(fileCheck(Self.text, "CHECK: exp\nCHECK-NOT: output") != nil)
    }
}
