import CFFmpeg
import FPNCore
import Foundation

/// RTP transport for RTSP sources.
public enum RTSPTransport: String, Sendable, CaseIterable {
    /// RTP interleaved in the RTSP TCP connection: no loss, passes NAT/firewalls (default).
    case tcp
    /// RTP over UDP: lowest latency, packets may be lost (lost slices → damaged frames, skipped and counted).
    case udp
}

/// How a live source connects, detects stalls and reconnects.
public struct LiveSourceOptions: Sendable {
    /// RTSP transport (ignored for other protocols).
    public var rtspTransport: RTSPTransport = .tcp
    /// Seconds allowed for connecting and probing the stream (`avformat_open_input` + stream info).
    public var openTimeout: Double = 10
    /// Watchdog: no decodable frame for this many seconds → the connection counts as stalled and is dropped.
    public var stallTimeout: Double = 5
    /// When and how often to reconnect.
    public var reconnect = ReconnectPolicy()
    /// Low-latency input: small probe (`probesize`, `analyzeduration`),
    /// `flags low_delay` on the decoder (which also turns off frame threading and its frames of delay).
    public var lowLatency = true
    /// Forces a demuxer (e.g. `"v4l2"`); nil: probed, and `v4l2` for `/dev/video*` paths.
    public var inputFormat: String?
    /// More demuxer/protocol options (AVDictionary), applied last (they override the ones above).
    public var formatOptions: [String: String] = [:]
    /// Size of the delivered RGB images; nil keeps the native size.
    public var outputSize: PixelSize?
    /// Damaged frames are counted and not delivered: a frame the decoder flags (`decode_error_flags`,
    /// `AV_FRAME_FLAG_CORRUPT`) or that follows a rejected packet, and every frame after it until the next keyframe
    /// (they reference the damaged picture).
    public var skipDamagedFrames = true
    /// Deliver at most one frame per this many seconds of stream time (`--max-fps`); skipped frames are never
    /// converted to RGB. nil: every frame.
    public var minFrameInterval: Double?
    /// Deliver every `frameStride`-th good frame (1 = all); the others are skipped before RGB conversion.
    public var frameStride = 1
    /// Keep retrying when the very first connection fails (camera still booting). Default false: a source that
    /// never connected is reported as an error at once (most likely a wrong URL); after one good connection,
    /// outages are always retried per `reconnect`.
    public var retryInitialConnect = false
    /// Deliver frames no faster than their timestamps (a file read as if it were a camera; with reconnects on end
    /// of stream it loops). Live sources arrive in real time anyway.
    public var paceToTimestamps = false

    public init() {}

    /// Rejects values that make no sense, naming the option.
    public func validate() throws {
        guard openTimeout > 0, openTimeout.isFinite else { throw LiveSourceError.badOption("open timeout must be > 0 s") }
        guard stallTimeout > 0, stallTimeout.isFinite else { throw LiveSourceError.badOption("stall timeout must be > 0 s") }
        guard frameStride >= 1 else { throw LiveSourceError.badOption("frame stride must be at least 1") }
        if let m = minFrameInterval, !(m >= 0) { throw LiveSourceError.badOption("max fps must be > 0") }
        try reconnect.validate()
    }
}

/// Errors of live sources that are not about one connection (those become `disconnected` events instead).
public enum LiveSourceError: Error, CustomStringConvertible, Equatable {
    /// An option value is invalid.
    case badOption(String)
    /// The first connection failed and `retryInitialConnect` is off.
    case connectFailed(source: String, reason: String)
    /// `reconnect.maxAttempts` consecutive attempts failed (source redacted, last reason).
    case gaveUp(source: String, attempts: Int, lastReason: String)

    public var description: String {
        switch self {
        case .badOption(let m): return "invalid live option: \(m)"
        case .connectFailed(let s, let r): return r.hasPrefix(s) ? r : "\(s): cannot connect: \(r)"
        case .gaveUp(let s, let n, let r): return "\(s): gave up after \(n) reconnect attempt\(n == 1 ? "" : "s") (last: \(r))"
        }
    }
}

/// A change of a live source's connection state. Written as a JSONL line with `"type": "event"` (docs/jsonl.md).
public struct LiveEvent: Sendable, Equatable, Codable {
    /// What happened.
    public enum Kind: String, Sendable, Codable {
        /// A connection is open and the stream probed (first time and after every successful reconnect attempt).
        case connected
        /// The connection ended: `reason` says why (end of stream, stalled, read error).
        case disconnected
        /// Waiting `delaySeconds` before reconnect attempt `attempt` (`reason`: why the previous attempt failed).
        case reconnecting
        /// The first frame after an outage arrived; `gapSeconds` is the wall-clock time since the last frame before it.
        case reconnected
        /// Reconnect attempts are exhausted; the source ends.
        case gaveUp = "gave_up"
        /// The very first connection failed and `retryInitialConnect` is off; the source ends (`reason` says why).
        case connectFailed = "connect_failed"
    }

    public var event: Kind
    /// Source as printed in outputs (credentials redacted).
    public var source: String
    /// Wall-clock time of the event, seconds since the Unix epoch.
    public var wallTime: Double
    /// Index the next delivered frame will get (frame indices continue across reconnects).
    public var nextIndex: Int
    public var reason: String?
    public var attempt: Int?
    public var delaySeconds: Double?
    public var gapSeconds: Double?
    /// Frames delivered by the connection that just ended (`disconnected`).
    public var framesInSession: Int?
    /// For `connected`: codec, size and frame rate, e.g. `"h264 320x240 25/1"`.
    public var video: String?

    enum CodingKeys: String, CodingKey {
        case event, source, reason, attempt, video
        case wallTime = "wall_time", nextIndex = "next_index", delaySeconds = "delay_s", gapSeconds = "gap_s"
        case framesInSession = "frames_in_session"
    }

    public init(event: Kind, source: String, wallTime: Double, nextIndex: Int, reason: String? = nil,
                attempt: Int? = nil, delaySeconds: Double? = nil, gapSeconds: Double? = nil,
                framesInSession: Int? = nil, video: String? = nil) {
        self.event = event
        self.source = source
        self.wallTime = wallTime
        self.nextIndex = nextIndex
        self.reason = reason
        self.attempt = attempt
        self.delaySeconds = delaySeconds
        self.gapSeconds = gapSeconds
        self.framesInSession = framesInSession
        self.video = video
    }
}

/// Counters of one live source since it started.
public struct LiveSourceStats: Sendable, Equatable {
    /// Frames delivered to the caller.
    public var frames = 0
    /// Packets/frames the decoder rejected plus damaged frames skipped (not delivered).
    public var decodeErrors = 0
    /// Of `decodeErrors`: decoded frames skipped because the decoder flagged them damaged.
    public var damagedFramesSkipped = 0
    /// Successful connections (1 + reconnects).
    public var connections = 0
    /// Connections that ended (end of stream, stall, read error).
    public var disconnects = 0
    /// Connect attempts that failed.
    public var failedAttempts = 0
    /// Outages that ended with a frame (each one `reconnected` event).
    public var reconnects = 0
    /// Good frames not delivered because of `frameStride` or `minFrameInterval` (max fps).
    public var skippedByRate = 0
    public init() {}
}

/// One live input (RTSP, RTMP, HTTP/HLS, UDP/MPEG-TS, V4L2, ...) that keeps delivering frames across disconnects.
///
/// ```
///  connect ──▶ decode frames ──(EOF | read error | no frame for stallTimeout)──▶ disconnected
///     ▲                                                                             │
///     └──── reconnecting: backoff delay (exponential, jitter, capped; forever or N) ◀┘
/// ```
/// - Every blocking FFmpeg call runs under an `InterruptDeadline`: `openTimeout` for connecting, `stallTimeout` for
///   each frame (the watchdog). `stop()` cancels it, so a blocked read returns at once.
/// - End of stream counts as a disconnect (FFmpeg reports a server that closed the connection as a normal EOF).
/// - Frame `index` counts delivered frames and continues across reconnects; `pts` is stream time from `StreamClock`
///   (monotonic, gaps follow the wall clock); `wallTime` is the estimated capture time from `CaptureClock` (never
///   later than the decode time; frames held up before decoding show as latency).
/// - Not thread-safe except `stop()`: call `next()` from one thread.
public final class LiveSource: @unchecked Sendable {
    /// The location as given (may hold credentials: never print it; use `source`).
    private let location: String
    /// The location with credentials redacted.
    public let source: String
    public let options: LiveSourceOptions
    /// Counters so far; thread-safe (a stats timer reads them while `next()` runs).
    public var stats: LiveSourceStats { statsLock.lock(); defer { statsLock.unlock() }; return counters }
    /// The current (or last) connection's stream description; thread-safe.
    public var metadata: SourceMetadata? { statsLock.lock(); defer { statsLock.unlock() }; return currentMetadata }
    private let statsLock = NSLock()
    private var counters = LiveSourceStats()
    private var currentMetadata: SourceMetadata?
    /// Set when the source ended on its own: the first connection failed or reconnecting gave up.
    public private(set) var failure: LiveSourceError?

    private let onEvent: @Sendable (LiveEvent) -> Void
    private let deadline = InterruptDeadline()
    private let wake = NSCondition()
    private var decoder: VideoDecoder?
    private var clock = StreamClock()
    private var captureClock = CaptureClock()
    private var framesInSession = 0
    private var outageStart: Double?     // wall time of the last frame before an outage
    private var retries = 0              // reconnect attempts since the last successful connection
    private var needsDelay = false       // the next connect is a retry (backoff first)
    private var lastDecoderErrors = 0
    private var awaitingKeyframe = false
    private var goodFrames = 0            // undamaged frames decoded (for frameStride)
    private var lastDeliveredPTS: Double?   // decoder PTS of the last delivered frame (for minFrameInterval)
    private let converter: RGBConverter

    /// Prepares a live source; nothing is opened before the first `next()`. `onEvent` runs on the `next()` thread.
    public init(location: String, options: LiveSourceOptions = LiveSourceOptions(),
                onEvent: @escaping @Sendable (LiveEvent) -> Void = { _ in }) throws {
        try options.validate()
        self.location = location
        self.source = redactCredentials(location)
        self.options = options
        self.onEvent = onEvent
        self.converter = RGBConverter(outputSize: options.outputSize)
    }

    /// Stops the source from any thread: a blocked connect/read or a backoff wait returns at once; `next()` then
    /// returns nil. Idempotent.
    public func stop() {
        deadline.cancel()
        wake.lock()
        wake.broadcast()
        wake.unlock()
    }

    /// True once `stop()` was called.
    public var isStopped: Bool { deadline.isCancelled }

    /// The next good frame as RGB; blocks through disconnects and reconnects. nil after `stop()` or when reconnect
    /// attempts are exhausted (`failure` says so).
    public func next() -> Frame? {
        nextPicture().map { converter.convert($0) }
    }

    /// The next good picture, not yet converted (so frames a drop policy discards later are never converted);
    /// `info` carries the continuing index, monotonic stream time and the redacted source. Blocks like `next()`.
    public func nextPicture() -> DecodedPicture? {
        while !deadline.isCancelled {
            if decoder == nil && !connect() { return nil }
            guard let decoder else { continue }
            deadline.arm(seconds: options.stallTimeout)
            let picture = decoder.nextPicture()
            let decoderStats = decoder.stats
            let newErrors = decoderStats.decodeErrors - lastDecoderErrors
            count { $0.decodeErrors += newErrors }
            lastDecoderErrors = decoderStats.decodeErrors
            guard let picture else {
                disconnect(reason: endReason(decoderStats))
                continue
            }
            // Damage propagates through references until the next keyframe (see docs/live.md "Damaged data").
            if picture.isDamaged {
                awaitingKeyframe = true
            } else if picture.isKeyFrame {
                awaitingKeyframe = false
            } else if newErrors > 0 {
                awaitingKeyframe = true
            }
            if awaitingKeyframe && options.skipDamagedFrames {
                count { $0.decodeErrors += 1; $0.damagedFramesSkipped += 1 }
                continue
            }
            goodFrames += 1
            if options.frameStride > 1 && (goodFrames - 1) % options.frameStride != 0 {
                count { $0.skippedByRate += 1 }
                continue
            }
            if let minInterval = options.minFrameInterval, let last = lastDeliveredPTS,
               picture.info.pts - last < minInterval - 1e-6 {
                count { $0.skippedByRate += 1 }
                continue
            }
            lastDeliveredPTS = picture.info.pts
            if options.paceToTimestamps && !pace(pts: picture.info.pts) { break }
            return deliver(picture)
        }
        closeDecoder()
        return nil
    }

    /// Connects now (instead of on the first `next()`), so a wrong URL fails before anything else starts.
    /// Throws `LiveSourceError.connectFailed` (or `.gaveUp` with `retryInitialConnect`).
    public func open() throws {
        guard decoder == nil else { return }
        if !connect() {
            if let failure { throw failure }
            throw LiveSourceError.connectFailed(source: source, reason: "stopped")
        }
    }

    private func count(_ body: (inout LiveSourceStats) -> Void) {
        statsLock.lock()
        body(&counters)
        statsLock.unlock()
    }

    // MARK: - Connection state machine

    /// Opens a connection, waiting the backoff delay first when this is a retry. False: stopped or gave up.
    private func connect() -> Bool {
        while !deadline.isCancelled {
            if needsDelay {
                retries += 1
                guard options.reconnect.allows(attempt: retries) else {
                    let reason = failureReason ?? "connection lost"
                    emit(.gaveUp, reason: reason, attempt: retries - 1)
                    failure = .gaveUp(source: source, attempts: retries - 1, lastReason: reason)
                    return false
                }
                let delay = options.reconnect.delay(attempt: retries)
                emit(.reconnecting, reason: failureReason, attempt: retries, delaySeconds: rounded(delay))
                if !sleep(seconds: delay) { return false }
            }
            deadline.arm(seconds: options.openTimeout)
            do {
                let d = try VideoDecoder(location: location, options: decoderOptions())
                deadline.disarm()
                decoder = d
                lastDecoderErrors = 0
                awaitingKeyframe = false
                lastDeliveredPTS = nil
                paceOrigin = nil
                framesInSession = 0
                retries = 0
                needsDelay = false
                failureReason = nil
                count { $0.connections += 1 }
                let m = d.metadata
                statsLock.lock(); currentMetadata = m; statsLock.unlock()
                clock.nominalInterval = 1 / m.framesPerSecond
                clock.beginSession()
                captureClock.beginSession()
                let rate = m.frameRate.map { " \($0)" } ?? ""
                emit(.connected, video: "\(m.codecName) \(m.size)\(rate)")
                return true
            } catch {
                deadline.disarm()
                if deadline.isCancelled { return false }
                count { $0.failedAttempts += 1 }
                let reason = interruptedReason(during: "connect") ?? "\(error)"
                if counters.connections == 0 && !options.retryInitialConnect {
                    // A source that never worked is most likely a wrong URL: fail once, clearly.
                    emit(.connectFailed, reason: reason)
                    failure = .connectFailed(source: source, reason: reason)
                    return false
                }
                failureReason = reason
                needsDelay = true
            }
        }
        return false
    }

    /// Why the last attempt failed, for the next `reconnecting` / `gave_up` event.
    private var failureReason: String?

    private func disconnect(reason: String) {
        closeDecoder()
        if deadline.isCancelled { return }
        count { $0.disconnects += 1 }
        emit(.disconnected, reason: reason, framesInSession: framesInSession)
        failureReason = reason
        needsDelay = true
    }

    private func closeDecoder() {
        decoder?.close()
        decoder = nil
    }

    private func deliver(_ picture: DecodedPicture) -> DecodedPicture {
        var info = picture.info
        let wall = info.wallTime
        if let start = outageStart {
            count { $0.reconnects += 1 }
            emit(.reconnected, gapSeconds: rounded(wall - start))
            outageStart = nil
        }
        info.index = counters.frames
        info.pts = clock.time(pts: info.pts, wall: wall)
        info.wallTime = captureClock.captureTime(streamTime: info.pts, arrival: wall)
        info.source = source
        count { $0.frames += 1 }
        framesInSession += 1
        lastFrameWall = wall
        return picture.withInfo(info)
    }

    private var lastFrameWall: Double?

    /// The disconnect reason of a session whose decoder returned nil.
    private func endReason(_ s: DecodeStats) -> String {
        if let r = interruptedReason(during: "read") { return r }
        if let e = s.readError { return "read error: \(e)" }
        return "end of stream"
    }

    private func interruptedReason(during phase: String) -> String? {
        if case .stalled(let secs) = deadline.reason {
            return phase == "connect" ? "timeout: no answer within \(secs) s" : "stalled: no frame for \(secs) s"
        }
        return nil
    }

    private var paceOrigin: (pts: Double, wall: Double)?

    /// Waits until the wall clock reaches `pts` relative to the session's first frame; false when stopped.
    private func pace(pts: Double) -> Bool {
        let now = Date().timeIntervalSince1970
        guard let o = paceOrigin else { paceOrigin = (pts, now); return true }
        let wait = (pts - o.pts) - (now - o.wall)
        return wait <= 0 || sleep(seconds: min(wait, 1))
    }

    /// Interruptible sleep: false when `stop()` ended it.
    private func sleep(seconds: Double) -> Bool {
        let until = Date(timeIntervalSinceNow: seconds)
        wake.lock()
        defer { wake.unlock() }
        while !deadline.isCancelled && Date() < until { _ = wake.wait(until: until) }
        return !deadline.isCancelled
    }

    private func emit(_ kind: LiveEvent.Kind, reason: String? = nil, attempt: Int? = nil, delaySeconds: Double? = nil,
                      gapSeconds: Double? = nil, framesInSession: Int? = nil, video: String? = nil) {
        if kind == .disconnected, outageStart == nil { outageStart = lastFrameWall ?? Date().timeIntervalSince1970 }
        onEvent(LiveEvent(event: kind, source: source, wallTime: Date().timeIntervalSince1970, nextIndex: counters.frames,
                          reason: reason.map(redactCredentialsInText), attempt: attempt, delaySeconds: delaySeconds,
                          gapSeconds: gapSeconds, framesInSession: framesInSession, video: video))
    }

    private func rounded(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }

    // MARK: - FFmpeg options

    /// Demuxer, protocol and decoder options for this location (see docs/live.md "Options").
    func decoderOptions() -> DecoderOptions {
        var fmt: [String: String] = [:]
        let scheme = location.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        let micros = String(Int(options.stallTimeout * 1_000_000))
        switch scheme {
        case "rtsp", "rtsps":
            fmt["rtsp_transport"] = options.rtspTransport.rawValue
            fmt["timeout"] = micros          // socket I/O timeout (FFmpeg ≥ 5: `timeout`, formerly `stimeout`)
            if options.rtspTransport == .udp { fmt["max_delay"] = "200000" }  // reorder wait for late UDP packets
        case "udp", "rtp", "srt":
            fmt["overrun_nonfatal"] = "1"   // a slow consumer loses packets instead of killing the input
            fmt["fifo_size"] = "50000"
            fmt["timeout"] = micros
        case "http", "https", "rtmp", "rtmps", "tcp":
            fmt["rw_timeout"] = micros
        default:
            break
        }
        var codec: [String: String] = [:]
        if options.lowLatency {
            // Not `fflags nobuffer`: it throws away the packets read while probing, keyframe included, so the first
            // frame would wait a whole GOP longer after every (re)connect. Those few packets are decoded at once and
            // the drop policy discards what is stale.
            fmt["probesize"] = "500000"
            fmt["analyzeduration"] = "1000000"
            codec["flags"] = "low_delay"
        }
        for (k, v) in options.formatOptions { fmt[k] = v }
        var inputFormat = options.inputFormat
        if inputFormat == nil && location.hasPrefix("/dev/video") { inputFormat = "v4l2" }
        let d = deadline
        var o = DecoderOptions(outputSize: options.outputSize, formatOptions: fmt, codecOptions: codec,
                               inputFormat: inputFormat, interrupt: { d.shouldInterrupt() }, isLive: true)
        if options.lowLatency { o.threadCount = 2 }
        return o
    }
}

/// Redacts credentials of any URL inside a free-text message (FFmpeg errors sometimes quote the URL).
func redactCredentialsInText(_ text: String) -> String {
    guard text.contains("@") else { return text }
    return text.split(separator: " ", omittingEmptySubsequences: false)
        .map { redactCredentials(String($0)) }.joined(separator: " ")
}

extension DecodedPicture {
    /// The same picture (buffers moved, not copied) with new metadata.
    func withInfo(_ info: FrameInfo) -> DecodedPicture {
        guard let moved = av_frame_alloc() else { return self }
        av_frame_move_ref(moved, frame)
        return DecodedPicture(frame: moved, info: info)
    }

    /// The decoder marked this picture as a keyframe (IDR / intra): references before it no longer matter.
    var isKeyFrame: Bool { frame.pointee.key_frame != 0 }
    /// The decoder reported errors in this picture (concealed macroblocks, missing slices or references) or flagged it
    /// as not yet recovered.
    var isDamaged: Bool {
        frame.pointee.decode_error_flags != 0 || frame.pointee.flags & AV_FRAME_FLAG_CORRUPT != 0
    }
}
