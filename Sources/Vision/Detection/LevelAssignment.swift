import FPNCore
import Foundation

/// The FPN level a box belongs to by the FPN paper's eq. 1, `k = floor(k0 + log2(sqrt(w h) / 224))` with k0 = 4,
/// on the box in network-input pixels (after the detector's resize), clamped to `levels`. For Faster/Mask R-CNN this
/// is exactly the level torchvision's `MultiScaleRoIAlign` (`LevelMapper`) pools the box from (P2...P5, Float32, +1e-6);
/// RetinaNet and FCOS do not pool per level (each level predicts on its own), so for them it is the level the FPN
/// paper would give an object of that size, clamped to the levels the model has.
public struct LevelAssignment: Sendable, Equatable {
    /// Levels by k (`pk` has stride 2^k), e.g. 2...5.
    public let levels: ClosedRange<Int>
    private let mapper = MultiScaleRoIAlign(outputSize: 7)

    public init(levels: ClosedRange<Int>) { self.levels = levels }

    /// The levels `detector` assigns boxes to: R-CNN's pooled levels (P2...P5 for torchvision's ResNet builders, P5
    /// alone for MobileNetV3's two stride-32 levels), or every level of a dense detector's pyramid (P3...P7).
    public init(detector: any Detector) {
        let ks = detector.backbone.outputShapes.map { Self.k(stride: $0.shape.stride) }
        let pooled = detector is GeneralizedRCNN ? Array(ks.prefix(detector.config.pooledLevelCount)) : ks
        self.init(levels: pooled.first!...pooled.last!)
    }

    /// k of a level with `stride` (a power of two).
    public static func k(stride: Int) -> Int { Int(log2(Double(stride)).rounded()) }

    /// The level of `box` in network-input pixels.
    public func level(ofInputBox box: Box) -> Int {
        levels.lowerBound + mapper.levelIndex(of: box, minLevel: levels.lowerBound, maxLevel: levels.upperBound)
    }

    /// The level of `box` in source-frame pixels (a detection's box), mapped to input pixels by `geometry`'s
    /// per-axis Float32 ratios (the inverse of torchvision's `resize_boxes`).
    public func level(ofSourceBox box: Box, geometry g: TransformGeometry) -> Int {
        let rx = g.toSourceX, ry = g.toSourceY
        return level(ofInputBox: Box(x1: box.x1 / rx, y1: box.y1 / ry, x2: box.x2 / rx, y2: box.y2 / ry))
    }
}
