import Foundation
import Synchronization

/// A per-input stop switch for libavformat's blocking calls (`avformat_open_input`, `avformat_find_stream_info`,
/// `av_read_frame`), polled through `DecoderOptions.interrupt`, which the decoder installs as the format context's
/// `interrupt_callback` (a C function pointer whose `opaque` is the decoder's state object).
///
/// Without it a frozen server (process stopped, cable pulled, NAT entry gone) blocks `av_read_frame` forever: TCP
/// never reports an error and RTSP's own `timeout` option only covers some of the calls. libavformat polls the callback
/// every few milliseconds while it waits; returning 1 makes the pending call fail with `AVERROR_EXIT`.
///
/// Two reasons to interrupt:
/// - **deadline**: `arm(seconds:)` before each blocking call; once the monotonic clock passes it, the call is aborted
///   and `reason` becomes `.stalled(seconds)`.
/// - **cancel**: `cancel()` (from any thread, e.g. a SIGTERM handler) aborts the current and every later call at once
///   and `reason` becomes `.cancelled`.
///
/// Thread-safe: the callback runs on the thread doing I/O, `cancel()` on any other; state lives in atomics.
public final class InterruptDeadline: Sendable {
    /// Why the last interrupted call was stopped.
    public enum Reason: Sendable, Equatable {
        /// Not interrupted.
        case none
        /// No progress within the armed deadline (seconds).
        case stalled(Double)
        /// `cancel()` was called.
        case cancelled
    }

    /// Monotonic nanoseconds after which calls are aborted; `Int64.max` = disarmed.
    private let deadlineNanos = Atomic<Int64>(Int64.max)
    /// The armed duration in milliseconds (for the `.stalled` reason).
    private let armedMillis = Atomic<Int64>(0)
    private let cancelledFlag = Atomic<Bool>(false)
    private let firedFlag = Atomic<Bool>(false)

    public init() {}

    /// Monotonic clock in nanoseconds (CLOCK_MONOTONIC: never jumps with wall-clock changes).
    @inline(__always) static func nowNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Starts a deadline of `seconds` from now for the next blocking call(s). Resets `reason` unless cancelled.
    public func arm(seconds: Double) {
        let ns = Int64((seconds * 1e9).rounded())
        armedMillis.store(Int64((seconds * 1000).rounded()), ordering: .relaxed)
        firedFlag.store(false, ordering: .relaxed)
        deadlineNanos.store(Self.nowNanos() &+ max(0, ns), ordering: .releasing)
    }

    /// No deadline (cancel still works).
    public func disarm() {
        deadlineNanos.store(Int64.max, ordering: .releasing)
        firedFlag.store(false, ordering: .relaxed)
    }

    /// Aborts the pending and all later blocking calls. Idempotent; cannot be undone.
    public func cancel() { cancelledFlag.store(true, ordering: .releasing) }

    /// True once `cancel()` was called.
    public var isCancelled: Bool { cancelledFlag.load(ordering: .acquiring) }

    /// What the callback decided most recently.
    public var reason: Reason {
        if isCancelled { return .cancelled }
        if firedFlag.load(ordering: .acquiring) {
            return .stalled(Double(armedMillis.load(ordering: .relaxed)) / 1000)
        }
        return .none
    }

    /// The callback's decision: true = abort the blocking call now.
    public func shouldInterrupt() -> Bool {
        if cancelledFlag.load(ordering: .acquiring) { return true }
        if Self.nowNanos() >= deadlineNanos.load(ordering: .acquiring) {
            firedFlag.store(true, ordering: .releasing)
            return true
        }
        return false
    }
}
