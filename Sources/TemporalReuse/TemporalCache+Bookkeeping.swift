import Tensor

/// The cache's bookkeeping: thresholds, who produced and who reads each kept tensor, output gates, the spatial
/// ops, dense passes and the restricted compare.
extension TemporalCache {
    /// Threshold of `s`'s input compare in input units (its setting × the input RMS of the last refresh).
    /// The accuracy guard's scale (`thresholdScales`) of its group applies on top.
    func absoluteThreshold(_ s: LayerState, layer: ConvLayer, isStem: Bool) -> Float {
        let group: ThresholdGroup = isStem ? .input : s.closed ? .backbone : .heads
        return (settings.layerThresholds[layer.key]
                ?? (isStem ? settings.inputThreshold ?? settings.threshold : settings.threshold))
            * (thresholdScales[group] ?? 1) * s.inputRMS
    }

    /// The state that produced `t` (a kept output of this cache), if any.
    func owner(of t: Tensor) -> Owner? {
        t.offset == 0 ? owners[ObjectIdentifier(t.storage)] : nil
    }

    /// This frame's record of `t` as a kept output, if a layer or op produced it this frame.
    func producedInfo(_ t: Tensor) -> Produced? {
        t.offset == 0 ? produced[ObjectIdentifier(t.storage)] : nil
    }

    /// Records `s` (conv `key`) as a reader of its input's and residual's producers, with its threshold: the bound
    /// of their output gates. A conv reads a gated output exactly wherever it runs (inside a closed graph or, for a
    /// returned level, outside it).
    func noteReads(_ s: LayerState, key: LayerKey, layer: ConvLayer, isStem: Bool, input: Tensor,
                           residual: Tensor?) {
        let threshold = absoluteThreshold(s, layer: layer, isStem: isStem)
        for t in [input, residual].compactMap({ $0 }) {
            switch owner(of: t) {
            case let .conv(p)?:
                p.readerThresholds[key] = threshold
            case let .op(o)?:
                o.readerThresholds[key] = threshold
            case nil: break
            }
        }
    }

    /// The gate of `s`'s output (absolute, the smallest threshold of its readers, through spatial ops too), or nil
    /// when its output is not gated: off in the settings, outside a closed graph, read outside one or returned
    /// from it, or with a reader not seen yet.
    func gate(of s: LayerState) -> Float? {
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
    func timed<T>(_ seconds: inout Double, _ body: () -> T) -> T {
        let t0 = Benchmark.now()
        defer { seconds += Benchmark.now() - t0 }
        return body()
    }

    /// The gate scratch as a tensor of `s`'s output shape: where a gated layer computes its recomputed tiles.
    func gateTarget(_ s: LayerState) -> Tensor {
        if gateScratch.capacity < s.output.count { gateScratch = TensorStorage(capacity: s.output.count) }
        return Tensor(shape: s.output.shape, storage: gateScratch)
    }

    /// Output gating after `tiles` were computed into `computed`: the tiles whose largest |new − old| exceeds
    /// `gate` are copied into the kept output and returned (the tiles that changed); the others keep their old
    /// values, so their change accumulates until it crosses the gate.
    func gateCommit(_ s: LayerState, tiles: [Int], computed: Tensor, gate: Float) -> [Int] {
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
        guard settings.usesCache else { return op(input, in: workspace) }
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
        if skipKeptCopies && !fresh {
            // A fall-back run, as for convs (`dense`): the workspace, not the kept output.
            profile?.lastOpTiles[key] = s.grid.count
            return op(input, in: workspace)
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
    func sharedCopy(of residual: Tensor, grid: TileGrid) -> Compared? {
        guard residual.offset == 0, let c = compared[ObjectIdentifier(residual.storage)], c.grid == grid,
              c.kept.shape == residual.shape else { return nil }
        return c
    }

    /// Marks the output tiles of `s` whose receptive field meets the input region `rect` (input pixels).
    func markAffected(_ s: LayerState, _ conv: Conv2d, _ rect: (rows: Range<Int>, cols: Range<Int>)) {
        let og = s.outputGrid
        let a = conv.affectedOutputs(rows: rect.rows, cols: rect.cols, outputHeight: og.height, outputWidth: og.width)
        let t = og.tileRanges(covering: a.rows, cols: a.cols)
        for ty in t.rows { for tx in t.cols { s.mark[ty * og.columns + tx] = true } }
    }

    /// Records `s`'s kept output as produced this frame with `tiles` recomputed (nil = all).
    func register(_ s: LayerState, tiles: [Int]?, gated: Bool = false) {
        produced[ObjectIdentifier(s.output.storage)] = Produced(grid: s.outputGrid, tiles: tiles, depthwise: s.depthwise,
                                                                gated: gated)
    }

    /// Dense pass of one layer that also refreshes its kept input (and residual); `rms`: re-measure the input RMS
    /// the thresholds scale with (scheduled refreshes only, so a frame-level fall-back does not move thresholds).
    /// `fresh`: a new state, whose uninitialised kept tensors this pass must fill even on a fall-back frame.
    func dense(_ layer: ConvLayer, _ instance: Int, _ s: LayerState, input: Tensor, residual: Tensor?,
                       flops: Double, rms: Bool, fresh: Bool = false, workspace: Workspace) -> Tensor {
        let t0: Double
        var out = s.output
        if skipKeptCopies && !s.readsFrame && !fresh {
            // A run of fall-back frames: nothing reads the kept output before the resync pass rewrites it, so the
            // conv writes into the workspace like a pass without the cache (buffers recycled within the frame, warm
            // in the caches) instead of touching every layer's own kept tensor.
            out = workspace.tensor(s.output.shape)
            t0 = Benchmark.now()
            layer.conv.forward(input, residual: residual, into: out, workspace: workspace)
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
        profile?.lastLayerDense[layer.index, default: 0] += 1
        lastStats.totalTiles += s.outputGrid.count
        lastStats.recomputedTiles += s.outputGrid.count
        profile?.lastLayerTiles[layer.index, default: 0] += s.outputGrid.count
        lastStats.flops += flops
        lastStats.kernelFlops += flops
        if out.storage === s.output.storage { register(s, tiles: nil) }
        return out
    }

    /// Per-tile max |new − kept| over `grid`; when `new` is a kept output of a layer run earlier this frame, only
    /// the tiles overlapping what that layer recomputed are compared (elsewhere `new` is bit-identical to its last
    /// value, which `kept` already holds).
    func compare(_ new: Tensor, _ kept: Tensor, grid: TileGrid, into diff: inout [Float]) {
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
