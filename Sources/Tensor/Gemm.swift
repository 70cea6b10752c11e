import CBLAS
import CKernels
import Dispatch
import Foundation

/// A constant left-hand GEMM operand `[rows, columns]` (conv or FC weights) in the layout of one compute path:
/// packed once into the own kernels' panels (fp32, or bf16 pairs for `Precision.bf16`), or kept row-major for
/// OpenBLAS. Immutable, shared by streams.
public final class PackedMatrix: @unchecked Sendable {
    /// Rows (M) and columns (K) of the matrix.
    public let rows: Int, columns: Int
    /// The path whose layout this is.
    public let path: ComputePath
    /// The precision of the products with this matrix.
    public let precision: Precision
    let data: UnsafeMutablePointer<Float>
    private let count: Int

    /// Packs `a` (`rows` x `columns`, row stride `lda`, default `columns`) for `path` and `precision` (default: the
    /// process's; bf16 only on an own-kernel path of a CPU with AVX512_BF16, else fp32).
    public init(_ a: UnsafePointer<Float>, rows: Int, columns: Int, lda: Int? = nil, path: ComputePath = Compute.path,
                precision: Precision = Compute.precision) {
        precondition(rows >= 0 && columns >= 0, "bad matrix \(rows)x\(columns)")
        self.rows = rows; self.columns = columns; self.path = path
        let lda = lda ?? columns
        self.precision = precision == .bf16 && path.isa != nil && Precision.bf16.isSupported ? .bf16 : .f32
        if self.precision == .bf16 {
            count = max(1, (fpn_gemm_bf16_packed_a_bytes(Int32(rows), Int32(columns)) + 3) / 4)
            data = .allocate(capacity: count)
            fpn_gemm_bf16_pack_a(Int32(rows), Int32(columns), a, Int32(lda), data)
        } else if let isa = path.isa {
            count = max(1, fpn_sgemm_packed_a_size(isa, Int32(rows), Int32(columns)))
            data = .allocate(capacity: count)
            fpn_sgemm_pack_a(isa, Int32(rows), Int32(columns), a, Int32(lda), data)
        } else {
            count = max(1, rows * columns)
            data = .allocate(capacity: count)
            for r in 0..<rows { (data + r * columns).update(from: a + r * lda, count: columns) }
        }
    }

    deinit { data.deallocate() }

    /// Bytes held.
    public var bytes: Int { count * 4 }
}

/// A constant right-hand operand B (`rows` = K x `columns` = N, row-major), packed once for `Gemm.multiply(rows:)`:
/// on an own-kernel fp32 path into NR-wide panels over all of K, elsewhere (OpenBLAS, bf16) kept as the plain
/// matrix. Immutable, shared by streams.
public final class PackedColumns: @unchecked Sendable {
    /// Rows (K) and columns (N).
    public let rows: Int, columns: Int
    /// The path and precision of the products with this matrix.
    public let path: ComputePath, precision: Precision
    /// Whether `data` holds the own kernels' panels (else the plain matrix).
    var panels: Bool { path.isa != nil && precision == .f32 }
    let data: UnsafeMutablePointer<Float>
    private let count: Int

    /// Packs `b` (`rows` x `columns`, row stride `columns`) for `path` and `precision` (default: the process's).
    public init(_ b: UnsafePointer<Float>, rows: Int, columns: Int, path: ComputePath = Compute.path,
                precision: Precision = Compute.precision) {
        precondition(rows >= 0 && columns >= 0, "bad matrix \(rows)x\(columns)")
        self.rows = rows; self.columns = columns; self.path = path
        self.precision = precision == .bf16 && path.isa != nil && Precision.bf16.isSupported ? .bf16 : .f32
        if let isa = path.isa, self.precision == .f32 {
            count = max(1, fpn_sgemm_packed_b_size(isa, Int32(columns), Int32(rows)))
            data = .allocate(capacity: count)
            fpn_sgemm_pack_b(isa, Int32(columns), Int32(rows), b, Int32(columns), data)
        } else {
            count = max(1, rows * columns)
            data = .allocate(capacity: count)
            data.update(from: b, count: rows * columns)
        }
    }

    deinit { data.deallocate() }
}

/// The GEMMs of the Tensor ops, on the process's compute path (`Compute`): C = act(A·B + beta·C + bias[row]),
/// row-major, split over the cores.
public enum Gemm {
    /// Below this many multiply-adds a product runs on the calling thread.
    static let parallelWork = 1 << 18

    /// C[`a.rows`, `columns`] = act(A·B + beta·C + bias[row]) for a packed A, B `[a.columns, columns]` (row stride
    /// `ldb`), C row stride `ldc`. `beta` is 0 (C is only written) or 1. `bias`: `a.rows` floats or nil.
    public static func multiply(_ a: PackedMatrix, b: UnsafePointer<Float>, ldb: Int, columns n: Int, beta: Float,
                                c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
                                relu: Bool = false) {
        let m = a.rows, k = a.columns
        guard m > 0 && n > 0 else { return }
        guard let isa = a.path.isa else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a.data, Int32(k), b, Int32(ldb), beta, c, Int32(ldc))
            epilogue(c, rows: m, columns: n, ldc: ldc, bias: bias, relu: relu)
            return
        }
        if a.precision == .bf16 {
            multiplyBF16(a, b: b, ldb: ldb, columns: n, beta: beta, c: c, ldc: ldc, bias: bias, relu: relu)
            return
        }
        forEachPart(m: m, n: n, k: k, mr: Int(fpn_sgemm_mr(isa)), nr: Int(fpn_sgemm_nr(isa))) { rows, cols in
            compute(isa, m: rows.count, n: cols.count, k: k,
                    a: a.data + fpn_sgemm_packed_a_offset(isa, Int32(rows.lowerBound), Int32(k)),
                    b: b + cols.lowerBound, ldb: ldb, beta: beta, c: c + rows.lowerBound * ldc + cols.lowerBound,
                    ldc: ldc, bias: bias.map { $0 + rows.lowerBound }, relu: relu)
        }
    }

    /// Which side of a product `forEachPart` splits.
    private enum Split { case wider, rows, columns }

    /// Calls `body(rows, columns)` on the parts of an m x n product split over the cores (in parallel): the columns
    /// in whole `nr`-wide micro-tiles, or the rows in whole `mr`-row panels (`wider`: columns when there are
    /// enough, else rows); one part when the product is small.
    private static func forEachPart(m: Int, n: Int, k: Int, mr: Int, nr: Int, split: Split = .wider,
                                    _ body: (Range<Int>, Range<Int>) -> Void) {
        let parts = m * n * k < parallelWork ? 1 : Parallel.width
        let byColumns: Bool
        switch split {
        case .wider: byColumns = n >= parts * 2 * nr || m < parts * 2 * mr
        case .rows: byColumns = false
        case .columns: byColumns = true
        }
        let unit = byColumns ? nr : mr, total = byColumns ? n : m
        let units = (total + unit - 1) / unit
        let chunks = max(1, min(parts, units))
        run(chunks) { i in
            let lo = min(total, units * i / chunks * unit), hi = min(total, units * (i + 1) / chunks * unit)
            guard lo < hi else { return }
            byColumns ? body(0..<m, lo..<hi) : body(lo..<hi, 0..<n)
        }
    }

    /// `multiply` for a bf16-packed A: B rounded to bf16 while packing, fp32 accumulation and epilogue.
    private static func multiplyBF16(_ a: PackedMatrix, b: UnsafePointer<Float>, ldb: Int, columns n: Int, beta: Float,
                                     c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, relu: Bool) {
        let m = a.rows, k = a.columns
        forEachPart(m: m, n: n, k: k, mr: Int(fpn_gemm_bf16_mr()), nr: Int(fpn_gemm_bf16_nr())) { rows, cols in
            let ws = Scratch.take((fpn_gemm_bf16_workspace_bytes(Int32(cols.count), Int32(k)) + 3) / 4)
            defer { Scratch.give(ws) }
            let ap = UnsafeRawPointer(a.data) + fpn_gemm_bf16_packed_a_offset(Int32(rows.lowerBound), Int32(k))
            fpn_gemm_bf16_compute(Int32(rows.count), Int32(cols.count), Int32(k), ap, b + cols.lowerBound, Int32(ldb),
                                  beta, c + rows.lowerBound * ldc + cols.lowerBound, Int32(ldc),
                                  bias.map { $0 + rows.lowerBound }, relu ? 1 : 0, ws.base)
        }
    }

    /// The dense convolution of one image as one product: C[`a.rows`, `columns`] = act(A·B + beta·C + bias[row])
    /// where B is the im2col matrix of `image` (`a.columns` = channels·kh·kw rows, output pixels as columns in
    /// row-major order), gathered while packing, so no im2col matrix is written. Own-kernel paths only; a bf16 A
    /// rounds B to bf16 as it packs it, as `multiply` does.
    static func convolve(_ a: PackedMatrix, image: UnsafePointer<Float>, height: Int, width: Int, kernel: Size2,
                         stride: Size2, padding: Size2, dilation: Size2, outputWidth: Int, columns n: Int, beta: Float,
                         c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>?, relu: Bool) {
        guard let isa = a.path.isa else { preconditionFailure("Gemm.convolve needs an own-kernel path") }
        let m = a.rows, k = a.columns
        guard m > 0 && n > 0 else { return }
        if a.precision == .bf16 {
            forEachPart(m: m, n: n, k: k, mr: Int(fpn_gemm_bf16_mr()), nr: Int(fpn_gemm_bf16_nr()), split: .columns) { _, cols in
                let lo = cols.lowerBound, hi = cols.upperBound
                var g = fpn_im2col(x: image, h: Int32(height), w: Int32(width), kh: Int32(kernel.h), kw: Int32(kernel.w),
                                   sh: Int32(stride.h), sw: Int32(stride.w), ph: Int32(padding.h), pw: Int32(padding.w),
                                   dh: Int32(dilation.h), dw: Int32(dilation.w), ow: Int32(outputWidth), col0: Int32(lo))
                let ws = Scratch.take((fpn_gemm_bf16_workspace_bytes(Int32(hi - lo), Int32(k)) + 3) / 4)
                defer { Scratch.give(ws) }
                fpn_gemm_bf16_conv_compute(Int32(m), Int32(hi - lo), Int32(k), a.data, &g, beta, c + lo, Int32(ldc), bias,
                                           relu ? 1 : 0, ws.base)
            }
            return
        }
        forEachPart(m: m, n: n, k: k, mr: Int(fpn_sgemm_mr(isa)), nr: Int(fpn_sgemm_nr(isa)), split: .columns) { _, cols in
            let lo = cols.lowerBound, hi = cols.upperBound
            var g = fpn_im2col(x: image, h: Int32(height), w: Int32(width), kh: Int32(kernel.h), kw: Int32(kernel.w),
                               sh: Int32(stride.h), sw: Int32(stride.w), ph: Int32(padding.h), pw: Int32(padding.w),
                               dh: Int32(dilation.h), dw: Int32(dilation.w), ow: Int32(outputWidth), col0: Int32(lo))
            let ws = Scratch.take(fpn_sgemm_workspace_size(isa, Int32(hi - lo), Int32(k)))
            defer { Scratch.give(ws) }
            fpn_sgemm_conv_compute(isa, Int32(m), Int32(hi - lo), Int32(k), a.data, &g, beta, c + lo, Int32(ldc), bias,
                                   relu ? 1 : 0, ws.base)
        }
    }

    /// C[m, n] = A·B (+ beta·C) for an A that changes every call (`[m, k]`, row stride `lda`): A is packed per
    /// call, rows split over the cores. For FC layers, whose per-call operand is the activation matrix.
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                                ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                                path: ComputePath = Compute.path, precision: Precision = Compute.precision) {
        guard m > 0 && n > 0 else { return }
        guard let isa = path.isa else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
            return
        }
        if precision == .bf16 && Precision.bf16.isSupported {
            // Rows split over the cores, each part's A rounded and packed into its own scratch.
            forEachPart(m: m, n: n, k: k, mr: Int(fpn_gemm_bf16_mr()), nr: 1, split: .rows) { rows, _ in
                let lo = rows.lowerBound, hi = rows.upperBound
                let packed = Scratch.take((fpn_gemm_bf16_packed_a_bytes(Int32(hi - lo), Int32(k)) + 3) / 4)
                let ws = Scratch.take((fpn_gemm_bf16_workspace_bytes(Int32(n), Int32(k)) + 3) / 4)
                defer { Scratch.give(packed); Scratch.give(ws) }
                fpn_gemm_bf16_pack_a(Int32(hi - lo), Int32(k), a + lo * lda, Int32(lda), packed.base)
                fpn_gemm_bf16_compute(Int32(hi - lo), Int32(n), Int32(k), packed.base, b, Int32(ldb), beta,
                                      c + lo * ldc, Int32(ldc), nil, 0, ws.base)
            }
            return
        }
        forEachPart(m: m, n: n, k: k, mr: Int(fpn_sgemm_mr(isa)), nr: 1, split: .rows) { part, _ in
            let lo = part.lowerBound, rows = part.count
            let packed = Scratch.take(fpn_sgemm_packed_a_size(isa, Int32(rows), Int32(k)))
            defer { Scratch.give(packed) }
            fpn_sgemm_pack_a(isa, Int32(rows), Int32(k), a + lo * lda, Int32(lda), packed.base)
            compute(isa, m: rows, n: n, k: k, a: packed.base, b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc,
                    bias: nil, relu: false)
        }
    }

    /// C[`m`, `b.columns`] = act(A·B + beta·C) for an unpacked A (`m` x `b.rows`, row stride `lda`) that changes
    /// every call and a constant packed B: A is packed a kernel's slice at a time as the product reads it, never as
    /// a whole (a fully connected layer on many rows). `beta` is 0 (C is only written) or 1. Rows split over the
    /// cores.
    public static func multiply(rows m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedColumns, beta: Float,
                                c: UnsafeMutablePointer<Float>, ldc: Int, relu: Bool = false) {
        let n = b.columns, k = b.rows
        guard m > 0 && n > 0 else { return }
        guard let isa = b.path.isa, b.panels else {
            multiply(m: m, n: n, k: k, a: a, lda: lda, b: b.data, ldb: n, beta: beta, c: c, ldc: ldc, path: b.path,
                     precision: b.precision)
            if relu { epilogue(c, rows: m, columns: n, ldc: ldc, bias: nil, relu: true) }
            return
        }
        forEachPart(m: m, n: n, k: k, mr: Int(fpn_sgemm_mr(isa)), nr: 1, split: .rows) { part, _ in
            let lo = part.lowerBound
            let ws = Scratch.take(fpn_sgemm_rows_workspace_size(isa, Int32(k)))
            defer { Scratch.give(ws) }
            fpn_sgemm_rows(isa, Int32(part.count), Int32(n), Int32(k), a + lo * lda, Int32(lda), b.data, beta,
                           c + lo * ldc, Int32(ldc), relu ? 1 : 0, ws.base)
        }
    }

    /// Floats of workspace one `multiplySerial` with `a` and up to `columns` columns needs.
    static func serialWorkspace(_ a: PackedMatrix, columns: Int) -> Int {
        guard let isa = a.path.isa else { return 0 }
        if a.precision == .bf16 { return (fpn_gemm_bf16_workspace_bytes(Int32(columns), Int32(a.columns)) + 3) / 4 }
        return fpn_sgemm_workspace_size(isa, Int32(columns), Int32(a.columns))
    }

    /// C[`a.rows`, `columns`] = A·B on the calling thread with the caller's `workspace` (`serialWorkspace` floats),
    /// for callers that split the work over the cores themselves. Own-kernel paths only.
    static func multiplySerial(_ a: PackedMatrix, b: UnsafePointer<Float>, ldb: Int, columns n: Int,
                               c: UnsafeMutablePointer<Float>, ldc: Int, workspace: UnsafeMutablePointer<Float>) {
        guard let isa = a.path.isa else { preconditionFailure("Gemm.multiplySerial needs an own-kernel path") }
        guard a.rows > 0 && n > 0 else { return }
        if a.precision == .bf16 {
            fpn_gemm_bf16_compute(Int32(a.rows), Int32(n), Int32(a.columns), a.data, b, Int32(ldb), 0, c, Int32(ldc),
                                  nil, 0, workspace)
        } else {
            fpn_sgemm_compute(isa, Int32(a.rows), Int32(n), Int32(a.columns), a.data, b, Int32(ldb), 0, c, Int32(ldc),
                              nil, 0, workspace)
        }
    }

    /// One single-threaded kernel call with a pooled workspace.
    private static func compute(_ isa: Int32, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                                bias: UnsafePointer<Float>?, relu: Bool) {
        let ws = Scratch.take(fpn_sgemm_workspace_size(isa, Int32(n), Int32(k)))
        defer { Scratch.give(ws) }
        fpn_sgemm_compute(isa, Int32(m), Int32(n), Int32(k), a, b, Int32(ldb), beta, c, Int32(ldc), bias,
                          relu ? 1 : 0, ws.base)
    }

    /// Runs `body(0..<chunks)`, in parallel when there is more than one.
    private static func run(_ chunks: Int, _ body: (Int) -> Void) {
        if chunks == 1 { body(0); return }
        withoutActuallyEscaping(body) { body in DispatchQueue.concurrentPerform(iterations: chunks) { body($0) } }
    }

    /// OpenBLAS has no fused epilogue: bias and ReLU in one pass over C.
    private static func epilogue(_ c: UnsafeMutablePointer<Float>, rows m: Int, columns n: Int, ldc: Int,
                                 bias: UnsafePointer<Float>?, relu: Bool) {
        guard bias != nil || relu else { return }
        Parallel.forEach(m, cost: m * n) { range in
            for r in range {
                let p = c + r * ldc, b = bias?[r] ?? 0
                if relu {
                    for i in 0..<n { let v = p[i] + b; p[i] = v > 0 ? v : 0 }
                } else {
                    for i in 0..<n { p[i] += b }
                }
            }
        }
    }
}

/// Kernel workspaces, allocated once and reused by every GEMM (one per concurrent call; they grow to the largest
/// request and are never freed).
enum Scratch {
    final class Buffer {
        var base: UnsafeMutablePointer<Float>
        var capacity: Int
        init(_ n: Int) { capacity = max(n, 1024); base = .allocate(capacity: capacity) }
    }
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [Buffer] = []

    static func take(_ floats: Int) -> Buffer {
        lock.lock()
        let b = free.popLast()
        lock.unlock()
        guard let b else { return Buffer(floats) }
        if b.capacity < floats {
            b.base.deallocate()
            b.capacity = floats
            b.base = .allocate(capacity: floats)
        }
        return b
    }

    static func give(_ b: Buffer) {
        lock.lock()
        free.append(b)
        lock.unlock()
    }
}
