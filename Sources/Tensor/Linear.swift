import CKernels

/// A fully connected layer (torch `nn.Linear`): y = x Wᵀ + b, with optional fused activation.
/// Input `[rows, ...]` is read as `[rows, inFeatures]` (so `[R, 256, 7, 7]` flattens like `torch.flatten(x, 1)`);
/// output `[rows, outFeatures]`. One GEMM on the compute path (`Gemm`; Wᵀ kept once). Immutable, shared by streams.
public final class Linear: @unchecked Sendable {
    /// `[outFeatures, inFeatures]` (torch layout).
    public let weight: Tensor
    /// `[outFeatures]` or nil.
    public let bias: [Float]?
    /// Activation after the bias.
    public let activation: Activation
    /// Input features.
    public var inFeatures: Int { weight.shape[1] }
    /// Output features.
    public var outFeatures: Int { weight.shape[0] }

    /// - Parameters: `weight` `[out, in]`, `bias` `[out]` or nil.
    public init(weight: Tensor, bias: [Float]? = nil, activation: Activation = .none) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        if let bias { precondition(bias.count == weight.shape[0], "linear bias has \(bias.count) elements, expected \(weight.shape[0])") }
        let w = Tensor(shape: weight.shape)
        w.copy(from: weight)
        self.weight = w; self.bias = bias; self.activation = activation
        let o = w.shape[0], i = w.shape[1]
        let t = Tensor(shape: [i, o])
        let src = w.ptr, dst = t.ptr
        for r in 0..<o { for c in 0..<i { dst[c * o + r] = src[r * i + c] } }
        transposed = PackedColumns(dst, rows: i, columns: o)
    }

    /// `weight` transposed, `[inFeatures, outFeatures]`, packed: the right-hand operand of y = x·Wᵀ.
    private let transposed: PackedColumns

    /// 2·rows·in·out.
    public func flops(rows: Int) -> Double { 2 * Double(rows * inFeatures * outFeatures) }

    /// y into `out` `[rows, outFeatures]`.
    public func forward(_ x: Tensor, into out: Tensor) {
        let rows = x.shape[0]
        precondition(x.count == rows * inFeatures, "linear(\(inFeatures)) on \(x.shape)")
        precondition(out.shape == [rows, outFeatures], "linear output must be [\(rows), \(outFeatures)], got \(out.shape)")
        x.checkValid(); out.checkValid()
        guard rows > 0 else { return }
        let o = outFeatures, dst = out.ptr
        Gemm.multiply(rows: rows, a: x.ptr, lda: inFeatures, b: transposed, beta: 0, c: dst, ldc: o)
        if bias == nil && activation == .none { return }
        let relu = activation == .relu
        withBias { b in
            Parallel.forEach(rows, cost: rows * o) { range in
                for r in range {
                    for j in 0..<o {
                        let v = dst[r * o + j] + (b?[j] ?? 0)
                        dst[r * o + j] = relu && v < 0 ? 0 : v
                    }
                }
            }
        }
    }

    /// y from `ws`.
    public func callAsFunction(_ x: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor([x.shape[0], outFeatures]); forward(x, into: out); return out
    }

    private func withBias<R>(_ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
        if let bias { return bias.withUnsafeBufferPointer { body($0) } }
        return body(nil)
    }
}

/// A transposed convolution (torch `nn.ConvTranspose2d`): weight `[inChannels, outChannels / groups, kh, kw]`.
/// Output size per axis: (in - 1)·stride - 2·padding + dilation·(k - 1) + outputPadding + 1.
/// out[oc, iy·s - p + ky·d, ix·s - p + kx·d] += Σ_ic x[ic, iy, ix] · W[ic, oc, ky, kx], plus bias, then activation.
/// Computed as one GEMM per group (columns = Wᵀ x) followed by col2im accumulation.
public final class ConvTranspose2d: @unchecked Sendable {
    /// `[inChannels, outChannels / groups, kh, kw]` (torch layout).
    public let weight: Tensor
    /// `[outChannels]` or nil.
    public let bias: [Float]?
    /// Input channels.
    public var inChannels: Int { weight.shape[0] }
    /// Output channels.
    public var outChannels: Int { weight.shape[1] * groups }
    /// Kernel size.
    public var kernel: Size2 { Size2(weight.shape[2], weight.shape[3]) }
    /// Stride.
    public let stride: Size2
    /// Padding removed from each side of the full output.
    public let padding: Size2
    /// Extra rows/columns added at the bottom/right.
    public let outputPadding: Size2
    /// Dilation.
    public let dilation: Size2
    /// Groups.
    public let groups: Int
    /// Activation after the bias.
    public let activation: Activation

    /// - Parameters: `weight` `[in, out/groups, kh, kw]`, `bias` `[out]` or nil.
    public init(weight: Tensor, bias: [Float]? = nil, stride: Size2 = 1, padding: Size2 = 0, outputPadding: Size2 = 0,
                dilation: Size2 = 1, groups: Int = 1, activation: Activation = .none) {
        precondition(weight.rank == 4, "conv-transpose weight must be [in, out/groups, kh, kw], got \(weight.shape)")
        precondition(groups >= 1 && weight.shape[0] % groups == 0, "inChannels \(weight.shape[0]) not divisible by groups \(groups)")
        precondition(stride.h >= 1 && stride.w >= 1 && dilation.h >= 1 && dilation.w >= 1 && padding.h >= 0 && padding.w >= 0
                     && outputPadding.h >= 0 && outputPadding.w >= 0 && (outputPadding.h < stride.h || outputPadding.h < dilation.h)
                     && (outputPadding.w < stride.w || outputPadding.w < dilation.w),
                     "bad conv-transpose geometry stride \(stride) padding \(padding) output padding \(outputPadding)")
        if let bias { precondition(bias.count == weight.shape[1] * groups, "conv-transpose bias has \(bias.count) elements") }
        let w = Tensor(shape: weight.shape)
        w.copy(from: weight)
        self.weight = w; self.bias = bias; self.stride = stride; self.padding = padding
        self.outputPadding = outputPadding; self.dilation = dilation; self.groups = groups; self.activation = activation
        // Per group Wᵀ `[(out/groups)·kh·kw, in/groups]`: the left-hand GEMM operand.
        let cg = weight.shape[0] / groups, rows = weight.shape[1] * weight.shape[2] * weight.shape[3]
        let t = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows * cg))
        defer { t.deallocate() }
        packed = (0..<groups).map { g in
            let src = w.ptr + g * cg * rows
            for c in 0..<cg { for r in 0..<rows { t[r * cg + c] = src[c * rows + r] } }
            return PackedMatrix(t, rows: rows, columns: cg)
        }
    }

    /// Per group, the weights as a packed GEMM operand (see `init`).
    private let packed: [PackedMatrix]

    /// Output shape for input `[n, inChannels, h, w]`.
    public func outputShape(_ input: [Int]) -> [Int] {
        precondition(input.count == 4 && input[1] == inChannels, "conv-transpose expects [n, \(inChannels), h, w], got \(input)")
        let ho = (input[2] - 1) * stride.h - 2 * padding.h + dilation.h * (kernel.h - 1) + outputPadding.h + 1
        let wo = (input[3] - 1) * stride.w - 2 * padding.w + dilation.w * (kernel.w - 1) + outputPadding.w + 1
        precondition(ho > 0 && wo > 0, "conv-transpose gives an empty output for \(input)")
        return [input[0], outChannels, ho, wo]
    }

    /// 2·n·in·(out/groups)·kh·kw·h·w.
    public func flops(_ input: [Int]) -> Double {
        2 * Double(input[0] * inChannels * (outChannels / groups) * kernel.h * kernel.w * input[2] * input[3])
    }

    /// Forward into `out` (shape `outputShape(x.shape)`), scratch from `workspace`.
    public func forward(_ x: Tensor, into out: Tensor, workspace: Workspace) {
        let os = outputShape(x.shape)
        precondition(out.shape == os, "conv-transpose output must be \(os), got \(out.shape)")
        x.checkValid(); out.checkValid()
        let h = x.h, w = x.w, ho = os[2], wo = os[3], hw = h * w
        let cg = inChannels / groups, mg = outChannels / groups
        let kh = kernel.h, kw = kernel.w, rows = mg * kh * kw
        // Small inputs (mask heads: 100 RoIs of 14x14) share one GEMM per ~4096 columns, gathered side by side.
        let per = hw >= 4096 ? 1 : max(1, min(x.n, 4096 / hw))
        let maxTotal = per * hw
        let scratch = workspace.scratch(rows * maxTotal + (per > 1 ? cg * maxTotal : 0))
        let cols = scratch, gathered = scratch + rows * maxTotal
        let (sh, sw, ph, pw, dh, dw) = (stride.h, stride.w, padding.h, padding.w, dilation.h, dilation.w)
        let relu = activation == .relu
        // Stride = kernel, no padding, dilation 1: every output pixel gets exactly one tap (the mask head's 2x2/2).
        let oneTap = sh == kh && sw == kw && ph == 0 && pw == 0 && dh == 1 && dw == 1
            && outputPadding.h == 0 && outputPadding.w == 0
        for b0 in Swift.stride(from: 0, to: x.n, by: per) {
            let nb = min(per, x.n - b0), total = nb * hw
            for g in 0..<groups {
                let bMat: UnsafeMutablePointer<Float>
                if nb == 1 {
                    bMat = x.ptr + (b0 * inChannels + g * cg) * hw
                } else {
                    let src = x.ptr
                    Parallel.forEach(nb * cg, cost: nb * cg * hw) { r in
                        for jc in r {
                            let j = jc / cg, c = jc % cg
                            (gathered + c * total + j * hw).update(from: src + ((b0 + j) * inChannels + g * cg + c) * hw, count: hw)
                        }
                    }
                    bMat = gathered
                }
                // cols[(oc, ky, kx), item·pixel] = Σ_ic W[ic, (oc, ky, kx)] x[item, ic, pixel]
                Gemm.multiply(packed[g], b: bMat, ldb: total, columns: total, beta: 0, c: cols, ldc: total)
                let outBase = out.ptr
                withBias { bias in
                    Parallel.forEach(nb * mg, cost: rows * total) { range in
                        for jm in range {
                            let j = jm / mg, m = jm % mg
                            let oc = g * mg + m
                            let plane = outBase + ((b0 + j) * outChannels + oc) * ho * wo
                            if oneTap {
                                // Stride = kernel, no padding: each output pixel is bias + its one tap.
                                fpn_col2im_one_tap(Ops.layoutISA, cols + m * kh * kw * total + j * hw, total,
                                                   Int32(h), Int32(w), Int32(kh), Int32(kw), bias?[oc] ?? 0,
                                                   relu ? 1 : 0, plane)
                                continue
                            }
                            plane.update(repeating: bias?[oc] ?? 0, count: ho * wo)
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let c = cols + ((m * kh + ky) * kw + kx) * total + j * hw
                                    for iy in 0..<h {
                                        let oy = iy * sh - ph + ky * dh
                                        if oy < 0 || oy >= ho { continue }
                                        let prow = plane + oy * wo, crow = c + iy * w
                                        // ox = ix·sw + off must lie in [0, wo).
                                        let off = kx * dw - pw
                                        let lo = off >= 0 ? 0 : (-off + sw - 1) / sw
                                        let hi = min(w, wo - 1 - off >= 0 ? (wo - 1 - off) / sw + 1 : 0)
                                        var ix = lo
                                        while ix < hi { prow[ix * sw + off] += crow[ix]; ix += 1 }
                                    }
                                }
                            }
                            if relu { for i in 0..<(ho * wo) where plane[i] < 0 { plane[i] = 0 } }
                        }
                    }
                }
            }
        }
    }

    /// Forward with the output from `ws`.
    public func callAsFunction(_ x: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor(outputShape(x.shape)); forward(x, into: out, workspace: ws); return out
    }

    private func withBias<R>(_ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
        if let bias { return bias.withUnsafeBufferPointer { body($0) } }
        return body(nil)
    }
}
