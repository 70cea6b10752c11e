import TemporalReuse
import FPNCore
import Vision

/// The detector slot of the runner: turns one RGB frame into detections in source pixels.
///
/// Later issues plug models in here (ResNet+FPN heads, ONNX-converted models); until then the runner uses
/// `NoDetector`, and every frame's `detections` is empty. A detector is per-stream state (temporal caches, reused
/// buffers) and is called on its own serial queue, one frame at a time, in order.
public protocol FrameDetector {
    /// Short name for metrics and errors (e.g. `"retinanet_resnet50_fpn"`).
    var name: String { get }
    /// Detections for `frame`, boxes in the frame's source pixel space (`frame.info.width x height`).
    /// May also fill panoptic segments or the recomputed fraction through `result`.
    mutating func detect(_ frame: Frame, into result: inout FrameResult) throws
    /// Switches temporal reuse (docs/temporal.md) for this stream before its first frame. Throws
    /// `TemporalConfigError` when the detector cannot do `settings.mode` or a setting does not fit the model
    /// (unknown layer names). The default: only `off` is accepted. Keyframe mode is not the detector's: use
    /// `withTemporal`, which wraps any detector in a `KeyframeDetector`.
    mutating func useTemporal(_ settings: TemporalSettings) throws
    /// Another detector on the same loaded model with its own per-stream state (buffers), for running other frames
    /// of this stream at the same time on other cores (`DetectStage` with several workers); same thresholds and
    /// settings, so without temporal reuse it returns exactly what this one would for any frame. A delta-mode
    /// replica keeps its own temporal cache over the frames it is given. Nil when the detector cannot be copied or
    /// needs every frame of the stream in order (keyframes, `temporal: auto`). The default: nil.
    func replica() -> (any FrameDetector)?
}

extension FrameDetector {
    public func replica() -> (any FrameDetector)? { nil }

    public mutating func useTemporal(_ settings: TemporalSettings) throws {
        guard settings.mode != .off else { return }
        throw TemporalConfigError(message: name == NoDetector().name
            ? "temporal \(settings.mode.rawValue) needs a model (--model or a pipeline model section)"
            : "the \(name) detector does not support temporal reuse (ResNet-FPN .safetensors models and CenterFace do)")
    }
}

/// Temporal settings that the stream's detector cannot use; the message says which and why.
public struct TemporalConfigError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The placeholder detector: finds nothing. Lets the whole pipeline (decode → annotate → JSONL/video) run before any
/// model exists.
public struct NoDetector: FrameDetector {
    public init() {}
    public var name: String { "none" }
    public func detect(_ frame: Frame, into result: inout FrameResult) throws {}
    public func replica() -> (any FrameDetector)? { self }
}

/// `detector` set up for `settings`, ready for its first frame: keyframe mode wraps it in a `KeyframeDetector`
/// (every model kind; the detector itself runs dense), off and delta go to the detector's own `useTemporal`.
/// Throws `TemporalConfigError` as `useTemporal` does, and for keyframe mode without a model.
public func withTemporal(_ detector: any FrameDetector, _ settings: TemporalSettings) throws -> any FrameDetector {
    var d = detector
    guard settings.mode == .keyframe else {
        try d.useTemporal(settings)
        return d
    }
    if d.name == NoDetector().name {
        throw TemporalConfigError(message: "temporal keyframe needs a model (--model or a pipeline model section)")
    }
    var dense = settings
    dense.mode = .off
    try d.useTemporal(dense)     // still checks the settings against the model (layer names)
    return KeyframeDetector(wrapping: d, interval: settings.keyframeInterval)
}

/// Keyframe mode for any detector: runs the wrapped detector on every `interval`-th frame and repeats its last
/// detections and panoptic segments in between (`recomputedFraction` 1 on keyframes, 0 between). A new frame size
/// (another stream, a reconnect at another resolution) restarts the schedule with a keyframe.
public struct KeyframeDetector: FrameDetector {
    /// The detector run on keyframes.
    public private(set) var inner: any FrameDetector
    /// Frames from one keyframe to the next (≥ 1).
    public let interval: Int
    /// Index of the current frame since the last restart.
    public private(set) var frameIndex = -1
    /// Restarts so far (frame size changes).
    public private(set) var resets = 0
    private var kept: (detections: [Detection], panoptic: [PanopticSegment]?)?
    private var size: (Int, Int)?

    public init(wrapping inner: any FrameDetector, interval: Int) {
        precondition(interval >= 1, "keyframe interval must be >= 1")
        self.inner = inner
        self.interval = interval
    }

    public var name: String { inner.name }

    public mutating func detect(_ frame: Frame, into result: inout FrameResult) throws {
        let s = (frame.info.width, frame.info.height)
        if let size, size != s {
            kept = nil
            frameIndex = -1
            resets += 1
        }
        size = s
        frameIndex += 1
        if frameIndex % interval != 0, let kept {
            result.detections = kept.detections
            result.panoptic = kept.panoptic
            result.recomputedFraction = 0
            return
        }
        try inner.detect(frame, into: &result)
        kept = (result.detections, result.panoptic)
        result.recomputedFraction = 1
    }

    public mutating func useTemporal(_ settings: TemporalSettings) throws {
        guard settings.mode == .keyframe, settings.keyframeInterval == interval else {
            throw TemporalConfigError(message: "a keyframe detector runs keyframe mode every \(interval) frames only")
        }
    }
}
