import FPNCore

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
}

/// The placeholder detector: finds nothing. Lets the whole pipeline (decode → annotate → JSONL/video) run before any
/// model exists.
public struct NoDetector: FrameDetector {
    public init() {}
    public var name: String { "none" }
    public func detect(_ frame: Frame, into result: inout FrameResult) throws {}
}
