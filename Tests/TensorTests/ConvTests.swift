import CKernels
import TestSupport
import XCTest
@testable import Tensor

final class ConvTests: XCTestCase {
    struct Case {
        var n = 1, c = 3, h = 11, w = 13, oc = 5, k = Size2(3, 3)
        var stride: Size2 = 1, padding: Size2 = 0, dilation: Size2 = 1, groups = 1, bias = true, relu = false
    }

    private func check(_ t: Case, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        var rng = TestRandom(seed: seed)
        let x = rng.tensor([t.n, t.c, t.h, t.w])
        let wt = rng.tensor([t.oc, t.c / t.groups, t.k.h, t.k.w])
        let b = t.bias ? rng.floats(t.oc) : nil
        let conv = Conv2d(weight: wt, bias: b, stride: t.stride, padding: t.padding, dilation: t.dilation,
                          groups: t.groups, activation: t.relu ? .relu : .none)
        let ref = Ref.conv2d(x, wt, bias: b, stride: t.stride, padding: t.padding, dilation: t.dilation, groups: t.groups, relu: t.relu)
        // Both ways of feeding the GEMM: im2col gathered while packing (the default), and the im2col matrix. The
        // packing only copies values into the same places, so both give the same bits.
        var outputs: [[Float]] = []
        for implicit in [true, false] {
            conv.implicitIm2col = implicit
            let y = conv(x, in: Workspace())
            assertClose(y, ref.data, shape: ref.shape, "conv \(t), implicit im2col \(implicit)", file: file, line: line)
            outputs.append(y.array)
        }
        XCTAssertEqual(outputs[0], outputs[1], "conv \(t): implicit and explicit im2col differ", file: file, line: line)
        XCTAssertEqual(conv.outputShape(x.shape), ref.shape, file: file, line: line)
    }

    /// Products big enough to be split over the cores, so a thread's columns start mid output row; widths that are
    /// not multiples of the kernels' panel width; stride, dilation and padding at the borders.
    func testLargeConvolutionsSplitMidRowMatchTheReference() {
        check(Case(c: 16, h: 45, w: 67, oc: 40, k: 3, padding: 1, relu: true), seed: 31)
        check(Case(c: 9, h: 41, w: 53, oc: 33, k: 3, stride: 2, padding: 1), seed: 32)
        check(Case(c: 3, h: 61, w: 75, oc: 20, k: 7, stride: 2, padding: 3, bias: false, relu: true), seed: 33)
        check(Case(c: 8, h: 37, w: 39, oc: 30, k: 3, padding: 2, dilation: 2, groups: 2), seed: 34)
        // Stride 2 over rows wider than a panel (whole and partial 16-column gathers, padding at both ends) and
        // over rows narrower than a panel (several output rows per panel).
        check(Case(c: 6, h: 21, w: 151, oc: 18, k: 3, stride: 2, padding: 1, relu: true), seed: 35)
        check(Case(c: 7, h: 30, w: 100, oc: 12, k: 1, stride: 2, bias: false), seed: 36)
        check(Case(c: 5, h: 30, w: 9, oc: 16, k: 3, stride: 2, padding: 1), seed: 37)
        check(Case(c: 5, h: 33, w: 70, oc: 16, k: Size2(3, 5), stride: Size2(1, 2), padding: Size2(1, 3),
                   dilation: Size2(1, 2)), seed: 38)
    }

    /// bf16 convs gather im2col while packing too: the same bits as through the im2col matrix (both round the same
    /// fp32 values to bf16), within bf16 rounding of the fp32 reference.
    func testBF16ImplicitIm2colEqualsTheIm2colMatrix() throws {
        try XCTSkipUnless(Precision.bf16.isSupported && Compute.path.isa != nil, "no AVX512_BF16 own kernels here")
        var rng = TestRandom(seed: 41)
        let cases = [Case(c: 6, h: 21, w: 151, oc: 18, k: 3, stride: 2, padding: 1, relu: true),
                     Case(c: 37, h: 19, w: 23, oc: 20, k: 3, padding: 1),   // odd K (333): the last pair padded
                     Case(c: 7, h: 30, w: 100, oc: 12, k: 1, stride: 2, bias: false),
                     Case(c: 5, h: 30, w: 9, oc: 16, k: 3, stride: 2, padding: 1, dilation: 2)]
        for t in cases {
            let x = rng.tensor([t.n, t.c, t.h, t.w])
            let wt = rng.tensor([t.oc, t.c, t.k.h, t.k.w])
            let b = t.bias ? rng.floats(t.oc) : nil
            let conv = Conv2d(weight: wt, bias: b, stride: t.stride, padding: t.padding, dilation: t.dilation,
                              activation: t.relu ? .relu : .none, precision: .bf16)
            conv.usesWinograd = false
            let ref = Ref.conv2d(x, wt, bias: b, stride: t.stride, padding: t.padding, dilation: t.dilation, groups: 1,
                                 relu: t.relu)
            var outputs: [[Float]] = []
            for implicit in [true, false] {
                conv.implicitIm2col = implicit
                let y = conv(x, in: Workspace())
                assertClose(y, ref.data, shape: ref.shape, tol: 3e-2, "bf16 conv \(t), implicit \(implicit)")
                outputs.append(y.array)
            }
            XCTAssertEqual(outputs[0], outputs[1], "bf16 conv \(t): implicit and explicit im2col differ")
        }
    }

    func testGeneralConvolutions() {
        let cases: [Case] = [
            Case(),                                                            // 3x3 valid
            Case(k: 3, padding: 1, relu: true),                                // same padding + relu
            Case(c: 4, h: 17, w: 9, oc: 6, k: 3, stride: 2, padding: 1),       // strided
            Case(c: 3, h: 23, w: 19, oc: 4, k: 7, stride: 2, padding: 3, bias: false, relu: true), // ResNet stem
            Case(c: 2, h: 12, w: 15, oc: 3, k: Size2(3, 5), stride: Size2(2, 1), padding: Size2(1, 2)), // non-square
            Case(c: 4, h: 14, w: 13, oc: 4, k: 3, padding: 2, dilation: 2),   // dilated
            Case(c: 3, h: 9, w: 10, oc: 2, k: 3, stride: 3, padding: 2, dilation: Size2(1, 3)),
            Case(c: 6, h: 10, w: 11, oc: 9, k: 3, padding: 1, groups: 3),      // grouped
            Case(n: 2, c: 5, h: 8, w: 7, oc: 3, k: 3, padding: 1, relu: true), // batch 2
            Case(c: 3, h: 5, w: 4, oc: 2, k: 5, padding: 2),                   // kernel larger than a side after pad
        ]
        for (i, c) in cases.enumerated() { check(c, seed: UInt64(i + 1)) }
    }

    func testOneByOneDirectGEMMAndStrided() {
        check(Case(c: 7, h: 9, w: 11, oc: 5, k: 1), seed: 11)                              // direct GEMM path
        check(Case(n: 2, c: 7, h: 9, w: 11, oc: 5, k: 1, groups: 1, relu: true), seed: 12)
        check(Case(c: 8, h: 9, w: 11, oc: 6, k: 1, stride: 2, bias: false), seed: 13)       // downsample 1x1/2
        check(Case(c: 4, h: 6, w: 5, oc: 3, k: 1, padding: 1), seed: 14)                    // 1x1 with padding → im2col
        check(Case(c: 6, h: 7, w: 5, oc: 4, k: 1, groups: 2), seed: 15)                     // grouped 1x1 direct
    }

    func testColumnChunksAndBatchedSmallImagesMatchTheReference() {
        var rng = TestRandom(seed: 71)
        // Per-image path with two images (each wider than the batching threshold) and forced narrow chunks.
        let big = rng.tensor([2, 3, 70, 61]), wBig = rng.tensor([4, 3, 3, 3]), bBig = rng.floats(4)
        for chunk in [nil, 7, 100, 61] as [Int?] {
            let conv = Conv2d(weight: wBig, bias: bBig, padding: 1, activation: .relu)
            conv.chunkColumnsForTesting = chunk
            let ref = Ref.conv2d(big, wBig, bias: bBig, stride: 1, padding: 1, dilation: 1, groups: 1, relu: true)
            assertClose(conv(big, in: Workspace()), ref.data, shape: ref.shape, "per-image, chunk \(String(describing: chunk))")
            // Tile path through chunks as well.
            let grid = TileGrid(height: ref.shape[2], width: ref.shape[3], tile: 16)
            let kept = Tensor(shape: ref.shape, repeating: .nan)
            conv.forward(big, tiles: Array(0..<grid.count), grid: grid, into: kept, workspace: Workspace())
            assertClose(kept, ref.data, shape: ref.shape, "tiles, chunk \(String(describing: chunk))")
        }
        // Many small images (RoI-head-like): batched into shared GEMMs, more images than fit one batch.
        let rois = rng.tensor([Conv2d.batchedColumns / 49 + 3, 4, 7, 7]), w = rng.tensor([5, 4, 3, 3]), b = rng.floats(5)
        let conv = Conv2d(weight: w, bias: b, padding: 1, activation: .relu)
        let ref = Ref.conv2d(rois, w, bias: b, stride: 1, padding: 1, dilation: 1, groups: 1, relu: true)
        assertClose(conv(rois, in: Workspace()), ref.data, shape: ref.shape, "batched small images")
    }

    func testDepthwise() {
        check(Case(c: 5, h: 12, w: 9, oc: 5, k: 3, padding: 1, groups: 5, relu: true), seed: 21)
        check(Case(c: 4, h: 13, w: 11, oc: 8, k: 3, stride: 2, padding: 1, groups: 4), seed: 22)   // multiplier 2
        check(Case(n: 2, c: 3, h: 10, w: 10, oc: 3, k: 5, padding: 4, dilation: 2, groups: 3), seed: 23)
    }

    func testBatchNormFolding() {
        var rng = TestRandom(seed: 31)
        let x = rng.tensor([1, 4, 9, 8]), wt = rng.tensor([6, 4, 3, 3])
        let bn = BatchNormParameters(weight: rng.floats(6, 0.5, 1.5), bias: rng.floats(6), runningMean: rng.floats(6),
                                     runningVar: rng.floats(6, 0.1, 2), eps: 1e-5)
        for eps in [1e-5, 0.0] {
            var p = bn; p.eps = eps
            let conv = Conv2d(weight: wt, padding: 1, activation: .relu, batchNorm: p)
            let y = conv(x, in: Workspace())
            var ref = Ref.conv2d(x, wt, bias: nil, stride: 1, padding: 1, dilation: 1, groups: 1, relu: false)
            let plane = ref.shape[2] * ref.shape[3]
            for o in 0..<6 {
                let s = Double(p.weight[o]) / (Double(p.runningVar[o]) + eps).squareRoot()
                for i in 0..<plane {
                    let v = (ref.data[o * plane + i] - Double(p.runningMean[o])) * s + Double(p.bias[o])
                    ref.data[o * plane + i] = max(v, 0)
                }
            }
            assertClose(y, ref.data, shape: ref.shape, "BN folded, eps \(eps)")
        }
        // Folding into a conv that already has a bias.
        let b = rng.floats(6)
        let conv = Conv2d(weight: wt, bias: b, batchNorm: bn)
        XCTAssertEqual(Double(conv.bias![2]), (Double(b[2]) - Double(bn.runningMean[2])) * bn.scaleAndShift.scale[2] + Double(bn.bias[2]),
                       accuracy: 1e-5)
    }

    func testFlopsCount() {
        let conv = Conv2d(weight: Tensor(shape: [64, 3, 7, 7]), stride: 2, padding: 3)
        XCTAssertEqual(conv.outputShape([1, 3, 384, 640]), [1, 64, 192, 320])
        XCTAssertEqual(conv.flops([1, 3, 384, 640]), 2.0 * 64 * 192 * 320 * 147)
    }

    func testResidualIsAddedBeforeTheActivation() {
        // (k, stride, groups, cin, cout): im2col, direct 1x1, grouped, depthwise.
        for (i, cfg) in [(3, 1, 1, 4, 6), (1, 1, 1, 8, 5), (3, 2, 2, 4, 6), (3, 1, 4, 4, 4)].enumerated() {
            var rng = TestRandom(seed: UInt64(60 + i))
            let x = rng.tensor([2, cfg.3, 9, 11])
            let w = rng.tensor([cfg.4, cfg.3 / cfg.2, cfg.0, cfg.0]), b = rng.floats(cfg.4)
            let conv = Conv2d(weight: w, bias: b, stride: Size2(cfg.1, cfg.1), padding: Size2(cfg.0 / 2, cfg.0 / 2),
                              groups: cfg.2, activation: .relu)
            let ws = Workspace()
            let residual = rng.tensor(conv.outputShape(x.shape), -2, 2)
            let ref = Ref.conv2d(x, w, bias: b, stride: Size2(cfg.1, cfg.1), padding: Size2(cfg.0 / 2, cfg.0 / 2),
                                 dilation: 1, groups: cfg.2, relu: false)
            let want = zip(ref.data, residual.array).map { max($0 + Double($1), 0) }
            assertClose(conv(x, residual: residual, in: ws), want, shape: ref.shape, "residual \(cfg)")
            // In place: the residual buffer is the output.
            let inPlace = Tensor(shape: residual.shape); inPlace.copy(from: residual)
            conv.forward(x, residual: inPlace, into: inPlace, workspace: ws)
            assertClose(inPlace, want, shape: ref.shape, "residual in place \(cfg)")
            // Tile path with a residual equals the dense result.
            let grid = TileGrid(height: ref.shape[2], width: ref.shape[3], tile: Size2(4, 5))
            let kept = Tensor(shape: ref.shape, repeating: .nan)
            conv.forward(x, tiles: Array(0..<grid.count), grid: grid, residual: residual, into: kept, workspace: ws)
            assertClose(kept, want, shape: ref.shape, "residual tiles \(cfg)")
        }
    }

    // MARK: Tiles

    private func tileSetup(_ seed: UInt64, k: Int = 3, stride: Int = 1, groups: Int = 1, c: Int = 4, oc: Int = 6)
        -> (x: Tensor, conv: Conv2d, dense: Tensor, ws: Workspace) {
        var rng = TestRandom(seed: seed)
        let x = rng.tensor([1, c, 37, 29])
        let conv = Conv2d(weight: rng.tensor([oc, c / groups, k, k]), bias: rng.floats(oc), stride: Size2(stride, stride),
                          padding: Size2(k / 2, k / 2), groups: groups, activation: .relu)
        let ws = Workspace()
        return (x, conv, conv(x, in: ws), ws)
    }

    func testAllTilesEqualDense() {
        for (i, cfg) in [(3, 1, 1, 4, 6), (1, 1, 1, 4, 6), (3, 2, 1, 4, 6), (3, 1, 4, 4, 4), (7, 2, 1, 3, 5)].enumerated() {
            let (x, conv, dense, ws) = tileSetup(UInt64(40 + i), k: cfg.0, stride: cfg.1, groups: cfg.2, c: cfg.3, oc: cfg.4)
            for tile in [Size2(16, 16), Size2(5, 7)] {
                let grid = TileGrid(height: dense.h, width: dense.w, tile: tile)
                let kept = Tensor(shape: dense.shape, repeating: .nan)
                conv.forward(x, tiles: Array(0..<grid.count), grid: grid, into: kept, workspace: ws)
                // ≤ 1e-6 relative to the output's magnitude (the GEMM's column blocking differs between the calls).
                assertClose(kept, dense.array.map(Double.init), shape: dense.shape, tol: 1e-6, "config \(cfg) tile \(tile)")
            }
        }
    }

    func testSubsetOfTilesChangesOnlyThoseTiles() {
        let (x, conv, dense, ws) = tileSetup(50)
        let grid = TileGrid(height: dense.h, width: dense.w, tile: Size2(8, 8))   // 37x29 → 5x4 tiles, ragged edges
        XCTAssertEqual(grid.rows, 5); XCTAssertEqual(grid.columns, 4)
        let chosen = [0, 6, 19, 13]
        let sentinel: Float = -12345
        let kept = Tensor(shape: dense.shape, repeating: sentinel)
        conv.forward(x, tiles: chosen, grid: grid, into: kept, workspace: ws)
        let a = kept.array, d = dense.array
        var inside = 0
        for ch in 0..<dense.c { for y in 0..<dense.h { for xx in 0..<dense.w {
            let t = (y / 8) * grid.columns + xx / 8
            let i = (ch * dense.h + y) * dense.w + xx
            if chosen.contains(t) {
                inside += 1
                XCTAssertEqual(a[i], d[i], accuracy: 1e-6 * max(1, abs(d[i])), "tile \(t) pixel (\(y),\(xx)) ch \(ch)")
            } else {
                XCTAssertEqual(a[i], sentinel, "untouched pixel (\(y),\(xx)) ch \(ch) outside chosen tiles")
            }
        } } }
        // 3 full 8x8 tiles (0, 6, 13) + corner tile 19 (5 rows x 5 cols), per channel.
        XCTAssertEqual(inside, dense.c * (3 * 64 + 5 * 5))
    }

    func testTileGridGeometry() {
        let g = TileGrid(height: 37, width: 29, tile: 16)
        XCTAssertEqual(g.count, 6)
        XCTAssertEqual(g.rect(5).rows, 32..<37)
        XCTAssertEqual(g.rect(5).cols, 16..<29)
        XCTAssertEqual(g.rect(1).cols, 16..<29)
        XCTAssertEqual(g.rect(2).rows, 16..<32)
    }
}

final class WinogradConvTests: XCTestCase {
    /// Both tile sizes against the float64 reference and the direct GEMM: output sizes that are not multiples of the
    /// tile (edge tiles clipped), padding 0/1/2, bias and ReLU, a residual accumulated in place, a batch of two, and
    /// maps wide enough for several tile blocks per core, 16-tile groups that cross a tile row, and a batch of
    /// 14x14 RoIs (16 tiles each) whose blocks span several images.
    /// U = G g Gᵀ, every input channel across the vector lanes: bit for bit the float64 product of the torch-free
    /// definition taken one kernel at a time in the same order (F(2x2) and F(4x4); input channel counts that leave
    /// every vector remainder).
    func testWinogradWeightTransformMatchesOneKernelAtATime() {
        var rng = TestRandom(seed: 53)
        let g6: [[Double]] = [[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                              [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]
        let g4: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        for (m, g) in [(4, g6), (2, g4)] {
            let a = m + 2
            for (cout, cin) in [(3, 1), (2, 13), (5, 37), (2, 64)] {
                let w = rng.floats(cout * cin * 9)
                var u = [Float](repeating: .nan, count: a * a * cout * cin)
                fpn_winograd_transform_weights(Int32(m), Int32(cout), Int32(cin), w, &u)
                var differing = 0
                for o in 0..<cout {
                    for c in 0..<cin {
                        let k = Array(w[((o * cin + c) * 9)..<((o * cin + c) * 9 + 9)])
                        for i in 0..<a {
                            var t = [Double](repeating: 0, count: 3)
                            for j in 0..<3 {
                                var x = g[i][0] * Double(k[j])
                                x = x + g[i][1] * Double(k[3 + j])
                                t[j] = x + g[i][2] * Double(k[6 + j])
                            }
                            for kk in 0..<a {
                                var y = t[0] * g[kk][0]
                                y = y + t[1] * g[kk][1]
                                let want = Float(y + t[2] * g[kk][2])
                                if u[(i * a + kk) * cout * cin + o * cin + c].bitPattern != want.bitPattern { differing += 1 }
                            }
                        }
                    }
                }
                XCTAssertEqual(differing, 0, "m \(m) cout \(cout) cin \(cin)")
            }
        }
    }

    func testWinogradMatchesTheReferenceAndTheDirectGEMM() throws {
        struct Case { var n = 1, c = 16, h = 0, w = 0, oc = 24, padding = 1, bias = true, relu = false, residual = false }
        let cases = [
            Case(h: 37, w: 45, relu: true),
            Case(c: 32, h: 30, w: 61, oc: 19, padding: 0),
            Case(n: 2, c: 17, h: 26, w: 26, oc: 16, padding: 2, bias: false),
            Case(c: 24, h: 41, w: 83, oc: 40, relu: true, residual: true),
            Case(c: 16, h: 9, w: 190, oc: 16),
            Case(n: 7, c: 16, h: 14, w: 14, oc: 20, relu: true, residual: true),  // RoIs: blocks span images
        ]
        for (i, t) in cases.enumerated() {
            var rng = TestRandom(seed: UInt64(500 + i))
            let x = rng.tensor([t.n, t.c, t.h, t.w])
            let wt = rng.tensor([t.oc, t.c, 3, 3])
            let b = t.bias ? rng.floats(t.oc) : nil
            let conv = Conv2d(weight: wt, bias: b, padding: Size2(t.padding, t.padding), activation: t.relu ? .relu : .none)
            let ref = Ref.conv2d(x, wt, bias: b, stride: 1, padding: Size2(t.padding, t.padding), dilation: 1, groups: 1,
                                 relu: false)
            let res = t.residual ? rng.tensor(ref.shape) : nil
            var want = ref.data
            if let res { for j in want.indices { want[j] += Double(res.array[j]) } }
            if t.relu { want = want.map { max($0, 0) } }
            guard Compute.path != .openblas else { throw XCTSkip("the OpenBLAS path has no Winograd form") }
            XCTAssertNotNil(conv.winograd, "case \(i): a 3x3 stride-1 conv on \(Compute.path) has a Winograd form")
            for m in [4, 2] {
                conv.winograd = WinogradWeights(weight: conv.weight.ptr, outChannels: t.oc, inChannels: t.c,
                                                precision: .f32, m: m)
                conv.usesWinograd = true
                XCTAssertTrue(conv.runsWinograd(x), "case \(i) m \(m): enough tiles for the Winograd pass")
                let out = Tensor(shape: ref.shape)
                if let res { out.copy(from: res) }
                conv.forward(x, residual: res == nil ? nil : out, into: out, workspace: Workspace())
                assertClose(out, want, shape: ref.shape, tol: 2e-5, "case \(i) Winograd F(\(m)x\(m), 3x3)")
                conv.usesWinograd = false
                let direct = Tensor(shape: ref.shape)
                if let res { direct.copy(from: res) }
                conv.forward(x, residual: res == nil ? nil : direct, into: direct, workspace: Workspace())
                assertClose(out, direct.array.map(Double.init), shape: ref.shape, tol: 2e-5, "case \(i) m \(m) vs direct")
            }
        }
    }

    /// A tile-restricted pass computes its tiles through the same Winograd tiles as the dense pass, so the
    /// recomputed pixels equal the dense output exactly, whatever the temporal tile size (aligned to the
    /// Winograd tile or not), and nothing outside the chosen tiles is written.
    func testTilePassesEqualTheDensePassExactly() throws {
        try XCTSkipIf(Compute.path == .openblas, "the OpenBLAS path has no Winograd form")
        var rng = TestRandom(seed: 41)
        let x = rng.tensor([1, 16, 30, 38]), wt = rng.tensor([20, 16, 3, 3]), b = rng.floats(20)
        let conv = Conv2d(weight: wt, bias: b, padding: 1, activation: .relu)
        let residual = rng.tensor([1, 20, 30, 38])
        let dense = Tensor(shape: [1, 20, 30, 38])
        dense.copy(from: residual)
        conv.forward(x, residual: dense, into: dense, workspace: Workspace())
        XCTAssertTrue(conv.runsWinograd(x))
        for tile in [2, 3, 4, 8] {
            let grid = TileGrid(height: 30, width: 38, tile: Size2(tile, tile))
            let chosen = Array(stride(from: 1, to: grid.count, by: 3))
            let kept = Tensor(shape: dense.shape, repeating: .nan)
            conv.forward(x, tiles: chosen, grid: grid, residual: residual, into: kept, workspace: Workspace())
            var inside = 0, mismatched = 0, written = 0
            let k = kept.array, d = dense.array
            for c in 0..<20 { for y in 0..<30 { for xx in 0..<38 {
                let i = (c * 30 + y) * 38 + xx
                if chosen.contains(y / tile * grid.columns + xx / tile) {
                    inside += 1; if k[i] != d[i] { mismatched += 1 }
                } else if !k[i].isNaN { written += 1 }
            } } }
            XCTAssertGreaterThan(inside, 0)
            XCTAssertEqual(mismatched, 0, "tile \(tile): recomputed pixels differ from the dense pass")
            XCTAssertEqual(written, 0, "tile \(tile): pixels outside the chosen tiles were written")
        }
    }

    /// The portable transforms and the AVX2 and AVX-512 ones compute the same V and Y, bit for bit up to float
    /// rounding, on blocks that start mid tile row and end in a partial 8- or 16-tile group; on a narrow map (a
    /// vector's lanes span several tile rows) and a wide one (runs of 8 or 16 tiles in one row, padding at both ends).
    func testPortableAndVectorTransformsAgree() throws {
        let vector = [FPN_ISA_AVX2, FPN_ISA_AVX512].filter { fpn_isa_supported(Int32($0.rawValue)) != 0 }
        try XCTSkipIf(vector.isEmpty, "neither AVX2 nor AVX-512 on this CPU")
        var rng = TestRandom(seed: 77)
        for (h, w, ph, pw) in [(23, 29, 1, 2), (19, 150, 1, 1), (9, 70, 2, 0)] {
            for m in [2, 4] {
                let a2 = (m + 2) * (m + 2), cin = 3, cout = 5, ho = h + 2 * ph - 2, wo = w + 2 * pw - 2
                var g = fpn_winograd(m: Int32(m), cin: Int32(cin), cout: Int32(cout), h: Int32(h), w: Int32(w),
                                     ph: Int32(ph), pw: Int32(pw), ho: Int32(ho), wo: Int32(wo))
                let tiles = Int(fpn_winograd_tiles(&g))
                // A list with gaps and a run of 16 consecutive tiles, and a contiguous block from tile 5.
                let list = (Array(stride(from: 0, to: tiles / 2, by: 3)) + Array((tiles / 2)..<min(tiles, tiles / 2 + 16)))
                    .map(Int32.init)
                let x = rng.tensor([cin, h, w])
                let residual = rng.floats(cout * ho * wo)
                var results: [[Float]] = []
                for isa in [FPN_ISA_GENERIC] + vector {
                    var all: [Float] = []
                    for useList in [false, true] {
                        // Matrix strides past the packed size (the padding between the α² matrices).
                        let tb = useList ? list.count : tiles - 9, ld = (tb + 15) / 16 * 16
                        let vStride = cin * ld + 16, mStride = cout * ld + 32
                        var v = [Float](repeating: 0, count: a2 * vStride)
                        var y = [Float](repeating: 0.5, count: cout * ho * wo)
                        list.withUnsafeBufferPointer { lp in
                            let tp = useList ? lp.baseAddress : nil
                            fpn_winograd_input(Int32(isa.rawValue), &g, x.ptr, tp, 5, Int32(tb), &v, Int32(ld), vStride)
                            let mm = (0..<(a2 * mStride)).map { Float($0 % 7) - 3 + Float(v[$0 % v.count]) }
                            fpn_winograd_output(Int32(isa.rawValue), &g, mm, Int32(ld), mStride, tp, 5, Int32(tb),
                                                [1, 2, 3, 4, 5], useList ? residual : nil, 1, &y)
                        }
                        all += v + y
                    }
                    results.append(all)
                }
                let scale = max(1, results[0].map(abs).max() ?? 0)
                for (isa, result) in zip(vector, results.dropFirst()) {
                    XCTAssertEqual(results[0].count, result.count)
                    let worst = zip(results[0], result).map { abs($0 - $1) }.max() ?? .infinity
                    XCTAssertLessThanOrEqual(worst, 1e-6 * scale,
                                             "\(h)x\(w) m \(m): portable vs ISA \(isa.rawValue) transforms (scale \(scale))")
                }
                XCTAssertGreaterThan(results[0].filter { $0 != 0 && $0 != 0.5 }.count, results[0].count / 2,
                                     "\(h)x\(w) m \(m): the transforms wrote most values")
            }
        }
    }

    /// The start-up self-check passes on this host's path, and the decision honours the variable and a failed check.
    /// A tile pass counts the pixels its GEMMs run on: the tiles' own pixels for a direct conv, every Winograd
    /// output block the tiles touch (clipped to the output) for a Winograd conv.
    func testTilePassPixelsCountTheWinogradBlocksTheTilesTouch() throws {
        var rng = TestRandom(seed: 77)
        let x = rng.tensor([1, 16, 30, 22])          // output 30x22: blocks of 4 clip at the bottom (2) and right (2)
        let conv3 = Conv2d(weight: rng.tensor([16, 16, 3, 3]), bias: nil, padding: Size2(1, 1))
        let conv1 = Conv2d(weight: rng.tensor([16, 16, 1, 1]), bias: nil)
        let grid = TileGrid(height: 30, width: 22, tile: Size2(2, 2))   // 15 x 11 tiles
        let tile = { (ty: Int, tx: Int) in ty * grid.columns + tx }
        XCTAssertEqual(conv1.tilePassPixels(x, tiles: [tile(0, 0), tile(7, 5), tile(14, 10)], grid: grid), 12)
        guard conv3.runsWinograd(x), let m = conv3.winograd?.m else {
            throw XCTSkip("no Winograd form on this compute path")
        }
        XCTAssertEqual(conv3.tilePassPixels(x, tiles: [], grid: grid), 0)
        if m == 4 {
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(0, 0)], grid: grid), 16, "one 2x2 tile: one 4x4 block")
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(0, 0), tile(1, 1)], grid: grid), 16, "both in the block")
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(0, 0), tile(0, 2)], grid: grid), 32, "two blocks")
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(14, 10)], grid: grid), 4, "the corner block is 2x2")
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(14, 0)], grid: grid), 8, "the bottom row's are 2x4")
        } else {
            XCTAssertEqual(conv3.tilePassPixels(x, tiles: [tile(0, 0), tile(1, 1)], grid: grid), 8, "F(2x2): the tiles")
        }
        XCTAssertEqual(conv3.tilePassPixels(x, tiles: Array(0..<grid.count), grid: grid), 30 * 22, "all: the output")
    }

    func testWinogradSelfCheckAndDecision() {
        if Compute.path != .openblas {
            XCTAssertLessThan(Conv2d.winogradSelfCheckError(), 1e-5)
        }
        var checked = 0
        let pass = { checked += 1; return 1e-7 }
        XCTAssertEqual(Conv2d.winogradDecision(environment: [:], ownKernels: true, check: pass).enabled, true)
        XCTAssertEqual(checked, 1)
        XCTAssertEqual(Conv2d.winogradDecision(environment: ["FPNSTREAM_WINOGRAD": "OFF"], ownKernels: true, check: pass).enabled, false)
        XCTAssertEqual(Conv2d.winogradDecision(environment: [:], ownKernels: false, check: pass).enabled, true)
        XCTAssertEqual(checked, 1, "no check off the own kernels or when turned off")
        let typo = Conv2d.winogradDecision(environment: ["FPNSTREAM_WINOGRAD": "of"], ownKernels: true, check: pass)
        XCTAssertTrue(typo.enabled)
        XCTAssertEqual(typo.warning, "FPNSTREAM_WINOGRAD=of is not a setting (off, on, 2, 4); using Winograd F(4x4, 3x3)")
        XCTAssertNil(Conv2d.winogradDecision(environment: ["FPNSTREAM_WINOGRAD": "4"], ownKernels: true, check: pass).warning)
        for bad in [0.5, Double.nan, Double.infinity] {
            let d = Conv2d.winogradDecision(environment: ["FPNSTREAM_WINOGRAD": "4"], ownKernels: true, check: { bad })
            XCTAssertFalse(d.enabled, "error \(bad)")
            XCTAssertTrue(d.warning?.contains("direct GEMM") == true, "error \(bad): \(String(describing: d.warning))")
        }
    }

    /// Only stride-1, undilated, ungrouped 3x3 convs with enough channels get a Winograd form, and a map with too few
    /// tiles runs the direct GEMM.
    func testWinogradAppliesOnlyToStrideOne3x3Convolutions() {
        var rng = TestRandom(seed: 9)
        func conv(_ k: Int, stride: Int = 1, dilation: Int = 1, groups: Int = 1, c: Int = 16) -> Conv2d {
            Conv2d(weight: rng.tensor([16, c / groups, k, k]), stride: Size2(stride, stride),
                   padding: Size2(dilation, dilation), dilation: Size2(dilation, dilation), groups: groups)
        }
        let expected = Compute.path != .openblas
        XCTAssertEqual(conv(3).winogradEligible, expected)
        XCTAssertFalse(conv(3, stride: 2).winogradEligible)
        XCTAssertFalse(conv(3, dilation: 2).winogradEligible)
        XCTAssertFalse(conv(3, groups: 2).winogradEligible)
        XCTAssertFalse(conv(1).winogradEligible)
        XCTAssertFalse(conv(3, c: 8).winogradEligible)
        let c = conv(3)
        XCTAssertNil(c.winogradStorage, "the Winograd form is built on first use only")
        XCTAssertFalse(c.runsWinograd(rng.tensor([1, 16, 12, 12])), "9 tiles of 4x4: direct GEMM")
        XCTAssertEqual(c.runsWinograd(rng.tensor([1, 16, 40, 40])), expected, "100 tiles")
    }
}

/// The AVX-512 depthwise kernel against the portable loop: bit-identical on ragged shapes (rows not a multiple of 16
/// pixels, padding on every side, strides 1 and 2, dilation, channel multiplier 2, residual, short tile segments).
final class DepthwiseKernelTests: XCTestCase {
    func testVectorKernelEqualsThePortableLoopExactly() throws {
        let isa = Int32(FPN_ISA_AVX512.rawValue)
        guard fpn_isa_supported(isa) != 0 else { throw XCTSkip("no AVX-512 on this CPU") }
        var rng = TestRandom(seed: 77)
        // (channels, multiplier, h, w, k, stride, padding, dilation)
        let cases = [(3, 1, 9, 37, 3, 1, 1, 1), (2, 2, 12, 33, 3, 2, 1, 1), (2, 1, 7, 19, 5, 1, 4, 2),
                     (3, 1, 8, 50, 3, 2, 0, 1), (1, 1, 5, 5, 3, 1, 1, 1), (2, 1, 11, 41, 7, 2, 3, 1),
                     // wide rows: several runs of 16 lanes clear of the borders (the unmasked path)
                     (2, 1, 6, 83, 3, 1, 1, 1), (2, 2, 7, 109, 3, 2, 1, 1), (1, 1, 6, 90, 5, 1, 2, 1),
                     (1, 1, 5, 300, 3, 2, 1, 1)]
        for (ci, (c, mult, h, w, k, s, p, d)) in cases.enumerated() {
            let x = rng.tensor([1, c, h, w]), wt = rng.tensor([c * mult, 1, k, k]), b = rng.floats(c * mult)
            let ho = (h + 2 * p - d * (k - 1) - 1) / s + 1, wo = (w + 2 * p - d * (k - 1) - 1) / s + 1
            // Whole rows, then short segments at scattered columns (the temporal tile path).
            var segs: [Int] = []
            for oy in 0..<ho { segs += [oy, 0, wo, 0] }
            for oy in stride(from: 0, to: ho, by: 2) { segs += [oy, (oy * 7) % max(wo - 3, 1), min(3, wo), 0] }
            let residual = rng.tensor([1, c * mult, ho, wo])
            for (withResidual, relu) in [(false, false), (false, true), (true, true)] {
                var outs: [[Float]] = []
                for useVector in [false, true] {
                    let out = Tensor(shape: [1, c * mult, ho, wo], repeating: .nan)
                    var segments = segs
                    b.withUnsafeBufferPointer { bias in
                        DepthwiseKernel.run(x.ptr, h: h, w: w, segments: &segments, segmentCount: segs.count / 4,
                                            out: out.ptr, residual: withResidual ? residual.ptr : nil, ho: ho, wo: wo,
                                            weight: wt.ptr, bias: bias, outChannels: c * mult, groups: c,
                                            kernel: Size2(k, k), stride: Size2(s, s), padding: Size2(p, p),
                                            dilation: Size2(d, d), relu: relu, isa: useVector ? isa : nil)
                    }
                    outs.append(out.array)
                }
                XCTAssertFalse(outs[1].contains { $0.isNaN }, "case \(ci): every pixel written")
                XCTAssertEqual(outs[0].map(\.bitPattern), outs[1].map(\.bitPattern), "case \(ci) residual \(withResidual) relu \(relu)")
            }
        }
    }
}

/// The direct stem kernel (a stride-2 conv of 1-4 input channels): against the float64 reference on ragged shapes,
/// and tile passes bit-identical to the dense pass (the temporal cache recomputes the stem by tiles).
final class StemKernelTests: XCTestCase {
    func testStemMatchesTheReferenceAndTilesEqualTheDensePass() throws {
        guard Compute.path == .avx512 else { throw XCTSkip("the stem kernel needs the avx512 path") }
        // (cin, h, w, cout, k, padding, residual, relu)
        let cases = [(3, 61, 75, 32, 7, 3, false, true), (1, 20, 37, 16, 3, 1, true, true), (4, 17, 9, 48, 5, 2, false, false),
                     (3, 24, 40, 64, 7, 3, true, false), (2, 9, 50, 16, 3, 0, false, true)]
        for (i, (cin, h, w, cout, k, p, withResidual, relu)) in cases.enumerated() {
            var rng = TestRandom(seed: UInt64(90 + i))
            let x = rng.tensor([1, cin, h, w]), wt = rng.tensor([cout, cin, k, k]), b = rng.floats(cout)
            let conv = Conv2d(weight: wt, bias: b, stride: 2, padding: Size2(p, p), activation: relu ? .relu : .none)
            XCTAssertTrue(conv.runsStemKernel, "case \(i)")
            let shape = conv.outputShape(x.shape)
            let residual = rng.tensor(shape, -2, 2)
            var ref = Ref.conv2d(x, wt, bias: b, stride: 2, padding: Size2(p, p), dilation: 1, groups: 1, relu: false)
            for j in ref.data.indices {
                let v = ref.data[j] + (withResidual ? Double(residual.array[j]) : 0)
                ref.data[j] = relu ? max(v, 0) : v
            }
            let ws = Workspace()
            let dense = conv(x, residual: withResidual ? residual : nil, in: ws)
            assertClose(dense, ref.data, shape: ref.shape, "stem case \(i)")
            let grid = TileGrid(height: shape[2], width: shape[3], tile: Size2(3, 5))
            let kept = Tensor(shape: shape, repeating: .nan)
            let some = Array(Swift.stride(from: 0, to: grid.count, by: 2))
            conv.forward(x, tiles: some, grid: grid, residual: withResidual ? residual : nil, into: kept, workspace: ws)
            let d = dense.array, t = kept.array
            var checked = 0
            for j in t.indices where !t[j].isNaN {
                XCTAssertEqual(t[j].bitPattern, d[j].bitPattern, "case \(i) element \(j)")
                checked += 1
            }
            XCTAssertGreaterThan(checked, d.count / 3, "case \(i): the even tiles were computed")
        }
    }
}
