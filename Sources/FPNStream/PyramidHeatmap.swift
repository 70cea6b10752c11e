import Vision

/// One pyramid level reduced to a map for display: per feature cell the RMS over channels, `sqrt(mean_c x²)`, on
/// the cells that cover the resized image (the cells that only see the detector's zero padding are cropped, so the
/// map has the frame's aspect ratio). Row-major, `height` rows of `width` cells; cell (x, y) covers input pixels
/// `[x·stride, (x+1)·stride)`.
public struct LevelHeatmap: Sendable, Equatable {
    /// Level name, `p2`...`p7`.
    public let name: String
    /// Input pixels per cell (2^k for `pk`).
    public let stride: Int
    /// Cells per row and rows.
    public let width: Int, height: Int
    /// `height * width` RMS values.
    public let values: [Float]

    public init(name: String, stride: Int, width: Int, height: Int, values: [Float]) {
        precondition(values.count == width * height, "LevelHeatmap: \(values.count) values for \(width)x\(height)")
        self.name = name
        self.stride = stride
        self.width = width
        self.height = height
        self.values = values
    }

    /// The channel RMS of `level` (batch item 0) over the cells covering the resized (unpadded) image of
    /// `geometry`: `ceil(resized / stride)` cells per axis, at most the level's size.
    public init(level: PyramidLevel, geometry g: TransformGeometry) {
        let f = level.features
        let s = level.stride
        let h = min(f.h, (g.resizedHeight + s - 1) / s), w = min(f.w, (g.resizedWidth + s - 1) / s)
        let channels = f.c, plane = f.h * f.w
        var sums = [Float](repeating: 0, count: h * w)
        f.withUnsafeBufferPointer { p in
            for c in 0..<channels {
                let base = c * plane
                for y in 0..<h {
                    let row = base + y * f.w
                    for x in 0..<w {
                        let v = p[row + x]
                        sums[y * w + x] += v * v
                    }
                }
            }
        }
        let inv = 1 / Float(max(channels, 1))
        self.init(name: level.name, stride: s, width: w, height: h, values: sums.map { ($0 * inv).squareRoot() })
    }

    /// Smallest and largest value (0, 0 when empty).
    public var range: (min: Float, max: Float) {
        guard let lo = values.min(), let hi = values.max() else { return (0, 0) }
        return (lo, hi)
    }

    /// `k` of `pk`.
    public var k: Int { LevelAssignment.k(stride: stride) }
}

/// How heatmaps are scaled to the colour map.
public enum HeatmapNormalization: String, Sendable, CaseIterable {
    /// Each level from its own minimum (dark) to its own maximum (bright): shows where each level responds.
    case level
    /// Every level of the frame on one scale (0 to the largest value of any level): shows which level is strongest.
    case global
}

/// A perceptually uniform colour map (matplotlib's viridis, 17 stops, linear in between): 0 dark blue-purple, 1 yellow.
public enum Viridis {
    static let stops: [UInt32] = [
        0x440154, 0x48186a, 0x472d7b, 0x424086, 0x3b528b, 0x33638d, 0x2c728e, 0x26828e, 0x21918c,
        0x1fa088, 0x28ae80, 0x3fbc73, 0x5ec962, 0x84d44b, 0xaddc30, 0xd8e219, 0xfde725,
    ]

    /// 256 entries for t = i / 255.
    public static let table: [(UInt8, UInt8, UInt8)] = (0..<256).map { i in
        let t = Float(i) / 255 * Float(stops.count - 1)
        let lo = min(Int(t), stops.count - 2)
        let f = t - Float(lo)
        func channel(_ shift: UInt32) -> UInt8 {
            let a = Float((stops[lo] >> shift) & 0xff), b = Float((stops[lo + 1] >> shift) & 0xff)
            return UInt8((a + (b - a) * f).rounded())
        }
        return (channel(16), channel(8), channel(0))
    }

    /// The colour of `t` in [0, 1] (clamped; NaN → 0).
    public static func color(_ t: Float) -> (UInt8, UInt8, UInt8) {
        let i = t.isNaN ? 0 : Int((min(max(t, 0), 1) * 255).rounded())
        return table[i]
    }
}
