/// Kahn's algorithm, the one topological ordering every pass uses (fusion orders its kernels
/// with it, scheduling reorders them): items `0..<sources.count`, where `sources[i]` are the
/// items that must come before `i`; among ready items the one with the smallest `key` goes first.
/// Nil when the dependencies have a cycle.
public func kahnOrder(sources: [Set<Int>], key: (Int) -> Int) -> [Int]? {
    var dependents = [[Int]](repeating: [], count: sources.count)
    var pending = sources.map(\.count)
    for (item, s) in sources.enumerated() { for source in s { dependents[source].append(item) } }
    var ready = MinHeap(sources.indices.filter { pending[$0] == 0 }.map { (key($0), $0) })
    var order: [Int] = []
    order.reserveCapacity(sources.count)
    while let (_, item) = ready.pop() {
        order.append(item)
        for d in dependents[item] {
            pending[d] -= 1
            if pending[d] == 0 { ready.push((key(d), d)) }
        }
    }
    return order.count == sources.count ? order : nil
}

/// A small binary min-heap of (key, payload) pairs.
struct MinHeap {
    private var items: [(Int, Int)]
    init(_ items: [(Int, Int)]) { self.items = []; for item in items { push(item) } }
    mutating func push(_ item: (Int, Int)) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[parent].0 <= items[i].0 { break }
            items.swapAt(parent, i)
            i = parent
        }
    }
    mutating func pop() -> (Int, Int)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var smallest = i
            if l < items.count && items[l].0 < items[smallest].0 { smallest = l }
            if r < items.count && items[r].0 < items[smallest].0 { smallest = r }
            if smallest == i { break }
            items.swapAt(i, smallest)
            i = smallest
        }
        return top
    }
}
