import FPNCore
import Foundation

/// torchvision's `heatmaps_to_keypoints` (`models/detection/roi_heads.py`): each keypoint heatmap of a detection is
/// resized bicubically to the box's size in input pixels, its argmax becomes the keypoint (cell centre, Heckbert's
/// c = d + 0.5), and the resized map's value there its score.
public enum HeatmapKeypoints {
    /// torch's bicubic convolution constant.
    static let a: Float = -0.75

    /// torch's `get_cubic_upsample_coefficients(t)` (Float32, same operation order).
    @inline(__always) static func coefficients(_ t: Float) -> (Float, Float, Float, Float) {
        func c1(_ x: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
        func c2(_ x: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }
        let x2 = 1 - t
        return (c2(t + 1), c1(t), c1(x2), c2(x2 + 1))
    }

    /// Source taps and weights of torch `interpolate(mode="bicubic", align_corners=False, size=...)` along one axis:
    /// for output index o, `real = (in / out) · (o + 0.5) − 0.5`, base = min(floor(real), in − 1), t clamped to
    /// [0, 1], taps base−1 ... base+2 clamped to the input.
    static func taps(input: Int, output: Int) -> [(index: (Int, Int, Int, Int), weight: (Float, Float, Float, Float))] {
        let scale = Float(input) / Float(output)
        return (0..<output).map { o in
            let real = scale * (Float(o) + 0.5) - 0.5
            let base = min(Int(floorf(real)), input - 1)
            let t = min(max(real - Float(base), 0), 1)
            func clamp(_ i: Int) -> Int { min(max(i, 0), input - 1) }
            return ((clamp(base - 1), clamp(base), clamp(base + 1), clamp(base + 2)), coefficients(t))
        }
    }

    /// Bicubic resize of one `height x width` map (row-major) to `outHeight x outWidth`, summed as torch's CPU kernel
    /// does: per output row tap, the x taps in order, then the y taps in order.
    public static func resizeBicubic(_ map: UnsafeBufferPointer<Float>, height: Int, width: Int, outHeight: Int,
                                     outWidth: Int) -> [Float] {
        let ys = taps(input: height, output: outHeight), xs = taps(input: width, output: outWidth)
        var out = [Float](repeating: 0, count: outHeight * outWidth)
        for oy in 0..<outHeight {
            let (yi, yw) = ys[oy]
            let rows = [yi.0, yi.1, yi.2, yi.3], wy = [yw.0, yw.1, yw.2, yw.3]
            for ox in 0..<outWidth {
                let (xi, xw) = xs[ox]
                var acc: Float = 0
                for r in 0..<4 {
                    let row = rows[r] * width
                    var t = map[row + xi.0] * xw.0
                    t += map[row + xi.1] * xw.1
                    t += map[row + xi.2] * xw.2
                    t += map[row + xi.3] * xw.3
                    acc = r == 0 ? t * wy[0] : acc + t * wy[r]
                }
                out[oy * outWidth + ox] = acc
            }
        }
        return out
    }

    /// The keypoints of one detection: `maps` holds `count` heatmaps of `size x size` (row-major), `box` is the
    /// detection in input pixels. Positions are in input pixels (map them to the source frame afterwards).
    public static func decode(_ maps: UnsafeBufferPointer<Float>, count: Int, size: Int, box: Box) -> [Keypoint] {
        let w = max(box.x2 - box.x1, 1), h = max(box.y2 - box.y1, 1)
        let mapW = Int(w.rounded(.up)), mapH = Int(h.rounded(.up))
        let cx = w / Float(mapW), cy = h / Float(mapH)
        let plane = size * size
        return (0..<count).map { k in
            let resized = resizeBicubic(UnsafeBufferPointer(rebasing: maps[(k * plane)..<((k + 1) * plane)]),
                                        height: size, width: size, outHeight: mapH, outWidth: mapW)
            var best = 0
            for i in 1..<resized.count where resized[i] > resized[best] { best = i }  // first maximum, as torch
            let xi = best % mapW, yi = best / mapW
            return Keypoint(x: (Float(xi) + 0.5) * cx + box.x1, y: (Float(yi) + 0.5) * cy + box.y1,
                            score: resized[best])
        }
    }
}
