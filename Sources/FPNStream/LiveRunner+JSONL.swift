import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline
import Tensor

/// The JSONL lines of `tail` (docs/jsonl.md "Live streams"), built with `JSONLRecord` and written by one shared
/// `JSONLWriter` (one `write(2)` per line, thread-safe). Every line carries `stream`, the input's position.
/// A failed write (disk full, closed stdout) is reported once on stderr; the streams keep running.
final class LiveJSONL: @unchecked Sendable {
    private let writer: JSONLWriter
    private let lock = NSLock()
    private var failed = false
    /// Added to every frame and event line.
    private let fields: [(String, JSONLRecord.Value)]

    init(path: String, options: JSONLRecord.Options, fields: [(String, JSONLRecord.Value)] = []) throws {
        writer = try JSONLWriter(path: path, options: options)
        self.fields = fields
    }

    func frame(stream: Int, _ result: FrameResult, latencyMs: Double) {
        write { try writer.writeFrame(result, fields: fields + [("stream", .int(stream)),
                                                                ("latency_ms", .number(latencyMs, decimals: 2))]) }
    }

    func event(stream: Int, _ e: LiveEvent) {
        let line = e.jsonlLine(fields: fields + [("stream", .int(stream))])
        write { try writer.writeLine(line) }
    }

    /// A periodic `stats` line: counters since the start, latency and fps over the last `seconds`.
    func stats(_ s: LiveStreamStatus, window: LatencyHistogram, seconds: Double, stages: [StageMetrics]) {
        let fps = seconds > 0 ? Double(window.count) / seconds : 0
        let line = JSONLRecord.stats(source: s.source, wallTime: Date().timeIntervalSince1970, frames: s.live.frames,
                                     fps: fps, stages: stages,
                                     fields: Self.liveFields(s, latency: window) + [("interval_s", .number(seconds, decimals: 3))]
                                         + Self.temporalFields(s))
        write { try writer.writeLine(line) }
    }

    /// The `summary` line of one stream, written last: the whole run.
    func summary(_ s: LiveStreamStatus, report: PipelineReport) {
        let line = JSONLRecord.summary(source: s.source, wallTime: Date().timeIntervalSince1970, frames: s.processed,
                                       report: report, fields: Self.liveFields(s, latency: s.latency)
                                           + [("compute", .string(Compute.path.rawValue)), ("precision", .string(Compute.precision.rawValue))]
                                           + Self.temporalFields(s))
        write { try writer.writeLine(line) }
    }

    func close() { write { try writer.close() } }

    /// With temporal reuse on: `recomputed_mean`, `repeated_frames` and (R-CNN models in delta) `region_reuse` so far.
    static func temporalFields(_ s: LiveStreamStatus) -> [(String, JSONLRecord.Value)] {
        guard let mean = s.recomputedMean else { return [] }
        return [("recomputed_mean", .number(mean, decimals: 4)), ("repeated_frames", .int(s.repeatedFrames))]
            + (s.regionReuse.isEmpty ? [] : [("region_reuse", JSONLRecord.regionReuseTally(s.regionReuse))])
    }

    static func liveFields(_ s: LiveStreamStatus, latency h: LatencyHistogram) -> [(String, JSONLRecord.Value)] {
        [("stream", .int(s.stream)), ("connected", .bool(s.connected)), ("processed", .int(s.processed)),
         ("dropped", .int(s.dropped)), ("decode_errors", .int(s.live.decodeErrors)),
         ("damaged_skipped", .int(s.live.damagedFramesSkipped)), ("skipped_by_rate", .int(s.live.skippedByRate)),
         ("connections", .int(s.live.connections)), ("disconnects", .int(s.live.disconnects)),
         ("reconnects", .int(s.live.reconnects)),
         ("latency_ms", .object([("count", .int(h.count)), ("p50", .number(h.percentile(0.5), decimals: 2)),
                                 ("p95", .number(h.percentile(0.95), decimals: 2)),
                                 ("max", .number(h.maxMs, decimals: 2)), ("mean", .number(h.meanMs, decimals: 2))]))]
    }

    private func write(_ body: () throws -> Void) {
        do { try body() } catch {
            lock.lock(); let first = !failed; failed = true; lock.unlock()
            if first { FileHandle.standardError.write(Data("fpnstream: \(redactCredentials("\(error)"))\n".utf8)) }
        }
    }
}

extension LiveEvent {
    /// The event's JSONL line (docs/jsonl.md "Live streams"), `fields` first among the extra fields.
    public func jsonlLine(fields: [(String, JSONLRecord.Value)]) -> [UInt8] {
        var all = fields + [("next_frame", .int(nextIndex))]
        if let a = attempt { all.append(("attempt", .int(a))) }
        if let d = delaySeconds { all.append(("delay_s", .number(d, decimals: 3))) }
        if let g = gapSeconds { all.append(("gap_s", .number(g, decimals: 3))) }
        if let n = framesInSession { all.append(("frames_in_session", .int(n))) }
        if let v = video { all.append(("video", .string(v))) }
        return JSONLRecord.event(event.rawValue, source: source, wallTime: wallTime,
                                 frame: nextIndex > 0 ? nextIndex - 1 : nil, message: reason, fields: all)
    }
}
