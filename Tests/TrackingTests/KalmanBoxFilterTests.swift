import XCTest
import TestSupport
@testable import Tracking

final class KalmanBoxFilterTests: XCTestCase {
    let kf = KalmanBoxFilter()

    /// initiate → predict → update on (cx 100, cy 50, a 0.5, h 40), worked by hand from ByteTrack's formulas.
    func testInitiatePredictUpdateHandComputed() {
        var s = kf.initiate(SIMD4(100, 50, 0.5, 40))
        // std: position 2·(1/20)·40 = 4, velocity 10·(1/160)·40 = 2.5; aspect 1e-2 / 1e-5.
        for (got, want) in zip(s.mean + s.covarianceMatrix.enumerated().filter { $0.offset % 9 == 0 }.map(\.element),
                               [100, 50, 0.5, 40, 0, 0, 0, 0, 16, 16, 1e-4, 16, 6.25, 6.25, 1e-10, 6.25]) {
            XCTAssertEqual(got, want, accuracy: want * 1e-12)
        }

        s.velocity = SIMD4(3, -1, 0, 0.5)   // give it motion to check x += v
        kf.predict(&s)
        // Q: position (40/20)² = 4, velocity (40/160)² = 0.0625. pp = 16 + 0 + 6.25 + 4, pv = 0 + 6.25, vv = 6.3125.
        XCTAssertEqual(s.position[0], 103, accuracy: 1e-12)
        XCTAssertEqual(s.position[1], 49, accuracy: 1e-12)
        XCTAssertEqual(s.position[3], 40.5, accuracy: 1e-12)
        XCTAssertEqual(s.varPosition[0], 26.25, accuracy: 1e-12)
        XCTAssertEqual(s.covPositionVelocity[0], 6.25, accuracy: 1e-12)
        XCTAssertEqual(s.varVelocity[0], 6.3125, accuracy: 1e-12)
        XCTAssertEqual(s.varPosition[2], 1e-4 + 1e-10 + 1e-4, accuracy: 1e-15)

        kf.update(&s, measurement: SIMD4(107, 49, 0.5, 40.5))
        // R uses the predicted height 40.5: (40.5/20)² = 4.100625. S = 30.350625.
        let S = 26.25 + 4.100625
        XCTAssertEqual(s.position[0], 103 + 26.25 / S * 4, accuracy: 1e-9)        // 106.4596...
        XCTAssertEqual(s.position[0], 106.45959, accuracy: 1e-4)
        XCTAssertEqual(s.velocity[0], 3 + 6.25 / S * 4, accuracy: 1e-9)          // 3.8237...
        XCTAssertEqual(s.velocity[0], 3.82371, accuracy: 1e-4)
        XCTAssertEqual(s.varPosition[0], 26.25 - 26.25 * 26.25 / S, accuracy: 1e-9)
        XCTAssertEqual(s.covPositionVelocity[0], 6.25 - 26.25 * 6.25 / S, accuracy: 1e-9)
        XCTAssertEqual(s.varVelocity[0], 6.3125 - 6.25 * 6.25 / S, accuracy: 1e-9)
        XCTAssertEqual(s.position[1], 49, accuracy: 1e-12)                        // zero innovation
    }

    /// The block-diagonal implementation equals the textbook 8×8 filter (F P Fᵀ + Q, K = P Hᵀ S⁻¹) over many steps.
    func testMatchesFullMatrixFilter() {
        var rng = TestRandom(seed: 7)
        var s = kf.initiate(SIMD4(320, 240, 0.4, 120))
        var mean = s.mean
        var P = s.covarianceMatrix
        for step in 0..<40 {
            kf.predict(&s)
            (mean, P) = fullPredict(mean, P)
            assertClose(s.mean, mean, "predict \(step)")
            assertClose(s.covarianceMatrix, P, "predict cov \(step)")
            let z: [Double] = [mean[0] + rng.uniform(-8, 8), mean[1] + rng.uniform(-8, 8),
                               0.4 + rng.uniform(-0.05, 0.05), 120 + rng.uniform(-6, 6)]
            kf.update(&s, measurement: SIMD4(z[0], z[1], z[2], z[3]))
            (mean, P) = fullUpdate(mean, P, z)
            assertClose(s.mean, mean, "update \(step)")
            assertClose(s.covarianceMatrix, P, "update cov \(step)")
        }
    }

    func testBoxConversionsRoundTrip() {
        let m = KalmanBoxFilter.measurement(x1: 10, y1: 20, x2: 50, y2: 100)
        XCTAssertEqual(m, SIMD4(30, 60, 0.5, 80))
        let c = KalmanBoxFilter.corners(m)
        XCTAssertEqual(c.x1, 10); XCTAssertEqual(c.y1, 20); XCTAssertEqual(c.x2, 50); XCTAssertEqual(c.y2, 100)
    }

    // MARK: - Full 8×8 reference

    private func assertClose(_ a: [Double], _ b: [Double], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for i in a.indices where abs(a[i] - b[i]) > 1e-9 * max(1, abs(b[i])) {
            XCTFail("\(what): [\(i)] \(a[i]) vs \(b[i])", file: file, line: line)
            return
        }
    }

    private func matmul(_ a: [Double], _ b: [Double], _ n: Int, _ k: Int, _ m: Int) -> [Double] {
        var c = [Double](repeating: 0, count: n * m)
        for i in 0..<n { for j in 0..<m { for t in 0..<k { c[i * m + j] += a[i * k + t] * b[t * m + j] } } }
        return c
    }

    private func transpose(_ a: [Double], _ n: Int, _ m: Int) -> [Double] {
        var t = [Double](repeating: 0, count: n * m)
        for i in 0..<n { for j in 0..<m { t[j * n + i] = a[i * m + j] } }
        return t
    }

    private func fullPredict(_ x: [Double], _ P: [Double]) -> ([Double], [Double]) {
        var F = [Double](repeating: 0, count: 64)
        for i in 0..<8 { F[i * 8 + i] = 1 }
        for i in 0..<4 { F[i * 8 + i + 4] = 1 }
        let h = x[3]
        let std = [h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]
        var FP = matmul(matmul(F, P, 8, 8, 8), transpose(F, 8, 8), 8, 8, 8)
        for i in 0..<8 { FP[i * 8 + i] += std[i] * std[i] }
        return (matmul(F, x, 8, 8, 1), FP)
    }

    private func fullUpdate(_ x: [Double], _ P: [Double], _ z: [Double]) -> ([Double], [Double]) {
        var H = [Double](repeating: 0, count: 32)
        for i in 0..<4 { H[i * 8 + i] = 1 }
        let h = x[3]
        let r = [h / 20, h / 20, 1e-1, h / 20]
        var S = matmul(matmul(H, P, 4, 8, 8), transpose(H, 4, 8), 4, 8, 4)
        for i in 0..<4 { S[i * 4 + i] += r[i] * r[i] }
        let PHt = matmul(P, transpose(H, 4, 8), 8, 8, 4)          // 8×4
        let K = transpose(solve(S, transpose(PHt, 8, 4), 4, 8), 4, 8)   // K = PHᵀ S⁻¹ (S symmetric)
        let y = (0..<4).map { z[$0] - x[$0] }
        let Ky = matmul(K, y, 8, 4, 1)
        let newX = (0..<8).map { x[$0] + Ky[$0] }
        let KSKt = matmul(matmul(K, S, 8, 4, 4), transpose(K, 8, 4), 8, 4, 8)
        return (newX, (0..<64).map { P[$0] - KSKt[$0] })
    }

    /// Solves A X = B for X (A n×n, B n×m) by Gauss–Jordan elimination with partial pivoting.
    private func solve(_ A: [Double], _ B: [Double], _ n: Int, _ m: Int) -> [Double] {
        var a = A, b = B
        for col in 0..<n {
            let piv = (col..<n).max { abs(a[$0 * n + col]) < abs(a[$1 * n + col]) }!
            for j in 0..<n { a.swapAt(col * n + j, piv * n + j) }
            for j in 0..<m { b.swapAt(col * m + j, piv * m + j) }
            let d = a[col * n + col]
            for r in 0..<n where r != col {
                let f = a[r * n + col] / d
                for j in 0..<n { a[r * n + j] -= f * a[col * n + j] }
                for j in 0..<m { b[r * m + j] -= f * b[col * m + j] }
            }
        }
        for r in 0..<n { for j in 0..<m { b[r * m + j] /= a[r * n + r] } }
        return b
    }
}
