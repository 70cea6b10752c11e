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

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let hasMasks = config.family == .maskRCNN
        let k = try DetectorLoader.classCount(loader, config: &config, key: "roi_heads.box_predictor.cls_score.weight",
                                              metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        let ch = config.backbone.fpnChannels
        rpn = try RegionProposalNetwork(loader, prefix: "rpn.head.", channels: ch, convDepth: config.variant == 2 ? 2 : 1,
                                        generator: .rcnn, settings: config.rpn)
        roiHeads = try RoIHeads(loader, channels: ch, variant: config.variant, numClasses: k, masks: hasMasks)
        transform = DetectionTransform(config.transform)
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
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
        let proposals = rpn(levels, geometry: g, state: state)
        ms["rpn"] = DetectorSupport.lap(&clock)
        let raw = roiHeads.detect(levels, proposals: proposals, geometry: g, thresholds: t, ws: ws)
        var dets = DetectorSupport.detections(raw, geometry: g, names: config.classNames)
        ms["roi_heads"] = DetectorSupport.lap(&clock)
        defer { state.timingsMs = ms }
        if roiHeads.maskConvs != nil {
            let probs = roiHeads.masks(levels, detections: raw, geometry: g, ws: ws)
            probs.withUnsafeBufferPointer { p in
                for i in dets.indices {
                    let m = UnsafeBufferPointer(rebasing: p[(i * 784)..<((i + 1) * 784)])
                    let pasted = MaskPaste.paste(mask: m, size: 28, box: dets[i].box, imageHeight: image.height,
                                                 imageWidth: image.width)
                    dets[i].mask = pasted.rle(threshold: t.mask)
                }
            }
            ms["masks"] = DetectorSupport.lap(&clock)
        }
        ms["heads"] = ms["rpn"]! + ms["roi_heads"]! + (ms["masks"] ?? 0)
        return dets
    }
}
