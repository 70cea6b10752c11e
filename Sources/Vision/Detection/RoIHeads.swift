import FPNCore
import Foundation
import Tensor

/// torchvision's `RoIHeads` at test time (`models/detection/roi_heads.py`): box branch and optional mask branch.
///
/// Box: MultiScaleRoIAlign 7x7 (sampling 2) on P2-P5 → v1 `TwoMLPHead` (fc6, fc7 + ReLU) or v2
/// `FastRCNNConvFCHead` (4 x conv3x3+BN+ReLU, Linear `box_head.5` + ReLU) → `box_predictor.cls_score` (K) and
/// `bbox_pred` (4K) → softmax, per-class decode with weights (10,10,5,5), clip, drop background, keep `score > t`,
/// drop sides < 1e-2, NMS per class, top N.
/// Mask: MultiScaleRoIAlign 14x14 on the detections → 4 x conv3x3+ReLU (`mask_head.{0-3}.0`, v2 with BN at `.1`) →
/// `mask_predictor.conv5_mask` ConvTranspose2d 2x2/2 + ReLU → `mask_fcn_logits` 1x1 → K maps of 28x28 → sigmoid of
/// the detection's label.
final class RoIHeads: @unchecked Sendable {
    enum BoxHead {
        case mlp(fc6: Linear, fc7: Linear)
        case convFC(convs: [ConvLayer], fc: Linear)
    }

    let boxHead: BoxHead
    let clsScore: Linear
    let bboxPred: Linear
    let numClasses: Int
    let boxPooler = MultiScaleRoIAlign(outputSize: 7)
    let maskPooler = MultiScaleRoIAlign(outputSize: 14)
    let coder = BoxCoder(weights: (10, 10, 5, 5))
    /// Mask branch (Mask R-CNN only).
    let maskConvs: [ConvLayer]?
    let maskUpsample: ConvTranspose2d?
    let maskLogits: ConvLayer?
    let channels: Int

    init(_ loader: ModuleLoader, channels c: Int, variant: Int, numClasses k: Int, masks: Bool, bnEps: Double = 1e-5)
        throws {
        let p = "roi_heads."
        // Representation size (1024 in torchvision's builders; the demo model's TwoMLPHead is 128 wide).
        let rep = try DetectorLoader.width(loader, metadataKey: "box_head_dim",
                                           key: p + (variant == 1 ? "box_head.fc6.weight" : "box_head.5.weight"),
                                           fallback: 1024)
        if variant == 1 {
            boxHead = .mlp(fc6: try Self.linear(loader, p + "box_head.fc6", in: c * 49, out: rep, relu: true),
                           fc7: try Self.linear(loader, p + "box_head.fc7", in: rep, out: rep, relu: true))
        } else {
            let convs = try (0..<4).map { i in
                try loader.conv("\(p)box_head.\(i).0", in: c, out: c, kernel: 3, padding: 1,
                                batchNorm: "\(p)box_head.\(i).1", bnEps: bnEps, activation: .relu)
            }
            boxHead = .convFC(convs: convs, fc: try Self.linear(loader, p + "box_head.5", in: c * 49, out: rep,
                                                                relu: true))
        }
        clsScore = try Self.linear(loader, p + "box_predictor.cls_score", in: rep, out: k, relu: false)
        bboxPred = try Self.linear(loader, p + "box_predictor.bbox_pred", in: rep, out: 4 * k, relu: false)
        numClasses = k
        channels = c
        if masks {
            // MaskRCNNHeads(layers) and MaskRCNNPredictor(dim_reduced) widths come from the weight shapes
            // (torchvision: 256 each; the demo model: the FPN's 128).
            var cin = c
            maskConvs = try (0..<4).map { i in
                let key = "\(p)mask_head.\(i).0"
                let cout = try DetectorLoader.width(loader, key: key + ".weight", fallback: c)
                defer { cin = cout }
                return variant == 1
                    ? try loader.conv(key, in: cin, out: cout, kernel: 3, padding: 1, bias: true, activation: .relu)
                    : try loader.conv(key, in: cin, out: cout, kernel: 3, padding: 1,
                                      batchNorm: "\(p)mask_head.\(i).1", bnEps: bnEps, activation: .relu)
            }
            let up = p + "mask_predictor.conv5_mask"
            let reduced = try DetectorLoader.width(loader, key: up + ".weight", axis: 1, fallback: cin)
            maskUpsample = ConvTranspose2d(weight: try loader.tensor(up + ".weight", shape: [cin, reduced, 2, 2]),
                                           bias: try loader.floats(up + ".bias", count: reduced), stride: 2,
                                           activation: .relu)
            maskLogits = try loader.conv(p + "mask_predictor.mask_fcn_logits", in: reduced, out: k, kernel: 1,
                                         bias: true)
        } else {
            maskConvs = nil; maskUpsample = nil; maskLogits = nil
        }
    }

    static func linear(_ loader: ModuleLoader, _ key: String, in i: Int, out o: Int, relu: Bool) throws -> Linear {
        Linear(weight: try loader.tensor(key + ".weight", shape: [o, i]), bias: try loader.floats(key + ".bias", count: o),
               activation: relu ? .relu : .none)
    }

    /// P2-P5 of one image transposed to channels-last workspace tensors `[h, w, C]` (RoIAlign's layout), made once
    /// per frame and read by both the box and the mask branch.
    func poolingLevels(_ levels: [PyramidLevel], ws: Workspace) -> [Tensor] {
        levels.prefix(4).map { l in
            let f = l.features, t = ws.tensor([f.h, f.w, channels])
            f.withUnsafeBufferPointer { src in
                t.withUnsafeMutableBufferPointer { RoIAlign.channelsLast(src, channels: channels, height: f.h, width: f.w, into: $0) }
            }
            return t
        }
    }

    /// Pools `boxes` from channels-last P2-P5 (`poolingLevels`) into a workspace tensor `[R, C, size, size]`.
    func pool(_ pooler: MultiScaleRoIAlign, _ levels: [Tensor], boxes: [Box], geometry g: TransformGeometry,
              ws: Workspace) -> Tensor {
        let out = ws.tensor([boxes.count, channels, pooler.outputSize, pooler.outputSize])
        func go(_ i: Int, _ acc: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)]) {
            if i == levels.count {
                out.withUnsafeMutableBufferPointer { o in
                    pooler.pool(channelsLast: acc, channels: channels, boxes: boxes, imageHeight: g.resizedHeight,
                                into: o)
                }
                return
            }
            levels[i].withUnsafeBufferPointer { go(i + 1, acc + [($0, levels[i].shape[0], levels[i].shape[1])]) }
        }
        go(0, [])
        return out
    }

    /// Box branch: final detections in input pixels (sorted by descending score, at most `t.maxDetections`).
    /// `levels`: `poolingLevels` of this frame. `reuse`: the stream's per-region results of earlier frames (delta
    /// mode), whose unchanged proposals are neither pooled nor run through the head.
    func detect(_ levels: [Tensor], proposals: [Box], geometry g: TransformGeometry, thresholds t: DetectionThresholds,
                ws: Workspace, reuse: RegionReuse? = nil) -> RawDetections {
        guard !proposals.isEmpty else { return RawDetections() }
        let k = numClasses
        guard let reuse else {
            let (logits, deltas) = boxOutputs(pool(boxPooler, levels, boxes: proposals, geometry: g, ws: ws), ws: ws)
            defer { ws.release(logits); ws.release(deltas) }
            return logits.withUnsafeBufferPointer { lp in
                deltas.withUnsafeBufferPointer { decode(proposals, logits: lp, deltas: $0, geometry: g, thresholds: t) }
            }
        }
        // One row per region: k logits, then 4k box deltas.
        let rows = reuse.outputs(.box, boxes: proposals, labels: nil, pooler: boxPooler, imageHeight: g.resizedHeight,
                                 width: 5 * k) { misses in
            let x = pool(boxPooler, levels, boxes: misses.map { proposals[$0] }, geometry: g, ws: ws)
            let (logits, deltas) = boxOutputs(x, ws: ws)
            defer { ws.release(logits); ws.release(deltas) }
            var out = [Float](); out.reserveCapacity(misses.count * 5 * k)
            logits.withUnsafeBufferPointer { lp in
                deltas.withUnsafeBufferPointer { dp in
                    for j in misses.indices { out += lp[(j * k)..<((j + 1) * k)]; out += dp[(j * 4 * k)..<((j + 1) * 4 * k)] }
                }
            }
            return out
        }
        var logits = [Float](), deltas = [Float]()
        logits.reserveCapacity(proposals.count * k); deltas.reserveCapacity(proposals.count * 4 * k)
        for i in proposals.indices {
            logits += rows[(i * 5 * k)..<(i * 5 * k + k)]; deltas += rows[(i * 5 * k + k)..<((i + 1) * 5 * k)]
        }
        return logits.withUnsafeBufferPointer { lp in
            deltas.withUnsafeBufferPointer { decode(proposals, logits: lp, deltas: $0, geometry: g, thresholds: t) }
        }
    }

    /// The box head and predictor on pooled regions `x` `[R, C, 7, 7]` (released): class logits `[R, K]` and box
    /// deltas `[R, 4K]`, workspace tensors.
    func boxOutputs(_ pooled: Tensor, ws: Workspace) -> (logits: Tensor, deltas: Tensor) {
        var x = pooled
        let features: Tensor
        switch boxHead {
        case .mlp(let fc6, let fc7):
            let h6 = fc6(x, in: ws)
            ws.release(x)
            features = fc7(h6, in: ws)
            ws.release(h6)
        case .convFC(let convs, let fc):
            for conv in convs {
                let next = conv.conv(x, in: ws)
                ws.release(x)
                x = next
            }
            features = fc(x, in: ws)
            ws.release(x)
        }
        let logits = clsScore(features, in: ws)
        let deltas = bboxPred(features, in: ws)
        ws.release(features)
        return (logits, deltas)
    }

    /// Softmax, per-class decode, clip, score and size filter, NMS per class, top N: the detections of the regions
    /// `proposals` from their logits `[R, K]` and deltas `[R, 4K]`.
    func decode(_ proposals: [Box], logits lp: UnsafeBufferPointer<Float>, deltas dp: UnsafeBufferPointer<Float>,
                geometry g: TransformGeometry, thresholds t: DetectionThresholds) -> RawDetections {
        let k = numClasses
        var cand = RawDetections()
        let imgW = Float(g.resizedWidth), imgH = Float(g.resizedHeight)
        var probs = [Float](repeating: 0, count: k)
        for i in proposals.indices {
            Self.softmax(UnsafeBufferPointer(rebasing: lp[(i * k)..<((i + 1) * k)]), into: &probs)
            for c in 1..<k where probs[c] > t.score {
                let o = (i * k + c) * 4
                let box = coder.decode(dp[o], dp[o + 1], dp[o + 2], dp[o + 3], reference: proposals[i])
                    .clipped(width: imgW, height: imgH)
                guard box.hasSides(atLeast: 1e-2) else { continue }
                cand.boxes.append(box)
                cand.scores.append(probs[c])
                cand.labels.append(c)
            }
        }
        let keep = NMS.batched(boxes: cand.boxes, scores: cand.scores, idxs: cand.labels, iouThreshold: t.nms)
        return cand.select(Array(keep.prefix(t.maxDetections)))
    }

    /// Softmax of one row as torch's CPU kernel: max-subtracted exponentials, sum, multiply by 1/sum.
    static func softmax(_ x: UnsafeBufferPointer<Float>, into out: inout [Float]) {
        var m = -Float.infinity
        for v in x { m = max(m, v) }
        var sum: Float = 0
        for j in 0..<x.count {
            let e = expf(x[j] - m)
            out[j] = e
            sum += e
        }
        let inv = 1 / sum
        for j in 0..<x.count { out[j] *= inv }
    }

    /// `boxes` pooled by `pooler`, then `convs` in order (each input released): the start of the mask and keypoint
    /// branches.
    func tower(_ pooler: MultiScaleRoIAlign, _ levels: [Tensor], boxes: [Box], convs: [ConvLayer],
               geometry g: TransformGeometry, ws: Workspace) -> Tensor {
        runConvs(pool(pooler, levels, boxes: boxes, geometry: g, ws: ws), convs, ws: ws)
    }

    /// `convs` in order on `x`, each input released.
    func runConvs(_ x: Tensor, _ convs: [ConvLayer], ws: Workspace) -> Tensor {
        var x = x
        for conv in convs {
            let next = conv.conv(x, in: ws)
            ws.release(x)
            x = next
        }
        return x
    }

    /// Mask branch: the 28x28 probability map of each detection's own label, `[D * 28 * 28]` row-major.
    /// `levels`: `poolingLevels` of this frame. `reuse`: as for `detect` (keyed by box and label).
    func masks(_ levels: [Tensor], detections raw: RawDetections, geometry g: TransformGeometry,
               ws: Workspace, reuse: RegionReuse? = nil) -> [Float] {
        guard maskConvs != nil, !raw.boxes.isEmpty else { return [] }
        guard let reuse else {
            return maskProbabilities(pool(maskPooler, levels, boxes: raw.boxes, geometry: g, ws: ws), labels: raw.labels,
                                     ws: ws)
        }
        return reuse.outputs(.mask, boxes: raw.boxes, labels: raw.labels, pooler: maskPooler,
                             imageHeight: g.resizedHeight, width: 28 * 28) { misses in
            maskProbabilities(pool(maskPooler, levels, boxes: misses.map { raw.boxes[$0] }, geometry: g, ws: ws),
                              labels: misses.map { raw.labels[$0] }, ws: ws)
        }
    }

    /// The mask head on pooled regions `x` `[D, C, 14, 14]` (released): the sigmoid of each region's `labels[i]`
    /// logits, `[D * 28 * 28]`.
    func maskProbabilities(_ pooled: Tensor, labels: [Int], ws: Workspace) -> [Float] {
        guard let maskConvs, let maskUpsample, let maskLogits else { return [] }
        let x = runConvs(pooled, maskConvs, ws: ws)
        let up = maskUpsample(x, in: ws)
        ws.release(x)
        let logits = maskLogits.conv(up, in: ws)
        ws.release(up)
        let n = labels.count, k = numClasses, plane = 28 * 28
        precondition(logits.h == 28 && logits.w == 28)
        var out = [Float](repeating: 0, count: n * plane)
        logits.withUnsafeBufferPointer { lp in
            for i in 0..<n {
                let src = (i * k + labels[i]) * plane
                for j in 0..<plane { out[i * plane + j] = DetectorSupport.sigmoid(lp[src + j]) }
            }
        }
        ws.release(logits)
        return out
    }
}
