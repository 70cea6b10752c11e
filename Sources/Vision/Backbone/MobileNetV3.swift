import Tensor

/// One row of torchvision's MobileNetV3-Large table (`_mobilenet_v3_conf("mobilenet_v3_large")`, width 1.0,
/// not dilated): input/expanded/output channels, depthwise kernel, squeeze-excitation, hard-swish (else ReLU), stride.
struct InvertedResidualSpec {
    let input: Int, kernel: Int, expanded: Int, output: Int, se: Bool, hardSwish: Bool, stride: Int

    static let large: [InvertedResidualSpec] = [
        .init(input: 16, kernel: 3, expanded: 16, output: 16, se: false, hardSwish: false, stride: 1),
        .init(input: 16, kernel: 3, expanded: 64, output: 24, se: false, hardSwish: false, stride: 2),
        .init(input: 24, kernel: 3, expanded: 72, output: 24, se: false, hardSwish: false, stride: 1),
        .init(input: 24, kernel: 5, expanded: 72, output: 40, se: true, hardSwish: false, stride: 2),
        .init(input: 40, kernel: 5, expanded: 120, output: 40, se: true, hardSwish: false, stride: 1),
        .init(input: 40, kernel: 5, expanded: 120, output: 40, se: true, hardSwish: false, stride: 1),
        .init(input: 40, kernel: 3, expanded: 240, output: 80, se: false, hardSwish: true, stride: 2),
        .init(input: 80, kernel: 3, expanded: 200, output: 80, se: false, hardSwish: true, stride: 1),
        .init(input: 80, kernel: 3, expanded: 184, output: 80, se: false, hardSwish: true, stride: 1),
        .init(input: 80, kernel: 3, expanded: 184, output: 80, se: false, hardSwish: true, stride: 1),
        .init(input: 80, kernel: 3, expanded: 480, output: 112, se: true, hardSwish: true, stride: 1),
        .init(input: 112, kernel: 3, expanded: 672, output: 112, se: true, hardSwish: true, stride: 1),
        .init(input: 112, kernel: 5, expanded: 672, output: 160, se: true, hardSwish: true, stride: 2),
        .init(input: 160, kernel: 5, expanded: 960, output: 160, se: true, hardSwish: true, stride: 1),
        .init(input: 160, kernel: 5, expanded: 960, output: 160, se: true, hardSwish: true, stride: 1),
    ]

    /// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, at least 8 and not below 90 % of v.
    static func makeDivisible(_ v: Int, _ divisor: Int = 8) -> Int {
        var n = max(divisor, (v + divisor / 2) / divisor * divisor)
        if Double(n) < 0.9 * Double(v) { n += divisor }
        return n
    }
}

/// torchvision's `InvertedResidual` (keys `features.i.block.j.*`): [1x1 expand + BN + act] → depthwise k x k /s +
/// BN + act → [squeeze-excitation: mean → `fc1` 1x1 + ReLU → `fc2` 1x1 → hard-sigmoid → scale] → 1x1 project + BN
/// (+ input when stride 1 and the channels match). act = hard-swish or ReLU; BN folded, ReLU fused.
public final class InvertedResidual: @unchecked Sendable {
    let expand: ConvLayer?
    let depthwise: ConvLayer
    let squeeze: (fc1: ConvLayer, fc2: ConvLayer)?
    let project: ConvLayer
    let hardSwish: Bool
    let residual: Bool

    init(_ load: ModuleLoader, prefix p: String, spec s: InvertedResidualSpec, eps: Double) throws {
        let act: Activation = s.hardSwish ? .none : .relu
        var j = 0
        if s.expanded != s.input {
            expand = try load.conv("\(p)block.0.0", in: s.input, out: s.expanded, kernel: 1, batchNorm: "\(p)block.0.1",
                                   bnEps: eps, activation: act)
            j = 1
        } else {
            expand = nil
        }
        depthwise = try load.conv("\(p)block.\(j).0", in: s.expanded, out: s.expanded, kernel: s.kernel, stride: s.stride,
                                  padding: (s.kernel - 1) / 2, groups: s.expanded, batchNorm: "\(p)block.\(j).1",
                                  bnEps: eps, activation: act)
        j += 1
        if s.se {
            let squeezed = InvertedResidualSpec.makeDivisible(s.expanded / 4)
            squeeze = (try load.conv("\(p)block.\(j).fc1", in: s.expanded, out: squeezed, kernel: 1, bias: true,
                                     activation: .relu),
                       try load.conv("\(p)block.\(j).fc2", in: squeezed, out: s.expanded, kernel: 1, bias: true))
            j += 1
        } else {
            squeeze = nil
        }
        project = try load.conv("\(p)block.\(j).0", in: s.expanded, out: s.output, kernel: 1,
                                batchNorm: "\(p)block.\(j).1", bnEps: eps)
        hardSwish = s.hardSwish
        residual = s.stride == 1 && s.input == s.output
    }

    /// The block on `x` (not modified); the output comes from the workspace.
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext) -> Tensor {
        let d: Tensor
        if let expand {
            let h = expand(x, ctx)
            if hardSwish { h.applyHardSwish() }
            d = depthwise(h, ctx)
            ctx.release(h)
        } else {
            d = depthwise(x, ctx)
        }
        if hardSwish { d.applyHardSwish() }
        if let (fc1, fc2) = squeeze {
            let pooled = d.globalAveragePool(in: ctx.workspace)
            let s1 = fc1(pooled, ctx)
            let s2 = fc2(s1, ctx)
            s2.applyHardSigmoid()
            d.scaleChannels(by: s2)
            ctx.release(pooled); ctx.release(s1); ctx.release(s2)
        }
        let out = project(d, residual: residual ? x : nil, ctx)
        ctx.release(d)
        return out
    }
}

/// torchvision's `mobilenet_v3_large().features` as a detection body (`backbone.body.*`, keys `features.i` without
/// the `features.` prefix, as `IntermediateLayerGetter` stores them): stem `0` (3x3/2 conv + BN + hard-swish), the
/// inverted residual blocks `1`...`15`, and `16` (1x1 conv to 960 + BN + hard-swish). Stages are torchvision's
/// `stage_indices` [0, 2, 4, 7, 13, 16] (the stem, every strided block, the last layer): strides 2, 4, 8, 16, 32, 32.
/// Only the layers up to the last returned stage are built.
public final class MobileNetV3Body: @unchecked Sendable {
    /// Feature index of each stage.
    public static let stageIndices = [0, 2, 4, 7, 13, 16]
    /// Output channels and stride of each stage.
    public static let stageChannels = [16, 24, 40, 80, 160, 960]
    public static let stageStrides = [2, 4, 8, 16, 32, 32]

    let stem: ConvLayer
    let blocks: [InvertedResidual]
    let last: ConvLayer?
    /// Returned stages (indices into `stageIndices`).
    let returned: [Int]

    init(_ load: ModuleLoader, prefix p: String, returnedStages: [Int], eps: Double) throws {
        let lastFeature = Self.stageIndices[returnedStages.last!]
        stem = try load.conv(p + "0.0", in: 3, out: 16, kernel: 3, stride: 2, padding: 1, batchNorm: p + "0.1", bnEps: eps)
        blocks = try InvertedResidualSpec.large.prefix(min(lastFeature, 15)).enumerated().map { i, spec in
            try InvertedResidual(load, prefix: "\(p)\(i + 1).", spec: spec, eps: eps)
        }
        last = lastFeature == 16
            ? try load.conv(p + "16.0", in: 160, out: 960, kernel: 1, batchNorm: p + "16.1", bnEps: eps) : nil
        returned = returnedStages
    }

    /// Runs the body; returns the returned stages' outputs in stage order.
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext) -> [Tensor] {
        let keep = Set(returned.map { Self.stageIndices[$0] })
        var outputs: [Tensor] = []
        var h = stem(x, ctx)
        h.applyHardSwish()
        if keep.contains(0) { outputs.append(h) }
        for (i, block) in blocks.enumerated() {
            let next = block(h, ctx)
            if !keep.contains(i) { ctx.release(h) }
            h = next
            if keep.contains(i + 1) { outputs.append(h) }
        }
        if let last {
            let next = last(h, ctx)
            next.applyHardSwish()
            if !keep.contains(15) { ctx.release(h) }
            outputs.append(next)
        }
        return outputs
    }
}
