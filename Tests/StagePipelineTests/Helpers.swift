import Dispatch
import Foundation
import StagePipeline

/// An item with a frame index different from its position, so tests can tell the two apart.
struct Item: IndexedItem, Equatable {
    var frame: Int
    var itemIndex: Int { frame }
}

struct Boom: Error, CustomStringConvertible {
    var what: String
    var description: String { "boom: \(what)" }
}

/// A lock-protected value shared between a test and pipeline threads.
final class Shared<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func with<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
    var get: T { with { $0 } }
}

/// A source of `count` items with frame indices `firstFrame...`, with hooks run before each `next()`.
final class CountingSource: Source, @unchecked Sendable {
    let name: String
    let count: Int
    let firstFrame: Int
    let produced = Shared(0)
    var beforeNext: (Int) throws -> Void = { _ in }
    var onClose: () -> Void = {}
    var onInterrupt: () -> Void = {}

    init(name: String = "src", count: Int, firstFrame: Int = 100) {
        self.name = name
        self.count = count
        self.firstFrame = firstFrame
    }

    func next() throws -> Item? {
        let n = produced.get
        try beforeNext(n)
        guard n < count else { return nil }
        produced.with { $0 += 1 }
        return Item(frame: firstFrame + n)
    }
    func interrupt() { onInterrupt() }
    func close() { onClose() }
}

/// Busy work proportional to `units` (no sleeping): makes stages of different cost.
func spin(_ units: Int) -> Int {
    var h = 1469598103934665603 as UInt64
    for i in 0..<(units * 2000) { h = (h ^ UInt64(i)) &* 1099511628211 }
    return Int(h & 1)
}

/// A sink recording what it got and how it was closed.
final class Recorder<T>: @unchecked Sendable {
    let items = Shared<[T]>([])
    let closeReason = Shared<CloseReason?>(nil)
    var onConsume: (T) throws -> Void = { _ in }

    var sink: ClosureSinkWithClose<T> { ClosureSinkWithClose(recorder: self) }
}

struct ClosureSinkWithClose<T>: Sink {
    let recorder: Recorder<T>
    var name: String { "recorder" }
    func consume(_ input: T) throws {
        try recorder.onConsume(input)
        recorder.items.with { $0.append(input) }
    }
    func close(_ reason: CloseReason) throws { recorder.closeReason.with { $0 = reason } }
}
