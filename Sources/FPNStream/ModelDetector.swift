import FPNCore
import Foundation
import Outputs
import Tensor
import TemporalReuse
import Vision

/// The runner's detector slot filled by a converted torchvision detector (`.safetensors` from
/// `scripts/convert-torchvision`): the architecture (Mask/Faster R-CNN, RetinaNet, FCOS; v1/v2) comes from the file's
/// metadata. One per stream: it owns the stream's buffers and cached anchors (`DetectorState`); the loaded model
/// itself is immutable and may be shared by several streams (`init(detector:spec:)`, `forNewStream()`).
///
/// Temporal reuse (`useTemporal`, docs/temporal.md): `delta` puts a per-stream `TemporalCache` in the detector's
/// backbone slot (`DetectorState.runner`) and lets the RoI heads reuse unchanged regions (`RegionReuse`); a new frame size (another stream, or a reconnect at another resolution)
/// resets it. Keyframe mode is `KeyframeDetector` around this one (`withTemporal`).
public struct ModelDetector: FrameDetector {
    /// The loaded model (shared, immutable).
    public let detector: any Detector
    /// Per-stream state.
    public let state: DetectorState
    /// Thresholds in use (file defaults with the spec's overrides).
    public let thresholds: DetectionThresholds
    /// Only these class ids are reported (nil = all).
    public let keepClasses: Set<Int>?
    /// Temporal reuse of this stream (mode `off` unless `useTemporal` was called).
    public private(set) var temporal = TemporalSettings()
    /// The stream's temporal state (nil while `off`).
    public private(set) var temporalState: TemporalStreamState?
    /// The spec the detector was built from (for `forNewStream`).
    private let spec: ModelSpec

    /// Loads the model named by `spec.path` and applies the spec's overrides.
    /// - Throws: `ModelDetectorError` naming the file and the problem (unreadable/truncated file, wrong dtype,
    ///   missing or unexpected keys, unknown architecture, class count mismatch, unknown class names).
    public init(spec: ModelSpec) throws {
        let url = URL(fileURLWithPath: spec.path)
        do {
            let file = try SafeTensorsFile(url: url)
            var config = try DetectorConfig(metadata: file.metadata, file: url)
            if spec.minSize != nil || spec.maxSize != nil, case .shorterSide(let lo, let hi) = config.transform.resize {
                let newLo = spec.minSize ?? lo
                config.transform.resize = .shorterSide(min: newLo, max: spec.maxSize ?? max(hi, newLo))
            }
            try self.init(detector: DetectorLoader.load(file: file, config: config), spec: spec)
        } catch let e as ModelDetectorError {
            throw e
        } catch {
            throw ModelDetectorError(message: "\(error)")
        }
    }

    /// As `init(spec:)`, reporting problems as a `PipelineSpecError` naming the pipeline file and `model.*` key.
    public init(spec: ModelSpec, pipelineFile file: String) throws {
        if spec.inputScale != nil {
            throw PipelineSpecError(file: file, line: nil, keyPath: "model.input_scale",
                                    message: "applies to ONNX models only (use model.min_size / max_size)")
        }
        do {
            try self.init(spec: spec)
        } catch let e as ModelDetectorError {
            throw PipelineSpecError(file: file, line: nil, keyPath: spec.classes != nil && e.message.contains("unknown class")
                                        ? "model.classes" : "model.path", message: e.message)
        }
    }

    /// Wraps an already loaded model (e.g. shared between streams) with the spec's thresholds and class filter.
    /// `workspace`: see `forNewStream(workspace:)`.
    public init(detector: any Detector, spec: ModelSpec, workspace: Workspace = Workspace()) throws {
        self.detector = detector
        self.spec = spec
        self.state = DetectorState(workspace: workspace)
        var t = detector.config.thresholds
        if let v = spec.score { t.score = v }
        if let v = spec.nms { t.nms = v }
        if let v = spec.maxDetections { t.maxDetections = v }
        if let v = spec.maskThreshold { t.mask = v }
        thresholds = t
        if let names = spec.classes {
            let all = detector.config.classNames
            var ids = Set<Int>()
            for n in names {
                let matching = all.indices.filter { all[$0] == n }
                guard !matching.isEmpty else {
                    throw ModelDetectorError(message: "model '\(spec.path)': unknown class '\(n)' in classes "
                        + "(the model's classes: \(all.filter { $0 != "N/A" && $0 != "__background__" }.joined(separator: ", ")))")
                }
                ids.formUnion(matching)
            }
            keepClasses = ids
        } else {
            keepClasses = nil
        }
    }

    public var name: String { detector.config.architecture }

    /// The categories of the panoptic output (things 1...K-1 from the class names, then the stuff classes), or nil
    /// when the model has no semantic head.
    public var panopticCategories: [PanopticCategory]? {
        let c = detector.config
        guard let p = c.panoptic else { return nil }
        let things = (1..<c.numClasses).map { PanopticCategory(id: $0, name: c.classNames[$0], isThing: true) }
        let stuff = p.stuffNames.indices.dropFirst().map {
            PanopticCategory(id: c.numClasses - 1 + $0, name: p.stuffNames[$0], isThing: false)
        }
        return things + stuff
    }

    /// A detector for another stream: the same loaded model, thresholds and temporal settings, fresh per-stream
    /// state (buffers, anchors, temporal cache).
    /// `workspace`: the buffer arena of the forward pass, the stream's own by default; streams whose `detect` calls
    /// never overlap (`serve` with one inference slot) can share one, since nothing in it outlives a call.
    public func forNewStream(workspace: Workspace = Workspace()) -> ModelDetector {
        // Cannot throw: the class names were resolved against this model already.
        var d = try! ModelDetector(detector: detector, spec: spec, workspace: workspace)
        try! d.useTemporal(temporal)
        return d
    }

    /// A fresh-state copy (`forNewStream`). In delta mode the copy has its own temporal cache and accuracy guard:
    /// with N workers each cache sees every N-th frame and reuses the features of the frame N before (on a static
    /// camera nearly as alike as the previous one), so the frames run side by side like dense ones. Nil for
    /// `temporal: auto`, whose calibration reads the stream's first frames in order.
    public func replica() -> (any FrameDetector)? {
        temporal.mode == .auto ? nil : forNewStream()
    }

    /// Conv layer keys of the model's backbone + FPN, in forward order (the keys of `layer_thresholds`).
    public var temporalLayerKeys: [String] { detector.backbone.convLayers.map(\.key) }

    public mutating func useTemporal(_ settings: TemporalSettings) throws {
        let known = Set(temporalLayerKeys)
        if let bad = settings.layerThresholds.keys.sorted().first(where: { !known.contains($0) }) {
            let near = temporalLayerKeys.min { SpecReader.editDistance($0, bad) < SpecReader.editDistance($1, bad) } ?? ""
            throw TemporalConfigError(message: "layer_thresholds: '\(bad)' is not a conv layer of \(spec.path) "
                                      + "(did you mean '\(near)'? `fpnstream calibrate` writes valid names)")
        }
        if settings.mode == .delta && detector.backbone.config.body != .resnet {
            throw TemporalConfigError(message: "delta mode needs a ResNet backbone; \(spec.path) is "
                                      + "\(detector.config.architecture) (use keyframe or off)")
        }
        temporal = settings
        switch settings.mode {
        case .off, .keyframe:
            temporalState = nil
            state.runner = nil
            state.regionReuse = nil
        case .delta, .auto:
            var delta = settings
            delta.mode = .delta
            let cache = TemporalCache(settings: delta)
            let t = TemporalStreamState(cache: cache, guard: settings.accuracyGuard,
                                        capture: settings.accuracyGuard.enabled ? PyramidCapture(inner: cache) : nil)
            if settings.mode == .auto { t.autoCalibration = autoCalibration(settings) }
            temporalState = t
            state.runner = t.runner
            state.regionReuse = RegionReuse()
        }
    }

    /// `temporal: auto`: the depth-grouped `calibrate` search for the guard's target agreement over the kept
    /// frames, bounded by `autoRuns`; only the backbone + FPN thresholds change (the heads keep `threshold`).
    private func autoCalibration(_ settings: TemporalSettings) -> AutoCalibration {
        let detector = self.detector, keys = temporalLayerKeys
        let score = max(thresholds.score, settings.accuracyGuard.minScore)
        return AutoCalibration(frames: settings.autoFrames) { images in
            let evaluator = FidelityEvaluator(detector: detector, images: images, score: score, features: false)
            let search = ThresholdCalibration(targetFidelity: settings.accuracyGuard.targetF1, metric: .f1,
                                              candidates: [0.02, 0.05, 0.1, 0.2, 0.3], baseThreshold: 1e-4,
                                              refresh: settings.refreshInterval, denseFallback: settings.denseFallback,
                                              tile: settings.tile, maxRuns: settings.autoRuns)
            guard let o = try? search.run(evaluator, layers: keys, groups: ThresholdCalibration.groups(keys, by: "depth"),
                                          log: { _ in })
            else { return nil }
            return (o.settings.layerThresholds, o.groups.map { "\($0.name) \($0.threshold)" }.joined(separator: ", ")
                    + String(format: " (F1 %.3f on %d frames, %d runs)", o.best.f1, images.count, o.runs))
        }
    }

    public mutating func detect(_ frame: Frame, into result: inout FrameResult) throws {
        guard let t = temporalState else {
            run(frame, &result)
            return
        }
        t.detect(frame, into: &result) { run(frame, &$0) }
    }

    /// The model on `frame` into `result`: detections (class filter applied), panoptic segments (models with
    /// metadata `panoptic: semantic_fpn`), part timings as `detect.*`.
    private func run(_ frame: Frame, _ result: inout FrameResult) {
        var (dets, panoptic) = detector.detectPanoptic(frame.image, state: state, thresholds: thresholds)
        if let keepClasses { dets.removeAll { !keepClasses.contains($0.classID) } }
        result.detections = dets
        if let panoptic { result.panoptic = panoptic }
        result.repeated = state.lastFrameRepeated
        if !state.lastFrameRepeated, let reuse = state.regionReuse { result.regionReuse = reuse.lastCounts }
        for (k, v) in state.timingsMs { result.timingsMs["detect." + k] = v }
    }
}

/// A model file that cannot be used; the message names the file and the problem.
public struct ModelDetectorError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
