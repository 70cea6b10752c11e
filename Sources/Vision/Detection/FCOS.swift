import FPNCore
import Foundation
import Tensor

/// torchvision's `FCOS` at test time (`models/detection/fcos.py`).
///
/// Head per level P3-P7: classification tower (4 x conv3x3 + GroupNorm(32) + ReLU) → `cls_logits` 3x3 → K;
/// regression tower → `bbox_reg` 3x3 → 4 then ReLU, and `bbox_ctrness` 3x3 → 1. Per level:
/// score = sqrt(sigmoid(cls) · sigmoid(ctr)) over (y, x, k), keep `> score` (0.2), top-k (1000); the box is
/// `(cx - l·s, cy - t·s, cx + r·s, cy + b·s)` around the level's one anchor per location (size s = 8...128);
/// clip. Then NMS per class over all levels (0.6), keep N (100).
public final class FCOS: Detector, @unchecked Sendable {
    public let config: DetectorConfig
    public let backbone: ResNetFPNBackbone
    let transform: DetectionTransform
    let clsTower: ConvTower
    let regTower: ConvTower
    let clsLogits: ConvLayer
    let bboxReg: ConvLayer
    let bboxCtrness: ConvLayer
    let numClasses: Int
    let coder = BoxLinearCoder()

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let k = try DetectorLoader.classCount(loader, config: &config, key: "head.classification_head.cls_logits.weight",
                                              metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        let ch = config.backbone.fpnChannels
        clsTower = try ConvTower(loader, prefix: "head.classification_head.", channels: ch, layout: .fcos)
        clsLogits = try loader.conv("head.classification_head.cls_logits", in: ch, out: k, kernel: 3, padding: 1,
                                    bias: true)
        regTower = try ConvTower(loader, prefix: "head.regression_head.", channels: ch, layout: .fcos)
        bboxReg = try loader.conv("head.regression_head.bbox_reg", in: ch, out: 4, kernel: 3, padding: 1, bias: true,
                                  activation: .relu)
        bboxCtrness = try loader.conv("head.regression_head.bbox_ctrness", in: ch, out: 1, kernel: 3, padding: 1,
                                      bias: true)
        numClasses = k
        transform = DetectionTransform(config.transform)
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        let t = thresholds ?? config.thresholds
        let k = numClasses
        return DetectorSupport.oneStage(image, state: state, transform: transform, backbone: backbone, anchors: .fcos,
                                        thresholds: t, names: config.classNames) { l, level, anchors, g, ctx, all in
            let ws = ctx.workspace
            let imgW = Float(g.resizedWidth), imgH = Float(g.resizedHeight)
            let ct = clsTower(level.features, ctx, level: l)
            let logits = clsLogits(ct, instance: l, ctx)
            ws.release(ct)
            let rt = regTower(level.features, ctx, level: l)
            let reg = bboxReg(rt, instance: l, ctx)
            let ctr = bboxCtrness(rt, instance: l, ctx)
            ws.release(rt)
            let hw = logits.h * logits.w
            var idx: [Int] = [], sc: [Float] = []
            logits.withUnsafeBufferPointer { p in
                ctr.withUnsafeBufferPointer { cp in
                    for loc in 0..<hw {
                        let sctr = DetectorSupport.sigmoid(cp[loc])
                        for c in 0..<k {
                            let s = (DetectorSupport.sigmoid(p[c * hw + loc]) * sctr).squareRoot()
                            if s > t.score { idx.append(loc * k + c); sc.append(s) }
                        }
                    }
                }
            }
            let top = NMS.topK(sc, min(t.topKCandidates, sc.count))
            reg.withUnsafeBufferPointer { d in
                for j in top {
                    let loc = idx[j] / k, label = idx[j] % k
                    let box = coder.decode(d[loc], d[hw + loc], d[2 * hw + loc], d[3 * hw + loc],
                                           reference: anchors[loc]).clipped(width: imgW, height: imgH)
                    all.boxes.append(box)
                    all.scores.append(sc[j])
                    all.labels.append(label)
                }
            }
            ws.release(logits)
            ws.release(reg)
            ws.release(ctr)
        }
    }
}
