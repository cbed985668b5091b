/// The two machine words of a non-escaping `(Int) -> Void` closure (its function and its
/// context), so `WorkerPool` can hand a caller's closure to its threads without making an
/// escaping copy.
///
/// Why: `withoutActuallyEscaping` wraps the closure in a heap-allocated thunk whenever the
/// escapable copy is stored where another thread can read it, one allocation per parallel
/// kernel and so a few per training step. The words are just the closure as the caller passed
/// it: its context stays on the caller's stack and is never retained (a non-escaping closure
/// never is), so they are valid exactly while the caller is blocked in `WorkerPool.run`.
///
/// How: two private functions are stored under each other's type. The Swift calling convention
/// passes a closure argument as (function, context), the same registers as two raw pointers,
/// so `split` (an identity on two pointers, called as if it took a closure) returns the words,
/// and `invoke` (which calls its closure argument, called as if it took two pointers) runs
/// them. `ClosureWordsTests` and the thread-count tests of every parallel kernel check it.
struct ClosureWords {
    let function: UnsafeRawPointer?
    let context: UnsafeRawPointer?

    /// No closure (for the pool between jobs; never called).
    static let none = ClosureWords(function: nil, context: nil)

    private init(function: UnsafeRawPointer?, context: UnsafeRawPointer?) {
        self.function = function
        self.context = context
    }

    /// The words of `body`, valid until the call that received `body` returns.
    init(_ body: (Int) -> Void) {
        self = Self.split(body)
    }

    /// Runs the closure: `body(chunk)`.
    @inline(__always)
    func callAsFunction(_ chunk: Int) {
        precondition(function != nil, "ClosureWords: no closure")
        Self.invoke(function, context, chunk)
    }

    private static func identity(_ function: UnsafeRawPointer?, _ context: UnsafeRawPointer?) -> ClosureWords {
        ClosureWords(function: function, context: context)
    }

    private static func call(_ body: (Int) -> Void, _ chunk: Int) { body(chunk) }

    // Function values in non-generic structs keep their natural calling convention, so
    // reinterpreting one struct as the other changes only the declared parameter types.
    private struct SplitAsWords { let function: (UnsafeRawPointer?, UnsafeRawPointer?) -> ClosureWords }
    private struct SplitAsClosure { let function: ((Int) -> Void) -> ClosureWords }
    private struct InvokeAsClosure { let function: ((Int) -> Void, Int) -> Void }
    private struct InvokeAsWords { let function: (UnsafeRawPointer?, UnsafeRawPointer?, Int) -> Void }

    private static let split = reinterpret(SplitAsWords(function: identity), as: SplitAsClosure.self).function
    private static let invoke = reinterpret(InvokeAsClosure(function: call), as: InvokeAsWords.self).function

    @inline(never)
    private static func reinterpret<From, To>(_ value: From, as type: To.Type) -> To {
        precondition(MemoryLayout<From>.size == MemoryLayout<To>.size, "ClosureWords: function layouts differ")
        return withUnsafeBytes(of: value) { $0.load(as: To.self) }
    }
}
