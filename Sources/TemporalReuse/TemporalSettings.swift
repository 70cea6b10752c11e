import Tensor

/// How a stream reuses backbone + FPN work across frames.
public enum TemporalMode: String, CaseIterable, Sendable {
    /// Every frame computed densely.
    case off
    /// A dense pass every `keyframeInterval` frames; the pyramid of the last keyframe is returned in between.
    case keyframe
    /// Per conv layer, only the output tiles whose receptive field saw a changed input tile are recomputed.
    case delta
    /// `delta` whose per-layer thresholds are calibrated on the stream's first frames (`autoFrames` dense frames,
    /// then the `calibrate` search over them, at most `autoRuns` delta runs), then run with the accuracy guard.
    case auto
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
    /// `delta`: a dense pass every this many frames (frame 0, N, 2N, ...); 0 = never after the first. Between
    /// refreshes the sub-threshold residue that moving objects leave in the kept inputs accumulates, and with it
    /// the recomputed fraction and the error.
    public var refreshInterval: Int
    /// `keyframe`: the model runs every this many frames (the stream's `KeyframeDetector`; the cache ignores it).
    public var keyframeInterval: Int
    /// `delta`: a layer whose tile pass would compute more than this fraction of its output pixels is computed
    /// densely instead: its changed tiles' pixels, or for a Winograd conv every F(m, 3) block they touch (the
    /// tile path gathers and scatters per tile, so past this fraction dense is cheaper).
    public var denseFallback: Double
    /// Output tile side (pixels of each conv's output); the input grid uses tile × stride. Small tiles waste less
    /// on the 1-pixel halo of a 3x3 conv.
    public var tile: Int
    /// `delta`: threshold of the input conv (the first conv of a frame, reading the network input), relative to the
    /// image's RMS, on the noise-robust box metric (`inputBlock`) instead of the per-pixel max; nil = `threshold`.
    /// It decides where the frame changed; deeper layers then mostly see exact changes (their own `threshold` only
    /// prunes recomputed-but-barely-changed halo tiles). A `layerThresholds` entry for the stem key wins.
    public var inputThreshold: Float?
    /// `delta`: box side (image pixels) of the stem's change metric: a tile changed when some `inputBlock` x
    /// `inputBlock` box's mean |Δ| (over its pixels and channels) exceeds the threshold, so single noisy pixels of
    /// compressed video do not trigger it while a real object a few pixels across does. 1 = per pixel.
    public var inputBlock: Int
    /// `delta`: frame-level fall-back. When more than this fraction of the stem's input tiles changed (moving
    /// camera, scene cut), the whole frame runs densely: no per-layer compare, gather or copy beyond keeping the
    /// state consistent: a run of such frames skips the per-layer kept-input copies, and the first frame below the
    /// fraction afterwards is a dense resync with copies). 1 = never. The default is the measured break-even of a
    /// moving camera (docs/design/temporal.md): past it the receptive field spreads the change to nearly every
    /// deep tile.
    public var frameFallback: Double
    /// `delta`: output tile side for layers whose output stride is 16 or more (deep, low-resolution maps, where a
    /// tile of `tile` pixels plus the conv halo covers much of the map); 0 = `tile`.
    public var deepTile: Int
    /// `delta`: output gating in a closed graph (the ResNet + FPN backbone): a conv of the graph whose output convs
    /// of this cache read (directly or through max-pool / upsampling; the pyramid levels by the dense heads)
    /// applies their smallest threshold to its own recomputed tiles (a tile whose output moved less keeps its old
    /// values) and its readers skip their input compare and kept copy. Same threshold semantics, one compare per
    /// tensor instead of one per reader, and no kept inputs behind the stem. false = every reader compares its
    /// input (the earlier scheme).
    public var gateOutputs: Bool
    /// `delta`: the accuracy guard (on by default): verifies the delta result against a dense pass on a schedule
    /// and adapts the thresholds per layer group to hold a target agreement (`TemporalGuard`).
    public var accuracyGuard: TemporalGuardSettings
    /// `auto`: frames (the stream's first, run densely) the thresholds are calibrated on, and the most delta runs
    /// over them the search may make (which bounds the calibration's time to about `autoRuns` × `autoFrames`
    /// delta frames, once per stream).
    public var autoFrames = 8, autoRuns = 6

    /// `delta` and `auto` run the delta cache.
    public var usesCache: Bool { mode == .delta || mode == .auto }

    public init(mode: TemporalMode = .off, threshold: Float = 0.05, layerThresholds: [String: Float] = [:],
                refreshInterval: Int = 25, keyframeInterval: Int = 5, denseFallback: Double = 0.7, tile: Int = 2,
                inputThreshold: Float? = nil, inputBlock: Int = 4, frameFallback: Double = 0.15, deepTile: Int = 0,
                gateOutputs: Bool = true, accuracyGuard: TemporalGuardSettings = TemporalGuardSettings()) {
        precondition(threshold >= 0 && refreshInterval >= 0 && keyframeInterval >= 1 && tile >= 1
                     && (inputThreshold ?? 0) >= 0 && inputBlock >= 1 && deepTile >= 0,
                     "temporal settings out of range")
        self.mode = mode; self.threshold = threshold; self.layerThresholds = layerThresholds
        self.refreshInterval = refreshInterval; self.keyframeInterval = keyframeInterval
        self.denseFallback = denseFallback; self.tile = tile
        self.inputThreshold = inputThreshold; self.inputBlock = inputBlock
        self.frameFallback = frameFallback; self.deepTile = deepTile; self.gateOutputs = gateOutputs
        self.accuracyGuard = accuracyGuard
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
    /// Conv FLOPs the kernels ran: `flops`, but a Winograd tile pass counts every output block its tiles touch
    /// (2x2 tiles scattered over F(4x4, 3x3) blocks run up to 4x their pixels).
    public var kernelFlops = 0.0
    /// Whether the frame was a scheduled dense pass (first frame, refresh or keyframe).
    public var refreshed = false
    /// Whether the frame-level fall-back ran this frame densely (stem changed fraction > `frameFallback`).
    public var frameFallback = false
    /// Fraction of the stem's input tiles that changed (1 on a dense frame).
    public var inputChangedFraction = 0.0
    /// Wall seconds inside conv GEMMs (dense and tiled) and in the cache's own work (compare, copy, bookkeeping);
    /// for benchmarks only.
    public var convSeconds = 0.0, overheadSeconds = 0.0
    /// The part of `overheadSeconds` spent in output gating (comparing recomputed tiles with the kept output and
    /// committing the changed ones).
    public var gateSeconds = 0.0
    /// Output gating: tiles recomputed by gated convs, and how many of them crossed the gate (were committed).
    public var gatedTiles = 0, committedTiles = 0

    /// GEMM calls issued (one per dense or tiled layer).
    public var gemmCalls: Int { denseLayers + tiledLayers }
    /// Recomputed fraction of the conv work (FLOP-weighted; 1 for a dense frame, 0 for a reused one).
    public var recomputedFraction: Double { denseFlops > 0 ? flops / denseFlops : 0 }
    /// Fraction of a dense pass's conv FLOPs the kernels ran (`kernelFlops`; 1 for a dense frame): what a delta
    /// frame's convs cost, where `recomputedFraction` is what they had to recompute.
    public var kernelFraction: Double { denseFlops > 0 ? kernelFlops / denseFlops : 0 }
    /// Recomputed fraction of output tiles over all conv layers (unweighted).
    public var tileFraction: Double { totalTiles > 0 ? Double(recomputedTiles) / Double(totalTiles) : 0 }
}

/// Per-layer work of the last frame through a `TemporalCache`: opt-in (`TemporalCache.profile`), for benchmarks,
/// calibration and tests; the cache skips this bookkeeping when no profile is attached.
public final class TemporalProfile {
    /// Output tiles recomputed in the last frame per conv layer (`ConvLayer.index`, summed over the instances of
    /// a layer shared by several pyramid levels; absent = skipped).
    public internal(set) var lastLayerTiles: [Int: Int] = [:]
    /// Output tiles per conv layer (`ConvLayer.index`, summed over instances): the denominators of `lastLayerTiles`.
    public internal(set) var layerTileCounts: [Int: Int] = [:]
    /// Wall seconds spent in the last frame per conv layer (`ConvLayer.index`, summed over instances): GEMM and the
    /// cache's own work (compare, copy).
    public internal(set) var lastLayerSeconds: [Int: Double] = [:]
    /// The GEMM part of `lastLayerSeconds`.
    public internal(set) var lastLayerConvSeconds: [Int: Double] = [:]
    /// Instances of each conv layer (`ConvLayer.index`) that ran densely in the last frame: a dense frame, the
    /// per-layer fall-back, a cheap leaf.
    public internal(set) var lastLayerDense: [Int: Int] = [:]
    /// Output tiles a gated conv committed in the last frame (`ConvLayer.index`, of its `lastLayerTiles`).
    public internal(set) var lastLayerCommitted: [Int: Int] = [:]
    /// Output tiles recomputed in the last frame per spatial op (max-pool, upsampling; by op key, all of them on
    /// a dense pass), of `opTileCounts[key]`.
    public internal(set) var lastOpTiles: [String: Int] = [:]
    /// Output tiles per spatial op key.
    public internal(set) var opTileCounts: [String: Int] = [:]
    /// Instances (pyramid levels of a shared head conv; 1 for others) per conv layer (`ConvLayer.index`).
    public internal(set) var layerInstances: [Int: Int] = [:]
    /// The weight key (`ConvLayer.key`) of every conv layer that ran through the cache, by `ConvLayer.index`: the
    /// backbone's and the heads' alike.
    public internal(set) var layerKeys: [Int: String] = [:]

    public init() {}

    /// Clears the per-frame figures (the counts per layer stay).
    func startFrame() {
        lastLayerTiles.removeAll(keepingCapacity: true)
        lastOpTiles.removeAll(keepingCapacity: true)
        lastLayerSeconds.removeAll(keepingCapacity: true)
        lastLayerConvSeconds.removeAll(keepingCapacity: true)
        lastLayerCommitted.removeAll(keepingCapacity: true)
        lastLayerDense.removeAll(keepingCapacity: true)
    }

    /// Forgets everything (the cache reset).
    func reset() {
        startFrame()
        layerTileCounts.removeAll()
        opTileCounts.removeAll()
        layerKeys.removeAll()
        layerInstances.removeAll()
    }
}
