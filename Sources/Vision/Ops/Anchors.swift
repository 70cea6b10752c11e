import FPNCore
import Foundation

/// torchvision's `AnchorGenerator`: per feature level, a set of base ("cell") anchors centred on 0 that are
/// shifted to every location of the level's grid.
///
/// Matches `torchvision/models/detection/anchor_utils.py` bit for bit:
/// - base anchor = round([-ws, -hs, ws, hs] / 2) with `hr = sqrt(ratio)`, `wr = 1 / hr`, `ws = wr * size`,
///   `hs = hr * size`, all in Float32; `round` is half-to-even like `torch.round` (so 45.5 → 46, 22.5 → 22);
/// - order inside a location: aspect-ratio-major, then size;
/// - locations row-major; shifts are `(x * strideW, y * strideH)` with **integer** strides
///   `paddedSize / gridSize` per axis (so a 7-wide P6 of an 800x1216 input has stride 1216/38 = 32 but odd
///   sizes give strides like 61), no half-pixel offset.
public struct AnchorGenerator: Sendable, Equatable {
    /// Anchor sizes (square side in input pixels) per level.
    public var sizes: [[Float]]
    /// Aspect ratios (height / width) per level.
    public var aspectRatios: [[Float]]

    public init(sizes: [[Float]], aspectRatios: [[Float]]) {
        precondition(sizes.count == aspectRatios.count, "AnchorGenerator: one ratio list per level")
        self.sizes = sizes
        self.aspectRatios = aspectRatios
    }

    /// Mask R-CNN / Faster R-CNN: sizes 32...512 on P2...P6 (one per level), ratios (0.5, 1, 2).
    public static let rcnn = AnchorGenerator(sizes: [[32], [64], [128], [256], [512]],
                                             aspectRatios: Array(repeating: [0.5, 1, 2], count: 5))

    /// RetinaNet: sizes (x, int(x * 2^(1/3)), int(x * 2^(2/3))) for x = 32...512 on P3...P7, ratios (0.5, 1, 2).
    public static let retinaNet: AnchorGenerator = {
        let sizes: [[Float]] = [32, 64, 128, 256, 512].map { (x: Double) in
            [x, (x * pow(2.0, 1.0 / 3)).rounded(.towardZero), (x * pow(2.0, 2.0 / 3)).rounded(.towardZero)].map { Float($0) }
        }
        return AnchorGenerator(sizes: sizes, aspectRatios: Array(repeating: [0.5, 1, 2], count: 5))
    }()

    /// FCOS: one square anchor per location whose side equals the level's nominal stride (8...128 on P3...P7).
    public static let fcos = AnchorGenerator(sizes: [[8], [16], [32], [64], [128]],
                                             aspectRatios: Array(repeating: [1], count: 5))

    /// Number of levels.
    public var levelCount: Int { sizes.count }

    /// Anchors per location on `level`.
    public func anchorsPerLocation(level: Int) -> Int { sizes[level].count * aspectRatios[level].count }

    /// The base anchors of `level`, centred on (0, 0), ratio-major then size.
    public func cellAnchors(level: Int) -> [Box] {
        var out: [Box] = []
        for ratio in aspectRatios[level] {
            let hr = ratio.squareRoot()
            let wr = 1 / hr
            for size in sizes[level] {
                let ws = wr * size, hs = hr * size
                out.append(Box(x1: (-ws / 2).rounded(.toNearestOrEven), y1: (-hs / 2).rounded(.toNearestOrEven),
                               x2: (ws / 2).rounded(.toNearestOrEven), y2: (hs / 2).rounded(.toNearestOrEven)))
            }
        }
        return out
    }

    /// Integer stride of a level: `paddedSize / gridSize` per axis (torchvision's `//`).
    public static func stride(paddedHeight: Int, paddedWidth: Int, gridHeight: Int, gridWidth: Int)
        -> (y: Int, x: Int) {
        (paddedHeight / gridHeight, paddedWidth / gridWidth)
    }

    /// All anchors of `level` for a grid of `gridHeight x gridWidth` locations of the padded input
    /// `paddedHeight x paddedWidth`: location-major (row-major), then the cell anchors in order.
    public func anchors(level: Int, gridHeight: Int, gridWidth: Int, paddedHeight: Int, paddedWidth: Int) -> [Box] {
        let cell = cellAnchors(level: level)
        let s = Self.stride(paddedHeight: paddedHeight, paddedWidth: paddedWidth,
                            gridHeight: gridHeight, gridWidth: gridWidth)
        var out: [Box] = []
        out.reserveCapacity(gridHeight * gridWidth * cell.count)
        for y in 0..<gridHeight {
            let sy = Float(y * s.y)
            for x in 0..<gridWidth {
                let sx = Float(x * s.x)
                for c in cell {
                    out.append(Box(x1: sx + c.x1, y1: sy + c.y1, x2: sx + c.x2, y2: sy + c.y2))
                }
            }
        }
        return out
    }
}
