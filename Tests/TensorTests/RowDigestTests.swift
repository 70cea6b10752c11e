import TestSupport
import XCTest
@testable import Tensor

/// `Ops.rowDigest` (vectorised C) against a scalar Swift transcription of its definition, on lengths around the
/// 16-lane width; and its purpose: any changed bit or swapped pair changes it.
final class RowDigestTests: XCTestCase {
    /// The digest's definition, one position at a time.
    static func reference(_ x: [Float]) -> (UInt64, UInt64) {
        var a = [UInt32](repeating: 0, count: 16), b = [UInt32](repeating: 0, count: 16)
        for (i, f) in x.enumerated() {
            let v = f.bitPattern, w = UInt32(truncatingIfNeeded: i) &* 2 &+ 1
            a[i % 16] = a[i % 16] &+ v &* (w &* 0x9E37_79B9 | 1)
            b[i % 16] = b[i % 16] &+ (v ^ w) &* 0x85EB_CA6B
        }
        var h0: UInt64 = 0xCBF2_9CE4_8422_2325, h1: UInt64 = 0x8422_2325_CBF2_9CE4
        for l in 0..<16 {
            h0 = (h0 ^ UInt64(a[l])) &* 0x100_0000_01B3
            h1 = (h1 ^ UInt64(b[l])) &* 0x100_0000_01B3
        }
        return (h0 ^ UInt64(x.count), h1)
    }

    static func digest(_ x: [Float]) -> (UInt64, UInt64) { x.withUnsafeBufferPointer { Ops.rowDigest($0) } }

    /// Every kernel this CPU runs (generic, AVX2, AVX-512) gives the definition's digest.
    func testMatchesTheDefinitionOnRaggedLengthsOnEveryISA() {
        var rng = TestRandom(seed: 7)
        let host = CPUFeatures.host
        let paths = [ComputePath.generic] + (host.hasAVX2 ? [.avx2] : []) + (host.hasAVX512 ? [.avx512] : [])
        for n in [0, 1, 2, 15, 16, 17, 31, 33, 100, 6272] {
            let x = (0..<n).map { _ in Float(rng.uniform(-3, 3)) }
            let r = Self.reference(x)
            for path in paths {
                let d = x.withUnsafeBufferPointer { Ops.rowDigest($0, isa: path) }
                XCTAssertEqual(d.0, r.0, "n \(n) \(path)")
                XCTAssertEqual(d.1, r.1, "n \(n) \(path)")
            }
        }
    }

    func testChangedBitsAndSwapsChangeTheDigest() {
        var rng = TestRandom(seed: 8)
        let x = (0..<6272).map { _ in Float(rng.uniform(-3, 3)) }
        let base = Self.digest(x)
        var seen = Set<[UInt64]>([[base.0, base.1]])
        for i in [0, 1, 15, 16, 3000, 6271] {
            var y = x
            y[i] = Float(bitPattern: y[i].bitPattern ^ 1)    // one ulp
            let d = Self.digest(y)
            XCTAssertTrue(seen.insert([d.0, d.1]).inserted, "one-ulp change at \(i) gives a new digest")
        }
        for (i, j) in [(0, 1), (0, 16), (5, 6000)] {
            var y = x
            y.swapAt(i, j)
            let d = Self.digest(y)
            XCTAssertTrue(seen.insert([d.0, d.1]).inserted, "swap of \(i) and \(j) gives a new digest")
        }
        // -0 and +0 are equal floats but different rows of bits: the digest tells them apart.
        XCTAssertNotEqual(Self.digest([0, 1]).0, Self.digest([-0.0, 1]).0)
    }
}
