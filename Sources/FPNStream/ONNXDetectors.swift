import TemporalReuse
import FPNCore
import Foundation
import ONNX
import Vision

/// Builds the runner's detector for ONNX model files (`model.path: *.onnx` or `model.kind: onnx-centerface`):
/// CenterFace (four outputs) or an Ultralytics YOLO detect/segment export, told apart by the outputs.
public enum ONNXDetectors {
    /// The detector for `model`, or nil when the model is not an ONNX file (another loader's business).
    /// Throws `PipelineSpecError` (naming the pipeline file and `model.*`) for a missing, unreadable, corrupt or
    /// unsupported model file, or settings that do not apply to it.
    public static func detector(for model: ModelSpec, pipelineFile file: String) throws -> (any FrameDetector)? {
        guard let network = try network(for: model, pipelineFile: file) else { return nil }
        return try detector(for: model, network: network, pipelineFile: file)
    }

    /// True when `model` is read by this loader (an `.onnx` path or an ONNX `model.kind`).
    public static func isONNX(_ model: ModelSpec) -> Bool {
        model.kind == .onnxCenterFace || model.path.lowercased().hasSuffix(".onnx")
    }

    /// The compiled network of an ONNX `model` (nil for another kind of model), after checking that the settings
    /// apply to ONNX models. The network is immutable: one can serve any number of detectors (`detector(for:
    /// network:pipelineFile:)`), each with its own session buffers.
    public static func network(for model: ModelSpec, pipelineFile file: String) throws -> ONNXNetwork? {
        guard isONNX(model) else { return nil }
        for (key, set) in [("mask_threshold", model.maskThreshold != nil), ("min_size", model.minSize != nil),
                           ("max_size", model.maxSize != nil)] where set {
            throw specError(file, "model.\(key)",
                            "does not apply to ONNX models (CenterFace: model.input_scale; YOLO: the file's input size)")
        }
        do {
            return try ONNXNetwork(contentsOf: URL(fileURLWithPath: model.path))
        } catch {
            throw specError(file, "model.path", "\(error)")
        }
    }

    /// A new per-stream detector on `network` (loaded by `network(for:pipelineFile:)` from `model.path`).
    public static func detector(for model: ModelSpec, network: ONNXNetwork,
                                pipelineFile file: String) throws -> any FrameDetector {
        let fail = { (key: String, message: String) in specError(file, key, message) }
        if model.kind == .auto, !isCenterFace(network) {
            return try yolo(network, model, fail)
        }
        var options = CenterFace.Options()
        if let s = model.score { options.threshold = s }
        if let n = model.nms { options.nmsIoU = n }
        if let s = model.inputScale { options.inputScale = s }
        if let classes = model.classes, !classes.contains(CenterFace.className) {
            throw fail("model.classes", "CenterFace detects only 'face'; \(classes) would keep nothing")
        }
        do {
            return CenterFaceFrameDetector(detector: try CenterFaceDetector(network: network, options: options),
                                           maxDetections: model.maxDetections)
        } catch {
            throw fail("model.path", "\(error)")
        }
    }

    static func specError(_ file: String, _ key: String, _ message: String) -> PipelineSpecError {
        PipelineSpecError(file: file, line: nil, keyPath: key, message: message)
    }

    /// CenterFace's signature: four outputs of 1, 2, 2 and 10 channels.
    static func isCenterFace(_ network: ONNXNetwork) -> Bool {
        guard network.outputNames.count == 4, network.metadata["task"] == nil,
              let shapes = try? ONNXSession(network).outputShapes(forInput: network.inputShape(height: 32, width: 32)) else {
            return false
        }
        return shapes.map { $0.count == 4 ? $0[1] : 0 } == [1, 2, 2, 10]
    }

    /// An Ultralytics YOLO detect/segment export; anything else is an error naming the layouts expected.
    static func yolo(_ network: ONNXNetwork, _ model: ModelSpec,
                     _ fail: (String, String) -> PipelineSpecError) throws -> any FrameDetector {
        if model.inputScale != nil { throw fail("model.input_scale", "does not apply to YOLO models (the input size is in the file)") }
        var options = YOLO.Options()
        if let s = model.score { options.score = s }
        if let n = model.nms { options.iou = n }
        if let m = model.maxDetections { options.maxDetections = m }
        let detector: YOLODetector
        do {
            detector = try YOLODetector(network: network, options: options)
        } catch {
            throw fail("model.path", "\(error); CenterFace (4 outputs of 1, 2, 2, 10 channels) is the other ONNX layout understood")
        }
        if let classes = model.classes {
            let unknown = classes.filter { !detector.layout.names.contains($0) }
            if !unknown.isEmpty { throw fail("model.classes", "\(unknown) are not classes of this model") }
        }
        return YOLOFrameDetector(detector: detector, classes: model.classes.map(Set.init))
    }
}

/// The runner's detector slot filled by an Ultralytics YOLO export (detect or segment): boxes (and masks) in source
/// pixels, class ids 0-based as in the model. Per-stream: holds the session's buffers and, in delta mode, the
/// stream's `TemporalCache` as its conv runner.
public struct YOLOFrameDetector: FrameDetector {
    let detector: YOLODetector
    let classes: Set<String>?
    private var temporalState: TemporalStreamState?

    init(detector: YOLODetector, classes: Set<String>?) {
        self.detector = detector
        self.classes = classes
    }

    public var name: String { "yolo-\(detector.layout.task.rawValue)" }

    public mutating func useTemporal(_ settings: TemporalSettings) throws {
        temporalState = try .onnx(settings)
        detector.runner = temporalState?.cache
    }

    public func detect(_ frame: Frame, into result: inout FrameResult) throws {
        guard let t = temporalState else {
            result.detections = try objects(frame)
            return
        }
        try t.detect(frame, into: &result) { $0.detections = try objects(frame) }
    }

    private func objects(_ frame: Frame) throws -> [Detection] {
        var found = try detector.detect(frame.image)
        if let classes { found = found.filter { classes.contains($0.className) } }
        return found
    }

    /// A detector with its own session on the same network, while temporal reuse is off.
    public func replica() -> (any FrameDetector)? {
        guard temporalState == nil, let d = try? YOLODetector(network: detector.network, options: detector.options)
        else { return nil }
        return YOLOFrameDetector(detector: d, classes: classes)
    }
}

/// The runner's detector slot filled by CenterFace: faces (class `face`, 5 landmarks) in source pixels.
/// Per-stream: holds the ONNX session's buffers and, in delta mode, the stream's `TemporalCache` as the session's
/// conv runner (every conv of the network recomputes only changed tiles), reset when the frame size changes.
public struct CenterFaceFrameDetector: FrameDetector {
    let detector: CenterFaceDetector
    /// Keep at most this many faces (highest scores); nil = all.
    let maxDetections: Int?
    private var temporalState: TemporalStreamState?

    init(detector: CenterFaceDetector, maxDetections: Int?) {
        self.detector = detector
        self.maxDetections = maxDetections
    }

    public var name: String { "centerface" }

    public mutating func useTemporal(_ settings: TemporalSettings) throws {
        temporalState = try .onnx(settings)
        detector.runner = temporalState?.cache
    }

    public func detect(_ frame: Frame, into result: inout FrameResult) throws {
        guard let t = temporalState else {
            result.detections = try faces(frame)
            return
        }
        try t.detect(frame, into: &result) { $0.detections = try faces(frame) }
    }

    /// A detector with its own session on the same network, while temporal reuse is off.
    public func replica() -> (any FrameDetector)? {
        guard temporalState == nil, let d = try? CenterFaceDetector(network: detector.network, options: detector.options)
        else { return nil }
        return CenterFaceFrameDetector(detector: d, maxDetections: maxDetections)
    }

    private func faces(_ frame: Frame) throws -> [Detection] {
        var faces = try detector.detect(frame.image)
        if let cap = maxDetections, faces.count > cap {
            faces = Array(faces.sorted { $0.score > $1.score }.prefix(cap))
        }
        return faces
    }
}

extension TemporalStreamState {
    /// An ONNX detector's per-stream delta state (nil in other modes; every conv of the graph runs through its
    /// cache). Imported graphs have no layer names to tune, so only the global threshold applies.
    static func onnx(_ settings: TemporalSettings) throws -> TemporalStreamState? {
        if !settings.layerThresholds.isEmpty {
            throw TemporalConfigError(message: "layer_thresholds are not supported for ONNX models (use threshold)")
        }
        var s = settings
        s.mode = .delta    // no layer names to calibrate: auto is delta with the guard
        return settings.usesCache ? TemporalStreamState(cache: TemporalCache(settings: s), guard: s.accuracyGuard)
            : nil
    }
}
