import FPNCore
import StagePipeline

/// Builders for the lines of the per-frame JSONL output (schema documented in docs/jsonl.md and
/// docs/jsonl.schema.json). Every line is one JSON object with `"type"` (`frame`, `event`, `stats`, `summary`) and
/// `"schema"` (the version, `JSONLRecord.schemaVersion`), ending in a newline.
public enum JSONLRecord {
    /// Version of the line format; bumped on incompatible changes (new optional fields do not bump it).
    public static let schemaVersion = 1

    /// What frame lines contain besides the required fields.
    public struct Options: Sendable, Equatable {
        /// Include instance masks (`detections[].mask`, COCO RLE); they dominate line size when present.
        public var masks: Bool
        /// Include panoptic segments when the model produced them.
        public var panoptic: Bool
        /// Include per-stage timings (`timings_ms`).
        public var timings: Bool

        public init(masks: Bool = true, panoptic: Bool = true, timings: Bool = true) {
            self.masks = masks
            self.panoptic = panoptic
            self.timings = timings
        }
    }

    /// A value for the free-form fields of event, stats and summary lines.
    public indirect enum Value: Sendable, Equatable {
        case string(String)
        case int(Int)
        /// A number written with at most `decimals` decimals (NaN/inf → null).
        case number(Double, decimals: Int)
        case bool(Bool)
        case null
        case array([Value])
        case object([(String, Value)])

        public static func == (a: Value, b: Value) -> Bool {
            var x = JSONBuffer(), y = JSONBuffer()
            x.write(a); y.write(b)
            return x.bytes == y.bytes
        }
    }

    /// One `"type":"frame"` line for `result`; `fields` are appended (e.g. `tail`'s `stream` and `latency_ms`).
    public static func frame(_ result: FrameResult, options: Options = Options(),
                             fields: [(String, Value)] = []) -> [UInt8] {
        var j = JSONBuffer(capacity: 256 + result.detections.count * 96)
        j.beginObject()
        header(&j, type: "frame", source: result.info.source, wallTime: result.info.wallTime)
        j.key("frame"); j.int(result.info.index)
        j.key("pts"); j.number(result.info.pts, decimals: 6)
        j.key("width"); j.int(result.info.width)
        j.key("height"); j.int(result.info.height)
        j.key("detections")
        j.beginArray()
        for d in result.detections { detection(&j, d, masks: options.masks) }
        j.endArray()
        if options.panoptic, let segments = result.panoptic {
            j.key("panoptic")
            j.beginArray()
            for s in segments {
                j.beginObject()
                j.key("id"); j.int(s.id)
                j.key("category_id"); j.int(s.categoryID)
                j.key("category"); j.string(s.categoryName)
                j.key("is_thing"); j.bool(s.isThing)
                j.key("area"); j.int(s.area)
                if let score = s.score { j.key("score"); j.number(score, decimals: 4) }
                j.key("mask"); mask(&j, s.mask)
                j.endObject()
            }
            j.endArray()
        }
        if let r = result.recomputedFraction { j.key("recomputed"); j.number(r, decimals: 4) }
        if result.repeated { j.key("repeated"); j.bool(true) }
        if !result.regionReuse.isEmpty { j.key("region_reuse"); regionReuse(&j, result.regionReuse) }
        if let g = result.temporalGuard { j.key("temporal_guard"); temporalGuard(&j, g) }
        if options.timings && !result.timingsMs.isEmpty {
            j.key("timings_ms")
            j.beginObject()
            for (k, v) in result.timingsMs.sorted(by: { $0.key < $1.key }) { j.key(k); j.number(v, decimals: 3) }
            j.endObject()
        }
        for (k, v) in fields { j.key(k); j.write(v) }
        j.endObject()
        j.newline()
        return j.bytes
    }

    /// One `"type":"event"` line: something happened to the stream (`connected`, `disconnected`, `reconnected`,
    /// `decode_error`, ...). `frame` is the last frame index delivered before the event, when known.
    public static func event(_ name: String, source: String, wallTime: Double, frame: Int? = nil,
                             message: String? = nil, fields: [(String, Value)] = []) -> [UInt8] {
        var j = JSONBuffer()
        j.beginObject()
        header(&j, type: "event", source: source, wallTime: wallTime)
        j.key("event"); j.string(name)
        if let frame { j.key("frame"); j.int(frame) }
        if let message { j.key("message"); j.string(message) }
        for (k, v) in fields { j.key(k); j.write(v) }
        j.endObject()
        j.newline()
        return j.bytes
    }

    /// One `"type":"stats"` line: periodic progress of a running pipeline (`frames` delivered so far, current `fps`,
    /// per-stage metrics).
    public static func stats(source: String, wallTime: Double, frames: Int, fps: Double, stages: [StageMetrics],
                             fields: [(String, Value)] = []) -> [UInt8] {
        var j = JSONBuffer()
        j.beginObject()
        header(&j, type: "stats", source: source, wallTime: wallTime)
        j.key("frames"); j.int(frames)
        j.key("fps"); j.number(fps, decimals: 2)
        j.key("stages"); stageArray(&j, stages)
        for (k, v) in fields { j.key(k); j.write(v) }
        j.endObject()
        j.newline()
        return j.bytes
    }

    /// The `"type":"summary"` line written last: how the run ended, frame count, wall time, per-stage metrics.
    public static func summary(source: String, wallTime: Double, frames: Int, report: PipelineReport,
                               fields: [(String, Value)] = []) -> [UInt8] {
        var j = JSONBuffer()
        j.beginObject()
        header(&j, type: "summary", source: source, wallTime: wallTime)
        j.key("frames"); j.int(frames)
        j.key("completion")
        switch report.completion {
        case .finished: j.string("finished")
        case .drained: j.string("cancelled")
        case .aborted: j.string("aborted")
        case .failed(let e): j.string("failed"); j.key("error"); j.string(e.description)
        }
        j.key("wall_seconds"); j.number(report.wallSeconds, decimals: 3)
        j.key("stages"); stageArray(&j, report.stages)
        for (k, v) in fields { j.key(k); j.write(v) }
        j.endObject()
        j.newline()
        return j.bytes
    }

    // MARK: pieces

    private static func header(_ j: inout JSONBuffer, type: String, source: String, wallTime: Double) {
        j.key("type"); j.string(type)
        j.key("schema"); j.int(schemaVersion)
        j.key("source"); j.string(redactCredentials(source))
        j.key("wall_time"); j.number(wallTime, decimals: 6)
    }

    private static func detection(_ j: inout JSONBuffer, _ d: Detection, masks: Bool) {
        j.beginObject()
        j.key("box")
        j.beginArray()
        j.number(d.box.x1, decimals: 2); j.number(d.box.y1, decimals: 2)
        j.number(d.box.x2, decimals: 2); j.number(d.box.y2, decimals: 2)
        j.endArray()
        j.key("score"); j.number(d.score, decimals: 4)
        j.key("class_id"); j.int(d.classID)
        j.key("class"); j.string(d.className)
        if let t = d.trackID { j.key("track_id"); j.int(t) }
        if masks, let m = d.mask { j.key("mask"); mask(&j, m) }
        if let points = d.landmarks {
            j.key("landmarks")
            j.beginArray()
            for p in points {
                j.beginArray(); j.number(p.x, decimals: 2); j.number(p.y, decimals: 2); j.endArray()
            }
            j.endArray()
        }
        if let kps = d.keypoints {
            // COCO's flat [x1, y1, v1, x2, ...] and the heatmap score of each.
            j.key("keypoints")
            j.beginArray()
            for k in kps { j.number(k.x, decimals: 2); j.number(k.y, decimals: 2); j.int(k.visibility) }
            j.endArray()
            j.key("keypoint_scores")
            j.beginArray()
            for k in kps { j.number(k.score, decimals: 4) }
            j.endArray()
        }
        j.endObject()
    }

    /// A run's `region_reuse` (summary and stats lines, `serve`'s camera status): per head the summed counts and
    /// `fraction` = reused / total.
    public static func regionReuseTally(_ counts: [String: RegionReuseCount]) -> Value {
        .object(counts.sorted { $0.key < $1.key }.map { head, c in
            (head, .object([("reused", .int(c.reused)), ("total", .int(c.total)),
                            ("fraction", .number(c.total > 0 ? Double(c.reused) / Double(c.total) : 0, decimals: 4))]))
        })
    }

    /// `{"box":{"reused":R,"total":N},...}`, heads by name.
    private static func regionReuse(_ j: inout JSONBuffer, _ counts: [String: RegionReuseCount]) {
        j.beginObject()
        for (head, c) in counts.sorted(by: { $0.key < $1.key }) {
            j.key(head)
            j.beginObject(); j.key("reused"); j.int(c.reused); j.key("total"); j.int(c.total); j.endObject()
        }
        j.endObject()
    }

    /// The accuracy guard's decision on a verified frame.
    private static func temporalGuard(_ j: inout JSONBuffer, _ g: TemporalGuardRecord) {
        j.beginObject()
        j.key("action"); j.string(g.action)
        if let v = g.group { j.key("group"); j.string(v) }
        for (k, v) in [("f1", g.f1), ("mask_iou", g.maskIoU), ("pyramid_error", g.pyramidError),
                       ("pooled_f1", g.pooledF1), ("pooled_mask_iou", g.pooledMaskIoU),
                       ("probe_recomputed", g.probeRecomputed)] {
            if let v { j.key(k); j.number(v, decimals: 6) }
        }
        j.key("scales")
        j.beginObject()
        for (k, v) in g.scales { j.key(k); j.number(v, decimals: 6) }
        j.endObject()
        if let n = g.note { j.key("note"); j.string(n) }
        j.endObject()
    }

    /// `{"size":[h,w],"counts":"<pycocotools compressed string>"}`, as `pycocotools.mask.decode` expects.
    static func mask(_ j: inout JSONBuffer, _ m: MaskRLE) {
        j.beginObject()
        j.key("size"); j.beginArray(); j.int(m.height); j.int(m.width); j.endArray()
        j.key("counts"); j.string(m.cocoString)
        j.endObject()
    }

    private static func stageArray(_ j: inout JSONBuffer, _ stages: [StageMetrics]) {
        j.beginArray()
        for s in stages {
            j.beginObject()
            j.key("name"); j.string(s.name)
            j.key("count"); j.int(s.count)
            j.key("filtered"); j.int(s.filtered)
            j.key("drops"); j.int(s.drops)
            j.key("mean_ms"); j.number(s.meanMs, decimals: 3)
            j.key("p50_ms"); j.number(s.p50Ms, decimals: 3)
            j.key("p95_ms"); j.number(s.p95Ms, decimals: 3)
            j.key("max_queue"); j.int(s.maxQueueDepth)
            j.endObject()
        }
        j.endArray()
    }
}

extension JSONBuffer {
    /// Writes a free-form value.
    public mutating func write(_ v: JSONLRecord.Value) {
        switch v {
        case .string(let s): string(s)
        case .int(let i): int(i)
        case .number(let d, let decimals): number(d, decimals: decimals)
        case .bool(let b): bool(b)
        case .null: null()
        case .array(let a): beginArray(); for x in a { write(x) }; endArray()
        case .object(let o): beginObject(); for (k, x) in o { key(k); write(x) }; endObject()
        }
    }
}
