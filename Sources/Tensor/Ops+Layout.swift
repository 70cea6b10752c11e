import CKernels

// Rank-generic data movement for imported graphs: transpose, slice and split are all one strided gather.

extension Ops {
    /// `dst[c · ldd + r] = src[r · lds + c]` for `r < rows`, `c < columns`: a matrix transpose (CKernels: 16x16
    /// blocks through AVX-512 registers where the CPU has them), split over the cores by 16-column blocks when large.
    /// A copy, so every path gives the same bits.
    public static func transpose(rows: Int, columns: Int, _ src: UnsafePointer<Float>, lds: Int,
                                 into dst: UnsafeMutablePointer<Float>, ldd: Int) {
        guard rows > 0 && columns > 0 else { return }
        let blocks = (columns + 15) / 16
        Parallel.forEach(blocks, cost: rows * columns) { range in
            let c0 = range.lowerBound * 16, c1 = min(columns, range.upperBound * 16)
            fpn_transpose(layoutISA, Int32(rows), Int32(c1 - c0), src + c0, lds, dst + c0 * ldd, ldd)
        }
    }

    /// Interleaved RGB bytes (`width` x `height`, rows packed) to three float planes through a per-channel table:
    /// `out[c * planeStride + y * rowStride + x] = table[c * 256 + rgb[(y * width + x) * 3 + c]]`; nothing past
    /// column `width` of a row is written. A detector's input normalisation (the table holds its mean/std formula).
    public static func normalizeRGB(_ rgb: UnsafePointer<UInt8>, width: Int, height: Int, table: UnsafePointer<Float>,
                                    into out: UnsafeMutablePointer<Float>, planeStride: Int, rowStride: Int) {
        precondition(rowStride >= width && planeStride >= height * rowStride, "normalizeRGB: strides too small")
        guard width > 0 && height > 0 else { return }
        fpn_normalize_rgb(layoutISA, rgb, Int32(width), Int32(height), table, out, planeStride, Int32(rowStride))
    }

    /// The ISA of the layout and elementwise kernels in CKernels: the compute path's (a forced path holds here
    /// too), the CPU's best under OpenBLAS. Every ISA gives the same bits.
    static let layoutISA: Int32 = Compute.path.isa ?? fpn_best_isa()

    /// Row-major element strides of `shape`.
    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var s = 1
        for i in shape.indices.reversed() { strides[i] = s; s *= shape[i] }
        return strides
    }

    /// out[i0, …, ik] = x[base + Σ ij * strides[j]] for every index of `out` (any rank; `strides` has one entry
    /// per axis of `out`, in elements of `x`, and may be zero or negative). Transpose is a permutation of `x`'s
    /// strides, a slice is `x`'s strides times the steps with `base` at the first element.
    public static func gatherStrided(_ x: Tensor, base: Int, strides: [Int], into out: Tensor) {
        precondition(strides.count == out.rank, "gather: \(strides.count) strides for output \(out.shape)")
        x.checkValid(); out.checkValid()
        let total = out.count
        guard total > 0 else { return }
        let shape = out.shape, rank = out.rank
        let src = x.ptr, dst = out.ptr
        if rank == 0 { dst[0] = src[base]; return }
        let inner = shape[rank - 1], innerStride = strides[rank - 1]
        let rows = total / inner
        Parallel.forEach(rows, cost: total * 2) { range in
            var index = [Int](repeating: 0, count: rank)
            // Outer index of the first row of the range.
            var r = range.lowerBound
            for a in stride(from: rank - 2, through: 0, by: -1) { index[a] = r % shape[a]; r /= shape[a] }
            for row in range {
                var at = base
                for a in 0..<(rank - 1) { at += index[a] * strides[a] }
                let o = dst + row * inner
                if innerStride == 1 {
                    o.update(from: src + at, count: inner)
                } else {
                    for i in 0..<inner { o[i] = src[at + i * innerStride] }
                }
                var a = rank - 2
                while a >= 0 {
                    index[a] += 1
                    if index[a] < shape[a] { break }
                    index[a] = 0
                    a -= 1
                }
            }
        }
    }

    /// out = x with axes permuted: out.shape[i] = x.shape[perm[i]].
    public static func transpose(_ x: Tensor, perm: [Int], into out: Tensor) {
        precondition(perm.count == x.rank && Set(perm) == Set(0..<x.rank), "transpose perm \(perm) for \(x.shape)")
        precondition(out.shape == perm.map { x.shape[$0] }, "transpose \(x.shape) by \(perm) into \(out.shape)")
        let s = contiguousStrides(x.shape)
        gatherStrided(x, base: 0, strides: perm.map { s[$0] }, into: out)
    }
}
