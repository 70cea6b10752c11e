import Foundation
import Tensor

/// One pyramid level: features named by stride (`p2` = stride 4 ... `p7` = stride 128).
public struct PyramidLevel {
    /// `p2`...`p7`.
    public let name: String
    /// Nominal stride in input pixels (2^k for `pk`).
    public let stride: Int
    /// `[n, channels, ceil-ish(H / stride), ...]` features; valid until the workspace's next `beginFrame()`.
    public let features: Tensor

    public init(name: String, stride: Int, features: Tensor) {
        self.name = name
        self.stride = stride
        self.features = features
    }
}

/// The backbone's output: levels lowest stride first. torchvision's OrderedDict names map as
/// "0","1","2","3" → p2...p5 and "pool" → p6 (Mask R-CNN); "0","1","2","p6","p7" → p3...p7 (RetinaNet, FCOS).
public struct FeaturePyramid {
    /// Levels, lowest stride (finest) first.
    public let levels: [PyramidLevel]

    /// The level named `name` (`"p3"`), or nil.
    public subscript(name: String) -> Tensor? { levels.first { $0.name == name }?.features }
}

/// torchvision's `BackboneWithFPN` over a ResNet (`resnet_fpn_backbone` / `_resnet_fpn_extractor`): the part of
/// every FPN detector before its heads. Keys `backbone.body.*` and `backbone.fpn.*`, exactly torchvision's.
///
/// ```
///  input [n,3,H,W] ─ body: conv1 → maxpool → layer1 (C2, /4) → layer2 (C3, /8) → layer3 (C4, /16) → layer4 (C5, /32)
///                    fpn: inner 1x1 on the returned C levels, top-down nearest upsampling + add, layer 3x3
///                    extra: LastLevelMaxPool (P6 = P5[::2, ::2]) or LastLevelP6P7 (from P5 or C5)
///  → FeaturePyramid p2...p6 (Mask R-CNN) or p3...p7 (RetinaNet, FCOS), 256 channels each
/// ```
/// Immutable after loading: one instance serves every stream; per-stream state is the `Workspace` (buffers) and
/// an optional `ConvolutionRunner` (temporal cache) passed to each call.
public final class ResNetFPNBackbone: @unchecked Sendable {
    /// The structure this backbone was built with.
    public let config: BackboneConfig
    /// `backbone.body` of a ResNet backbone; nil (implicitly unwrapped, so ResNet-only code reads it directly) for a
    /// MobileNetV3 backbone, whose body is `mobileNet`.
    public let body: ResNetBody!
    /// `backbone.body` (MobileNetV3 bodies).
    public let mobileNet: MobileNetV3Body?
    /// `backbone.fpn`.
    public let fpn: FeaturePyramidNetwork
    /// Every convolution in execution order of a dense forward (`ConvLayer.index` indexes this array).
    public let convLayers: [ConvLayer]

    /// Builds the backbone, reading `prefix`-ed keys (default `backbone.`) from `loader`. Does not verify the file
    /// (call `loader.verify()` once every module stored in it is built).
    public init(config: BackboneConfig, loader: ModuleLoader, prefix: String = "backbone.") throws {
        let first = loader.convLayers.count
        self.config = config
        switch config.body {
        case .resnet:
            body = try ResNetBody(loader, prefix: prefix + "body.", depth: config.depth,
                                  stages: config.returnedLayers.last!, eps: config.bnEps)
            mobileNet = nil
        case .mobileNetV3Large:
            body = nil
            mobileNet = try MobileNetV3Body(loader, prefix: prefix + "body.", returnedStages: config.returnedLayers,
                                            eps: config.bnEps)
        }
        fpn = try FeaturePyramidNetwork(loader, prefix: prefix + "fpn.", inChannels: config.returnedChannels,
                                        config: config)
        convLayers = Array(loader.convLayers[first...])
    }

    /// Loads a backbone-only weights file (as written by `scripts/parity`): the architecture comes from its
    /// `__metadata__` (`BackboneConfig(metadata:file:)`), every key is verified strictly.
    /// - Throws: `SafeTensorsError` (unreadable file), `ModelLoadError` (metadata), `WeightMismatchError` (keys).
    public convenience init(contentsOf url: URL) throws {
        let file = try SafeTensorsFile(url: url)
        let loader = ModuleLoader(file: file)
        try self.init(config: try BackboneConfig(metadata: file.metadata, file: url), loader: loader)
        try loader.verify()
    }

    /// Output levels with channels and nominal stride, lowest stride first.
    public var outputShapes: [(name: String, shape: ShapeSpec)] { config.outputShapes }

    /// Runs body + FPN on `input` `[n, 3, H, W]` (normalised, any H, W ≥ 32 recommended; detectors pad to 32).
    /// The input is not modified. All outputs and intermediates come from `workspace` (no allocation after the
    /// first frame of a given size). `runner` lets a per-stream temporal cache or a profiler take over the convs.
    public func callAsFunction(_ input: Tensor, workspace: Workspace, runner: ConvolutionRunner? = nil) -> FeaturePyramid {
        precondition(input.rank == 4 && input.c == 3, "backbone input must be [n, 3, h, w], got \(input.shape)")
        let shapes = config.outputShapes
        if let mobileNet {
            // Its activations and squeeze-excitation run outside the runner: always dense (no temporal reuse).
            let ctx = ForwardContext(workspace: workspace)
            return FeaturePyramid(levels: zip(shapes, fpn(mobileNet(input, ctx), ctx)).map {
                PyramidLevel(name: $0.0.name, stride: $0.0.shape.stride, features: $0.1)
            })
        }
        let ctx = ForwardContext(workspace: workspace, runner: runner)
        let returned = config.returnedLayers
        runner?.beginFrame(inputShape: input.shape)
        // Every read between body and FPN goes through the runner; only the levels leave.
        runner?.beginClosedGraph()
        let c = body(input, ctx, keep: { returned.contains($0) })
        let p = fpn(c, ctx)
        runner?.endClosedGraph(returning: p)
        return FeaturePyramid(levels: zip(shapes, p).map {
            PyramidLevel(name: $0.0.name, stride: $0.0.shape.stride, features: $0.1)
        })
    }

    /// Whether every level of `pyramid`, this frame's output through `runner`, holds exactly the previous frame's
    /// values (`ConvolutionRunner.repeatsLastFrame`): then anything computed from the pyramid alone repeats too.
    /// `LastLevelMaxPool`'s level is a function of the level below it and repeats with it; every other level
    /// must be one the runner vouches for.
    public func pyramidRepeats(_ pyramid: FeaturePyramid, runner: ConvolutionRunner) -> Bool {
        guard mobileNet == nil else { return false }
        var levels = pyramid.levels
        if case .maxPool = config.extraBlock { levels.removeLast() }
        return !levels.isEmpty && levels.allSatisfy { runner.repeatsLastFrame($0.features) }
    }
}
