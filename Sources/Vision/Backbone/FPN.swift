import Tensor

/// torchvision's `FeaturePyramidNetwork` (`backbone.fpn.*`): per input level a lateral 1x1 `inner_blocks.i` and an
/// output 3x3 `layer_blocks.i` (v1: `.0` conv with bias; v2: `.0` conv without bias + `.1` BatchNorm, folded),
/// a nearest-upsampling top-down path, then the extra block (`LastLevelMaxPool` or `extra_blocks.p6/p7`).
public final class FeaturePyramidNetwork: @unchecked Sendable {
    /// `inner_blocks.i`: 1x1 lateral convs, lowest level first.
    public let innerBlocks: [ConvLayer]
    /// `layer_blocks.i`: 3x3 pad 1 output convs, lowest level first.
    public let layerBlocks: [ConvLayer]
    /// `extra_blocks.p6` / `extra_blocks.p7` (LastLevelP6P7 only): 3x3/2 pad 1 with bias.
    public let extraBlocks: (p6: ConvLayer, p7: ConvLayer)?
    /// The extra block kind.
    public let extra: FPNExtraBlock

    init(_ load: ModuleLoader, prefix p: String, inChannels: [Int], config: BackboneConfig) throws {
        let c = config.fpnChannels
        let norm = config.fpnNorm == .batchNorm
        var inner: [ConvLayer] = [], outer: [ConvLayer] = []
        for (i, cin) in inChannels.enumerated() {
            let ik = "\(p)inner_blocks.\(i)."
            inner.append(try load.conv(ik + "0", in: cin, out: c, kernel: 1, bias: !norm,
                                       batchNorm: norm ? ik + "1" : nil, bnEps: config.fpnNormEps))
        }
        for i in inChannels.indices {
            let lk = "\(p)layer_blocks.\(i)."
            outer.append(try load.conv(lk + "0", in: c, out: c, kernel: 3, padding: 1, bias: !norm,
                                       batchNorm: norm ? lk + "1" : nil, bnEps: config.fpnNormEps))
        }
        innerBlocks = inner
        layerBlocks = outer
        extra = config.extraBlock
        if case .p6p7(let source) = config.extraBlock {
            let cin = source == .p5 ? c : inChannels.last!
            extraBlocks = (try load.conv(p + "extra_blocks.p6", in: cin, out: c, kernel: 3, stride: 2, padding: 1, bias: true),
                           try load.conv(p + "extra_blocks.p7", in: c, out: c, kernel: 3, stride: 2, padding: 1, bias: true))
        } else {
            extraBlocks = nil
        }
    }

    /// `features`: the body's C levels, lowest first. Returns P levels lowest first, extra levels appended.
    /// Releases each input level once consumed (C5 only after P6 when P6 comes from C5).
    func callAsFunction(_ features: [Tensor], _ ctx: ForwardContext) -> [Tensor] {
        let n = features.count
        let p6FromC5: Bool
        if case .p6p7(.c5) = extra { p6FromC5 = true } else { p6FromC5 = false }
        var results = [Tensor?](repeating: nil, count: n)
        var last = innerBlocks[n - 1](features[n - 1], ctx)
        if !p6FromC5 { ctx.release(features[n - 1]) }
        results[n - 1] = layerBlocks[n - 1](last, ctx)
        for i in stride(from: n - 2, through: 0, by: -1) {
            // lateral 1x1 conv + nearest-upsampled top-down path, the sum fused into the conv's GEMM.
            let topDown = ctx(.upsampleNearest(height: features[i].h, width: features[i].w), key: "fpn.upsample.\(i)", last)
            ctx.release(last)
            last = innerBlocks[i](features[i], residual: topDown, ctx)
            ctx.release(features[i]); ctx.release(topDown)
            results[i] = layerBlocks[i](last, ctx)
        }
        ctx.release(last)
        var out = results.map { $0! }
        switch extra {
        case .none: break
        case .maxPool:
            out.append(out[n - 1].maxPool2d(kernel: 1, stride: 2, in: ctx.workspace))
        case .p6p7:
            let (p6Conv, p7Conv) = extraBlocks!
            let p6 = p6Conv(p6FromC5 ? features[n - 1] : out[n - 1], ctx)
            if p6FromC5 { ctx.release(features[n - 1]) }
            let relu6 = p6.relu(in: ctx.workspace)
            let p7 = p7Conv(relu6, ctx)
            ctx.release(relu6)
            out.append(p6)
            out.append(p7)
        }
        return out
    }
}
