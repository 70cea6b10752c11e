import FPNCore
import FPNStream
import Foundation
import TemporalReuse

/// Shares the cores between cameras: at most `slots` inferences run at once, and waiting cameras are served in
/// arrival order.
///
/// Each camera's inference stage is one thread holding at most one frame (keep-latest in front of it), so a camera
/// waits in the queue at most once; with first-come-first-served order every waiting camera runs before any camera
/// runs twice (round robin): no camera starves, whatever the others' frame rates. One slot is the default: one
/// inference already spreads its GEMMs over every core, so running two at once only adds contention and latency.
public final class InferenceScheduler: @unchecked Sendable {
    /// Inferences allowed at the same time.
    public let slots: Int
    private let cond = NSCondition()
    private var running = 0
    private var nextTicket = 0
    private var serving = 0          // the ticket whose turn is next

    public init(slots: Int = 1) {
        precondition(slots >= 1)
        self.slots = slots
    }

    /// Cameras waiting for a slot right now.
    public var waiting: Int { cond.lock(); defer { cond.unlock() }; return nextTicket - serving }

    /// Blocks until this caller's turn, runs `body`, then hands the slot on.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        cond.lock()
        let ticket = nextTicket
        nextTicket += 1
        while ticket != serving || running >= slots { cond.wait() }
        serving += 1
        running += 1
        cond.broadcast()  // the next ticket may fit in another free slot
        cond.unlock()
        defer {
            cond.lock()
            running -= 1
            cond.broadcast()
            cond.unlock()
        }
        return try body()
    }
}

/// A camera's detector run through the shared scheduler; reports each inference's duration (ms, the model only,
/// not the wait) to `onInference`.
struct ScheduledDetector: FrameDetector {
    var inner: any FrameDetector
    let scheduler: InferenceScheduler
    let onInference: @Sendable (Double) -> Void
    var name: String { inner.name }

    mutating func detect(_ frame: Frame, into result: inout FrameResult) throws {
        try scheduler.run {
            let start = DispatchTime.now().uptimeNanoseconds
            defer { onInference(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6) }
            try inner.detect(frame, into: &result)
        }
    }

    mutating func useTemporal(_ settings: TemporalSettings) throws { try inner.useTemporal(settings) }
}
