import FPNCore
import Foundation
import Tensor

/// An object detector: RGB frame → detections in source-frame pixels.
///
/// ```
///  RGBImage ─ DetectionTransform (normalise, resize 800/1333, pad /32) ─ ResNet-FPN backbone ─ heads
///           ─ post-processing (decode, NMS, masks) ─ boxes mapped back by source/resized per axis ─ [Detection]
/// ```
/// Implementations are immutable after loading (one instance serves every stream); everything that lives across
/// frames of one stream (buffers, cached anchors, a temporal conv cache) is in the `DetectorState` passed to
/// `detect`.
public protocol Detector: AnyObject, Sendable {
    /// What was loaded (architecture, classes, default thresholds, transform).
    var config: DetectorConfig { get }
    /// The backbone (shared), e.g. for a temporal cache that needs its conv layers.
    var backbone: ResNetFPNBackbone { get }
    /// Detects objects in `image`; boxes (and masks) in `image`'s pixels, sorted by descending score.
    /// `thresholds` default to `config.thresholds`.
    func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection]
}

extension Detector {
    /// `detect` with the model's default thresholds.
    public func detect(_ image: RGBImage, state: DetectorState) -> [Detection] {
        detect(image, state: state, thresholds: nil)
    }

    /// Detections plus, for a panoptic model (`config.panoptic != nil`), the panoptic segments of the same forward
    /// pass (nil for other detectors).
    public func detectPanoptic(_ image: RGBImage, state: DetectorState,
                               thresholds: DetectionThresholds? = nil) -> (detections: [Detection], panoptic: [PanopticSegment]?) {
        if let rcnn = self as? GeneralizedRCNN { return rcnn.run(image, state: state, thresholds: thresholds, panoptic: true) }
        return (detect(image, state: state, thresholds: thresholds), nil)
    }
}

/// Per-stream state of a detector: the buffer arena, cached anchors, and an optional convolution runner (temporal
/// cache or profiler) for the backbone. Use one per stream, from one thread at a time.
public final class DetectorState: @unchecked Sendable {
    /// Buffer arena: after the first frame of a size, the forward pass allocates no tensors. Nothing in it survives
    /// a `detect` call, so streams whose calls never overlap (one inference at a time) may share one.
    public let workspace: Workspace
    /// Optional runner that takes over the backbone's convolutions (nil = dense).
    public var runner: ConvolutionRunner?
    /// Called once per `detect`, right after the backbone, with the pyramid and the input geometry (nil = not
    /// called). The levels are workspace buffers: read them during the call, do not keep them.
    public var pyramidObserver: ((FeaturePyramid, TransformGeometry) -> Void)?
    /// Optional per-stream reuse of the RoI heads' per-region results (temporal `delta` mode; nil = every region
    /// computed).
    public var regionReuse: RegionReuse?
    /// Wall time of each part of the last `detect` call in milliseconds ("transform", "backbone", "heads", and
    /// for R-CNN "rpn", "roi_heads", "masks").
    public internal(set) var timingsMs: [String: Double] = [:]
    /// Frames whose result was the previous frame's because the runner vouched for an unchanged pyramid (a delta
    /// frame whose changes, if any, stayed below every threshold on the way to the levels): the heads and
    /// post-processing did not run; the result is what they computed from the same levels the frame before.
    public internal(set) var repeatedFrames = 0
    /// Whether the last `detect` call was such a frame.
    public internal(set) var lastFrameRepeated = false

    /// What a frame's result depends on besides the pyramid.
    struct ResultKey: Equatable {
        var width: Int, height: Int, thresholds: DetectionThresholds, panoptic: Bool
    }
    /// The last frame's result (kept only with a runner).
    var lastResult: (key: ResultKey, detections: [Detection], panoptic: [PanopticSegment]?)?

    /// The last frame's result when everything after the backbone would repeat it: the same `key` and a `pyramid`
    /// the runner vouches for as unchanged (`ResNetFPNBackbone.pyramidRepeats`). Counts the frame; nil: compute
    /// the heads, then `keep` their result.
    func repeatedResult(_ key: ResultKey, pyramid: FeaturePyramid,
                        backbone: ResNetFPNBackbone) -> (detections: [Detection], panoptic: [PanopticSegment]?)? {
        guard let runner, let last = lastResult, last.key == key, backbone.pyramidRepeats(pyramid, runner: runner)
        else {
            lastFrameRepeated = false
            return nil
        }
        runner.skippedRestOfFrame()
        repeatedFrames += 1
        lastFrameRepeated = true
        return (last.detections, last.panoptic)
    }

    /// Keeps this frame's result for `repeatedResult` (with a runner only).
    func keep(_ key: ResultKey, detections: [Detection], panoptic: [PanopticSegment]?) {
        lastResult = runner == nil ? nil : (key, detections, panoptic)
    }

    /// Anchors per level for the last input geometry (the same for every frame of a stream).
    var anchorKey: [Int] = []
    var anchors: [[Box]] = []

    /// `workspace`: the stream's own arena, or one shared with other streams whose `detect` calls are serialized.
    public init(runner: ConvolutionRunner? = nil, workspace: Workspace = Workspace()) {
        self.runner = runner
        self.workspace = workspace
    }

    /// Anchors for `levels` grids of a padded input, cached while the sizes do not change.
    func anchors(_ generator: AnchorGenerator, grids: [(Int, Int)], paddedHeight: Int, paddedWidth: Int) -> [[Box]] {
        let key = [paddedHeight, paddedWidth] + grids.flatMap { [$0.0, $0.1] }
        if key != anchorKey {
            anchors = grids.enumerated().map { l, g in
                generator.anchors(level: l, gridHeight: g.0, gridWidth: g.1, paddedHeight: paddedHeight,
                                  paddedWidth: paddedWidth)
            }
            anchorKey = key
        }
        return anchors
    }
}

/// Loads any supported detector from a safetensors weights file, choosing the architecture from its metadata.
public enum DetectorLoader {
    /// Reads `url`, builds the detector named by `__metadata__["architecture"]` and verifies every key and shape.
    /// - Throws: `SafeTensorsError` (missing, truncated or corrupt file, unsupported dtype), `ModelLoadError`
    ///   (metadata: missing/unknown architecture, bad values), `WeightMismatchError` (missing, unexpected or
    ///   mis-shaped keys), `DetectorLoadError` (class count mismatch) — each naming the file.
    public static func load(contentsOf url: URL) throws -> any Detector {
        let file = try SafeTensorsFile(url: url)
        let config = try DetectorConfig(metadata: file.metadata, file: url)
        return try load(file: file, config: config)
    }

    /// Builds the detector `config` describes from `file` (verified strictly).
    public static func load(file: SafeTensorsFile, config: DetectorConfig) throws -> any Detector {
        let (detector, loader) = try build(file: file, config: config)
        try loader.verify()
        return detector
    }

    /// Every key and shape the detector `config` describes expects of `file` (widths the weights would decide take
    /// their metadata value or default when `file` lacks the tensors): with `SyntheticWeights.stateDict(expected:)`
    /// a complete synthetic model for tests and benchmarks.
    public static func expectedKeys(file: SafeTensorsFile, config: DetectorConfig) throws -> [String: [Int]] {
        try build(file: file, config: config).loader.expected
    }

    static func build(file: SafeTensorsFile, config: DetectorConfig) throws -> (detector: any Detector, loader: ModuleLoader) {
        let loader = ModuleLoader(file: file)
        let detector: any Detector
        switch config.family {
        case .maskRCNN, .fasterRCNN, .keypointRCNN: detector = try GeneralizedRCNN(config: config, loader: loader)
        case .retinaNet: detector = try RetinaNet(config: config, loader: loader)
        case .fcos: detector = try FCOS(config: config, loader: loader)
        }
        return (detector, loader)
    }

    /// A layer width the weights decide (torchvision's builders fix 1024 / 256, smaller models choose): the
    /// metadata value `metadataKey` when present (a positive integer, else `ModelLoadError`), else dimension `axis`
    /// of `key`'s shape, else `fallback`. A metadata value contradicting the shapes is reported by `verify()` as a
    /// mis-shaped key.
    static func width(_ loader: ModuleLoader, metadataKey: String? = nil, key: String, axis: Int = 0,
                      fallback: Int) throws -> Int {
        if let mk = metadataKey, let s = loader.file.metadata[mk] {
            guard let v = Int(s), v > 0 else {
                throw ModelLoadError(file: loader.file.url, reason: .badMetadata(key: mk, value: s))
            }
            return v
        }
        if let shape = loader.file.shape(key), shape.count > axis, shape[axis] > 0 { return shape[axis] }
        return fallback
    }

    /// The class count the weights predict, checked against the metadata's class list when it has one.
    /// `key`'s first dimension divided by `per` is the class count (RetinaNet: A·K logits).
    static func classCount(_ loader: ModuleLoader, config: inout DetectorConfig, key: String, per: Int = 1,
                           metadataHasClasses: Bool) throws -> Int {
        guard let shape = loader.file.shape(key), let rows = shape.first, rows > 0 else {
            return config.numClasses  // missing key: verify() reports it with every other problem
        }
        let n = rows / per
        guard n > 0, rows % per == 0 else {
            throw DetectorLoadError(file: loader.file.url, reason: .classCount(
                what: "'\(key)' \(shape) is not \(per) x classes"))
        }
        if metadataHasClasses && n != config.numClasses {
            throw DetectorLoadError(file: loader.file.url, reason: .classCount(
                what: "__metadata__ names \(config.numClasses) classes but '\(key)' \(shape) predicts \(n)"))
        }
        if !metadataHasClasses || config.classNames.count != n {
            config.numClasses = n
            if config.classNames.count != n { config.classNames = (0..<n).map { "class\($0)" } }
        }
        return n
    }
}

/// Raw detections of one frame in network-input pixels (before mapping back to the source frame).
struct RawDetections {
    var boxes: [Box] = []
    var scores: [Float] = []
    var labels: [Int] = []
}

extension RawDetections {
    /// Keeps the entries at `indices` in that order.
    func select(_ indices: [Int]) -> RawDetections {
        RawDetections(boxes: indices.map { boxes[$0] }, scores: indices.map { scores[$0] },
                      labels: indices.map { labels[$0] })
    }
}

/// Shared pieces of the detectors' forward passes.
enum DetectorSupport {
    /// Milliseconds since `t` (seconds from `Benchmark.now()`), and resets `t` to now.
    static func lap(_ t: inout Double) -> Double {
        let now = Benchmark.now()
        defer { t = now }
        return (now - t) * 1000
    }

    /// torchvision's `resize_boxes`: input-pixel boxes → source pixels, per-axis Float32 ratio.
    static func toSource(_ b: Box, _ g: TransformGeometry) -> Box {
        let rx = g.toSourceX, ry = g.toSourceY
        return Box(x1: b.x1 * rx, y1: b.y1 * ry, x2: b.x2 * rx, y2: b.y2 * ry)
    }

    /// `Detection`s in source pixels from raw detections (no masks).
    static func detections(_ raw: RawDetections, geometry g: TransformGeometry, names: [String]) -> [Detection] {
        (0..<raw.boxes.count).map { i in
            let label = raw.labels[i]
            return Detection(box: toSource(raw.boxes[i], g), score: raw.scores[i], classID: label,
                             className: label < names.count ? names[label] : "class\(label)")
        }
    }

    /// Grid sizes of pyramid levels.
    static func grids(_ levels: [PyramidLevel]) -> [(Int, Int)] { levels.map { ($0.features.h, $0.features.w) } }

    /// `1 / (1 + exp(-x))` as torch computes it for Float32 (to within an ulp).
    @inline(__always) static func sigmoid(_ x: Float) -> Float {
        if x >= 0 { return 1 / (1 + expf(-x)) }
        let e = expf(x)
        return e / (1 + e)
    }
}
