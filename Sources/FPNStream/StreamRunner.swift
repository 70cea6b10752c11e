import TemporalReuse
import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline
import Tensor
import Tracking
import Vision

/// What `StreamRunner` should do: one input, optional outputs, the detector slot.
public struct RunOptions {
    /// Input path or URL (any libavformat input).
    public var input: String
    /// Annotated video output: a path (container by extension), `-` (MPEG-TS on stdout) or a URL; nil = none.
    public var output: String?
    /// Per-frame JSONL output path (`-` = stdout); nil = none.
    public var jsonl: String?
    /// Stop after this many frames (nil = whole input).
    public var maxFrames: Int?
    /// Decoder settings (open options, threads, interrupt hook).
    public var decoder = DecoderOptions()
    /// Encoder settings for `output`.
    public var encoder = EncoderOptions()
    /// Capacity of the bounded queue in front of every stage.
    public var queueCapacity = 4
    /// The inference stage. `NoDetector` (no model yet): detections stay empty.
    public var detector: any FrameDetector = NoDetector()
    /// Draw detections on the video output.
    public var annotate = true
    /// Analyse every `stride`-th decoded frame (1 = all); skipped frames are dropped before conversion.
    public var stride = 1
    /// At most this many analysed frames per second of stream time (0 = no limit).
    public var maxFPS = 0.0
    /// ByteTrack settings; nil = no tracking stage.
    public var tracker: ByteTrackConfig?
    /// MOTChallenge results file (needs `tracker`).
    public var mot: String?
    /// COCO results JSON file.
    public var coco: String?
    /// COCO panoptic output directory (PNG per frame + panoptic.json); needs a panoptic model.
    public var panoptic: String?
    /// How the video output is annotated (boxes, labels, masks, anonymization).
    public var annotation = AnnotationStyle()
    /// Frames of track history drawn as trails on the video (0 = off).
    public var trails = 0
    /// What JSONL frame lines include.
    public var jsonlOptions = JSONLRecord.Options()
    /// Temporal reuse of backbone/FPN work (docs/temporal.md), handed to the detector before the first frame.
    public var temporal = TemporalSettings()
    /// Frames in inference at once, each on one core (`DetectWorkers`); nil = `DetectWorkers.automatic`. A detector
    /// whose frames depend on each other (temporal reuse) runs one frame at a time whatever this says.
    public var detectWorkers: Int?

    public init(input: String, output: String? = nil, jsonl: String? = nil) {
        self.input = input
        self.output = output
        self.jsonl = jsonl
    }
}

extension RunOptions {
    /// Takes the settings of a pipeline file. Values already set from the command line (`output`, `jsonl`,
    /// `maxFrames`) win over the file's. Throws `PipelineSpecError` (a configuration error naming the file and key)
    /// for parts this build cannot run yet.
    public mutating func apply(_ spec: PipelineSpec, file: String) throws {
        if let model = spec.model {
            if let onnx = try ONNXDetectors.detector(for: model, pipelineFile: file) {
                detector = onnx
            } else {
                detector = try ModelDetector(spec: model, pipelineFile: file)
            }
        }
        if spec.outputs.mot != nil && spec.tracker == nil {
            throw PipelineSpecError(file: file, line: nil, keyPath: "outputs.mot", message: "needs a tracker")
        }
        stride = spec.input.stride
        maxFPS = spec.input.maxFPS
        if maxFrames == nil && spec.input.maxFrames > 0 { maxFrames = spec.input.maxFrames }
        output = output ?? spec.outputs.video
        jsonl = jsonl ?? spec.outputs.jsonl
        mot = mot ?? spec.outputs.mot
        coco = coco ?? spec.outputs.coco
        panoptic = panoptic ?? spec.outputs.panoptic
        let a = spec.outputs.annotate
        annotation.boxes = a.boxes
        annotation.labels = a.labels
        annotation.masks = a.masks
        annotation.maskAlpha = a.maskAlpha
        annotation.stuff = a.stuff
        annotation.fontScale = a.fontScale
        annotation.anonymize = AnnotationStyle.Anonymize(rawValue: a.anonymize.rawValue) ?? .none
        annotation.anonymizeClasses = Set(a.anonymizeClasses)
        trails = a.trails
        tracker = spec.tracker
        jsonlOptions.masks = spec.outputs.jsonlMasks
        temporal = spec.temporal
        // The model's layer names are known now: check them here to name the pipeline file. (Without a model
        // section the runner reports it, after a command-line model had its chance.)
        if spec.model != nil { do {
            _ = try withTemporal(detector, temporal)
        } catch let e as TemporalConfigError {
            throw PipelineSpecError(file: file, line: nil, keyPath: "temporal", message: e.message)
        } }
    }
}

/// How a run went.
public struct RunSummary: Sendable {
    /// The source as opened.
    public var metadata: SourceMetadata
    /// Frames that went through every stage and sink.
    public var framesProcessed: Int
    /// Decoder counters (damage skipped, read errors).
    public var decodeStats: DecodeStats
    /// Per-stage metrics and how the pipeline ended.
    public var report: PipelineReport
    /// True when `stop()` ended the run early (outputs are still finalized).
    public var stopped: Bool
    /// The output whose reader went away (EPIPE, e.g. `--jsonl - | head -n 1`), which ended the run early and quietly.
    public var closedOutput: String?
    /// Temporal mode of the run.
    public var temporal: TemporalMode = .off
    /// Mean fraction of backbone/FPN work recomputed per frame (FLOP-weighted; nil when temporal reuse is off).
    public var meanRecomputedFraction: Double?
    /// Frames whose result repeated the previous frame's (`FrameResult.repeated`; 0 when temporal reuse is off).
    public var repeatedFrames = 0
    /// Time per detector part (`backbone`, `rpn`, `roi_heads`, `masks`, `semantic`, ...), in forward order; empty
    /// when the detector reports no parts.
    public var detectParts: [StageMetrics] = []
    /// Frames the detect stage ran at once (`--detect-workers` as resolved for this detector).
    public var detectWorkers = 1
    /// The accuracy guard's decisions (delta mode; nil when it verified no frame).
    public var temporalGuard: TemporalGuardSummary?
    /// RoI regions per head summed over the frames whose heads ran (`FrameResult.regionReuse`; empty unless delta
    /// with an R-CNN model).
    public var regionReuse: [String: RegionReuseCount] = [:]
}

/// The output named by `error` when it is a write to a pipe whose reader has gone (EPIPE); nil for any other error.
public func brokenPipeOutput(_ error: any Error) -> String? {
    let underlying = (error as? PipelineError)?.underlying ?? error
    let epipe = String(cString: strerror(EPIPE))  // FFmpeg's AVERROR(EPIPE) message is the same text
    switch underlying {
    case OutputError.writeFailed(let path, let reason) where reason == epipe: return path
    case MediaIOError.writeFailed(let output, let reason) where reason == epipe: return output
    default: return nil
    }
}

/// Runner configuration problems found before anything runs.
public enum RunnerError: Error, CustomStringConvertible {
    case motNeedsTracker
    /// `--panoptic` / `outputs.panoptic` without a model that has a semantic head.
    case panopticNeedsModel(detector: String)
    /// The detector cannot use the temporal settings (message from `FrameDetector.useTemporal`).
    case temporal(String)
    public var description: String {
        switch self {
        case .motNeedsTracker: return "a MOT output needs a tracker (add a tracker section to the pipeline)"
        case .panopticNeedsModel(let d):
            return "a panoptic output needs a panoptic model (weights with metadata panoptic: semantic_fpn); "
                + "the detector is '\(d)'"
        case .temporal(let m): return "temporal: \(m)"
        }
    }
}

/// Runs one stream through the stage pipeline:
///
/// ```
/// decode ─▶ convert ─▶ detect ─▶ [track] ─▶ [jsonl] ─▶ [mot] ─▶ [coco] ─▶ [annotate ─▶ encode] ─▶ progress
/// (Source,  (swscale   (FrameDetector (ByteTrack) (taps: Outputs writers)   (Annotator) (tap,
///  stride)   RGB24)     slot)                                                           VideoWriter)
/// ```
/// Every stage has its own serial Dispatch queue and a bounded input queue (files never drop frames), so decoding,
/// conversion, inference and encoding overlap. Inputs and outputs are opened in `init`, so bad input or an
/// unwritable output fails before any work with one clear error. `stop()` (SIGINT/SIGTERM) stops the input, drops the
/// frames inference has not started and lets the ones it has go to every sink; the outputs are finalized in every case.
public final class StreamRunner: @unchecked Sendable {
    /// The opened source.
    public let metadata: SourceMetadata
    /// Things the user should know (encoder fallback, unused options), one line each.
    public private(set) var notes: [String] = []
    /// The video writer, when an output was requested.
    public let videoWriter: VideoWriter?
    /// The JSONL writer, when requested.
    public let jsonlWriter: JSONLWriter?
    /// The MOTChallenge writer, when requested.
    public private(set) var motWriter: MOTWriter?
    /// The COCO results writer, when requested.
    public private(set) var cocoWriter: COCOResultsWriter?
    /// The COCO panoptic writer, when requested.
    public private(set) var panopticWriter: COCOPanopticWriter?

    private let tracker: ByteTracker?

    private var options: RunOptions
    private let decoder: VideoDecoder
    private let recomputed = RecomputedTally()
    private let parts = DetectPartsTally()
    private let gate = StopGate()
    private let lock = NSLock()
    private var pipeline: Pipeline?
    private var stopRequested = false

    /// Opens the input and every output. Throws `MediaIOError` (or a sink's open error) naming the input or output.
    public init(options: RunOptions) throws {
        self.options = options
        decoder = try VideoDecoder(location: options.input, options: options.decoder)
        metadata = decoder.metadata
        if !decoder.unusedOptions.isEmpty {
            notes.append("\(metadata.source): input options not used: \(decoder.unusedOptions.joined(separator: ", "))")
        }
        if options.mot != nil && options.tracker == nil {
            throw RunnerError.motNeedsTracker
        }
        let panopticCategories = (options.detector as? ModelDetector)?.panopticCategories
        if options.panoptic != nil && panopticCategories == nil {
            throw RunnerError.panopticNeedsModel(detector: options.detector.name)
        }
        self.options.detector = try StageWiring.prepared(options.detector, temporal: options.temporal)
        // Built before any file is created, so a bad tracker configuration leaves nothing behind.
        tracker = try StageWiring.tracker(options.tracker, frameRate: metadata.frameRate?.value)
        jsonlWriter = try options.jsonl.map { try JSONLWriter(path: $0, options: options.jsonlOptions) }
        do {
            motWriter = try options.mot.map { try MOTWriter(path: $0) }
            cocoWriter = try options.coco.map { try COCOResultsWriter(path: $0) }
            panopticWriter = try options.panoptic.map { dir in
                let png = PNGEncoder(output: dir)
                return try COCOPanopticWriter(directory: dir, categories: panopticCategories ?? []) { rgb, w, h in
                    try png.encode(RGBImage(width: w, height: h, pixels: rgb))
                }
            }
            if let output = options.output {
                let writer = try VideoWriter(location: output, size: metadata.size,
                                             frameRate: metadata.frameRate ?? Rational(25, 1),
                                             timeBase: metadata.timeBase, options: options.encoder)
                if let note = writer.note { notes.append("\(writer.output): \(note)") }
                videoWriter = writer
            } else {
                videoWriter = nil
            }
        } catch {
            // Leave nothing behind: files created a moment ago hold no line yet.
            try? jsonlWriter?.close()
            try? motWriter?.close()
            for path in [options.jsonl, options.mot, options.coco.map { $0 + ".partial" }].compactMap({ $0 })
            where path != "-" {
                try? FileManager.default.removeItem(atPath: path)
            }
            throw error
        }
    }

    /// Frames the run is expected to process (for progress and ETA): the source's frame count after stride,
    /// max-fps and max-frames; nil when unknown (live).
    public var expectedFrames: Int? {
        guard var n = metadata.frameCountEstimate else { return options.maxFrames }
        n = (n + options.stride - 1) / options.stride
        if options.maxFPS > 0, let d = metadata.duration { n = min(n, Int((d * options.maxFPS).rounded(.up))) }
        if let m = options.maxFrames { n = min(n, m) }
        return n
    }

    /// Processes the stream to its end (or until `stop()`), calling `onFrame` after each frame went through every
    /// sink (on the last stage's queue, in order). Throws `PipelineError` naming the stage and frame when a stage
    /// failed; the outputs are finalized before it returns either way.
    public func run(onFrame: @escaping (FrameInfo) -> Void = { _ in }) throws -> RunSummary {
        let selection = FrameSelection(stride: options.stride, maxFPS: options.maxFPS, maxFrames: options.maxFrames)
        var wiring = StageWiring(detector: options.detector, tracker: tracker, recomputed: recomputed, parts: parts, gate: gate,
                                 videoWriter: videoWriter, annotate: options.annotate, annotation: options.annotation,
                                 trails: options.trails)
        wiring.detectWorkers = options.detectWorkers ?? DetectWorkers.automatic(streams: 1)
        var builder = wiring.analysis(Pipeline.from(DecodeSource(decoder: decoder, selection: selection),
                                                    options: PipelineOptions(queueCapacity: options.queueCapacity)))
        if let jsonlWriter {
            builder = builder.tap(JSONLFrameSink(writer: jsonlWriter))
        }
        if let motWriter {
            builder = builder.tap(MOTSink(writer: motWriter))
        }
        if let cocoWriter {
            builder = builder.tap(COCOFrameSink(writer: cocoWriter))
        }
        if let panopticWriter {
            builder = builder.tap(PanopticFrameSink(writer: panopticWriter))
        }
        let gate = self.gate
        let pipeline = wiring.video(builder).sink(ProgressTap { info in gate.frameFinished(); onFrame(info) })

        lock.lock()
        self.pipeline = pipeline
        let stopEarly = stopRequested
        lock.unlock()
        if stopEarly { decoder.requestStop() }

        pipeline.start()
        let report = pipeline.wait()
        // Sinks finalize on close; this covers a pipeline that failed before the sink queue started.
        try? videoWriter?.finish()
        try? motWriter?.close()
        try? cocoWriter?.close()
        try? panopticWriter?.close()
        let processed = report.stages.last?.count ?? 0
        lock.lock(); var stopped = stopRequested; lock.unlock()
        var closedOutput: String?
        if let error = report.completion.error {
            guard let path = brokenPipeOutput(error) else {
                if let jsonlWriter { try? writeSummary(jsonlWriter, report: report, frames: processed, stopped: stopped) }
                throw error
            }
            closedOutput = path
            stopped = true
        }
        if let jsonlWriter {
            do {
                try writeSummary(jsonlWriter, report: report, frames: processed, stopped: stopped)
            } catch {
                guard let path = brokenPipeOutput(error) else { throw error }
                closedOutput = closedOutput ?? path
            }
        }
        return RunSummary(metadata: metadata, framesProcessed: processed, decodeStats: decoder.stats,
                          report: report, stopped: stopped, closedOutput: closedOutput,
                          temporal: options.temporal.mode, meanRecomputedFraction: recomputed.mean,
                          repeatedFrames: recomputed.repeated, detectParts: parts.metrics, detectWorkers: parts.workers,
                          temporalGuard: recomputed.guardSummary, regionReuse: recomputed.regions)
    }

    /// Appends the `"type":"summary"` line (how the run ended, per-stage metrics, decoder damage) and closes.
    private func writeSummary(_ writer: JSONLWriter, report: PipelineReport, frames: Int, stopped: Bool) throws {
        let d = decoder.stats
        var fields: [(String, JSONLRecord.Value)] = [
            ("stopped", .bool(stopped)),
            ("decode_errors", .int(d.decodeErrors)),
            ("corrupt_frames", .int(d.corruptFrames)),
            ("compute", .string(Compute.path.rawValue)),
            ("precision", .string(Compute.precision.rawValue)),
        ]
        if let r = d.readError { fields.append(("read_error", .string(r))) }
        let partList = parts.metrics
        if !partList.isEmpty {
            fields.append(("detect_workers", .int(parts.workers)))
            fields.append(("detect_parts", .array(partList.map { m in
                .object([("name", .string(m.name)), ("count", .int(m.count)),
                         ("mean_ms", .number(m.meanMs, decimals: 3)), ("p50_ms", .number(m.p50Ms, decimals: 3)),
                         ("p95_ms", .number(m.p95Ms, decimals: 3))])
            })))
        }
        if options.temporal.mode != .off {
            fields.append(("temporal", .string(options.temporal.mode.rawValue)))
            fields.append(("recomputed_mean", recomputed.mean.map { .number($0, decimals: 4) } ?? .null))
            fields.append(("repeated_frames", .int(recomputed.repeated)))
            if let g = recomputed.guardSummary { fields.append(("temporal_guard", g.jsonValue)) }
            let regions = recomputed.regions
            if !regions.isEmpty { fields.append(("region_reuse", JSONLRecord.regionReuseTally(regions))) }
        }
        defer { try? writer.close() }
        try writer.writeLine(JSONLRecord.summary(source: metadata.source, wallTime: Date().timeIntervalSince1970,
                                                 frames: frames, report: report, fields: fields))
    }

    /// Stops reading input and drops the frames inference has not started; the frames it has go through every
    /// sink, then the outputs are finalized and `run` returns. Returns how many frames are still to finish.
    /// Thread-safe, callable from a signal-handling queue, before or during `run`.
    @discardableResult
    public func stop() -> Int {
        lock.lock()
        stopRequested = true
        let pipeline = self.pipeline
        lock.unlock()
        let inFlight = gate.close()
        decoder.requestStop()
        pipeline?.cancel(.drain)
        return inFlight
    }
}
