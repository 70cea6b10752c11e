import FPNCore
import Tensor

/// The head scaffolding torchvision's one-stage detectors share (`RetinaNetHead`, `FCOSHead` and their
/// `postprocess_detections`), with the parts that differ behind a `DenseHeadDecoder`:
///
/// ```
///  per level l:  features ─┬─ cls tower ─ cls_logits ──────────────┐
///                          └─ reg tower ─┬─ bbox_reg ───────────────┼─ decoder.candidates (score > t, in the
///                                        └─ extras (FCOS: ctrness) ─┘  flattened order) ─ top-k ─ decoder.decode
///                                                                      (anchor or point) ─ clip
///  all levels:   batched NMS per class ─ best maxDetections ─ source pixels
/// ```
/// Every conv runs through the context's `ConvolutionRunner` with `instance` = level, so a temporal cache keeps one
/// state per level. Anchors (one set per level, from `anchors`) are cached in the `DetectorState`.
struct DenseHead {
    let clsTower: ConvTower
    let regTower: ConvTower
    let clsLogits: ConvLayer
    let bboxReg: ConvLayer
    /// Predictors on the regression tower after `bboxReg` (FCOS: `bbox_ctrness`).
    let regExtras: [ConvLayer]
    /// Anchors per level (FCOS: one point-sized square per location).
    let anchors: AnchorGenerator

    /// The predictions of one level: `logits` [1, classOutputs, h, w], `regression` [1, regressionOutputs, h, w],
    /// one tensor per extra predictor.
    struct LevelOutputs {
        let logits: Tensor
        let regression: Tensor
        let extras: [Tensor]
        /// Grid locations (h · w).
        var locations: Int { logits.h * logits.w }
    }

    /// Loads `head.classification_head.` (tower, `cls_logits`) and `head.regression_head.` (tower, `bbox_reg`,
    /// then each of `extras`), every predictor a 3x3 conv with bias, in that order.
    init(_ loader: ModuleLoader, channels ch: Int, towers layout: ConvTower.Layout, classOutputs: Int,
         regressionOutputs: Int, regressionActivation: Activation = .none, extras: [(name: String, outputs: Int)] = [],
         anchors: AnchorGenerator) throws {
        clsTower = try ConvTower(loader, prefix: "head.classification_head.", channels: ch, layout: layout)
        clsLogits = try loader.conv("head.classification_head.cls_logits", in: ch, out: classOutputs, kernel: 3,
                                    padding: 1, bias: true)
        regTower = try ConvTower(loader, prefix: "head.regression_head.", channels: ch, layout: layout)
        bboxReg = try loader.conv("head.regression_head.bbox_reg", in: ch, out: regressionOutputs, kernel: 3,
                                  padding: 1, bias: true, activation: regressionActivation)
        regExtras = try extras.map {
            try loader.conv("head.regression_head.\($0.name)", in: ch, out: $0.outputs, kernel: 3, padding: 1,
                            bias: true)
        }
        self.anchors = anchors
    }

    /// One frame: transform, backbone, the head on every level, then torchvision's batched NMS, the
    /// `maxDetections` best and the mapping to source pixels. Timings `transform` / `backbone` / `heads` go to
    /// `state.timingsMs`.
    func detect<D: DenseHeadDecoder>(_ image: RGBImage, state: DetectorState, transform: DetectionTransform,
                                     backbone: ResNetFPNBackbone, thresholds t: DetectionThresholds, names: [String],
                                     decoder: D) -> [Detection] {
        let ws = state.workspace
        ws.beginFrame()
        var clock = Benchmark.now()
        let (input, g) = transform(image, workspace: ws)
        let transformMs = DetectorSupport.lap(&clock)
        let pyramid = backbone(input, workspace: ws, runner: state.runner)
        let levels = pyramid.levels
        let backboneMs = DetectorSupport.lap(&clock)
        if let observe = state.pyramidObserver {
            observe(pyramid, g)
            clock = Benchmark.now()
        }
        // A pyramid the runner vouches for as unchanged repeats the last frame's result (see `DetectorState`).
        let key = DetectorState.ResultKey(width: image.width, height: image.height, thresholds: t, panoptic: false)
        if let last = state.repeatedResult(key, pyramid: pyramid, backbone: backbone) {
            state.timingsMs = ["transform": transformMs, "backbone": backboneMs]
            return last.detections
        }
        defer {
            state.timingsMs = ["transform": transformMs, "backbone": backboneMs, "heads": DetectorSupport.lap(&clock)]
        }
        let dets = heads(levels, geometry: g, state: state, thresholds: t, names: names, decoder: decoder)
        state.keep(key, detections: dets, panoptic: nil)
        return dets
    }

    /// The head on every level of this frame's pyramid, NMS, the best `maxDetections` in source pixels.
    private func heads<D: DenseHeadDecoder>(_ levels: [PyramidLevel], geometry g: TransformGeometry,
                                            state: DetectorState, thresholds t: DetectionThresholds, names: [String],
                                            decoder: D) -> [Detection] {
        let ws = state.workspace
        let anchors = state.anchors(self.anchors, grids: DetectorSupport.grids(levels), paddedHeight: g.paddedHeight,
                                    paddedWidth: g.paddedWidth)
        var all = RawDetections()
        let ctx = ForwardContext(workspace: ws, runner: state.runner)
        for (l, lv) in levels.enumerated() {
            candidates(lv.features, level: l, anchors: anchors[l], geometry: g, ctx, thresholds: t, decoder: decoder,
                       into: &all)
        }
        let keep = NMS.batched(boxes: all.boxes, scores: all.scores, idxs: all.labels, iouThreshold: t.nms)
        return DetectorSupport.detections(all.select(Array(keep.prefix(t.maxDetections))), geometry: g, names: names)
    }

    /// The head on level `l`: scored candidates, the `topKCandidates` best decoded and clipped to the resized
    /// image, appended to `all` in input pixels.
    func candidates<D: DenseHeadDecoder>(_ features: Tensor, level l: Int, anchors: [Box], geometry g: TransformGeometry,
                                         _ ctx: ForwardContext, thresholds t: DetectionThresholds, decoder: D,
                                         into all: inout RawDetections) {
        let ws = ctx.workspace
        let imgW = Float(g.resizedWidth), imgH = Float(g.resizedHeight)
        let out = forward(features, level: l, ctx)
        let (idx, sc) = decoder.candidates(out, threshold: t.score)
        let top = NMS.topK(sc, min(t.topKCandidates, sc.count))
        let hw = out.locations
        out.regression.withUnsafeBufferPointer { d in
            for j in top {
                let (box, label) = decoder.decode(idx[j], regression: d, locations: hw, anchors: anchors)
                all.boxes.append(box.clipped(width: imgW, height: imgH))
                all.scores.append(sc[j])
                all.labels.append(label)
            }
        }
        ws.release(out.logits)
        ws.release(out.regression)
        for e in out.extras { ws.release(e) }
    }

    /// Towers and predictors on one level's features (not modified): classification first, then regression.
    func forward(_ x: Tensor, level l: Int, _ ctx: ForwardContext) -> LevelOutputs {
        let ws = ctx.workspace
        let ct = clsTower(x, ctx, level: l)
        let logits = clsLogits(ct, instance: l, ctx)
        ws.release(ct)
        let rt = regTower(x, ctx, level: l)
        let regression = bboxReg(rt, instance: l, ctx)
        let extras = regExtras.map { $0(rt, instance: l, ctx) }
        ws.release(rt)
        return LevelOutputs(logits: logits, regression: regression, extras: extras)
    }
}

/// What one one-stage architecture does with a level's predictions: which (location, anchor, class) entries are
/// candidates with which score, and how a candidate's box comes out of the regression.
protocol DenseHeadDecoder {
    /// Candidates of one level scoring above `threshold`: indices into the architecture's flattened order
    /// (torchvision's, so top-k ties break the same way) and their scores.
    func candidates(_ out: DenseHead.LevelOutputs, threshold: Float) -> (indices: [Int], scores: [Float])
    /// Box (input pixels, not clipped) and label of the candidate at flattened index `flat`; `d` is the level's
    /// regression output, `hw` its locations, `anchors` the level's anchors.
    func decode(_ flat: Int, regression d: UnsafeBufferPointer<Float>, locations hw: Int,
                anchors: [Box]) -> (box: Box, label: Int)
}
