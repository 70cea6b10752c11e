import Tensor

/// Ops on tensors of any rank, the glue of detection heads (YOLO's box decoding reshapes, transposes, softmaxes
/// and splits `[1, C, N]` tensors). Their output shapes depend on the input's, so they are resolved per input
/// size by `outputShape`; all of them but Softmax move data with one strided gather.
extension ONNXPlan {
    enum AnyRankOp: Sendable {
        /// Target shape with ONNX's 0 (copy the input's dim unless `allowZero`) and -1 (inferred).
        case reshape([Int64], allowZero: Bool)
        /// nil = reverse the axes.
        case transpose([Int]?)
        /// Before opset 13 Softmax normalises over all axes from `axis` on (`coerce2D`).
        case softmax(axis: Int, coerce2D: Bool)
        /// ONNX Slice with constant starts/ends/axes/steps.
        case slice(starts: [Int64], ends: [Int64], axes: [Int64]?, steps: [Int64]?)
        /// Output `index` of a Split into `parts` along `axis` (explicit `sizes`, else equal parts, the last smaller).
        case splitPart(axis: Int, sizes: [Int]?, parts: Int, index: Int)
        /// Unsqueeze (insert size-1 axes at these output positions) and Squeeze (remove them; nil = all 1s).
        case unsqueeze([Int])
        case squeeze([Int]?)
        /// Flatten to 2-D at `axis`.
        case flatten(axis: Int)

        struct Failure: Error { let message: String }

        /// The product of `dims`; nil when a dim is negative or the product overflows.
        static func product(_ dims: [Int]) -> Int? {
            var p = 1
            for d in dims {
                guard d >= 0 else { return nil }
                let (r, overflow) = p.multipliedReportingOverflow(by: d)
                guard !overflow else { return nil }
                p = r
            }
            return p
        }

        /// `axis` (possibly negative) as an index into `rank` axes.
        static func normalize(_ axis: Int, rank: Int) throws -> Int {
            let a = axis < 0 ? axis + rank : axis
            guard a >= 0 && a < rank else { throw Failure(message: "axis \(axis) out of range for rank \(rank)") }
            return a
        }

        /// The output shape for input shape `x`.
        func outputShape(_ x: [Int]) throws -> [Int] {
            switch self {
            case .reshape(let target, let allowZero):
                var out = target.map(Int.init)
                for i in out.indices where out[i] == 0 && !allowZero {
                    guard i < x.count else { throw Failure(message: "shape \(target) copies dim \(i) of \(x)") }
                    out[i] = x[i]
                }
                // Target dims come from the file: any size, so products are checked for overflow.
                guard let count = Self.product(x) else { throw Failure(message: "cannot reshape \(x) to \(target)") }
                if let m = out.firstIndex(of: -1) {
                    var others = out
                    others.remove(at: m)
                    guard let rest = Self.product(others), rest > 0, count % rest == 0 else {
                        throw Failure(message: "cannot reshape \(x) to \(target)")
                    }
                    out[m] = count / rest
                }
                guard Self.product(out) == count else { throw Failure(message: "cannot reshape \(x) to \(target)") }
                return out
            case .transpose, .slice, .splitPart:
                return try gather(x).shape
            case .softmax(let axis, _):
                _ = try Self.normalize(axis, rank: x.count)
                return x
            case .unsqueeze(let axes):
                let rank = x.count + axes.count
                let at = Set(try axes.map { try Self.normalize($0, rank: rank) })
                guard at.count == axes.count else { throw Failure(message: "repeated axes \(axes)") }
                var rest = x.makeIterator()
                return (0..<rank).map { at.contains($0) ? 1 : rest.next()! }
            case .squeeze(let axes):
                guard let axes else { return x.filter { $0 != 1 } }
                let at = Set(try axes.map { try Self.normalize($0, rank: x.count) })
                guard at.allSatisfy({ x[$0] == 1 }) else { throw Failure(message: "squeezes axes \(axes) of \(x), not all 1") }
                return x.enumerated().filter { !at.contains($0.offset) }.map(\.element)
            case .flatten(let axis):
                let a = axis < 0 ? axis + x.count : axis
                guard a >= 0 && a <= x.count else { throw Failure(message: "axis \(axis) out of range for rank \(x.count)") }
                return [x[..<a].reduce(1, *), x[a...].reduce(1, *)]
            }
        }

        /// Transpose, Slice and Split part as a strided gather of `x`: output shape, first element, strides.
        func gather(_ x: [Int]) throws -> (shape: [Int], base: Int, strides: [Int]) {
            let inStrides = Ops.contiguousStrides(x)
            switch self {
            case .transpose(let perm):
                let p = perm ?? Array((0..<x.count).reversed())
                guard p.count == x.count, Set(p) == Set(0..<x.count) else {
                    throw Failure(message: "perm \(p) is not a permutation of \(x.count) axes")
                }
                return (p.map { x[$0] }, 0, p.map { inStrides[$0] })
            case .slice(let starts, let ends, let axes, let steps):
                var shape = x, base = 0, strides = inStrides
                let ax = try (axes ?? (0..<Int64(starts.count)).map { $0 }).map { try Self.normalize(Int($0), rank: x.count) }
                guard ax.count == starts.count, ends.count == starts.count, steps.map({ $0.count == starts.count }) ?? true,
                      Set(ax).count == ax.count else {
                    throw Failure(message: "starts/ends/axes/steps lengths or axes disagree")
                }
                for (k, a) in ax.enumerated() {
                    let step = Int(steps?[k] ?? 1), dim = x[a]
                    guard step != 0 else { throw Failure(message: "step 0") }
                    let (first, count) = Self.sliceRange(start: starts[k], end: ends[k], step: step, dim: dim)
                    shape[a] = count
                    base += first * inStrides[a]
                    strides[a] = inStrides[a] * step
                }
                return (shape, base, strides)
            case .splitPart(let axis, let sizes, let parts, let index):
                let a = try Self.normalize(axis, rank: x.count)
                let dim = x[a]
                var start: Int, count: Int
                if let sizes {
                    guard sizes.reduce(0, +) == dim else { throw Failure(message: "split sizes \(sizes) do not add up to \(dim)") }
                    start = sizes[..<index].reduce(0, +); count = sizes[index]
                } else {
                    let chunk = (dim + parts - 1) / parts
                    start = min(dim, index * chunk); count = max(0, min(chunk, dim - start))
                }
                var shape = x
                shape[a] = count
                return (shape, start * inStrides[a], inStrides)
            default:
                throw Failure(message: "not a gather")
            }
        }

        /// ONNX Slice's clamping: first index and element count along one axis.
        static func sliceRange(start: Int64, end: Int64, step: Int, dim: Int) -> (Int, Int) {
            let d = Int64(dim)
            var s = start < 0 ? start + d : start, e = end < 0 ? end + d : end
            if step > 0 {
                s = min(max(s, 0), d); e = min(max(e, 0), d)
                return (Int(s), e > s ? Int((e - s + Int64(step) - 1) / Int64(step)) : 0)
            }
            s = min(max(s, -1), d - 1); e = min(max(e, -1), d - 1)
            return (Int(max(s, 0)), s > e ? Int((s - e + Int64(-step) - 1) / Int64(-step)) : 0)
        }

        /// Runs the op on `x` into `out` (shaped by `outputShape`).
        func run(_ x: Tensor, into out: Tensor) throws {
            switch self {
            case .reshape, .unsqueeze, .squeeze, .flatten:
                out.copy(from: x)
            case .softmax(let axis, let coerce2D):
                let a = try Self.normalize(axis, rank: x.rank)
                if coerce2D {
                    let rows = x.shape[..<a].reduce(1, *)
                    Ops.softmax(x.reshaped([rows, x.count / max(rows, 1)]), dim: 1, into: out.reshaped([rows, x.count / max(rows, 1)]))
                } else {
                    Ops.softmax(x, dim: a, into: out)
                }
            case .transpose, .slice, .splitPart:
                let g = try gather(x.shape)
                Ops.gatherStrided(x, base: g.base, strides: g.strides, into: out)
            }
        }

        /// Output rank for an input of rank `r` (nil when it depends on more than the rank).
        func outputRank(_ r: Int) -> Int? {
            switch self {
            case .reshape(let t, _): return t.count
            case .unsqueeze(let a): return r + a.count
            case .squeeze(let a): return a.map { r - $0.count }
            case .flatten: return 2
            default: return r
            }
        }

        var description: String {
            switch self {
            case .reshape(let t, _): return "Reshape \(t)"
            case .transpose(let p): return "Transpose \(p.map { "\($0)" } ?? "reversed")"
            case .softmax(let a, let c): return "Softmax axis \(a)" + (c ? " (2-D)" : "")
            case .slice(let s, let e, let a, let st): return "Slice \(s)..<\(e) axes \(a.map { "\($0)" } ?? "all") steps \(st.map { "\($0)" } ?? "1")"
            case .splitPart(let a, let s, let p, let i): return "Split axis \(a) part \(i)/\(p)" + (s.map { " sizes \($0)" } ?? "")
            case .unsqueeze(let a): return "Unsqueeze \(a)"
            case .squeeze(let a): return "Squeeze \(a.map { "\($0)" } ?? "all 1s")"
            case .flatten(let a): return "Flatten axis \(a)"
            }
        }
    }
}
