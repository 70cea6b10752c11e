import FPNCore
import Foundation
import Tensor

/// torchvision's `RetinaNet` at test time (`models/detection/retinanet.py`).
///
/// Head per level P3-P7 (`DenseHead`): classification tower → `cls_logits` 3x3 → A·K logits (A = 9 anchors, channel
/// `a*K + k`); regression tower → `bbox_reg` 3x3 → 4A deltas. Per level: sigmoid, keep `> score`, top-k (1000) in
/// (y, x, a, k) order, anchor = idx / K, label = idx % K, decode (1,1,1,1), clip. Then NMS per class over all
/// levels, keep N (300).
public final class RetinaNet: Detector, @unchecked Sendable {
    public let config: DetectorConfig
    public let backbone: ResNetFPNBackbone
    let transform: DetectionTransform
    let head: DenseHead
    let decoder: RetinaNetDecoder

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let a = RetinaNetDecoder.anchorsPerLocation
        let k = try DetectorLoader.classCount(loader, config: &config, key: "head.classification_head.cls_logits.weight",
                                              per: a, metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        head = try DenseHead(loader, channels: config.backbone.fpnChannels,
                             towers: config.variant == 2 ? .groupNormV2 : .plain, classOutputs: a * k,
                             regressionOutputs: 4 * a, anchors: .retinaNet)
        decoder = RetinaNetDecoder(numClasses: k)
        transform = DetectionTransform(config.transform)
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        head.detect(image, state: state, transform: transform, backbone: backbone,
                    thresholds: thresholds ?? config.thresholds, names: config.classNames, decoder: decoder)
    }
}

/// RetinaNet's part of the dense head: A anchors per location, per-class sigmoid scores, `BoxCoder` deltas.
struct RetinaNetDecoder: DenseHeadDecoder {
    /// Anchors per location (3 sizes x 3 aspect ratios).
    static let anchorsPerLocation = 9
    let numClasses: Int
    let coder = BoxCoder(weights: (1, 1, 1, 1))

    /// Candidates in torchvision's flattened (y, x, a, k) order.
    func candidates(_ out: DenseHead.LevelOutputs, threshold: Float) -> (indices: [Int], scores: [Float]) {
        let a = Self.anchorsPerLocation, k = numClasses, hw = out.locations
        // sigmoid(x) > s  ⇔  x > log(s / (1 - s)); a margin keeps the exact test on the sigmoid itself.
        let logitFloor = threshold > 0 && threshold < 1 ? logf(threshold / (1 - threshold)) - 1e-3 : -Float.infinity
        var idx: [Int] = [], sc: [Float] = []
        out.logits.withUnsafeBufferPointer { p in
            for loc in 0..<hw {
                for ai in 0..<a {
                    for c in 0..<k {
                        let v = p[(ai * k + c) * hw + loc]
                        guard v > logitFloor else { continue }
                        let s = DetectorSupport.sigmoid(v)
                        if s > threshold { idx.append((loc * a + ai) * k + c); sc.append(s) }
                    }
                }
            }
        }
        return (idx, sc)
    }

    /// Anchor = flat / K, label = flat % K; deltas `4a..4a+3` at the anchor's location.
    func decode(_ flat: Int, regression d: UnsafeBufferPointer<Float>, locations hw: Int,
                anchors: [Box]) -> (box: Box, label: Int) {
        let a = Self.anchorsPerLocation
        let anchor = flat / numClasses, label = flat % numClasses
        let loc = anchor / a, ai = anchor % a
        let base = ai * 4 * hw + loc
        let box = coder.decode(d[base], d[base + hw], d[base + 2 * hw], d[base + 3 * hw], reference: anchors[anchor])
        return (box, label)
    }
}
