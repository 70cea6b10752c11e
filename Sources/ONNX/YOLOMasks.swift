import FPNCore
import Tensor

/// YOLO segment masks at source resolution, as Ultralytics' `process_mask_native`: mask logits = coefficients ·
/// prototypes (`[M, H/4, W/4]`), optionally upsampled by a small factor so the letterbox padding falls on whole
/// pixels, the letterbox content cropped and resized (bilinear, half-pixel) to the source size, thresholded at 0
/// (sigmoid > 0.5), and cut to the detection's box (columns `x1 <= x < x2`, rows `y1 <= y < y2`).
enum YOLOMasks {
    static func mask(_ out0: Tensor, anchor: Int, classCount: Int, protos: Tensor, box: Box,
                     sourceWidth w: Int, sourceHeight h: Int) -> MaskRLE {
        let m = protos.shape[1], mh = protos.shape[2], mw = protos.shape[3], n = out0.shape[2]
        // Logits on the prototype grid.
        var logits = [Float](repeating: 0, count: mh * mw)
        out0.withUnsafeBufferPointer { o in
            protos.withUnsafeBufferPointer { p in
                for k in 0..<m {
                    let c = o[(4 + classCount + k) * n + anchor]
                    let plane = k * mh * mw
                    for i in 0..<(mh * mw) { logits[i] += c * p[plane + i] }
                }
            }
        }
        // Upsample factor f (1, 2 or 4) so the input-size letterbox padding is a whole number of grid pixels.
        let gain = min(Double(4 * mh) / Double(h), Double(4 * mw) / Double(w))
        let pad = (4 * mh - max(Int((Double(h) * gain).rounded(.toNearestOrEven)), 1))
            | (4 * mw - max(Int((Double(w) * gain).rounded(.toNearestOrEven)), 1))
        let f = 4 / gcd(4, pad | (pad >> 1))
        var grid = logits, gh = mh, gw = mw
        if f > 1 {
            let up = Tensor(shape: [1, 1, mh * f, mw * f])
            Ops.resize(Tensor(shape: [1, 1, mh, mw], data: logits), into: up, linear: true, coordinates: .halfPixel,
                       nearest: .floor, scaleH: Float(f), scaleW: Float(f))
            grid = up.array; gh = mh * f; gw = mw * f
        }
        // scale_masks: the letterbox content of the grid, resized to h x w.
        let g = min(Double(gh) / Double(h), Double(gw) / Double(w))
        let contentH = max(Int((Double(h) * g).rounded(.toNearestOrEven)), 1)
        let contentW = max(Int((Double(w) * g).rounded(.toNearestOrEven)), 1)
        let top = Int((Double(gh - contentH) / 2 - 0.1).rounded(.toNearestOrEven))
        let left = Int((Double(gw - contentW) / 2 - 0.1).rounded(.toNearestOrEven))
        let ch = min(contentH, gh - top), cw = min(contentW, gw - left)
        var bits = [UInt8](repeating: 0, count: w * h)
        // Only pixels inside the box survive the crop, so only those are interpolated.
        let x0 = max(0, Int(box.x1.rounded(.up))), x1 = min(w, Int(box.x2.rounded(.up)))
        let y0 = max(0, Int(box.y1.rounded(.up))), y1 = min(h, Int(box.y2.rounded(.up)))
        guard x0 < x1, y0 < y1, ch > 0, cw > 0 else { return MaskRLE(rowMajor: bits, height: h, width: w) }
        let xs = taps(count: w, inputLength: cw), ys = taps(count: h, inputLength: ch)
        for y in y0..<y1 {
            let (ya, yb, ly) = ys[y]
            let rowA = (top + ya) * gw + left, rowB = (top + yb) * gw + left
            for x in x0..<x1 {
                let (xa, xb, lx) = xs[x]
                let v = (1 - ly) * ((1 - lx) * grid[rowA + xa] + lx * grid[rowA + xb])
                    + ly * ((1 - lx) * grid[rowB + xa] + lx * grid[rowB + xb])
                if v > 0 { bits[y * w + x] = 1 }
            }
        }
        return MaskRLE(rowMajor: bits, height: h, width: w)
    }

    /// torch `interpolate(mode="bilinear", align_corners=False)` taps for each output index: the two input indices
    /// and the weight of the second.
    static func taps(count: Int, inputLength: Int) -> [(Int, Int, Float)] {
        let scale = Float(inputLength) / Float(count)
        return (0..<count).map { o in
            let src = max((Float(o) + 0.5) * scale - 0.5, 0)
            let a = min(Int(src), inputLength - 1)
            let b = a + (a < inputLength - 1 ? 1 : 0)
            return (a, b, src - Float(a))
        }
    }

    static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? abs(a) : gcd(b, a % b) }
}
