/// Optimal one-to-one assignment of rows to columns of a cost matrix (the Hungarian method with potentials, i.e.
/// shortest augmenting paths as in Jonker–Volgenant), for rectangular matrices and with an optional cost limit.
///
/// With a finite `costLimit` the result is what ByteTrack gets from `lap.lapjv(cost, extend_cost=True,
/// cost_limit=limit)`: the matrix is conceptually extended so that leaving a row or a column unmatched costs
/// `limit / 2`, hence the assignment minimises `Σ (cost[i][j] − limit)` over matched pairs. A pair costing more than the
/// limit is never matched; a pair costing exactly the limit gains nothing and may or may not be. Without a limit every
/// row (or every column, whichever is fewer) is matched at minimum total cost.
///
/// Tracking matrices are sparse (most tracks do not overlap most detections), so with a limit the problem is split
/// into connected components of the "cost ≤ limit" graph, each solved alone; this is exact because components share
/// no pair, and makes a frame of 100 tracks × 100 detections cost microseconds.
public enum LinearAssignment {
    /// Solves the assignment.
    /// - Parameters:
    ///   - costs: row-major `rows × cols` costs. Without a limit they must be finite; with one, non-finite entries
    ///     (e.g. `.infinity` for "never") are simply never matched.
    ///   - costLimit: pairs costing more are never matched (`lap`'s `cost_limit`).
    /// - Returns: for each row, the matched column or `-1`.
    public static func solve(costs: [Double], rows: Int, cols: Int, costLimit: Double = .infinity) -> [Int] {
        precondition(costs.count == rows * cols, "LinearAssignment: \(costs.count) costs for \(rows)x\(cols)")
        var rowToCol = [Int](repeating: -1, count: rows)
        guard rows > 0, cols > 0 else { return rowToCol }
        if !costLimit.isFinite {
            precondition(costs.allSatisfy { $0.isFinite }, "LinearAssignment: costs must be finite without a limit")
            let pairs = solveDense(rows: rows, cols: cols) { costs[$0 * cols + $1] }
            for (r, c) in pairs { rowToCol[r] = c }
            return rowToCol
        }
        // Connected components of the allowed pairs: union-find over rows (0..<rows) and columns (rows...).
        var parent = Array(0..<(rows + cols))
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        var degree = [Int](repeating: 0, count: rows)
        for r in 0..<rows {
            for c in 0..<cols where costs[r * cols + c] <= costLimit {
                degree[r] += 1
                let a = find(r), b = find(rows + c)
                if a != b { parent[a] = b }
            }
        }
        var componentRows: [Int: [Int]] = [:]
        var componentCols: [Int: [Int]] = [:]
        for r in 0..<rows where degree[r] > 0 { componentRows[find(r), default: []].append(r) }
        for c in 0..<cols {
            let root = find(rows + c)
            if componentRows[root] != nil { componentCols[root, default: []].append(c) }
        }
        for (root, rs) in componentRows {
            let cs = componentCols[root]!
            if rs.count == 1 {
                // One row: its cheapest allowed column (all columns of the component are allowed for it).
                var best = cs[0]
                for c in cs where costs[rs[0] * cols + c] < costs[rs[0] * cols + best] { best = c }
                rowToCol[rs[0]] = best
                continue
            }
            if cs.count == 1 {
                var best = rs[0]
                for r in rs where costs[r * cols + cs[0]] < costs[best * cols + cs[0]] { best = r }
                rowToCol[best] = cs[0]
                continue
            }
            // Each side gets as many zero-cost "unmatched" columns as it has rows; an allowed pair costs
            // `cost − limit ≤ 0`, a forbidden one `1` (always worse than a free dummy, so never chosen).
            let transpose = rs.count > cs.count
            let (n, m) = transpose ? (cs.count, rs.count) : (rs.count, cs.count)
            let pairs = solveDense(rows: n, cols: m + n) { i, j -> Double in
                guard j < m else { return 0 }
                let c = transpose ? costs[rs[j] * cols + cs[i]] : costs[rs[i] * cols + cs[j]]
                return c <= costLimit ? c - costLimit : 1
            }
            for (i, j) in pairs where j < m {
                let (r, c) = transpose ? (rs[j], cs[i]) : (rs[i], cs[j])
                if costs[r * cols + c] <= costLimit { rowToCol[r] = c }
            }
        }
        return rowToCol
    }

    /// Minimum-cost assignment for finite costs. Returns matched `(row, column)` pairs, `min(rows, cols)` of them.
    static func solveDense(rows: Int, cols: Int, cost: (Int, Int) -> Double) -> [(Int, Int)] {
        if rows > cols {
            return solveDense(rows: cols, cols: rows) { cost($1, $0) }.map { ($0.1, $0.0) }
        }
        let n = rows, m = cols
        var a = [Double](repeating: 0, count: n * m)
        for i in 0..<n { for j in 0..<m { a[i * m + j] = cost(i, j) } }
        // 1-based rows and columns; column 0 and row 0 are the algorithm's virtual start.
        var u = [Double](repeating: 0, count: n + 1)
        var v = [Double](repeating: 0, count: m + 1)
        var p = [Int](repeating: 0, count: m + 1)   // p[j]: row matched to column j (0 = none)
        var way = [Int](repeating: 0, count: m + 1)
        var minv = [Double](repeating: 0, count: m + 1)
        var used = [Bool](repeating: false, count: m + 1)
        for i in 1...n {
            p[0] = i
            var j0 = 0
            for j in 0...m { minv[j] = .infinity; used[j] = false }
            repeat {
                used[j0] = true
                let i0 = p[j0]
                var delta = Double.infinity
                var j1 = 0
                for j in 1...m where !used[j] {
                    let cur = a[(i0 - 1) * m + (j - 1)] - u[i0] - v[j]
                    if cur < minv[j] { minv[j] = cur; way[j] = j0 }
                    if minv[j] < delta { delta = minv[j]; j1 = j }
                }
                for j in 0...m {
                    if used[j] { u[p[j]] += delta; v[j] -= delta } else { minv[j] -= delta }
                }
                j0 = j1
            } while p[j0] != 0
            repeat {
                let j1 = way[j0]
                p[j0] = p[j1]
                j0 = j1
            } while j0 != 0
        }
        var pairs: [(Int, Int)] = []
        pairs.reserveCapacity(n)
        for j in 1...m where p[j] != 0 { pairs.append((p[j] - 1, j - 1)) }
        return pairs
    }
}
