import Tensor

/// A residual block of torchvision's ResNet. Property names are the state-dict keys under
/// `backbone.body.layerN.i.`: `conv1`(+`bn1`), `conv2`(+`bn2`), [`conv3`(+`bn3`)], `downsample.0`(+`downsample.1`).
/// BatchNorm is folded into each conv and ReLU fused into its epilogue; the block's last conv adds the shortcut in
/// its GEMM (beta = 1) before its ReLU. The stride sits on `conv2` (torchvision's "ResNet v1.5"), and on
/// `downsample.0`.
public final class ResidualBlock: @unchecked Sendable {
    /// BasicBlock: 3x3/s + BN + ReLU. Bottleneck: 1x1 + BN + ReLU.
    public let conv1: ConvLayer
    /// BasicBlock: 3x3 + BN + shortcut + ReLU. Bottleneck: 3x3/s + BN + ReLU.
    public let conv2: ConvLayer
    /// Bottleneck only: 1x1 expansion + BN + shortcut + ReLU.
    public let conv3: ConvLayer?
    /// `downsample.0` 1x1/s conv + `downsample.1` BN, in block 0 of a stage when shape changes.
    public let downsample: ConvLayer?

    init(_ load: ModuleLoader, prefix p: String, inChannels cin: Int, width: Int, stride: Int,
         bottleneck: Bool, eps: Double) throws {
        let cout = bottleneck ? width * 4 : width
        if bottleneck {
            conv1 = try load.conv(p + "conv1", in: cin, out: width, kernel: 1, batchNorm: p + "bn1", bnEps: eps,
                                  activation: .relu)
            conv2 = try load.conv(p + "conv2", in: width, out: width, kernel: 3, stride: stride, padding: 1,
                                  batchNorm: p + "bn2", bnEps: eps, activation: .relu)
            conv3 = try load.conv(p + "conv3", in: width, out: cout, kernel: 1, batchNorm: p + "bn3", bnEps: eps,
                                  activation: .relu)
        } else {
            conv1 = try load.conv(p + "conv1", in: cin, out: width, kernel: 3, stride: stride, padding: 1,
                                  batchNorm: p + "bn1", bnEps: eps, activation: .relu)
            conv2 = try load.conv(p + "conv2", in: width, out: width, kernel: 3, padding: 1,
                                  batchNorm: p + "bn2", bnEps: eps, activation: .relu)
            conv3 = nil
        }
        downsample = stride != 1 || cin != cout
            ? try load.conv(p + "downsample.0", in: cin, out: cout, kernel: 1, stride: stride,
                            batchNorm: p + "downsample.1", bnEps: eps)
            : nil
    }

    /// relu(branch(x) + identity-or-downsample(x)). Does not modify `x`; the output comes from the workspace.
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext) -> Tensor {
        let identity = downsample.map { $0(x, ctx) } ?? x
        // A downsampled identity is this block's own buffer: without a runner, the last conv accumulates into it
        // instead of into a copy (the same sums).
        let inPlace = downsample != nil && ctx.runner == nil
        let last = conv3 ?? conv2
        let y1 = conv1(x, ctx)
        var y = y1
        if conv3 != nil {
            y = conv2(y1, ctx)
            ctx.release(y1)
        }
        let out: Tensor
        if inPlace {
            last.conv.forward(y, residual: identity, into: identity, workspace: ctx.workspace)
            out = identity
        } else {
            out = last(y, residual: identity, ctx)
            if downsample != nil { ctx.release(identity) }
        }
        ctx.release(y)
        return out
    }
}

/// torchvision's ResNet trunk (`backbone.body.*`): stem `conv1`+`bn1`+ReLU+maxpool 3x3/2, then `layer1`...`layer4`.
/// Only stages up to the last one the FPN uses are built (torchvision's IntermediateLayerGetter does the same).
public final class ResNetBody: @unchecked Sendable {
    /// Stem 7x7/2 pad 3 conv, `bn1` folded, ReLU fused.
    public let conv1: ConvLayer
    /// `layer1`...`layerN` blocks (index 0 = layer1).
    public let layers: [[ResidualBlock]]
    /// Output channels of each built stage (C2, C3, ...).
    public let stageChannels: [Int]

    init(_ load: ModuleLoader, prefix: String, depth: ResNetDepth, stages: Int, eps: Double) throws {
        conv1 = try load.conv(prefix + "conv1", in: 3, out: 64, kernel: 7, stride: 2, padding: 3,
                              batchNorm: prefix + "bn1", bnEps: eps, activation: .relu)
        var cin = 64
        var layers: [[ResidualBlock]] = []
        var channels: [Int] = []
        for s in 0..<stages {
            let width = 64 << s
            var blocks: [ResidualBlock] = []
            for i in 0..<depth.blocks[s] {
                let block = try ResidualBlock(load, prefix: "\(prefix)layer\(s + 1).\(i).", inChannels: cin, width: width,
                                              stride: i == 0 && s > 0 ? 2 : 1, bottleneck: depth.usesBottleneck, eps: eps)
                cin = depth.channels(layer: s + 1)
                blocks.append(block)
            }
            layers.append(blocks)
            channels.append(cin)
        }
        self.layers = layers
        self.stageChannels = channels
    }

    /// Runs the trunk; `keep(k)` says whether stage k's (1-based) output is needed afterwards. Returns the kept
    /// stage outputs in stage order (C_k for every kept k).
    func callAsFunction(_ x: Tensor, _ ctx: ForwardContext, keep: (Int) -> Bool) -> [Tensor] {
        let stem = conv1(x, ctx)
        var h = ctx(.maxPool(kernel: 3, stride: 2, padding: 1), key: "body.maxpool", stem)
        ctx.release(stem)
        var outputs: [Tensor] = []
        outputs.reserveCapacity(layers.count)
        for (s, blocks) in layers.enumerated() {
            for block in blocks {
                let next = block(h, ctx)
                // A stage's last output is still needed by the FPN; everything else dies here.
                if !(outputs.last.map { $0.storage === h.storage } ?? false) { ctx.release(h) }
                h = next
            }
            if keep(s + 1) { outputs.append(h) }
        }
        return outputs
    }
}
