import Tensor

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
    public internal(set) var lastStats = TemporalFrameStats()
    /// Number of resets (new input size or `reset()`), for tests and logs.
    public private(set) var resetCount = 0
    /// Per-layer figures of the last frame, when attached (nil: not collected).
    public var profile: TemporalProfile?
    /// Multipliers of the thresholds by layer group (absent = 1), set by the stream's accuracy guard
    /// (`TemporalGuard`); a change takes effect on the next frame.
    public var thresholdScales: [ThresholdGroup: Float] = [:]
    /// The scales of the previous frame, and whether this frame's differ: the head convs take a new threshold
    /// (and the levels' gates with it) only when they run, so such a frame must run them (`repeatsLastFrame`).
    var previousScales: [Float] = []
    var scalesChanged = false
    /// Dense FLOPs and tiles of this frame's convs up to the end of the closed graph; what the convs after it (the
    /// heads) added on the last frame that ran them; whether this frame skipped them.
    var graphStats: (denseFlops: Double, totalTiles: Int) = (0, 0)
    var headStats: (denseFlops: Double, totalTiles: Int, layers: Int) = (0, 0, 0)
    var skippedHeads = false
    /// Conv runs after this frame's closed graph ended (nil before it ends).
    var layersAfterGraph: Int?
    /// How the next frame runs; consumed by its `beginFrame`. `.scheduled`: by the refresh schedule. `.probe`:
    /// delta even when a refresh is due, without advancing the schedule (the same frame runs again next, e.g.
    /// densely to verify the probe). `.dense`: a dense pass that refreshes the state like a scheduled refresh.
    public var nextFrame: FramePlan = .scheduled
    public enum FramePlan: Sendable { case scheduled, probe, dense }

    /// State per conv layer, instance and input size. The size is part of the key so a head conv shared by the
    /// pyramid levels keeps one state per level even when a wrapping runner forwards only
    /// `run(_:input:residual:workspace:)` (instance 0).
    struct LayerKey: Hashable { let index, instance, height, width: Int }
    var layers: [LayerKey: LayerState] = [:]
    /// This frame's kept outputs (by storage) and the output tiles their layer recomputed (nil = all of them): a
    /// conv reading such an output can only see a change inside those tiles, so it compares only there.
    var produced: [ObjectIdentifier: Produced] = [:]
    struct Produced {
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
    enum Owner { case conv(LayerState), op(OpState) }
    var owners: [ObjectIdentifier: Owner] = [:]
    /// Scratch for output gating: the old values of the tiles a gated conv recomputes (one storage, every shape).
    var gateScratch = TensorStorage(capacity: 0)
    /// Between `beginClosedGraph` and `endClosedGraph`.
    var inClosedGraph = false
    /// Kept outputs of the spatial ops (max-pool, upsampling) by op key and input size.
    struct OpKey: Hashable { let key: String; let height, width: Int }
    var ops: [OpKey: OpState] = [:]
    /// This frame's compared conv inputs (by storage): the tiles found changed on the layer's input grid and the
    /// kept copy they were propagated into. A later conv whose shortcut is the same tensor on the same grid (a
    /// ResNet block's last conv: its first conv read the block input) reuses both instead of comparing again.
    var compared: [ObjectIdentifier: Compared] = [:]
    struct Compared { let grid: TileGrid; let changed: [Int]; let kept: Tensor }
    var inputShape: [Int]?
    /// Set by `beginFrame`: the next conv is the input conv.
    var inputConvPending = false
    var denseThisFrame = false
    /// Frame-level fall-back frames skip refreshing the kept inputs of every layer but the stem (a copy per layer
    /// costs ~8% of a dense pass). The state is then stale: the next frame below the fall-back fraction is a dense
    /// pass with copies (a resync) before delta updates resume.
    var skipKeptCopies = false, stale = false

    /// Busy scenes: a delta frame that still recomputed this fraction of the dense work or more cost about a dense
    /// pass plus its compares and copies. After one, frames whose input changed at least `busyInputShare` as much
    /// as that frame's take the frame-level fall-back too (`busyLimit`), and every `busyProbe` such frames one runs
    /// delta again to see whether the scene calmed down: busy again doubles the interval, up to `busyProbeMax`;
    /// below `calmFraction` clears the limit; in between keeps it.
    public static let busyFraction = 0.8, calmFraction = 0.6
    /// A busy scene's input change varies from frame to frame (vtest.avi, frames two apart: 11-16% of the image);
    /// a frame a little calmer than the busy one reaches most of the network just the same, and running it by
    /// delta costs a resync pass plus a delta pass above break-even. Only a clearly calmer frame probes early.
    static let busyInputShare = 0.5
    static let busyProbe = 8, busyProbeMax = 64
    /// The input change fraction at or above which frames fall back (nil: only `settings.frameFallback`).
    public private(set) var busyLimit: Double?
    /// Whether busy frames set `busyLimit` (off only to test or measure the per-layer paths on busy input).
    public var learnsBusyScenes = true
    var busyProbeInterval = TemporalCache.busyProbe, busyFallbacks = 0

    /// A cache in `settings.mode` (delta), collecting per-layer figures into `profile` when given.
    public init(settings: TemporalSettings = TemporalSettings(mode: .delta), profile: TemporalProfile? = nil) {
        self.settings = settings
        self.profile = profile
    }

    /// An exact depthwise layer with more than this fraction of its output tiles to recompute runs densely (its
    /// scattered tile rows are memory-bound: CenterFace 2x on vtest.avi, `bench temporal --layers`, the tile pass
    /// cost as much as the dense one at 12-24% of the tiles, stride-1 and stride-2 depthwise alike).
    static let depthwiseDenseFraction = 0.15

    /// A cheap leaf: a conv whose output no conv or spatial op of this cache reads (a head's last layer: the
    /// RPN's objectness and box deltas) and whose dense pass costs less than this many FLOPs per output tile.
    /// Comparing its input with a kept copy, copying the changed tiles and gathering them for a tile pass cost more
    /// than the conv itself (the RPN's 1x1 outputs, 3 and 12 channels: 1.2 ms each on vtest.avi's delta frames,
    /// against ~0.1 ms for a dense pass). Reading a kept output of this cache, it turns exact (no compare, no
    /// copy), and it runs densely whenever any of its tiles changed: nothing in the cache reads its output, so
    /// no later layer recomputes more for it.
    static let cheapLeafTileFlops = 32_768.0

    func isCheapLeaf(_ s: LayerState, flops: Double) -> Bool {
        s.readerThresholds.isEmpty && s.opReaders.isEmpty && flops < Self.cheapLeafTileFlops * Double(s.outputGrid.count)
    }

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

    /// `ConvolutionRunner`: the closed graph ends; `returning` (its results, the pyramid levels) are read outside it
    /// from now on. Their producers still gate (`TemporalSettings.gateOutputs`) for the convs of this cache that
    /// read them (the dense heads, which read them exactly: no compare, no kept copy); what else reads them (RoI
    /// pooling) sees a level that keeps its old values where it moved less than those convs' smallest threshold.
    public func endClosedGraph(returning: [Tensor]) {
        inClosedGraph = false
        graphStats = (lastStats.denseFlops, lastStats.totalTiles)
        layersAfterGraph = 0
    }

    /// `ConvolutionRunner`: the model skipped its head convs this frame (it repeated the last result). They count as
    /// run with nothing recomputed, as when they run on an unchanged pyramid, so `recomputedFraction` and the
    /// busy-scene figures keep one definition on every frame.
    public func skippedRestOfFrame() {
        lastStats.denseFlops += headStats.denseFlops
        lastStats.totalTiles += headStats.totalTiles
        lastStats.skippedLayers += headStats.layers
        skippedHeads = true
    }

    /// `ConvolutionRunner`: true when `output` is a conv's kept output that this delta frame left untouched (no
    /// tile committed, or none recomputed). Kept outputs live in the same storage every frame, so it then holds what
    /// the previous frame returned. Dense frames (the first, refreshes, fall-backs, resyncs) rewrite or bypass the
    /// kept outputs: false; so is the first frame after the accuracy guard changed the thresholds, whose readers
    /// (the heads) must run to take them up.
    public func repeatsLastFrame(_ output: Tensor) -> Bool {
        !scalesChanged && writtenTiles(output)?.tiles.isEmpty == true
    }

    /// `ConvolutionRunner`: the tiles this delta frame committed to `output`, a conv's kept output (the same storage
    /// every frame, untouched elsewhere). nil on dense frames (the first, refreshes, fall-backs, resyncs), which
    /// rewrite or bypass the kept outputs, and for tensors the cache did not produce as kept outputs.
    public func writtenTiles(_ output: Tensor) -> (grid: TileGrid, tiles: [Int])? {
        guard !denseThisFrame, case .conv? = owner(of: output), let p = producedInfo(output), let tiles = p.tiles
        else { return nil }
        return (p.grid, tiles)
    }

    /// Updates the busy-scene fall-back from the last frame: a delta frame (no refresh, no fall-back) that
    /// recomputed `busyFraction` or more sets the limit to its input change (doubling the probe interval when it was
    /// a probe); one below `calmFraction` clears it.
    func learnBusy(from last: TemporalFrameStats) {
        guard learnsBusyScenes, !last.refreshed, !last.frameFallback, last.denseFlops > 0 else { return }
        if last.kernelFraction >= Self.busyFraction && last.inputChangedFraction > 0 {
            if let limit = busyLimit {
                busyProbeInterval = min(Self.busyProbeMax, busyProbeInterval * 2)
                busyLimit = min(limit, last.inputChangedFraction)
            } else {
                busyLimit = last.inputChangedFraction
            }
        } else if last.kernelFraction < Self.calmFraction {
            busyLimit = nil
            busyProbeInterval = Self.busyProbe
        } else if let limit = busyLimit {
            // Not calm: a frame that changed this much costs about a dense pass by delta, and drifts.
            busyLimit = min(limit, last.inputChangedFraction)
        }
        busyFallbacks = 0
    }

    /// Drops all kept state: the next frame is computed densely.
    public func reset() {
        layers.removeAll(); ops.removeAll(); owners.removeAll(); profile?.reset(); inputShape = nil
        busyLimit = nil; busyProbeInterval = Self.busyProbe; busyFallbacks = 0
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
    func startFrame(_ shape: [Int]) -> Int {
        if let inputShape, inputShape != shape {
            reset()
        } else if frameIndex > 0, !skippedHeads, let n = layersAfterGraph {
            headStats = (lastStats.denseFlops - graphStats.denseFlops, lastStats.totalTiles - graphStats.totalTiles, n)
        }
        skippedHeads = false
        layersAfterGraph = nil
        inputShape = shape
        if frameIndex > 0 { learnBusy(from: lastStats) }
        let index = frameIndex, plan = nextFrame
        nextFrame = .scheduled
        if plan != .probe || index == 0 { frameIndex += 1 }
        denseThisFrame = index == 0 || plan == .dense
            || (plan == .scheduled && settings.refreshInterval > 0 && index % settings.refreshInterval == 0)
        skipKeptCopies = false
        let scales = ThresholdGroup.allCases.map { thresholdScales[$0] ?? 1 }
        scalesChanged = !previousScales.isEmpty && scales != previousScales
        previousScales = scales
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
        if let n = layersAfterGraph { layersAfterGraph = n + 1 }
        let key = LayerKey(index: layer.index, instance: instance, height: input.h, width: input.w)
        guard let s = layers[key], s.inputShape == input.shape, s.hasResidual == (residual != nil) else {
            return create(layer, instance, key: key, isStem: isStem, input: input, residual: residual,
                          flops: layerFlops, workspace: workspace)
        }
        noteFrameReads(s, key: key, layer: layer, isStem: isStem, input: input, residual: residual)
        if !isStem, !s.exact, isCheapLeaf(s, flops: layerFlops), owner(of: input) != nil, producedInfo(input) != nil {
            s.exact = true
            s.keptInput = nil
        }
        guard !denseThisFrame, markChanges(s, layer: layer, isStem: isStem, input: input, residual: residual) else {
            return dense(layer, instance, s, input: input, residual: residual, flops: layerFlops,
                         rms: denseThisFrame && lastStats.refreshed, workspace: workspace)
        }
        return recompute(s, layer: layer, input: input, residual: residual, flops: layerFlops, workspace: workspace)
    }

    /// A new state for `key` (first frame of this size, or a residual appeared), filled by a dense pass.
    func create(_ layer: ConvLayer, _ instance: Int, key: LayerKey, isStem: Bool, input: Tensor,
                        residual: Tensor?, flops: Double, workspace: Workspace) -> Tensor {
        let conv = layer.conv
        let outShape = conv.outputShape(input.shape)
        var tile = settings.tile
        if settings.deepTile > 0, let frame = inputShape, frame[2] >= 16 * outShape[2] { tile = settings.deepTile }
        let source = producedInfo(input)
        // A conv reading a kept output of a closed graph's conv (inside it, or a pyramid level read by a head) is
        // exact from the start: its producer will gate that output (readers are recorded on this dense frame), so
        // no input copy is ever needed.
        let gatedReader = settings.gateOutputs && !isStem && (inClosedGraph || closedOutput(input))
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
        if layers[key] == nil {
            profile?.layerTileCounts[layer.index, default: 0] += state.outputGrid.count
            profile?.layerKeys[layer.index] = layer.key
            profile?.layerInstances[layer.index, default: 0] += 1
        }
        if let old = layers[key] { owners[ObjectIdentifier(old.output.storage)] = nil }
        layers[key] = state
        owners[ObjectIdentifier(state.output.storage)] = .conv(state)
        let out = dense(layer, instance, state, input: input, residual: residual, flops: flops, rms: true,
                        fresh: true, workspace: workspace)
        noteReads(state, key: key, layer: layer, isStem: isStem, input: input, residual: residual)
        return out
    }

    /// Whether `t` is the kept output of a conv or spatial op run inside a closed graph (gated, or passing its
    /// producer's gating on).
    func closedOutput(_ t: Tensor) -> Bool {
        switch owner(of: t) {
        case let .conv(p)?: return p.closed
        case let .op(o)?: return o.closed
        case nil: return false
        }
    }

    /// Records this frame's reads of an existing state and adopts its producers' gating: a gating producer makes
    /// its readers exact for good (their kept copies are dropped), as its output changes only in the tiles it
    /// registers, by more than this reader's threshold wherever it does.
    func noteFrameReads(_ s: LayerState, key: LayerKey, layer: ConvLayer, isStem: Bool, input: Tensor,
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
    func markChanges(_ s: LayerState, layer: ConvLayer, isStem: Bool, input: Tensor, residual: Tensor?) -> Bool {
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
    func markInput(_ s: LayerState, isStem: Bool, input: Tensor, threshold: Float) -> Bool {
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
            let moving = lastStats.inputChangedFraction > settings.frameFallback
            let busy = !moving && busyFallbacks < busyProbeInterval
                && busyLimit.map { lastStats.inputChangedFraction >= Self.busyInputShare * $0 } == true
            if moving || busy || stale {
                // Most of the image changed (or, in a busy scene, enough to reach most of the network): the
                // per-layer compare/gather would cost more than it saves. While the motion lasts the other layers
                // skip refreshing their kept inputs; the first calm frame after it resyncs them (a dense pass with
                // copies).
                if busy { busyFallbacks += 1 }
                denseThisFrame = true
                lastStats.frameFallback = true
                skipKeptCopies = moving || busy
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
    func markResidual(_ s: LayerState, residual: Tensor?, threshold: Float) {
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
    func recompute(_ s: LayerState, layer: ConvLayer, input: Tensor, residual: Tensor?, flops layerFlops: Double,
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
        // What a tile pass would compute: the tiles' pixels, or for a Winograd conv every F(m, 3) block they touch.
        // Scattered 2x2 tiles touch most blocks of a small map long before they are most of its tiles.
        let pixels = og.height * og.width, denseAnyway = depthwiseDense || isCheapLeaf(s, flops: layerFlops)
        let kernelPixels = denseAnyway ? pixels : conv.tilePassPixels(s.keptInput ?? input, tiles: tiles, grid: og)
        if denseAnyway || Double(kernelPixels) > settings.denseFallback * Double(pixels) {
            // Past break-even: dense from the kept input (which now equals the new input wherever it mattered).
            lastStats.denseLayers += 1
            profile?.lastLayerDense[layer.index, default: 0] += 1
            lastStats.flops += layerFlops
            lastStats.kernelFlops += layerFlops
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
        var tilePixels = 0
        for t in tiles { let r = og.rect(t); tilePixels += r.rows.count * r.cols.count }
        lastStats.flops += layerFlops * Double(tilePixels) / Double(pixels)
        lastStats.kernelFlops += layerFlops * Double(kernelPixels) / Double(pixels)
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
    func gatedPass(_ s: LayerState, layer: ConvLayer, tiles: [Int], input: Tensor, residual: Tensor?,
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
}
