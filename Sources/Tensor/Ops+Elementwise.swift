import Foundation

/// The closed op set's explicit-output forms: each writes into `out` (shapes documented per op). `out` may be
/// the same tensor as an input for the elementwise ops (in-place). The `Tensor` methods with `in ws:` are the
/// same ops with the output taken from a `Workspace`.
public enum Ops {}

// MARK: - Elementwise

/// Elementwise kernels as types, so the generic loops below are specialised and vectorised per op
/// (a closure per element would be an indirect call through `concurrentPerform`).
protocol UnaryKernel { func callAsFunction(_ v: Float) -> Float }
protocol BinaryKernel { func callAsFunction(_ a: Float, _ b: Float) -> Float }

struct AddKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
struct MulKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
struct DivKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
struct AffineKernel: UnaryKernel {
    let scale: Float, shift: Float
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v * scale + shift }
}
struct ReluKernel: UnaryKernel { @inline(__always) func callAsFunction(_ v: Float) -> Float { v > 0 ? v : 0 } }
struct ClipKernel: UnaryKernel {
    let lower: Float, upper: Float
    @inline(__always) func callAsFunction(_ v: Float) -> Float { min(max(v, lower), upper) }
}
struct SigmoidKernel: UnaryKernel {
    @inline(__always) func callAsFunction(_ v: Float) -> Float {
        // Branch keeps exp's argument non-positive: no overflow, accurate tails.
        if v >= 0 { return 1 / (1 + expf(-v)) }
        let e = expf(v); return e / (1 + e)
    }
}

extension Ops {
    /// out = act(a + b); all three have the same element count.
    public static func add(_ a: Tensor, _ b: Tensor, activation: Activation = .none, into out: Tensor) {
        binary(a, b, into: out, activation: activation, AddKernel())
    }

    /// out = a * b elementwise.
    public static func mul(_ a: Tensor, _ b: Tensor, into out: Tensor) { binary(a, b, into: out, MulKernel()) }

    /// out = a / b elementwise.
    public static func div(_ a: Tensor, _ b: Tensor, into out: Tensor) { binary(a, b, into: out, DivKernel()) }

    /// out = x * scale + shift elementwise.
    public static func affine(_ x: Tensor, scale: Float, shift: Float = 0, into out: Tensor) {
        unary(x, into: out, AffineKernel(scale: scale, shift: shift))
    }

    /// out = max(x, 0).
    public static func relu(_ x: Tensor, into out: Tensor) { unary(x, into: out, ReluKernel()) }

    /// out = 1 / (1 + exp(-x)).
    public static func sigmoid(_ x: Tensor, into out: Tensor) { unary(x, into: out, SigmoidKernel()) }

    /// out = min(max(x, lower), upper).
    public static func clip(_ x: Tensor, lower: Float, upper: Float, into out: Tensor) {
        precondition(lower <= upper, "clip lower \(lower) > upper \(upper)")
        unary(x, into: out, ClipKernel(lower: lower, upper: upper))
    }

    static func unary<K: UnaryKernel>(_ x: Tensor, into out: Tensor, _ f: K) {
        precondition(x.count == out.count, "elementwise \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let src = x.ptr, dst = out.ptr, n = x.count
        Parallel.forEach(n, cost: n * 4) { r in
            for i in r { dst[i] = f(src[i]) }
        }
    }

    static func binary<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, into out: Tensor, activation: Activation = .none, _ f: K) {
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
