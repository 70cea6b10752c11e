import FPNCore
import Foundation

/// torchvision's `BoxCoder` (R-CNN style deltas `dx, dy, dw, dh` relative to a reference box).
///
/// Decode, in Float32 exactly as `decode_single`: `w = x2 - x1`, `cx = x1 + 0.5 w` (no +1); deltas are divided by
/// the weights; `dw`, `dh` are clamped from above at `log(1000 / 16)`; the result is
/// `(cx' - 0.5 w', cy' - 0.5 h', cx' + 0.5 w', cy' + 0.5 h')`.
public struct BoxCoder: Sendable, Equatable {
    /// Weights `(wx, wy, ww, wh)`: (1,1,1,1) for the RPN and RetinaNet, (10,10,5,5) for the R-CNN box head.
    public var weights: (Float, Float, Float, Float)
    /// Upper clamp of `dw`, `dh` before `exp` (torchvision: `math.log(1000.0 / 16)` rounded to Float32).
    public var clip: Float

    public static let defaultClip = Float(log(1000.0 / 16))

    public init(weights: (Float, Float, Float, Float), clip: Float = BoxCoder.defaultClip) {
        self.weights = weights
        self.clip = clip
    }

    public static func == (a: BoxCoder, b: BoxCoder) -> Bool {
        a.weights == b.weights && a.clip == b.clip
    }

    /// Decodes one box from `deltas[0..<4]` relative to `reference`.
    @inlinable
    public func decode(_ d0: Float, _ d1: Float, _ d2: Float, _ d3: Float, reference r: Box) -> Box {
        let w = r.x2 - r.x1
        let h = r.y2 - r.y1
        let cx = r.x1 + 0.5 * w
        let cy = r.y1 + 0.5 * h
        let dx = d0 / weights.0
        let dy = d1 / weights.1
        let dw = min(d2 / weights.2, clip)
        let dh = min(d3 / weights.3, clip)
        let pcx = dx * w + cx
        let pcy = dy * h + cy
        let pw = expf(dw) * w
        let ph = expf(dh) * h
        let hw = 0.5 * pw, hh = 0.5 * ph
        return Box(x1: pcx - hw, y1: pcy - hh, x2: pcx + hw, y2: pcy + hh)
    }

    /// Decodes box `i` whose deltas start at `deltas[4 * i]`.
    @inlinable
    public func decode(_ deltas: UnsafeBufferPointer<Float>, at i: Int, reference: Box) -> Box {
        let o = 4 * i
        return decode(deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3], reference: reference)
    }

    /// Encodes `box` relative to `reference` (the inverse of `decode`, as torchvision's `encode_single`;
    /// used by tests and tools).
    public func encode(_ box: Box, reference r: Box) -> (Float, Float, Float, Float) {
        let ew = r.x2 - r.x1, eh = r.y2 - r.y1
        let ecx = r.x1 + 0.5 * ew, ecy = r.y1 + 0.5 * eh
        let gw = box.x2 - box.x1, gh = box.y2 - box.y1
        let gcx = box.x1 + 0.5 * gw, gcy = box.y1 + 0.5 * gh
        return (weights.0 * (gcx - ecx) / ew, weights.1 * (gcy - ecy) / eh,
                weights.2 * logf(gw / ew), weights.3 * logf(gh / eh))
    }
}

/// torchvision's `BoxLinearCoder(normalize_by_size=True)` used by FCOS: the four values are distances
/// (left, top, right, bottom) from the reference box centre, in units of the reference box size.
public struct BoxLinearCoder: Sendable, Equatable {
    public init() {}

    /// `(cx - l * w, cy - t * h, cx + r * w, cy + b * h)` with `cx = 0.5 (x1 + x2)`, `w = x2 - x1`.
    @inlinable
    public func decode(_ l: Float, _ t: Float, _ r: Float, _ b: Float, reference a: Box) -> Box {
        let cx = 0.5 * (a.x1 + a.x2)
        let cy = 0.5 * (a.y1 + a.y2)
        let w = a.x2 - a.x1
        let h = a.y2 - a.y1
        return Box(x1: cx - l * w, y1: cy - t * h, x2: cx + r * w, y2: cy + b * h)
    }
}

extension Box {
    /// torchvision `remove_small_boxes` keeps boxes with both sides `>= minSize`.
    @inlinable
    public func hasSides(atLeast minSize: Float) -> Bool {
        (x2 - x1) >= minSize && (y2 - y1) >= minSize
    }
}
