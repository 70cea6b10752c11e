import CKernels
import Foundation

// MARK: - Normalisation, softmax, concatenation

/// GroupNorm (torch `nn.GroupNorm`) with optional fused activation. Immutable, shared by streams.
/// Input `[n, c, h, w]` (any rank ≥ 2 with channels at dim 1); statistics per (n, group), biased variance.
public final class GroupNorm: @unchecked Sendable {
    /// Number of groups (channels must divide).
    public let groups: Int
    /// Channels.
    public let channels: Int
    /// Epsilon added to the variance.
    public let eps: Float
    /// Per-channel scale `[channels]` or nil (affine false).
    public let weight: [Float]?
    /// Per-channel shift `[channels]` or nil.
    public let bias: [Float]?
    /// Activation after the affine transform (FCOS towers use GroupNorm + ReLU).
    public let activation: Activation

    /// - Parameters: `weight`/`bias` of length `channels`, or nil for affine false.
    public init(groups: Int, channels: Int, eps: Float = 1e-5, weight: [Float]? = nil, bias: [Float]? = nil,
                activation: Activation = .none) {
        precondition(groups >= 1 && channels % groups == 0, "GroupNorm: \(channels) channels not divisible by \(groups) groups")
        precondition((weight?.count ?? channels) == channels && (bias?.count ?? channels) == channels,
                      "GroupNorm affine parameters must have \(channels) elements")
        self.groups = groups; self.channels = channels; self.eps = eps
        self.weight = weight; self.bias = bias; self.activation = activation
    }

    /// Normalises `x` into `out` (same shape; may be the same tensor).
    public func forward(_ x: Tensor, into out: Tensor) {
        precondition(x.rank >= 2 && x.shape[1] == channels && out.shape == x.shape, "GroupNorm(\(channels)) on \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let batch = x.shape[0], spatial = x.count / (batch * channels), cpg = channels / groups
        let groupSize = cpg * spatial
        let src = x.ptr, dst = out.ptr, relu = activation == .relu
        let weight = self.weight, bias = self.bias, eps = Double(self.eps)
        Parallel.forEach(batch * groups, cost: x.count * 3) { range in
            for ng in range {
                let base = ng * groupSize
                // Double sums in 16 lanes (CKernels; each v·v exact in double), combined pairwise.
                var sum = 0.0, sq = 0.0
                fpn_moments(Ops.layoutISA, src + base, groupSize, &sum, &sq)
                let mean = sum / Double(groupSize)
                let variance = max(sq / Double(groupSize) - mean * mean, 0)
                let inv = 1 / (variance + eps).squareRoot()
                let g = ng % groups
                for cc in 0..<cpg {
                    let ch = g * cpg + cc
                    let a = Float(inv) * (weight?[ch] ?? 1)
                    let b = (bias?[ch] ?? 0) - Float(mean) * a
                    let p = base + cc * spatial
                    // dst = src·a + b (multiply, then add), ReLU: vectorised in CKernels.
                    fpn_scale_shift(Ops.layoutISA, src + p, spatial, a, b, relu ? 1 : 0, dst + p)
                }
            }
        }
    }

    /// Normalised copy of `x` from `ws`.
    public func callAsFunction(_ x: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor(x.shape); forward(x, into: out); return out
    }
}

extension Ops {
    /// Root mean square of every element of `x` (0 for an empty tensor). Blocks of 4096 elements are summed in
    /// eight Float lanes (vectorised), the block sums in Double, blocks in parallel: relative error ~1e-6 on
    /// feature maps, at memory speed (the temporal cache measures it on every layer input at each dense refresh).
    public static func rootMeanSquare(_ x: Tensor) -> Float {
        x.checkValid()
        let n = x.count
        guard n > 0 else { return 0 }
        let p = x.ptr, block = 4096, blocks = (n + block - 1) / block
        var sums = [Double](repeating: 0, count: blocks)
        sums.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            Parallel.forEach(blocks, cost: n) { range in
                for b in range {
                    let lo = b * block, hi = min(n, lo + block)
                    var lanes = SIMD8<Float>(repeating: 0)
                    var i = lo
                    while i + 8 <= hi {
                        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
                        lanes += v * v
                        i += 8
                    }
                    var tail: Float = 0
                    while i < hi { tail += p[i] * p[i]; i += 1 }
                    o[b] = Double(lanes.sum()) + Double(tail)
                }
            }
        }
        return Float((sums.reduce(0, +) / Double(n)).squareRoot())
    }

    /// Softmax along `dim` (numerically stable: max subtracted; sums in Double). `out` has `x`'s shape.
    public static func softmax(_ x: Tensor, dim: Int, into out: Tensor) {
        precondition(dim >= 0 && dim < x.rank && out.shape == x.shape, "softmax dim \(dim) of \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let len = x.shape[dim]
        let inner = x.shape[(dim + 1)...].reduce(1, *), outer = x.shape[..<dim].reduce(1, *)
        let src = x.ptr, dst = out.ptr
        Parallel.forEach(outer * inner, cost: x.count * 8) { range in
            for line in range {
                let o = line / inner, i = line % inner
                let base = o * len * inner + i
                var m = -Float.infinity
                for k in 0..<len { m = max(m, src[base + k * inner]) }
                var sum = 0.0
                for k in 0..<len { let e = expf(src[base + k * inner] - m); dst[base + k * inner] = e; sum += Double(e) }
                let inv = Float(1 / sum)
                for k in 0..<len { dst[base + k * inner] *= inv }
            }
        }
    }

    /// Shape of `concat(tensors, dim:)`: equal shapes except along `dim`, which is summed.
    public static func concatShape(_ shapes: [[Int]], dim: Int) -> [Int] {
        precondition(!shapes.isEmpty, "concat of nothing")
        var s = shapes[0]
        precondition(dim >= 0 && dim < s.count, "concat dim \(dim) for rank \(s.count)")
        for t in shapes.dropFirst() {
            precondition(t.count == s.count && zip(t, s).enumerated().allSatisfy { $0.offset == dim || $0.element.0 == $0.element.1 },
                         "concat along \(dim): shapes \(shapes) differ elsewhere")
            s[dim] += t[dim]
        }
        return s
    }

    /// Concatenates along `dim` (dim 1 = channels for NCHW) into `out` of `concatShape`.
    public static func concat(_ tensors: [Tensor], dim: Int, into out: Tensor) {
        let s = concatShape(tensors.map(\.shape), dim: dim)
        precondition(out.shape == s, "concat output must be \(s), got \(out.shape)")
        out.checkValid()
        let outer = s[..<dim].reduce(1, *), inner = s[(dim + 1)...].reduce(1, *)
        let rowOut = s[dim] * inner
        var at = 0
        for t in tensors {
            t.checkValid()
            let row = t.shape[dim] * inner, src = t.ptr, dst = out.ptr + at
            Parallel.forEach(outer, cost: t.count) { range in
                for o in range { (dst + o * rowOut).update(from: src + o * row, count: row) }
            }
            at += row
        }
    }
}

extension Tensor {
    /// Softmax along `dim`, same shape.
    public func softmax(dim: Int, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.softmax(self, dim: dim, into: out); return out
    }

    /// Concatenation along `dim` (1 = channels of NCHW).
    public static func concat(_ tensors: [Tensor], dim: Int, in ws: Workspace) -> Tensor {
        let out = ws.tensor(Ops.concatShape(tensors.map(\.shape), dim: dim))
        Ops.concat(tensors, dim: dim, into: out)
        return out
    }
}
