import TemporalReuse
import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline
import Tracking

/// A frame on its way to the sinks: its pixels (annotated in place by the annotate stage) and what the pipeline
/// found in it.
public struct AnalyzedFrame: Sendable, IndexedItem {
    /// RGB24 pixels at source size.
    public var image: RGBImage
    /// Metadata and detections (source pixels).
    public var result: FrameResult
    /// Track lifecycle changes at this frame (started, lost, refound, removed); empty without a tracker.
    public var trackEvents: [TrackEvent] = []
    public var itemIndex: Int { result.info.index }

    public init(image: RGBImage, result: FrameResult, trackEvents: [TrackEvent] = []) {
        self.image = image
        self.result = result
        self.trackEvents = trackEvents
    }
}

extension DecodedPicture: IndexedItem {
    public var itemIndex: Int { info.index }
}

extension Frame: IndexedItem {
    public var itemIndex: Int { info.index }
}

/// The stages both runners build, on either side of their own:
///
/// ```
/// source ─▶ convert ─▶ detect ─▶ [track] ─▶ (runner's stages: taps, frame limit) ─▶ [annotate ─▶ encode] ─▶ sink
///           `analysis`                                                               `video`
/// ```
/// `StreamRunner` puts its file taps (JSONL, MOT, COCO, panoptic) between the two, `LiveRunner` its frame limit.
struct StageWiring {
    /// The inference stage's detector (already given its temporal settings: `prepared`).
    var detector: any FrameDetector
    /// Per-stream tracker; nil = no tracking stage.
    var tracker: ByteTracker?
    /// Frames in inference at once (1 = one frame at a time on all cores; see `DetectWorkers`).
    var detectWorkers = 1
    /// Queue in front of conversion and inference (live: the drop policy); nil = the pipeline's default.
    var inferenceQueue: QueueOptions?
    /// Collects the per-frame recomputed fraction (temporal reuse).
    var recomputed: RecomputedTally?
    /// Collects the per-frame detector part times.
    var parts: DetectPartsTally?
    /// Prompt stop (`StreamRunner.stop()`); nil = stop drains every frame read.
    var gate: StopGate?
    /// Video output; nil = no annotate and encode stages.
    var videoWriter: VideoWriter?
    /// Draw results on the video (else the frames are encoded as decoded).
    var annotate = true
    var annotation = AnnotationStyle()
    /// Frames of track history drawn as trails (0 = none).
    var trails = 0

    /// `detector` with `temporal` applied (keyframe mode wraps it); a setting the detector cannot use is a
    /// `RunnerError.temporal`.
    static func prepared(_ detector: any FrameDetector, temporal: TemporalSettings) throws -> any FrameDetector {
        do { return try withTemporal(detector, temporal) } catch let e as TemporalConfigError {
            throw RunnerError.temporal(e.message)
        }
    }

    /// A tracker for `config` at the stream's frame rate (nil without a config).
    static func tracker(_ config: ByteTrackConfig?, frameRate: Double?) throws -> ByteTracker? {
        try config.map { try ByteTracker(config: $0.resolvingFrameRate(stream: frameRate)) }
    }

    /// Appends convert → detect → [track].
    func analysis(_ from: PipelineBuilder<DecodedPicture>) -> PipelineBuilder<AnalyzedFrame> {
        var b = from.then(ConvertStage(gate: gate), queue: inferenceQueue)
            .then(DetectStage(detector: detector, recomputed: recomputed, parts: parts, gate: gate, workers: detectWorkers), queue: inferenceQueue)
        if let tracker { b = b.then(TrackStage(tracker: tracker)) }
        return b
    }

    /// Appends [annotate] → encode when there is a video output.
    func video(_ from: PipelineBuilder<AnalyzedFrame>) -> PipelineBuilder<AnalyzedFrame> {
        guard let videoWriter else { return from }
        var b = from
        if annotate {
            b = b.then(AnnotateStage(annotator: Annotator(style: annotation),
                                     trails: trails > 0 ? TrailHistory(length: trails) : nil))
        }
        return b.tap(VideoSink(writer: videoWriter))
    }
}

/// Which decoded frames go on to analysis: every `stride`-th, at most `maxFPS` per second of stream time, at most
/// `maxFrames` in all. Skipping happens before pixel conversion, so skipped frames cost only their decode.
public struct FrameSelection: Sendable, Equatable {
    public var stride: Int
    public var maxFPS: Double
    public var maxFrames: Int?
    private var seen = 0
    private var kept = 0
    private var lastKeptPTS: Double?

    public init(stride: Int = 1, maxFPS: Double = 0, maxFrames: Int? = nil) {
        self.stride = max(1, stride)
        self.maxFPS = maxFPS
        self.maxFrames = maxFrames
    }

    /// True when no further frame can be kept.
    public var isExhausted: Bool { maxFrames.map { kept >= $0 } ?? false }

    /// Decides for the next decoded frame (call once per frame, in order).
    public mutating func keep(pts: Double) -> Bool {
        defer { seen += 1 }
        guard !isExhausted, seen % stride == 0 else { return false }
        if maxFPS > 0, let last = lastKeptPTS, pts - last < 1 / maxFPS - 1e-6 { return false }
        lastKeptPTS = pts
        kept += 1
        return true
    }
}

/// Source stage: demux + decode (no pixel conversion, so conversion overlaps decoding on the next queue).
final class DecodeSource: Source {
    let decoder: VideoDecoder
    private var selection: FrameSelection

    init(decoder: VideoDecoder, selection: FrameSelection = FrameSelection()) {
        self.decoder = decoder
        self.selection = selection
    }

    var name: String { "decode" }

    func next() throws -> DecodedPicture? {
        while !selection.isExhausted, let picture = decoder.nextPicture() {
            if selection.keep(pts: picture.info.pts) { return picture }
        }
        return nil
    }

    /// Called on cancellation (SIGINT): a blocked read returns and the stream ends.
    func interrupt() { decoder.requestStop() }
}

/// Frames in flight for a prompt stop: once `close()` is called, conversion and inference drop the frames they have
/// not started, while frames already in inference go on to every sink. Thread-safe.
final class StopGate: @unchecked Sendable {
    private let lock = NSLock()
    private var closed = false
    private var started = 0, finished = 0

    /// False once the gate is closed: the frame must be dropped.
    var isOpen: Bool { lock.lock(); defer { lock.unlock() }; return !closed }

    /// Called by inference before it starts a frame; false (drop the frame) once the gate is closed.
    func admit() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if closed { return false }
        started += 1
        return true
    }

    /// Called when an admitted frame went through every sink.
    func frameFinished() { lock.lock(); finished += 1; lock.unlock() }

    /// Closes the gate; returns the frames admitted to inference that have not reached the end yet.
    @discardableResult
    func close() -> Int {
        lock.lock(); defer { lock.unlock() }
        closed = true
        return started - finished
    }
}

/// Preprocess stage: swscale to RGB24 at source size (one context per stream, negotiated on the first frame).
struct ConvertStage: Stage {
    var converter = RGBConverter()
    /// When closed, pictures are dropped unconverted.
    var gate: StopGate?
    var name: String { "convert" }
    func process(_ input: DecodedPicture) throws -> Frame? {
        if let gate, !gate.isOpen { return nil }
        return converter.convert(input)
    }
}

/// Inference stage: the detector slot (`NoDetector` until a model is configured), on one frame at a time or, with
/// `workers`, on several frames at once (outputs still in input order).
struct DetectStage: Stage {
    var detector: any FrameDetector
    /// Collects each frame's recomputed fraction (temporal reuse) for the summary; nil = not needed.
    var recomputed: RecomputedTally?
    /// Collects each frame's per-part detector times; nil = not needed.
    var parts: DetectPartsTally?
    /// When closed, frames not yet started are dropped.
    var gate: StopGate?
    /// Frames in inference at once (`DetectWorkers`); nil = one at a time on all cores.
    var workers: DetectWorkers?
    var name: String { "detect" }
    var delaysOutputs: Bool { workers != nil }

    init(detector: any FrameDetector, recomputed: RecomputedTally? = nil, parts: DetectPartsTally? = nil,
         gate: StopGate? = nil, workers: Int = 1) {
        self.detector = detector
        self.recomputed = recomputed
        self.parts = parts
        self.gate = gate
        self.workers = DetectWorkers(detector: detector, count: workers)
        parts?.workers = self.workers?.count ?? 1
    }

    mutating func process(_ frame: Frame) throws -> AnalyzedFrame? {
        if let gate, !gate.admit() { return nil }
        if let workers {
            let out = workers.isFull ? try workers.takeOldest() : nil
            workers.submit(frame)
            return out.map(tally)
        }
        var result = FrameResult(info: frame.info)
        let start = DispatchTime.now().uptimeNanoseconds
        try detector.detect(frame, into: &result)
        result.timingsMs["detect"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return tally(AnalyzedFrame(image: frame.image, result: result))
    }

    func close(_ reason: CloseReason) throws -> [AnalyzedFrame] {
        guard let workers else { return [] }
        guard reason == .endOfStream else { workers.cancelAll(); return [] }
        var out: [AnalyzedFrame] = []
        while let f = try workers.takeOldest() { out.append(tally(f)) }
        return out
    }

    private func tally(_ frame: AnalyzedFrame) -> AnalyzedFrame {
        if let f = frame.result.recomputedFraction { recomputed?.add(f, repeated: frame.result.repeated) }
        if !frame.result.regionReuse.isEmpty { recomputed?.add(frame.result.regionReuse) }
        if let g = frame.result.temporalGuard { recomputed?.add(g) }
        parts?.add(frame.result.timingsMs)
        return frame
    }
}

/// Video sink: encodes the (annotated) frames; finalizes the container however the pipeline ends.
struct VideoSink: Sink {
    let writer: VideoWriter
    var name: String { "encode" }

    func consume(_ input: AnalyzedFrame) throws {
        try writer.write(input.image, pts: input.result.info.pts)
    }

    func close(_ reason: CloseReason) throws {
        try writer.finish()
    }
}

/// JSONL sink: one `"type":"frame"` line per frame, each a single write (whole lines only, even when killed).
/// The file stays open after the pipeline so the runner can append the summary line.
struct JSONLFrameSink: Sink {
    let writer: JSONLWriter
    var name: String { "jsonl" }
    func consume(_ input: AnalyzedFrame) throws { try writer.writeFrame(input.result) }
}

/// Tracking stage: ByteTrack on the frame's detections (per-stream state, on its own queue).
struct TrackStage: Stage {
    let tracker: ByteTracker
    var name: String { "track" }
    func process(_ input: AnalyzedFrame) throws -> AnalyzedFrame? {
        var out = input
        out.result.detections = tracker.update(detections: input.result.detections, frameIndex: input.itemIndex)
        out.trackEvents = tracker.events
        return out
    }
}

/// MOTChallenge results sink (tracked detections only).
struct MOTSink: Sink {
    let writer: MOTWriter
    var name: String { "mot" }
    func consume(_ input: AnalyzedFrame) throws {
        try writer.write(frameIndex: input.itemIndex, detections: input.result.detections)
    }
    func close(_ reason: CloseReason) throws { try writer.close() }
}

/// COCO results sink (detections as a `loadRes` array; the file appears complete at the end).
struct COCOFrameSink: Sink {
    let writer: COCOResultsWriter
    var name: String { "coco" }
    func consume(_ input: AnalyzedFrame) throws { try writer.write(input.result) }
    func close(_ reason: CloseReason) throws { try writer.close() }
}

/// COCO panoptic sink (a PNG per frame; `panoptic.json` written when the pipeline ends, also when stopped).
struct PanopticFrameSink: Sink {
    let writer: COCOPanopticWriter
    var name: String { "panoptic" }
    func consume(_ input: AnalyzedFrame) throws { try writer.write(input.result) }
    func close(_ reason: CloseReason) throws { try writer.close() }
}

/// Annotation stage: draws boxes, labels, track ids, masks and trails on the frame (for the video output only).
struct AnnotateStage: Stage {
    let annotator: Annotator
    let trails: TrailHistory?
    var name: String { "annotate" }
    func process(_ input: AnalyzedFrame) throws -> AnalyzedFrame? {
        var out = input
        let t = trails?.update(with: input.result.detections) ?? [:]
        annotator.draw(input.result, on: &out.image, trails: t)
        return out
    }
}

/// Calls `body` for every frame that went through all stages (progress reporting), in order.
struct ProgressTap: Sink {
    let body: (FrameInfo) -> Void
    var name: String { "progress" }
    func consume(_ input: AnalyzedFrame) throws { body(input.result.info) }
}

/// Per-part detector times (`detect.backbone`, `detect.rpn`, ... from each frame's `timingsMs`) over a run, for
/// `--stats` and the JSONL summary: where inference time goes, as count / mean / p50 / p95 ms per part.
public final class DetectPartsTally: @unchecked Sendable {
    private let lock = NSLock()
    private var parts: [String: StageMetrics] = [:]
    /// Forward order of the parts the detectors report; others follow by name. `heads` (a sum) is left out.
    static let order = ["transform", "backbone", "rpn", "roi_heads", "masks", "semantic", "panoptic"]
    /// Frames the detect stage runs at once (`DetectWorkers`; 1 = one frame on all cores), set when it is built.
    public internal(set) var workers = 1

    public init() {}

    func add(_ timings: [String: Double]) {
        lock.lock(); defer { lock.unlock() }
        for (k, v) in timings where k.hasPrefix("detect.") && k != "detect.heads" {
            let name = String(k.dropFirst("detect.".count))
            var m = parts[name] ?? StageMetrics(name: name)
            m.count += 1
            m.latency.record(ms: v)
            parts[name] = m
        }
    }

    /// One entry per part seen, in forward order.
    public var metrics: [StageMetrics] {
        lock.lock(); defer { lock.unlock() }
        return parts.values.sorted {
            let a = Self.order.firstIndex(of: $0.name) ?? Self.order.count
            let b = Self.order.firstIndex(of: $1.name) ?? Self.order.count
            return a != b ? a < b : $0.name < $1.name
        }
    }
}

/// Running mean of the per-frame recomputed fraction (temporal reuse) and the accuracy guard's decisions, written
/// by the detect stage and read by the summary (thread-safe).
final class RecomputedTally: @unchecked Sendable {
    private let lock = NSLock()
    private var sum = 0.0, count = 0, repeatedCount = 0
    private var guardTally: TemporalGuardSummary?
    private var regionTally: [String: RegionReuseCount] = [:]

    func add(_ fraction: Double, repeated: Bool = false) {
        lock.lock(); sum += fraction; count += 1; repeatedCount += repeated ? 1 : 0; lock.unlock()
    }

    /// Frames whose result repeated the previous frame's (`FrameResult.repeated`).
    var repeated: Int { lock.lock(); defer { lock.unlock() }; return repeatedCount }

    func add(_ record: TemporalGuardRecord) {
        lock.lock(); defer { lock.unlock() }
        var g = guardTally ?? TemporalGuardSummary()
        g.add(record)
        guardTally = g
    }

    /// The guard's decisions so far (nil: no frame was verified).
    var guardSummary: TemporalGuardSummary? { lock.lock(); defer { lock.unlock() }; return guardTally }

    /// Adds a frame's RoI regions per head (`FrameResult.regionReuse`).
    func add(_ regions: [String: RegionReuseCount]) {
        lock.lock(); regionTally.add(regions); lock.unlock()
    }

    /// RoI regions per head summed over the frames so far (empty: no head reported any).
    var regions: [String: RegionReuseCount] { lock.lock(); defer { lock.unlock() }; return regionTally }

    /// The mean over the frames seen so far; nil before any frame carried a fraction.
    var mean: Double? { lock.lock(); defer { lock.unlock() }; return count > 0 ? sum / Double(count) : nil }
}

/// The accuracy guard's decisions over a run (`--stats`, the JSONL summary's `temporal_guard`).
public struct TemporalGuardSummary: Sendable, Equatable {
    /// Verified frames (including `skip`s, whose delta pass ran densely by itself).
    public var verifications = 0
    /// Decisions by action (`hold`, `tighten`, ...).
    public var actions: [String: Int] = [:]
    /// Detection counts pooled over the verified frames.
    public var matched = 0, reference = 0, candidate = 0
    /// Threshold scales after the last decision.
    public var scales: [String] = [], scaleValues: [Double] = []

    /// Agreement F1 of the delta probes with the dense passes, pooled over the verified frames.
    public var f1: Double { reference + candidate == 0 ? 1 : 2 * Double(matched) / Double(reference + candidate) }

    /// `temporal: auto`: what the calibration chose.
    public var calibrated: String?

    mutating func add(_ r: TemporalGuardRecord) {
        if r.action == "calibrated" {
            calibrated = r.note
            return
        }
        verifications += 1
        actions[r.action, default: 0] += 1
        matched += r.matched; reference += r.reference; candidate += r.candidate
        scales = r.scales.map(\.group); scaleValues = r.scales.map(\.scale)
    }

    /// One line for the end of `process`: `guard: 12 verified, F1 0.991, tighten 1, loosen 3, scales input 1 ...`.
    public var formatted: String {
        var s = String(format: "guard: %d verified, F1 %.3f", verifications, f1)
        for (k, v) in actions.sorted(by: { $0.key < $1.key }) where k != "hold" { s += ", \(k) \(v)" }
        s += ", scales " + zip(scales, scaleValues).map { String(format: "%@ %.3g", $0.0, $0.1) }.joined(separator: " ")
        return s
    }

    /// The JSONL summary's `temporal_guard` object.
    var jsonValue: JSONLRecord.Value {
        .object([("verifications", .int(verifications)), ("f1", .number(f1, decimals: 4)),
                 ("actions", .object(actions.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
                 ("scales", .object(zip(scales, scaleValues).map { ($0.0, .number($0.1, decimals: 6)) }))]
                + (calibrated.map { [("calibrated", .string($0))] } ?? []))
    }
}
