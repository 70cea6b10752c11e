import FPNCore
import Foundation
import Tensor

/// torchvision's Keypoint R-CNN branch at test time (`KeypointRCNNHeads`, `KeypointRCNNPredictor`,
/// `keypointrcnn_inference`): MultiScaleRoIAlign 14x14 (sampling 2) on P2-P5 at each detection's box →
/// 8 x conv3x3 + ReLU (`keypoint_head.{0,2,...,14}`, 512 wide) → `keypoint_predictor.kps_score_lowres`
/// ConvTranspose2d 4x4/2 pad 1 (28x28) → bilinear x2 (align_corners false, 56x56) → `HeatmapKeypoints.decode`.
final class KeypointHead: @unchecked Sendable {
    let convs: [ConvLayer]
    let lowres: ConvTranspose2d
    /// Keypoints per detection (17 for COCO persons).
    let count: Int
    let pooler = MultiScaleRoIAlign(outputSize: 14)

    init(_ loader: ModuleLoader, channels c: Int) throws {
        let p = "roi_heads.keypoint_head."
        var cin = c
        convs = try (0..<8).map { i in
            let key = "\(p)\(2 * i)"
            let cout = try DetectorLoader.width(loader, key: key + ".weight", fallback: 512)
            defer { cin = cout }
            return try loader.conv(key, in: cin, out: cout, kernel: 3, padding: 1, bias: true, activation: .relu)
        }
        let key = "roi_heads.keypoint_predictor.kps_score_lowres"
        count = try DetectorLoader.width(loader, key: key + ".weight", axis: 1, fallback: 17)
        lowres = ConvTranspose2d(weight: try loader.tensor(key + ".weight", shape: [cin, count, 4, 4]),
                                 bias: try loader.floats(key + ".bias", count: count), stride: 2, padding: 1)
    }

    /// The keypoints of each detection (boxes in input pixels), positions in input pixels. `reuse`: the stream's
    /// per-region results of earlier frames (temporal `delta` mode), whose unchanged detections are neither pooled
    /// nor run through the tower.
    func keypoints(_ heads: RoIHeads, _ levels: [Tensor], boxes: [Box], geometry g: TransformGeometry,
                   ws: Workspace, reuse: RegionReuse? = nil) -> [[Keypoint]] {
        guard !boxes.isEmpty else { return [] }
        guard let reuse else { return compute(heads, levels, boxes: boxes, geometry: g, ws: ws) }
        // One row per detection: x, y and score of each keypoint (the visibility is always 1).
        let rows = reuse.outputs(.keypoint, boxes: boxes, labels: nil, pooler: pooler, imageHeight: g.resizedHeight,
                                 width: 3 * count) { misses in
            compute(heads, levels, boxes: misses.map { boxes[$0] }, geometry: g, ws: ws).flatMap { kps in
                kps.flatMap { [$0.x, $0.y, $0.score] }
            }
        }
        return boxes.indices.map { i in
            (0..<count).map { j in
                let o = (i * count + j) * 3
                return Keypoint(x: rows[o], y: rows[o + 1], score: rows[o + 2])
            }
        }
    }

    /// `keypoints` of `boxes`, all computed.
    private func compute(_ heads: RoIHeads, _ levels: [Tensor], boxes: [Box], geometry g: TransformGeometry,
                         ws: Workspace) -> [[Keypoint]] {
        let x = heads.tower(pooler, levels, boxes: boxes, convs: convs, geometry: g, ws: ws)
        let low = lowres(x, in: ws)
        ws.release(x)
        let maps = low.resizeBilinear(height: 2 * low.h, width: 2 * low.w, in: ws)
        ws.release(low)
        let size = maps.h, per = count * size * size
        let out = maps.withUnsafeBufferPointer { m in
            boxes.indices.map { i in
                HeatmapKeypoints.decode(UnsafeBufferPointer(rebasing: m[(i * per)..<((i + 1) * per)]), count: count,
                                        size: size, box: boxes[i])
            }
        }
        ws.release(maps)
        return out
    }
}
