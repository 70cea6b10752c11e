/// Turns a live stream's raw presentation timestamps into a stream time that only moves forward, across missing
/// PTS, jumps, wraps and reconnects. One per stream, owned by its source.
///
/// The rule (docs/live.md "Timestamps"):
/// - the first frame ever is at 0 s;
/// - within a connection, each frame advances by the PTS difference to the previous frame when that difference is
///   positive and at most the wall-clock time elapsed since the previous frame plus `tolerance` (normal playback,
///   bursts after buffering, frames lost in transit);
/// - a missing PTS, a PTS that does not advance, or that leaps further than the wall clock allows (camera clock reset,
///   33-bit MPEG-TS wrap, server restart reusing the connection) advances by `max(nominal interval, wall-clock gap)`;
/// - the first frame after a reconnect likewise advances by `max(nominal interval, wall-clock gap)`, so an outage of
///   8 s shows as 8 s of stream time and later frames keep their spacing.
/// Stream time is therefore strictly increasing, follows PTS spacing whenever PTS is plausible and tracks the wall
/// clock across gaps.
public struct StreamClock: Sendable {
    /// Expected seconds per frame (from the stream's frame rate; 1/25 when unknown).
    public var nominalInterval: Double
    /// How far PTS may run ahead of the wall clock between two frames before it counts as a jump, seconds.
    public var tolerance: Double

    private var lastOut: Double?
    private var lastRaw: Double?
    private var lastWall: Double = 0

    /// A clock for a stream with the given nominal frame interval (seconds).
    public init(nominalInterval: Double = 1.0 / 25, tolerance: Double = 1.0) {
        self.nominalInterval = nominalInterval > 0 && nominalInterval.isFinite ? nominalInterval : 1.0 / 25
        self.tolerance = tolerance
    }

    /// Call on every (re)connect: the next frame's PTS is not compared with the previous connection's.
    public mutating func beginSession() { lastRaw = nil }

    /// The stream time (seconds) of a frame with raw PTS `pts` (seconds, nil if missing) decoded at wall-clock `wall`
    /// (seconds, any monotonic origin).
    public mutating func time(pts: Double?, wall: Double) -> Double {
        defer { lastWall = wall }
        guard let last = lastOut else {
            lastOut = 0
            lastRaw = pts
            return 0
        }
        let wallGap = max(0, wall - lastWall)
        var out = last + max(nominalInterval, wallGap)
        if let pts, pts.isFinite, let prev = lastRaw {
            let d = pts - prev
            if d > 0 && d <= wallGap + tolerance { out = last + d }
        }
        lastOut = out
        lastRaw = (pts?.isFinite ?? false) ? pts : nil
        return out
    }
}

/// Estimates when a live frame was captured, from its stream time and its arrival (decode) wall time.
///
/// Network and decoder delay only ever make a frame *later*, so the smallest `arrival - streamTime` seen recently is
/// the best estimate of the offset between the stream's clock and ours: capture = that offset + stream time. The
/// minimum is taken over a sliding window (the current and the previous `window` seconds) so a camera clock that
/// runs slower than ours, or a wall-clock step, is followed within two windows, while frames piling up upstream
/// (a blocked consumer) still show as growing latency for at least a window. Reset on every (re)connect.
public struct CaptureClock: Sendable {
    /// Length of one window, seconds.
    public var window: Double
    private var currentMin: Double?
    private var previousMin: Double?
    private var windowStart: Double = 0

    public init(window: Double = 60) { self.window = window }

    /// Forget the offset (a new connection may have a new stream clock).
    public mutating func beginSession() {
        currentMin = nil
        previousMin = nil
    }

    /// Estimated capture wall time (seconds, Unix epoch) of a frame at `streamTime` that arrived at `arrival`;
    /// never later than `arrival`.
    public mutating func captureTime(streamTime: Double, arrival: Double) -> Double {
        let offset = arrival - streamTime
        if currentMin == nil { windowStart = arrival }
        if arrival - windowStart >= window {
            previousMin = currentMin
            currentMin = nil
            windowStart = arrival
        }
        currentMin = Swift.min(currentMin ?? offset, offset)
        let best = Swift.min(currentMin!, previousMin ?? currentMin!)
        return Swift.min(arrival, best + streamTime)
    }
}
