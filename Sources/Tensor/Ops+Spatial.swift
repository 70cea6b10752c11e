import CKernels
import Foundation

// MARK: - Pooling and resizing (NCHW, planes processed in parallel)

extension Ops {
    /// Output shape of `maxPool2d` (torch `max_pool2d`, ceil_mode false): `[n, c, (h + 2p - k)/s + 1, ...]`.
    public static func maxPool2dShape(_ input: [Int], kernel: Size2, stride: Size2, padding: Size2 = 0) -> [Int] {
        precondition(input.count == 4, "max-pool expects NCHW, got \(input)")
        precondition(kernel.h >= 1 && kernel.w >= 1 && stride.h >= 1 && stride.w >= 1, "bad max-pool \(kernel)/\(stride)")
        precondition(padding.h * 2 <= kernel.h && padding.w * 2 <= kernel.w, "max-pool padding \(padding) > kernel/2")
        let ho = (input[2] + 2 * padding.h - kernel.h) / stride.h + 1
        let wo = (input[3] + 2 * padding.w - kernel.w) / stride.w + 1
        precondition(ho > 0 && wo > 0, "max-pool \(kernel) gives an empty output for \(input)")
        return [input[0], input[1], ho, wo]
    }

    /// Max over each window; padding never wins (torch pads with -inf). `kernel 1, stride 2` subsamples.
    public static func maxPool2d(_ x: Tensor, kernel: Size2, stride: Size2, padding: Size2 = 0, into out: Tensor) {
        let os = maxPool2dShape(x.shape, kernel: kernel, stride: stride, padding: padding)
        precondition(out.shape == os, "max-pool output must be \(os), got \(out.shape)")
        maxPool2d(x, kernel: kernel, stride: stride, padding: padding, spans: [(0, os[2], 0, os[3])], into: out)
    }

    /// The max-pool kernel over output spans (first row, end row, first column, columns): the dense op is one
    /// span, the temporal cache's tile pass one per run of tiles; same arithmetic in the same order either way.
    static func maxPool2d(_ x: Tensor, kernel: Size2, stride: Size2, padding: Size2,
                          spans: [(y0: Int, y1: Int, x0: Int, n: Int)], into out: Tensor) {
        x.checkValid(); out.checkValid()
        let h = x.h, w = x.w, ho = out.h, wo = out.w
        let (kh, kw, sh, sw, ph, pw) = (kernel.h, kernel.w, stride.h, stride.w, padding.h, padding.w)
        let src = x.ptr, dst = out.ptr
        var pixels = 0
        for s in spans { pixels += (s.y1 - s.y0) * s.n }
        spans.withUnsafeBufferPointer { spans in
            Parallel.forEach(x.n * x.c, cost: x.n * x.c * pixels * kh * kw) { planes in
                // Separable: max over the window's rows (contiguous, vectorised), then over its columns.
                withUnsafeTemporaryAllocation(of: Float.self, capacity: w) { vbuf in
                    let vrow = vbuf.baseAddress!
                    for pl in planes {
                        let sp = src + pl * h * w, d = dst + pl * ho * wo
                        for s in spans where s.n > 0 {
                            // Input columns the span's windows read.
                            let xa = max(s.x0 * sw - pw, 0), xb = min((s.x0 + s.n - 1) * sw - pw + kw, w)
                            for oy in s.y0..<s.y1 {
                                let y0 = oy * sh - ph
                                let ylo = max(y0, 0), yhi = min(y0 + kh, h)
                                (vrow + xa).update(from: sp + ylo * w + xa, count: xb - xa)
                                var y = ylo + 1
                                while y < yhi {
                                    // NaN propagates as in torch (a NaN in the window wins): v wins when
                                    // v > m or v is NaN (CKernels, vectorised).
                                    fpn_max_rows(layoutISA, vrow + xa, sp + y * w + xa, xb - xa)
                                    y += 1
                                }
                                // Each output: its window's columns in order, the same rule.
                                fpn_max_windows(layoutISA, vrow, Int32(w), s.x0, s.n, Int32(kw), Int32(sw), Int32(pw),
                                                d + oy * wo)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Mean over each plane: `[n, c, h, w]` → `[n, c, 1, 1]` (Double accumulation).
    public static func globalAveragePool(_ x: Tensor, into out: Tensor) {
        precondition(x.rank == 4 && out.shape == [x.n, x.c, 1, 1], "global average pool \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let plane = x.h * x.w, src = x.ptr, dst = out.ptr
        Parallel.forEach(x.n * x.c, cost: x.count) { planes in
            for pl in planes {
                var acc = 0.0
                let s = src + pl * plane
                for i in 0..<plane { acc += Double(s[i]) }
                dst[pl] = Float(acc / Double(plane))
            }
        }
    }

    /// Nearest-neighbour resize to `out`'s height and width, torch `interpolate(mode="nearest", size=...)`:
    /// src = min(floor(dst * in / out), in - 1) per axis (computed as torch does, in Float scale).
    public static func upsampleNearest(_ x: Tensor, into out: Tensor) {
        precondition(x.rank == 4 && out.rank == 4 && out.n == x.n && out.c == x.c, "nearest \(x.shape) into \(out.shape)")
        upsampleNearest(x, spans: [(0, out.h, 0, out.w)], into: out)
    }

    /// The nearest-upsampling kernel over output spans (first row, end row, first column, columns).
    static func upsampleNearest(_ x: Tensor, spans: [(y0: Int, y1: Int, x0: Int, n: Int)], into out: Tensor) {
        x.checkValid(); out.checkValid()
        let h = x.h, w = x.w, ho = out.h, wo = out.w
        let src = x.ptr, dst = out.ptr
        var pixels = 0
        for s in spans { pixels += (s.y1 - s.y0) * s.n }
        // Column taps on the stack: no heap allocation per frame.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: wo) { xs in
            for ox in 0..<wo { xs[ox] = nearestTap(ox, input: w, output: wo) }
            spans.withUnsafeBufferPointer { spans in
                Parallel.forEach(x.n * x.c, cost: x.n * x.c * pixels) { planes in
                    for pl in planes {
                        let sp = src + pl * h * w, d = dst + pl * ho * wo
                        for s in spans {
                            for oy in s.y0..<s.y1 {
                                let row = sp + nearestTap(oy, input: h, output: ho) * w, drow = d + oy * wo
                                for ox in s.x0..<(s.x0 + s.n) { drow[ox] = row[xs[ox]] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// torch's nearest source index of output `o`: min(floor(o · input / output), input − 1).
    @inline(__always)
    public static func nearestTap(_ o: Int, input: Int, output: Int) -> Int {
        min(Int(floorf(Float(o) * (Float(input) / Float(output)))), input - 1)
    }

    /// Bilinear resize to `out`'s height and width, torch `interpolate(mode="bilinear", align_corners=False)`
    /// without antialias: src = max((dst + 0.5) * in / out - 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, in - 1).
    /// `accumulate`: adds the resized values to `out` instead (the bits of a resize followed by `Ops.add`, without
    /// the resized map in memory).
    public static func resizeBilinear(_ x: Tensor, into out: Tensor, accumulate: Bool = false) {
        precondition(x.rank == 4 && out.rank == 4 && out.n == x.n && out.c == x.c, "bilinear \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let h = x.h, w = x.w, ho = out.h, wo = out.w
        let src = x.ptr, dst = out.ptr
        withBilinearTaps(height: h, width: w, outHeight: ho, outWidth: wo) { ys, cols in
            Parallel.forEach(x.n * x.c, cost: out.count * 4) { planes in
                // Separable: each source row is interpolated horizontally once (`BilinearRows`), two such rows are
                // blended per output row: (1 - w)·a + w·b per axis, multiplies then the add (CKernels, same bits).
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * wo) { buf in
                    for pl in planes {
                        let d = dst + pl * ho * wo
                        var rows = BilinearRows(a: buf.baseAddress!, b: buf.baseAddress! + wo)
                        for oy in 0..<ho {
                            let ty = ys[oy]
                            rows.load(ty) { iy, r in cols.lerp(src + pl * h * w + iy * w, width: w, into: r) }
                            let wy1 = ty.weight, wy0 = 1 - wy1
                            if accumulate {
                                fpn_lerp_rows_add(layoutISA, rows.a, rows.b, wo, wy0, wy1, d + oy * wo)
                            } else {
                                fpn_lerp_rows(layoutISA, rows.a, rows.b, wo, wy0, wy1, d + oy * wo)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Semantic labels straight from logits: the per-pixel argmax over the planes (first maximum wins, as
    /// `argmaxPlanes`) of the `height` x `width` window at the top left of `x`'s planes (`x`: `[1, k, ≥ height,
    /// ≥ width]`, a padded map) resized bilinearly as `resizeBilinear` to `outHeight` x `outWidth`. The labels are
    /// the bits of crop → resize → argmax, but the resized planes (k floats per output pixel) never reach memory:
    /// each output row is blended for all k planes into a row buffer and reduced there. `labels`: `outHeight` rows
    /// of `outWidth`. Row buffers come from `ws`.
    public static func resizeBilinearArgmax(_ x: Tensor, height h: Int, width w: Int, outHeight ho: Int,
                                            outWidth wo: Int, into labels: UnsafeMutablePointer<UInt8>,
                                            workspace ws: Workspace) {
        precondition(x.rank == 4 && x.n == 1 && h >= 1 && w >= 1 && h <= x.h && w <= x.w && ho >= 1 && wo >= 1,
                     "bilinear argmax of the \(h)x\(w) window of \(x.shape) to \(ho)x\(wo)")
        precondition(x.c <= 256, "argmax over \(x.c) planes")
        x.checkValid()
        let k = x.c, plane = x.h * x.w, stride = x.w, src = x.ptr
        let bands = max(1, min(ho, Parallel.width))
        // Per band: the two cached horizontal rows of every plane and the blended row of every plane.
        let scratch = ws.tensor([bands, 3, k, wo])
        withBilinearTaps(height: h, width: w, outHeight: ho, outWidth: wo) { ys, cols in
            Parallel.forEach(bands, cost: ho * wo * k * 4) { range in
                for band in range {
                    let base = scratch.ptr + band * 3 * k * wo, mixed = base + 2 * k * wo
                    var rows = BilinearRows(a: base, b: base + k * wo)
                    for oy in (ho * band / bands)..<(ho * (band + 1) / bands) {
                        let ty = ys[oy]
                        rows.load(ty) { iy, r in
                            for c in 0..<k { cols.lerp(src + c * plane + iy * stride, width: w, into: r + c * wo) }
                        }
                        let wy1 = ty.weight, wy0 = 1 - wy1
                        for c in 0..<k {
                            fpn_lerp_rows(layoutISA, rows.a + c * wo, rows.b + c * wo, wo, wy0, wy1, mixed + c * wo)
                        }
                        fpn_argmax_planes(roiAlignISA, mixed, wo, Int32(k), labels + oy * wo)
                    }
                }
            }
        }
        ws.release(scratch)
    }

    /// Column taps of a bilinear resize as index and weight arrays for CKernels (w0 = 1 - weight, the value the
    /// scalar form computed per pixel).
    struct BilinearColumns {
        let i0: UnsafeMutablePointer<Int32>, i1: UnsafeMutablePointer<Int32>
        let w0: UnsafeMutablePointer<Float>, w1: UnsafeMutablePointer<Float>
        /// Per 16 outputs, where their taps start when they lie close together (`fpn_lerp_taps_bases`).
        let bases: UnsafeMutablePointer<Int32>
        let count: Int

        /// One source row (`width` floats) interpolated horizontally into `count` floats at `out`.
        @inline(__always)
        func lerp(_ row: UnsafePointer<Float>, width: Int, into out: UnsafeMutablePointer<Float>) {
            fpn_lerp_taps(layoutISA, row, Int32(width), i0, i1, w0, w1, bases, count, out)
        }
    }

    /// Calls `body` with the row taps and the column taps of an `h` x `w` → `ho` x `wo` bilinear resize, all on the
    /// stack (no heap allocation per frame).
    static func withBilinearTaps(height h: Int, width w: Int, outHeight ho: Int, outWidth wo: Int,
                                 _ body: (UnsafeBufferPointer<BilinearTap>, BilinearColumns) -> Void) {
        withUnsafeTemporaryAllocation(of: BilinearTap.self, capacity: ho + wo) { taps in
            bilinearTaps(input: h, output: ho, into: UnsafeMutableBufferPointer(rebasing: taps[0..<ho]))
            bilinearTaps(input: w, output: wo, into: UnsafeMutableBufferPointer(rebasing: taps[ho...]))
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * wo + (wo + 15) / 16) { xi in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * wo) { xw in
                    let cols = BilinearColumns(i0: xi.baseAddress!, i1: xi.baseAddress! + wo, w0: xw.baseAddress!,
                                               w1: xw.baseAddress! + wo, bases: xi.baseAddress! + 2 * wo, count: wo)
                    for ox in 0..<wo {
                        let t = taps[ho + ox]
                        cols.i0[ox] = Int32(t.i0); cols.i1[ox] = Int32(t.i1); cols.w0[ox] = 1 - t.weight
                        cols.w1[ox] = t.weight
                    }
                    fpn_lerp_taps_bases(cols.i0, cols.i1, wo, cols.bases)
                    body(UnsafeBufferPointer(rebasing: taps[0..<ho]), cols)
                }
            }
        }
    }

    /// The two horizontally interpolated source rows (of one plane, or of every plane) a bilinear resize blends
    /// for the current output row, kept while consecutive output rows share source rows (upsampling).
    struct BilinearRows {
        var a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>
        private var haveA = -1, haveB = -1

        init(a: UnsafeMutablePointer<Float>, b: UnsafeMutablePointer<Float>) { self.a = a; self.b = b }

        /// Makes `a` hold source row `tap.i0` and `b` row `tap.i1`, computing with `horizontal(row, into:)` only the
        /// rows not already held.
        @inline(__always)
        mutating func load(_ tap: BilinearTap, _ horizontal: (Int, UnsafeMutablePointer<Float>) -> Void) {
            if haveA != tap.i0 {
                if haveB == tap.i0 {
                    swap(&a, &b); swap(&haveA, &haveB)
                } else {
                    horizontal(tap.i0, a); haveA = tap.i0
                }
            }
            if haveB != tap.i1 { horizontal(tap.i1, b); haveB = tap.i1 }
        }
    }

    /// One output coordinate's two source indices and the weight of the second.
    struct BilinearTap { var i0: Int, i1: Int, weight: Float }

    /// The source indices a bilinear resize from `input` to `output` samples along one axis (taps as
    /// `resizeBilinear`), as ascending runs of consecutive indices: where it downsamples, the rows between the taps
    /// are never read, so a producer can skip them.
    public static func bilinearSourceRuns(input: Int, output: Int) -> [Range<Int>] {
        precondition(input >= 1 && output >= 1, "bilinear taps \(input) → \(output)")
        // Taps ascend (i0 never decreases, i1 ≤ i0 + 1): each index extends the last run or starts one.
        var runs: [Range<Int>] = []
        func read(_ i: Int) {
            if let last = runs.last, i <= last.upperBound {
                if i == last.upperBound { runs[runs.count - 1] = last.lowerBound..<(i + 1) }
            } else {
                runs.append(i..<(i + 1))
            }
        }
        withUnsafeTemporaryAllocation(of: BilinearTap.self, capacity: output) { taps in
            bilinearTaps(input: input, output: output, into: taps)
            for t in taps { read(t.i0); read(t.i1) }
        }
        return runs
    }

    /// Source taps of bilinear resizing along one axis (align_corners false, as torch's CPU kernel: Float math).
    static func bilinearTaps(input: Int, output: Int, into taps: UnsafeMutableBufferPointer<BilinearTap>) {
        let scale = Float(input) / Float(output)
        for o in 0..<output {
            let src = max((Float(o) + 0.5) * scale - 0.5, 0)
            let i0 = min(Int(src), input - 1)
            taps[o] = BilinearTap(i0: i0, i1: min(i0 + 1, input - 1), weight: src - Float(i0))
        }
    }
}

extension Tensor {
    /// Max pool (stride defaults to the kernel): `[n, c, h, w]` → `Ops.maxPool2dShape`.
    public func maxPool2d(kernel: Size2, stride: Size2? = nil, padding: Size2 = 0, in ws: Workspace) -> Tensor {
        let s = stride ?? kernel
        let out = ws.tensor(Ops.maxPool2dShape(shape, kernel: kernel, stride: s, padding: padding))
        Ops.maxPool2d(self, kernel: kernel, stride: s, padding: padding, into: out)
        return out
    }

    /// `[n, c, h, w]` → `[n, c, 1, 1]` plane means.
    public func globalAveragePool(in ws: Workspace) -> Tensor {
        let out = ws.tensor([n, c, 1, 1]); Ops.globalAveragePool(self, into: out); return out
    }

    /// Nearest resize to an explicit size: `[n, c, h, w]` → `[n, c, height, width]` (torch semantics).
    public func upsampleNearest(height: Int, width: Int, in ws: Workspace) -> Tensor {
        let out = ws.tensor([n, c, height, width]); Ops.upsampleNearest(self, into: out); return out
    }

    /// Bilinear resize (align_corners false): `[n, c, h, w]` → `[n, c, height, width]`.
    public func resizeBilinear(height: Int, width: Int, in ws: Workspace) -> Tensor {
        let out = ws.tensor([n, c, height, width]); Ops.resizeBilinear(self, into: out); return out
    }
}
