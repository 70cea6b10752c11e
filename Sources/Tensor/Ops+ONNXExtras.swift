import Foundation

// Ops that imported ONNX models need beyond the core set: numpy-broadcast binaries, per-channel affine,
// hard-sigmoid / hard-swish / leaky-ReLU, and ONNX `Resize` with its coordinate and rounding modes.

/// ONNX Resize `coordinate_transformation_mode`: how an output coordinate maps to an input coordinate.
public enum ResizeCoordinates: String, Sendable, Hashable {
    /// (x + 0.5) / scale - 0.5 (ONNX default from opset 11; torch align_corners=False).
    case halfPixel = "half_pixel"
    /// As halfPixel, but 0 when the output length is 1.
    case pytorchHalfPixel = "pytorch_half_pixel"
    /// x * (in - 1) / (out - 1).
    case alignCorners = "align_corners"
    /// x / scale (ONNX default before opset 11, Upsample).
    case asymmetric
}

/// ONNX Resize `nearest_mode`: rounding of the mapped coordinate for nearest-neighbour resizing.
public enum ResizeNearestRounding: String, Sendable, Hashable {
    case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil", floor, ceil
}

/// Elementwise binary kinds for broadcasting ops.
public enum BinaryKind: Sendable, Hashable {
    case add, sub, mul, div
}

struct SubKernel: BinaryKernel { @inline(__always) func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
struct HardSigmoidKernel: UnaryKernel {
    let alpha: Float, beta: Float
    @inline(__always) func callAsFunction(_ v: Float) -> Float { max(0, min(1, alpha * v + beta)) }
}
struct HardSwishKernel: UnaryKernel {
    @inline(__always) func callAsFunction(_ v: Float) -> Float { (v * min(max(v + 3, 0), 6)) / 6 }
}
struct LeakyReluKernel: UnaryKernel {
    let alpha: Float
    @inline(__always) func callAsFunction(_ v: Float) -> Float { v >= 0 ? v : alpha * v }
}

extension Ops {
    /// Numpy-broadcast shape of two equal-rank shapes, or nil when they do not broadcast.
    public static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        guard a.count == b.count else { return nil }
        var out = a
        for i in a.indices {
            guard a[i] == b[i] || a[i] == 1 || b[i] == 1 else { return nil }
            out[i] = a[i] == 1 ? b[i] : a[i]
        }
        return out
    }

    /// out = a ⊕ b with numpy broadcasting over 4-D NCHW tensors (`out.shape == broadcastShape(a, b)`).
    /// Fast paths: equal planes, and one side a `[.., .., 1, 1]` per-plane scalar (squeeze-excitation gates).
    public static func broadcast(_ kind: BinaryKind, _ a: Tensor, _ b: Tensor, into out: Tensor) {
        precondition(a.rank == 4 && b.rank == 4, "broadcast \(kind) expects 4-D tensors, got \(a.shape), \(b.shape)")
        guard let s = broadcastShape(a.shape, b.shape), s == out.shape else {
            preconditionFailure("broadcast \(kind) of \(a.shape) and \(b.shape) into \(out.shape)")
        }
        a.checkValid(); b.checkValid(); out.checkValid()
        switch kind {
        case .add: broadcast(a, b, s, into: out, AddKernel())
        case .sub: broadcast(a, b, s, into: out, SubKernel())
        case .mul: broadcast(a, b, s, into: out, MulKernel())
        case .div: broadcast(a, b, s, into: out, DivKernel())
        }
    }

    private static func broadcast<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _ s: [Int], into out: Tensor, _ f: K) {
        let (n, c, h, w) = (s[0], s[1], s[2], s[3])
        let plane = h * w
        let pa = a.ptr, pb = b.ptr, dst = out.ptr
        // Element strides of each operand (0 along broadcast axes).
        func strides(_ t: Tensor) -> (Int, Int, Int, Int) {
            let sh = t.shape
            return (sh[0] == 1 ? 0 : sh[1] * sh[2] * sh[3], sh[1] == 1 ? 0 : sh[2] * sh[3], sh[2] == 1 ? 0 : sh[3], sh[3] == 1 ? 0 : 1)
        }
        let sa = strides(a), sb = strides(b)
        let aFull = a.shape[2] == h && a.shape[3] == w, bFull = b.shape[2] == h && b.shape[3] == w
        let aOne = a.shape[2] == 1 && a.shape[3] == 1, bOne = b.shape[2] == 1 && b.shape[3] == 1
        Parallel.forEach(n * c, cost: out.count * 2) { planes in
            for pl in planes {
                let ni = pl / c, ci = pl % c
                let oa = pa + ni * sa.0 + ci * sa.1, ob = pb + ni * sb.0 + ci * sb.1, d = dst + pl * plane
                if aFull && bFull {
                    for i in 0..<plane { d[i] = f(oa[i], ob[i]) }
                } else if aFull && bOne {
                    let v = ob[0]
                    for i in 0..<plane { d[i] = f(oa[i], v) }
                } else if aOne && bFull {
                    let v = oa[0]
                    for i in 0..<plane { d[i] = f(v, ob[i]) }
                } else {
                    for y in 0..<h {
                        for x in 0..<w { d[y * w + x] = f(oa[y * sa.2 + x * sa.3], ob[y * sb.2 + x * sb.3]) }
                    }
                }
            }
        }
    }

    /// out[n, c] = x[n, c] * scale[c] + shift[c] (NCHW; `scale`/`shift` have `c` values, or 1 for all channels).
    /// BatchNormalization not preceded by a conv, and constant per-channel Mul/Add chains, run as this.
    public static func channelAffine(_ x: Tensor, scale: [Float], shift: [Float], into out: Tensor) {
        precondition(x.rank == 4 && out.shape == x.shape, "channel affine \(x.shape) into \(out.shape)")
        let c = x.c
        precondition((scale.count == c || scale.count == 1) && (shift.count == c || shift.count == 1),
                     "channel affine of \(scale.count)/\(shift.count) values for \(c) channels")
        x.checkValid(); out.checkValid()
        let plane = x.h * x.w, src = x.ptr, dst = out.ptr
        scale.withUnsafeBufferPointer { sc in
            shift.withUnsafeBufferPointer { sh in
                Parallel.forEach(x.n * c, cost: x.count * 2) { planes in
                    for pl in planes {
                        let ci = pl % c
                        let k = sc[sc.count == 1 ? 0 : ci], t = sh[sh.count == 1 ? 0 : ci]
                        let s = src + pl * plane, d = dst + pl * plane
                        for i in 0..<plane { d[i] = s[i] * k + t }
                    }
                }
            }
        }
    }

    /// out = max(0, min(1, alpha * x + beta)) (ONNX HardSigmoid).
    public static func hardSigmoid(_ x: Tensor, alpha: Float, beta: Float, into out: Tensor) {
        unary(x, into: out, HardSigmoidKernel(alpha: alpha, beta: beta))
    }

    /// out = x * clip(x + 3, 0, 6) / 6 (ONNX HardSwish; evaluated in the order the Add/Clip/Mul/Div pattern does).
    public static func hardSwish(_ x: Tensor, into out: Tensor) {
        unary(x, into: out, HardSwishKernel())
    }

    /// out = x >= 0 ? x : alpha * x.
    public static func leakyRelu(_ x: Tensor, alpha: Float, into out: Tensor) {
        unary(x, into: out, LeakyReluKernel(alpha: alpha))
    }

    /// Output length of ONNX Resize along one axis for a scale: floor(input * scale) (as onnxruntime, in Float).
    public static func resizedLength(_ input: Int, scale: Float) -> Int { Int((Float(input) * scale).rounded(.down)) }

    /// ONNX `Resize` on the two spatial axes of NCHW `x` into `out` (its h/w are the output size).
    /// - Parameters:
    ///   - linear: bilinear when true, nearest otherwise.
    ///   - scaleH, scaleW: the scales the model gave (used by half-pixel/asymmetric mapping); nil means out/in.
    public static func resize(_ x: Tensor, into out: Tensor, linear: Bool, coordinates: ResizeCoordinates,
                              nearest: ResizeNearestRounding, scaleH: Float?, scaleW: Float?) {
        precondition(x.rank == 4 && out.rank == 4 && out.n == x.n && out.c == x.c, "resize \(x.shape) into \(out.shape)")
        x.checkValid(); out.checkValid()
        let h = x.h, w = x.w, ho = out.h, wo = out.w
        let ty = resizeTaps(input: h, output: ho, scale: scaleH ?? Float(ho) / Float(h), linear: linear,
                            coordinates: coordinates, nearest: nearest)
        let tx = resizeTaps(input: w, output: wo, scale: scaleW ?? Float(wo) / Float(w), linear: linear,
                            coordinates: coordinates, nearest: nearest)
        let src = x.ptr, dst = out.ptr
        ty.withUnsafeBufferPointer { ty in
            tx.withUnsafeBufferPointer { tx in
                Parallel.forEach(x.n * x.c, cost: out.count * (linear ? 4 : 1)) { planes in
                    for pl in planes {
                        let s = src + pl * h * w, d = dst + pl * ho * wo
                        for oy in 0..<ho {
                            let a = ty[oy], r0 = s + a.i0 * w, r1 = s + a.i1 * w
                            if linear {
                                let wy1 = a.weight, wy0 = 1 - wy1
                                for ox in 0..<wo {
                                    let b = tx[ox], wx1 = b.weight, wx0 = 1 - wx1
                                    d[oy * wo + ox] = wy0 * (wx0 * r0[b.i0] + wx1 * r0[b.i1]) + wy1 * (wx0 * r1[b.i0] + wx1 * r1[b.i1])
                                }
                            } else {
                                for ox in 0..<wo { d[oy * wo + ox] = r0[tx[ox].i0] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Source taps along one axis for ONNX Resize (onnxruntime's CPU formulas, Float math).
    static func resizeTaps(input: Int, output: Int, scale: Float, linear: Bool, coordinates: ResizeCoordinates,
                           nearest: ResizeNearestRounding) -> [(i0: Int, i1: Int, weight: Float)] {
        (0..<output).map { o in
            let xo = Float(o)
            var src: Float
            switch coordinates {
            case .halfPixel: src = (xo + 0.5) / scale - 0.5
            case .pytorchHalfPixel: src = output > 1 ? (xo + 0.5) / scale - 0.5 : 0
            case .alignCorners: src = output == 1 ? 0 : xo * Float(input - 1) / Float(output - 1)
            case .asymmetric: src = xo / scale
            }
            if linear {
                src = max(0, min(src, Float(input - 1)))
                let i0 = min(Int(src), input - 1), i1 = min(i0 + 1, input - 1)
                return (i0, i1, i0 == i1 ? 0 : src - Float(i0))
            }
            var i: Int
            switch nearest {
            case .floor: i = Int(src.rounded(.down))
            case .ceil: i = Int(src.rounded(.up))
            case .roundPreferFloor: i = src == src.rounded(.down) + 0.5 ? Int(src.rounded(.down)) : Int(src.rounded())
            case .roundPreferCeil: i = Int(src.rounded(.toNearestOrAwayFromZero))
            }
            i = max(0, min(i, input - 1))
            return (i, i, 0)
        }
    }
}
