import Foundation

/// The closed op set's explicit-output forms: each writes into `out` (shapes documented per op). `out` may be
/// the same tensor as an input for the elementwise ops (in-place). The `Tensor` methods with `in ws:` are the
/// same ops with the output taken from a `Workspace`.
public enum Ops {}

// MARK: - Elementwise

extension Ops {
    /// out = act(a + b); all three have the same element count.
    public static func add(_ a: Tensor, _ b: Tensor, activation: Activation = .none, into out: Tensor) {
        binary(a, b, into: out, activation: activation) { $0 + $1 }
    }

    /// out = a * b elementwise.
    public static func mul(_ a: Tensor, _ b: Tensor, into out: Tensor) { binary(a, b, into: out) { $0 * $1 } }

    /// out = a / b elementwise.
    public static func div(_ a: Tensor, _ b: Tensor, into out: Tensor) { binary(a, b, into: out) { $0 / $1 } }

    /// out = x * scale + shift elementwise.
    public static func affine(_ x: Tensor, scale: Float, shift: Float = 0, into out: Tensor) {
        unary(x, into: out) { $0 * scale + shift }
    }

    /// out = max(x, 0).
    public static func relu(_ x: Tensor, into out: Tensor) { unary(x, into: out) { $0 > 0 ? $0 : 0 } }

    /// out = 1 / (1 + exp(-x)).
    public static func sigmoid(_ x: Tensor, into out: Tensor) {
        unary(x, into: out) { v in
            // Branch keeps exp's argument non-positive: no overflow, correct tails.
            if v >= 0 { return 1 / (1 + expf(-v)) }
            let e = expf(v); return e / (1 + e)
        }
    }

    /// out = min(max(x, lower), upper).
    public static func clip(_ x: Tensor, lower: Float, upper: Float, into out: Tensor) {
        precondition(lower <= upper, "clip lower \(lower) > upper \(upper)")
        unary(x, into: out) { min(max($0, lower), upper) }
    }

    @inline(__always)
    static func unary(_ x: Tensor, into out: Tensor, _ f: @escaping (Float) -> Float) {
        precondition(x.count == out.count, "elementwise \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let src = x.ptr, dst = out.ptr, n = x.count
        Parallel.forEach(n, cost: n * 4) { r in
            for i in r { dst[i] = f(src[i]) }
        }
    }

    @inline(__always)
    static func binary(_ a: Tensor, _ b: Tensor, into out: Tensor, activation: Activation = .none,
                       _ f: @escaping (Float, Float) -> Float) {
        precondition(a.shape == b.shape && a.count == out.count, "elementwise \(a.shape), \(b.shape) into \(out.shape)")
        a.checkValid(); b.checkValid(); out.checkValid()
        let pa = a.ptr, pb = b.ptr, dst = out.ptr, n = a.count
        let relu = activation == .relu
        Parallel.forEach(n, cost: n * 4) { r in
            if relu {
                for i in r { let v = f(pa[i], pb[i]); dst[i] = v > 0 ? v : 0 }
            } else {
                for i in r { dst[i] = f(pa[i], pb[i]) }
            }
        }
    }
}

extension Tensor {
    /// act(self + other), same shape (in place: `Ops.add(a, b, into: a)`).
    public func add(_ other: Tensor, activation: Activation = .none, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape)
        Ops.add(self, other, activation: activation, into: out)
        return out
    }

    /// self * other elementwise, same shape.
    public func mul(_ other: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.mul(self, other, into: out); return out
    }

    /// self / other elementwise, same shape.
    public func div(_ other: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.div(self, other, into: out); return out
    }

    /// self * scale + shift elementwise.
    public func affine(scale: Float, shift: Float = 0, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.affine(self, scale: scale, shift: shift, into: out); return out
    }

    /// max(self, 0).
    public func relu(in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.relu(self, into: out); return out
    }

    /// Logistic sigmoid.
    public func sigmoid(in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.sigmoid(self, into: out); return out
    }

    /// Clamped to [lower, upper].
    public func clip(lower: Float, upper: Float, in ws: Workspace) -> Tensor {
        let out = ws.tensor(shape); Ops.clip(self, lower: lower, upper: upper, into: out); return out
    }
}
