import KilnGraph

/// One persistent float32 tensor: a parameter or a piece of state. Memory is owned by the
/// store and stays at one address for the store's lifetime, so compiled programs hold raw pointers.
public final class StoredTensor {
    public let name: String
    public let type: TensorType
    public let isParameter: Bool
    /// `type.shape.count` floats, owned by this object, aligned to a cache line (and a 512-bit
    /// vector), like every buffer of the arena.
    ///
    /// Why aligned: the GEMMs read weights in place, a micro-kernel row of 32 floats at a time,
    /// and one that starts 16 bytes into a line spans three lines instead of two. `malloc`'s
    /// 16-byte alignment put the VAE's 784 × 400 weights there (AVX-512 Xeon, 128×784×400 read in
    /// place, medians: 270 GFLOP/s at +16 bytes, 314–322 aligned).
    public let pointer: UnsafeMutablePointer<Float>

    init(name: String, type: TensorType, isParameter: Bool) {
        self.name = name
        self.type = type
        self.isParameter = isParameter
        let count = Swift.max(type.shape.count, 1)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: count)
        pointer.initialize(repeating: 0, count: Swift.max(type.shape.count, 1))
    }

    deinit { pointer.deallocate() }

    /// The values as an array (a copy).
    public var values: [Float] {
        get { Array(UnsafeBufferPointer(start: pointer, count: type.shape.count)) }
        set {
            precondition(newValue.count == type.shape.count, "\(name): \(newValue.count) values for \(type.shape)")
            newValue.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: newValue.count) }
        }
    }
}

/// The parameters and persistent state of a model, shared by every program compiled from it
/// (training step, evaluation, generation): evaluating in the middle of training copies nothing.
public final class ParameterStore {
    /// Tensors by name.
    public private(set) var tensors: [String: StoredTensor] = [:]
    /// Seed for initialisers.
    public let seed: UInt64

    public init(seed: UInt64 = 0) { self.seed = seed }

    /// Names of all stored tensors, sorted.
    public var names: [String] { tensors.keys.sorted() }
    /// Parameters only (trained tensors), sorted by name.
    public var parameterNames: [String] { tensors.values.filter(\.isParameter).map(\.name).sorted() }

    public subscript(name: String) -> StoredTensor? { tensors[name] }

    /// Creates and initialises every float32 parameter and state of `graph` that the store lacks;
    /// checks that the ones it has agree in type.
    public func register(_ graph: Graph) throws {
        for id in graph.parameterIDs + graph.stateIDs {
            let node = graph.nodes[id]
            guard let name = graph.leafName(id) else { continue }
            let (initializer, isParameter): (Initializer, Bool)
            switch node.op {
            case let .parameter(_, i): (initializer, isParameter) = (i, true)
            case let .state(_, i): (initializer, isParameter) = (i, false)
            default: continue
            }
            if let existing = tensors[name] {
                guard existing.type == node.type else {
                    throw KilnError.feed("\(name): the store holds \(existing.type), the graph wants \(node.type)")
                }
                continue
            }
            guard node.type.dtype == .float32 else {
                throw KilnError.feed("\(name): the runtime stores float32 tensors only, found \(node.type.dtype)")
            }
            let tensor = StoredTensor(name: name, type: node.type, isParameter: isParameter)
            fill(tensor, with: initializer)
            tensors[name] = tensor
        }
    }

    /// Sets every value of a tensor from its initializer, drawing from the counter-based
    /// generator with a stream derived from the tensor's name (stable across programs and runs).
    public func fill(_ tensor: StoredTensor, with initializer: Initializer) {
        let count = tensor.type.shape.count
        let buffer = UnsafeMutableBufferPointer(start: tensor.pointer, count: count)
        let random = CounterRandom(seed: seed)
        let stream = Self.stream(for: tensor.name)
        switch initializer {
        case .zeros: buffer.update(repeating: 0)
        case .ones: buffer.update(repeating: 1)
        case let .constant(v): buffer.update(repeating: Float(v))
        case let .uniform(low, high):
            random.fillUniform(buffer, stream: stream, step: 0)
            for i in 0..<count { buffer[i] = Float(low + (high - low) * Double(buffer[i])) }
        case let .normal(mean, std):
            random.fillNormal(buffer, stream: stream, step: 0)
            for i in 0..<count { buffer[i] = Float(mean + std * Double(buffer[i])) }
        }
    }

    /// A stable random-stream id for a name (FNV-1a folded into [2³⁰, 2³¹): positive, 32-bit,
    /// and clear of the small stream ids of random ops).
    static func stream(for name: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int((hash >> 34) | (1 << 30))
    }

    /// Sets a tensor's values; the name must exist and the count match.
    public func set(_ name: String, _ values: [Float]) throws {
        guard let tensor = tensors[name] else { throw KilnError.feed("no parameter or state named \"\(name)\"") }
        guard values.count == tensor.type.shape.count else {
            throw KilnError.feed("\(name): expected \(tensor.type.shape.count) values for \(tensor.type.shape), found \(values.count)")
        }
        tensor.values = values
    }
}
