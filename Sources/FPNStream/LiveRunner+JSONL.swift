import FPNCore
import Foundation
import MediaIO
import StagePipeline

/// Writes JSON objects as lines, each `{"type": ..., ...}` in one `write(2)`, so a reader (or a kill) only ever sees
/// whole lines. Thread-safe: frame lines, event lines and the stats timer of several streams share one writer.
final class JSONLLineWriter: @unchecked Sendable {
    private let handle: FileHandle
    private let ownsHandle: Bool
    private let lock = NSLock()
    private let encoder: JSONEncoder
    private var closed = false
    /// The output as printed (credentials redacted).
    let output: String

    /// `location` is a file path (created or truncated) or `-` for stdout.
    init(location: String) throws {
        output = redactCredentials(location)
        if location == "-" {
            handle = FileHandle.standardOutput
            ownsHandle = false
        } else {
            let url = URL(fileURLWithPath: location)
            guard FileManager.default.createFile(atPath: url.path, contents: nil),
                  let h = FileHandle(forWritingAtPath: url.path) else {
                throw MediaIOError.outputOpenFailed(output: output, reason: "cannot create file")
            }
            handle = h
            ownsHandle = true
        }
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    }

    /// Writes `{"type":"<type>", ...fields of body}` and a newline. Errors (disk full, closed pipe) are dropped
    /// silently after the first, which is reported on stderr: a live run keeps going.
    func write<T: Encodable>(type: String, _ body: T) {
        guard let data = try? encoder.encode(body), data.first == UInt8(ascii: "{") else { return }
        var line = Data("{\"type\":\"\(type)\"".utf8)
        if data.count > 2 { line.append(UInt8(ascii: ",")) }
        line.append(data.dropFirst())
        line.append(UInt8(ascii: "\n"))
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        do { try handle.write(contentsOf: line) } catch {
            if !failed { FileHandle.standardError.write(Data("fpnstream: \(output): write failed: \(error)\n".utf8)) }
            failed = true
        }
    }

    private var failed = false

    /// Flushes to disk and closes (idempotent).
    func close() {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        try? handle.synchronize()
        if ownsHandle { try? handle.close() }
    }
}

/// Any record with a `stream` number added (which input of `tail` it belongs to, 0-based).
struct StreamTagged<Body: Encodable>: Encodable {
    let stream: Int
    let body: Body
    enum Key: String, CodingKey { case stream }
    func encode(to encoder: Encoder) throws {
        try body.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(stream, forKey: .stream)
    }
}

/// Milliseconds rounded to 0.01 and seconds to µs, so lines stay short and diffable.
@inline(__always) func roundMs(_ x: Double) -> Double { (x * 100).rounded() / 100 }
@inline(__always) func roundS(_ x: Double) -> Double { (x * 1_000_000).rounded() / 1_000_000 }

/// A `frame` line of `tail` (docs/jsonl.md): the frame, its detections, capture time and end-to-end latency.
struct LiveFrameRecord: Encodable {
    struct DetectionRecord: Encodable {
        var box: [Float]
        var score: Float
        var classID: Int
        var className: String
        var trackID: Int?
        enum CodingKeys: String, CodingKey {
            case box, score, classID = "class_id", className = "class", trackID = "track_id"
        }
    }

    var stream: Int
    var source: String
    var index: Int
    var pts: Double
    var wallTime: Double
    var latencyMs: Double
    var width: Int
    var height: Int
    var detections: [DetectionRecord]
    var timingsMs: [String: Double]

    enum CodingKeys: String, CodingKey {
        case stream, source, index, pts, width, height, detections
        case wallTime = "wall_time", latencyMs = "latency_ms", timingsMs = "timings_ms"
    }

    init(stream: Int, result: FrameResult, latencyMs: Double) {
        let i = result.info
        self.stream = stream
        source = i.source
        index = i.index
        pts = roundS(i.pts)
        wallTime = roundS(i.wallTime)
        self.latencyMs = roundMs(latencyMs)
        width = i.width
        height = i.height
        detections = result.detections.map {
            DetectionRecord(box: [$0.box.x1, $0.box.y1, $0.box.x2, $0.box.y2], score: $0.score, classID: $0.classID,
                            className: $0.className, trackID: $0.trackID)
        }
        timingsMs = result.timingsMs.mapValues(roundMs)
    }
}

/// A `stats` line (docs/jsonl.md): counters since the start, latency over the last interval (or the whole run when
/// `final`).
struct StatsRecord: Encodable {
    struct Latency: Encodable {
        var count: Int
        var p50: Double
        var p95: Double
        var max: Double
        var mean: Double
    }

    var stream: Int
    var source: String
    var wallTime: Double
    var connected: Bool
    var final: Bool
    var intervalS: Double
    var frames: Int
    var processed: Int
    var dropped: Int
    var decodeErrors: Int
    var damagedSkipped: Int
    var skippedByRate: Int
    var connections: Int
    var disconnects: Int
    var reconnects: Int
    var fps: Double
    var latencyMs: Latency

    enum CodingKeys: String, CodingKey {
        case stream, source, connected, final, frames, processed, dropped, connections, disconnects, reconnects, fps
        case wallTime = "wall_time", intervalS = "interval_s", decodeErrors = "decode_errors"
        case damagedSkipped = "damaged_skipped", skippedByRate = "skipped_by_rate", latencyMs = "latency_ms"
    }

    init(_ x: (LiveStreamStatus, LatencyHistogram, Double, Bool)) {
        let (s, h, seconds, final) = x
        stream = s.stream
        source = s.source
        wallTime = roundS(Date().timeIntervalSince1970)
        connected = s.connected
        self.final = final
        intervalS = roundMs(seconds)
        frames = s.live.frames
        processed = s.processed
        dropped = s.dropped
        decodeErrors = s.live.decodeErrors
        damagedSkipped = s.live.damagedFramesSkipped
        skippedByRate = s.live.skippedByRate
        connections = s.live.connections
        disconnects = s.live.disconnects
        reconnects = s.live.reconnects
        fps = seconds > 0 ? roundMs(Double(h.count) / seconds) : 0
        latencyMs = Latency(count: h.count, p50: roundMs(h.percentile(0.5)), p95: roundMs(h.percentile(0.95)),
                            max: roundMs(h.maxMs), mean: roundMs(h.meanMs))
    }
}
