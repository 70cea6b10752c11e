import CKernels

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

/// A grid of rectangular tiles over a conv output of `height` x `width` (edge tiles may be smaller).
/// Tile index = row * columns + column (row-major).
public struct TileGrid: Hashable, Sendable, CustomStringConvertible {
    /// Output height covered.
    public let height: Int
    /// Output width covered.
    public let width: Int
    /// Tile size (rows, columns of pixels).
    public let tile: Size2
    /// Number of tile rows.
    public var rows: Int { (height + tile.h - 1) / tile.h }
    /// Number of tile columns.
    public var columns: Int { (width + tile.w - 1) / tile.w }
    /// Number of tiles.
    public var count: Int { rows * columns }

    /// A grid over an output of `height` x `width` pixels with tiles of `tile` (default 16x16).
    public init(height: Int, width: Int, tile: Size2 = 16) {
        precondition(height > 0 && width > 0 && tile.h > 0 && tile.w > 0, "bad tile grid \(height)x\(width) / \(tile)")
        self.height = height; self.width = width; self.tile = tile
    }

    /// The pixel rows and columns covered by tile `index`.
    public func rect(_ index: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        precondition(index >= 0 && index < count, "tile \(index) outside grid of \(count)")
        let ty = index / columns, tx = index % columns
        return (ty * tile.h..<min(height, (ty + 1) * tile.h), tx * tile.w..<min(width, (tx + 1) * tile.w))
    }

    /// `64x80 / 16x16 (4x5 tiles)`.
    public var description: String { "\(height)x\(width) / \(tile) (\(rows)x\(columns) tiles)" }
}

/// One tile-restricted pass's staged results, handed to a `StagedCommit` before anything is written: `stage` holds
/// `[outChannels, columns]` rows `stride` apart (bias, residual and activation not applied yet), in the column
/// order of `segments` (quadruples output row, first output column, length, first staged column). `planar`: the
/// stage is the pass's output planes `[outChannels, ho, wo]` (`columns` = `stride` = ho·wo, a segment's column is
/// its first pixel's offset), as the Winograd tile pass leaves it.
package struct StagedResults {
    package let conv: Conv2d
    package let stage: UnsafeMutablePointer<Float>
    package let columns: Int, stride: Int
    package let segments: UnsafeMutablePointer<Int>
    package let segmentCount: Int
    /// The image's output planes `[outChannels, ho, wo]` and its residual (same layout), if any.
    package let out: UnsafeMutablePointer<Float>
    package let residual: UnsafeMutablePointer<Float>?
    package let ho: Int, wo: Int
    package var planar = false
}

extension Ops {
    /// The pixels of `count` segments (quadruples oy, ox0, length, column) as row spans (each listed pixel row
    /// from its first to its last listed column) and a byte mask per output pixel (`ho`·`wo`), for `gatePlanes`.
    package static func planarSpans(_ seg: UnsafePointer<Int>, count: Int, ho: Int, wo: Int)
        -> (rows: [Int32], x0: [Int32], x1: [Int32], mask: [UInt8]) {
        var mask = [UInt8](repeating: 0, count: ho * wo)
        var lo = [Int](repeating: .max, count: ho), hi = [Int](repeating: 0, count: ho)
        mask.withUnsafeMutableBufferPointer { m in
            for s in 0..<count where seg[4 * s + 2] > 0 {
                let y = seg[4 * s], a = seg[4 * s + 1], b = a + seg[4 * s + 2]
                lo[y] = min(lo[y], a); hi[y] = max(hi[y], b)
                (m.baseAddress! + y * wo + a).update(repeating: 1, count: b - a)
            }
        }
        var rows: [Int32] = [], x0: [Int32] = [], x1: [Int32] = []
        for y in 0..<ho where hi[y] > lo[y] { rows.append(Int32(y)); x0.append(Int32(lo[y])); x1.append(Int32(hi[y])) }
        return (rows, x0, x1, mask)
    }

    /// Output gating of a `planar` staged pass, over the pixels of the row spans (`rows[i]`, columns
    /// `x0[i]..<x1[i]`) whose `mask` byte (one per output pixel) is set: with `pixelMax` (ho·wo values), raises
    /// each pixel's entry to the largest absolute-value bits of act(stage + bias + residual) − out over the
    /// channels (a NaN difference sorts above infinity); without, writes act(stage + bias + residual) into out,
    /// the same bits as `Conv2d.scatter`. Row spans split over the cores.
    package static func gatePlanes(_ staged: StagedResults, rows: [Int32], x0: [Int32], x1: [Int32],
                                   mask: [UInt8], pixelMax: UnsafeMutablePointer<UInt32>?) {
        precondition(staged.planar, "gatePlanes needs a stage in output planes")
        let conv = staged.conv, plane = staged.ho * staged.wo
        precondition(mask.count == plane && rows.count == x0.count && rows.count == x1.count, "gatePlanes: bad spans")
        let relu: Int32 = conv.activation == .relu ? 1 : 0
        var pixels = 0
        for i in rows.indices { pixels += Int(x1[i] - x0[i]) }
        conv.withBias { bias in
            rows.withUnsafeBufferPointer { r in x0.withUnsafeBufferPointer { a in x1.withUnsafeBufferPointer { b in
                mask.withUnsafeBufferPointer { m in
                    Parallel.forEach(rows.count, cost: conv.outChannels * pixels) { range in
                        let cout = Int32(conv.outChannels), wo = Int32(staged.wo), n = Int32(range.count)
                        let (rp, ap, bp) = (r.baseAddress! + range.lowerBound, a.baseAddress! + range.lowerBound,
                                            b.baseAddress! + range.lowerBound)
                        if let pixelMax {
                            fpn_gate_max_planes(layoutISA, cout, wo, rp, ap, bp, n, m.baseAddress!, staged.stage,
                                                staged.stride, staged.out, staged.residual, plane,
                                                bias?.baseAddress, relu, pixelMax)
                        } else {
                            fpn_gate_commit_planes(layoutISA, cout, wo, rp, ap, bp, n, m.baseAddress!, staged.stage,
                                                   staged.stride, staged.out, staged.residual, plane,
                                                   bias?.baseAddress, relu)
                        }
                    }
                }
            } } }
        }
    }
}

/// Decides which staged results of a tile-restricted pass reach the output (output gating).
package protocol StagedCommit: AnyObject {
    func commit(_ staged: StagedResults)
}
