/// Tile-restricted spatial ops and tile runs: compute only some output tiles of a grid, bit-identical to the
/// dense op there (the temporal cache recomputes where its input changed).
extension TileGrid {
    /// Horizontal runs of consecutive tiles in `tiles` (ascending indices): (tile row, first tile column, tile count).
    /// Neighbouring tiles of one row share their rows of pixels, so ops walk a run as one span.
    public func runs(_ tiles: [Int]) -> [(row: Int, column: Int, count: Int)] {
        var out: [(row: Int, column: Int, count: Int)] = []
        for t in tiles {
            let ty = t / columns, tx = t % columns
            if let last = out.last, last.row == ty, last.column + last.count == tx {
                out[out.count - 1].count += 1
            } else {
                out.append((ty, tx, 1))
            }
        }
        return out
    }
}

extension Ops {
    /// Spans (first row, end row, first column, columns) of the pixel rows of `tiles` (any order) on `grid`,
    /// neighbouring tiles of a tile row merged.
    package static func tileSpans(_ tiles: [Int], grid: TileGrid) -> [(y0: Int, y1: Int, x0: Int, n: Int)] {
        grid.runs(tiles.sorted()).map { r in
            let y0 = r.row * grid.tile.h, x0 = r.column * grid.tile.w
            return (y0, min(grid.height, y0 + grid.tile.h), x0, min(grid.width, x0 + r.count * grid.tile.w) - x0)
        }
    }

    /// `maxPool2d` computed only on the output tiles `tiles` of `grid` (a grid over `out`'s height x width): the
    /// dense op's arithmetic in its order, so those pixels are bit-identical to it; the rest of `out` is left
    /// untouched (the temporal cache's kept output, recomputed where its input changed).
    public static func maxPool2d(_ x: Tensor, kernel: Size2, stride: Size2, padding: Size2 = 0, tiles: [Int],
                                 grid: TileGrid, into out: Tensor) {
        let os = maxPool2dShape(x.shape, kernel: kernel, stride: stride, padding: padding)
        precondition(out.shape == os && grid.height == os[2] && grid.width == os[3],
                     "max-pool tiles: output \(out.shape) (expected \(os)) over \(grid)")
        guard !tiles.isEmpty else { return }
        maxPool2d(x, kernel: kernel, stride: stride, padding: padding, spans: tileSpans(tiles, grid: grid), into: out)
    }

    /// `upsampleNearest` computed only on the output tiles `tiles` of `grid` (over `out`'s height x width),
    /// bit-identical there; the rest of `out` is left untouched.
    public static func upsampleNearest(_ x: Tensor, tiles: [Int], grid: TileGrid, into out: Tensor) {
        precondition(x.rank == 4 && out.rank == 4 && out.n == x.n && out.c == x.c && grid.height == out.h
                     && grid.width == out.w, "nearest tiles: \(x.shape) into \(out.shape) over \(grid)")
        guard !tiles.isEmpty else { return }
        upsampleNearest(x, spans: tileSpans(tiles, grid: grid), into: out)
    }
}
