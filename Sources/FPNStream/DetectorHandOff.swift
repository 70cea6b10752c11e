import Foundation

/// Hands out one already-built detector once (to the first stream).
public final class DetectorHandOff: @unchecked Sendable {
    private var detector: (any FrameDetector)?
    private let lock = NSLock()
    public init(_ d: any FrameDetector) { detector = d }
    /// The detector the first time, nil after.
    public func take() -> (any FrameDetector)? { lock.lock(); defer { lock.unlock() }; let d = detector; detector = nil; return d }
}
