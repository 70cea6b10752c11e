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
    @inline(__always) func callAsFunction(_ v: Float) -> Float { 1 / (1 + vectorizableExp(-v)) }
}

/// exp(x) without branches or calls, so loops over it vectorise: 2^n · 2^f with n = round(x·log2 e) and 2^f from a
/// degree-7 Taylor polynomial of e^r, r = x − n·ln 2 (truncation < 1e-8 relative; a few ulps overall).
/// x is clamped to [-87.3, 88.3] (result stays a normal float; exp saturates near 0 and 2.4e38).
@inline(__always)
func vectorizableExp(_ x: Float) -> Float {
    let xc = min(max(x, -87.3), 88.3)
    // round(x·log2 e) by the 1.5·2^23 trick: `big` is exactly 1.5·2^23 + n, and its bit pattern is 0x4B40_0000 + n.
    let big = xc * 1.442_695_04 + 12_582_912
    let n = big - 12_582_912
    // Cody–Waite: r = x - n·ln2 with ln2 split so n·ln2_hi is exact; |r| ≤ 0.35.
    let r = (xc - n * 0.693_145_75) - n * 1.428_606_8e-6
    var p: Float = 1 / 5040
    p = p * r + 1 / 720
    p = p * r + 1 / 120
    p = p * r + 1 / 24
    p = p * r + 1 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    return p * Float(bitPattern: (big.bitPattern &- 0x4B40_0000 &+ 127) << 23)
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
