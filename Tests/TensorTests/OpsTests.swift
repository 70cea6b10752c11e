import CKernels
import Foundation
import TestSupport
import XCTest
@testable import Tensor

final class OpsTests: XCTestCase {
    func testMaxPool() {
        var rng = TestRandom(seed: 101)
        let x = rng.tensor([2, 3, 13, 11])
        for (k, s, p) in [(Size2(3, 3), Size2(2, 2), Size2(1, 1)), (1, 2, 0), (2, 2, 0), (Size2(3, 2), Size2(1, 2), Size2(1, 0))] {
            let y = x.maxPool2d(kernel: k, stride: s, padding: p, in: Workspace())
            let ref = Ref.maxPool(x, kernel: k, stride: s, padding: p)
            assertClose(y, ref.data, shape: ref.shape, tol: 0, "maxpool k\(k) s\(s) p\(p)")
        }
        // Kernel 1 stride 2 is LastLevelMaxPool: out[y, x] = in[2y, 2x].
        let p6 = x.maxPool2d(kernel: 1, stride: 2, in: Workspace())
        XCTAssertEqual(p6.shape, [2, 3, 7, 6])
        XCTAssertEqual(p6[1, 2, 3, 5], x[1, 2, 6, 10])
    }

    func testAddMulDivAffineClip() {
        var rng = TestRandom(seed: 102)
        let a = rng.tensor([1, 5, 7, 9]), b = rng.tensor([1, 5, 7, 9], 0.5, 2)
        let ws = Workspace()
        let av = a.array.map(Double.init), bv = b.array.map(Double.init)
        assertClose(a.add(b, in: ws), zip(av, bv).map { $0 + $1 }, shape: a.shape, tol: 1e-7, "add")
        assertClose(a.add(b, activation: .relu, in: ws), zip(av, bv).map { max($0 + $1, 0) }, shape: a.shape, tol: 1e-7, "add relu")
        assertClose(a.mul(b, in: ws), zip(av, bv).map { $0 * $1 }, shape: a.shape, tol: 1e-7, "mul")
        assertClose(a.div(b, in: ws), zip(av, bv).map { $0 / $1 }, shape: a.shape, tol: 1e-6, "div")
        assertClose(a.affine(scale: 3, shift: -1, in: ws), av.map { $0 * 3 - 1 }, shape: a.shape, tol: 1e-6, "affine")
        assertClose(a.clip(lower: -0.25, upper: 0.5, in: ws), av.map { min(max($0, -0.25), 0.5) }, shape: a.shape, tol: 0, "clip")
        assertClose(a.relu(in: ws), av.map { max($0, 0) }, shape: a.shape, tol: 0, "relu")
        // In place.
        let c = Tensor(shape: a.shape); c.copy(from: a)
        Ops.add(c, b, into: c)
        assertClose(c, zip(av, bv).map { $0 + $1 }, shape: a.shape, tol: 1e-7, "add in place")
    }

    func testLargeElementwiseRunsInParallelCorrectly() {
        var rng = TestRandom(seed: 103)
        let a = rng.tensor([1, 64, 61, 67]), b = rng.tensor([1, 64, 61, 67])
        let y = a.add(b, activation: .relu, in: Workspace())
        let av = a.array, bv = b.array, yv = y.array
        XCTAssertEqual(yv.count, av.count)
        XCTAssertTrue(yv.indices.allSatisfy { yv[$0] == max(av[$0] + bv[$0], 0) })
    }

    func testSigmoidAndSoftmax() {
        var rng = TestRandom(seed: 104)
        let x = rng.tensor([2, 7, 3, 5], -30, 30)
        let ws = Workspace()
        assertClose(x.sigmoid(in: ws), x.array.map { 1 / (1 + exp(-Double($0))) }, shape: x.shape, tol: 1e-6, "sigmoid")
        for dim in 0..<4 {
            let y = x.softmax(dim: dim, in: ws)
            let s = x.shape, xv = x.array.map(Double.init)
            var ref = [Double](repeating: 0, count: xv.count)
            let inner = s[(dim + 1)...].reduce(1, *), len = s[dim]
            for o in 0..<(xv.count / (len * inner)) { for i in 0..<inner {
                let idx = (0..<len).map { o * len * inner + $0 * inner + i }
                let m = idx.map { xv[$0] }.max()!
                let z = idx.map { exp(xv[$0] - m) }.reduce(0, +)
                for j in idx { ref[j] = exp(xv[j] - m) / z }
            } }
            assertClose(y, ref, shape: s, tol: 1e-6, "softmax dim \(dim)")
        }
    }

    func testRootMeanSquareMatchesDoubleReference() {
        var rng = TestRandom(seed: 107)
        // Sizes around the 8-lane and 4096-element block edges, so tails and partial blocks are covered; an offset
        // view reads only its own elements.
        for shape in [[1, 1, 1, 1], [1, 1, 1, 7], [1, 3, 5, 9], [1, 1, 64, 64], [2, 3, 41, 37]] {
            let x = rng.tensor(shape, -3, 5)
            let v = x.array.map(Double.init)
            let ref = (v.map { $0 * $0 }.reduce(0, +) / Double(v.count)).squareRoot()
            XCTAssertEqual(Double(Ops.rootMeanSquare(x)), ref, accuracy: ref * 1e-6, "rms \(shape)")
        }
        let big = rng.tensor([1, 2, 3, 700])
        let view = Tensor(shape: [1, 1, 3, 700], storage: big.storage, offset: 3 * 700)
        let tail = big.array[(3 * 700)...].map(Double.init)
        XCTAssertEqual(Double(Ops.rootMeanSquare(view)), (tail.map { $0 * $0 }.reduce(0, +) / 2100).squareRoot(),
                       accuracy: 1e-6)
        XCTAssertEqual(Ops.rootMeanSquare(Tensor(shape: [1, 0, 4, 4])), 0)
        XCTAssertEqual(Ops.rootMeanSquare(Tensor(shape: [1, 2, 3, 3], repeating: -2)), 2, accuracy: 1e-6)
    }

    func testVectorizableExpIsAccurateOverTheFloatRange() {
        var worst = 0.0, at: Float = 0
        var x: Float = -87
        while x < 88 {
            let rel = abs(Double(vectorizableExp(x)) / exp(Double(x)) - 1)
            if rel > worst { worst = rel; at = x }
            x += 0.0137
        }
        XCTAssertLessThan(worst, 4e-7, "worst relative error at x = \(at)")
        XCTAssertEqual(vectorizableExp(0), 1)
        XCTAssertEqual(vectorizableExp(-1000), vectorizableExp(-87.3))    // clamped, finite, tiny
        XCTAssertTrue(vectorizableExp(1000).isFinite)
        // Sigmoid saturates cleanly at both ends.
        let t = Tensor(shape: [4], data: [-1000, -20, 20, 1000]).sigmoid(in: Workspace()).array
        XCTAssertEqual(t[0], 0, accuracy: 1e-37); XCTAssertEqual(t[3], 1)
        XCTAssertEqual(Double(t[1]), 1 / (1 + exp(20.0)), accuracy: 1e-13)
        XCTAssertEqual(Double(t[2]), 1 / (1 + exp(-20.0)), accuracy: 1e-7)
    }

    func testNearestUpsampleExplicitSize() {
        var rng = TestRandom(seed: 105)
        let x = rng.tensor([1, 3, 5, 7])
        for (h, w) in [(10, 14), (13, 17), (5, 7), (3, 4), (11, 15)] {
            assertClose(x.upsampleNearest(height: h, width: w, in: Workspace()), Ref.nearest(x, h, w),
                        shape: [1, 3, h, w], tol: 0, "nearest \(h)x\(w)")
        }
        // FPN case: 25 → 50 is exact doubling: out[y] = in[y / 2].
        let y = x.upsampleNearest(height: 10, width: 14, in: Workspace())
        XCTAssertEqual(y[0, 1, 9, 13], x[0, 1, 4, 6])
    }

    func testBilinearResize() {
        var rng = TestRandom(seed: 106)
        let x = rng.tensor([2, 3, 9, 13])
        for (h, w) in [(18, 26), (7, 5), (20, 11), (9, 13), (1, 1), (31, 40)] {
            assertClose(x.resizeBilinear(height: h, width: w, in: Workspace()), Ref.bilinear(x, h, w),
                        shape: [2, 3, h, w], tol: 1e-6, "bilinear \(h)x\(w)")
        }
    }

    func testLinear() {
        var rng = TestRandom(seed: 107)
        let x = rng.tensor([5, 3, 2, 3]), w = rng.tensor([7, 18]), b = rng.floats(7)
        for relu in [false, true] {
            let y = Linear(weight: w, bias: b, activation: relu ? .relu : .none)(x, in: Workspace())
            let xv = x.array, wv = w.array
            var ref = [Double]()
            for r in 0..<5 { for o in 0..<7 {
                var acc = Double(b[o])
                for i in 0..<18 { acc += Double(xv[r * 18 + i]) * Double(wv[o * 18 + i]) }
                ref.append(relu ? max(acc, 0) : acc)
            } }
            assertClose(y, ref, shape: [5, 7], "linear relu \(relu)")
        }
    }

    func testLinearManyRowsParallelEpilogue() {
        var rng = TestRandom(seed: 111)
        let x = rng.tensor([300, 20]), w = rng.tensor([150, 20]), b = rng.floats(150)
        let y = Linear(weight: w, bias: b, activation: .relu)(x, in: Workspace())
        let xv = x.array, wv = w.array
        var ref = [Double]()
        for r in 0..<300 { for o in 0..<150 {
            var acc = Double(b[o])
            for i in 0..<20 { acc += Double(xv[r * 20 + i]) * Double(wv[o * 20 + i]) }
            ref.append(max(acc, 0))
        } }
        assertClose(y, ref, shape: [300, 150], "linear 300 rows")
    }

    func testConvTranspose() {
        var rng = TestRandom(seed: 108)
        struct C { var c = 4, oc = 3, h = 5, w = 6, k = Size2(2, 2), s: Size2 = 2, p: Size2 = 0, op: Size2 = 0, d: Size2 = 1, g = 1 }
        for (i, t) in [C(), C(c: 6, oc: 4, h: 7, w: 4, k: 3, s: 2, p: 1, op: 1), C(k: Size2(3, 2), s: Size2(1, 3), p: Size2(1, 0)),
                       C(c: 4, oc: 6, h: 4, w: 5, k: 3, s: 2, p: 1, d: 2, g: 2), C(c: 3, oc: 2, h: 6, w: 6, k: 4, s: 1, p: 2)].enumerated() {
            let x = rng.tensor([i % 2 + 1, t.c, t.h, t.w]), w = rng.tensor([t.c, t.oc / t.g, t.k.h, t.k.w]), b = rng.floats(t.oc)
            let m = ConvTranspose2d(weight: w, bias: b, stride: t.s, padding: t.p, outputPadding: t.op, dilation: t.d, groups: t.g)
            let y = m(x, in: Workspace())
            let ref = Ref.convTranspose2d(x, w, bias: b, stride: t.s, padding: t.p, outputPadding: t.op, dilation: t.d, groups: t.g)
            assertClose(y, ref.data, shape: ref.shape, "conv-transpose \(t)")
        }
        // Many small inputs (more than one shared GEMM's worth), 2x2/2 like the mask head, with ReLU.
        let xs = rng.tensor([4096 / 30 + 2, 3, 5, 6]), ws = rng.tensor([3, 4, 2, 2]), bs = rng.floats(4)
        let many = ConvTranspose2d(weight: ws, bias: bs, stride: 2, activation: .relu)(xs, in: Workspace())
        let refMany = Ref.convTranspose2d(xs, ws, bias: bs, stride: 2, padding: 0, outputPadding: 0, dilation: 1, groups: 1)
        assertClose(many, refMany.data.map { max($0, 0) }, shape: refMany.shape, "conv-transpose batched items")
        // Stride = kernel (the one-tap col2im), ragged widths and non-square kernels, against the reference.
        for (h, w, k) in [(1, 1, Size2(2, 2)), (3, 17, Size2(2, 2)), (2, 33, Size2(3, 2)), (4, 5, Size2(2, 3))] {
            let x = rng.tensor([2, 3, h, w]), wt = rng.tensor([3, 4, k.h, k.w]), b = rng.floats(4)
            for (bias, relu) in [(b as [Float]?, true), (nil, false)] {
                let y = ConvTranspose2d(weight: wt, bias: bias, stride: k, activation: relu ? .relu : .none)(x, in: Workspace())
                let ref = Ref.convTranspose2d(x, wt, bias: bias, stride: k, padding: 0, outputPadding: 0, dilation: 1, groups: 1)
                assertClose(y, relu ? ref.data.map { max($0, 0) } : ref.data, shape: ref.shape, "one-tap \(h)x\(w) k\(k)")
            }
        }
        // Mask head conv5_mask shape: 14x14 → 28x28 with a 2x2/2 kernel.
        let m = ConvTranspose2d(weight: Tensor(shape: [256, 256, 2, 2]), stride: 2)
        XCTAssertEqual(m.outputShape([3, 256, 14, 14]), [3, 256, 28, 28])
    }

    func testGroupNorm() {
        var rng = TestRandom(seed: 109)
        let x = rng.tensor([2, 6, 5, 7], -2, 3)
        let gamma = rng.floats(6), beta = rng.floats(6)
        for (groups, affine, relu) in [(3, true, false), (2, true, true), (6, false, false), (1, true, false)] {
            let gn = GroupNorm(groups: groups, channels: 6, eps: 1e-5, weight: affine ? gamma : nil, bias: affine ? beta : nil,
                               activation: relu ? .relu : .none)
            let y = gn(x, in: Workspace())
            let xv = x.array.map(Double.init), cpg = 6 / groups, sp = 35
            var ref = [Double](repeating: 0, count: xv.count)
            for n in 0..<2 { for g in 0..<groups {
                let idx = (0..<(cpg * sp)).map { n * 6 * sp + g * cpg * sp + $0 }
                let mean = idx.map { xv[$0] }.reduce(0, +) / Double(idx.count)
                let v = idx.map { (xv[$0] - mean) * (xv[$0] - mean) }.reduce(0, +) / Double(idx.count)
                for j in idx {
                    let ch = (j / sp) % 6
                    var r = (xv[j] - mean) / (v + 1e-5).squareRoot()
                    if affine { r = r * Double(gamma[ch]) + Double(beta[ch]) }
                    ref[j] = relu ? max(r, 0) : r
                }
            } }
            assertClose(y, ref, shape: x.shape, "groupnorm g\(groups) affine \(affine) relu \(relu)")
        }
    }

    /// The ISAs this CPU runs (the generic one always).
    private var isas: [Int32] {
        [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }.filter { fpn_isa_supported($0) != 0 }
    }

    /// The output gate on output planes, on every ISA, against a scalar reference: ragged row spans (1-37 pixels,
    /// the vector kernel's 16-pixel steps and masked tails), a sparse pixel mask, with and without residual and
    /// ReLU; a NaN passes ReLU unchanged, and its difference sorts above infinity.
    func testGatePlanesMatchTheScalarReferenceOnEveryISA() {
        var rng = TestRandom(seed: 131)
        let cout = 3, ho = 5, wo = 40, plane = ho * wo, stagePlane = plane + 7
        let rows: [Int32] = [0, 1, 3, 4], x0: [Int32] = [0, 3, 17, 39], x1: [Int32] = [37, 19, 40, 40]
        var mask = [UInt8](repeating: 0, count: plane)
        for p in 0..<plane where p % 3 != 1 { mask[p] = 1 }
        var stage = rng.floats(cout * stagePlane, -2, 2)
        stage[stagePlane + 2 * wo] = .nan            // channel 1, row 2: outside every span
        stage[stagePlane + 5] = .nan                 // channel 1, row 0, x 5 (masked in)
        let bias: [Float] = [0.5, -0.25, 1]
        let residual = rng.floats(cout * plane, -1, 1)
        let kept = rng.floats(cout * plane, -2, 2)
        for (withResidual, relu) in [(false, false), (true, false), (false, true), (true, true)] {
            // Reference: what `Conv2d.scatter` computes, and the max of |t − out| bits per pixel.
            var wantMax = [UInt32](repeating: 0, count: plane), wantOut = kept
            for oc in 0..<cout { for i in rows.indices { for x in Int(x0[i])..<Int(x1[i]) {
                let p = Int(rows[i]) * wo + x
                guard mask[p] != 0 else { continue }
                var t = stage[oc * stagePlane + p] + bias[oc]
                if withResidual { t = t + residual[oc * plane + p] }
                t = relu && t < 0 ? 0 : t
                wantMax[p] = max(wantMax[p], (t - kept[oc * plane + p]).bitPattern & 0x7FFF_FFFF)
                wantOut[oc * plane + p] = t
            } } }
            XCTAssertGreaterThan(wantMax[5], 0x7F80_0000, "the NaN pixel's difference is a NaN")
            for isa in isas {
                var gotMax = [UInt32](repeating: 0, count: plane), gotOut = kept
                stage.withUnsafeBufferPointer { st in residual.withUnsafeBufferPointer { r in
                    let res = withResidual ? r.baseAddress : nil
                    fpn_gate_max_planes(isa, Int32(cout), Int32(wo), rows, x0, x1, Int32(rows.count), mask, st.baseAddress,
                                        stagePlane, kept, res, plane, bias, relu ? 1 : 0, &gotMax)
                    fpn_gate_commit_planes(isa, Int32(cout), Int32(wo), rows, x0, x1, Int32(rows.count), mask,
                                           st.baseAddress, stagePlane, &gotOut, res, plane, bias, relu ? 1 : 0)
                } }
                let label = "isa \(isa) residual \(withResidual) relu \(relu)"
                XCTAssertEqual(gotMax, wantMax, label)
                XCTAssertEqual(gotOut.map(\.bitPattern), wantOut.map(\.bitPattern), label)
            }
        }
    }

    func testTransposeCopiesEveryElementOnEveryISA() {
        var rng = TestRandom(seed: 120)
        // Ragged block edges (1, 15, 17 rows or columns), exact 16x16, 14-row GEMM panels, padded strides; last
        // row blocks of 1-4 rows (copied one by one) and of 5 rows (the register transpose, masked).
        for (rows, cols) in [(1, 1), (1, 17), (17, 1), (15, 33), (16, 16), (14, 40), (37, 50), (3, 5), (49, 20), (52, 9)] {
            let lds = cols + 3, ldd = rows + 2
            let src = rng.floats(rows * lds, -5, 5)
            for isa in isas {
                var dst = [Float](repeating: .nan, count: cols * ldd)
                fpn_transpose(isa, Int32(rows), Int32(cols), src, lds, &dst, ldd)
                var wrong = 0, touched = 0
                for c in 0..<cols {
                    for r in 0..<ldd {
                        if r < rows { if dst[c * ldd + r].bitPattern != src[r * lds + c].bitPattern { wrong += 1 } }
                        else if !dst[c * ldd + r].isNaN { touched += 1 }
                    }
                }
                XCTAssertEqual(wrong, 0, "isa \(isa) \(rows)x\(cols)")
                XCTAssertEqual(touched, 0, "isa \(isa) \(rows)x\(cols) wrote past its rows")
            }
        }
        // The Ops wrapper splits large transposes over the cores.
        let (rows, cols) = (70, 3001)
        let src = rng.floats(rows * cols)
        var dst = [Float](repeating: .nan, count: rows * cols)
        src.withUnsafeBufferPointer { s in dst.withUnsafeMutableBufferPointer { d in
            Ops.transpose(rows: rows, columns: cols, s.baseAddress!, lds: cols, into: d.baseAddress!, ldd: rows)
        } }
        XCTAssertTrue((0..<rows).allSatisfy { r in (0..<cols).allSatisfy { c in dst[c * rows + r] == src[r * cols + c] } })
    }

    func testGroupNormKernelsGiveTheSameBitsOnEveryISA() {
        var rng = TestRandom(seed: 121)
        for n in [1, 2, 7, 15, 16, 17, 31, 33, 100, 1000] {
            var x = rng.floats(n, -3, 4)
            if n > 5 { x[3] = -0.0; x[4] = .nan }
            var sums: [(Double, Double)] = []
            for isa in isas {
                var s = 0.0, q = 0.0
                fpn_moments(isa, x.filter { !$0.isNaN }, x.filter { !$0.isNaN }.count, &s, &q)
                sums.append((s, q))
                for relu in [false, true] {
                    var out = [Float](repeating: 7, count: n)
                    fpn_scale_shift(isa, x, n, 1.5, -0.25, relu ? 1 : 0, &out)
                    for i in 0..<n {
                        let v = x[i] * 1.5 + -0.25, want = relu && v < 0 ? 0 : v
                        XCTAssertEqual(out[i].bitPattern, want.bitPattern, "isa \(isa) n \(n) i \(i) relu \(relu)")
                    }
                }
            }
            let finite = x.filter { !$0.isNaN }.map(Double.init)
            let exactSum = finite.reduce(0, +), exactSq = finite.map { $0 * $0 }.reduce(0, +)
            for (s, q) in sums {
                XCTAssertEqual(s.bitPattern, sums[0].0.bitPattern, "n \(n): lane order differs between ISAs")
                XCTAssertEqual(q.bitPattern, sums[0].1.bitPattern, "n \(n)")
                XCTAssertEqual(s, exactSum, accuracy: 1e-12 * Double(n) * 4)
                XCTAssertEqual(q, exactSq, accuracy: 1e-12 * exactSq)
            }
        }
    }

    /// Against the serial double loop GroupNorm used before its moments were taken in lanes: the change in the
    /// output is at most a few float ulps of the output's scale (it only reorders double additions).
    func testGroupNormMatchesTheSerialDoubleLoop() {
        var rng = TestRandom(seed: 122)
        for (shape, groups) in [([1, 4, 1, 1], 4), ([1, 6, 3, 5], 3), ([2, 32, 17, 19], 8), ([1, 128, 20, 16], 32)] {
            let x = rng.tensor(shape, -3, 5)
            let c = shape[1], gamma = rng.floats(c), beta = rng.floats(c)
            let y = GroupNorm(groups: groups, channels: c, weight: gamma, bias: beta, activation: .relu)(x, in: Workspace())
            let xv = x.array, yv = y.array, spatial = shape[2] * shape[3], cpg = c / groups, gs = cpg * spatial
            var worst: Float = 0
            for ng in 0..<(shape[0] * groups) {
                var sum = 0.0, sq = 0.0
                for i in 0..<gs { let v = Double(xv[ng * gs + i]); sum += v; sq += v * v }
                let mean = sum / Double(gs), inv = 1 / (max(sq / Double(gs) - mean * mean, 0) + 1e-5).squareRoot()
                for cc in 0..<cpg {
                    let ch = (ng % groups) * cpg + cc, a = Float(inv) * gamma[ch], b = beta[ch] - Float(mean) * a
                    for i in 0..<spatial {
                        let at = ng * gs + cc * spatial + i, v = xv[at] * a + b
                        worst = max(worst, abs(yv[at] - (v < 0 ? 0 : v)))
                    }
                }
            }
            print("GroupNorm \(shape) groups \(groups): max |lanes - serial| = \(worst)")
            XCTAssertLessThanOrEqual(worst, 4e-6, "\(shape) groups \(groups)")
        }
    }

    func testOneTapCol2imMatchesTheScalarLoopOnEveryISA() {
        var rng = TestRandom(seed: 123)
        for (h, w, kh, kw) in [(1, 1, 2, 2), (3, 17, 2, 2), (2, 33, 3, 2), (4, 5, 2, 3), (14, 14, 2, 2), (1, 16, 1, 2)] {
            let hw = h * w, ld = hw + 5
            let cols = rng.floats(kh * kw * ld, -2, 2)
            for isa in isas {
                for (bias, relu) in [(Float(0.3), true), (0, false), (-0.5, false)] {
                    var out = [Float](repeating: .nan, count: h * kh * w * kw)
                    fpn_col2im_one_tap(isa, cols, ld, Int32(h), Int32(w), Int32(kh), Int32(kw), bias, relu ? 1 : 0, &out)
                    var wrong = 0
                    for oy in 0..<(h * kh) {
                        for ox in 0..<(w * kw) {
                            let v = bias + cols[((oy % kh) * kw + ox % kw) * ld + (oy / kh) * w + ox / kw]
                            let want = relu && v < 0 ? 0 : v
                            if out[oy * w * kw + ox].bitPattern != want.bitPattern { wrong += 1 }
                        }
                    }
                    XCTAssertEqual(wrong, 0, "isa \(isa) \(h)x\(w) kernel \(kh)x\(kw) bias \(bias) relu \(relu)")
                }
            }
        }
    }

    func testMaxPoolKernelsMatchTheScalarLoopOnEveryISA() {
        var rng = TestRandom(seed: 124)
        @inline(__always) func wins(_ v: Float, over m: Float) -> Bool { v > m || v != v }
        for w in [1, 2, 15, 16, 17, 33, 40, 64, 70, 161] {
            var v = rng.floats(w, -3, 3)
            if w > 20 { v[19] = .nan; v[5] = v[6] }
            let other = rng.floats(w, -3, 3)
            for isa in isas {
                var acc = v
                fpn_max_rows(isa, &acc, other, w)
                XCTAssertTrue((0..<w).allSatisfy { i in
                    acc[i].bitPattern == (wins(other[i], over: v[i]) ? other[i] : v[i]).bitPattern }, "rows isa \(isa) w \(w)")
                for (k, s, p) in [(3, 2, 1), (1, 2, 0), (2, 2, 0), (3, 1, 1), (2, 1, 0), (3, 3, 1), (5, 2, 2)] where w + 2 * p >= k {
                    let wo = (w + 2 * p - k) / s + 1
                    // The whole row, and a span that starts inside it.
                    for (x0, n) in [(0, wo), (wo / 3, wo - wo / 3)] where n > 0 {
                        var d = [Float](repeating: 9, count: wo)
                        fpn_max_windows(isa, v, Int32(w), x0, n, Int32(k), Int32(s), Int32(p), &d)
                        var wrong = 0
                        for ox in 0..<wo {
                            guard ox >= x0 && ox < x0 + n else { if d[ox] != 9 { wrong += 1 }; continue }
                            let lo = max(ox * s - p, 0), hi = min(ox * s - p + k, w)
                            var m = v[lo]
                            for xx in (lo + 1)..<max(hi, lo + 1) where wins(v[xx], over: m) { m = v[xx] }
                            if d[ox].bitPattern != m.bitPattern { wrong += 1 }
                        }
                        XCTAssertEqual(wrong, 0, "isa \(isa) w \(w) k\(k) s\(s) p\(p) from \(x0)")
                    }
                }
            }
        }
        // The op on a row long enough for the vector path, with a NaN, against the reference.
        let x = rng.tensor([1, 2, 9, 70])
        x.ptr[3 * 70 + 41] = .nan
        let y = x.maxPool2d(kernel: 3, stride: 2, padding: 1, in: Workspace())
        let ref = Ref.maxPool(x, kernel: 3, stride: 2, padding: 1)
        XCTAssertTrue(y.array[1 * 35 + 20].isNaN)
        XCTAssertEqual(zip(y.array, ref.data).filter { !$0.0.isNaN && Double($0.0) != $0.1 }.count, 0)
    }

    /// RGB bytes to float planes through the table, on every ISA: ragged widths around the 16-pixel vector, one
    /// row and several, the image's last pixels (whose 4-byte reads would pass its end), padded row and plane
    /// strides left untouched.
    func testNormalizeRGBMatchesTheTableOnEveryISA() {
        var rng = TestRandom(seed: 127)
        let table = rng.floats(3 * 256, -3, 3)
        for (w, h) in [(1, 1), (5, 3), (15, 2), (16, 1), (17, 4), (33, 7), (320, 3)] {
            let rgb = (0..<(w * h * 3)).map { _ in UInt8(rng.int(256)) }
            let ldo = w + 3, plane = (h + 1) * ldo
            for isa in isas {
                var out = [Float](repeating: .nan, count: 3 * plane)
                rgb.withUnsafeBufferPointer { px in
                    fpn_normalize_rgb(isa, px.baseAddress!, Int32(w), Int32(h), table, &out, plane, Int32(ldo))
                }
                var wrong = 0, touched = 0
                for c in 0..<3 {
                    for y in 0...h {
                        for x in 0..<ldo {
                            let v = out[c * plane + y * ldo + x]
                            if y < h && x < w {
                                if v.bitPattern != table[c * 256 + Int(rgb[(y * w + x) * 3 + c])].bitPattern { wrong += 1 }
                            } else if !v.isNaN {
                                touched += 1
                            }
                        }
                    }
                }
                XCTAssertEqual(wrong, 0, "isa \(isa) \(w)x\(h)")
                XCTAssertEqual(touched, 0, "isa \(isa) \(w)x\(h) wrote past a row or the image")
            }
        }
    }

    func testBilinearKernelsMatchTheScalarLoopOnEveryISA() {
        var rng = TestRandom(seed: 125)
        // Upsampling (taps within a vector's reach), downsampling (gathers), ragged widths, width 1.
        for (w, wo) in [(1, 1), (1, 5), (5, 1), (9, 18), (40, 80), (40, 160), (100, 37), (17, 33), (300, 20)] {
            let row = rng.floats(w, -2, 2), other = rng.floats(wo, -2, 2), base = rng.floats(wo, -2, 2)
            var taps = [Ops.BilinearTap](repeating: .init(i0: 0, i1: 0, weight: 0), count: wo)
            taps.withUnsafeMutableBufferPointer { Ops.bilinearTaps(input: w, output: wo, into: $0) }
            let i0 = taps.map { Int32($0.i0) }, i1 = taps.map { Int32($0.i1) }
            let w0 = taps.map { 1 - $0.weight }, w1 = taps.map(\.weight)
            let want = taps.map { (1 - $0.weight) * row[$0.i0] + $0.weight * row[$0.i1] }
            var bases = [Int32](repeating: 0, count: (wo + 15) / 16)
            fpn_lerp_taps_bases(i0, i1, wo, &bases)
            XCTAssertEqual(bases.map { $0 >= 0 }, (0..<bases.count).map { b in
                let r = (16 * b)..<min(wo, 16 * b + 16)
                return i1[r].max()! - i0[r].min()! < 32
            }, "\(w) → \(wo): permuted blocks")
            XCTAssertTrue(zip(bases, 0..<bases.count).allSatisfy { $0 < 0 || $0 == i0[16 * $1] }, "\(w) → \(wo)")
            for isa in isas {
                for precomputed in [false, true] {
                    var out = [Float](repeating: .nan, count: wo)
                    fpn_lerp_taps(isa, row, Int32(w), i0, i1, w0, w1, precomputed ? bases : nil, wo, &out)
                    XCTAssertEqual(zip(out, want).filter { $0.bitPattern != $1.bitPattern }.count, 0,
                                   "isa \(isa) \(w) → \(wo), bases \(precomputed)")
                }
                var blend = [Float](repeating: .nan, count: wo)
                fpn_lerp_rows(isa, base, other, wo, 0.3, 0.7, &blend)
                XCTAssertTrue((0..<wo).allSatisfy { blend[$0].bitPattern == (0.3 * base[$0] + 0.7 * other[$0]).bitPattern })
                // Into a sum: the lerp rounded, then added (a resize followed by an add, bit for bit).
                let sum0 = rng.floats(wo, -2, 2)
                var sum = sum0
                fpn_lerp_rows_add(isa, base, other, wo, 0.3, 0.7, &sum)
                XCTAssertEqual((0..<wo).filter { sum[$0].bitPattern != (sum0[$0] + blend[$0]).bitPattern }.count, 0,
                               "isa \(isa) accumulate \(wo)")
            }
        }
        // Resizing into a sum equals resizing, then adding, bit for bit (the semantic head's level sum).
        for (h, w, ho, wo) in [(5, 40, 10, 80), (20, 16, 40, 32), (1, 1, 3, 17)] {
            let x = rng.tensor([2, 3, h, w]), s0 = rng.tensor([2, 3, ho, wo]), ws = Workspace()
            let resized = x.resizeBilinear(height: ho, width: wo, in: ws)
            let separate = ws.tensor(s0.shape), fused = ws.tensor(s0.shape)
            Ops.add(s0, resized, into: separate)
            fused.copy(from: s0)
            Ops.resizeBilinear(x, into: fused, accumulate: true)
            XCTAssertEqual(zip(fused.array, separate.array).filter { $0.bitPattern != $1.bitPattern }.count, 0,
                           "\(h)x\(w) → \(ho)x\(wo) into a sum")
            XCTAssertNotEqual(fused.array, s0.array, "the resize added nothing")
        }
        // The op against the separable scalar formula, bit for bit.
        for (h, w, ho, wo) in [(5, 40, 10, 80), (20, 16, 80, 64), (9, 100, 4, 37), (1, 1, 3, 17)] {
            let x = rng.tensor([1, 2, h, w])
            let y = x.resizeBilinear(height: ho, width: wo, in: Workspace()).array, xv = x.array
            var ty = [Ops.BilinearTap](repeating: .init(i0: 0, i1: 0, weight: 0), count: ho), tx = ty
            tx = [Ops.BilinearTap](repeating: .init(i0: 0, i1: 0, weight: 0), count: wo)
            ty.withUnsafeMutableBufferPointer { Ops.bilinearTaps(input: h, output: ho, into: $0) }
            tx.withUnsafeMutableBufferPointer { Ops.bilinearTaps(input: w, output: wo, into: $0) }
            var wrong = 0
            for c in 0..<2 { for oy in 0..<ho { for ox in 0..<wo {
                func hz(_ iy: Int) -> Float {
                    let t = tx[ox], r = c * h * w + iy * w
                    return (1 - t.weight) * xv[r + t.i0] + t.weight * xv[r + t.i1]
                }
                let t = ty[oy], v = (1 - t.weight) * hz(t.i0) + t.weight * hz(t.i1)
                if y[(c * ho + oy) * wo + ox].bitPattern != v.bitPattern { wrong += 1 }
            } } }
            XCTAssertEqual(wrong, 0, "\(h)x\(w) → \(ho)x\(wo)")
        }
    }

    func testResizedArgmaxEqualsCropResizeArgmax() {
        var rng = TestRandom(seed: 126)
        // (planes, map h x w, window h x w, output h x w): up- and downsampling, a window smaller than the map,
        // one plane, one-pixel windows and outputs, ragged widths.
        let cases = [(5, 12, 20, 10, 17, 40, 67), (5, 12, 20, 12, 20, 7, 5), (1, 4, 4, 3, 3, 9, 9), (3, 1, 1, 1, 1, 4, 33),
                     (2, 8, 8, 8, 5, 1, 1), (7, 16, 32, 15, 31, 61, 130)]
        for (k, mh, mw, h, w, ho, wo) in cases {
            // Few distinct values, so equal maxima (ties, after interpolation too) are common.
            let levels: [Float] = [-1, 0, 0.5, 0.5, 2]
            let x = Tensor(shape: [1, k, mh, mw], data: (0..<(k * mh * mw)).map { _ in levels[rng.int(levels.count)] })
            let ws = Workspace()
            let crop = ws.tensor([1, k, h, w])
            for c in 0..<k { for y in 0..<h { for xx in 0..<w { crop[0, c, y, xx] = x[0, c, y, xx] } } }
            let resized = crop.resizeBilinear(height: ho, width: wo, in: ws)
            var want = [UInt8](repeating: 0, count: ho * wo)
            resized.withUnsafeBufferPointer { Ops.argmaxPlanes($0.baseAddress!, planes: k, count: ho * wo, into: &want) }
            for width in [1, 2] {
                var got = [UInt8](repeating: 255, count: ho * wo)
                Parallel.withWidth(width) {
                    Ops.resizeBilinearArgmax(x, height: h, width: w, outHeight: ho, outWidth: wo, into: &got, workspace: ws)
                }
                XCTAssertEqual(zip(got, want).filter { $0 != $1 }.count, 0, "\(k) planes \(h)x\(w) of \(mh)x\(mw) → \(ho)x\(wo), \(width) cores")
            }
            if k > 1, h * w > 1, ho * wo > 1 { XCTAssertGreaterThan(Set(want).count, 1, "all labels equal: tests little") }
        }
    }

    func testConcatAndGlobalAveragePool() {
        var rng = TestRandom(seed: 110)
        let a = rng.tensor([2, 3, 4, 5]), b = rng.tensor([2, 2, 4, 5])
        let y = Tensor.concat([a, b], dim: 1, in: Workspace())
        XCTAssertEqual(y.shape, [2, 5, 4, 5])
        XCTAssertEqual(y[1, 4, 3, 2], b[1, 1, 3, 2])
        XCTAssertEqual(y[1, 2, 0, 4], a[1, 2, 0, 4])
        XCTAssertEqual(y[0, 3, 2, 1], b[0, 0, 2, 1])
        let z = Tensor.concat([a, a], dim: 3, in: Workspace())
        XCTAssertEqual(z.shape, [2, 3, 4, 10])
        XCTAssertEqual(z[1, 2, 3, 7], a[1, 2, 3, 2])
        let g = a.globalAveragePool(in: Workspace())
        XCTAssertEqual(g.shape, [2, 3, 1, 1])
        let av = a.array
        XCTAssertEqual(Double(g[1, 2, 0, 0]), (0..<20).map { Double(av[(1 * 3 + 2) * 20 + $0]) }.reduce(0, +) / 20, accuracy: 1e-6)
    }

    func testViews() {
        let t = Tensor(shape: [2, 3, 2, 2], data: (0..<24).map(Float.init))
        XCTAssertEqual(t.batchItem(1).array, (12..<24).map(Float.init))
        XCTAssertEqual(t.reshaped([6, 4])[5, 3], 23)
        XCTAssertEqual(t.count, 24)
    }
}
