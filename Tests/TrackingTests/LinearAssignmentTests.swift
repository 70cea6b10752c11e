import XCTest
import TestSupport
@testable import Tracking

final class LinearAssignmentTests: XCTestCase {
    /// Objective of `lap.lapjv(extend_cost=True, cost_limit=L)`: Σ (c − L) over matched pairs; without a limit the
    /// plain sum over a full matching.
    private func objective(_ rowToCol: [Int], _ costs: [Double], cols: Int, limit: Double) -> Double {
        var total = 0.0
        for (r, c) in rowToCol.enumerated() where c >= 0 {
            total += costs[r * cols + c] - (limit.isFinite ? limit : 0)
        }
        return total
    }

    /// Best objective over every partial (with a limit) or maximum (without) matching.
    private func bruteForce(_ costs: [Double], rows: Int, cols: Int, limit: Double) -> Double {
        var best = Double.infinity
        var usedCol = [Bool](repeating: false, count: cols)
        func go(_ r: Int, _ acc: Double, _ matched: Int) {
            if r == rows {
                if !limit.isFinite && matched != min(rows, cols) { return }
                best = min(best, acc); return
            }
            go(r + 1, acc, matched)   // row r unmatched
            for c in 0..<cols where !usedCol[c] {
                let v = costs[r * cols + c]
                if limit.isFinite && !(v <= limit) { continue }
                usedCol[c] = true
                go(r + 1, acc + v - (limit.isFinite ? limit : 0), matched + 1)
                usedCol[c] = false
            }
        }
        go(0, 0, 0)
        return best
    }

    private func checkValid(_ rowToCol: [Int], _ costs: [Double], cols: Int, limit: Double,
                            file: StaticString = #filePath, line: UInt = #line) {
        let matched = rowToCol.filter { $0 >= 0 }
        XCTAssertEqual(Set(matched).count, matched.count, "a column used twice", file: file, line: line)
        for (r, c) in rowToCol.enumerated() where c >= 0 {
            XCTAssertLessThanOrEqual(costs[r * cols + c], limit, "pair above the limit", file: file, line: line)
        }
    }

    func testOptimalAgainstBruteForceSquareRectangularAndThresholded() {
        var rng = TestRandom(seed: 42)
        var checked = 0
        for _ in 0..<600 {
            let rows = 1 + rng.int(5), cols = 1 + rng.int(5)
            let limits: [Double] = [.infinity, 0.3, 0.6, 0.8]
            let limit = limits[rng.int(limits.count)]
            var costs = (0..<(rows * cols)).map { _ in (rng.unit() * 1000).rounded() / 1000 }
            if limit.isFinite {
                // Sparse like IoU costs: some pairs can never match.
                for i in costs.indices where rng.int(4) == 0 { costs[i] = .infinity }
            }
            let result = LinearAssignment.solve(costs: costs, rows: rows, cols: cols, costLimit: limit)
            XCTAssertEqual(result.count, rows)
            checkValid(result, costs, cols: cols, limit: limit)
            if !limit.isFinite {
                XCTAssertEqual(result.filter { $0 >= 0 }.count, min(rows, cols), "not a full matching")
            }
            let got = objective(result, costs, cols: cols, limit: limit)
            let want = bruteForce(costs, rows: rows, cols: cols, limit: limit)
            XCTAssertEqual(got, want, accuracy: 1e-9, "\(rows)x\(cols) limit \(limit) costs \(costs)")
            checked += 1
        }
        XCTAssertEqual(checked, 600)
    }

    /// Larger sparse matrices (several components) against brute force on the exact objective.
    func testComponentsOfLargerSparseMatrices() {
        var rng = TestRandom(seed: 3)
        for _ in 0..<30 {
            let rows = 7, cols = 6
            var costs = [Double](repeating: 1, count: rows * cols)
            for i in costs.indices where rng.int(3) == 0 { costs[i] = rng.unit() }
            let result = LinearAssignment.solve(costs: costs, rows: rows, cols: cols, costLimit: 0.8)
            checkValid(result, costs, cols: cols, limit: 0.8)
            XCTAssertEqual(objective(result, costs, cols: cols, limit: 0.8),
                           bruteForce(costs, rows: rows, cols: cols, limit: 0.8), accuracy: 1e-9)
        }
    }

    /// Greedy would take the single cheapest pair (0.1) and leave two rows unmatched; optimal takes 0.2 + 0.2.
    func testPrefersGlobalOptimumOverGreedy() {
        let costs: [Double] = [0.1, 0.2,
                               0.2, 0.9]
        XCTAssertEqual(LinearAssignment.solve(costs: costs, rows: 2, cols: 2, costLimit: 0.8), [1, 0])
        // With the limit below 0.2, only the 0.1 pair is allowed.
        XCTAssertEqual(LinearAssignment.solve(costs: costs, rows: 2, cols: 2, costLimit: 0.15), [0, -1])
    }

    func testEmptyAndAllForbidden() {
        XCTAssertEqual(LinearAssignment.solve(costs: [], rows: 0, cols: 3, costLimit: 0.5), [])
        XCTAssertEqual(LinearAssignment.solve(costs: [], rows: 2, cols: 0, costLimit: 0.5), [-1, -1])
        XCTAssertEqual(LinearAssignment.solve(costs: [0.9, 0.95, .nan, .infinity], rows: 2, cols: 2, costLimit: 0.5),
                       [-1, -1])
    }
}
