import Tensor

/// Helpers for tile-restricted recomputation (the temporal FPN cache): which output pixels an input change can
/// affect, which tiles cover a region, per-tile change of a tensor, and copying tiles between tensors.
extension Conv2d {
    /// The output rows and columns whose receptive field intersects the input region `rows` x `cols`
    /// (input pixels), for an input of `inputHeight` x `inputWidth`. Empty ranges when nothing is affected.
    public func affectedOutputs(rows: Range<Int>, cols: Range<Int>, inputHeight: Int, inputWidth: Int)
        -> (rows: Range<Int>, cols: Range<Int>) {
        let o = outputShape([1, inChannels, inputHeight, inputWidth])
        return affectedOutputs(rows: rows, cols: cols, outputHeight: o[2], outputWidth: o[3])
    }

    /// `affectedOutputs(rows:cols:inputHeight:inputWidth:)` for a known output size (`outputShape`'s last two
    /// dimensions), without allocating: for per-tile loops.
    public func affectedOutputs(rows: Range<Int>, cols: Range<Int>, outputHeight: Int, outputWidth: Int)
        -> (rows: Range<Int>, cols: Range<Int>) {
        (Self.affected(rows, kernel: kernel.h, stride: stride.h, padding: padding.h, dilation: dilation.h, outputs: outputHeight),
         Self.affected(cols, kernel: kernel.w, stride: stride.w, padding: padding.w, dilation: dilation.w, outputs: outputWidth))
    }

    /// The outputs (of `outputs`) of a sliding window (conv or pool: kernel `k`, stride `s`, padding `p`,
    /// dilation `d`) that read any input in `r`. Output o reads inputs o·s − p + j·d for j in 0..<k: it is affected
    /// by [a, b) when o·s − p ≤ b − 1 and o·s − p + d(k−1) ≥ a.
    public static func affected(_ r: Range<Int>, kernel k: Int, stride s: Int, padding p: Int, dilation d: Int, outputs: Int) -> Range<Int> {
        guard !r.isEmpty else { return 0..<0 }
        let lo = max(0, ceilDiv(r.lowerBound + p - d * (k - 1), s))
        let hi = min(outputs, floorDiv(r.upperBound - 1 + p, s) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    private static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    private static func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
}

extension TileGrid {
    /// The tile rows and tile columns that intersect the pixel region `rows` x `cols` (clipped to the grid;
    /// empty ranges when it misses), without allocating: for per-tile marking loops.
    public func tileRanges(covering rows: Range<Int>, cols: Range<Int>) -> (rows: Range<Int>, cols: Range<Int>) {
        let r = rows.clamped(to: 0..<height), c = cols.clamped(to: 0..<width)
        guard !r.isEmpty, !c.isEmpty else { return (0..<0, 0..<0) }
        return ((r.lowerBound / tile.h)..<((r.upperBound - 1) / tile.h + 1),
                (c.lowerBound / tile.w)..<((c.upperBound - 1) / tile.w + 1))
    }

    /// Indices (ascending) of the tiles that intersect the pixel region `rows` x `cols`.
    public func tiles(covering rows: Range<Int>, cols: Range<Int>) -> [Int] {
        let t = tileRanges(covering: rows, cols: cols)
        var out: [Int] = []
        for ty in t.rows { for tx in t.cols { out.append(ty * columns + tx) } }
        return out
    }
}

extension Ops {
    /// Per tile of `grid` (over the last two dimensions of NCHW `a` and `b`, same shape): the largest |a − b| over
    /// every batch item and channel in the tile (NaN counts as infinity). Result indexed by tile (row-major), written
    /// into `into` (resized to `grid.count`), so a per-stream caller reuses its array.
    public static func tileMaxAbsDifference(_ a: Tensor, _ b: Tensor, grid: TileGrid, into result: inout [Float]) {
        // Per tile row, a per-pixel-column running max over every plane and row is a contiguous (vectorizable)
        // stream; the tiles then reduce their columns.
        forEachTileRow(a, b, grid: grid, into: &result) { ty, out, scratch, pa, pb in
            let planes = a.n * a.c, plane = a.h * a.w, w = a.w
            let colMax = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: UInt32.self)
            colMax.update(repeating: 0, count: w)
            let y0 = ty * grid.tile.h, y1 = min(grid.height, y0 + grid.tile.h)
            for p in 0..<planes {
                for y in y0..<y1 {
                    let ra = pa + p * plane + y * w, rb = pb + p * plane + y * w
                    for x in 0..<w { colMax[x] = max(colMax[x], absBits(ra[x] - rb[x])) }
                }
            }
            for tx in 0..<grid.columns {
                var m: UInt32 = 0
                for x in (tx * grid.tile.w)..<min(w, (tx + 1) * grid.tile.w) { m = max(m, colMax[x]) }
                out[ty * grid.columns + tx] = absFloat(m)
            }
        }
    }

    /// |d| as its bit pattern: for non-negative floats the unsigned order is the float order, and every NaN lies
    /// above +infinity, so a plain (vectorisable) integer max is a NaN-sticky max of |a − b|.
    @inline(__always)
    static func absBits(_ d: Float) -> UInt32 { d.bitPattern & 0x7FFF_FFFF }

    /// The float of a max of `absBits`, NaN read as infinity (so a NaN is never taken for "unchanged").
    @inline(__always)
    static func absFloat(_ bits: UInt32) -> Float { bits > 0x7F80_0000 ? .infinity : Float(bitPattern: bits) }

    /// The frame shared by the per-tile difference ops: checks `a` and `b` against `grid`, sizes `result`, and calls
    /// `body(tileRow, result, columnScratch, a, b)` for every tile row, tile rows in parallel (each chunk with its
    /// own `a.w`-float column scratch).
    private static func forEachTileRow(
        _ a: Tensor, _ b: Tensor, grid: TileGrid, into result: inout [Float],
        _ body: (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>,
                 UnsafeMutablePointer<Float>) -> Void
    ) {
        precondition(a.shape == b.shape && a.rank == 4 && a.h == grid.height && a.w == grid.width,
                     "tile difference of \(a.shape) and \(b.shape) over \(grid)")
        a.checkValid(); b.checkValid()
        if result.count != grid.count { result = [Float](repeating: 0, count: grid.count) }
        let pa = a.ptr, pb = b.ptr, w = a.w
        result.withUnsafeMutableBufferPointer { res in
            let out = res.baseAddress!
            Parallel.forEach(grid.rows, cost: a.count) { tileRows in
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: w)
                defer { scratch.deallocate() }
                for ty in tileRows { body(ty, out, scratch, pa, pb) }
            }
        }
    }

    /// `tileMaxAbsDifference` restricted to `tiles` (any order, no duplicates): their entries of `result` get the
    /// largest |a − b| over the tile (NaN → infinity), every other entry 0. Costs in proportion to the listed tiles,
    /// for callers that know where a change can be (the tiles a producing layer recomputed).
    public static func tileMaxAbsDifference(_ a: Tensor, _ b: Tensor, grid: TileGrid, tiles: [Int], into result: inout [Float]) {
        precondition(a.shape == b.shape && a.rank == 4 && a.h == grid.height && a.w == grid.width,
                     "tile difference of \(a.shape) and \(b.shape) over \(grid)")
        a.checkValid(); b.checkValid()
        if result.count != grid.count { result = [Float](repeating: 0, count: grid.count) }
        result.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        guard !tiles.isEmpty else { return }
        let planes = a.n * a.c, plane = a.h * a.w, w = a.w
        let pa = a.ptr, pb = b.ptr
        // Neighbouring tiles of a row as one pixel span, planes in the outer loop: every plane is read in a few
        // contiguous runs (a tile-outer loop strides a whole plane per element, one cache miss per read). Each
        // span keeps a per-pixel-column running max (offset `at` into the scratch), reduced to tiles at the end.
        let spans = tileSpans(tiles, grid: grid)
        // Scratch offset of each span's columns.
        var offsets: [Int] = [], width = 0
        offsets.reserveCapacity(spans.count)
        for s in spans { offsets.append(width); width += s.n }
        let colMax = UnsafeMutablePointer<UInt32>.allocate(capacity: width)
        defer { colMax.deallocate() }
        colMax.update(repeating: 0, count: width)
        spans.withUnsafeBufferPointer { spans in
            Parallel.forEach(spans.count, cost: planes * width * grid.tile.h) { range in
                for p in 0..<planes {
                    for i in range {
                        let s = spans[i], m = colMax + offsets[i]
                        for y in s.y0..<s.y1 {
                            let ra = pa + p * plane + y * w + s.x0, rb = pb + p * plane + y * w + s.x0
                            for x in 0..<s.n { m[x] = max(m[x], absBits(ra[x] - rb[x])) }
                        }
                    }
                }
            }
        }
        result.withUnsafeMutableBufferPointer { res in
            for (s, at) in zip(spans, offsets) {
                let first = (s.y0 / grid.tile.h) * grid.columns + s.x0 / grid.tile.w
                for (k, lo) in stride(from: 0, to: s.n, by: grid.tile.w).enumerated() {
                    var m: UInt32 = 0
                    for x in lo..<min(s.n, lo + grid.tile.w) { m = max(m, colMax[at + x]) }
                    res[first + k] = absFloat(m)
                }
            }
        }
    }

    /// Per tile of `grid`: the largest mean |a − b| over a box of `block` x `block` pixels (boxes aligned to the
    /// tile's corner, clipped at its edges) and every batch item and channel. A noise-robust change measure for
    /// compressed video: one noisy pixel moves a box's mean by 1/(block²·channels) of its change, while a real
    /// object (a few pixels across) moves it fully. NaN counts as infinity. `block` 1 = the largest channel-mean.
    public static func tileBlockMeanAbsDifference(_ a: Tensor, _ b: Tensor, grid: TileGrid, block: Int,
                                                  into result: inout [Float]) {
        precondition(block >= 1, "tile block difference with block \(block)")
        forEachTileRow(a, b, grid: grid, into: &result) { ty, out, colSum, pa, pb in
            let planes = a.n * a.c, plane = a.h * a.w, w = a.w, cols = grid.columns
            for tx in 0..<cols { out[ty * cols + tx] = 0 }
            let y0 = ty * grid.tile.h, y1 = min(grid.height, y0 + grid.tile.h)
            // One band of box rows at a time: per-column sums over planes and the band's rows, then boxes.
            for by in stride(from: y0, to: y1, by: block) {
                let by1 = min(y1, by + block)
                colSum.update(repeating: 0, count: w)
                for p in 0..<planes {
                    for y in by..<by1 {
                        let ra = pa + p * plane + y * w, rb = pb + p * plane + y * w
                        for x in 0..<w { colSum[x] += abs(ra[x] - rb[x]) }
                    }
                }
                for tx in 0..<cols {
                    let x0 = tx * grid.tile.w, x1 = min(w, x0 + grid.tile.w)
                    var m = out[ty * cols + tx]
                    for bx in stride(from: x0, to: x1, by: block) {
                        let bx1 = min(x1, bx + block)
                        var s: Float = 0
                        for x in bx..<bx1 { s += colSum[x] }
                        let mean = s / Float(planes * (by1 - by) * (bx1 - bx))
                        m = mean > m ? mean : (mean != mean ? .infinity : m)
                    }
                    out[ty * cols + tx] = m
                }
            }
        }
    }

    /// Copies the pixels of `tiles` (ascending indices; all batch items and channels) from `source` into
    /// `destination` (same shape). Neighbouring tiles of a row are copied as one span.
    public static func copyTiles(_ tiles: [Int], grid: TileGrid, from source: Tensor, into destination: Tensor) {
        precondition(source.shape == destination.shape && source.rank == 4 && source.h == grid.height && source.w == grid.width,
                     "copy tiles of \(source.shape) into \(destination.shape) over \(grid)")
        source.checkValid(); destination.checkValid()
        let planes = source.n * source.c, plane = source.h * source.w, w = source.w
        let src = source.ptr, dst = destination.ptr
        // Spans (first row, rows, first column, columns) of the runs.
        let spans = tileSpans(tiles, grid: grid)
        spans.withUnsafeBufferPointer { spans in
            Parallel.forEach(planes, cost: planes * tiles.count * grid.tile.h * grid.tile.w) { range in
                for p in range {
                    for (y0, y1, x0, n) in spans {
                        for y in y0..<y1 {
                            let at = p * plane + y * w + x0
                            (dst + at).update(from: src + at, count: n)
                        }
                    }
                }
            }
        }
    }
}
