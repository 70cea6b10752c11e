import CKernels
import XCTest

/// `fpn_roi_align_pool` (the RoIAlign accumulation in CKernels) on every ISA the CPU has, against the scalar loop it
/// replaces (torchvision's per-channel order: ((w0 f0 + w1 f1) + w2 f2) + w3 f3 summed over the bin's samples, then
/// divided by their count), bit for bit, on ragged channel counts and bin shapes.
final class RoIAlignKernelTests: XCTestCase {
    /// Deterministic pseudo-random floats in [-2, 2) (a fixed LCG: the test needs no seed plumbing).
    struct Numbers {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 4_000_000) / 1_000_000 - 2
        }
        mutating func index(_ n: Int) -> Int { Int((next() + 2) / 4 * Float(n)) % n }
    }

    static func reference(feature f: [Float], channels: Int, positions p: [Int], weights w: [Float], bins: Int,
                          perBin: Int) -> [Float] {
        var out = [Float](repeating: 0, count: channels * bins)
        for b in 0..<bins {
            for c in 0..<channels {
                var acc: Float = 0
                for s in 0..<perBin {
                    let o = (b * perBin + s) * 4
                    acc += w[o] * f[p[o] * channels + c] + w[o + 1] * f[p[o + 1] * channels + c]
                        + w[o + 2] * f[p[o + 2] * channels + c] + w[o + 3] * f[p[o + 3] * channels + c]
                }
                out[c * bins + b] = acc / Float(perBin)
            }
        }
        return out
    }

    func testEveryISAMatchesTheScalarLoopBitForBit() {
        let isas = [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }
            .filter { fpn_isa_supported($0) != 0 }
        XCTAssertTrue(isas.contains(Int32(FPN_ISA_GENERIC.rawValue)))
        var rng = Numbers(state: 7)
        var cases = 0
        for channels in [1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 128, 257] {
            for (bins, perBin) in [(1, 1), (49, 4), (15, 9), (196, 4), (4, 2)] {
                let pixels = 5 * 7
                let feature = (0..<(pixels * channels)).map { _ in rng.next() }
                var positions: [Int] = [], weights: [Float] = []
                for s in 0..<(bins * perBin) {
                    if s % 11 == 3 {   // a sample outside the map: index 0, weight 0
                        positions += [0, 0, 0, 0]; weights += [0, 0, 0, 0]
                        continue
                    }
                    for _ in 0..<4 { positions.append(rng.index(pixels)); weights.append(rng.next() / 4 + 0.5) }
                }
                let expected = Self.reference(feature: feature, channels: channels, positions: positions,
                                              weights: weights, bins: bins, perBin: perBin)
                for isa in isas {
                    var scratch = [Float](repeating: .nan, count: bins * channels)
                    var out = [Float](repeating: .nan, count: channels * bins)
                    fpn_roi_align_pool(isa, feature, Int32(channels), positions, weights, Int32(bins), Int32(perBin),
                                       &scratch, &out)
                    let differing = zip(out, expected).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "isa \(isa), \(channels) channels, \(bins) bins x \(perBin) samples")
                    cases += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(cases, 80)
    }

    /// `fpn_paste_bilinear` (mask paste's resize) on every ISA against Swift's own evaluation of ATen's two formulas
    /// (`addingProduct` is a correctly rounded FMA), bit for bit: 28x28 masks padded to 30, outputs of 1-70 columns
    /// (ragged against 16 lanes), taps anywhere in the row.
    func testMaskPasteKernelMatchesTheFormulasBitForBit() {
        let isas = [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }
            .filter { fpn_isa_supported($0) != 0 }
        var rng = Numbers(state: 11)
        let p = 30
        let src = (0..<(p * p)).map { _ in rng.next() }
        for (rows, cols) in [(1, 1), (3, 15), (7, 16), (5, 17), (9, 70)] {
            func taps(_ n: Int) -> ([Int32], [Int32], [Float], [Float]) {
                var i0: [Int32] = [], i1: [Int32] = [], w0: [Float] = [], w1: [Float] = []
                for _ in 0..<n {
                    let a = rng.index(p), w = (rng.next() + 2) / 4
                    i0.append(Int32(a)); i1.append(Int32(min(a + 1, p - 1))); w0.append(1 - w); w1.append(w)
                }
                return (i0, i1, w0, w1)
            }
            let (yi0, yi1, yw0, yw1) = taps(rows), (xi0, xi1, xw0, xw1) = taps(cols)
            for small in [true, false] {
                var want = [Float](repeating: 0, count: rows * cols)
                for r in 0..<rows {
                    for c in 0..<cols {
                        let s00 = src[Int(yi0[r]) * p + Int(xi0[c])], s01 = src[Int(yi0[r]) * p + Int(xi1[c])]
                        let s10 = src[Int(yi1[r]) * p + Int(xi0[c])], s11 = src[Int(yi1[r]) * p + Int(xi1[c])]
                        if small {
                            var v = yw0[r] * xw0[c] * s00
                            v = v.addingProduct(yw0[r] * xw1[c], s01)
                            v = v.addingProduct(yw1[r] * xw0[c], s10)
                            want[r * cols + c] = v.addingProduct(yw1[r] * xw1[c], s11)
                        } else {
                            let t0 = (s01 * xw1[c]).addingProduct(s00, xw0[c])
                            let t1 = (s11 * xw1[c]).addingProduct(s10, xw0[c])
                            want[r * cols + c] = (t1 * yw1[r]).addingProduct(t0, yw0[r])
                        }
                    }
                }
                for isa in isas {
                    var got = [Float](repeating: .nan, count: rows * cols + 1)
                    fpn_paste_bilinear(isa, src, Int32(p), yi0, yi1, yw0, yw1, Int32(rows), xi0, xi1, xw0, xw1,
                                       Int32(cols), small ? 1 : 0, &got)
                    let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "isa \(isa) \(rows)x\(cols) small \(small)")
                    XCTAssertTrue(got[rows * cols].isNaN, "isa \(isa): wrote past the output")
                }
            }
        }
    }

    /// `fpn_row_changes` (the panoptic RLE's row compare) on every ISA against the per-pixel loop: 1-16 lanes of a
    /// wider map, changes in single lanes and in all, nothing read past the lanes (the next column differs).
    func testRowChangesFindEveryChangedRowAndLane() {
        let isas = [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }
            .filter { fpn_isa_supported($0) != 0 }
        var rng = Numbers(state: 9)
        for (rows, lanes) in [(1, 16), (2, 1), (7, 5), (33, 16), (40, 15), (64, 9)] {
            let stride = lanes + 3
            var ids = [Int32](repeating: 0, count: rows * stride)
            for y in 0..<rows {
                for x in 0..<stride { ids[y * stride + x] = Int32(y / 3 + (x < lanes ? 0 : y)) }   // past the lanes: every row changes
                if rng.index(4) == 0 { ids[y * stride + rng.index(lanes)] = 7 }
            }
            var want: [(Int32, UInt16)] = []
            for y in 1..<max(rows, 1) {
                var m: UInt16 = 0
                for j in 0..<lanes where ids[y * stride + j] != ids[(y - 1) * stride + j] { m |= 1 << UInt16(j) }
                if m != 0 { want.append((Int32(y), m)) }
            }
            XCTAssertTrue(rows < 8 || want.contains { $0.1.nonzeroBitCount == 1 } && want.contains { $0.1.nonzeroBitCount > 1 },
                          "\(rows)x\(lanes): single-lane and multi-lane changes")
            for isa in isas {
                var rowsOut = [Int32](repeating: -1, count: rows), masks = [UInt16](repeating: 0, count: rows)
                let n = fpn_row_changes(isa, ids, stride, Int32(rows), Int32(lanes), &rowsOut, &masks)
                XCTAssertEqual(n, want.count, "isa \(isa) \(rows)x\(lanes)")
                XCTAssertEqual(Array(rowsOut.prefix(n)), want.map(\.0), "isa \(isa) \(rows)x\(lanes)")
                XCTAssertEqual(Array(masks.prefix(n)), want.map(\.1), "isa \(isa) \(rows)x\(lanes)")
            }
        }
    }

    /// The panoptic merge's stuff pass on every ISA against the per-pixel loops: label runs that fill whole 16-pixel
    /// chunks (one step), chunks mixing labels or assigned pixels, fully assigned chunks, ragged tails.
    func testStuffHistogramAndSelectMatchThePerPixelLoops() {
        let isas = [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }
            .filter { fpn_isa_supported($0) != 0 }
        var rng = Numbers(state: 13)
        for n in [1, 15, 16, 17, 100, 1000, 4099] {
            var labels = [UInt8](repeating: 0, count: n), ids = [Int32](repeating: 0, count: n)
            for p in 0..<n {
                labels[p] = UInt8((p / 40) % 5 + (rng.index(9) == 0 ? 200 : 0))
                ids[p] = (p / 64) % 3 == 1 ? Int32(1 + rng.index(3)) : (rng.index(11) == 0 ? 9 : 0)
            }
            var wantHist = [Int](repeating: 0, count: 256)
            for p in 0..<n where ids[p] == 0 { wantHist[Int(labels[p])] += 1 }
            let table = (0..<256).map { Int32($0 % 7 == 0 ? 0 : 100 + $0) }
            let wantIDs = (0..<n).map { ids[$0] == 0 ? table[Int(labels[$0])] : ids[$0] }
            if n >= 100 { XCTAssertGreaterThan(wantHist.filter { $0 > 0 }.count, 2, "n \(n): several labels counted") }
            for isa in isas {
                var hist = [Int](repeating: 5, count: 256)   // added to, not overwritten
                fpn_void_label_histogram(isa, ids, labels, n, &hist)
                XCTAssertEqual(hist, wantHist.map { $0 + 5 }, "isa \(isa) n \(n)")
                var got = ids
                fpn_stuff_select(isa, &got, labels, n, table)
                XCTAssertEqual(got, wantIDs, "isa \(isa) n \(n)")
            }
        }
    }

    /// `fpn_argmax_planes` (semantic labels) on every ISA against the first-maximum loop: ties keep the earlier
    /// class, a NaN never wins (and a NaN first plane keeps class 0), pixel counts ragged against 16 lanes.
    func testArgmaxPlanesKeepsTheFirstMaximum() {
        let isas = [FPN_ISA_GENERIC, FPN_ISA_AVX2, FPN_ISA_AVX512].map { Int32($0.rawValue) }
            .filter { fpn_isa_supported($0) != 0 }
        var rng = Numbers(state: 5)
        for (k, n) in [(1, 7), (2, 16), (5, 37), (6, 100)] {
            // Values from a small set, so ties are common; some NaNs.
            let src = (0..<(k * n)).map { _ -> Float in
                let v = Float(rng.index(4)); return rng.index(23) == 0 ? .nan : v
            }
            var want = [UInt8](repeating: 0, count: n)
            for i in 0..<n {
                var best = src[i], arg = 0
                for c in 1..<max(k, 1) where src[c * n + i] > best { best = src[c * n + i]; arg = c }
                want[i] = UInt8(arg)
            }
            XCTAssertTrue(k == 1 || Set(want).count > 1, "k \(k): the case has more than one label")
            for isa in isas {
                var got = [UInt8](repeating: 255, count: n + 1)
                fpn_argmax_planes(isa, src, n, Int32(k), &got)
                XCTAssertEqual(Array(got[0..<n]), want, "isa \(isa) k \(k) n \(n)")
                XCTAssertEqual(got[n], 255, "isa \(isa): wrote past the labels")
            }
        }
    }
}
