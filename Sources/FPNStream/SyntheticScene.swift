import FPNCore

/// Moving boxes in a `width`×`height` frame (1920×1080 by default), bouncing off the borders, with ~5 % misses, jitter, ~8 % false positives and
/// ~7 % low-score detections, totalling `detectionsPerFrame` per frame.
public struct SyntheticScene {
    private var rng: UInt64
    private var objects: [(x: Float, y: Float, w: Float, h: Float, vx: Float, vy: Float)] = []
    public let detectionsPerFrame: Int
    public let width: Float, height: Float

    /// The same `seed` gives the same scene.
    public init(detectionsPerFrame: Int, seed: UInt64, width: Float, height: Float) {
        self.detectionsPerFrame = detectionsPerFrame
        self.width = width
        self.height = height
        self.rng = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        let count = max(1, detectionsPerFrame * 85 / 100)
        for _ in 0..<count {
            let w = uniform(20, 90)
            objects.append((uniform(0, width - w), uniform(0, height - 2.5 * w), w, w * uniform(1.2, 2.5),
                            uniform(-6, 6), uniform(-4, 4)))
        }
    }

    private mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
        return lo + (hi - lo) * Float(rng >> 40) / Float(1 << 24)
    }

    /// The next frame's detections (exactly `detectionsPerFrame`).
    public mutating func next() -> [Detection] {
        var dets: [Detection] = []
        dets.reserveCapacity(detectionsPerFrame)
        for k in objects.indices {
            var o = objects[k]
            o.x += o.vx; o.y += o.vy
            if o.x < 0 || o.x + o.w > width { o.vx = -o.vx }
            if o.y < 0 || o.y + o.h > height { o.vy = -o.vy }
            objects[k] = o
            guard uniform(0, 1) > 0.05 else { continue }
            let j = o.h * 0.03
            let x1 = o.x + uniform(-j, j), y1 = o.y + uniform(-j, j)
            dets.append(Detection(box: Box(x1: x1, y1: y1, x2: x1 + o.w + uniform(-j, j), y2: y1 + o.h + uniform(-j, j)),
                                  score: uniform(0.55, 0.95), classID: 1, className: "object"))
        }
        while dets.count < detectionsPerFrame {
            let low = uniform(0, 1) < 0.45
            let w = uniform(20, 70), x = uniform(0, width - w), y = uniform(0, height - 1.8 * w)
            dets.append(Detection(box: Box(x1: x, y1: y, x2: x + w, y2: y + w * 1.8),
                                  score: low ? uniform(0.12, 0.45) : uniform(0.5, 0.8), classID: 1, className: "object"))
        }
        return Array(dets.prefix(detectionsPerFrame))
    }
}
