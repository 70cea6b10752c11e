import FPNCore
import Foundation
import Tensor

/// torchvision's `GeneralizedRCNN` (Faster R-CNN and Mask R-CNN) at test time:
///
/// ```
///  transform ─ backbone (P2-P6) ─ rpn (1000 proposals) ─ roi_heads (boxes; masks on the detections)
///            ─ postprocess: boxes × source/resized, masks pasted at source size, thresholded > mask, COCO RLE
/// ```
public final class GeneralizedRCNN: Detector, @unchecked Sendable {
    public let config: DetectorConfig
    public let backbone: ResNetFPNBackbone
    let transform: DetectionTransform
    let rpn: RegionProposalNetwork
    let roiHeads: RoIHeads
    /// Panoptic FPN only: detectron2's semantic FPN head on P2-P5 (keys `sem_seg_head.*`).
    let semanticHead: SemanticFPNHead?
    /// Keypoint R-CNN only.
    let keypointHead: KeypointHead?

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let hasMasks = config.family == .maskRCNN
        let k = try DetectorLoader.classCount(loader, config: &config, key: "roi_heads.box_predictor.cls_score.weight",
                                              metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        let ch = config.backbone.fpnChannels
        rpn = try RegionProposalNetwork(loader, prefix: "rpn.head.", channels: ch, convDepth: config.variant == 2 ? 2 : 1,
                                        generator: config.anchorGenerator, settings: config.rpn)
        roiHeads = try RoIHeads(loader, channels: ch, variant: config.variant, numClasses: k, masks: hasMasks)
        transform = DetectionTransform(config.transform)
        if config.family == .keypointRCNN {
            let head = try KeypointHead(loader, channels: ch)
            guard head.count == config.keypointNames.count else {
                throw DetectorLoadError(file: loader.file.url, reason: .classCount(
                    what: "__metadata__ 'keypoint_names' lists \(config.keypointNames.count) keypoints but "
                        + "'roi_heads.keypoint_predictor.kps_score_lowres.weight' predicts \(head.count)"))
            }
            keypointHead = head
        } else {
            keypointHead = nil
        }
        if var p = config.panoptic {
            let head = "sem_seg_head."
            let dims = try p.convDims ?? DetectorLoader.width(loader, key: head + "p2.0.weight", fallback: 128)
            let classes = try DetectorLoader.width(loader, key: head + "predictor.weight",
                                                   fallback: max(p.stuffNames.count, 2))
            if !p.stuffNames.isEmpty && p.stuffNames.count != classes {
                throw DetectorLoadError(file: loader.file.url, reason: .classCount(
                    what: "__metadata__ 'stuff_classes' lists \(p.stuffNames.count) names but "
                        + "'\(head)predictor.weight' predicts \(classes) semantic classes"))
            }
            if p.stuffNames.isEmpty { p.stuffNames = ["things"] + (1..<classes).map { "stuff\($0)" } }
            guard dims % p.groups == 0 else {
                throw ModelLoadError(file: loader.file.url, reason: .badMetadata(
                    key: "gn_groups", value: "\(p.groups) (does not divide the head width \(dims))"))
            }
            p.convDims = dims
            config.panoptic = p
            semanticHead = try SemanticFPNHead(loader, prefix: head, inChannels: ch, convDims: dims, numClasses: classes,
                                               groups: p.groups, eps: p.eps)
        } else {
            semanticHead = nil
        }
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        run(image, state: state, thresholds: thresholds, panoptic: false).detections
    }

    /// The forward pass; with `panoptic` (and a semantic head) also the semantic head on the same P2-P5 and
    /// detectron2's panoptic merge. Stuff segments get category id `numClasses - 1 + label` (after the things).
    func run(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?,
             panoptic: Bool) -> (detections: [Detection], panoptic: [PanopticSegment]?) {
        let t = thresholds ?? config.thresholds
        let ws = state.workspace
        ws.beginFrame()
        var clock = Benchmark.now()
        var ms: [String: Double] = [:]
        let (input, g) = transform(image, workspace: ws)
        ms["transform"] = DetectorSupport.lap(&clock)
        let pyramid = backbone(input, workspace: ws, runner: state.runner)
        let levels = pyramid.levels
        ms["backbone"] = DetectorSupport.lap(&clock)
        if let observe = state.pyramidObserver {
            observe(pyramid, g)
            clock = Benchmark.now()
        }
        defer { state.timingsMs = ms }
        // Everything below is a function of the pyramid, the frame size and the thresholds: a pyramid the runner
        // vouches for as unchanged repeats the last frame's result.
        let key = DetectorState.ResultKey(width: image.width, height: image.height, thresholds: t, panoptic: panoptic)
        if let last = state.repeatedResult(key, pyramid: pyramid, backbone: backbone) { return last }
        let result = heads(image, levels: levels, geometry: g, state: state, thresholds: t, panoptic: panoptic,
                           ms: &ms, clock: &clock)
        state.keep(key, detections: result.detections, panoptic: result.panoptic)
        return result
    }

    /// The heads and post-processing of `run` on this frame's pyramid `levels`.
    private func heads(_ image: RGBImage, levels: [PyramidLevel], geometry g: TransformGeometry, state: DetectorState,
                       thresholds t: DetectionThresholds, panoptic: Bool, ms: inout [String: Double],
                       clock: inout Double) -> (detections: [Detection], panoptic: [PanopticSegment]?) {
        let ws = state.workspace
        let pooled = Array(levels.prefix(config.pooledLevelCount))
        state.regionReuse?.beginFrame(levels: pooled.map(\.features),
                                      written: pooled.map { state.runner?.writtenTiles($0.features) })
        let proposals = rpn(levels, geometry: g, state: state)
        ms["rpn"] = DetectorSupport.lap(&clock)
        let pooling = state.regionReuse?.channelsLast(pooled.map(\.features), channels: roiHeads.channels,
                                                         workspace: ws)
            ?? roiHeads.poolingLevels(pooled, ws: ws)
        let raw = roiHeads.detect(pooling, proposals: proposals, geometry: g, thresholds: t, ws: ws,
                                  reuse: state.regionReuse)
        var dets = DetectorSupport.detections(raw, geometry: g, names: config.classNames)
        ms["roi_heads"] = DetectorSupport.lap(&clock)
        let merge = panoptic ? config.panoptic?.merge : nil
        // Binary masks over their pasted regions of the instances the panoptic merge can take (score >= its threshold).
        var instances: [PanopticMerge.Instance] = []
        if roiHeads.maskConvs != nil {
            let probs = roiHeads.masks(pooling, detections: raw, geometry: g, ws: ws, reuse: state.regionReuse)
            // Detections are pasted independently: split over the cores this frame may use (when frames run one at
            // a time: `--detect-workers 1`, `temporal: auto`), on the calling thread when it has one core (a detect
            // worker). Results keep detection order.
            let boxes = dets.map(\.box), scores = dets.map(\.score), classes = dets.map(\.classID)
            let mergeFrom = merge?.instanceScoreThreshold
            var rles = [MaskRLE?](repeating: nil, count: dets.count)
            var taken = [PanopticMerge.Instance?](repeating: nil, count: dets.count)
            let area = boxes.reduce(0) { $0 + Int(max(0, ($1.x2 - $1.x1) * ($1.y2 - $1.y1))) }
            probs.withUnsafeBufferPointer { p in
                rles.withUnsafeMutableBufferPointer { rp in
                    taken.withUnsafeMutableBufferPointer { tp in
                        Parallel.forEach(boxes.count, cost: 16 * area) { range in
                            for i in range {
                                let m = UnsafeBufferPointer(rebasing: p[(i * 784)..<((i + 1) * 784)])
                                let pasted = MaskPaste.paste(mask: m, size: 28, box: boxes[i], imageHeight: image.height,
                                                             imageWidth: image.width)
                                rp[i] = pasted.rle(threshold: t.mask)
                                if let mergeFrom, scores[i] >= mergeFrom {
                                    tp[i] = PanopticMerge.Instance(score: scores[i], classID: classes[i], pasted: pasted,
                                                                   threshold: t.mask)
                                }
                            }
                        }
                    }
                }
            }
            for i in dets.indices { dets[i].mask = rles[i] }
            instances = taken.compactMap { $0 }
            ms["masks"] = DetectorSupport.lap(&clock)
        }
        if let keypointHead {
            let kps = keypointHead.keypoints(roiHeads, pooling, boxes: raw.boxes, geometry: g, ws: ws,
                                              reuse: state.regionReuse)
            let rx = g.toSourceX, ry = g.toSourceY  // torchvision's resize_keypoints
            for i in dets.indices {
                dets[i].keypoints = kps[i].map { Keypoint(x: $0.x * rx, y: $0.y * ry, score: $0.score) }
            }
            ms["keypoints"] = DetectorSupport.lap(&clock)
        }
        ms["heads"] = ms["rpn"]! + ms["roi_heads"]! + (ms["masks"] ?? 0) + (ms["keypoints"] ?? 0)
        guard let merge, let semanticHead, let p = config.panoptic else { return (dets, nil) }
        let logits = semanticHead.logits(levels.prefix(4).map(\.features), workspace: ws, runner: state.runner)
        let semantic = semanticHead.segmentation(logits: logits, inputSize: (g.resizedHeight, g.resizedWidth),
                                                 outputSize: (image.height, image.width), workspace: ws)
        ws.release(logits)
        ms["semantic"] = DetectorSupport.lap(&clock)
        let result = PanopticMerge.merge(regions: instances, semantic: semantic, config: merge)
        let things = config.numClasses - 1
        let masks = result.masks()
        let segments = zip(result.segments, masks).map { s, mask -> PanopticSegment in
            let name = s.isThing
                ? (s.categoryID < config.classNames.count ? config.classNames[s.categoryID] : "class\(s.categoryID)")
                : (s.categoryID < p.stuffNames.count ? p.stuffNames[s.categoryID] : "stuff\(s.categoryID)")
            return PanopticSegment(id: s.id, categoryID: s.isThing ? s.categoryID : things + s.categoryID,
                                   categoryName: name, isThing: s.isThing, area: s.area, score: s.score,
                                   mask: mask)
        }
        ms["panoptic"] = DetectorSupport.lap(&clock)
        ms["heads"]! += ms["semantic"]! + ms["panoptic"]!
        return (dets, segments)
    }
}
