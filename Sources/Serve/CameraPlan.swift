import FPNCore
import FPNStream
import Foundation
import MediaIO
import Outputs
import Tracking

/// A camera's `CameraSpec` turned into `LiveRunOptions`: its pipeline file with the camera's overrides, the model
/// from the shared cache, its own outputs, and live settings suited to a server (keep retrying a camera that is not
/// up yet; reconnect forever).
struct CameraPlan {
    var options: LiveRunOptions
    /// The model the camera runs (nil: none).
    var model: ModelSpec?

    /// Throws a configuration error (`PipelineSpecError` naming the pipeline file and key, or the camera).
    init(spec: CameraSpec, models: ModelCache) throws {
        let file = spec.pipeline ?? "cameras.\(spec.id)"
        var pipeline = PipelineSpec()
        if let p = spec.pipeline { pipeline = try PipelineSpec.load(path: p) }
        if let m = spec.model {
            if pipeline.model == nil { pipeline.model = ModelSpec(path: m) } else { pipeline.model?.path = m }
        }
        if let t = spec.temporal { pipeline.temporal = t }
        // Everything but the model as `process` and `tail` read it; the model comes from the shared cache.
        var run = RunOptions(input: "")
        var modelless = pipeline
        modelless.model = nil
        try run.apply(modelless, file: file)

        let url: String
        do { url = try SecretExpansion.expand(spec.url) } catch {
            throw PipelineSpecError(file: "camera \(spec.id)", line: nil, keyPath: "url", message: "\(error)")
        }
        var o = LiveRunOptions(inputs: [url])
        o.tracker = run.tracker
        o.jsonlOptions = run.jsonlOptions
        o.annotation = run.annotation
        o.trails = run.trails
        o.temporal = run.temporal
        let detector = try pipeline.model.map { try models.detector(for: $0, pipelineFile: file) } ?? NoDetector()
        do { _ = try withTemporal(detector, o.temporal) } catch {
            throw PipelineSpecError(file: file, line: nil, keyPath: "temporal", message: "\(error)")
        }
        o.makeDetector = { detector }  // one stream: called once
        model = pipeline.model
        o.jsonl = spec.jsonl.map { $0.replacingOccurrences(of: "{camera}", with: spec.id) }
        o.output = spec.video.map { $0.replacingOccurrences(of: "{camera}", with: spec.id) }
        o.lineFields = [("camera", .string(spec.id))]
        o.promptStop = true  // a stop (SIGTERM, removal) waits for one inference per camera at most

        let live = pipeline.input.live
        o.dropPolicy = live.dropPolicy.queuePolicy
        o.queueCapacity = live.effectiveQueueSize
        o.source.retryInitialConnect = true
        o.source.stallTimeout = live.reconnect.ioTimeout
        o.source.reconnect = ReconnectPolicy(initialDelay: live.reconnect.initialDelay, maxDelay: live.reconnect.maxDelay,
                                             maxAttempts: live.reconnect.maxAttempts > 0 ? live.reconnect.maxAttempts : nil)
        o.source.frameStride = pipeline.input.stride
        let maxFPS = spec.maxFPS ?? (pipeline.input.maxFPS > 0 ? pipeline.input.maxFPS : nil)
        o.source.minFrameInterval = maxFPS.map { 1 / $0 }
        o.source.paceToTimestamps = spec.loop
        options = o
    }
}

/// The JSON payloads `serve` publishes: the JSONL line objects (docs/jsonl.md) with `camera` added.
enum CameraMessages {
    /// The frame line (without its newline).
    static func frame(_ r: FrameResult, camera: String, latencyMs: Double, options: JSONLRecord.Options) -> [UInt8] {
        trimmed(JSONLRecord.frame(r, options: options, fields: [("camera", .string(camera)),
                                                                 ("latency_ms", .number(latencyMs, decimals: 2))]))
    }

    /// A connection event as its JSONL event line.
    static func event(_ e: LiveEvent, camera: String) -> [UInt8] {
        trimmed(e.jsonlLine(fields: [("camera", .string(camera))]))
    }

    /// `track_started` / `track_ended` with the track's id, class and box (source pixels).
    static func track(_ e: TrackEvent, camera: String, frame r: FrameResult) -> [UInt8] {
        let name = e.kind == .started ? "track_started" : "track_ended"
        var fields: [(String, JSONLRecord.Value)] = [("camera", .string(camera)), ("track_id", .int(e.trackID)),
                                                     ("class_id", .int(e.classID))]
        if let d = r.detections.first(where: { $0.trackID == e.trackID }) { fields.append(("class", .string(d.className))) }
        fields.append(("box", .object([("x1", .number(Double(e.box.x1), decimals: 1)), ("y1", .number(Double(e.box.y1), decimals: 1)),
                                       ("x2", .number(Double(e.box.x2), decimals: 1)), ("y2", .number(Double(e.box.y2), decimals: 1))])))
        return trimmed(JSONLRecord.event(name, source: r.info.source, wallTime: r.info.wallTime, frame: e.frameIndex,
                                         fields: fields))
    }

    private static func trimmed(_ line: [UInt8]) -> [UInt8] { line.last == 0x0A ? Array(line.dropLast()) : line }
}
