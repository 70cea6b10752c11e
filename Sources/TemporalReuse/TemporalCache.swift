import Tensor

/// How a stream reuses backbone + FPN work across frames.
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
    /// `delta`: a dense pass every this many frames (frame 0, N, 2N, ...); 0 = never after the first. Between
    /// refreshes the sub-threshold residue that moving objects leave in the kept inputs accumulates, and with it
    /// the recomputed fraction and the error.
    public var refreshInterval: Int
    /// `keyframe`: the model runs every this many frames (the stream's `KeyframeDetector`; the cache ignores it).
    public var keyframeInterval: Int
    /// `delta`: a layer whose changed output tiles exceed this fraction is computed densely instead (the tile path
    /// gathers im2col columns per tile, so past this fraction dense is cheaper).
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
    /// `delta`: output gating inside a closed graph (the ResNet + FPN backbone): a conv whose output only convs of
    /// the graph read (directly or through max-pool / upsampling) applies their smallest threshold to its own
    /// recomputed tiles (a tile whose output moved less keeps its old values) and its readers skip their input
    /// compare and kept copy. Same threshold semantics, one compare per tensor instead of one per reader, and no
    /// kept inputs inside the backbone. false = every reader compares its input (the earlier scheme).
    public var gateOutputs: Bool

    public init(mode: TemporalMode = .off, threshold: Float = 0.05, layerThresholds: [String: Float] = [:],
                refreshInterval: Int = 25, keyframeInterval: Int = 5, denseFallback: Double = 0.7, tile: Int = 2,
                inputThreshold: Float? = nil, inputBlock: Int = 4, frameFallback: Double = 0.15, deepTile: Int = 0,
                gateOutputs: Bool = true) {
        precondition(threshold >= 0 && refreshInterval >= 0 && keyframeInterval >= 1 && tile >= 1
                     && (inputThreshold ?? 0) >= 0 && inputBlock >= 1 && deepTile >= 0,
                     "temporal settings out of range")
        self.mode = mode; self.threshold = threshold; self.layerThresholds = layerThresholds
        self.refreshInterval = refreshInterval; self.keyframeInterval = keyframeInterval
        self.denseFallback = denseFallback; self.tile = tile
        self.inputThreshold = inputThreshold; self.inputBlock = inputBlock
        self.frameFallback = frameFallback; self.deepTile = deepTile; self.gateOutputs = gateOutputs
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
    /// Output tiles a gated conv committed in the last frame (`ConvLayer.index`, of its `lastLayerTiles`).
    public internal(set) var lastLayerCommitted: [Int: Int] = [:]
    /// Output tiles recomputed in the last frame per spatial op (max-pool, upsampling; by op key, all of them on
    /// a dense pass), of `opTileCounts[key]`.
    public internal(set) var lastOpTiles: [String: Int] = [:]
    /// Output tiles per spatial op key.
    public internal(set) var opTileCounts: [String: Int] = [:]

    public init() {}

    /// Clears the per-frame figures (the counts per layer stay).
    func startFrame() {
        lastLayerTiles.removeAll(keepingCapacity: true)
        lastOpTiles.removeAll(keepingCapacity: true)
        lastLayerSeconds.removeAll(keepingCapacity: true)
        lastLayerConvSeconds.removeAll(keepingCapacity: true)
        lastLayerCommitted.removeAll(keepingCapacity: true)
    }

    /// Forgets everything (the cache reset).
    func reset() {
        startFrame()
        layerTileCounts.removeAll()
        opTileCounts.removeAll()
    }
}

/// Per-stream temporal state of a backbone + FPN (never shared between streams): for each conv layer its kept
/// output and, where it compares its own input, the input and residual last propagated. Install it as the model's
/// `ConvolutionRunner`; the model calls `beginFrame(inputShape:)` at the start of every frame, and the first conv
/// after it is the input conv (the one reading the network input). It resets itself when the input size changes
/// (new stream or resolution) and on `reset()`. Delta mode only: keyframe mode is the stream's
/// `KeyframeDetector`.
///
/// Delta update of one conv layer: per input tile, compare the new input with the last propagated one
/// (`Ops.tileMaxAbsDifference`; only the tiles its producer recomputed this frame); copy the changed tiles into the
/// kept input (sub-threshold change is compared again next frame, so it accumulates rather than drifts); map them
/// through the receptive field (`Conv2d.affectedOutputs`) to output tiles, add the output tiles whose residual
/// (ResNet shortcut, FPN top-down sum) changed, and recompute only those tiles with one tile-restricted GEMM into
/// the kept output. Max-pool and nearest upsampling go through the cache too (`run(_:key:input:workspace:)`) and
/// pass their producer's changed tiles on. Inside a closed graph (`ConvolutionRunner.beginClosedGraph`: the
/// backbone + FPN) the compare moves to the producer (`TemporalSettings.gateOutputs`): a conv computes its tiles
/// (`Conv2d.forwardGated`), commits only those that moved by more than its readers' smallest threshold and hands on
/// just those; its readers keep no input copy. A gate that commits nearly everything is skipped until the next
/// refresh (`gateBypassFraction`). docs/design/temporal.md has the details.
public final class TemporalCache: ConvolutionRunner {
    /// The settings (mutable between frames; a change of mode takes effect on the next frame).
    public var settings: TemporalSettings
    /// Frames processed since the last reset.
    public private(set) var frameIndex = 0
    /// Work of the last frame.
    public private(set) var lastStats = TemporalFrameStats()
    /// Number of resets (new input size or `reset()`), for tests and logs.
    public private(set) var resetCount = 0
    /// Per-layer figures of the last frame, when attached (nil: not collected).
    public var profile: TemporalProfile?

    private final class LayerState {
        let inputShape: [Int]
        /// The input last propagated; nil for an exact layer (see `exact`), which reads its input directly.
        var keptInput: Tensor?
        /// The residual last propagated (own copy), or nil when there is none or it is shared (`sharedResidual`).
        var keptResidual: Tensor?
        /// A ResNet block's last conv: its shortcut is the block input, of which the block's first conv keeps the
        /// propagated copy on the same grid. That copy serves as this conv's kept residual (no second copy of the
        /// block's widest tensor); the first conv's verdict says which of its tiles changed. Set at creation (a
        /// dense frame), or adopted at the first verdict when the state was created without one.
        var sharedResidual: Tensor?
        let hasResidual: Bool
        let output: Tensor
        let inputGrid: TileGrid, outputGrid: TileGrid
        /// Exact layer: its input is the kept output of a conv run earlier in the frame through this cache (so it
        /// persists and changes only where that conv recomputed), and the layer is a depthwise conv or reads one's
        /// output. It skips the compare and the kept-input copy and recomputes every output tile the producer's
        /// recomputed tiles reach (no threshold at this layer): on the wide maps of inverted-residual blocks
        /// (MobileNetV2) the compare and copy cost as much as the conv; the next non-exact conv prunes again.
        /// With output gating a conv inside a closed graph reading a kept output of this cache is exact from its
        /// creation (its producer gates that output, `gate`), and one created otherwise becomes exact, dropping its
        /// kept input, when its producer's output turns out gated (settings changed between frames).
        var exact: Bool
        /// The residual is read directly: its producer gates it, so it changes exactly in the tiles it registers.
        var residualExact: Bool
        /// Output gating (closed graphs only, see `beginClosedGraph`): recomputed output tiles whose largest change
        /// stays within the smallest threshold of this output's readers keep their old values, and only the others
        /// are registered as changed, so the readers run exact instead of comparing their input each. Created
        /// inside a closed graph; `blocked` once read outside one (or returned from it).
        let closed: Bool
        var blocked = false
        /// Absolute thresholds (× the reader's input RMS) of the convs reading this output, by reader.
        var readerThresholds: [LayerKey: Float] = [:]
        /// Spatial ops reading this output (their readers' thresholds count too).
        var opReaders: Set<OpKey> = []
        let depthwise: Bool
        /// The input conv: the first conv of a frame, reading the network input.
        let readsFrame: Bool
        var inputRMS: Float = 0
        /// Output gating since this state's last dense pass: tiles recomputed and committed while gating, and
        /// whether the gate is skipped (it committed nearly everything: `gateBypassFraction`).
        var gateProbe = (recomputed: 0, committed: 0)
        var gateBypass = false
        var inputDiff: [Float] = [], residualDiff: [Float] = [], gateDiff: [Float] = []
        var mark: [Bool]

        init(input: [Int], output: [Int], residual: Bool, sharedResidual: Tensor?, conv: Conv2d, tile: Int,
             exact: Bool, residualExact: Bool, closed: Bool, readsFrame: Bool) {
            inputShape = input
            self.readsFrame = readsFrame
            self.closed = closed
            self.residualExact = residual && residualExact
            hasResidual = residual
            self.sharedResidual = residual ? sharedResidual : nil
            self.exact = exact
            depthwise = conv.groups > 1 && conv.groups == conv.inChannels
            // Uninitialised: the first pass of a new state is dense and writes all three (`dense(...fresh:)`).
            func uninitialised(_ shape: [Int]) -> Tensor {
                Tensor(shape: shape, storage: TensorStorage(capacity: shape.reduce(1, *)))
            }
            keptInput = exact ? nil : uninitialised(input)
            keptResidual = residual && sharedResidual == nil && !residualExact ? uninitialised(output) : nil
            self.output = uninitialised(output)
            outputGrid = TileGrid(height: output[2], width: output[3], tile: Size2(tile, tile))
            inputGrid = TileGrid(height: input[2], width: input[3], tile: Size2(tile * conv.stride.h, tile * conv.stride.w))
            mark = [Bool](repeating: false, count: outputGrid.count)
            // Output tile rows / columns reached by each input tile row / column (hi exclusive; empty = none).
            let og = outputGrid, ig = inputGrid
            func reach(_ r: Range<Int>, _ c: Range<Int>) -> (rows: Range<Int>, cols: Range<Int>) {
                let a = conv.affectedOutputs(rows: r, cols: c, outputHeight: og.height, outputWidth: og.width)
                return (og.tileRanges(covering: a.rows, cols: 0..<1).rows, og.tileRanges(covering: 0..<1, cols: a.cols).cols)
            }
            rowReach = (0..<ig.rows).map { ty in reach(ty * ig.tile.h..<min(ig.height, (ty + 1) * ig.tile.h), 0..<1).rows }
            columnReach = (0..<ig.columns).map { tx in reach(0..<1, tx * ig.tile.w..<min(ig.width, (tx + 1) * ig.tile.w)).cols }
        }
        /// Per input tile row (column) of `inputGrid`: the output tile rows (columns) its receptive field reaches.
        let rowReach: [Range<Int>], columnReach: [Range<Int>]

        /// Marks the output tiles reached by input tile `t` of `inputGrid`.
        func markReached(_ t: Int) {
            let rows = rowReach[t / inputGrid.columns], cols = columnReach[t % inputGrid.columns]
            let c = outputGrid.columns
            for ty in rows { for tx in cols { mark[ty * c + tx] = true } }
        }
    }

    /// State per conv layer, instance and input size. The size is part of the key so a head conv shared by the
    /// pyramid levels keeps one state per level even when a wrapping runner forwards only
    /// `run(_:input:residual:workspace:)` (instance 0).
    private struct LayerKey: Hashable { let index, instance, height, width: Int }
    private var layers: [LayerKey: LayerState] = [:]
    /// This frame's kept outputs (by storage) and the output tiles their layer recomputed (nil = all of them): a
    /// conv reading such an output can only see a change inside those tiles, so it compares only there.
    private var produced: [ObjectIdentifier: Produced] = [:]
    private struct Produced {
        let grid: TileGrid
        /// Recomputed output tiles; nil = all of them.
        let tiles: [Int]?
        /// The producing conv is depthwise.
        let depthwise: Bool
        /// The producer gated its output this frame (`LayerState.gate`; for a spatial op: its input was gated), so
        /// its readers run exact: the tensor differs from last frame's only inside `tiles`, by more than their
        /// smallest threshold wherever it does.
        var gated = false
    }
    /// The kept output tensors of conv and spatial-op states, by storage: who produced what a layer reads.
    private enum Owner { case conv(LayerState), op(OpState) }
    private var owners: [ObjectIdentifier: Owner] = [:]
    /// Scratch for output gating: the old values of the tiles a gated conv recomputes (one storage, every shape).
    private var gateScratch = TensorStorage(capacity: 0)
    /// Between `beginClosedGraph` and `endClosedGraph`.
    private var inClosedGraph = false
    /// Kept outputs of the spatial ops (max-pool, upsampling) by op key and input size.
    private struct OpKey: Hashable { let key: String; let height, width: Int }
    private final class OpState {
        let inputShape: [Int]
        let output: Tensor
        let grid: TileGrid
        var mark: [Bool]
        /// Gating bookkeeping as for conv states (`LayerState.closed`): an op passes its input's gating on, so its
        /// readers' thresholds bound its producer's gate.
        let closed: Bool
        var blocked = false
        var readerThresholds: [LayerKey: Float] = [:]
        /// Upsampling: per input row (column) index i, the first output row (column) whose tap is ≥ i (count + 1
        /// entries), so an input range [a, b) reaches outputs [first[a], first[b]).
        let firstRow: [Int], firstColumn: [Int]

        init(_ op: SpatialOp, input: [Int], tile: Int, closed: Bool) {
            inputShape = input
            self.closed = closed
            let os = op.outputShape(input)
            output = Tensor(shape: os)
            grid = TileGrid(height: os[2], width: os[3], tile: Size2(tile, tile))
            mark = [Bool](repeating: false, count: grid.count)
            func first(_ n: Int, _ m: Int) -> [Int] {
                var f = [Int](repeating: m, count: n + 1)
                for o in stride(from: m - 1, through: 0, by: -1) { f[Ops.nearestTap(o, input: n, output: m)] = o }
                for i in stride(from: n - 1, through: 0, by: -1) { f[i] = min(f[i], f[i + 1]) }
                return f
            }
            if case .upsampleNearest = op {
                firstRow = first(input[2], os[2]); firstColumn = first(input[3], os[3])
            } else {
                firstRow = []; firstColumn = []
            }
        }

        /// The output pixel rows and columns of `op` that read input pixels `rows` x `cols`.
        func reached(_ op: SpatialOp, rows: Range<Int>, cols: Range<Int>) -> (rows: Range<Int>, cols: Range<Int>) {
            switch op {
            case let .maxPool(kernel, stride, padding):
                return (Conv2d.affected(rows, kernel: kernel.h, stride: stride.h, padding: padding.h, dilation: 1,
                                        outputs: grid.height),
                        Conv2d.affected(cols, kernel: kernel.w, stride: stride.w, padding: padding.w, dilation: 1,
                                        outputs: grid.width))
            case .upsampleNearest:
                return (firstRow[rows.lowerBound]..<firstRow[rows.upperBound],
                        firstColumn[cols.lowerBound]..<firstColumn[cols.upperBound])
            }
        }
    }
    private var ops: [OpKey: OpState] = [:]
    /// This frame's compared conv inputs (by storage): the tiles found changed on the layer's input grid and the
    /// kept copy they were propagated into. A later conv whose shortcut is the same tensor on the same grid (a
    /// ResNet block's last conv: its first conv read the block input) reuses both instead of comparing again.
    private var compared: [ObjectIdentifier: Compared] = [:]
    private struct Compared { let grid: TileGrid; let changed: [Int]; let kept: Tensor }
    private var inputShape: [Int]?
    /// Set by `beginFrame`: the next conv is the input conv.
    private var inputConvPending = false
    private var denseThisFrame = false
    /// Frame-level fall-back frames skip refreshing the kept inputs of every layer but the stem (a copy per layer
    /// costs ~8% of a dense pass). The state is then stale: the next frame below the fall-back fraction is a dense
    /// pass with copies (a resync) before delta updates resume.
    private var skipKeptCopies = false, stale = false

    /// A cache in `settings.mode` (delta), collecting per-layer figures into `profile` when given.
    public init(settings: TemporalSettings = TemporalSettings(mode: .delta), profile: TemporalProfile? = nil) {
        self.settings = settings
        self.profile = profile
    }

    /// An exact depthwise layer with more than this fraction of its output tiles to recompute runs densely (its
    /// scattered tile rows are memory-bound: CenterFace 2x on vtest.avi, `bench temporal --layers`, the tile pass
    /// cost as much as the dense one at 12-24% of the tiles, stride-1 and stride-2 depthwise alike).
    static let depthwiseDenseFraction = 0.15

    /// Adaptive output gating: a gated conv that, over at least `gateProbeTiles` recomputed tiles since its last
    /// dense pass, committed this fraction of them or more stops comparing until its next dense pass (refresh) and
    /// writes every recomputed tile (exactly what committing them all does, at the cost of the compare). On
    /// R50-FPN the wide block outputs (conv3, downsample: 256-2048 channels) commit 0.8-1.0 of their tiles and
    /// carried ~2/3 of the gating time (`bench temporal --layers`, vtest.avi).
    static let gateBypassFraction = 0.9
    static let gateProbeTiles = 16

    /// Bytes of kept state, by kind: per conv layer the last propagated input (`inputs`; none for exact layers and
    /// readers of gated outputs) and residual (`residuals`; none when shared or gated), and the kept outputs of
    /// conv layers and spatial ops plus the gate scratch (`outputs`; the scratch is one tensor of the largest gated
    /// output). Allocated on the first frame of a size (the bulk of that frame's extra cost: the kernel zeroes every
    /// new page), reused after.
    public var stateBytes: (inputs: Int, outputs: Int, residuals: Int) {
        var r = (inputs: 0, outputs: 0, residuals: 0)
        for s in layers.values {
            r.inputs += (s.keptInput?.count ?? 0) * 4
            r.outputs += s.output.count * 4
            r.residuals += (s.keptResidual?.count ?? 0) * 4
        }
        for s in ops.values { r.outputs += s.output.count * 4 }
        r.outputs += gateScratch.capacity * 4
        return r
    }

    /// Gated conv layers that currently skip their gate (they committed ≥ `gateBypassFraction` of their recomputed
    /// tiles since their last dense pass, and write every recomputed tile until the next one).
    public var gateBypassCount: Int { layers.values.filter(\.gateBypass).count }

    /// Conv layer states whose kept residual is the block input copy of the block's first conv (`LayerState.
    /// sharedResidual`): ResNet blocks without a downsample shortcut.
    public var sharedResidualCount: Int { layers.values.filter { $0.sharedResidual != nil }.count }

    /// `ConvolutionRunner`: the convs and ops from here to `endClosedGraph` read each other's outputs only through
    /// this runner, so their outputs may be gated (`TemporalSettings.gateOutputs`).
    public func beginClosedGraph() { inClosedGraph = true }

    /// `ConvolutionRunner`: the closed graph ends; `returning` (its results) are read outside it from now on, so
    /// their producers never gate.
    public func endClosedGraph(returning: [Tensor]) {
        inClosedGraph = false
        for t in returning {
            switch owner(of: t) {
            case let .conv(p)?: p.blocked = true
            case let .op(o)?: o.blocked = true
            case nil: break
            }
        }
    }

    /// Drops all kept state: the next frame is computed densely.
    public func reset() {
        layers.removeAll(); ops.removeAll(); owners.removeAll(); profile?.reset(); inputShape = nil
        frameIndex = 0
        resetCount += 1
    }

    /// `ConvolutionRunner`: a frame starts. Resets on a new input shape, schedules the dense refresh, clears the
    /// frame's figures; the next conv is the input conv.
    public func beginFrame(inputShape shape: [Int]) {
        startFrame(shape)
        inputConvPending = true
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
        skipKeptCopies = false
        if denseThisFrame { stale = false }
        lastStats = TemporalFrameStats()
        lastStats.refreshed = denseThisFrame || settings.mode == .off
        if lastStats.refreshed { lastStats.inputChangedFraction = 1 }
        profile?.startFrame()
        produced.removeAll(keepingCapacity: true)
        compared.removeAll(keepingCapacity: true)
        return index
    }

    /// `ConvolutionRunner`: the delta update of one conv layer (see the type's documentation).
    public func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        run(layer, instance: 0, input: input, residual: residual, workspace: workspace)
    }

    /// `ConvolutionRunner`: the delta update of instance `instance` (pyramid level of a shared head conv) of a layer:
    /// find the state, note who reads what, mark the output tiles the changes reach, recompute them.
    public func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        precondition(inputShape != nil, "TemporalCache.run before beginFrame(inputShape:)")
        let isStem = inputConvPending && instance == 0
        inputConvPending = false
        let start = Benchmark.now()
        let convBefore = lastStats.convSeconds
        defer {
            let wall = Benchmark.now() - start, gemm = lastStats.convSeconds - convBefore
            lastStats.overheadSeconds += wall - gemm
            if let profile {
                profile.lastLayerSeconds[layer.index, default: 0] += wall
                profile.lastLayerConvSeconds[layer.index, default: 0] += gemm
            }
        }
        let layerFlops = layer.conv.flops(input.shape)
        lastStats.denseFlops += layerFlops
        let key = LayerKey(index: layer.index, instance: instance, height: input.h, width: input.w)
        guard let s = layers[key], s.inputShape == input.shape, s.hasResidual == (residual != nil) else {
            return create(layer, instance, key: key, isStem: isStem, input: input, residual: residual,
                          flops: layerFlops, workspace: workspace)
        }
        noteFrameReads(s, key: key, layer: layer, isStem: isStem, input: input, residual: residual)
        guard !denseThisFrame, markChanges(s, layer: layer, isStem: isStem, input: input, residual: residual) else {
            return dense(layer, instance, s, input: input, residual: residual, flops: layerFlops,
                         rms: denseThisFrame && lastStats.refreshed, workspace: workspace)
        }
        return recompute(s, layer: layer, input: input, residual: residual, flops: layerFlops, workspace: workspace)
    }

    /// A new state for `key` (first frame of this size, or a residual appeared), filled by a dense pass.
    private func create(_ layer: ConvLayer, _ instance: Int, key: LayerKey, isStem: Bool, input: Tensor,
                        residual: Tensor?, flops: Double, workspace: Workspace) -> Tensor {
        let conv = layer.conv
        let outShape = conv.outputShape(input.shape)
        var tile = settings.tile
        if settings.deepTile > 0, let frame = inputShape, frame[2] >= 16 * outShape[2] { tile = settings.deepTile }
        let source = producedInfo(input)
        // Inside a closed graph a conv reading a kept output of this cache is exact from the start: its producer
        // will gate that output (readers are recorded on this dense frame), so no input copy is ever needed.
        let gatedReader = settings.gateOutputs && inClosedGraph && !isStem
        let exact = !isStem && source != nil
            && ((conv.groups > 1 && conv.groups == conv.inChannels) || source!.depthwise
                || (gatedReader && owner(of: input) != nil))
        let residualExact = gatedReader && residual.flatMap { owner(of: $0) } != nil
        // The block input an earlier conv of this (dense) frame copied on this conv's output grid.
        let og = TileGrid(height: outShape[2], width: outShape[3], tile: Size2(tile, tile))
        let state = LayerState(input: input.shape, output: outShape, residual: residual != nil,
                               sharedResidual: residualExact ? nil : residual.flatMap { sharedCopy(of: $0, grid: og)?.kept },
                               conv: conv, tile: tile, exact: exact, residualExact: residualExact,
                               closed: inClosedGraph, readsFrame: isStem)
        if layers[key] == nil { profile?.layerTileCounts[layer.index, default: 0] += state.outputGrid.count }
        if let old = layers[key] { owners[ObjectIdentifier(old.output.storage)] = nil }
        layers[key] = state
        owners[ObjectIdentifier(state.output.storage)] = .conv(state)
        let out = dense(layer, instance, state, input: input, residual: residual, flops: flops, rms: true,
                        fresh: true, workspace: workspace)
        noteReads(state, key: key, layer: layer, isStem: isStem, input: input, residual: residual)
        return out
    }

    /// Records this frame's reads of an existing state and adopts its producers' gating: a gating producer makes
    /// its readers exact for good (their kept copies are dropped), as its output changes only in the tiles it
    /// registers, by more than this reader's threshold wherever it does.
    private func noteFrameReads(_ s: LayerState, key: LayerKey, layer: ConvLayer, isStem: Bool, input: Tensor,
                                residual: Tensor?) {
        if !s.closed || !inClosedGraph { s.blocked = true }
        noteReads(s, key: key, layer: layer, isStem: isStem, input: input, residual: residual)
        if !isStem, !s.exact, producedInfo(input)?.gated == true {
            s.exact = true
            s.keptInput = nil
        }
        if let residual, !s.residualExact, producedInfo(residual)?.gated == true {
            s.residualExact = true
            s.keptResidual = nil
            s.sharedResidual = nil
        }
    }

    /// Marks in `s.mark` the output tiles that the changes of the input and the residual reach, propagating the
    /// changed input tiles into the kept input. Returns false when the layer must run densely instead (its exact
    /// input has no record of its producer's tiles, or the input conv found the frame past `frameFallback`).
    private func markChanges(_ s: LayerState, layer: ConvLayer, isStem: Bool, input: Tensor, residual: Tensor?) -> Bool {
        let threshold = absoluteThreshold(s, layer: layer, isStem: isStem)
        s.mark.withUnsafeMutableBufferPointer { $0.update(repeating: false) }
        if s.exact {
            // The input changed exactly inside the tiles its producer recomputed this frame.
            guard let p = producedInfo(input), p.grid.height == input.h, p.grid.width == input.w,
                  let recomputed = p.tiles else { return false }
            for t in recomputed { markAffected(s, layer.conv, p.grid.rect(t)) }
        } else if !markInput(s, isStem: isStem, input: input, threshold: threshold) {
            return false
        }
        markResidual(s, residual: residual, threshold: threshold)
        return true
    }

    /// Compares the input with the kept one, propagates the changed tiles and marks what they reach. False when
    /// the input conv found more than `frameFallback` of the frame changed (the frame then runs densely).
    private func markInput(_ s: LayerState, isStem: Bool, input: Tensor, threshold: Float) -> Bool {
        let keptInput = s.keptInput!
        if isStem {
            Ops.tileBlockMeanAbsDifference(input, keptInput, grid: s.inputGrid, block: settings.inputBlock,
                                           into: &s.inputDiff)
        } else {
            compare(input, keptInput, grid: s.inputGrid, into: &s.inputDiff)
        }
        var changedInput: [Int] = []
        for (t, d) in s.inputDiff.enumerated() where d > threshold { changedInput.append(t) }
        if isStem {
            lastStats.inputChangedFraction = Double(changedInput.count) / Double(s.inputGrid.count)
            if lastStats.inputChangedFraction > settings.frameFallback || stale {
                // Most of the image changed: the per-layer compare/gather would cost more than it saves. While the
                // motion lasts the other layers skip refreshing their kept inputs; the first calm frame after it
                // resyncs them (a dense pass with copies).
                denseThisFrame = true
                lastStats.frameFallback = true
                skipKeptCopies = lastStats.inputChangedFraction > settings.frameFallback
                stale = skipKeptCopies
                return false
            }
        }
        for t in changedInput { s.markReached(t) }
        if !changedInput.isEmpty { Ops.copyTiles(changedInput, grid: s.inputGrid, from: input, into: keptInput) }
        if !isStem && input.offset == 0 {
            compared[ObjectIdentifier(input.storage)] = Compared(grid: s.inputGrid, changed: changedInput, kept: keptInput)
        }
        return true
    }

    /// Marks the output tiles whose residual (an input of the output tile at the same place) changed.
    private func markResidual(_ s: LayerState, residual: Tensor?, threshold: Float) {
        guard let residual else { return }
        let og = s.outputGrid
        if s.residualExact {
            if let p = producedInfo(residual), p.grid.height == og.height, p.grid.width == og.width,
               let changed = p.tiles {
                for t in changed {
                    let r = p.grid.rect(t), c = og.tileRanges(covering: r.rows, cols: r.cols)
                    for ty in c.rows { for tx in c.cols { s.mark[ty * og.columns + tx] = true } }
                }
            } else {
                s.mark.withUnsafeMutableBufferPointer { $0.update(repeating: true) }
            }
            return
        }
        if s.sharedResidual == nil, s.keptResidual != nil, let c = sharedCopy(of: residual, grid: og) {
            // Created without a verdict to share (not on a dense frame): adopt this one, drop the own copy.
            s.sharedResidual = c.kept
            s.keptResidual = nil
        }
        if let shared = s.sharedResidual {
            // The first conv compared the block input this frame (with its own threshold, relative to the block
            // input's RMS) and propagated its changed tiles into `shared`; its verdict says where. No verdict: it
            // ran no compare this frame, so `shared` did not change.
            if let c = sharedCopy(of: residual, grid: og), c.kept.storage === shared.storage {
                for t in c.changed { s.mark[t] = true }
            }
        } else if let keptResidual = s.keptResidual {
            compare(residual, keptResidual, grid: og, into: &s.residualDiff)
            var changedResidual: [Int] = []
            for (t, d) in s.residualDiff.enumerated() where d > threshold { changedResidual.append(t); s.mark[t] = true }
            if !changedResidual.isEmpty { Ops.copyTiles(changedResidual, grid: og, from: residual, into: keptResidual) }
        }
    }

    /// Recomputes the marked output tiles of `s` into its kept output: nothing, a tile pass (gated inside a closed
    /// graph), or a dense pass past `denseFallback`.
    private func recompute(_ s: LayerState, layer: ConvLayer, input: Tensor, residual: Tensor?, flops layerFlops: Double,
                           workspace: Workspace) -> Tensor {
        let conv = layer.conv, og = s.outputGrid
        let residualKept = s.residualExact ? residual : s.sharedResidual ?? s.keptResidual
        var tiles: [Int] = []
        for (t, m) in s.mark.enumerated() where m { tiles.append(t) }
        lastStats.totalTiles += og.count
        if tiles.isEmpty {
            lastStats.skippedLayers += 1
            register(s, tiles: [], gated: gate(of: s) != nil)
            return s.output
        }
        lastStats.recomputedTiles += tiles.count
        profile?.lastLayerTiles[layer.index, default: 0] += tiles.count
        let t0 = Benchmark.now()
        // Gating's snapshot and compare are bookkeeping: counted as overhead, not GEMM.
        var gating = 0.0
        defer { lastStats.convSeconds += Benchmark.now() - t0 - gating; lastStats.gateSeconds += gating }
        let depthwiseDense = s.exact && s.depthwise
            && Double(tiles.count) > Self.depthwiseDenseFraction * Double(og.count)
        // A gated output keeps its old values in the tiles that moved by less than the gate (their change
        // accumulates there). The tile GEMM compares before it writes (`forwardGated`); the dense fall-back and
        // depthwise convs compute into the gate scratch and commit from it, so only they need the scratch.
        let gate = gate(of: s)
        var target: Tensor { gate == nil ? s.output : gateTarget(s) }
        if depthwiseDense || Double(tiles.count) > settings.denseFallback * Double(og.count) {
            // Past break-even: dense from the kept input (which now equals the new input wherever it mattered).
            lastStats.denseLayers += 1
            lastStats.flops += layerFlops
            let out = target
            conv.forward(s.keptInput ?? input, residual: residualKept, into: out, workspace: workspace)
            // A depthwise conv's dense and tile passes sum in the same order, and an exact layer's input is
            // unchanged outside what `tiles` reads: the output is bit-identical outside `tiles`, so the consumer
            // still recomputes only those.
            if let gate {
                register(s, tiles: timed(&gating) { gateCommit(s, tiles: tiles, computed: out, gate: gate) },
                         gated: true)
            } else {
                register(s, tiles: depthwiseDense ? tiles : nil)
            }
            return s.output
        }
        lastStats.tiledLayers += 1
        var pixels = 0
        for t in tiles { let r = og.rect(t); pixels += r.rows.count * r.cols.count }
        lastStats.flops += layerFlops * Double(pixels) / Double(og.height * og.width)
        if let gate, !s.depthwise, input.n == 1 {
            let committed = gatedPass(s, layer: layer, tiles: tiles, input: input, residual: residualKept, gate: gate,
                                      gating: &gating, workspace: workspace)
            lastStats.gatedTiles += tiles.count; lastStats.committedTiles += committed.count
            profile?.lastLayerCommitted[layer.index, default: 0] += committed.count
            register(s, tiles: committed, gated: true)
            return s.output
        }
        let out = target
        conv.forward(s.keptInput ?? input, tiles: tiles, grid: og, residual: residualKept, into: out,
                     workspace: workspace)
        if let gate {
            register(s, tiles: timed(&gating) { gateCommit(s, tiles: tiles, computed: out, gate: gate) }, gated: true)
        } else {
            register(s, tiles: tiles)
        }
        return s.output
    }

    /// A tile pass of a gated conv: the conv compares its staged results with the kept output and writes only
    /// the tiles that cross the gate (no scratch pass), or, once the gate is bypassed, every recomputed tile.
    /// Returns the committed tiles.
    private func gatedPass(_ s: LayerState, layer: ConvLayer, tiles: [Int], input: Tensor, residual: Tensor?,
                           gate: Float, gating: inout Double, workspace: Workspace) -> [Int] {
        if s.gateBypass {
            // Committing every recomputed tile is what the gate did here anyway: write them directly.
            layer.conv.forward(s.keptInput ?? input, tiles: tiles, grid: s.outputGrid, residual: residual,
                               into: s.output, workspace: workspace)
            return tiles
        }
        let r = layer.conv.forwardGated(s.keptInput ?? input, tiles: tiles, grid: s.outputGrid, residual: residual,
                                        into: s.output, gate: gate, workspace: workspace)
        gating += r.gateSeconds
        s.gateProbe.recomputed += tiles.count; s.gateProbe.committed += r.committed.count
        if s.gateProbe.recomputed >= Self.gateProbeTiles,
           Double(s.gateProbe.committed) >= Self.gateBypassFraction * Double(s.gateProbe.recomputed) {
            s.gateBypass = true
        }
        return r.committed
    }

    /// Threshold of `s`'s input compare in input units (its setting × the input RMS of the last refresh).
    private func absoluteThreshold(_ s: LayerState, layer: ConvLayer, isStem: Bool) -> Float {
        (settings.layerThresholds[layer.key]
         ?? (isStem ? settings.inputThreshold ?? settings.threshold : settings.threshold)) * s.inputRMS
    }

    /// The state that produced `t` (a kept output of this cache), if any.
    private func owner(of t: Tensor) -> Owner? {
        t.offset == 0 ? owners[ObjectIdentifier(t.storage)] : nil
    }

    /// This frame's record of `t` as a kept output, if a layer or op produced it this frame.
    private func producedInfo(_ t: Tensor) -> Produced? {
        t.offset == 0 ? produced[ObjectIdentifier(t.storage)] : nil
    }

    /// Records `s` (conv `key`) as a reader of its input's and residual's producers, with its threshold: the bound
    /// of their output gates. A read outside a closed graph blocks the producer's gating.
    private func noteReads(_ s: LayerState, key: LayerKey, layer: ConvLayer, isStem: Bool, input: Tensor,
                           residual: Tensor?) {
        let threshold = absoluteThreshold(s, layer: layer, isStem: isStem)
        for t in [input, residual].compactMap({ $0 }) {
            switch owner(of: t) {
            case let .conv(p)?:
                p.readerThresholds[key] = threshold
                if !inClosedGraph { p.blocked = true }
            case let .op(o)?:
                o.readerThresholds[key] = threshold
                if !inClosedGraph { o.blocked = true }
            case nil: break
            }
        }
    }

    /// The gate of `s`'s output (absolute, the smallest threshold of its readers, through spatial ops too), or nil
    /// when its output is not gated: off in the settings, outside a closed graph, read outside one or returned
    /// from it, or with a reader not seen yet.
    private func gate(of s: LayerState) -> Float? {
        guard settings.gateOutputs, s.closed, inClosedGraph, !s.blocked, !s.readerThresholds.isEmpty || !s.opReaders.isEmpty
        else { return nil }
        var g = s.readerThresholds.values.min() ?? .infinity
        for k in s.opReaders {
            guard let o = ops[k], o.closed, !o.blocked, let m = o.readerThresholds.values.min() else { return nil }
            g = min(g, m)
        }
        return g.isFinite ? g : nil
    }

    /// `body`'s result, its seconds added to `seconds`.
    private func timed<T>(_ seconds: inout Double, _ body: () -> T) -> T {
        let t0 = Benchmark.now()
        defer { seconds += Benchmark.now() - t0 }
        return body()
    }

    /// The gate scratch as a tensor of `s`'s output shape: where a gated layer computes its recomputed tiles.
    private func gateTarget(_ s: LayerState) -> Tensor {
        if gateScratch.capacity < s.output.count { gateScratch = TensorStorage(capacity: s.output.count) }
        return Tensor(shape: s.output.shape, storage: gateScratch)
    }

    /// Output gating after `tiles` were computed into `computed`: the tiles whose largest |new − old| exceeds
    /// `gate` are copied into the kept output and returned (the tiles that changed); the others keep their old
    /// values, so their change accumulates until it crosses the gate.
    private func gateCommit(_ s: LayerState, tiles: [Int], computed: Tensor, gate: Float) -> [Int] {
        Ops.tileMaxAbsDifference(computed, s.output, grid: s.outputGrid, tiles: tiles, into: &s.gateDiff)
        var changed: [Int] = []
        for t in tiles where s.gateDiff[t] > gate { changed.append(t) }
        if !changed.isEmpty { Ops.copyTiles(changed, grid: s.outputGrid, from: computed, into: s.output) }
        return changed
    }

    /// `ConvolutionRunner`: a spatial op (max-pool, nearest upsampling) into a kept output, recomputed only on the
    /// output tiles that read the tiles its producer (a conv run earlier this frame) recomputed; registered as
    /// produced, so the next conv compares only there. Exact: the kept output equals the dense op on this input.
    public func run(_ op: SpatialOp, key: String, input: Tensor, workspace: Workspace) -> Tensor {
        guard settings.mode == .delta else { return op(input, in: workspace) }
        let k = OpKey(key: key, height: input.h, width: input.w)
        var state = ops[k]
        let fresh = state == nil || state!.inputShape != input.shape
        if fresh {
            state = OpState(op, input: input.shape, tile: settings.tile, closed: inClosedGraph)
            ops[k] = state
            owners[ObjectIdentifier(state!.output.storage)] = .op(state!)
            profile?.opTileCounts[key] = state!.grid.count
        }
        let s = state!
        let source = input.offset == 0 ? produced[ObjectIdentifier(input.storage)] : nil
        if case let .conv(producer)? = owner(of: input) {
            producer.opReaders.insert(k)
            if !inClosedGraph { producer.blocked = true }
        }
        guard !fresh, !denseThisFrame, let p = source, p.grid.height == input.h, p.grid.width == input.w,
              let recomputed = p.tiles else {
            op.dense(input, into: s.output)
            produced[ObjectIdentifier(s.output.storage)] = Produced(grid: s.grid, tiles: nil, depthwise: false,
                                                                    gated: source?.gated ?? false)
            profile?.lastOpTiles[key] = s.grid.count
            return s.output
        }
        s.mark.withUnsafeMutableBufferPointer { $0.update(repeating: false) }
        for t in recomputed {
            let r = p.grid.rect(t)
            let a = s.reached(op, rows: r.rows, cols: r.cols)
            let t = s.grid.tileRanges(covering: a.rows, cols: a.cols)
            for ty in t.rows { for tx in t.cols { s.mark[ty * s.grid.columns + tx] = true } }
        }
        var tiles: [Int] = []
        for (t, m) in s.mark.enumerated() where m { tiles.append(t) }
        if Double(tiles.count) > settings.denseFallback * Double(s.grid.count) {
            // Bit-identical to the tile pass, so the consumer still compares only `tiles`.
            op.dense(input, into: s.output)
        } else {
            op.forward(input, tiles: tiles, grid: s.grid, into: s.output)
        }
        produced[ObjectIdentifier(s.output.storage)] = Produced(grid: s.grid, tiles: tiles, depthwise: false,
                                                                gated: p.gated)
        profile?.lastOpTiles[key] = tiles.count
        return s.output
    }

    /// The verdict and kept copy of `residual` left this frame by an earlier conv that compared it (or copied it,
    /// on a dense frame) on `grid`, if any.
    private func sharedCopy(of residual: Tensor, grid: TileGrid) -> Compared? {
        guard residual.offset == 0, let c = compared[ObjectIdentifier(residual.storage)], c.grid == grid,
              c.kept.shape == residual.shape else { return nil }
        return c
    }

    /// Marks the output tiles of `s` whose receptive field meets the input region `rect` (input pixels).
    private func markAffected(_ s: LayerState, _ conv: Conv2d, _ rect: (rows: Range<Int>, cols: Range<Int>)) {
        let og = s.outputGrid
        let a = conv.affectedOutputs(rows: rect.rows, cols: rect.cols, outputHeight: og.height, outputWidth: og.width)
        let t = og.tileRanges(covering: a.rows, cols: a.cols)
        for ty in t.rows { for tx in t.cols { s.mark[ty * og.columns + tx] = true } }
    }

    /// Records `s`'s kept output as produced this frame with `tiles` recomputed (nil = all).
    private func register(_ s: LayerState, tiles: [Int]?, gated: Bool = false) {
        produced[ObjectIdentifier(s.output.storage)] = Produced(grid: s.outputGrid, tiles: tiles, depthwise: s.depthwise,
                                                                gated: gated)
    }

    /// Dense pass of one layer that also refreshes its kept input (and residual); `rms`: re-measure the input RMS
    /// the thresholds scale with (scheduled refreshes only, so a frame-level fall-back does not move thresholds).
    /// `fresh`: a new state, whose uninitialised kept tensors this pass must fill even on a fall-back frame.
    private func dense(_ layer: ConvLayer, _ instance: Int, _ s: LayerState, input: Tensor, residual: Tensor?,
                       flops: Double, rms: Bool, fresh: Bool = false, workspace: Workspace) -> Tensor {
        let t0: Double
        if skipKeptCopies && !s.readsFrame && !fresh {
            t0 = Benchmark.now()
            layer.conv.forward(input, residual: residual, into: s.output, workspace: workspace)
        } else {
            s.keptInput?.copy(from: input)
            if let residual, let kept = s.keptResidual { kept.copy(from: residual) }
            if rms { s.inputRMS = Ops.rootMeanSquare(input) }
            if rms || fresh { s.gateProbe = (0, 0); s.gateBypass = false }     // the gate is measured anew
            t0 = Benchmark.now()
            // A shared residual was copied by the block's first conv earlier in this pass.
            layer.conv.forward(s.keptInput ?? input, residual: s.sharedResidual ?? s.keptResidual ?? residual, into: s.output,
                               workspace: workspace)
            if denseThisFrame, input.offset == 0, let kept = s.keptInput {
                // On a dense frame no conv takes a verdict; a conv created later in it may share this copy.
                compared[ObjectIdentifier(input.storage)] = Compared(grid: s.inputGrid, changed: [], kept: kept)
            }
        }
        lastStats.convSeconds += Benchmark.now() - t0
        lastStats.denseLayers += 1
        lastStats.totalTiles += s.outputGrid.count
        lastStats.recomputedTiles += s.outputGrid.count
        profile?.lastLayerTiles[layer.index, default: 0] += s.outputGrid.count
        lastStats.flops += flops
        register(s, tiles: nil)
        return s.output
    }

    /// Per-tile max |new − kept| over `grid`; when `new` is a kept output of a layer run earlier this frame, only
    /// the tiles overlapping what that layer recomputed are compared (elsewhere `new` is bit-identical to its last
    /// value, which `kept` already holds).
    private func compare(_ new: Tensor, _ kept: Tensor, grid: TileGrid, into diff: inout [Float]) {
        guard new.offset == 0, let p = produced[ObjectIdentifier(new.storage)], let recomputed = p.tiles,
              p.grid.height == grid.height, p.grid.width == grid.width else {
            Ops.tileMaxAbsDifference(new, kept, grid: grid, into: &diff)
            return
        }
        var candidates: [Int]
        if p.grid == grid {
            candidates = recomputed
        } else {
            var seen = Set<Int>()
            for t in recomputed {
                let r = p.grid.rect(t)
                for c in grid.tiles(covering: r.rows, cols: r.cols) { seen.insert(c) }
            }
            candidates = Array(seen)
        }
        Ops.tileMaxAbsDifference(new, kept, grid: grid, tiles: candidates, into: &diff)
    }
}
