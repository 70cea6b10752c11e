import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline

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

    public init(input: String, output: String? = nil, jsonl: String? = nil) {
        self.input = input
        self.output = output
        self.jsonl = jsonl
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
}

/// Runs one stream through the stage pipeline:
///
/// ```
/// decode ─▶ convert ─▶ detect ─▶ annotate ─▶ [jsonl] ─▶ [encode] ─▶ progress
/// (Source)  (swscale   (FrameDetector (Outputs   (tap)     (tap,
///            RGB24)     slot)          renderer)            VideoWriter)
/// ```
/// Every stage has its own serial Dispatch queue and a bounded input queue (files never drop frames), so decoding,
/// conversion, inference and encoding overlap. Inputs and outputs are opened in `init`, so bad input or an
/// unwritable output fails before any work with one clear error. `stop()` (SIGINT/SIGTERM) stops the input and drains
/// frames already in flight; the video container and the JSONL file are finalized in every case.
public final class StreamRunner: @unchecked Sendable {
    /// The opened source.
    public let metadata: SourceMetadata
    /// Things the user should know (encoder fallback, unused options), one line each.
    public private(set) var notes: [String] = []
    /// The video writer, when an output was requested.
    public let videoWriter: VideoWriter?
    /// The JSONL writer, when requested.
    public let jsonlWriter: JSONLWriter?

    private let options: RunOptions
    private let decoder: VideoDecoder
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
        jsonlWriter = try options.jsonl.map { try JSONLWriter(path: $0) }
        do {
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
            // Leave nothing behind: the JSONL file was created a moment ago and holds no line.
            try? jsonlWriter?.close()
            if let path = options.jsonl, path != "-" { try? FileManager.default.removeItem(atPath: path) }
            throw error
        }
    }

    /// Processes the stream to its end (or until `stop()`), calling `onFrame` after each frame went through every
    /// sink (on the last stage's queue, in order). Throws `PipelineError` naming the stage and frame when a stage
    /// failed; the outputs are finalized before it returns either way.
    public func run(onFrame: @escaping (FrameInfo) -> Void = { _ in }) throws -> RunSummary {
        var builder = Pipeline.from(DecodeSource(decoder: decoder, maxFrames: options.maxFrames),
                                    options: PipelineOptions(queueCapacity: options.queueCapacity))
            .then(ConvertStage())
            .then(DetectStage(detector: options.detector))
        if let jsonlWriter {
            builder = builder.tap(JSONLFrameSink(writer: jsonlWriter))
        }
        if let videoWriter {
            builder = builder.tap(VideoSink(writer: videoWriter))
        }
        let pipeline = builder.sink(ProgressTap(body: onFrame))

        lock.lock()
        self.pipeline = pipeline
        let stopEarly = stopRequested
        lock.unlock()
        if stopEarly { decoder.requestStop() }

        pipeline.start()
        let report = pipeline.wait()
        // Sinks finalize on close; this covers a pipeline that failed before the sink queue started.
        try? videoWriter?.finish()
        let processed = report.stages.last?.count ?? 0
        lock.lock(); let stopped = stopRequested; lock.unlock()
        if let error = report.completion.error {
            if let jsonlWriter { try? writeSummary(jsonlWriter, report: report, frames: processed, stopped: stopped) }
            throw error
        }
        if let jsonlWriter { try writeSummary(jsonlWriter, report: report, frames: processed, stopped: stopped) }
        return RunSummary(metadata: metadata, framesProcessed: processed, decodeStats: decoder.stats,
                          report: report, stopped: stopped)
    }

    /// Appends the `"type":"summary"` line (how the run ended, per-stage metrics, decoder damage) and closes.
    private func writeSummary(_ writer: JSONLWriter, report: PipelineReport, frames: Int, stopped: Bool) throws {
        let d = decoder.stats
        var fields: [(String, JSONLRecord.Value)] = [
            ("stopped", .bool(stopped)),
            ("decode_errors", .int(d.decodeErrors)),
            ("corrupt_frames", .int(d.corruptFrames)),
        ]
        if let r = d.readError { fields.append(("read_error", .string(r))) }
        defer { try? writer.close() }
        try writer.writeLine(JSONLRecord.summary(source: metadata.source, wallTime: Date().timeIntervalSince1970,
                                                 frames: frames, report: report, fields: fields))
    }

    /// Stops reading input; frames already decoded go through every stage, then the outputs are finalized and
    /// `run` returns. Thread-safe, callable from a signal-handling queue, before or during `run`.
    public func stop() {
        lock.lock()
        stopRequested = true
        let pipeline = self.pipeline
        lock.unlock()
        decoder.requestStop()
        pipeline?.cancel(.drain)
    }
}
