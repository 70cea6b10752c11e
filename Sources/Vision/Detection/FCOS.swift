import FPNCore
import Foundation
import Tensor

/// torchvision's `FCOS` at test time (`models/detection/fcos.py`).
///
/// Head per level P3-P7 (`DenseHead`): classification tower (4 x conv3x3 + GroupNorm(32) + ReLU) → `cls_logits` 3x3
/// → K; regression tower → `bbox_reg` 3x3 → 4 then ReLU, and `bbox_ctrness` 3x3 → 1. Per level:
/// score = sqrt(sigmoid(cls) · sigmoid(ctr)) over (y, x, k), keep `> score` (0.2), top-k (1000); the box is
/// `(cx - l·s, cy - t·s, cx + r·s, cy + b·s)` around the level's one anchor per location (size s = 8...128);
/// clip. Then NMS per class over all levels (0.6), keep N (100).
public final class FCOS: Detector, @unchecked Sendable {
    public let config: DetectorConfig
    public let backbone: ResNetFPNBackbone
    let transform: DetectionTransform
    let head: DenseHead
    let decoder: FCOSDecoder

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let k = try DetectorLoader.classCount(loader, config: &config, key: "head.classification_head.cls_logits.weight",
                                              metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        head = try DenseHead(loader, channels: config.backbone.fpnChannels, towers: .fcos, classOutputs: k,
                             regressionOutputs: 4, regressionActivation: .relu,
                             extras: [(name: "bbox_ctrness", outputs: 1)], anchors: .fcos)
        decoder = FCOSDecoder(numClasses: k)
        transform = DetectionTransform(config.transform)
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        head.detect(image, state: state, transform: transform, backbone: backbone,
                    thresholds: thresholds ?? config.thresholds, names: config.classNames, decoder: decoder)
    }
}

/// FCOS's part of the dense head: scores weighted by centerness, boxes as distances from the location's point.
struct FCOSDecoder: DenseHeadDecoder {
    let numClasses: Int
    let coder = BoxLinearCoder()

    /// Candidates in (y, x, k) order; score = sqrt(sigmoid(cls) · sigmoid(centerness)).
    func candidates(_ out: DenseHead.LevelOutputs, threshold: Float) -> (indices: [Int], scores: [Float]) {
        let k = numClasses, hw = out.locations
        var idx: [Int] = [], sc: [Float] = []
        out.logits.withUnsafeBufferPointer { p in
            out.extras[0].withUnsafeBufferPointer { cp in
                for loc in 0..<hw {
                    let sctr = DetectorSupport.sigmoid(cp[loc])
                    for c in 0..<k {
                        let s = (DetectorSupport.sigmoid(p[c * hw + loc]) * sctr).squareRoot()
                        if s > threshold { idx.append(loc * k + c); sc.append(s) }
                    }
                }
            }
        }
        return (idx, sc)
    }

    /// Location = flat / K, label = flat % K; (l, t, r, b) around the location's anchor.
    func decode(_ flat: Int, regression d: UnsafeBufferPointer<Float>, locations hw: Int,
                anchors: [Box]) -> (box: Box, label: Int) {
        let loc = flat / numClasses, label = flat % numClasses
        let box = coder.decode(d[loc], d[hw + loc], d[2 * hw + loc], d[3 * hw + loc], reference: anchors[loc])
        return (box, label)
    }
}
