import FPNCore
import Tensor

/// How `DetectionTransform` sizes the network input.
public enum InputResize: Equatable, Sendable {
    /// torchvision's rule: scale = min(min / min(h, w), max / max(h, w)) in Double, new size = Int(side · scale)
    /// (truncation). torchvision detectors: `min: 800, max: 1333`.
    case shorterSide(min: Int, max: Int)
    /// torchvision's `fixed_size=(width, height)`: every frame resized to exactly this size (aspect not kept).
    case fixed(width: Int, height: Int)
    /// No resizing: normalise and pad only.
    case none
}

/// Parameters of `GeneralizedRCNNTransform` (inference path).
public struct TransformConfig: Equatable, Sendable {
    /// Resize rule.
    public var resize: InputResize
    /// Per-channel mean, RGB order, subtracted from pixel/255.
    public var mean: [Float]
    /// Per-channel standard deviation, RGB order.
    public var std: [Float]
    /// Padded width and height are multiples of this (torchvision: 32).
    public var sizeDivisible: Int

    /// torchvision's detector defaults: 800/1333, ImageNet mean/std, pad to 32.
    public init(resize: InputResize = .shorterSide(min: 800, max: 1333), mean: [Float] = [0.485, 0.456, 0.406],
                std: [Float] = [0.229, 0.224, 0.225], sizeDivisible: Int = 32) {
        precondition(mean.count == 3 && std.count == 3 && std.allSatisfy { $0 > 0 }, "mean/std need 3 channels, std > 0")
        precondition(sizeDivisible >= 1, "sizeDivisible must be >= 1")
        self.resize = resize; self.mean = mean; self.std = std; self.sizeDivisible = sizeDivisible
    }
}

/// Sizes of one frame through the transform, and the factors that map results back to source pixels.
public struct TransformGeometry: Equatable, Sendable {
    /// Source frame size.
    public var sourceWidth: Int, sourceHeight: Int
    /// Size after resizing (torchvision's `image_sizes`); boxes are clipped to this.
    public var resizedWidth: Int, resizedHeight: Int
    /// Network input size after zero padding bottom/right.
    public var paddedWidth: Int, paddedHeight: Int

    /// Multiply x coordinates in network-input pixels by this to get source pixels. torchvision's `resize_boxes`
    /// computes the ratio in Float32: Float(source) / Float(resized).
    public var toSourceX: Float { Float(sourceWidth) / Float(resizedWidth) }
    /// Same for y.
    public var toSourceY: Float { Float(sourceHeight) / Float(resizedHeight) }
}

/// torchvision's `GeneralizedRCNNTransform` for inference, bit for bit where torch is deterministic:
/// RGB uint8 → Float(v)/255 → (x - mean) / std (normalise BEFORE resizing) → bilinear resize (align_corners
/// false, no antialias) → zero pad bottom/right to a multiple of `sizeDivisible`. Output `[1, 3, Hp, Wp]` NCHW.
/// Stateless apart from a 3x256 lookup table; buffers come from the caller's per-stream `Workspace`.
public struct DetectionTransform: Sendable {
    /// The parameters.
    public let config: TransformConfig
    /// normalized[c][v] = (Float(v) / 255 - mean[c]) / std[c], the exact Float32 arithmetic of torch.
    private let table: [Float]

    public init(_ config: TransformConfig = TransformConfig()) {
        self.config = config
        var t = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { t[c * 256 + v] = (Float(v) / 255 - config.mean[c]) / config.std[c] }
        }
        table = t
    }

    /// The geometry for a `width` x `height` source frame.
    public func geometry(width: Int, height: Int) -> TransformGeometry {
        precondition(width > 0 && height > 0, "empty frame \(width)x\(height)")
        var rw = width, rh = height
        switch config.resize {
        case .none: break
        case .fixed(let w, let h): rw = w; rh = h
        case .shorterSide(let lo, let hi):
            let scale = min(Double(lo) / Double(min(width, height)), Double(hi) / Double(max(width, height)))
            rw = Int(Double(width) * scale)
            rh = Int(Double(height) * scale)
        }
        rw = max(rw, 1); rh = max(rh, 1)
        let d = config.sizeDivisible
        return TransformGeometry(sourceWidth: width, sourceHeight: height, resizedWidth: rw, resizedHeight: rh,
                                 paddedWidth: (rw + d - 1) / d * d, paddedHeight: (rh + d - 1) / d * d)
    }

    /// The network input for `image`: `[1, 3, paddedHeight, paddedWidth]` from `workspace` (valid until its next
    /// `beginFrame()`), and the frame's geometry.
    public func callAsFunction(_ image: RGBImage, workspace: Workspace) -> (input: Tensor, geometry: TransformGeometry) {
        let g = geometry(width: image.width, height: image.height)
        let out = workspace.tensor([1, 3, g.paddedHeight, g.paddedWidth])
        if g.resizedWidth == image.width && g.resizedHeight == image.height {
            // torch's bilinear at scale 1 reproduces its input exactly: normalise straight into the padded buffer.
            normalize(image, into: out)
        } else {
            // The resize reads only its taps' source rows (about 2 in `scale` where it downsamples): only those
            // are normalised, the others are never read.
            let normalized = workspace.tensor([1, 3, image.height, image.width])
            normalize(image, rows: Ops.bilinearSourceRuns(input: image.height, output: g.resizedHeight),
                      into: normalized)
            let resized = normalized.resizeBilinear(height: g.resizedHeight, width: g.resizedWidth, in: workspace)
            workspace.release(normalized)
            pad(resized, into: out)
            workspace.release(resized)
        }
        return (out, g)
    }

    /// Writes the normalised planes of `image` into the top-left of `out` `[1, 3, H ≥ h, W ≥ w]`: the source rows
    /// `rows` (nil: all, and zeros in the padding), the other rows left as they were.
    private func normalize(_ image: RGBImage, rows: [Range<Int>]? = nil, into out: Tensor) {
        let h = image.height, w = image.width, oh = out.h, ow = out.w
        table.withUnsafeBufferPointer { lut in
            image.pixels.withUnsafeBufferPointer { px in
                out.withUnsafeMutableBufferPointer { dst in
                    for r in rows ?? [0..<h] {
                        Ops.normalizeRGB(px.baseAddress! + r.lowerBound * w * 3, width: w, height: r.count,
                                         table: lut.baseAddress!, into: dst.baseAddress! + r.lowerBound * ow,
                                         planeStride: oh * ow, rowStride: ow)
                    }
                    guard rows == nil else { return }
                    for c in 0..<3 {
                        let plane = c * oh * ow
                        if ow > w { for y in 0..<h { (dst.baseAddress! + plane + y * ow + w).update(repeating: 0, count: ow - w) } }
                        (dst.baseAddress! + plane + h * ow).update(repeating: 0, count: (oh - h) * ow)
                    }
                }
            }
        }
    }

    /// Copies `x` `[1, 3, h, w]` into the top-left of `out` `[1, 3, H, W]`, zeros elsewhere.
    private func pad(_ x: Tensor, into out: Tensor) {
        let h = x.h, w = x.w, oh = out.h, ow = out.w
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for c in 0..<3 {
                    for y in 0..<oh {
                        let d = (c * oh + y) * ow
                        if y < h {
                            let s = (c * h + y) * w
                            for x in 0..<w { dst[d + x] = src[s + x] }
                            for x in w..<ow { dst[d + x] = 0 }
                        } else {
                            for x in 0..<ow { dst[d + x] = 0 }
                        }
                    }
                }
            }
        }
    }
}
