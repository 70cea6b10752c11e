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
}
