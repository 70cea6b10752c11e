import TemporalReuse
import Foundation
import StagePipeline
import Tracking
import Vision
import Yams

extension PipelineSpec {
    /// Reads and validates a pipeline file. Errors name the file (and line and key path where there is one).
    public static func load(path: String) throws -> PipelineSpec {
        let text: String
        do {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
            guard size <= PipelineLimits.maxFileBytes else {
                throw PipelineSpecError(file: path, line: nil, keyPath: "",
                                        message: "file of \(size) bytes is larger than the limit of \(PipelineLimits.maxFileBytes)")
            }
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let s = String(data: data, encoding: .utf8) else {
                throw PipelineSpecError(file: path, line: nil, keyPath: "", message: "not UTF-8 text")
            }
            text = s
        } catch let e as PipelineSpecError {
            throw e
        } catch {
            var isDir: ObjCBool = false
            let reason: String
            if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) { reason = "no such file" }
            else if isDir.boolValue { reason = "is a directory, not a pipeline file" }
            else { reason = "cannot read: \(error.localizedDescription)" }
            throw PipelineSpecError(file: path, line: nil, keyPath: "", message: reason)
        }
        var spec = try parse(yaml: text, file: path)
        if spec.name == nil { spec.name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }
        return spec
    }

    /// Parses pipeline YAML; `file` is only used in error messages.
    public static func parse(yaml: String, file: String = "<pipeline>") throws -> PipelineSpec {
        let root: Node?
        if let line = PipelineLimits.lineTooDeep(yaml) {
            throw PipelineSpecError(file: file, line: line, keyPath: "",
                                    message: "nesting deeper than \(PipelineLimits.maxDepth) levels")
        }
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let e as YamlError {
            throw SpecReader(file: file).yamlError(e)
        }
        var spec = PipelineSpec()
        guard let root, !root.isNull else { return spec }  // an empty file: all defaults
        let r = SpecReader(file: file)
        let top = try r.map(root, "")
        try top.check(["name", "input", "model", "temporal", "tracker", "outputs"])
        if let n = top["name"] { spec.name = try r.string(n, "name") }
        if let n = top["input"], !n.isNull { spec.input = try r.input(n) }
        if let n = top["model"], !n.isNull { spec.model = try r.model(n) }
        if let n = top["temporal"], !n.isNull { spec.temporal = try r.temporal(n) }
        if let n = top["tracker"] { spec.tracker = try r.tracker(n) }
        if let n = top["outputs"], !n.isNull { spec.outputs = try r.outputs(n) }
        return spec
    }
}

/// Walks the YAML node tree, turning each problem into a `PipelineSpecError` with file, line and key path (also
/// used by `serve`'s camera file, so both name problems the same way).
public struct SpecReader {
    public let file: String

    public init(file: String) { self.file = file }

    public func fail(_ node: Node?, _ path: String, _ message: String) -> PipelineSpecError {
        PipelineSpecError(file: file, line: node?.mark?.line, keyPath: path, message: message)
    }

    public func yamlError(_ e: YamlError) -> PipelineSpecError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            let ctx = context.map { " \($0.text)" } ?? ""
            return PipelineSpecError(file: file, line: mark.line, keyPath: "",
                                     message: "invalid YAML: \(problem)\(ctx) (column \(mark.column))")
        default:
            return PipelineSpecError(file: file, line: nil, keyPath: "", message: "invalid YAML: \(e)")
        }
    }

    // MARK: sections

    func input(_ node: Node) throws -> InputSpec {
        let m = try map(node, "input")
        try m.check(["stride", "max_fps", "max_frames", "live"])
        var s = InputSpec()
        if let n = m["stride"] { s.stride = try int(n, "input.stride", min: 1) }
        if let n = m["max_fps"] { s.maxFPS = try double(n, "input.max_fps", min: 0) }
        if let n = m["max_frames"] { s.maxFrames = try int(n, "input.max_frames", min: 0) }
        if let n = m["live"], !n.isNull {
            let l = try map(n, "input.live")
            try l.check(["drop_policy", "queue_size", "reconnect"])
            if let n = l["drop_policy"] { s.live.dropPolicy = try choice(n, "input.live.drop_policy", LiveDropPolicy.self) }
            if let n = l["queue_size"] {
                let size = try int(n, "input.live.queue_size", min: 1, max: PipelineLimits.maxQueueSize)
                if s.live.dropPolicy == .keepLatest && size != 1 {
                    throw fail(n, "input.live.queue_size", "keep-latest keeps exactly one frame; use drop-oldest with "
                               + "queue_size \(size)")
                }
                s.live.queueSize = size
            }
            if let n = l["reconnect"], !n.isNull {
                var rc = ReconnectSpec()
                if let b = n.scalar.flatMap(Bool.construct) {
                    rc.enabled = b  // `reconnect: false`
                } else {
                    let p = "input.live.reconnect"
                    let r = try map(n, p)
                    try r.check(["enabled", "initial_delay", "max_delay", "max_attempts", "io_timeout"])
                    if let n = r["enabled"] { rc.enabled = try bool(n, "\(p).enabled") }
                    if let n = r["initial_delay"] { rc.initialDelay = try double(n, "\(p).initial_delay", min: 0) }
                    if let n = r["max_delay"] { rc.maxDelay = try double(n, "\(p).max_delay", min: 0) }
                    if let n = r["max_attempts"] { rc.maxAttempts = try int(n, "\(p).max_attempts", min: 0) }
                    if let n = r["io_timeout"] { rc.ioTimeout = try double(n, "\(p).io_timeout", min: 0.001) }
                    if rc.maxDelay < rc.initialDelay {
                        throw fail(r["max_delay"] ?? n, "\(p).max_delay",
                                   "must not be less than initial_delay (\(rc.initialDelay))")
                    }
                }
                s.live.reconnect = rc
            }
        }
        return s
    }

    public func model(_ node: Node) throws -> ModelSpec {
        if node.scalar != nil {  // `model: path/to/model.safetensors`
            return ModelSpec(path: try nonEmptyString(node, "model"))
        }
        let m = try map(node, "model")
        try m.check(["path", "score", "nms", "max_detections", "mask_threshold", "min_size", "max_size", "classes", "kind",
                     "input_scale"])
        guard let pathNode = m["path"] else { throw fail(node, "model", "missing key 'path' (the model file)") }
        var s = ModelSpec(path: try nonEmptyString(pathNode, "model.path"))
        if let n = m["score"] { s.score = try unit(n, "model.score") }
        if let n = m["nms"] { s.nms = try unit(n, "model.nms") }
        if let n = m["max_detections"] { s.maxDetections = try int(n, "model.max_detections", min: 1, max: PipelineLimits.maxDetections) }
        if let n = m["mask_threshold"] { s.maskThreshold = try unit(n, "model.mask_threshold") }
        if let n = m["min_size"] { s.minSize = try int(n, "model.min_size", min: 1, max: PipelineLimits.maxImageSide) }
        if let n = m["max_size"] { s.maxSize = try int(n, "model.max_size", min: 1, max: PipelineLimits.maxImageSide) }
        if let lo = s.minSize, let hi = s.maxSize, hi < lo {
            throw fail(m["max_size"], "model.max_size", "must not be less than min_size (\(lo))")
        }
        if let n = m["classes"], !n.isNull { s.classes = try stringList(n, "model.classes") }
        if let n = m["kind"] { s.kind = try choice(n, "model.kind", ModelKind.self) }
        if let n = m["input_scale"] {
            let v = try double(n, "model.input_scale", min: 0.1)
            guard v <= 8 else { throw fail(n, "model.input_scale", "must be at most 8, got \(v)") }
            s.inputScale = v
        }
        return s
    }

    /// `temporal:` → `TemporalSettings`; `temporal: off|keyframe|delta|auto` alone sets the mode.
    public func temporal(_ node: Node) throws -> TemporalSpec {
        var s = TemporalSpec()
        if node.scalar != nil {
            s.mode = try choice(node, "temporal", TemporalMode.self)
            return s
        }
        let m = try map(node, "temporal")
        try m.check(["mode", "threshold", "layer_thresholds", "refresh_interval", "keyframe_interval", "dense_fallback",
                     "tile", "input_threshold", "input_block", "frame_fallback", "deep_tile", "gate_outputs",
                     "guard", "guard_target", "guard_score", "guard_interval"])
        if let n = m["mode"] { s.mode = try choice(n, "temporal.mode", TemporalMode.self) }
        if let n = m["threshold"] { s.threshold = Float(try double(n, "temporal.threshold", min: 0)) }
        if let n = m["layer_thresholds"], !n.isNull {
            let l = try map(n, "temporal.layer_thresholds")
            try l.check(l.entries.map(\.key))  // duplicates only; the names are checked against the model's layers
            for e in l.entries {
                s.layerThresholds[e.key] = Float(try double(e.value, "temporal.layer_thresholds.\(e.key)", min: 0))
            }
        }
        if let n = m["refresh_interval"] { s.refreshInterval = try int(n, "temporal.refresh_interval", min: 0) }
        if let n = m["keyframe_interval"] { s.keyframeInterval = try int(n, "temporal.keyframe_interval", min: 1) }
        if let n = m["dense_fallback"] { s.denseFallback = try fraction(n, "temporal.dense_fallback") }
        if let n = m["tile"] { s.tile = try int(n, "temporal.tile", min: 1, max: PipelineLimits.maxImageSide) }
        if let n = m["input_threshold"], !n.isNull { s.inputThreshold = Float(try double(n, "temporal.input_threshold", min: 0)) }
        if let n = m["input_block"] { s.inputBlock = try int(n, "temporal.input_block", min: 1, max: PipelineLimits.maxImageSide) }
        if let n = m["frame_fallback"] { s.frameFallback = try fraction(n, "temporal.frame_fallback") }
        if let n = m["deep_tile"] { s.deepTile = try int(n, "temporal.deep_tile", min: 0, max: PipelineLimits.maxImageSide) }
        if let n = m["gate_outputs"] { s.gateOutputs = try bool(n, "temporal.gate_outputs") }
        if let n = m["guard"] { s.accuracyGuard.enabled = try bool(n, "temporal.guard") }
        if let n = m["guard_target"] { s.accuracyGuard.targetF1 = try fraction(n, "temporal.guard_target") }
        if let n = m["guard_score"] { s.accuracyGuard.minScore = Float(try fraction(n, "temporal.guard_score")) }
        if let n = m["guard_interval"] {
            s.accuracyGuard.interval = try int(n, "temporal.guard_interval", min: 0, max: 1_000_000)
        }
        return s
    }

    /// ByteTrack keys (see `ByteTrackConfig`); `tracker:` alone means ByteTrack's defaults, `tracker: off` none.
    func tracker(_ node: Node) throws -> ByteTrackConfig? {
        if node.isNull { return ByteTrackConfig() }
        if let s = node.scalar {
            switch s.string.lowercased() {
            case "off", "false", "no", "none": return nil
            case "on", "true", "yes", "bytetrack": return ByteTrackConfig()
            default: throw fail(node, "tracker", "expected a mapping of ByteTrack parameters or 'off', got \(describe(node))")
            }
        }
        let m = try map(node, "tracker")
        let keys = ["track_thresh", "track_high_thresh", "track_low_thresh", "new_track_thresh", "match_thresh",
                    "second_match_thresh", "unconfirmed_match_thresh", "duplicate_thresh", "track_buffer",
                    "frame_rate", "min_box_area", "fuse_score", "class_aware", "output_detection_box",
                    "removed_history"]
        try m.check(keys)
        if m["track_thresh"] != nil && m["track_high_thresh"] != nil {
            throw fail(m["track_high_thresh"], "tracker.track_high_thresh", "is another name for track_thresh; give one")
        }
        var c = ByteTrackConfig()
        func f(_ k: String) throws -> Float? { try m[k].map { Float(try double($0, "tracker.\(k)")) } }
        func d(_ k: String) throws -> Double? { try m[k].map { try double($0, "tracker.\(k)") } }
        if let v = try f("track_thresh") ?? f("track_high_thresh") { c.trackThresh = v }
        if let v = try f("track_low_thresh") { c.trackLowThresh = v }
        // ByteTrack derives the start threshold from track_thresh unless it is given.
        c.newTrackThresh = try f("new_track_thresh") ?? min(1, c.trackThresh + 0.1)
        if let v = try d("match_thresh") { c.matchThresh = v }
        if let v = try d("second_match_thresh") { c.secondMatchThresh = v }
        if let v = try d("unconfirmed_match_thresh") { c.unconfirmedMatchThresh = v }
        if let v = try d("duplicate_thresh") { c.duplicateThresh = v }
        if let n = m["track_buffer"] { c.trackBuffer = try int(n, "tracker.track_buffer", max: PipelineLimits.maxHistoryFrames) }
        if let v = try d("frame_rate") { c.frameRate = v }
        if let v = try f("min_box_area") { c.minBoxArea = v }
        if let n = m["fuse_score"] { c.fuseScore = try bool(n, "tracker.fuse_score") }
        if let n = m["class_aware"] { c.classAware = try bool(n, "tracker.class_aware") }
        if let n = m["output_detection_box"] { c.outputDetectionBox = try bool(n, "tracker.output_detection_box") }
        if let n = m["removed_history"] { c.removedHistory = try int(n, "tracker.removed_history", max: PipelineLimits.maxHistoryFrames) }
        do {
            try c.validate()
        } catch let e as ByteTrackConfig.InvalidValue {
            let key = e.key == "track_thresh" && m["track_high_thresh"] != nil ? "track_high_thresh" : e.key
            throw fail(m[key] ?? node, "tracker.\(key)", e.reason)
        }
        return c
    }

    func outputs(_ node: Node) throws -> OutputsSpec {
        let m = try map(node, "outputs")
        try m.check(["video", "jsonl", "mot", "coco", "panoptic", "jsonl_masks", "annotate"])
        var s = OutputsSpec()
        if let n = m["video"], !n.isNull { s.video = try nonEmptyString(n, "outputs.video") }
        if let n = m["jsonl"], !n.isNull { s.jsonl = try nonEmptyString(n, "outputs.jsonl") }
        if let n = m["mot"], !n.isNull { s.mot = try nonEmptyString(n, "outputs.mot") }
        if let n = m["coco"], !n.isNull { s.coco = try nonEmptyString(n, "outputs.coco") }
        if let n = m["panoptic"], !n.isNull { s.panoptic = try nonEmptyString(n, "outputs.panoptic") }
        if let n = m["jsonl_masks"] { s.jsonlMasks = try bool(n, "outputs.jsonl_masks") }
        if let n = m["annotate"], !n.isNull {
            let p = "outputs.annotate"
            let a = try map(n, p)
            try a.check(["boxes", "labels", "masks", "mask_alpha", "trails", "stuff", "anonymize", "anonymize_classes",
                         "font_scale"])
            var t = AnnotateSpec()
            if let n = a["boxes"] { t.boxes = try bool(n, "\(p).boxes") }
            if let n = a["labels"] { t.labels = try bool(n, "\(p).labels") }
            if let n = a["masks"] { t.masks = try bool(n, "\(p).masks") }
            if let n = a["mask_alpha"] { t.maskAlpha = try unit(n, "\(p).mask_alpha") }
            if let n = a["trails"] {
                // `trails: true` = 30 frames, `false` = off, or a frame count.
                if let b = n.scalar.flatMap(Bool.construct) { t.trails = b ? 30 : 0 }
                else { t.trails = try int(n, "\(p).trails", min: 0, max: PipelineLimits.maxHistoryFrames) }
            }
            if let n = a["stuff"] { t.stuff = try bool(n, "\(p).stuff") }
            if let n = a["anonymize"] { t.anonymize = try choice(n, "\(p).anonymize", AnnotateSpec.Anonymize.self) }
            if let n = a["anonymize_classes"] { t.anonymizeClasses = try stringList(n, "\(p).anonymize_classes") }
            if let n = a["font_scale"] { t.fontScale = try int(n, "\(p).font_scale", min: 0, max: PipelineLimits.maxFontScale) }
            s.annotate = t
        }
        return s
    }

    // MARK: typed values

    /// A mapping's entries by key, remembering the key nodes for line numbers.
    public struct Mapping {
        let reader: SpecReader
        let node: Node
        let path: String
        public let entries: [(key: String, keyNode: Node, value: Node)]

        public subscript(_ key: String) -> Node? { entries.first { $0.key == key }?.value }

        /// Unknown keys (with a "did you mean" suggestion) and duplicate keys are errors.
        public func check(_ allowed: [String]) throws {
            var seen = Set<String>()
            for e in entries {
                if !seen.insert(e.key).inserted {
                    throw reader.fail(e.keyNode, path, "duplicate key '\(e.key)'")
                }
                guard allowed.contains(e.key) else {
                    let hint: String
                    if let s = SpecReader.suggestion(for: e.key, among: allowed) { hint = "did you mean '\(s)'?" }
                    else { hint = "known keys: \(allowed.joined(separator: ", "))" }
                    throw reader.fail(e.keyNode, path, "unknown key '\(e.key)' (\(hint))")
                }
            }
        }
    }

    public func map(_ node: Node, _ path: String) throws -> Mapping {
        guard let m = node.mapping else {
            throw fail(node, path, "expected a mapping (key: value lines), got \(describe(node))")
        }
        var entries: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let key = k.scalar?.string else { throw fail(k, path, "keys must be plain words") }
            entries.append((key, k, v))
        }
        return Mapping(reader: self, node: node, path: path, entries: entries)
    }

    public func double(_ node: Node, _ path: String, min lo: Double? = nil) throws -> Double {
        guard let s = node.scalar, let v = Double.construct(from: s), v.isFinite else {
            throw fail(node, path, "expected a number, got \(describe(node))")
        }
        if let lo, v < lo { throw fail(node, path, "must be ≥ \(format(lo)), got \(s.string)") }
        return v
    }

    func unit(_ node: Node, _ path: String) throws -> Float { Float(try fraction(node, path)) }

    /// A number in [0, 1], kept in double precision.
    func fraction(_ node: Node, _ path: String) throws -> Double {
        let v = try double(node, path)
        guard v >= 0, v <= 1 else { throw fail(node, path, "must be in [0, 1], got \(node.scalar!.string)") }
        return v
    }

    public func int(_ node: Node, _ path: String, min lo: Int? = nil, max hi: Int? = nil) throws -> Int {
        guard let s = node.scalar, let v = SpecReader.wholeNumber(s) else {
            if let s = node.scalar, Double.construct(from: s) != nil {
                throw fail(node, path, "expected a whole number, got \(s.string)")
            }
            throw fail(node, path, "expected a whole number, got \(describe(node))")
        }
        if let lo, v < lo { throw fail(node, path, "must be ≥ \(lo), got \(v)") }
        if let hi, v > hi { throw fail(node, path, "must be ≤ \(hi) (limit), got \(v)") }
        return v
    }

    /// A YAML 1.1 integer as Yams reads it (decimal, `0x`/`0o`/`0b`/leading-zero octal, `_` separators), nil when
    /// it is not one or does not fit. The base-60 form (`1:30` = 90) is read here, every part a decimal number and
    /// every step overflow-checked: Yams multiplies its parts unchecked (a long `1:1:1:…` traps) and skips the parts
    /// that are not numbers.
    static func wholeNumber(_ scalar: Node.Scalar) -> Int? {
        guard scalar.style == .any || scalar.style == .plain else { return nil }
        var text = Substring(scalar.string.replacingOccurrences(of: "_", with: ""))
        guard text.contains(":") else { return Int.construct(from: scalar) }
        let negative = text.hasPrefix("-")
        if negative || text.hasPrefix("+") { text = text.dropFirst() }
        var value = 0
        for part in text.split(separator: ":", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.allSatisfy({ $0.isASCII && $0.isNumber }), let digit = Int(part) else { return nil }
            let (shifted, o1) = value.multipliedReportingOverflow(by: 60)
            let (sum, o2) = shifted.addingReportingOverflow(digit)
            if o1 || o2 { return nil }
            value = sum
        }
        return negative ? -value : value
    }

    public func bool(_ node: Node, _ path: String) throws -> Bool {
        guard let s = node.scalar, let v = Bool.construct(from: s) else {
            throw fail(node, path, "expected true or false, got \(describe(node))")
        }
        return v
    }

    public func string(_ node: Node, _ path: String) throws -> String {
        guard let s = node.scalar else { throw fail(node, path, "expected a string, got \(describe(node))") }
        return s.string
    }

    public func nonEmptyString(_ node: Node, _ path: String) throws -> String {
        let s = try string(node, path)
        guard !s.trimmingCharacters(in: .whitespaces).isEmpty else { throw fail(node, path, "must not be empty") }
        return s
    }

    public func stringList(_ node: Node, _ path: String) throws -> [String] {
        guard let seq = node.sequence else {
            throw fail(node, path, "expected a list like [a, b], got \(describe(node))")
        }
        return try seq.enumerated().map { try string($1, "\(path)[\($0)]") }
    }

    /// An enumeration by its raw spelling. Uses the scalar's text, so YAML 1.1's `off`/`no` stay words.
    public func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ path: String, _: E.Type) throws -> E
    where E.RawValue == String {
        let names = E.allCases.map(\.rawValue)
        guard let s = node.scalar, let v = E(rawValue: s.string) else {
            var hint = ""
            if let s = node.scalar, let near = SpecReader.suggestion(for: s.string, among: names) {
                hint = " (did you mean '\(near)'?)"
            }
            throw fail(node, path, "expected one of \(names.joined(separator: ", ")), got \(describe(node))\(hint)")
        }
        return v
    }

    public func describe(_ node: Node) -> String {
        if let s = node.scalar {
            if s.style == .plain, Double.construct(from: s) != nil || Bool.construct(from: s) != nil { return s.string }
            if node.isNull { return "nothing (null)" }
            // Long scalars are cut: the message must stay one readable line.
            return s.string.count > 60 ? "\"\(s.string.prefix(60))…\"" : "\"\(s.string)\""
        }
        if node.mapping != nil { return "a mapping" }
        if node.sequence != nil { return "a list" }
        return "an alias"
    }

    private func format(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : String(v) }

    /// The closest allowed word when it is plausibly a typo (edit distance ≤ 2, and less than half the word).
    static func suggestion(for word: String, among allowed: [String]) -> String? {
        let scored = allowed.map { ($0, editDistance(word.lowercased(), $0)) }.min { $0.1 < $1.1 }
        guard let (best, d) = scored, d <= 2, d * 2 < max(word.count, best.count) else { return nil }
        return best
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = prev
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}

/// The word of `allowed` that `word` is plausibly a typo of (edit distance ≤ 2 and less than half the word), or nil.
public func suggestedWord(for word: String, among allowed: [String]) -> String? {
    SpecReader.suggestion(for: word, among: allowed)
}

extension Node {
    public var isNull: Bool {
        guard let s = scalar else { return false }
        return s.style == .plain && (s.string.isEmpty || s.string == "~" || s.string == "null" || s.string == "Null"
            || s.string == "NULL")
    }
}
