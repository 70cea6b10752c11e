import TemporalReuse
import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline
import Tracking
import Vision

/// What `LiveRunner` should do: one or more live inputs, shared JSONL, optional video per stream.
public struct LiveRunOptions {
    /// Input URLs or devices (rtsp://, rtmp://, http(s)://…m3u8, udp://, /dev/video0, ...). One stream each.
    public var inputs: [String]
    /// Connection, stall detection, reconnect and decode settings (shared by every stream).
    public var source = LiveSourceOptions()
    /// Annotated video output (path or URL). With several inputs it must contain `{stream}` (replaced by 0, 1, ...).
    public var output: String?
    /// JSONL output for frame, event and stats lines of every stream (`-` = stdout); nil = none.
    public var jsonl: String?
    /// Encoder settings for `output`.
    public var encoder = EncoderOptions()
    /// Policy of the queues in front of conversion and inference (default: keep-latest, `LiveSpec.defaultDropPolicy`).
    public var dropPolicy: DropPolicy = LiveSpec.defaultDropPolicy.queuePolicy
    /// Capacity of those queues: the most frames that can wait in front of a stage.
    public var queueCapacity = LiveSpec.defaultDropPolicy.defaultQueueSize
    /// Seconds between `stats` lines (and plain status lines when stderr is not a terminal); 0 = none.
    public var statsInterval: Double = 5
    /// Stop each stream after this many processed frames (nil = until stopped).
    public var maxFrames: Int?
    /// Stop everything after this many seconds (nil = until stopped).
    public var duration: Double?
    /// Test hook: sleep this long in the inference stage for every frame (simulates a slow model).
    public var debugStageDelayMs: Double = 0
    /// Frames of one stream in inference at once, each on one core (`DetectWorkers`; 1 = one frame on all cores).
    /// Ignored when the stream's detector has no replica (temporal reuse, a wrapped shared detector).
    public var detectWorkers = 1
    /// Makes the detector of one stream (each stream owns its own per-stream state).
    public var makeDetector: () -> any FrameDetector = { NoDetector() }
    /// ByteTrack settings (one tracker per stream); nil = no tracking stage.
    public var tracker: ByteTrackConfig?
    /// What JSONL frame lines include.
    public var jsonlOptions = JSONLRecord.Options()
    /// Draw detections on the video output, and how (as `process`).
    public var annotate = true
    public var annotation = AnnotationStyle()
    /// Track trail length in frames on the video output (0 = none).
    public var trails = 0
    /// Temporal reuse (docs/temporal.md), handed to each stream's detector; its state is per stream and resets
    /// when a reconnect brings another resolution.
    public var temporal = TemporalSettings()
    /// Called for every processed frame after every stage and sink, on the stream's last stage thread, with the
    /// frame's end-to-end latency (ms). The image is annotated when there is a video output with `annotate`.
    public var onFrame: (@Sendable (_ stream: Int, _ frame: AnalyzedFrame, _ latencyMs: Double) -> Void)?
    /// Called for every connection event of a stream (on its source thread), after the JSONL line.
    public var onEvent: (@Sendable (_ stream: Int, _ event: LiveEvent) -> Void)?
    /// Wraps each stream's prepared detector (e.g. a shared inference scheduler that also times each call).
    public var wrapDetector: ((_ stream: Int, _ detector: any FrameDetector) -> any FrameDetector)?
    /// Fields added to every frame and event line (e.g. `serve`'s `camera`).
    public var lineFields: [(String, JSONLRecord.Value)] = []
    /// `stop()` drops the frames that have not reached inference yet (as `process` does on its first signal), so a
    /// stop waits for at most the inference in progress; false (`tail`): every frame read is drained.
    public var promptStop = false

    public init(inputs: [String]) { self.inputs = inputs }

    /// The video output of stream `i` (nil: none).
    func output(forStream i: Int) -> String? {
        guard let output else { return nil }
        return output.replacingOccurrences(of: "{stream}", with: String(i))
    }

    /// Rejects combinations that cannot work, naming the option.
    public func validate() throws {
        guard !inputs.isEmpty else { throw LiveSourceError.badOption("no input URL given") }
        guard queueCapacity >= 1 else { throw LiveSourceError.badOption("queue size must be at least 1") }
        if let output, inputs.count > 1, !output.contains("{stream}") {
            throw LiveSourceError.badOption("with several inputs the video output must contain {stream}")
        }
        if let d = duration, !(d > 0) { throw LiveSourceError.badOption("duration must be > 0 s") }
        try source.validate()
    }
}

/// Figures of one stream, for stats lines, the status line and the final summary.
public struct LiveStreamStatus: Sendable {
    public var stream: Int
    public var source: String
    /// Connected right now (a `connected` event without a later `disconnected`).
    public var connected: Bool
    public var live: LiveSourceStats
    /// Frames that went through every stage and sink.
    public var processed: Int
    /// Frames discarded by the drop policy (sum over queues).
    public var dropped: Int
    /// End-to-end latency (frame decoded → frame line written), ms, since the start.
    public var latency: LatencyHistogram
    /// Mean recomputed fraction of backbone/FPN work per frame (nil: temporal reuse off).
    public var recomputedMean: Double?
    /// Frames whose result repeated the previous frame's (`FrameResult.repeated`).
    public var repeatedFrames = 0
    /// RoI regions per head summed over the frames so far (`FrameResult.regionReuse`; empty unless delta with an
    /// R-CNN model).
    public var regionReuse: [String: RegionReuseCount] = [:]
}

/// Runs live streams, each through its own stage pipeline, until stopped:
///
/// ```
///  LiveSource ─▶[keep latest]─▶ convert ─▶[keep latest]─▶ detect ─▶ [track] ─▶ [annotate ─▶ video] ─▶ frame line
///  (reconnects,   cap N          (RGB24)    cap N           (model)   (ByteTrack)  (Annotator, tap)     (JSONL, latency)
///   events)
/// ```
/// The drop policy sits in front of conversion and inference, so when inference is slower than the camera the
/// newest frame waits, older ones are dropped (counted), and latency stays about one inference time plus the queue
/// (see docs/live.md "Latency"). Sinks after inference never drop. Event lines (`connected`, `disconnected`, ...)
/// and periodic `stats` lines go to the same JSONL as frame lines. `stop()` (SIGINT/SIGTERM) interrupts every input,
/// drains frames in flight, writes a `summary` line per stream, and finalizes video outputs.
public final class LiveRunner: @unchecked Sendable {
    private let options: LiveRunOptions
    private let jsonl: LiveJSONL?
    private var streams: [LiveStreamRun] = []
    private let lock = NSLock()
    private var stopped = false
    /// Things the user should know (encoder fallback), one line each.
    public private(set) var notes: [String] = []

    /// Validates options and opens the JSONL output; inputs connect in `start()`.
    public init(options: LiveRunOptions) throws {
        try options.validate()
        self.options = options
        jsonl = try options.jsonl.map { try LiveJSONL(path: $0, options: options.jsonlOptions, fields: options.lineFields) }
    }

    /// Connects every input in turn, opening its video output and starting its pipeline as soon as it is connected.
    /// A source that never connects is an error, thrown here with its redacted URL (call `stop()` and `wait()` then,
    /// to end the streams already running). Returns once all are running; `wait()` blocks until the end.
    public func start() throws {
        for (i, input) in options.inputs.enumerated() {
            let run = try LiveStreamRun(stream: i, input: input, options: options, jsonl: jsonl)
            lock.lock()
            streams.append(run)
            var stop = stopped
            lock.unlock()
            if stop { return }
            do { try run.connect(options: options) } catch {
                lock.lock(); stop = stopped; lock.unlock()
                if stop { return }  // a signal ended a blocked connect: not an error
                throw error
            }
            if let note = run.writerNote { notes.append(note) }
            // Start at once: a stream connected first must not buffer frames while the next one connects.
            run.start()
            lock.lock(); stop = stopped; lock.unlock()
            if stop { run.stop() }
        }
        startStatsTimer()
        if let duration = options.duration {
            DispatchQueue.global().asyncAfter(deadline: .now() + duration) { [weak self] in self?.stop() }
        }
    }

    /// Blocks until every stream ended (stopped, gave up, or `maxFrames`), writes the `summary` lines and closes
    /// the JSONL. Returns each stream's final status and failure (nil when it ended normally).
    public func wait() -> [(status: LiveStreamStatus, failure: Error?)] {
        lock.lock(); let all = streams; lock.unlock()
        let results = all.map { ($0.waitUntilDone(), $0) }
        statsTimer?.cancel()
        for (_, s) in results { if let r = s.report { jsonl?.summary(s.status(), report: r) } }
        jsonl?.close()
        return results.map { (status: $0.1.status(), failure: $0.0) }
    }

    /// Stops every stream: inputs interrupted at once, frames in flight drained, outputs finalized. Thread-safe,
    /// callable from a signal-handling queue, before or during `start()`.
    public func stop() {
        lock.lock()
        stopped = true
        let all = streams
        lock.unlock()
        for s in all { s.stop() }
    }

    /// Current figures of every stream (thread-safe).
    public func status() -> [LiveStreamStatus] {
        lock.lock(); let all = streams; lock.unlock()
        return all.map { $0.status() }
    }

    private var statsTimer: DispatchSourceTimer?

    private func startStatsTimer() {
        guard options.statsInterval > 0, jsonl != nil else { return }
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "fpnstream.live.stats"))
        t.schedule(deadline: .now() + options.statsInterval, repeating: options.statsInterval)
        t.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock(); let all = self.streams; self.lock.unlock()
            for s in all { self.writeStats(s) }
        }
        t.resume()
        statsTimer = t
    }

    private func writeStats(_ s: LiveStreamRun) {
        guard let jsonl else { return }
        let (status, window, seconds) = s.intervalStatus()
        jsonl.stats(status, window: window, seconds: seconds, stages: s.metrics())
    }
}

/// One stream: its live source, pipeline, latency figures.
final class LiveStreamRun: @unchecked Sendable {
    let stream: Int
    let live: LiveSource
    private(set) var writerNote: String?
    private let figures: LiveFigures
    private let jsonl: LiveJSONL?
    private let lock = NSLock()
    private var pipeline: Pipeline?
    private let done = DispatchSemaphore(value: 0)
    private var failure: Error?
    private var gate: StopGate?
    /// How the pipeline ended (set before `waitUntilDone` returns; nil if it never started).
    private(set) var report: PipelineReport?

    /// Prepares the stream; nothing is opened yet, so `stop()` works from here on (even while `connect` blocks).
    init(stream: Int, input: String, options: LiveRunOptions, jsonl: LiveJSONL?) throws {
        self.stream = stream
        self.jsonl = jsonl
        let figures = LiveFigures(stream: stream)
        self.figures = figures
        let onEvent = options.onEvent
        live = try LiveSource(location: input, options: options.source, onEvent: { event in
            figures.note(event)
            jsonl?.event(stream: stream, event)
            onEvent?(stream, event)
        })
        figures.source = live.source
    }

    /// Connects (throws when the source never connects), opens the video output and builds the pipeline.
    func connect(options: LiveRunOptions) throws {
        try live.open()
        var writer: VideoWriter?
        if let out = options.output(forStream: stream), let m = live.metadata {
            // Stream time is in seconds with µs-precise gaps; a 1/90000 time base keeps it exact in any container.
            writer = try VideoWriter(location: out, size: m.size, frameRate: m.frameRate ?? Rational(25, 1),
                                     timeBase: Rational(1, 90000), options: options.encoder)
        }
        writerNote = writer?.note.map { "\(writer!.output): \($0)" }

        var detector = try StageWiring.prepared(options.makeDetector(), temporal: options.temporal)
        if options.debugStageDelayMs > 0 { detector = DelayedDetector(inner: detector, delayMs: options.debugStageDelayMs) }
        if let wrap = options.wrapDetector { detector = wrap(stream, detector) }
        let live = self.live
        let gate = options.promptStop ? StopGate() : nil
        var wiring = StageWiring(detector: detector,
                                 tracker: try StageWiring.tracker(options.tracker, frameRate: live.metadata?.frameRate?.value),
                                 inferenceQueue: QueueOptions(capacity: options.queueCapacity, policy: options.dropPolicy),
                                 gate: gate, videoWriter: writer, annotate: options.annotate, annotation: options.annotation,
                                 trails: options.trails)
        wiring.detectWorkers = options.detectWorkers
        var builder = wiring.analysis(Pipeline.from(LivePictureSource(live: live),
                                                    options: PipelineOptions(queueCapacity: 4, label: "fpnstream.live\(stream)")))
        if let n = options.maxFrames {
            builder = builder.then(FrameLimitStage(limit: n, onLimit: { live.stop() }))
        }
        let p = wiring.video(builder).sink(FrameLineSink(stream: stream, jsonl: jsonl, figures: figures,
                                                         onFrame: options.onFrame))
        figures.metrics = { [weak p] in p?.metrics() ?? [] }
        lock.lock(); pipeline = p; self.gate = gate; lock.unlock()
    }

    /// Starts the pipeline built by `connect`.
    func start() {
        lock.lock(); let p = pipeline; lock.unlock()
        guard let p else { done.signal(); return }
        p.start()
        // After start: a DispatchGroup with nothing entered notifies at once.
        p.notify { [self] report in
            self.report = report
            if let e = report.completion.error { failure = e } else if let f = live.failure { failure = f }
            done.signal()
        }
    }

    func stop() {
        lock.lock(); let p = pipeline, g = gate; lock.unlock()
        g?.close()
        live.stop()
        p?.cancel(.drain)
    }

    /// Blocks until the pipeline finished (at once if it never started); returns why it failed (nil = stopped or
    /// finished normally).
    func waitUntilDone() -> Error? {
        lock.lock(); let started = pipeline != nil; lock.unlock()
        guard started else { return nil }
        done.wait()
        done.signal()
        return failure
    }

    func status() -> LiveStreamStatus { figures.status(live: live.stats) }
    func intervalStatus() -> (LiveStreamStatus, LatencyHistogram, Double) { figures.interval(live: live.stats) }
    func metrics() -> [StageMetrics] { lock.lock(); defer { lock.unlock() }; return pipeline?.metrics() ?? [] }
}

/// Latency and state of one stream, shared by its sink (writer) and the stats timer (reader).
final class LiveFigures: @unchecked Sendable {
    let stream: Int
    var source = ""
    private let lock = NSLock()
    private var _metrics: () -> [StageMetrics] = { [] }
    /// The stream's pipeline metrics; set by `connect` on the stream's thread while status readers (HTTP, the
    /// stats timer) may already call it, hence the lock (it also orders the pipeline's construction before them).
    var metrics: () -> [StageMetrics] {
        get { lock.lock(); defer { lock.unlock() }; return _metrics }
        set { lock.lock(); _metrics = newValue; lock.unlock() }
    }
    private var connected = false
    private var total = LatencyHistogram()
    private var window = LatencyHistogram()
    private var processed = 0
    private var recomputedSum = 0.0, recomputedCount = 0, repeatedCount = 0
    private var regions: [String: RegionReuseCount] = [:]
    private var windowStart = Date().timeIntervalSince1970

    init(stream: Int) { self.stream = stream }

    func note(_ e: LiveEvent) {
        lock.lock(); defer { lock.unlock() }
        if e.event == .connected { connected = true }
        if e.event == .disconnected || e.event == .gaveUp || e.event == .connectFailed { connected = false }
    }

    func frameDone(latencyMs: Double, recomputed: Double?, repeated: Bool = false,
                   regionReuse: [String: RegionReuseCount] = [:]) {
        lock.lock(); defer { lock.unlock() }
        if let recomputed { recomputedSum += recomputed; recomputedCount += 1 }
        if repeated { repeatedCount += 1 }
        regions.add(regionReuse)
        total.record(ms: latencyMs)
        window.record(ms: latencyMs)
        processed += 1
    }

    func status(live: LiveSourceStats) -> LiveStreamStatus {
        let dropped = metrics().reduce(0) { $0 + $1.drops }
        lock.lock(); defer { lock.unlock() }
        return LiveStreamStatus(stream: stream, source: source, connected: connected, live: live,
                                processed: processed, dropped: dropped, latency: total,
                                recomputedMean: recomputedCount > 0 ? recomputedSum / Double(recomputedCount) : nil,
                                repeatedFrames: repeatedCount, regionReuse: regions)
    }

    /// Status plus the latency of the frames since the previous call and that window's length (s).
    func interval(live: LiveSourceStats) -> (LiveStreamStatus, LatencyHistogram, Double) {
        let s = status(live: live)
        lock.lock(); defer { lock.unlock() }
        let now = Date().timeIntervalSince1970
        let w = window
        let seconds = now - windowStart
        window = LatencyHistogram()
        windowStart = now
        return (s, w, seconds)
    }
}

/// `LiveSource` as the pipeline's source: pictures, not yet converted.
final class LivePictureSource: Source {
    let live: LiveSource
    init(live: LiveSource) { self.live = live }
    var name: String { "input" }
    func next() throws -> DecodedPicture? { live.nextPicture() }
    func interrupt() { live.stop() }
}

/// Test hook: a detector that first sleeps (a slow model without a model).
struct DelayedDetector: FrameDetector {
    var inner: any FrameDetector
    let delayMs: Double
    var name: String { inner.name }
    mutating func detect(_ frame: Frame, into result: inout FrameResult) throws {
        usleep(useconds_t(delayMs * 1000))
        try inner.detect(frame, into: &result)
    }
}

/// Passes the first `limit` frames, stops the input on the last one, and swallows frames still in flight, so
/// `--max-frames N` gives exactly N frame lines and video frames.
struct FrameLimitStage: Stage {
    let limit: Int
    let onLimit: () -> Void
    private var passed = 0
    init(limit: Int, onLimit: @escaping () -> Void) { self.limit = limit; self.onLimit = onLimit }
    var name: String { "limit" }
    mutating func process(_ input: AnalyzedFrame) throws -> AnalyzedFrame? {
        guard passed < limit else { return nil }
        passed += 1
        if passed == limit { onLimit() }
        return input
    }
}

/// The last stage: one frame line per processed frame, with capture wall time and end-to-end latency.
struct FrameLineSink: Sink {
    let stream: Int
    let jsonl: LiveJSONL?
    let figures: LiveFigures
    let onFrame: (@Sendable (Int, AnalyzedFrame, Double) -> Void)?
    var name: String { "output" }

    func consume(_ input: AnalyzedFrame) throws {
        let now = Date().timeIntervalSince1970
        let latencyMs = (now - input.result.info.wallTime) * 1000
        figures.frameDone(latencyMs: latencyMs, recomputed: input.result.recomputedFraction,
                          repeated: input.result.repeated, regionReuse: input.result.regionReuse)
        jsonl?.frame(stream: stream, input.result, latencyMs: latencyMs)
        onFrame?(stream, input, latencyMs)
    }
}
