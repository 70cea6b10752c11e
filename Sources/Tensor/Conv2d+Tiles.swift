/// Helpers for tile-restricted recomputation (the temporal FPN cache): which output pixels an input change can
/// affect, which tiles cover a region, per-tile change of a tensor, and copying tiles between tensors.
extension Conv2d {
    /// The output rows and columns whose receptive field intersects the input region `rows` x `cols`
    /// (input pixels), for an input of `inputHeight` x `inputWidth`. Empty ranges when nothing is affected.
    public func affectedOutputs(rows: Range<Int>, cols: Range<Int>, inputHeight: Int, inputWidth: Int)
        -> (rows: Range<Int>, cols: Range<Int>) {
        let o = outputShape([1, inChannels, inputHeight, inputWidth])
        return (Self.affected(rows, kernel: kernel.h, stride: stride.h, padding: padding.h, dilation: dilation.h, outputs: o[2]),
                Self.affected(cols, kernel: kernel.w, stride: stride.w, padding: padding.w, dilation: dilation.w, outputs: o[3]))
    }

    /// Output o reads inputs o·s − p + j·d for j in 0..<k: it is affected by [a, b) when
    /// o·s − p ≤ b − 1 and o·s − p + d(k−1) ≥ a.
    static func affected(_ r: Range<Int>, kernel k: Int, stride s: Int, padding p: Int, dilation d: Int, outputs: Int) -> Range<Int> {
        guard !r.isEmpty else { return 0..<0 }
        let lo = max(0, ceilDiv(r.lowerBound + p - d * (k - 1), s))
        let hi = min(outputs, floorDiv(r.upperBound - 1 + p, s) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    private static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    private static func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
}

extension TileGrid {
    /// Indices (ascending) of the tiles that intersect the pixel region `rows` x `cols`.
    public func tiles(covering rows: Range<Int>, cols: Range<Int>) -> [Int] {
        let r = rows.clamped(to: 0..<height), c = cols.clamped(to: 0..<width)
        guard !r.isEmpty, !c.isEmpty else { return [] }
        var out: [Int] = []
        for ty in (r.lowerBound / tile.h)...((r.upperBound - 1) / tile.h) {
            for tx in (c.lowerBound / tile.w)...((c.upperBound - 1) / tile.w) { out.append(ty * columns + tx) }
        }
        return out
    }
}

extension Ops {
    /// Per tile of `grid` (over the last two dimensions of NCHW `a` and `b`, same shape): the largest |a − b| over
    /// every batch item and channel in the tile (NaN counts as infinity). Result indexed by tile (row-major), written into `into`
    /// (resized to `grid.count`), so a per-stream caller reuses its array.
    public static func tileMaxAbsDifference(_ a: Tensor, _ b: Tensor, grid: TileGrid, into result: inout [Float]) {
        precondition(a.shape == b.shape && a.rank == 4 && a.h == grid.height && a.w == grid.width,
                     "tile difference of \(a.shape) and \(b.shape) over \(grid)")
        a.checkValid(); b.checkValid()
        if result.count != grid.count { result = [Float](repeating: 0, count: grid.count) }
        let planes = a.n * a.c, plane = a.h * a.w, w = a.w, cols = grid.columns
        let pa = a.ptr, pb = b.ptr
        result.withUnsafeMutableBufferPointer { res in
            let out = res.baseAddress!
            // Tile rows are independent: parallel over them, each scanning all planes.
            Parallel.forEach(grid.rows, cost: planes * plane) { tileRows in
                for ty in tileRows {
                    for tx in 0..<cols { out[ty * cols + tx] = 0 }
                    let y0 = ty * grid.tile.h, y1 = min(grid.height, y0 + grid.tile.h)
                    for p in 0..<planes {
                        for y in y0..<y1 {
                            let ra = pa + p * plane + y * w, rb = pb + p * plane + y * w
                            for tx in 0..<cols {
                                let x0 = tx * grid.tile.w, x1 = min(w, x0 + grid.tile.w)
                                var m = out[ty * cols + tx]
                                for x in x0..<x1 {
                                    // A NaN difference counts as an infinite change (never as "unchanged").
                                    let d = abs(ra[x] - rb[x])
                                    m = d > m ? d : (d != d ? .infinity : m)
                                }
                                out[ty * cols + tx] = m
                            }
                        }
                    }
                }
            }
        }
    }

    /// Copies the pixels of `tiles` (all batch items and channels) from `source` into `destination` (same shape).
    public static func copyTiles(_ tiles: [Int], grid: TileGrid, from source: Tensor, into destination: Tensor) {
        precondition(source.shape == destination.shape && source.rank == 4 && source.h == grid.height && source.w == grid.width,
                     "copy tiles of \(source.shape) into \(destination.shape) over \(grid)")
        source.checkValid(); destination.checkValid()
        let planes = source.n * source.c, plane = source.h * source.w, w = source.w
        let src = source.ptr, dst = destination.ptr
        tiles.withUnsafeBufferPointer { tiles in
            Parallel.forEach(planes, cost: planes * tiles.count * grid.tile.h * grid.tile.w) { range in
                for p in range {
                    for t in tiles {
                        let r = grid.rect(t)
                        for y in r.rows {
                            let at = p * plane + y * w + r.cols.lowerBound
                            (dst + at).update(from: src + at, count: r.cols.count)
                        }
                    }
                }
            }
        }
    }
}
