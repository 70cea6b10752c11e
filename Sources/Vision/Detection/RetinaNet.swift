import FPNCore
import Foundation
import Tensor

/// A conv tower shared by every pyramid level: conv3x3 (+ norm) + ReLU, repeated.
/// v1 RetinaNet: `conv.{i}.0` with bias; v2 RetinaNet: `conv.{i}.0` without bias + GroupNorm(32) `conv.{i}.1`;
/// FCOS: `conv.{3i}` with bias + GroupNorm(32) `conv.{3i+1}`.
struct ConvTower {
    enum Layout { case plain, groupNormV2, fcos }
    let convs: [ConvLayer]
    let norms: [GroupNorm]

    init(_ loader: ModuleLoader, prefix: String, channels c: Int, depth: Int = 4, layout: Layout) throws {
        var convs: [ConvLayer] = [], norms: [GroupNorm] = []
        for i in 0..<depth {
            switch layout {
            case .plain:
                convs.append(try loader.conv("\(prefix)conv.\(i).0", in: c, out: c, kernel: 3, padding: 1, bias: true,
                                             activation: .relu))
            case .groupNormV2, .fcos:
                let convKey = layout == .fcos ? "\(prefix)conv.\(3 * i)" : "\(prefix)conv.\(i).0"
                let normKey = layout == .fcos ? "\(prefix)conv.\(3 * i + 1)" : "\(prefix)conv.\(i).1"
                convs.append(try loader.conv(convKey, in: c, out: c, kernel: 3, padding: 1, bias: layout == .fcos))
                norms.append(GroupNorm(groups: 32, channels: c, eps: 1e-5,
                                       weight: try loader.floats(normKey + ".weight", count: c),
                                       bias: try loader.floats(normKey + ".bias", count: c), activation: .relu))
            }
        }
        self.convs = convs
        self.norms = norms
    }

    /// The tower on `x` (not modified) for pyramid level `level`; the convs go through `ctx`'s runner (a temporal
    /// cache keys them per level). Result from the workspace, or owned by the runner.
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext, level: Int) -> Tensor {
        var t = x
        for (i, conv) in convs.enumerated() {
            let y = conv(t, instance: level, ctx)
            if t.storage !== x.storage { ctx.release(t) }
            if norms.isEmpty {
                t = y
            } else if ctx.runner == nil {
                norms[i].forward(y, into: y)
                t = y
            } else {
                // A runner's output is its kept state across frames: normalise into a new tensor, not in place.
                // (GroupNorm mixes the whole level, so after it a local change shows as a small global one.)
                let z = ctx.workspace.tensor(y.shape)
                norms[i].forward(y, into: z)
                ctx.release(y)
                t = z
            }
        }
        return t
    }
}

/// torchvision's `RetinaNet` at test time (`models/detection/retinanet.py`).
///
/// Head per level P3-P7: classification tower → `cls_logits` 3x3 → A·K logits (A = 9 anchors, channel `a*K + k`);
/// regression tower → `bbox_reg` 3x3 → 4A deltas. Per level: sigmoid, keep `> score`, top-k (1000) in (y, x, a, k)
/// order, anchor = idx / K, label = idx % K, decode (1,1,1,1), clip. Then NMS per class over all levels, keep N (300).
public final class RetinaNet: Detector, @unchecked Sendable {
    public let config: DetectorConfig
    public let backbone: ResNetFPNBackbone
    let transform: DetectionTransform
    let clsTower: ConvTower
    let regTower: ConvTower
    let clsLogits: ConvLayer
    let bboxReg: ConvLayer
    let numClasses: Int
    let anchorsPerLocation = 9
    let coder = BoxCoder(weights: (1, 1, 1, 1))

    init(config c: DetectorConfig, loader: ModuleLoader) throws {
        var config = c
        let a = 9
        let k = try DetectorLoader.classCount(loader, config: &config, key: "head.classification_head.cls_logits.weight",
                                              per: a, metadataHasClasses: loader.file.metadata["class_names"] != nil
                                                  || loader.file.metadata["num_classes"] != nil)
        backbone = try ResNetFPNBackbone(config: config.backbone, loader: loader)
        let ch = config.backbone.fpnChannels
        let layout: ConvTower.Layout = config.variant == 2 ? .groupNormV2 : .plain
        clsTower = try ConvTower(loader, prefix: "head.classification_head.", channels: ch, layout: layout)
        clsLogits = try loader.conv("head.classification_head.cls_logits", in: ch, out: a * k, kernel: 3, padding: 1,
                                    bias: true)
        regTower = try ConvTower(loader, prefix: "head.regression_head.", channels: ch, layout: layout)
        bboxReg = try loader.conv("head.regression_head.bbox_reg", in: ch, out: 4 * a, kernel: 3, padding: 1, bias: true)
        numClasses = k
        transform = DetectionTransform(config.transform)
        self.config = config
    }

    public func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        let t = thresholds ?? config.thresholds
        let a = anchorsPerLocation, k = numClasses
        // sigmoid(x) > s  ⇔  x > log(s / (1 - s)); a margin keeps the exact test on the sigmoid itself.
        let logitFloor = t.score > 0 && t.score < 1 ? logf(t.score / (1 - t.score)) - 1e-3 : -Float.infinity
        return DetectorSupport.oneStage(image, state: state, transform: transform, backbone: backbone,
                                        anchors: .retinaNet, thresholds: t,
                                        names: config.classNames) { l, level, anchors, g, ctx, all in
            let ws = ctx.workspace
            let imgW = Float(g.resizedWidth), imgH = Float(g.resizedHeight)
            let ct = clsTower(level.features, ctx, level: l)
            let logits = clsLogits(ct, instance: l, ctx)
            ws.release(ct)
            let rt = regTower(level.features, ctx, level: l)
            let deltas = bboxReg(rt, instance: l, ctx)
            ws.release(rt)
            let hw = logits.h * logits.w
            // Candidates in torchvision's flattened (y, x, a, k) order.
            var idx: [Int] = [], sc: [Float] = []
            logits.withUnsafeBufferPointer { p in
                for loc in 0..<hw {
                    for ai in 0..<a {
                        for c in 0..<k {
                            let v = p[(ai * k + c) * hw + loc]
                            guard v > logitFloor else { continue }
                            let s = DetectorSupport.sigmoid(v)
                            if s > t.score { idx.append((loc * a + ai) * k + c); sc.append(s) }
                        }
                    }
                }
            }
            let top = NMS.topK(sc, min(t.topKCandidates, sc.count))
            deltas.withUnsafeBufferPointer { d in
                for j in top {
                    let flat = idx[j]
                    let anchor = flat / k, label = flat % k
                    let loc = anchor / a, ai = anchor % a
                    let base = ai * 4 * hw + loc
                    let box = coder.decode(d[base], d[base + hw], d[base + 2 * hw], d[base + 3 * hw],
                                           reference: anchors[anchor]).clipped(width: imgW, height: imgH)
                    all.boxes.append(box)
                    all.scores.append(sc[j])
                    all.labels.append(label)
                }
            }
            ws.release(logits)
            ws.release(deltas)
        }
    }
}
