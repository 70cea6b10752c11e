/// torch's `Hardsigmoid` on the CPU: `min(max(x + 3, 0), 6) / 6` in that order (differs from ONNX's
/// `alpha x + beta` form by an ulp on some inputs).
struct TorchHardSigmoidKernel: UnaryKernel {
    @inline(__always) func callAsFunction(_ v: Float) -> Float { min(max(v + 3, 0), 6) / 6 }
}

/// The ops MobileNetV3 adds to a conv network: hard-swish / hard-sigmoid activations (torch's evaluation order) and
/// the channel scaling of a squeeze-and-excitation block.
extension Ops {
    /// out = min(max(x + 3, 0), 6) / 6 (torch `nn.Hardsigmoid`). `out` may be `x`.
    public static func hardSigmoidTorch(_ x: Tensor, into out: Tensor) { unary(x, into: out, TorchHardSigmoidKernel()) }

    /// out[n, c, y, x] = x[n, c, y, x] · scale[n, c] for `scale` `[n, c, 1, 1]` (SqueezeExcitation's `scale * input`).
    /// `out` may be `x`.
    public static func scaleChannels(_ x: Tensor, by scale: Tensor, into out: Tensor) {
        precondition(x.rank == 4 && scale.shape == [x.n, x.c, 1, 1] && out.shape == x.shape,
                     "scale channels \(x.shape) by \(scale.shape) into \(out.shape)")
        x.checkValid(); scale.checkValid(); out.checkValid()
        let plane = x.h * x.w, src = x.ptr, s = scale.ptr, dst = out.ptr
        Parallel.forEach(x.n * x.c, cost: x.count) { planes in
            for p in planes {
                let f = s[p], base = p * plane
                for i in 0..<plane { dst[base + i] = f * src[base + i] }
            }
        }
    }
}

extension Tensor {
    /// Hard-swish `x · min(max(x + 3, 0), 6) / 6` (torch `nn.Hardswish`, same evaluation order) in place.
    public func applyHardSwish() { Ops.hardSwish(self, into: self) }

    /// torch `nn.Hardsigmoid` in place.
    public func applyHardSigmoid() { Ops.hardSigmoidTorch(self, into: self) }

    /// Each channel plane multiplied by `scale[n, c]` (`[n, c, 1, 1]`), in place.
    public func scaleChannels(by scale: Tensor) { Ops.scaleChannels(self, by: scale, into: self) }
}
