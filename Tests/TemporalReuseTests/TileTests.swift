import TestSupport
import XCTest
@testable import Tensor
@testable import TemporalReuse

/// The helpers the temporal FPN cache builds on, and the property it relies on: recomputing only the output tiles
/// an input change can reach, on top of the previous output, gives the dense result of the new input.
final class TileTests: XCTestCase {
    func testAffectedOutputsContainEveryOutputThatReadsTheRegion() {
        var rng = TestRandom(seed: 81)
        for _ in 0..<300 {
            let k = 1 + rng.int(5), s = 1 + rng.int(3), d = 1 + rng.int(2), p = rng.int(k)
            let size = 8 + rng.int(20)
            let a = rng.int(size), b = a + 1 + rng.int(size - a)
            let outputs = (size + 2 * p - d * (k - 1) - 1) / s + 1
            guard outputs > 0 else { continue }
            let r = Conv2d.affected(a..<b, kernel: k, stride: s, padding: p, dilation: d, outputs: outputs)
            for o in 0..<outputs {
                let taps = (0..<k).map { o * s - p + $0 * d }
                let readsRegion = taps.contains { (a..<b).contains($0) }
                let hull = taps.first! <= b - 1 && taps.last! >= a
                if readsRegion { XCTAssertTrue(r.contains(o), "k\(k) s\(s) d\(d) p\(p) [\(a),\(b)): output \(o) missing from \(r)") }
                XCTAssertEqual(r.contains(o), hull, "k\(k) s\(s) d\(d) p\(p) [\(a),\(b)): output \(o) vs \(r)")
            }
        }
        let conv = Conv2d(weight: Tensor(shape: [2, 3, 3, 3]), stride: 2, padding: 1)
        let r = conv.affectedOutputs(rows: 10..<12, cols: 0..<1, inputHeight: 40, inputWidth: 30)
        XCTAssertEqual(r.rows, 5..<7)   // outputs 5 (taps 9,10,11) and 6 (taps 11,12,13)
        XCTAssertEqual(r.cols, 0..<1)
    }

    func testTilesCoveringARegion() {
        let g = TileGrid(height: 37, width: 29, tile: 8)   // 5 x 4 tiles
        XCTAssertEqual(g.tiles(covering: 7..<9, cols: 15..<17), [1, 2, 5, 6])
        XCTAssertEqual(g.tiles(covering: 36..<50, cols: 28..<29), [19])
        XCTAssertEqual(g.tiles(covering: 3..<3, cols: 0..<29), [])
        XCTAssertEqual(g.tiles(covering: -5..<100, cols: -1..<100).count, 20)
    }

    func testTileDifferenceAndCopy() {
        var rng = TestRandom(seed: 82)
        let a = rng.tensor([2, 3, 19, 23]), b = Tensor(shape: a.shape)
        b.copy(from: a)
        let grid = TileGrid(height: 19, width: 23, tile: Size2(8, 10))   // 3 x 3 tiles
        b[1, 2, 17, 21] += 0.5      // tile 8
        b[0, 0, 9, 3] -= 0.25       // tile 3
        b[0, 1, 0, 12] = .nan       // tile 1
        var diff: [Float] = []
        Ops.tileMaxAbsDifference(a, b, grid: grid, into: &diff)
        XCTAssertEqual(diff.count, 9)
        XCTAssertEqual(diff[8], 0.5, accuracy: 1e-6)
        XCTAssertEqual(diff[3], 0.25, accuracy: 1e-6)
        XCTAssertEqual(diff[1], .infinity)
        XCTAssertEqual(diff.enumerated().filter { ![1, 3, 8].contains($0.offset) }.map(\.element), [Float](repeating: 0, count: 6))

        let dst = Tensor(shape: a.shape, repeating: -7)
        Ops.copyTiles([3, 8], grid: grid, from: a, into: dst)
        XCTAssertEqual(dst[1, 1, 10, 0], a[1, 1, 10, 0])     // tile 3
        XCTAssertEqual(dst[0, 2, 18, 22], a[0, 2, 18, 22])   // tile 8 corner
        XCTAssertEqual(dst[0, 2, 0, 0], -7)                  // tile 0 untouched
        XCTAssertEqual(dst.array.filter { $0 != -7 }.count, 2 * 3 * (8 * 10 + 3 * 3))
    }

    func testBlockMeanDifferenceIgnoresOnePixelButNotABox() {
        var rng = TestRandom(seed: 83)
        let a = rng.tensor([1, 3, 16, 24]), b = Tensor(shape: a.shape)
        b.copy(from: a)
        let grid = TileGrid(height: 16, width: 24, tile: Size2(8, 8))   // 2 x 3 tiles, 2x2 boxes of 4 per tile
        b[0, 1, 2, 3] += 4.8                         // tile 0: one pixel of one channel
        for c in 0..<3 { for y in 8..<12 { for x in 20..<24 { b[0, c, y, x] -= 0.5 } } }   // tile 5: a whole box
        b[0, 0, 1, 9] = .nan                         // tile 1
        var diff: [Float] = []
        Ops.tileBlockMeanAbsDifference(a, b, grid: grid, block: 4, into: &diff)
        XCTAssertEqual(diff.count, 6)
        XCTAssertEqual(diff[0], 4.8 / 48, accuracy: 1e-5, "one pixel's change spread over a 4x4x3 box")
        XCTAssertEqual(diff[5], 0.5, accuracy: 1e-5, "a box changed throughout keeps its full change")
        XCTAssertEqual(diff[1], .infinity)
        XCTAssertEqual([diff[2], diff[3], diff[4]], [0, 0, 0])
        // Block 1 = the largest channel mean per pixel.
        Ops.tileBlockMeanAbsDifference(a, b, grid: grid, block: 1, into: &diff)
        XCTAssertEqual(diff[0], 4.8 / 3, accuracy: 1e-5)
        // Boxes are clipped at a tile's edge: a 3-wide tile (width 7, tile 4) averages over what it has.
        let c = Tensor(shape: [1, 1, 4, 7], repeating: 0), d = Tensor(shape: [1, 1, 4, 7], repeating: 0)
        for y in 0..<4 { for x in 4..<7 { d[0, 0, y, x] = 1 } }
        Ops.tileBlockMeanAbsDifference(c, d, grid: TileGrid(height: 4, width: 7, tile: 4), block: 4, into: &diff)
        XCTAssertEqual(diff, [0, 1])
    }

    func testRunsMergeNeighbouringTilesOfARow() {
        let g = TileGrid(height: 12, width: 20, tile: 4)   // 3 x 5 tiles
        let runs = g.runs([0, 1, 2, 4, 5, 8, 9, 14])
        XCTAssertEqual(runs.map { [$0.row, $0.column, $0.count] }, [[0, 0, 3], [0, 4, 1], [1, 0, 1], [1, 3, 2], [2, 4, 1]])
        // A tile-restricted conv over merged runs equals the dense conv on those tiles.
        var rng = TestRandom(seed: 84)
        let x = rng.tensor([1, 3, 12, 20])
        let conv = Conv2d(weight: rng.tensor([5, 3, 3, 3]), bias: [0.1, 0.2, 0.3, -0.1, 0], padding: 1, activation: .relu)
        let ws = Workspace()
        let dense = conv(x, in: ws)
        let kept = Tensor(shape: dense.shape, repeating: 9)
        conv.forward(x, tiles: [0, 1, 2, 4, 5, 8, 9, 14], grid: g, into: kept, workspace: ws)
        for t in [0, 1, 2, 4, 5, 8, 9, 14] {
            let r = g.rect(t)
            for o in 0..<5 { for y in r.rows { for xx in r.cols {
                XCTAssertEqual(kept[0, o, y, xx], dense[0, o, y, xx], accuracy: 1e-5)
            } } }
        }
        XCTAssertEqual(kept[0, 0, 0, 12], 9, "tile 3 was not asked for")
    }

    func testRecomputingAffectedTilesGivesTheDenseResultOfTheNewInput() {
        var rng = TestRandom(seed: 83)
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (1, 1, 0), (7, 2, 3)] {
            let conv = Conv2d(weight: rng.tensor([5, 4, k, k]), bias: rng.floats(5), stride: Size2(s, s), padding: Size2(p, p),
                              activation: .relu)
            let ws = Workspace()
            let x1 = rng.tensor([1, 4, 45, 38])
            let kept = conv(x1, in: ws)
            // A new frame: one rectangular patch changed.
            let x2 = Tensor(shape: x1.shape); x2.copy(from: x1)
            let rows = 20..<27, cols = 3..<9
            for c in 0..<4 { for y in rows { for x in cols { x2[0, c, y, x] = rng.float() } } }
            let grid = TileGrid(height: kept.h, width: kept.w, tile: 8)
            let affected = conv.affectedOutputs(rows: rows, cols: cols, inputHeight: 45, inputWidth: 38)
            let tiles = grid.tiles(covering: affected.rows, cols: affected.cols)
            XCTAssertLessThan(tiles.count, grid.count, "the test must leave tiles untouched")
            conv.forward(x2, tiles: tiles, grid: grid, into: kept, workspace: ws)
            let dense = conv(x2, in: ws)
            // Same arithmetic, but the GEMM's column blocking differs between the two calls: equal to float
            // rounding, relative to the output's magnitude.
            assertClose(kept, dense.array.map(Double.init), shape: dense.shape, tol: 1e-6, "k\(k) s\(s): tiles \(tiles)")
        }
    }

    /// Depthwise tiles take a per-pixel path for short segments clear of the padding and the row path otherwise;
    /// both sum the taps in the same order, so a tile-restricted pass equals the dense one bit for bit (edge tiles,
    /// interior tiles, merged runs, stride 2, a residual).
    func testDepthwiseTilesEqualDenseBitForBit() {
        var rng = TestRandom(seed: 91)
        for (s, residual) in [(1, false), (2, false), (1, true)] {
            let conv = Conv2d(weight: rng.tensor([6, 1, 3, 3]), bias: rng.floats(6), stride: Size2(s, s), padding: 1,
                              groups: 6, activation: .relu)
            let ws = Workspace()
            let x = rng.tensor([1, 6, 41, 70])
            let os = conv.outputShape(x.shape)
            let r = residual ? rng.tensor(os) : nil
            let dense = conv(x, residual: r, in: ws).array
            let kept = Tensor(shape: os)
            let grid = TileGrid(height: os[2], width: os[3], tile: 2)
            // Corners and edges (padding), isolated interior tiles, and a run of 12 tiles (a 24-pixel segment).
            var tiles = [0, grid.columns - 1, grid.count - 1, grid.columns * 3 + 5, grid.columns * 5 + 9]
            for tx in 2..<14 where tx < grid.columns { tiles.append(grid.columns * 7 + tx) }
            tiles = Array(Set(tiles)).sorted()
            conv.forward(x, tiles: tiles, grid: grid, residual: r, into: kept, workspace: ws)
            var compared = 0
            for t in tiles {
                let rect = grid.rect(t)
                for c in 0..<6 { for y in rect.rows { for xx in rect.cols {
                    XCTAssertEqual(kept[0, c, y, xx], dense[(c * os[2] + y) * os[3] + xx], "s\(s) tile \(t) (\(c), \(y), \(xx))")
                    compared += 1
                } } }
            }
            XCTAssertGreaterThan(compared, 6 * 4 * 15)
        }
    }

    /// `forwardGated` compares the GEMM's staged results with the kept output directly; it must commit exactly the
    /// tiles (and values) that computing into a scratch, comparing with `tileMaxAbsDifference` and copying the
    /// tiles above the gate gives: a changed patch commits, identical tiles and a sub-gate change do not, a NaN in
    /// the kept output counts as a change; with residual + ReLU, ReLU, none; stride 2; ragged tiles; narrow chunks;
    /// 16 channels, where a stride-1 3x3 conv runs its Winograd form (on the own kernels) and the gate reads the
    /// output planes of the Winograd tile pass.
    func testGatedTileForwardCommitsWhatTheScratchPathWould() {
        var rng = TestRandom(seed: 97)
        let cases: [(k: Int, s: Int, act: Activation, residual: Bool, tile: Size2, chunk: Int?, channels: Int)] = [
            (3, 1, .relu, true, Size2(2, 2), nil, 5), (3, 1, .relu, false, Size2(1, 1), 7, 5),
            (3, 2, .relu, false, Size2(3, 2), nil, 5), (1, 1, .none, false, Size2(2, 3), 5, 5),
            (3, 1, .none, true, Size2(4, 4), 11, 5), (3, 1, .relu, true, Size2(2, 2), nil, 16),
            (3, 1, .none, false, Size2(3, 2), nil, 16),
        ]
        for (i, c) in cases.enumerated() {
            let conv = Conv2d(weight: rng.tensor([c.channels + 1, c.channels, c.k, c.k]), bias: rng.floats(c.channels + 1),
                              stride: Size2(c.s, c.s), padding: Size2(c.k / 2, c.k / 2), activation: c.act)
            conv.chunkColumnsForTesting = c.chunk
            let ws = Workspace()
            let old = rng.tensor([1, c.channels, 30, 27])
            if c.channels == 16 && Compute.path.isa != nil {
                XCTAssertTrue(conv.runsWinograd(shape: old.shape), "case \(i): the Winograd form")
            }
            let os = conv.outputShape(old.shape)
            let r = c.residual ? rng.tensor(os) : nil
            let kept = conv(old, residual: r, in: ws)
            // New frame: a patch changed, and a far corner moved by far less than the gate.
            let x = Tensor(shape: old.shape); x.copy(from: old)
            for ch in 0..<c.channels { for y in 3..<7 { for xx in 4..<9 { x[0, ch, y, xx] = rng.float() } } }
            for ch in 0..<c.channels { for y in 24..<30 { for xx in 20..<27 { x[0, ch, y, xx] += 1e-6 } } }
            let grid = TileGrid(height: os[2], width: os[3], tile: c.tile)
            kept[0, 2, os[2] / 2, os[3] / 2] = .nan     // an old NaN: |new − NaN| is a change
            let nanTile = grid.tiles(covering: (os[2] / 2)..<(os[2] / 2 + 1), cols: (os[3] / 2)..<(os[3] / 2 + 1))[0]
            let tiles = Array(stride(from: grid.count - 1, through: 0, by: -1).filter { $0 % 3 != 1 || $0 == nanTile })   // any order
            let gate: Float = 1e-3
            // The scratch path.
            let scratch = Tensor(shape: os); scratch.copy(from: kept)
            conv.forward(x, tiles: tiles, grid: grid, residual: r, into: scratch, workspace: ws)
            var diff: [Float] = []
            Ops.tileMaxAbsDifference(scratch, kept, grid: grid, tiles: tiles, into: &diff)
            let expected = tiles.sorted().filter { diff[$0] > gate }
            let reference = Tensor(shape: os); reference.copy(from: kept)
            Ops.copyTiles(expected, grid: grid, from: scratch, into: reference)
            // The fused path.
            let out = Tensor(shape: os); out.copy(from: kept)
            let result = conv.forwardGated(x, tiles: tiles, grid: grid, residual: r, into: out, gate: gate, workspace: ws)
            XCTAssertEqual(result.committed, expected, "case \(i)")
            XCTAssertGreaterThan(expected.count, 1, "case \(i): the patch and the NaN commit")
            XCTAssertLessThan(expected.count, tiles.count / 2, "case \(i): most listed tiles did not move past the gate")
            XCTAssertTrue(expected.contains(nanTile), "case \(i): the NaN tile commits")
            let a = out.array, b = reference.array
            XCTAssertEqual(a.count, b.count)
            for j in a.indices where !(a[j] == b[j] || (a[j].isNaN && b[j].isNaN)) {
                XCTFail("case \(i): element \(j) \(a[j]) vs \(b[j])"); break
            }
        }
    }

    /// Tile passes round their GEMM width up to whole sgemm panels (`Conv2d.gemmColumns`); the extra columns must
    /// change nothing: every width 1-40 of 1-pixel tiles, plain and gated, one chunk and 7-column chunks (a padded
    /// chunk spills into the next one's columns, a padded last chunk must stay inside its staged row), two groups,
    /// gives the unpadded pass's values (to float rounding) and leaves the other pixels alone.
    func testPaddedNarrowGEMMsGiveTheUnpaddedResult() {
        XCTAssertEqual([1, 4, 5, 15, 16, 17, 20, 21, 31, 33, 37].map(Conv2d.gemmColumns), [1, 4, 16, 16, 16, 17, 20, 32, 32, 33, 48])
        var rng = TestRandom(seed: 101)
        for (groups, chunk) in [(1, nil), (1, 7), (2, nil), (2, 7)] as [(Int, Int?)] {
            let conv = Conv2d(weight: rng.tensor([8, 6 / groups, 3, 3]), bias: rng.floats(8), padding: 1, groups: groups,
                              activation: .relu)
            conv.chunkColumnsForTesting = chunk
            let ws = Workspace()
            let x = rng.tensor([1, 6, 7, 9]), old = rng.tensor([1, 6, 7, 9])
            let os = conv.outputShape(x.shape)
            let kept = conv(old, in: ws)
            let grid = TileGrid(height: os[2], width: os[3], tile: 1)
            let order = (0..<grid.count).filter { $0 % 3 == 0 } + (0..<grid.count).filter { $0 % 3 != 0 }
            for n in 1...40 {
                let tiles = Array(order.prefix(n))
                var outs: [[Float]] = []
                for padded in [true, false] {
                    conv.padsNarrowGEMMs = padded
                    let plain = Tensor(shape: os); plain.copy(from: kept)
                    conv.forward(x, tiles: tiles, grid: grid, into: plain, workspace: ws)
                    let gated = Tensor(shape: os); gated.copy(from: kept)
                    let committed = conv.forwardGated(x, tiles: tiles, grid: grid, into: gated, gate: 0, workspace: ws).committed
                    XCTAssertEqual(committed.count, n, "groups \(groups) chunk \(String(describing: chunk)) n \(n): every tile changed")
                    outs.append(plain.array + gated.array)
                }
                // OpenBLAS's edge kernels sum in another order than its full panels: equal to float rounding.
                let scale = outs[1].map(abs).max()!
                let worst = zip(outs[0], outs[1]).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-6 * scale, "groups \(groups) chunk \(String(describing: chunk)) n \(n)")
                let k = kept.array, a = outs[0]
                let untouched = (0..<k.count).filter { !tiles.contains($0 % (os[2] * os[3])) }
                XCTAssertTrue(untouched.allSatisfy { a[$0] == k[$0] && a[k.count + $0] == k[$0] }, "n \(n): pixels outside the tiles kept")
                XCTAssertTrue(tiles.contains { a[$0] != k[$0] }, "n \(n): the tiles were recomputed")
            }
        }
    }

    func testRestrictedTileDifferenceEqualsTheFullOneOnTheListedTiles() {
        var rng = TestRandom(seed: 83)
        let a = rng.tensor([1, 5, 21, 26]), b = Tensor(shape: a.shape)
        b.copy(from: a)
        for (c, y, x, d) in [(0, 0, 0, Float(0.5)), (4, 20, 25, -2), (2, 9, 13, 0.125), (1, 10, 14, 3)] { b[0, c, y, x] += d }
        b[0, 3, 5, 20] = .nan
        let grid = TileGrid(height: 21, width: 26, tile: Size2(3, 4))   // 7 x 7 tiles, clipped at the edges
        var full: [Float] = []
        Ops.tileMaxAbsDifference(a, b, grid: grid, into: &full)
        // Any order; neighbours of a row merge into one span, lone tiles and the clipped corner stay apart.
        let listed = [48, 0, 22, 23, 24, 8, 1, 12, 47]
        var part: [Float] = [7, 7]
        Ops.tileMaxAbsDifference(a, b, grid: grid, tiles: listed, into: &part)
        XCTAssertEqual(part.count, grid.count)
        for t in 0..<grid.count {
            if listed.contains(t) {
                XCTAssertEqual(part[t], full[t], "tile \(t)")
            } else {
                XCTAssertEqual(part[t], 0, "tile \(t) not listed")
            }
        }
        XCTAssertEqual(part[0], 0.5, accuracy: 1e-6)
        XCTAssertEqual(part[48], 2, accuracy: 1e-6)
        XCTAssertEqual(part[24], 3, accuracy: 1e-6)     // (9, 13) and (10, 14): tile row 3, column 3
        XCTAssertEqual(part[23], 0)
        XCTAssertEqual(part[12], .infinity)             // the NaN at (5, 20): tile row 1, column 5
    }

    func testMaxPoolAndUpsampleOnTilesEqualDenseBitForBitAndLeaveTheRestAlone() {
        var rng = TestRandom(seed: 84)
        let x = rng.tensor([2, 3, 23, 30])
        x[1, 2, 4, 7] = .nan
        for (kernel, stride, padding) in [(Size2(3, 3), Size2(2, 2), Size2(1, 1)), (Size2(1, 1), Size2(2, 2), Size2(0, 0)),
                                          (Size2(2, 3), Size2(1, 2), Size2(1, 1))] {
            let os = Ops.maxPool2dShape(x.shape, kernel: kernel, stride: stride, padding: padding)
            let dense = Tensor(shape: os)
            Ops.maxPool2d(x, kernel: kernel, stride: stride, padding: padding, into: dense)
            let grid = TileGrid(height: os[2], width: os[3], tile: Size2(2, 3))
            let tiles = [grid.count - 1, 0, 1, 2, grid.columns + 4, grid.columns * 2]
            let kept = Tensor(shape: os, repeating: -9)
            Ops.maxPool2d(x, kernel: kernel, stride: stride, padding: padding, tiles: tiles, grid: grid, into: kept)
            assertTiles(kept, dense, grid: grid, tiles: tiles, untouched: -9, "max-pool \(kernel)/\(stride) pad \(padding)")
        }
        for (h, w) in [(46, 60), (31, 47), (12, 13)] {
            let dense = Tensor(shape: [2, 3, h, w])
            Ops.upsampleNearest(x, into: dense)
            let grid = TileGrid(height: h, width: w, tile: Size2(4, 5))
            let tiles = [3, 2, grid.count - 1, grid.columns + 1]
            let kept = Tensor(shape: dense.shape, repeating: -9)
            Ops.upsampleNearest(x, tiles: tiles, grid: grid, into: kept)
            assertTiles(kept, dense, grid: grid, tiles: tiles, untouched: -9, "nearest to \(h)x\(w)")
        }
    }

    /// `got` equals `ref` bit for bit (NaN where NaN) inside `tiles`, and holds `untouched` elsewhere.
    private func assertTiles(_ got: Tensor, _ ref: Tensor, grid: TileGrid, tiles: [Int], untouched: Float, _ what: String) {
        var inside = Set<Int>()
        for t in tiles { let r = grid.rect(t); for y in r.rows { for x in r.cols { inside.insert(y * grid.width + x) } } }
        var checked = 0
        for n in 0..<got.n {
            for c in 0..<got.c {
                for y in 0..<got.h {
                    for x in 0..<got.w {
                        let g = got[n, c, y, x], r = ref[n, c, y, x]
                        if inside.contains(y * grid.width + x) {
                            XCTAssertEqual(g.bitPattern, r.bitPattern, "\(what): (\(n), \(c), \(y), \(x)) \(g) vs \(r)")
                            checked += 1
                        } else {
                            XCTAssertEqual(g, untouched, "\(what): (\(n), \(c), \(y), \(x)) written outside the tiles")
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }
}
