import CKernels
import TestSupport
import XCTest
@testable import Tensor

/// The compute path: chosen from the CPU's features (any feature set, not only this host's), forced by the user,
/// dropped after a failed self-check; and every kernel against a float64 reference on ragged shapes.
final class ComputeTests: XCTestCase {
    private func features(avx2: Bool = false, avx512: Bool = false, bf16: Bool = false) -> CPUFeatures {
        var f = CPUFeatures()
        f.avx2 = avx2 || avx512; f.fma = avx2 || avx512
        f.avx512f = avx512; f.avx512bw = avx512; f.avx512vl = avx512; f.avx512dq = avx512
        f.avx512bf16 = bf16
        return f
    }

    func testSelectionFollowsTheCPUFeatures() {
        XCTAssertEqual(ComputeChoice.select(features: features(avx2: true), environment: [:]).path, .avx2)
        XCTAssertEqual(ComputeChoice.select(features: features(avx512: true), environment: [:]).path, .avx512)
        XCTAssertEqual(ComputeChoice.select(features: features(avx512: true, bf16: true), environment: [:]).path, .avx512)
        XCTAssertEqual(ComputeChoice.select(features: features(), environment: [:]).path, .openblas)
        // AVX-512 F without BW/VL/DQ (Knights Landing) is not enough for the AVX-512 kernels.
        var knl = features(avx2: true)
        knl.avx512f = true
        XCTAssertEqual(ComputeChoice.select(features: knl, environment: [:]).path, .avx2)
    }

    func testAForcedPathAndAnExplicitOpenBLASKernelWin() {
        let f = features(avx512: true)
        let forced = ComputeChoice.select(features: f, environment: ["FPNSTREAM_COMPUTE": "avx2"])
        XCTAssertEqual(forced.path, .avx2)
        XCTAssertNil(forced.warning)
        XCTAssertEqual(ComputeChoice.select(features: f, environment: ["FPNSTREAM_COMPUTE": "OpenBLAS"]).path, .openblas)
        let core = ComputeChoice.select(features: f, environment: ["OPENBLAS_CORETYPE": "Haswell"])
        XCTAssertEqual(core.path, .openblas)
        XCTAssertTrue(core.reason.contains("OPENBLAS_CORETYPE=Haswell"), core.reason)
        XCTAssertEqual(ComputeChoice.select(features: f, environment: ["OPENBLAS_CORETYPE": "Haswell",
                                                                         "FPNSTREAM_COMPUTE": "avx512"]).path, .avx512)
    }

    func testAForcedPathTheCPUCannotRunWarnsAndFallsBackToTheFeatures() {
        let c = ComputeChoice.select(features: features(avx2: true), environment: ["FPNSTREAM_COMPUTE": "avx512"])
        XCTAssertEqual(c.path, .avx2)
        XCTAssertTrue(c.warning?.contains("lacks") == true, "\(String(describing: c.warning))")
        let typo = ComputeChoice.select(features: features(avx2: true), environment: ["FPNSTREAM_COMPUTE": "avx9"])
        XCTAssertEqual(typo.path, .avx2)
        XCTAssertTrue(typo.warning?.contains("not a compute path") == true)
    }

    func testAFailedSelfCheckFallsBackToOpenBLASWithOneWarning() {
        let chosen = ComputeChoice(path: .avx512, reason: "CPU has AVX-512 F/BW/VL/DQ")
        let bad = ComputeChoice.verified(chosen) { _ in 0.3 }
        XCTAssertEqual(bad.path, .openblas)
        XCTAssertTrue(bad.warning?.contains("wrong results") == true)
        XCTAssertEqual(ComputeChoice.verified(chosen) { _ in .nan }.path, .openblas)
        XCTAssertEqual(ComputeChoice.verified(chosen) { _ in 1e-7 }, chosen)
        // OpenBLAS itself is not checked.
        var checked = false
        _ = ComputeChoice.verified(ComputeChoice(path: .openblas, reason: "x")) { _ in checked = true; return 1 }
        XCTAssertFalse(checked)
    }

    /// The paths this host can run.
    private var runnable: [ComputePath] { ComputePath.allCases.filter { $0.runs(on: .host) } }
    /// The kernel ISAs this CPU runs (the generic one always).
    private var supportedISAs: [Int32] {
        [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }.filter { fpn_isa_supported($0) != 0 }
    }

    func testEveryPathPassesTheSelfCheck() {
        for p in runnable { XCTAssertLessThan(Compute.selfCheckError(p), 1e-5, p.rawValue) }
    }

    /// act(A·B + beta·C + bias) against float64 on ragged shapes, for every path, one thread and split over the
    /// cores (by columns and by rows), with strides wider than the matrices.
    func testEveryKernelMatchesTheReferenceOnRaggedShapes() {
        var rng = TestRandom(seed: 41)
        let shapes = [(1, 1, 1), (5, 3, 27), (13, 47, 64), (14, 17, 255), (29, 100, 3), (64, 9, 577), (257, 33, 64),
                      (70, 1000, 96), (300, 40, 600)]
        for path in runnable {
            for (m, n, k) in shapes {
                for (beta, relu) in [(false, false), (true, true)] {
                    let lda = k + 3, ldb = n + 5, ldc = n + 2
                    let a = rng.floats(m * lda), b = rng.floats(k * ldb), bias = rng.floats(m)
                    let c0 = rng.floats(m * ldc)
                    var c = beta ? c0 : [Float](repeating: .nan, count: m * ldc)
                    let packed = a.withUnsafeBufferPointer { PackedMatrix($0.baseAddress!, rows: m, columns: k, lda: lda, path: path, precision: .f32) }
                    b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in bias.withUnsafeBufferPointer { pbias in
                        Gemm.multiply(packed, b: pb.baseAddress!, ldb: ldb, columns: n, beta: beta ? 1 : 0,
                                      c: pc.baseAddress!, ldc: ldc, bias: pbias.baseAddress!, relu: relu)
                    } } }
                    let worst = worstError(c, a: a, lda: lda, b: b, ldb: ldb, c0: beta ? c0 : nil, ldc: ldc, bias: bias,
                                           relu: relu, m: m, n: n, k: k, "\(path)")
                    XCTAssertLessThan(worst, 1e-5, "\(path) m\(m) n\(n) k\(k) beta \(beta) relu \(relu)")
                }
            }
        }
    }

    /// Products of a few row panels read B in place instead of packing it: every row equals, bit for bit, the same
    /// row of a product of many rows (packed B), across K blocks, ragged columns, beta, bias and ReLU.
    func testFewRowProductsEqualTheirRowsOfAPackedProduct() {
        var rng = TestRandom(seed: 43)
        for path in runnable where path.isa != nil {
            for (m, n, k) in [(1, 1, 1), (7, 17, 600), (14, 33, 256), (30, 100, 513), (42, 47, 40)] {
                let big = 120, ldb = n + 7, ldc = n + 3
                let a = rng.floats(big * k), b = rng.floats(k * ldb), bias = rng.floats(big), c0 = rng.floats(big * ldc)
                for (beta, relu) in [(false, false), (true, true)] {
                    func product(_ rows: Int) -> [Float] {
                        var c = c0
                        let packed = a.withUnsafeBufferPointer { PackedMatrix($0.baseAddress!, rows: rows, columns: k, path: path, precision: .f32) }
                        b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in bias.withUnsafeBufferPointer { pbias in
                            Parallel.withWidth(1) {
                                Gemm.multiply(packed, b: pb.baseAddress!, ldb: ldb, columns: n, beta: beta ? 1 : 0,
                                              c: pc.baseAddress!, ldc: ldc, bias: pbias.baseAddress!, relu: relu)
                            }
                        } } }
                        return Array(c[0..<(m * ldc)])
                    }
                    let few = product(m), many = product(big)
                    let differing = zip(few, many).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "\(path) m\(m) n\(n) k\(k) beta \(beta) relu \(relu)")
                    XCTAssertNotEqual(few[0], c0[0], "the product wrote C")
                }
            }
        }
    }

    /// A packed left operand is MR-row panels of A's transpose, zero past the last row, on every ISA.
    func testPackedLeftOperandIsThePanelTranspose() {
        var rng = TestRandom(seed: 44)
        for isa in supportedISAs {
            let mr = Int(fpn_sgemm_mr(isa))
            for (m, k) in [(1, 1), (mr - 1, 5), (mr, 17), (mr + 1, 16), (2 * mr + 3, 40)] {
                let lda = k + 2, a = rng.floats(m * lda)
                var packed = [Float](repeating: .nan, count: fpn_sgemm_packed_a_size(isa, Int32(m), Int32(k)))
                fpn_sgemm_pack_a(isa, Int32(m), Int32(k), a, Int32(lda), &packed)
                var wrong = 0
                for i in 0..<((m + mr - 1) / mr * mr) {
                    for p in 0..<k {
                        let want: Float = i < m ? a[i * lda + p] : 0
                        if packed[(i / mr) * mr * k + p * mr + i % mr].bitPattern != want.bitPattern { wrong += 1 }
                    }
                }
                XCTAssertEqual(wrong, 0, "isa \(isa) m \(m) k \(k)")
            }
        }
    }

    /// A conv's GEMM with im2col gathered while packing equals the GEMM on the explicit im2col matrix, bit for bit,
    /// on every ISA's kernels: stride 2 (AVX-512's even-element gather, whole and partial vectors; a scalar loop on
    /// the others) and stride 1, padding at both ends, output rows wider and narrower than a panel.
    func testGatheredIm2colEqualsTheExplicitMatrixOnEveryISA() {
        var rng = TestRandom(seed: 57)
        let m = 50
        for (c, h, w, k, s, p) in [(3, 21, 75, 7, 2, 3), (5, 13, 40, 3, 2, 1), (4, 9, 9, 3, 1, 1), (2, 30, 151, 3, 2, 0)] {
            let oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1, n = oh * ow, kk = c * k * k
            let x = rng.floats(c * h * w), a = rng.floats(m * kk)
            var cols = [Float](repeating: 0, count: kk * n)
            for ci in 0..<c { for ky in 0..<k { for kx in 0..<k { for oy in 0..<oh { for ox in 0..<ow {
                let iy = oy * s - p + ky, ix = ox * s - p + kx
                if iy >= 0 && iy < h && ix >= 0 && ix < w { cols[((ci * k + ky) * k + kx) * n + oy * ow + ox] = x[(ci * h + iy) * w + ix] }
            } } } } }
            for isa in supportedISAs {
                var packed = [Float](repeating: 0, count: fpn_sgemm_packed_a_size(isa, Int32(m), Int32(kk)))
                fpn_sgemm_pack_a(isa, Int32(m), Int32(kk), a, Int32(kk), &packed)
                var ws = [Float](repeating: 0, count: fpn_sgemm_workspace_size(isa, Int32(n), Int32(kk)))
                var gathered = [Float](repeating: .nan, count: m * n), explicit = gathered
                x.withUnsafeBufferPointer { xp in
                    var g = fpn_im2col(x: xp.baseAddress, h: Int32(h), w: Int32(w), kh: Int32(k), kw: Int32(k),
                                       sh: Int32(s), sw: Int32(s), ph: Int32(p), pw: Int32(p), dh: 1, dw: 1,
                                       ow: Int32(ow), col0: 0)
                    fpn_sgemm_conv_compute(isa, Int32(m), Int32(n), Int32(kk), packed, &g, 0, &gathered, Int32(n), nil, 0, &ws)
                }
                fpn_sgemm_compute(isa, Int32(m), Int32(n), Int32(kk), packed, cols, Int32(n), 0, &explicit, Int32(n), nil, 0, &ws)
                let differing = zip(gathered, explicit).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "isa \(isa) \(c)x\(h)x\(w) k \(k) stride \(s) pad \(p)")
                XCTAssertGreaterThan(explicit.filter { $0 != 0 && !$0.isNaN }.count, m * n / 2)
            }
        }
    }

    /// The per-call left operand (FC layers): A·B with A packed inside the call.
    func testUnpackedProductMatchesTheReference() {
        var rng = TestRandom(seed: 43)
        for path in runnable {
            for (m, n, k) in [(1, 7, 5), (33, 65, 129), (200, 30, 400)] {
                let a = rng.floats(m * k), b = rng.floats(k * n)
                var c = [Float](repeating: 0, count: m * n)
                a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
                    Gemm.multiply(m: m, n: n, k: k, a: pa.baseAddress!, lda: k, b: pb.baseAddress!, ldb: n, beta: 0,
                                  c: pc.baseAddress!, ldc: n, path: path)
                } } }
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0, mag = 1.0
                        for l in 0..<k { let t = Double(a[i * k + l]) * Double(b[l * n + j]); s += t; mag += abs(t) }
                        worst = max(worst, abs(Double(c[i * n + j]) - s) / mag)
                    }
                }
                XCTAssertLessThan(worst, 1e-5, "\(path) m\(m) n\(n) k\(k)")
            }
        }
    }

    /// A constant packed right operand (a fully connected layer's weight) with A packed a slice at a time: against
    /// float64 on ragged shapes (K across blocks, N across panels, M across row panels, strides wider than the
    /// matrices, beta, ReLU, one thread and split over the cores) on every path, and on the own kernels bit for bit
    /// the product of the whole packed A. Up to 256 columns AVX-512 reads A from its rows, past them it packs it.
    func testConstantRightOperandProductMatchesTheReference() {
        var rng = TestRandom(seed: 47)
        for path in runnable {
            for (m, n, k) in [(1, 1, 1), (5, 3, 27), (14, 32, 256), (15, 33, 257), (29, 100, 600), (300, 128, 1000),
                              (40, 5, 6272), (17, 257, 300), (3, 256, 40)] {
                for (beta, relu) in [(false, false), (true, true)] {
                    let lda = k + 3, ldc = n + 2
                    let a = rng.floats(m * lda), b = rng.floats(k * n), c0 = rng.floats(m * ldc)
                    let packed = b.withUnsafeBufferPointer { PackedColumns($0.baseAddress!, rows: k, columns: n, path: path, precision: .f32) }
                    for width in [1, 2] {
                        var c = beta ? c0 : [Float](repeating: .nan, count: m * ldc)
                        a.withUnsafeBufferPointer { pa in c.withUnsafeMutableBufferPointer { pc in
                            Parallel.withWidth(width) {
                                Gemm.multiply(rows: m, a: pa.baseAddress!, lda: lda, b: packed, beta: beta ? 1 : 0,
                                              c: pc.baseAddress!, ldc: ldc, relu: relu)
                            }
                        } }
                        let worst = worstError(c, a: a, lda: lda, b: b, ldb: n, c0: beta ? c0 : nil, ldc: ldc, bias: nil,
                                               relu: relu, m: m, n: n, k: k, "\(path)")
                        XCTAssertLessThan(worst, 1e-5, "\(path) m\(m) n\(n) k\(k) beta \(beta) relu \(relu) width \(width)")
                        guard path.isa != nil, !beta else { continue }
                        var whole = [Float](repeating: .nan, count: m * ldc)
                        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in whole.withUnsafeMutableBufferPointer { pc in
                            Parallel.withWidth(width) {
                                Gemm.multiply(m: m, n: n, k: k, a: pa.baseAddress!, lda: lda, b: pb.baseAddress!, ldb: n,
                                              beta: 0, c: pc.baseAddress!, ldc: ldc, path: path, precision: .f32)
                            }
                        } } }
                        let differing = (0..<m).flatMap { i in (0..<n).map { i * ldc + $0 } }
                            .filter { c[$0].bitPattern != whole[$0].bitPattern }.count
                        XCTAssertEqual(differing, 0, "\(path) m\(m) n\(n) k\(k) width \(width): differs from the packed-A product")
                    }
                }
            }
        }
    }

    /// The worst error of `c` against act(A·B + C0 + bias[row]) in float64, relative to 1 + Σ|a·b| (NaN counts as
    /// infinite); with `c0`, also checks that the columns past `n` kept it (a product writes no further).
    private func worstError(_ c: [Float], a: [Float], lda: Int, b: [Float], ldb: Int, c0: [Float]?, ldc: Int,
                            bias: [Float]?, relu: Bool, m: Int, n: Int, k: Int, _ label: String) -> Double {
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var s = c0.map { Double($0[i * ldc + j]) } ?? 0, mag = 1.0
                for l in 0..<k { let t = Double(a[i * lda + l]) * Double(b[l * ldb + j]); s += t; mag += abs(t) }
                s += bias.map { Double($0[i]) } ?? 0
                if relu { s = max(0, s) }
                let e = abs(Double(c[i * ldc + j]) - s) / mag
                worst = e.isNaN ? .infinity : max(worst, e)
            }
            if let c0 {
                for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j], "\(label) wrote past the last column") }
            }
        }
        return worst
    }

    func testTheHostDescriptionNamesThePathAndTheReason() {
        XCTAssertTrue(Compute.description.contains("compute: \(Compute.path.rawValue)"), Compute.description)
        XCTAssertTrue(Compute.description.contains(Compute.choice.reason))
        XCTAssertTrue(Compute.description.contains(Compute.path == .openblas ? "no Winograd" : "Winograd F("), Compute.description)
        let limit = Compute.fmaPeakGFLOPS(seconds: 0.02)
        XCTAssertGreaterThan(limit.gflops, 0)
    }
}

/// bf16 GEMMs: inputs rounded to bfloat16, fp32 accumulation; opt-in and only where the CPU has AVX512_BF16.
final class BF16Tests: XCTestCase {
    /// Round to nearest even, as the kernels do.
    private func bf16(_ x: Float) -> Double {
        guard x.isFinite else { return Double(x) }
        let b = x.bitPattern
        let r = (b &+ 0x7FFF &+ ((b >> 16) & 1)) & 0xFFFF_0000
        return Double(Float(bitPattern: r))
    }

    func testPrecisionNeedsAVX512BF16AndTheOwnKernels() {
        XCTAssertTrue(Precision.f32.runs(bf16Supported: false, path: .openblas))
        XCTAssertTrue(Precision.bf16.runs(bf16Supported: true, path: .avx512))
        XCTAssertFalse(Precision.bf16.runs(bf16Supported: false, path: .avx512))
        XCTAssertFalse(Precision.bf16.runs(bf16Supported: true, path: .openblas))
        if !Precision.bf16.isSupported {
            XCTAssertThrowsError(try Compute.use(.bf16))
        }
    }

    /// Intel cores without AMX issue vdpbf16ps at half the f32 multiply-add rate, Zen 4 at twice it: the advice
    /// must say which, with the measured figure.
    func testBF16AdviceFollowsTheMeasuredRate() {
        let intel = Precision.bf16Advice(rateRatio: 0.49)
        XCTAssertTrue(intel.slower)
        XCTAssertTrue(intel.line.hasPrefix("bf16 dot products run at 0.49x"), intel.line)
        XCTAssertTrue(intel.line.contains("slower than f32"), intel.line)
        let zen4 = Precision.bf16Advice(rateRatio: 1.98)
        XCTAssertFalse(zen4.slower)
        XCTAssertTrue(zen4.line.contains("1.98x") && zen4.line.contains("speeds up"), zen4.line)
        XCTAssertTrue(Precision.bf16Advice(rateRatio: 0.999).slower)
        XCTAssertFalse(Precision.bf16Advice(rateRatio: 1.0).slower)
    }

    /// The probe measures: on a CPU that runs bf16 the ratio is a real rate (the instructions do twice an FMA's
    /// work, so no current core is outside 0.2x-4x), and `--version` carries the line; elsewhere there is none.
    func testBF16RateIsMeasuredOnlyWhereBF16Runs() {
        guard let r = Compute.bf16RateRatio else {
            XCTAssertFalse(Precision.bf16.runs(bf16Supported: Precision.bf16.isSupported, path: Compute.path))
            XCTAssertFalse(Compute.description.contains("bf16 dot products"))
            return
        }
        XCTAssertGreaterThan(r, 0.2)
        XCTAssertLessThan(r, 4)
        XCTAssertTrue(Compute.description.contains("\nbf16: bf16 dot products run at"), Compute.description)
    }

    func testPrecisionVariableFallsBackToF32WithAWarning() {
        let ok = Precision.resolve(environment: ["FPNSTREAM_PRECISION": "BF16"], bf16Supported: true, path: .avx512)
        XCTAssertEqual(ok.precision, .bf16)
        XCTAssertNil(ok.warning)
        XCTAssertEqual(Precision.resolve(environment: [:], bf16Supported: true, path: .avx512).precision, .f32)
        let typo = Precision.resolve(environment: ["FPNSTREAM_PRECISION": "fp16"], bf16Supported: true, path: .avx512)
        XCTAssertEqual(typo.precision, .f32)
        XCTAssertTrue(typo.warning?.contains("not a precision") == true)
        let cannot = Precision.resolve(environment: ["FPNSTREAM_PRECISION": "bf16"], bf16Supported: false, path: .avx2)
        XCTAssertEqual(cannot.precision, .f32)
        XCTAssertTrue(cannot.warning?.contains("needs AVX512_BF16") == true)
        XCTAssertEqual(Precision.resolve(environment: ["FPNSTREAM_PRECISION": "bf16"], bf16Supported: true,
                                         path: .openblas).precision, .f32)
    }

    /// Against float64 on the bf16-rounded inputs (only the accumulation order differs), and against the fp32
    /// product within bf16's rounding, on ragged shapes split over the cores.
    func testBF16ProductMatchesTheRoundedReference() throws {
        guard Precision.bf16.isSupported && Compute.path.isa != nil else {
            XCTAssertFalse(Precision.bf16.runs(bf16Supported: Precision.bf16.isSupported, path: Compute.path))
            return
        }
        var rng = TestRandom(seed: 51)
        for (m, n, k) in [(1, 1, 1), (5, 3, 27), (14, 17, 2), (29, 100, 3), (64, 33, 577), (257, 47, 64), (70, 1000, 96)] {
            for (beta, relu) in [(false, false), (true, true)] {
                let ldb = n + 3, ldc = n + 1
                let a = rng.floats(m * k), b = rng.floats(k * ldb), bias = rng.floats(m), c0 = rng.floats(m * ldc)
                var c = beta ? c0 : [Float](repeating: .nan, count: m * ldc)
                let packed = a.withUnsafeBufferPointer {
                    PackedMatrix($0.baseAddress!, rows: m, columns: k, path: Compute.path, precision: .bf16)
                }
                XCTAssertEqual(packed.precision, .bf16)
                b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in bias.withUnsafeBufferPointer { pbias in
                    Gemm.multiply(packed, b: pb.baseAddress!, ldb: ldb, columns: n, beta: beta ? 1 : 0,
                                  c: pc.baseAddress!, ldc: ldc, bias: pbias.baseAddress!, relu: relu)
                } } }
                var worstRounded = 0.0, worstExact = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0, exact = 0.0, mag = 1.0
                        for l in 0..<k {
                            s += bf16(a[i * k + l]) * bf16(b[l * ldb + j])
                            exact += Double(a[i * k + l]) * Double(b[l * ldb + j])
                            mag += abs(Double(a[i * k + l]) * Double(b[l * ldb + j]))
                        }
                        let add = (beta ? Double(c0[i * ldc + j]) : 0) + Double(bias[i])
                        var r = s + add, e = exact + add
                        if relu { r = max(0, r); e = max(0, e) }
                        worstRounded = max(worstRounded, abs(Double(c[i * ldc + j]) - r) / mag)
                        worstExact = max(worstExact, abs(Double(c[i * ldc + j]) - e) / mag)
                        if c[i * ldc + j].isNaN { worstRounded = .infinity }
                    }
                }
                XCTAssertLessThan(worstRounded, 1e-5, "m\(m) n\(n) k\(k): not the product of the rounded inputs")
                XCTAssertLessThan(worstExact, 1e-2, "m\(m) n\(n) k\(k): beyond bf16 rounding")
                if m * n >= 50 {
                    XCTAssertGreaterThan(worstExact, 0, "m\(m) n\(n) k\(k): no rounding at all (fp32 kernel ran?)")
                }
            }
        }
    }
}
