import Tensor

/// How a stream reuses backbone + FPN work across frames (issue 7).
public enum TemporalMode: String, CaseIterable, Sendable {
    /// Every frame computed densely.
    case off
    /// A dense pass every `keyframeInterval` frames; the pyramid of the last keyframe is returned in between.
    case keyframe
    /// Per conv layer, only the output tiles whose receptive field saw a changed input tile are recomputed.
    case delta
}

/// Settings of a `TemporalCache`.
public struct TemporalSettings: Equatable, Sendable {
    /// The mode.
    public var mode: TemporalMode
    /// `delta`: an input tile counts as changed when max |new − last propagated| over the tile exceeds
    /// `threshold` × RMS of the layer's input (RMS measured at the last dense pass, so one unitless number works
    /// for every layer). 0 = any change (result equals a dense pass up to GEMM blocking, ≤ 1e-6 relative).
    public var threshold: Float
    /// Per-layer overrides of `threshold`, by conv key (`backbone.body.layer1.0.conv1`).
    public var layerThresholds: [String: Float]
    /// `delta`: a dense pass every this many frames (frame 0, N, 2N, ...); 0 = never after the first.
    public var refreshInterval: Int
    /// `keyframe`: a dense pass every this many frames.
    public var keyframeInterval: Int
    /// `delta`: a layer whose changed output tiles exceed this fraction is computed densely instead (the tile path
    /// gathers im2col columns per tile; measured with `fpnstream bench ops --tiles`: all tiles cost ~0.9-1.0x
    /// dense, a quarter ~0.22-0.27x, so past ~0.7 dense is cheaper).
    public var denseFallback: Double
    /// Output tile side (pixels of each conv's output); the input grid uses tile × stride.
    public var tile: Int

    public init(mode: TemporalMode = .off, threshold: Float = 0.05, layerThresholds: [String: Float] = [:],
                refreshInterval: Int = 100, keyframeInterval: Int = 5, denseFallback: Double = 0.7, tile: Int = 4) {
        precondition(threshold >= 0 && refreshInterval >= 0 && keyframeInterval >= 1 && tile >= 1,
                     "temporal settings out of range")
        self.mode = mode; self.threshold = threshold; self.layerThresholds = layerThresholds
        self.refreshInterval = refreshInterval; self.keyframeInterval = keyframeInterval
        self.denseFallback = denseFallback; self.tile = tile
    }
}

/// Work done by the last frame through a `TemporalCache`.
public struct TemporalFrameStats: Equatable, Sendable {
    /// Conv layers computed densely (first frame, refresh, new size, or past the fall-back fraction).
    public var denseLayers = 0
    /// Conv layers computed on a subset of tiles (one GEMM each).
    public var tiledLayers = 0
    /// Conv layers with no changed tile (no GEMM at all).
    public var skippedLayers = 0
    /// Output tiles recomputed / output tiles, summed over conv layers.
    public var recomputedTiles = 0, totalTiles = 0
    /// Conv FLOPs spent / FLOPs of a dense pass (tile FLOPs counted by output pixels).
    public var flops = 0.0, denseFlops = 0.0
    /// Whether the frame was a scheduled dense pass (first frame, refresh or keyframe).
    public var refreshed = false

    /// GEMM calls issued (one per dense or tiled layer).
    public var gemmCalls: Int { denseLayers + tiledLayers }
    /// Recomputed fraction of the conv work (FLOP-weighted; 1 for a dense frame, 0 for a reused one).
    public var recomputedFraction: Double { denseFlops > 0 ? flops / denseFlops : 0 }
    /// Recomputed fraction of output tiles over all conv layers (unweighted).
    public var tileFraction: Double { totalTiles > 0 ? Double(recomputedTiles) / Double(totalTiles) : 0 }
}

/// Per-stream temporal state of a backbone + FPN (never shared between streams): for each conv layer the input last
/// propagated, the residual last propagated, and the kept output. Pass it to `forward` each frame; it resets itself
/// when the input size changes (new stream or resolution) and on `reset()`.
///
/// Delta update of one conv layer: per input tile, compare the new input with the last propagated one
/// (`Ops.tileMaxAbsDifference`); copy the changed tiles into the kept input (sub-threshold change is compared again
/// next frame, so it accumulates rather than drifts); map them through the receptive field
/// (`Conv2d.affectedOutputs`) to output tiles, add the output tiles whose residual (ResNet shortcut, FPN top-down
/// sum) changed, and recompute only those tiles from the kept input with one tile-restricted GEMM into the kept
/// output. Non-conv ops (max-pool, nearest upsampling, the P6/P7 ReLU) are cheap and recomputed densely by the
/// model; their change reaches the next conv through its input comparison, which is how the changed-tile mask
/// propagates through strides, pooling, residual adds and upsampling.
public final class TemporalCache: ConvolutionRunner {
    /// The settings (mutable between frames; a change of mode takes effect on the next frame).
    public var settings: TemporalSettings
    /// Frames processed since the last reset.
    public private(set) var frameIndex = 0
    /// Work of the last frame.
    public private(set) var lastStats = TemporalFrameStats()
    /// Number of resets (new input size or `reset()`), for tests and logs.
    public private(set) var resetCount = 0
    /// Output tiles recomputed in the last frame per conv layer (`ConvLayer.index`; absent = skipped).
    public private(set) var lastLayerTiles: [Int: Int] = [:]

    private final class LayerState {
        let keptInput: Tensor
        let keptResidual: Tensor?
        let output: Tensor
        let inputGrid: TileGrid, outputGrid: TileGrid
        var inputRMS: Float = 0
        var inputDiff: [Float] = [], residualDiff: [Float] = []
        var mark: [Bool]

        init(input: [Int], output: [Int], residual: Bool, conv: Conv2d, tile: Int) {
            keptInput = Tensor(shape: input)
            keptResidual = residual ? Tensor(shape: output) : nil
            self.output = Tensor(shape: output)
            outputGrid = TileGrid(height: output[2], width: output[3], tile: Size2(tile, tile))
            inputGrid = TileGrid(height: input[2], width: input[3], tile: Size2(tile * conv.stride.h, tile * conv.stride.w))
            mark = [Bool](repeating: false, count: outputGrid.count)
        }
    }

    private var layers: [Int: LayerState] = [:]
    private var inputShape: [Int]?
    private var denseThisFrame = false
    private var keptPyramid: [PyramidLevel] = []

    public init(settings: TemporalSettings = TemporalSettings(mode: .delta)) { self.settings = settings }

    /// Drops all kept state: the next frame is computed densely.
    public func reset() {
        layers.removeAll(); keptPyramid.removeAll(); inputShape = nil; frameIndex = 0; resetCount += 1
    }

    /// Runs `backbone` on `input` in this cache's mode. The returned levels are owned by the cache (delta,
    /// keyframe) or the workspace (off) and are valid until the next call / `beginFrame()`.
    public func forward(_ backbone: ResNetFPNBackbone, input: Tensor, workspace: Workspace) -> FeaturePyramid {
        switch settings.mode {
        case .off:
            startFrame(input.shape)
            lastStats.flops = 1; lastStats.denseFlops = 1
            return backbone(input, workspace: workspace)
        case .keyframe:
            let index = startFrame(input.shape)
            if index % settings.keyframeInterval != 0 && !keptPyramid.isEmpty {
                lastStats.refreshed = false
                lastStats.denseFlops = 1
                return FeaturePyramid(levels: keptPyramid)
            }
            lastStats.refreshed = true
            lastStats.flops = 1; lastStats.denseFlops = 1
            let p = backbone(input, workspace: workspace)
            if keptPyramid.count != p.levels.count {
                keptPyramid = p.levels.map { PyramidLevel(name: $0.name, stride: $0.stride, features: Tensor(shape: $0.features.shape)) }
            }
            for (k, l) in zip(keptPyramid, p.levels) { k.features.copy(from: l.features) }
            return FeaturePyramid(levels: keptPyramid)
        case .delta:
            // The stem conv (the one conv reading the image) starts the frame in `run`, so the cache also works
            // when a detector calls the backbone with it as its runner.
            return backbone(input, workspace: workspace, runner: self)
        }
    }

    /// Starts a frame: resets on a new input shape, schedules the dense refresh, clears the stats. Returns the
    /// frame's index since the last reset.
    @discardableResult
    private func startFrame(_ shape: [Int]) -> Int {
        if let inputShape, inputShape != shape { reset() }
        inputShape = shape
        let index = frameIndex
        frameIndex += 1
        denseThisFrame = index == 0 || (settings.refreshInterval > 0 && index % settings.refreshInterval == 0)
        lastStats = TemporalFrameStats()
        lastStats.refreshed = denseThisFrame || settings.mode == .off
        lastLayerTiles.removeAll(keepingCapacity: true)
        return index
    }

    /// `ConvolutionRunner`: the delta update of one conv layer (see the type's documentation).
    public func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        let conv = layer.conv
        if input.c == 3 && residual == nil { startFrame(input.shape) }
        let outShape = conv.outputShape(input.shape)
        let layerFlops = conv.flops(input.shape)
        lastStats.denseFlops += layerFlops
        var state = layers[layer.index]
        if state == nil || state!.keptInput.shape != input.shape || (state!.keptResidual != nil) != (residual != nil) {
            state = LayerState(input: input.shape, output: outShape, residual: residual != nil, conv: conv, tile: settings.tile)
            layers[layer.index] = state
            return dense(layer, state!, input: input, residual: residual, flops: layerFlops, workspace: workspace)
        }
        let s = state!
        if denseThisFrame {
            return dense(layer, s, input: input, residual: residual, flops: layerFlops, workspace: workspace)
        }
        let threshold = (settings.layerThresholds[layer.key] ?? settings.threshold) * s.inputRMS

        // Changed input tiles → kept input, and the output tiles their receptive field reaches.
        Ops.tileMaxAbsDifference(input, s.keptInput, grid: s.inputGrid, into: &s.inputDiff)
        var changedInput: [Int] = []
        for (t, d) in s.inputDiff.enumerated() where d > threshold { changedInput.append(t) }
        for i in s.mark.indices { s.mark[i] = false }
        let og = s.outputGrid
        for t in changedInput {
            let r = s.inputGrid.rect(t)
            let a = conv.affectedOutputs(rows: r.rows, cols: r.cols, inputHeight: input.h, inputWidth: input.w)
            guard !a.rows.isEmpty, !a.cols.isEmpty else { continue }
            for ty in (a.rows.lowerBound / og.tile.h)...((a.rows.upperBound - 1) / og.tile.h) {
                for tx in (a.cols.lowerBound / og.tile.w)...((a.cols.upperBound - 1) / og.tile.w) { s.mark[ty * og.columns + tx] = true }
            }
        }
        if !changedInput.isEmpty { Ops.copyTiles(changedInput, grid: s.inputGrid, from: input, into: s.keptInput) }
        // The residual is an input of the output tile at the same place.
        if let residual, let keptResidual = s.keptResidual {
            Ops.tileMaxAbsDifference(residual, keptResidual, grid: og, into: &s.residualDiff)
            var changedResidual: [Int] = []
            for (t, d) in s.residualDiff.enumerated() where d > threshold { changedResidual.append(t); s.mark[t] = true }
            if !changedResidual.isEmpty { Ops.copyTiles(changedResidual, grid: og, from: residual, into: keptResidual) }
        }
        var tiles: [Int] = []
        for (t, m) in s.mark.enumerated() where m { tiles.append(t) }
        lastStats.totalTiles += og.count
        if tiles.isEmpty {
            lastStats.skippedLayers += 1
            return s.output
        }
        lastStats.recomputedTiles += tiles.count
        lastLayerTiles[layer.index] = tiles.count
        if Double(tiles.count) > settings.denseFallback * Double(og.count) {
            // Past break-even: dense from the kept input (which now equals the new input wherever it mattered).
            lastStats.denseLayers += 1
            lastStats.flops += layerFlops
            conv.forward(s.keptInput, residual: s.keptResidual, into: s.output, workspace: workspace)
            return s.output
        }
        lastStats.tiledLayers += 1
        var pixels = 0
        for t in tiles { let r = og.rect(t); pixels += r.rows.count * r.cols.count }
        lastStats.flops += layerFlops * Double(pixels) / Double(outShape[2] * outShape[3])
        conv.forward(s.keptInput, tiles: tiles, grid: og, residual: s.keptResidual, into: s.output, workspace: workspace)
        return s.output
    }

    private func dense(_ layer: ConvLayer, _ s: LayerState, input: Tensor, residual: Tensor?, flops: Double,
                       workspace: Workspace) -> Tensor {
        s.keptInput.copy(from: input)
        if let residual { s.keptResidual!.copy(from: residual) }
        s.inputRMS = Self.rms(input)
        layer.conv.forward(s.keptInput, residual: s.keptResidual, into: s.output, workspace: workspace)
        lastStats.denseLayers += 1
        lastStats.totalTiles += s.outputGrid.count
        lastStats.recomputedTiles += s.outputGrid.count
        lastLayerTiles[layer.index] = s.outputGrid.count
        lastStats.flops += flops
        return s.output
    }

    private static func rms(_ t: Tensor) -> Float {
        t.withUnsafeBufferPointer { p in
            var sum = 0.0
            for v in p { sum += Double(v) * Double(v) }
            return p.isEmpty ? 0 : Float((sum / Double(p.count)).squareRoot())
        }
    }
}
