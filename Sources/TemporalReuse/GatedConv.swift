import Tensor

extension Conv2d {
    /// Tile-restricted forward with output gating, for a kept output whose readers only need to see changes
    /// larger than `gate`: computes the tiles `tiles` like `forward(_:tiles:grid:residual:into:workspace:)`, but
    /// writes into `kept` only the tiles whose largest |new − kept| (over channels and pixels; NaN counts as
    /// infinity) exceeds `gate`; the others keep their old values. Returns those tiles (ascending) and the wall
    /// seconds spent comparing and committing (the rest is the conv). One image (`x.n == 1`), not depthwise.
    /// The compare reads the GEMM's staged results against `kept` directly, so no recomputed tile is written twice.
    public func forwardGated(_ x: Tensor, tiles: [Int], grid: TileGrid, residual: Tensor? = nil, into kept: Tensor,
                             gate: Float, workspace: Workspace) -> (committed: [Int], gateSeconds: Double) {
        guard !tiles.isEmpty else { return ([], 0) }
        let sorted = tiles.sorted()
        let commit = OutputGate(grid: grid, tiles: sorted, threshold: gate)
        forward(x, tiles: sorted, grid: grid, residual: residual, into: kept, commit: commit, workspace: workspace)
        return (commit.committed, commit.seconds)
    }
}

/// Output gating of one tile-restricted pass: its grid, tiles and threshold in, the committed tiles and the
/// compare/commit time out.
final class OutputGate: StagedCommit {
    let grid: TileGrid, tiles: [Int], threshold: Float
    private(set) var committed: [Int] = [], seconds = 0.0

    init(grid: TileGrid, tiles: [Int], threshold: Float) { self.grid = grid; self.tiles = tiles; self.threshold = threshold }

    func commit(_ staged: StagedResults) {
        let t0 = Benchmark.now()
        committed = gateAndCommit(staged)
        seconds += Benchmark.now() - t0
    }

    /// Per tile of `grid`, the largest |act(stage + bias + residual) − out| over channels and the tile's pixels
    /// (NaN → infinity); the tiles above `threshold` are scattered into `out` (the conv's own epilogue, so
    /// bit-identical to the ungated pass there) and returned. Channels outermost, as `Ops.tileMaxAbsDifference`:
    /// each plane of `out` is read in a few contiguous runs.
    private func gateAndCommit(_ staged: StagedResults) -> [Int] {
        if staged.planar { return gateAndCommitPlanes(staged) }
        let conv = staged.conv, stage = staged.stage, p = staged.columns, stride = staged.stride
        let seg = staged.segments, segmentCount = staged.segmentCount, out = staged.out, residual = staged.residual
        let ho = staged.ho, wo = staged.wo, outChannels = conv.outChannels
        let gate = self
        let relu = conv.activation == .relu
        // Per staged column: the largest |Δ| bits over the channels (segments own disjoint columns).
        let colMax = UnsafeMutablePointer<UInt32>.allocate(capacity: p)
        defer { colMax.deallocate() }
        colMax.update(repeating: 0, count: p)
        conv.withBias { bias in
            Parallel.forEach(segmentCount, cost: outChannels * p) { range in
                for oc in 0..<outChannels {
                    let b = bias?[oc] ?? 0
                    let src = stage + oc * stride
                    for s in range {
                        let at = oc * ho * wo + seg[4 * s] * wo + seg[4 * s + 1]
                        let d = out + at, len = seg[4 * s + 2], c = seg[4 * s + 3]
                        let v = src + c, m = colMax + c
                        if let r = residual.map({ $0 + at }) {
                            for j in 0..<len {
                                let t = v[j] + b + r[j]
                                m[j] = max(m[j], Ops.absBits((relu && t < 0 ? 0 : t) - d[j]))
                            }
                        } else if relu {
                            for j in 0..<len { let t = v[j] + b; m[j] = max(m[j], Ops.absBits((t > 0 ? t : 0) - d[j])) }
                        } else {
                            for j in 0..<len { m[j] = max(m[j], Ops.absBits((v[j] + b) - d[j])) }
                        }
                    }
                }
            }
        }
        // Columns → tiles, and the tiles that cross the gate.
        let grid = gate.grid, tw = grid.tile.w, th = grid.tile.h
        let tileMax = UnsafeMutablePointer<UInt32>.allocate(capacity: grid.count)
        let commit = UnsafeMutablePointer<Bool>.allocate(capacity: grid.count)
        defer { tileMax.deallocate(); commit.deallocate() }
        for t in gate.tiles { tileMax[t] = 0; commit[t] = false }
        for s in 0..<segmentCount {
            let row = (seg[4 * s] / th) * grid.columns, x0 = seg[4 * s + 1], x1 = x0 + seg[4 * s + 2]
            let m = colMax + seg[4 * s + 3] - x0     // m[x]: column of pixel x
            for tx in (x0 / tw)...((x1 - 1) / tw) {
                var v = tileMax[row + tx]
                for x in max(x0, tx * tw)..<min(x1, (tx + 1) * tw) { v = max(v, m[x]) }
                tileMax[row + tx] = v
            }
        }
        var committed: [Int] = []
        for t in gate.tiles where Ops.absFloat(tileMax[t]) > gate.threshold { committed.append(t); commit[t] = true }
        guard !committed.isEmpty else { return [] }
        // The committed tiles' pixels as segments into the same staged columns, scattered as the ungated pass does.
        var pieces: [Int] = []
        pieces.reserveCapacity(4 * segmentCount)
        for s in 0..<segmentCount {
            let y = seg[4 * s], row = (y / th) * grid.columns, x0 = seg[4 * s + 1], x1 = x0 + seg[4 * s + 2]
            let c = seg[4 * s + 3]
            var start = -1     // first pixel of the open piece
            for tx in (x0 / tw)...((x1 - 1) / tw) {
                let lo = max(x0, tx * tw)
                if commit[row + tx] {
                    if start < 0 { start = lo }
                } else if start >= 0 {
                    pieces.append(y); pieces.append(start); pieces.append(lo - start); pieces.append(c + start - x0)
                    start = -1
                }
            }
            if start >= 0 { pieces.append(y); pieces.append(start); pieces.append(x1 - start); pieces.append(c + start - x0) }
        }
        pieces.withUnsafeMutableBufferPointer { pc in
            conv.scatter(stage, columns: stride, columnBase: 0, segments: pc.baseAddress!, segmentCount: pc.count / 4, out: out,
                    residual: residual, ho: ho, wo: wo)
        }
        return committed
    }

    /// `gateAndCommit` for a stage in output planes (the Winograd tile pass): the listed pixels as row spans with a
    /// byte mask, compared and committed a vector of pixels at a time (`Ops.gatePlanes`).
    private func gateAndCommitPlanes(_ staged: StagedResults) -> [Int] {
        let ho = staged.ho, wo = staged.wo
        let (rows, x0, x1, mask) = Ops.planarSpans(staged.segments, count: staged.segmentCount, ho: ho, wo: wo)
        var pixelMax = [UInt32](repeating: 0, count: ho * wo)
        pixelMax.withUnsafeMutableBufferPointer {
            Ops.gatePlanes(staged, rows: rows, x0: x0, x1: x1, mask: mask, pixelMax: $0.baseAddress!)
        }
        var committed: [Int] = []
        var commit = [UInt8](repeating: 0, count: ho * wo)
        for t in tiles {
            let r = grid.rect(t)
            var v: UInt32 = 0
            for y in r.rows { for x in r.cols { v = max(v, pixelMax[y * wo + x]) } }
            guard Ops.absFloat(v) > threshold else { continue }
            committed.append(t)
            for y in r.rows { for x in r.cols { commit[y * wo + x] = 1 } }
        }
        if !committed.isEmpty { Ops.gatePlanes(staged, rows: rows, x0: x0, x1: x1, mask: commit, pixelMax: nil) }
        return committed
    }
}
