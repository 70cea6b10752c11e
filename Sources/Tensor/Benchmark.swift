import CBLAS
import Foundation

/// Measurement helpers for benchmark commands (never for tests): sgemm peak and timing.
public enum Benchmark {
    /// Monotonic time in seconds.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    /// Median of `values` (mean of the middle two for an even count); 0 for none.
    public static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted(), m = s.count / 2
        return s.count % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2
    }

    /// Median seconds of `runs` calls of `body` after `warmup` untimed calls.
    public static func medianSeconds(runs: Int, warmup: Int = 1, _ body: () -> Void) -> Double {
        for _ in 0..<warmup { body() }
        return median((0..<max(runs, 1)).map { _ in let t = now(); body(); return now() - t })
    }

    /// Median seconds of each body, measured in `rounds` interleaved rounds (each round runs every body once,
    /// after one untimed warm-up round). Ratios between bodies measured this way survive load changes on a
    /// shared machine far better than back-to-back measurements.
    public static func interleavedMedianSeconds(rounds: Int, _ bodies: [() -> Void]) -> [Double] {
        for b in bodies { b() }
        var times = [[Double]](repeating: [], count: bodies.count)
        for _ in 0..<max(rounds, 1) {
            for (i, b) in bodies.enumerated() { let t = now(); b(); times[i].append(now() - t) }
        }
        return times.map(median)
    }

    /// A timed row-major `cblas_sgemm` C[m,n] = A[m,k]·B[k,n] on private random buffers (all OpenBLAS threads);
    /// call the returned closure to run one product of 2·m·n·k FLOP.
    public static func sgemmRunner(m: Int, n: Int, k: Int) -> () -> Void {
        var rng: UInt32 = 12345
        func fill(_ t: Tensor) { t.withUnsafeMutableBufferPointer { p in for i in p.indices { rng = rng &* 1_664_525 &+ 1_013_904_223; p[i] = Float(rng >> 9) / Float(1 << 23) - 0.5 } } }
        let a = Tensor(shape: [m, k]), b = Tensor(shape: [k, n]), c = Tensor(shape: [m, n])
        fill(a); fill(b)
        return {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a.ptr, Int32(k), b.ptr, Int32(n), 0, c.ptr, Int32(n))
        }
    }

    /// GFLOP/s of row-major `cblas_sgemm` C[m,n] = A[m,k]·B[k,n] (median of `runs`), with all OpenBLAS threads.
    public static func sgemmGFLOPS(m: Int, n: Int, k: Int, runs: Int = 5) -> Double {
        2 * Double(m) * Double(n) * Double(k) / medianSeconds(runs: runs, sgemmRunner(m: m, n: n, k: k)) / 1e9
    }

    /// The machine's sgemm peak in GFLOP/s: square `size`³ products, median of `runs` (the reference for
    /// "% of sgemm peak" figures; measure it in the same run as the figure it normalises).
    public static func sgemmPeakGFLOPS(size: Int = 1536, runs: Int = 7) -> Double {
        sgemmGFLOPS(m: size, n: size, k: size, runs: runs)
    }
}
