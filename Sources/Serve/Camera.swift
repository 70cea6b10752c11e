import FPNCore
import FPNStream
import Foundation
import MediaIO
import Outputs
import StagePipeline
import TemporalReuse

/// Where a camera is in its life.
public enum CameraState: String, Sendable {
    /// Connecting for the first time (retrying while the source is unreachable).
    case connecting
    /// Frames flow.
    case running
    /// Lost its source; reconnecting.
    case reconnecting
    /// Ended on its own (its pipeline failed); the other cameras go on.
    case failed
    /// Stopped (removed, changed or shutting down).
    case stopped
}

/// What a camera tells the outside (MQTT): a message for `<prefix>/<camera>/<kind>`.
typealias CameraPublish = @Sendable (_ camera: String, _ kind: String, _ payload: [UInt8]) -> Void

/// One camera of `serve`: a `LiveRunner` with one input, run on its own thread, with the shared model cache and
/// inference scheduler. Everything that survives across frames (decoder, temporal cache, tracker, outputs) is its
/// own, so a camera that fails or stops never touches another.
final class Camera: @unchecked Sendable {
    let spec: CameraSpec
    let metrics: CameraMetrics
    /// The source as printed (credentials redacted).
    let source: String
    private let runner: LiveRunner
    private let lock = NSLock()
    private var state = CameraState.connecting
    private var lastError: String?
    private var latest: AnalyzedFrame?
    private var recentFrames: [Double] = []   // completion times of the last frames (fps)
    private let annotatedByPipeline: Bool
    private let annotator: Annotator
    private let snapshotEncoder: JPEGEncoder
    private let snapshotLock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    let startedAt = Date()
    /// The model it runs (shared through the cache).
    let modelSpec: ModelSpec?

    /// Builds the camera's pipeline options (pipeline file, overrides, model from `models`); throws a
    /// configuration error naming the file or key. Nothing connects before `start()`.
    init(spec: CameraSpec, models: ModelCache, scheduler: InferenceScheduler, metrics: CameraMetrics,
         publish: CameraPublish?) throws {
        self.spec = spec
        self.metrics = metrics
        let plan = try CameraPlan(spec: spec, models: models)
        var options = plan.options
        modelSpec = plan.model
        annotatedByPipeline = options.output != nil && options.annotate
        annotator = Annotator(style: options.annotation)
        snapshotEncoder = JPEGEncoder(output: "\(spec.id)/latest.jpg")
        let id = spec.id
        let lineOptions = options.jsonlOptions
        source = redactCredentials(options.inputs[0])
        options.wrapDetector = { _, detector in
            ScheduledDetector(inner: detector, scheduler: scheduler, onInference: { metrics.inference(ms: $0) })
        }
        // The hooks run on the camera's threads; they reach the camera through a weak box set once it exists.
        let hooks = CameraHooks()
        options.onEvent = { _, event in
            hooks.camera?.note(event)
            publish?(id, "events", CameraMessages.event(event, camera: id))
        }
        options.onFrame = { _, frame, latency in
            hooks.camera?.frameDone(frame, latencyMs: latency)
            guard let publish else { return }
            publish(id, "frame", CameraMessages.frame(frame.result, camera: id, latencyMs: latency, options: lineOptions))
            for e in frame.trackEvents where e.kind == .started || e.kind == .removed {
                publish(id, "events", CameraMessages.track(e, camera: id, frame: frame.result))
            }
        }
        runner = try LiveRunner(options: options)
        hooks.camera = self
    }

    /// Connects and runs on a thread of its own until `stop()` or a failure.
    func start() {
        let t = Thread { [self] in
            do { try runner.start() } catch {
                set(.failed, error: redactCredentials("\(error)"))
            }
            let results = runner.wait()
            if let f = results.first?.failure {
                set(.failed, error: redactCredentials("\(f)"))
            } else {
                lock.lock(); if state != .failed { state = .stopped }; lock.unlock()
            }
            done.signal()
        }
        t.name = "fpnstream.camera.\(spec.id)"
        t.start()
    }

    /// Stops the camera (input interrupted, frames in flight drained, outputs finalized) and waits for it.
    func stop() {
        runner.stop()
        done.wait()
        done.signal()
    }

    /// Asks the camera to stop without waiting (`stop()` waits for all of them afterwards).
    func requestStop() { runner.stop() }

    private func set(_ s: CameraState, error: String? = nil) {
        lock.lock()
        state = s
        if let error { lastError = error }
        lock.unlock()
    }

    private func note(_ e: LiveEvent) {
        switch e.event {
        case .connected: set(.running)
        case .disconnected: set(.reconnecting, error: e.reason)
        case .reconnecting:
            lock.lock()
            if state != .connecting { state = .reconnecting }
            if let r = e.reason { lastError = r }
            lock.unlock()
        case .reconnected: set(.running)
        case .gaveUp, .connectFailed: set(.failed, error: e.reason)
        }
    }

    private func frameDone(_ frame: AnalyzedFrame, latencyMs: Double) {
        let now = Date().timeIntervalSince1970
        lock.lock()
        latest = frame
        recentFrames.append(now)
        if recentFrames.count > 256 || (recentFrames.first.map { now - $0 > 10 } ?? false) { recentFrames.removeFirst() }
        lock.unlock()
        metrics.frame(latencyMs: latencyMs)
    }

    /// Frames per second over the last up to 10 s (0 when no frame came for 2 s).
    private func fps(now: Double) -> Double {
        guard let last = recentFrames.last, now - last < 2, recentFrames.count > 1, let first = recentFrames.first,
              last > first else { return 0 }
        return Double(recentFrames.count - 1) / (last - first)
    }

    /// The latest processed frame as JPEG (annotated); nil before the first frame.
    func snapshot() throws -> [UInt8]? {
        lock.lock(); let frame = latest; lock.unlock()
        guard var frame else { return nil }
        if !annotatedByPipeline { annotator.draw(frame.result, on: &frame.image) }
        snapshotLock.lock(); defer { snapshotLock.unlock() }
        return try snapshotEncoder.encode(frame.image)
    }

    /// Current figures (thread-safe).
    func status() -> CameraStatus {
        let live = runner.status().first
        let now = Date().timeIntervalSince1970
        lock.lock()
        let s = CameraStatus(id: spec.id, source: source, state: state, lastError: lastError, fps: fps(now: now),
                             live: live, inference: metrics.inferenceHistogram(), startedAt: startedAt,
                             pipeline: spec.pipeline, model: spec.model, maxFPS: spec.maxFPS)
        lock.unlock()
        return s
    }
}

/// The camera as seen from its pipeline's hooks (which exist before the camera does).
private final class CameraHooks: @unchecked Sendable {
    weak var camera: Camera?
}

/// A camera's figures for `/api/cameras` and `/metrics`.
struct CameraStatus {
    var id: String
    var source: String
    var state: CameraState
    var lastError: String?
    var fps: Double
    var live: LiveStreamStatus?
    var inference: LatencyHistogram
    var startedAt: Date
    var pipeline: String?
    var model: String?
    var maxFPS: Double?

    /// Frames delivered by the source but neither processed nor dropped yet (waiting in the camera's queues).
    var inFlight: Int {
        guard let l = live else { return 0 }
        return max(0, l.live.frames - l.processed - l.dropped)
    }
}
