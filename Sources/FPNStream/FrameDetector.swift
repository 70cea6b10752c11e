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
    /// (unknown layer names). The default: only `off` is accepted.
    mutating func useTemporal(_ settings: TemporalSettings) throws
}

extension FrameDetector {
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
}
