/// Graph rewrites that remove whole passes over feature maps without changing results beyond float rounding:
/// - Identity/Dropout nodes disappear (their users read the source value).
/// - `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` becomes one hard-swish (PaddlePaddle and PyTorch exports emit it).
/// - Per-channel or scalar constant Mul/Add/Sub/Div become an `affine` (x * s[c] + t[c]); BatchNormalization is one.
/// - An affine right after a Conv/ConvTranspose is folded into its weights and bias; a Relu into its epilogue.
/// - Consecutive affines merge.
/// - `Add(conv(x), r)` becomes the conv with `r` as residual (act(conv + bias + r) in the GEMM epilogue), when `r`
///   is ready before the conv runs; a Relu after the Add then fuses too.
/// A rewrite applies only when the intermediate value has exactly one user and is not a graph output.
extension ONNXPlan {
    static func fuse(_ p: inout Program) {
        removeIdentities(&p)
        fuseHardSwish(&p)
        constantsToAffine(&p)
        var changed = true
        while changed {
            changed = fuseChains(&p)
            changed = fuseResiduals(&p) || changed
        }
    }

    /// One pass of single-input chain fusion (conv+affine, conv+relu, affine+affine); true when something merged.
    static func fuseChains(_ p: inout Program) -> Bool {
        var changed = false
        do {
            let users = userCounts(p)
            var producer: [String: Int] = [:]
            for (i, n) in p.nodes.enumerated() { producer[n.output] = i }
            var removed = Set<Int>()
            for (i, n) in p.nodes.enumerated() where !removed.contains(i) {
                guard n.inputs.count == 1, let j = producer[n.inputs[0]], !removed.contains(j),
                      users[n.inputs[0], default: 0] == 1 else { continue }
                var prev = p.nodes[j]
                var merged = false
                switch (prev.op, n.op) {
                case (.conv(var spec), .affine(let s, let t)) where !spec.relu && !spec.residual && [1, spec.outChannels].contains(s.count)
                    && [1, spec.outChannels].contains(t.count):
                    foldAffine(into: &spec, scale: s, shift: t)
                    prev.op = .conv(spec); merged = true
                case (.conv(var spec), .unary(.relu)) where !spec.relu:
                    spec.relu = true
                    prev.op = .conv(spec); merged = true
                case (.affine(let s1, let t1), .affine(let s2, let t2))
                    where Set([s1.count, t1.count, s2.count, t2.count]).subtracting([1]).count <= 1:
                    // (x*s1 + t1)*s2 + t2
                    let c = max(s1.count, s2.count, t1.count, t2.count)
                    func at(_ a: [Float], _ k: Int) -> Double { Double(a.count == 1 ? a[0] : a[k]) }
                    var s = [Float](repeating: 0, count: c), t = s
                    for k in 0..<c {
                        s[k] = Float(at(s1, k) * at(s2, k))
                        t[k] = Float(at(t1, k) * at(s2, k) + at(t2, k))
                    }
                    prev.op = .affine(scale: s, shift: t); merged = true
                default: break
                }
                if merged {
                    prev.output = n.output
                    prev.label += "+" + n.label
                    p.nodes[j] = prev
                    removed.insert(i)
                    changed = true
                }
            }
            p.nodes = p.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        }
        return changed
    }

    /// Folds `Add(a, b)` into the Conv producing `a` (or `b`) as its residual input. The conv must not already end
    /// in a Relu (the Add comes before any activation), its output must have no other user, and the other operand
    /// must be computed before the conv (or be the model input) so the conv can read it. True when something merged.
    static func fuseResiduals(_ p: inout Program) -> Bool {
        let users = userCounts(p)
        var producer: [String: Int] = [:]
        for (i, n) in p.nodes.enumerated() { producer[n.output] = i }
        var removed = Set<Int>()
        for (i, add) in p.nodes.enumerated() {
            guard case .binary(.add) = add.op, add.inputs.count == 2 else { continue }
            for k in 0..<2 {
                let convOut = add.inputs[k], other = add.inputs[1 - k]
                guard convOut != other, users[convOut] == 1, let j = producer[convOut], !removed.contains(j),
                      case .conv(var spec) = p.nodes[j].op, !spec.transposed, !spec.relu, !spec.residual else { continue }
                if let o = producer[other], o >= j { continue }
                if producer[other] == nil && other != p.input.name { continue }
                spec.residual = true
                p.nodes[j].op = .conv(spec)
                p.nodes[j].inputs.append(other)
                p.nodes[j].output = add.output
                p.nodes[j].label += "+" + add.label
                removed.insert(i)
                break
            }
        }
        p.nodes = p.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        return !removed.isEmpty
    }

    /// How many node inputs read each value; graph outputs count as users too (they must stay materialised).
    static func userCounts(_ p: Program) -> [String: Int] {
        var users: [String: Int] = [:]
        for n in p.nodes { for i in n.inputs { users[i, default: 0] += 1 } }
        for o in p.outputs { users[o, default: 0] += 1 }
        return users
    }

    static func removeIdentities(_ p: inout Program) {
        let outputs = Set(p.outputs)
        var rename: [String: String] = [:]
        func resolve(_ s: String) -> String { var s = s; while let r = rename[s] { s = r }; return s }
        var kept: [Node] = []
        for var n in p.nodes {
            n.inputs = n.inputs.map(resolve)
            if case .identity = n.op, !outputs.contains(n.output) {
                rename[n.output] = n.inputs[0]
                continue
            }
            kept.append(n)
        }
        p.nodes = kept
    }

    static func isScalar(_ t: ONNXTensor, _ v: Float) -> Bool { t.count == 1 && t.floats.first == v }

    static func fuseHardSwish(_ p: inout Program) {
        let users = userCounts(p)
        var producer: [String: Int] = [:]
        for (i, n) in p.nodes.enumerated() { producer[n.output] = i }
        var removed = Set<Int>()
        for (i, div) in p.nodes.enumerated() {
            guard case .binaryConstant(.div, let six, constantFirst: false) = div.op, isScalar(six, 6),
                  let mi = producer[div.inputs[0]], users[div.inputs[0]] == 1,
                  case .binary(.mul) = p.nodes[mi].op else { continue }
            let mul = p.nodes[mi]
            for (xIndex, cIndex) in [(0, 1), (1, 0)] {
                let x = mul.inputs[xIndex], c = mul.inputs[cIndex]
                guard let ci = producer[c], users[c] == 1,
                      case .unary(.clip(lower: 0, upper: 6)) = p.nodes[ci].op,
                      let ai = producer[p.nodes[ci].inputs[0]], users[p.nodes[ci].inputs[0]] == 1,
                      case .binaryConstant(.add, let three, _) = p.nodes[ai].op, isScalar(three, 3),
                      p.nodes[ai].inputs[0] == x else { continue }
                p.nodes[i] = Node(op: .unary(.hardSwish), inputs: [x], output: div.output,
                                  label: "HardSwish(\(p.nodes[ai].label)..\(div.label))")
                removed.formUnion([mi, ci, ai])
                break
            }
        }
        p.nodes = p.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }

    /// Per-channel values of a constant that broadcasts against NCHW only along C (dims right-aligned to
    /// `[1, C|1, 1, 1]`), or nil.
    static func perChannel(_ t: ONNXTensor) -> [Float]? {
        guard t.dims.count <= 4, t.floats.count == t.count, t.count >= 1 else { return nil }
        let d = [Int](repeating: 1, count: 4 - t.dims.count) + t.dims
        guard d[0] == 1, d[2] == 1, d[3] == 1 else { return t.count == 1 ? t.floats : nil }
        return t.floats
    }

    static func constantsToAffine(_ p: inout Program) {
        let rank = ranks(p)
        for (i, n) in p.nodes.enumerated() {
            guard case .binaryConstant(let kind, let c, let first) = n.op, rank[n.inputs[0]] == 4, c.dims.count <= 4,
                  let v = perChannel(c) else { continue }
            let ones = [Float](repeating: 1, count: v.count), zeros = [Float](repeating: 0, count: v.count)
            switch (kind, first) {
            case (.add, _): p.nodes[i].op = .affine(scale: ones, shift: v)
            case (.mul, _): p.nodes[i].op = .affine(scale: v, shift: zeros)
            case (.sub, false): p.nodes[i].op = .affine(scale: ones, shift: v.map { -$0 })
            case (.sub, true): p.nodes[i].op = .affine(scale: ones.map { -$0 }, shift: v)
            case (.div, false):
                // Folding x / c into x * (1/c) changes rounding slightly; kept exact unless it merges into a conv.
                continue
            case (.div, true): continue
            }
        }
    }

    /// Scales a conv's output channels and adds a shift: w'[o] = w[o]*s[o], b'[o] = b[o]*s[o] + t[o] (in Double).
    static func foldAffine(into spec: inout ConvSpec, scale: [Float], shift: [Float]) {
        let oc = spec.outChannels
        func at(_ a: [Float], _ k: Int) -> Double { Double(a.count == 1 ? a[0] : a[k]) }
        var w = spec.weight.floats
        let d = spec.weight.dims
        if spec.transposed {
            // [in, out/group, kh, kw]: output channel o = g * (out/group) + j lives at [g*(in/group)+i, j].
            let inC = d[0], outPer = d[1], k = d[2] * d[3], inPer = inC / spec.group
            for ic in 0..<inC {
                let g = ic / inPer
                for j in 0..<outPer {
                    let s = at(scale, g * outPer + j)
                    let base = (ic * outPer + j) * k
                    for q in 0..<k { w[base + q] = Float(Double(w[base + q]) * s) }
                }
            }
        } else {
            let per = w.count / oc
            for o in 0..<oc {
                let s = at(scale, o)
                for q in 0..<per { w[o * per + q] = Float(Double(w[o * per + q]) * s) }
            }
        }
        spec.weight.values = .float(w)
        spec.bias = (0..<oc).map { o in Float(Double(spec.bias?[o] ?? 0) * at(scale, o) + at(shift, o)) }
    }
}
