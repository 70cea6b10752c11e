import CKernels

/// Depthwise convolution (one input channel per group) over output segments. On AVX-512 it runs `fpn_depthwise`
/// (16 output pixels per register, the same arithmetic); elsewhere the loop below, written so the inner loop is a
/// contiguous multiply-add along an output row that the compiler vectorizes: for each tap (ky, kx) the valid
/// output columns are computed once, then `row[ox] += w * input[iy, ox*s + kx*d - p]`. Per output pixel the taps
/// are summed from 0 in (ky, kx) order, skipping padding, then the bias and activation are applied — the same
/// arithmetic order as the straightforward loop, so results are bit-identical to it. `residual` (same layout as
/// `out`), when given, is added after the bias and before the activation.
enum DepthwiseKernel {
    /// - Parameters: `x` the batch item's input planes `[groups * 1, h, w]`, `planeStride` floats apart (default
    ///   `h * w`; rows past `h` are never read); `segments` quadruples
    ///   (oy, ox0, length, column); `out` the output planes `[outChannels, ho, wo]`; `weight` `[outChannels, 1, kh, kw]`;
    ///   `isa` the own-kernel ISA to use (nil = the portable loop).
    static func run(_ x: UnsafeMutablePointer<Float>, h: Int, w: Int, planeStride: Int? = nil, segments seg: UnsafeMutablePointer<Int>,
                    segmentCount: Int, out: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>?, ho: Int, wo: Int,
                    weight wgt: UnsafeMutablePointer<Float>, bias: UnsafeBufferPointer<Float>?, outChannels: Int, groups: Int,
                    kernel: Size2, stride: Size2, padding: Size2, dilation: Size2, relu: Bool,
                    isa: Int32? = Compute.path.isa) {
        let kh = kernel.h, kw = kernel.w, sh = stride.h, sw = stride.w
        let ph = padding.h, pw = padding.w, dh = dilation.h, dw = dilation.w
        let mult = outChannels / groups, inPlane = planeStride ?? h * w
        if let isa, fpn_depthwise_supported(isa, Int32(sw)) != 0 {
            Parallel.forEach(outChannels, cost: outChannels * ho * wo * kh * kw) { range in
                fpn_depthwise(isa, x, Int32(h), Int32(w), inPlane, seg, Int32(segmentCount), out, residual, Int32(ho), Int32(wo),
                              wgt, bias?.baseAddress, Int32(range.lowerBound), Int32(range.upperBound), Int32(mult),
                              Int32(kh), Int32(kw), Int32(sh), Int32(sw), Int32(ph), Int32(pw), Int32(dh), Int32(dw),
                              relu ? 1 : 0)
            }
            return
        }
        Parallel.forEach(outChannels, cost: outChannels * ho * wo * kh * kw) { range in
            for oc in range {
                let src = x + (oc / mult) * inPlane
                let k = wgt + oc * kh * kw
                let plane = out + oc * ho * wo
                let b = bias?[oc] ?? 0
                for s in 0..<segmentCount {
                    let oy = seg[4 * s], ox0 = seg[4 * s + 1], len = seg[4 * s + 2]
                    let d = plane + oy * wo + ox0
                    // A segment clear of the padding (most tiles) needs no per-tap range set-up (two divisions
                    // per tap, which dominate the 2-8 pixel segments of the tile path).
                    let iy0 = oy * sh - ph, ix0 = ox0 * sw - pw
                    let interior = iy0 >= 0 && iy0 + (kh - 1) * dh < h && ix0 >= 0
                        && ix0 + (len - 1) * sw + (kw - 1) * dw < w
                    // Taps accumulate in a row on the stack: `out` may alias `residual` (in-place residual add).
                    withUnsafeTemporaryAllocation(of: Float.self, capacity: len) { acc in
                        let a = acc.baseAddress!
                        a.initialize(repeating: 0, count: len)
                        for ky in 0..<kh {
                            let iy = oy * sh - ph + ky * dh
                            if iy < 0 || iy >= h { continue }
                            let row = src + iy * w
                            for kx in 0..<kw {
                                let wk = k[ky * kw + kx]
                                // ix = ox*sw + off must lie in [0, w): ox in [lo, hi).
                                let off = kx * dw - pw
                                let lo = interior ? ox0 : max(ox0, off >= 0 ? 0 : (-off + sw - 1) / sw)
                                let hi = interior ? ox0 + len : min(ox0 + len, w - 1 - off >= 0 ? (w - 1 - off) / sw + 1 : 0)
                                if lo >= hi { continue }
                                let aa = a - ox0
                                if sw == 1 {
                                    let r = row + off
                                    for ox in lo..<hi { aa[ox] += wk * r[ox] }
                                } else {
                                    for ox in lo..<hi { aa[ox] += wk * row[ox * sw + off] }
                                }
                            }
                        }
                        if let residual {
                            let r = residual + oc * ho * wo + oy * wo + ox0
                            for i in 0..<len { let v = a[i] + b + r[i]; d[i] = relu && v < 0 ? 0 : v }
                        } else if relu {
                            for i in 0..<len { let v = a[i] + b; d[i] = v < 0 ? 0 : v }
                        } else {
                            for i in 0..<len { d[i] = a[i] + b }
                        }
                    }
                }
            }
        }
    }
}
