import FPNCore
import FPNStream
import Foundation
import Outputs
import StagePipeline
import TemporalReuse

/// Camera status as JSON, and camera specs from JSON request bodies (docs/api/openapi.yaml).
enum CameraJSON {
    /// A request body that is not a valid camera.
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    /// The keys a body may have.
    static let keys = ["url", "pipeline", "model", "temporal", "max_fps", "loop", "outputs"]

    /// `{"url": "...", "pipeline": "...", "model": "...", "temporal": "delta", "max_fps": 5, "loop": false,
    ///   "outputs": {"jsonl": "...", "video": "..."}}`; only `url` is required.
    static func spec(id: String, body: [UInt8]) throws -> CameraSpec {
        guard CameraSpec.isValidID(id) else { throw Invalid(description: "camera id '\(id)': use letters, digits, - and _ (at most 64)") }
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: Data(body)) } catch {
            throw Invalid(description: "body is not valid JSON")
        }
        guard let o = any as? [String: Any] else { throw Invalid(description: "body must be a JSON object") }
        for k in o.keys.sorted() where !keys.contains(k) {
            let hint = suggestedWord(for: k, among: keys).map { " (did you mean '\($0)'?)" } ?? ""
            throw Invalid(description: "unknown key '\(k)'\(hint); known keys: \(keys.joined(separator: ", "))")
        }
        guard let url = o["url"] as? String, !url.isEmpty else { throw Invalid(description: "'url' (a string) is required") }
        do { _ = try SecretExpansion.expand(url) } catch { throw Invalid(description: "url: \(error)") }
        var s = CameraSpec(id: id, url: url)
        s.pipeline = try string(o, "pipeline")
        s.model = try string(o, "model")
        if let t = try string(o, "temporal") {
            guard let mode = TemporalMode(rawValue: t) else {
                throw Invalid(description: "temporal: expected one of off, keyframe, delta, got \"\(t)\"")
            }
            s.temporal = TemporalSettings(mode: mode)
        }
        if let v = o["max_fps"] {
            guard let n = v as? NSNumber, !isBool(n), n.doubleValue >= 0, n.doubleValue.isFinite else {
                throw Invalid(description: "max_fps: expected a number ≥ 0")
            }
            s.maxFPS = n.doubleValue > 0 ? n.doubleValue : nil
        }
        if let v = o["loop"] {
            guard let n = v as? NSNumber, isBool(n) else { throw Invalid(description: "loop: expected true or false") }
            s.loop = n.boolValue
        }
        if let v = o["outputs"] {
            guard let out = v as? [String: Any] else { throw Invalid(description: "outputs: expected an object") }
            for k in out.keys.sorted() where k != "jsonl" && k != "video" {
                throw Invalid(description: "outputs: unknown key '\(k)' (known: jsonl, video)")
            }
            s.jsonl = try string(out, "jsonl", in: "outputs.")
            s.video = try string(out, "video", in: "outputs.")
        }
        return s
    }

    /// JSON `true`/`false` (a numeric 0 or 1 also converts to `Bool` with `as?`, so the type tells them apart).
    private static func isBool(_ n: NSNumber) -> Bool {
        String(cString: n.objCType) == "c"
    }

    /// A spec as a request body (the inverse of `spec(id:body:)` for specs made from bodies).
    static func body(of s: CameraSpec) -> [String: Any] {
        var o: [String: Any] = ["url": s.url]
        if let p = s.pipeline { o["pipeline"] = p }
        if let m = s.model { o["model"] = m }
        if let t = s.temporal { o["temporal"] = t.mode.rawValue }
        if let f = s.maxFPS { o["max_fps"] = f }
        if s.loop { o["loop"] = true }
        var out: [String: Any] = [:]
        if let j = s.jsonl { out["jsonl"] = j }
        if let v = s.video { out["video"] = v }
        if !out.isEmpty { o["outputs"] = out }
        return o
    }

    private static func string(_ o: [String: Any], _ key: String, in prefix: String = "") throws -> String? {
        guard let v = o[key], !(v is NSNull) else { return nil }
        guard let s = v as? String, !s.isEmpty else { throw Invalid(description: "\(prefix)\(key): expected a non-empty string") }
        return s
    }

    /// One camera's status object.
    static func write(_ s: CameraStatus, into j: inout JSONBuffer) {
        j.beginObject()
        j.key("id"); j.string(s.id)
        j.key("source"); j.string(s.source)
        j.key("state"); j.string(s.state.rawValue)
        j.key("connected"); j.bool(s.live?.connected ?? false)
        if let e = s.lastError { j.key("last_error"); j.string(redactCredentials(e)) }
        j.key("fps"); j.number(s.fps, decimals: 2)
        let live = s.live
        j.key("frames_in"); j.int(live?.live.frames ?? 0)
        j.key("processed"); j.int(live?.processed ?? 0)
        j.key("dropped"); j.int(live?.dropped ?? 0)
        j.key("queue_depth"); j.int(s.inFlight)
        j.key("decode_errors"); j.int(live?.live.decodeErrors ?? 0)
        j.key("reconnects"); j.int(live?.live.reconnects ?? 0)
        if let r = live?.recomputedMean {
            j.key("recomputed_mean"); j.number(r, decimals: 4)
            j.key("repeated_frames"); j.int(live?.repeatedFrames ?? 0)
            if let regions = live?.regionReuse, !regions.isEmpty {
                j.key("region_reuse"); j.write(JSONLRecord.regionReuseTally(regions))
            }
        }
        j.key("latency_ms"); percentiles(live?.latency, into: &j)
        j.key("inference_ms"); percentiles(s.inference, into: &j)
        if let p = s.pipeline { j.key("pipeline"); j.string(p) }
        if let m = s.model { j.key("model"); j.string(m) }
        if let f = s.maxFPS { j.key("max_fps"); j.number(f, decimals: 3) }
        j.key("started_at"); j.number(s.startedAt.timeIntervalSince1970, decimals: 3)
        j.endObject()
    }

    private static func percentiles(_ h: LatencyHistogram?, into j: inout JSONBuffer) {
        j.beginObject()
        j.key("count"); j.int(h?.count ?? 0)
        j.key("p50"); j.number(h?.percentile(0.5) ?? 0, decimals: 2)
        j.key("p95"); j.number(h?.percentile(0.95) ?? 0, decimals: 2)
        j.endObject()
    }
}
