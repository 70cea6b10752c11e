import Foundation

/// What a full queue does with a new item.
public enum DropPolicy: String, Sendable, Equatable, CaseIterable {
    /// The producer waits until there is room (backpressure). Files use this: no frame is ever dropped.
    case block
    /// The oldest queued item is discarded to make room ("keep latest"): live sources stay current.
    case dropOldest = "drop-oldest"
    /// The new item is discarded: what is already queued is kept.
    case dropNewest = "drop-newest"
}

/// A FIFO of at most `capacity` items shared by one producer and one consumer thread.
///
/// `pop()` blocks while empty. `push` blocks while full under `.block`, and drops under the other policies (counted in
/// `drops`). `close()` is end-of-stream: the consumer drains what is queued, then `pop()` returns nil. `cancel()` is
/// abort: queued items are discarded and both sides are released at once.
public final class BoundedQueue<Element>: @unchecked Sendable {
    /// The outcome of a `push`.
    public enum PushResult: Equatable, Sendable {
        /// The item was queued.
        case enqueued
        /// The item was queued after discarding the oldest queued item (`.dropOldest`).
        case droppedOldest
        /// The item itself was discarded because the queue was full (`.dropNewest`).
        case droppedNewest
        /// The queue was closed or cancelled; the item was not queued and the producer should stop.
        case rejected
    }

    /// Maximum number of queued items (≥ 1).
    public let capacity: Int
    /// What a push on a full queue does.
    public let policy: DropPolicy

    private let condition = NSCondition()
    private var ring: [Element?]
    private var head = 0
    private var count = 0
    private var closed = false
    private var cancelled = false
    private var _drops = 0
    private var _maxDepth = 0
    private var _pushed = 0

    public init(capacity: Int, policy: DropPolicy = .block) {
        precondition(capacity >= 1, "BoundedQueue capacity must be at least 1")
        self.capacity = capacity
        self.policy = policy
        self.ring = Array(repeating: nil, count: capacity)
    }

    /// Adds an item (see `DropPolicy`); returns `.rejected` once closed or cancelled.
    @discardableResult
    public func push(_ element: Element) -> PushResult {
        condition.lock()
        defer { condition.unlock() }
        while count == capacity && policy == .block && !closed && !cancelled {
            condition.wait()
        }
        if closed || cancelled { return .rejected }
        var result = PushResult.enqueued
        if count == capacity {
            switch policy {
            case .block:
                preconditionFailure("unreachable: blocked push resumed on a full queue")
            case .dropNewest:
                _drops += 1
                return .droppedNewest
            case .dropOldest:
                ring[head] = nil
                head = (head + 1) % capacity
                count -= 1
                _drops += 1
                result = .droppedOldest
            }
        }
        ring[(head + count) % capacity] = element
        count += 1
        _pushed += 1
        if count > _maxDepth { _maxDepth = count }
        condition.broadcast()
        return result
    }

    /// The oldest item; blocks while empty. `nil` after `close()` once drained, or at once after `cancel()`.
    public func pop() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while count == 0 && !closed && !cancelled {
            condition.wait()
        }
        if cancelled || count == 0 { return nil }
        let e = ring[head]
        ring[head] = nil
        head = (head + 1) % capacity
        count -= 1
        condition.broadcast()
        return e
    }

    /// End of stream: no more pushes; the consumer still receives what is queued.
    public func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// Abort: discards queued items and wakes both sides; later pushes are rejected and pops return nil.
    public func cancel() {
        condition.lock()
        cancelled = true
        for i in 0..<capacity { ring[i] = nil }
        count = 0
        condition.broadcast()
        condition.unlock()
    }

    /// Items discarded by the drop policy so far.
    public var drops: Int { condition.lock(); defer { condition.unlock() }; return _drops }
    /// The largest number of items ever queued at once (never above `capacity`).
    public var maxDepth: Int { condition.lock(); defer { condition.unlock() }; return _maxDepth }
    /// Items currently queued.
    public var depth: Int { condition.lock(); defer { condition.unlock() }; return count }
    /// Items accepted so far (including ones later discarded by `.dropOldest`).
    public var pushed: Int { condition.lock(); defer { condition.unlock() }; return _pushed }
    /// True once `cancel()` was called.
    public var isCancelled: Bool { condition.lock(); defer { condition.unlock() }; return cancelled }
}
