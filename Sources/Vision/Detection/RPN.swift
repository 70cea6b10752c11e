import FPNCore
import Foundation
import Tensor

/// torchvision's `RegionProposalNetwork` at test time (`models/detection/rpn.py`).
///
/// Head (shared by every level): `rpn.head.conv.{0[,1]}.0` 3x3 + ReLU (one conv in v1, two in v2), then
/// `cls_logits` 1x1 → A objectness logits and `bbox_pred` 1x1 → 4A deltas (channel `a * 4 + c`).
/// Per level: top-k (1000) on the raw logits in (y, x, a) order; decode against the anchors with weights (1,1,1,1);
/// sigmoid; clip to the resized image; drop boxes with a side < 1e-3 and (MobileNetV3 builders) an objectness
/// below `scoreThreshold`; then NMS per level at 0.7 (batched over
/// levels) and keep the best 1000 overall.
final class RegionProposalNetwork: @unchecked Sendable {
    let convs: [ConvLayer]
    let clsLogits: ConvLayer
    let bboxPred: ConvLayer
    let anchorsPerLocation: Int
    let settings: RPNSettings
    let generator: AnchorGenerator
    let coder = BoxCoder(weights: (1, 1, 1, 1))

    init(_ loader: ModuleLoader, prefix: String, channels: Int, convDepth: Int, generator: AnchorGenerator,
         settings: RPNSettings) throws {
        let a = generator.anchorsPerLocation(level: 0)
        convs = try (0..<convDepth).map { i in
            try loader.conv("\(prefix)conv.\(i).0", in: channels, out: channels, kernel: 3, padding: 1, bias: true,
                            activation: .relu)
        }
        clsLogits = try loader.conv(prefix + "cls_logits", in: channels, out: a, kernel: 1, bias: true)
        bboxPred = try loader.conv(prefix + "bbox_pred", in: channels, out: 4 * a, kernel: 1, bias: true)
        anchorsPerLocation = a
        self.settings = settings
        self.generator = generator
    }

    /// Proposals (input pixels) sorted by descending objectness, at most `postNMSTopN`.
    func callAsFunction(_ levels: [PyramidLevel], geometry g: TransformGeometry, state: DetectorState) -> [Box] {
        let ws = state.workspace
        let anchors = state.anchors(generator, grids: DetectorSupport.grids(levels),
                                    paddedHeight: g.paddedHeight, paddedWidth: g.paddedWidth)
        let a = anchorsPerLocation
        let imgW = Float(g.resizedWidth), imgH = Float(g.resizedHeight)
        var boxes: [Box] = [], scores: [Float] = [], lvl: [Int] = []
        // The head convs go through the stream's runner: a temporal cache keeps them per level (instance).
        let ctx = ForwardContext(workspace: ws, runner: state.runner)
        for (l, level) in levels.enumerated() {
            var t = level.features
            for conv in convs {
                let next = conv(t, instance: l, ctx)
                if t.storage !== level.features.storage { ws.release(t) }
                t = next
            }
            let logits = clsLogits(t, instance: l, ctx)
            let deltas = bboxPred(t, instance: l, ctx)
            ws.release(t)
            let h = logits.h, w = logits.w, hw = h * w
            // Objectness in torchvision's (y, x, a) order.
            var obj = [Float](repeating: 0, count: hw * a)
            logits.withUnsafeBufferPointer { p in
                for ai in 0..<a { for i in 0..<hw { obj[i * a + ai] = p[ai * hw + i] } }
            }
            let top = NMS.topK(obj, min(settings.preNMSTopN, obj.count))
            deltas.withUnsafeBufferPointer { d in
                for idx in top {
                    let loc = idx / a, ai = idx % a
                    let base = ai * 4 * hw + loc
                    var box = coder.decode(d[base], d[base + hw], d[base + 2 * hw], d[base + 3 * hw],
                                           reference: anchors[l][idx])
                    box = box.clipped(width: imgW, height: imgH)
                    guard box.hasSides(atLeast: settings.minSize) else { continue }
                    let score = DetectorSupport.sigmoid(obj[idx])
                    guard score >= settings.scoreThreshold else { continue }
                    boxes.append(box)
                    scores.append(score)
                    lvl.append(l)
                }
            }
            ws.release(logits)
            ws.release(deltas)
        }
        let keep = NMS.batched(boxes: boxes, scores: scores, idxs: lvl, iouThreshold: settings.nmsThreshold)
        return keep.prefix(settings.postNMSTopN).map { boxes[$0] }
    }
}
