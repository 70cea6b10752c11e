import FPNCore
import Foundation
import Tensor
import TemporalReuse
import Vision

/// How well a candidate detection list (`delta`) agrees with a reference (`off`) on the same frames: the fidelity
/// measure of `fpnstream bench temporal` and `fpnstream calibrate` (docs/design/temporal.md "Fidelity").
///
/// Definition: on each side keep the detections with score ≥ `minScore` (each side independently, so a detection
/// that crosses the threshold counts as a disagreement). A pair matches when the class is the same and box IoU ≥
/// `iou` (default 0.9). Pairs are taken greedily by descending IoU, each detection at most once. (With NMS at IoU ≤
/// 0.5 inside each list, a box has at most one same-class partner at IoU ≥ 0.9 that it could prefer, so greedy
/// equals an optimal assignment here.) F1 = 2·matched / (reference + candidate), pooled over frames by adding
/// counts; both lists empty → 1. Mask IoU is averaged over matched pairs that both have masks.
///
/// Diagnostic (not part of F1): `scoreFlips` counts the unmatched detections (at or above `minScore`) whose box is
/// still there on the other side, but scored below `minScore` (same class, IoU ≥ `iou`, in the other side's full
/// list): disagreements caused by a score crossing the threshold rather than by a box that moved or vanished.
/// Only partners the detector reported are seen (its own score threshold cuts the full lists).
public struct DetectionAgreement: Sendable, Equatable {
    /// Matched pairs.
    public var matched = 0
    /// Reference / candidate detections at or above the score threshold.
    public var reference = 0, candidate = 0
    /// Sum of mask IoUs over `maskPairs` matched pairs with masks on both sides.
    public var maskIoUSum = 0.0, maskPairs = 0
    /// Unmatched detections whose same-class box (IoU ≥ `iou`) is on the other side below `minScore`.
    public var scoreFlips = 0

    public init() {}

    /// Agreement of one frame's lists.
    public init(reference ref: [Detection], candidate cand: [Detection], minScore: Float, iou: Float = 0.9) {
        let a = ref.filter { $0.score >= minScore }, b = cand.filter { $0.score >= minScore }
        reference = a.count
        candidate = b.count
        var pairs: [(Float, Int, Int)] = []
        for (i, x) in a.enumerated() {
            for (j, y) in b.enumerated() where x.classID == y.classID {
                let v = x.box.iou(y.box)
                if v >= iou { pairs.append((v, i, j)) }
            }
        }
        pairs.sort { $0.0 != $1.0 ? $0.0 > $1.0 : ($0.1, $0.2) < ($1.1, $1.2) }
        var usedA = Set<Int>(), usedB = Set<Int>()
        for (_, i, j) in pairs where !usedA.contains(i) && !usedB.contains(j) {
            usedA.insert(i); usedB.insert(j)
            matched += 1
            if let m = a[i].mask, let n = b[j].mask {
                maskIoUSum += Self.maskIoU(m, n)
                maskPairs += 1
            }
        }
        // The box is there on the other side, only below the score threshold.
        let belowA = ref.filter { $0.score < minScore }, belowB = cand.filter { $0.score < minScore }
        func hasPartner(_ x: Detection, in list: [Detection]) -> Bool {
            list.contains { $0.classID == x.classID && x.box.iou($0.box) >= iou }
        }
        for (i, x) in a.enumerated() where !usedA.contains(i) && hasPartner(x, in: belowB) { scoreFlips += 1 }
        for (j, y) in b.enumerated() where !usedB.contains(j) && hasPartner(y, in: belowA) { scoreFlips += 1 }
    }

    /// Unmatched detections on both sides (reference + candidate − 2·matched).
    public var unmatched: Int { reference + candidate - 2 * matched }

    /// Pooled F1 (1 when neither side has a detection).
    public var f1: Double { reference + candidate == 0 ? 1 : 2 * Double(matched) / Double(reference + candidate) }
    /// Mean mask IoU of matched pairs; nil when no matched pair had masks.
    public var meanMaskIoU: Double? { maskPairs > 0 ? maskIoUSum / Double(maskPairs) : nil }

    /// Counts of both added (pooling over frames).
    public static func + (l: DetectionAgreement, r: DetectionAgreement) -> DetectionAgreement {
        var s = l
        s.matched += r.matched; s.reference += r.reference; s.candidate += r.candidate
        s.maskIoUSum += r.maskIoUSum; s.maskPairs += r.maskPairs
        s.scoreFlips += r.scoreFlips
        return s
    }

    /// IoU of two COCO RLE masks (column-major runs starting with zeros) by merging their runs; masks of different
    /// sizes → 0, two empty masks → 1.
    public static func maskIoU(_ a: MaskRLE, _ b: MaskRLE) -> Double {
        guard a.height == b.height, a.width == b.width else { return 0 }
        let ra = ones(a), rb = ones(b)
        var i = 0, j = 0, inter = 0
        while i < ra.count && j < rb.count {
            let lo = max(ra[i].0, rb[j].0), hi = min(ra[i].1, rb[j].1)
            if hi > lo { inter += hi - lo }
            if ra[i].1 < rb[j].1 { i += 1 } else { j += 1 }
        }
        let union = a.area + b.area - inter
        return union > 0 ? Double(inter) / Double(union) : 1
    }

    /// The runs of ones as half-open [start, end) pixel ranges.
    private static func ones(_ m: MaskRLE) -> [(Int, Int)] {
        var out: [(Int, Int)] = [], pos = 0
        for (k, c) in m.counts.enumerated() {
            let n = Int(c)
            if k % 2 == 1 && n > 0 { out.append((pos, pos + n)) }
            pos += n
        }
        return out
    }
}

/// A `ConvolutionRunner` that passes every conv to `inner` (nil = dense) and copies the outputs of the pyramid's
/// output convs (`fpn.layer_blocks.*`, `fpn.extra_blocks.*`) into tensors it owns, so the pyramid of a detector's
/// forward pass can be compared after `detect` returned. One per detector state.
public final class PyramidCapture: ConvolutionRunner {
    /// The wrapped runner (a `TemporalCache`, or nil for dense).
    public let inner: ConvolutionRunner?
    /// Captured outputs by conv key, valid until the next frame.
    public private(set) var outputs: [String: Tensor] = [:]
    /// Keys captured, in forward order.
    public private(set) var keys: [String] = []

    /// Whether level outputs are copied (a guard captures only on the frames it verifies).
    public var capturing = true

    public init(inner: ConvolutionRunner?) { self.inner = inner }

    /// Copies of the captured levels, by conv key (they survive the next frame).
    public func copiedOutputs() -> [String: Tensor] {
        outputs.mapValues { t in
            let c = Tensor(shape: t.shape)
            c.copy(from: t)
            return c
        }
    }

    /// Whether `key` names a conv whose output is a pyramid level.
    public static func isLevel(_ key: String) -> Bool {
        key.contains("fpn.layer_blocks.") || key.contains("fpn.extra_blocks.")
    }

    /// Height of the network input of the last frame.
    public private(set) var inputHeight = 0

    /// `p<log2 stride>` of a captured level (`p2` for stride 4), from its height and the network input's.
    public func levelName(_ key: String) -> String {
        guard let h = outputs[key]?.h, h > 0, inputHeight > 0 else { return key }
        return "p\(Int(log2(Double(inputHeight) / Double(h)).rounded()))"
    }

    public func beginFrame(inputShape: [Int]) {
        inputHeight = inputShape[2]
        inner?.beginFrame(inputShape: inputShape)
    }
    public func beginClosedGraph() { inner?.beginClosedGraph() }
    public func endClosedGraph(returning: [Tensor]) { inner?.endClosedGraph(returning: returning) }
    public func repeatsLastFrame(_ output: Tensor) -> Bool { inner?.repeatsLastFrame(output) ?? false }
    public func writtenTiles(_ output: Tensor) -> (grid: TileGrid, tiles: [Int])? { inner?.writtenTiles(output) }
    public func skippedRestOfFrame() { inner?.skippedRestOfFrame() }

    /// Spatial ops (max-pool, upsampling) go to `inner` too, so the cache sees where they changed.
    public func run(_ op: SpatialOp, key: String, input: Tensor, workspace: Workspace) -> Tensor {
        inner?.run(op, key: key, input: input, workspace: workspace) ?? op(input, in: workspace)
    }

    /// Head convs shared by the pyramid levels: forwarded with their instance so the cache keeps per-level state.
    public func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        inner?.run(layer, instance: instance, input: input, residual: residual, workspace: workspace)
            ?? layer.conv(input, residual: residual, in: workspace)
    }

    public func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        let out = inner?.run(layer, input: input, residual: residual, workspace: workspace)
            ?? layer.conv(input, residual: residual, in: workspace)
        if capturing, Self.isLevel(layer.key) {
            if outputs[layer.key]?.shape != out.shape {
                if outputs[layer.key] == nil { keys.append(layer.key) }
                outputs[layer.key] = Tensor(shape: out.shape)
            }
            outputs[layer.key]!.copy(from: out)
        }
        return out
    }

    /// ||a − b||₂ / ||b||₂ (0 when both are zero, ∞ when only `b` is).
    public static func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                var num = 0.0, den = 0.0
                for i in pa.indices {
                    let d = Double(pa[i]) - Double(pb[i])
                    num += d * d; den += Double(pb[i]) * Double(pb[i])
                }
                return den > 0 ? (num / den).squareRoot() : (num > 0 ? .infinity : 0)
            }
        }
    }
}

/// The noise floor of a fidelity measurement: `image` with every byte moved by −1, 0 or +1 grey level (each with
/// probability 1/3, clamped to 0…255), a deterministic function of (`seed`, byte index). Comparing a detector's
/// dense output on this with its dense output on `image` (`fpnstream bench temporal --noise-floor`) shows how far
/// the detector itself moves when its input changes by one quantisation step, which is less than the compression
/// noise a delta update ignores: an approximate method cannot be expected to agree better than that.
public func ditheredByOneLevel(_ image: RGBImage, seed: UInt64) -> RGBImage {
    var out = image
    out.pixels.withUnsafeMutableBufferPointer { p in
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x1234_5678
        for i in p.indices {
            // splitmix64: cheap, well mixed, reproducible across platforms.
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let v = Int(p[i]) + Int(z % 3) - 1
            p[i] = UInt8(min(255, max(0, v)))
        }
    }
    return out
}
