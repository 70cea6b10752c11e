import Foundation
import Tensor

/// Per-pixel semantic labels of one image at output (source) resolution.
public struct SemanticSegmentation: Sendable, Equatable {
    /// Height in pixels.
    public let height: Int
    /// Width in pixels.
    public let width: Int
    /// Row-major argmax labels `[height * width]`: 0 = "things", 1...N = stuff classes.
    public let labels: [UInt8]

    public init(height: Int, width: Int, labels: [UInt8]) {
        precondition(labels.count == height * width, "SemanticSegmentation: \(labels.count) labels for \(height)x\(width)")
        self.height = height; self.width = width; self.labels = labels
    }
}

/// detectron2's semantic FPN head (`SemSegFPNHead`, Panoptic FPN) at test time.
///
/// For P2...P5 (strides 4...32): `max(1, log2(stride) - 2)` blocks of [conv3x3 pad 1 (no bias) → GroupNorm(32) →
/// ReLU], each followed by a 2x bilinear upsampling (align_corners false) when the level's stride is not 4; keys
/// `sem_seg_head.p{k}.{0,2,4}.weight` and `.norm.weight` / `.norm.bias`. The four stride-4 maps are summed →
/// `sem_seg_head.predictor` 1x1 (bias) → classes → x4 bilinear → crop to the unpadded (resized) input → bilinear to
/// the source size → argmax (first maximum wins, as torch). Immutable, shared by streams.
public final class SemanticFPNHead: @unchecked Sendable {
    /// Blocks per level p2...p5: conv (no bias) and its GroupNorm with fused ReLU.
    let levels: [[(conv: ConvLayer, norm: GroupNorm)]]
    let predictor: Conv2d
    /// Output classes (1 + stuff classes).
    public let numClasses: Int
    /// Stride of the summed maps (4: P2).
    public let commonStride = 4

    /// Builds the head from `loader` (`prefix` = `sem_seg_head.`).
    /// - Parameters: `inChannels` FPN channels; `convDims` head width (128 in detectron2); `numClasses` = 1 + stuff.
    public init(_ loader: ModuleLoader, prefix: String = "sem_seg_head.", inChannels: Int, convDims: Int = 128,
                numClasses: Int, groups: Int = 32, eps: Float = 1e-5) throws {
        var levels: [[(conv: ConvLayer, norm: GroupNorm)]] = []
        for k in 2...5 {
            let blocks = max(1, k - 2)
            levels.append(try (0..<blocks).map { b in
                let key = "\(prefix)p\(k).\(2 * b)"
                let conv = try loader.conv(key, in: b == 0 ? inChannels : convDims, out: convDims, kernel: 3,
                                           padding: 1)
                let norm = GroupNorm(groups: groups, channels: convDims, eps: eps,
                                     weight: try loader.floats(key + ".norm.weight", count: convDims),
                                     bias: try loader.floats(key + ".norm.bias", count: convDims), activation: .relu)
                return (conv, norm)
            })
        }
        self.levels = levels
        predictor = try loader.conv(prefix + "predictor", in: convDims, out: numClasses, kernel: 1, bias: true).conv
        self.numClasses = numClasses
    }

    /// Logits at the padded input resolution: P2...P5 `[n, C, H/4...]` (the first four pyramid levels) →
    /// `[n, numClasses, 4 * H_p2, 4 * W_p2]`, from `ws`. The 3x3 convs go through `runner` when given (a temporal
    /// cache keeps them per stream like the backbone's; GroupNorm then spreads a local change over the level as a
    /// small global one, which the cache's threshold decides on, as in the GroupNorm towers of RetinaNet v2).
    public func logits(_ features: [Tensor], workspace ws: Workspace, runner: ConvolutionRunner? = nil) -> Tensor {
        precondition(features.count == 4, "semantic head needs P2...P5, got \(features.count) levels")
        let ctx = ForwardContext(workspace: ws, runner: runner)
        var sum: Tensor?
        for (k, blocks) in levels.enumerated() {
            var x = features[k]
            var added = false
            for (b, block) in blocks.enumerated() {
                var y = block.conv(x, ctx)
                if b > 0 { ws.release(x) }   // never the pyramid level itself (the detector still needs it)
                if runner != nil, !ws.holds(y) {
                    // The runner's kept state across frames: normalise into a new tensor, not in place.
                    let z = ws.tensor(y.shape)
                    block.norm.forward(y, into: z)
                    y = z
                } else {
                    block.norm.forward(y, into: y)
                }
                x = y
                guard k > 0 else { continue }   // stride != 4: 2x bilinear upsampling after every block
                if b == blocks.count - 1, let s = sum, s.h == 2 * x.h, s.w == 2 * x.w {
                    // The level's last upsampling adds straight into the sum (same bits as resize, then add).
                    Ops.resizeBilinear(x, into: s, accumulate: true)
                    added = true
                } else {
                    let up = x.resizeBilinear(height: 2 * x.h, width: 2 * x.w, in: ws)
                    ws.release(x)
                    x = up
                }
            }
            if added {
                ws.release(x)
            } else if let s = sum {
                Ops.add(s, x, into: s)
                ws.release(x)
            } else {
                sum = x
            }
        }
        let pred = predictor(sum!, in: ws)
        ws.release(sum!)
        let out = pred.resizeBilinear(height: commonStride * pred.h, width: commonStride * pred.w, in: ws)
        ws.release(pred)
        return out
    }

    /// Labels of batch item `index`: logits cropped to `inputSize` (the resized, unpadded image), resized bilinearly
    /// to `outputSize` (source pixels), argmax over classes (the resized logits are reduced row by row, never stored).
    public func segmentation(logits: Tensor, index: Int = 0, inputSize: (height: Int, width: Int),
                             outputSize: (height: Int, width: Int), workspace ws: Workspace) -> SemanticSegmentation {
        let k = logits.c, ph = logits.h, pw = logits.w
        let h = min(inputSize.height, ph), w = min(inputSize.width, pw)
        let (oh, ow) = outputSize
        let item = logits.batchItem(index)
        let labels = [UInt8](unsafeUninitializedCapacity: oh * ow) { l, count in
            defer { count = oh * ow }
            guard oh == h && ow == w else {
                Ops.resizeBilinearArgmax(item, height: h, width: w, outHeight: oh, outWidth: ow, into: l.baseAddress!,
                                         workspace: ws)
                return
            }
            let crop = ws.tensor([1, k, h, w])
            item.withUnsafeBufferPointer { src in
                crop.withUnsafeMutableBufferPointer { dst in
                    for c in 0..<k {
                        for y in 0..<h {
                            (dst.baseAddress! + c * h * w + y * w).update(from: src.baseAddress! + c * ph * pw + y * pw,
                                                                         count: w)
                        }
                    }
                }
            }
            crop.withUnsafeBufferPointer { p in Ops.argmaxPlanes(p.baseAddress!, planes: k, count: h * w, into: l.baseAddress!) }
            ws.release(crop)
        }
        return SemanticSegmentation(height: oh, width: ow, labels: labels)
    }
}
