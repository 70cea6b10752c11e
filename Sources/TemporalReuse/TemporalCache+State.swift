import Tensor

/// The kept state of one conv layer instance and of one spatial op of a `TemporalCache`.
extension TemporalCache {
    final class LayerState {
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
        /// inside a closed graph; `blocked` when it runs outside one, or a spatial op outside one reads it.
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

    final class OpState {
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
}
