import FPNCore

/// An 8-bit RGB colour.
public struct RGB: Sendable, Equatable, Hashable {
    public var r: UInt8
    public var g: UInt8
    public var b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }
    /// From `0xRRGGBB`.
    public init(hex: UInt32) { self.init(UInt8(hex >> 16 & 0xff), UInt8(hex >> 8 & 0xff), UInt8(hex & 0xff)) }

    public static let white = RGB(255, 255, 255)
    public static let black = RGB(0, 0, 0)

    /// Rec. 601 luma in 0...255; text on a background brighter than ~150 is drawn black, else white.
    public var luma: Int { (299 * Int(r) + 587 * Int(g) + 114 * Int(b)) / 1000 }
    /// Black or white, whichever reads better on this colour.
    public var contrasting: RGB { luma > 150 ? .black : .white }
}

/// Integer alpha: `A = round(alpha · 256)` in 0...256.
@inlinable func alpha256(_ alpha: Float) -> Int { Int((min(max(alpha, 0), 1) * 256).rounded()) }

/// The blend used everywhere: `out = (src · (256 − A) + colour · A + 128) >> 8`, `A = round(alpha · 256)`.
@inlinable func blend(_ src: UInt8, _ c: UInt8, _ a: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (Int(src) * (256 - a) + Int(c) * a + 128) >> 8)
}

/// Drawing primitives on RGB24 images. Every primitive clips to the image: coordinates may be negative or beyond the
/// edges (boxes leaving the frame) without crashing; only the visible part is drawn. Coordinates are pixel indices
/// (column `x`, row `y`), rectangles are half-open `x0..<x1, y0..<y1`.
extension RGBImage {
    /// Fills `x0..<x1, y0..<y1` (clipped) with `color`.
    public mutating func fillRect(x0: Int, y0: Int, x1: Int, y1: Int, color: RGB) {
        blendRect(x0: x0, y0: y0, x1: x1, y1: y1, color: color, alpha: 1)
    }

    /// Blends `color` over `x0..<x1, y0..<y1` (clipped) with opacity `alpha` in [0, 1].
    public mutating func blendRect(x0: Int, y0: Int, x1: Int, y1: Int, color: RGB, alpha: Float) {
        let cx0 = max(0, x0), cy0 = max(0, y0), cx1 = min(width, x1), cy1 = min(height, y1)
        guard cx0 < cx1, cy0 < cy1 else { return }
        let a = alpha256(alpha)
        let w = width
        pixels.withUnsafeMutableBufferPointer { p in
            for y in cy0..<cy1 {
                var o = (y * w + cx0) * 3
                for _ in cx0..<cx1 {
                    if a >= 256 {
                        p[o] = color.r; p[o + 1] = color.g; p[o + 2] = color.b
                    } else {
                        p[o] = blend(p[o], color.r, a); p[o + 1] = blend(p[o + 1], color.g, a)
                        p[o + 2] = blend(p[o + 2], color.b, a)
                    }
                    o += 3
                }
            }
        }
    }

    /// The outline of `box` (source-pixel corners, continuous coordinates) `thickness` pixels wide, drawn inside the
    /// box: the box covering columns 0...9 (x1 = 0, x2 = 10) gets columns 0..<thickness and 10−thickness..<10.
    public mutating func strokeBox(_ box: Box, thickness: Int, color: RGB) {
        guard box.x1.isFinite, box.y1.isFinite, box.x2.isFinite, box.y2.isFinite else { return }
        let x0 = Int(clampToInt(box.x1.rounded(.down))), y0 = Int(clampToInt(box.y1.rounded(.down)))
        let x1 = Int(clampToInt(box.x2.rounded(.up))), y1 = Int(clampToInt(box.y2.rounded(.up)))
        guard x1 > x0, y1 > y0 else { return }
        let t = max(1, thickness)
        fillRect(x0: x0, y0: y0, x1: x1, y1: min(y1, y0 + t), color: color)           // top
        fillRect(x0: x0, y0: max(y0, y1 - t), x1: x1, y1: y1, color: color)           // bottom
        fillRect(x0: x0, y0: y0, x1: min(x1, x0 + t), y1: y1, color: color)           // left
        fillRect(x0: max(x0, x1 - t), y0: y0, x1: x1, y1: y1, color: color)           // right
    }

    /// A line from `a` to `b` (pixel centres), `thickness` pixels wide (square pen), clipped.
    public mutating func drawLine(from a: Point, to b: Point, thickness: Int, color: RGB) {
        let pen = max(1, thickness)
        let margin = Float(pen)
        // Clip the segment to the image (plus the pen) first (Liang–Barsky), so a point far outside — a track
        // leaving the frame — neither costs a long loop nor skips the visible part.
        guard let (p, q) = clipSegment(a, b, xmin: -margin, ymin: -margin, xmax: Float(width) + margin,
                                       ymax: Float(height) + margin) else { return }
        let dx = q.x - p.x, dy = q.y - p.y
        let steps = Int(max(abs(dx), abs(dy)).rounded(.up))
        let half = pen / 2
        for i in 0...steps {
            let t = steps == 0 ? 0 : Float(i) / Float(steps)
            let x = Int((p.x + dx * t).rounded(.down)), y = Int((p.y + dy * t).rounded(.down))
            fillRect(x0: x - half, y0: y - half, x1: x - half + pen, y1: y - half + pen, color: color)
        }
    }

    /// Blends `color` with opacity `alpha` over the foreground of `mask` (COCO RLE, column-major runs). A mask of
    /// another size than the image is ignored (masks are at source resolution).
    public mutating func blendMask(_ mask: MaskRLE, color: RGB, alpha: Float) {
        guard mask.width == width, mask.height == height, height > 0 else { return }
        let a = alpha256(alpha)
        let h = height, w = width
        pixels.withUnsafeMutableBufferPointer { p in
            var pos = 0
            for (k, c) in mask.counts.enumerated() {
                let n = Int(c)
                if k & 1 == 1 {
                    for q in pos..<min(pos + n, w * h) {
                        let x = q / h, y = q - x * h
                        let o = (y * w + x) * 3
                        p[o] = blend(p[o], color.r, a); p[o + 1] = blend(p[o + 1], color.g, a)
                        p[o + 2] = blend(p[o + 2], color.b, a)
                    }
                }
                pos += n
            }
        }
    }

    /// Replaces `x0..<x1, y0..<y1` (clipped) by blocks of `block`×`block` pixels of their mean colour.
    public mutating func pixelate(x0: Int, y0: Int, x1: Int, y1: Int, block: Int) {
        let cx0 = max(0, x0), cy0 = max(0, y0), cx1 = min(width, x1), cy1 = min(height, y1)
        guard cx0 < cx1, cy0 < cy1 else { return }
        let b = max(1, block)
        var by = cy0
        while by < cy1 {
            var bx = cx0
            let ey = min(by + b, cy1)
            while bx < cx1 {
                let ex = min(bx + b, cx1)
                var sr = 0, sg = 0, sb = 0
                for y in by..<ey { for x in bx..<ex { let o = (y * width + x) * 3
                    sr += Int(pixels[o]); sg += Int(pixels[o + 1]); sb += Int(pixels[o + 2]) } }
                let n = (ey - by) * (ex - bx)
                fillRect(x0: bx, y0: by, x1: ex, y1: ey, color: RGB(UInt8(sr / n), UInt8(sg / n), UInt8(sb / n)))
                bx = ex
            }
            by = ey
        }
    }

    /// Box-blurs `x0..<x1, y0..<y1` (clipped) with radius `radius`, three passes (close to a Gaussian).
    public mutating func blur(x0: Int, y0: Int, x1: Int, y1: Int, radius: Int) {
        let cx0 = max(0, x0), cy0 = max(0, y0), cx1 = min(width, x1), cy1 = min(height, y1)
        guard cx0 < cx1, cy0 < cy1, radius > 0 else { return }
        let rw = cx1 - cx0, rh = cy1 - cy0
        var buf = [Int](repeating: 0, count: rw * rh * 3)
        for y in 0..<rh { for x in 0..<rw { for c in 0..<3 {
            buf[(y * rw + x) * 3 + c] = Int(pixels[((y + cy0) * width + x + cx0) * 3 + c]) } } }
        func pass(_ horizontal: Bool) {
            let len = horizontal ? rw : rh, lines = horizontal ? rh : rw
            var line = [Int](repeating: 0, count: len * 3)
            for l in 0..<lines {
                func idx(_ i: Int) -> Int { horizontal ? (l * rw + i) * 3 : (i * rw + l) * 3 }
                for c in 0..<3 {
                    // Running sum over a window clamped at the region's edges.
                    var sum = 0
                    for i in -radius...radius { sum += buf[idx(min(max(i, 0), len - 1)) + c] }
                    for i in 0..<len {
                        line[i * 3 + c] = sum / (2 * radius + 1)
                        sum += buf[idx(min(i + radius + 1, len - 1)) + c] - buf[idx(max(i - radius, 0)) + c]
                    }
                }
                for i in 0..<len { for c in 0..<3 { buf[idx(i) + c] = line[i * 3 + c] } }
            }
        }
        for _ in 0..<3 { pass(true); pass(false) }
        for y in 0..<rh { for x in 0..<rw { for c in 0..<3 {
            pixels[((y + cy0) * width + x + cx0) * 3 + c] = UInt8(buf[(y * rw + x) * 3 + c]) } } }
    }
}

@inlinable func clampToInt(_ v: Float) -> Float { min(max(v, -1_000_000), 1_000_000) }

/// The part of segment `a`–`b` inside the rectangle (Liang–Barsky), nil when none; non-finite points give nil.
func clipSegment(_ a: Point, _ b: Point, xmin: Float, ymin: Float, xmax: Float, ymax: Float) -> (Point, Point)? {
    guard a.x.isFinite, a.y.isFinite, b.x.isFinite, b.y.isFinite else { return nil }
    let dx = Double(b.x) - Double(a.x), dy = Double(b.y) - Double(a.y)
    var t0 = 0.0, t1 = 1.0
    let checks: [(Double, Double)] = [(-dx, Double(a.x) - Double(xmin)), (dx, Double(xmax) - Double(a.x)),
                                      (-dy, Double(a.y) - Double(ymin)), (dy, Double(ymax) - Double(a.y))]
    for (p, q) in checks {
        if p == 0 {
            if q < 0 { return nil }
        } else {
            let r = q / p
            if p < 0 { if r > t1 { return nil }; t0 = max(t0, r) } else { if r < t0 { return nil }; t1 = min(t1, r) }
        }
    }
    func at(_ t: Double) -> Point { Point(x: Float(Double(a.x) + dx * t), y: Float(Double(a.y) + dy * t)) }
    return (at(t0), at(t1))
}
