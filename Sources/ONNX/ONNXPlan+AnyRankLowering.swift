import Tensor

/// Lowerings of the any-rank ops (Reshape, Transpose, Softmax, Slice, Split, Squeeze, Unsqueeze, Flatten).
/// Their shape-like operands (target shape, starts/ends, split sizes, axes) must be constants; an op whose data
/// input is itself a constant is evaluated here once (exporters leave such chains around anchor tables).
extension ONNXPlan {
    static func lowerReshape(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["shape", "allowzero"])
        var target: [Int64]?
        if b.opset < 5 { target = n.attrs.ints("shape") } else if let c = b.constant(n, 1) {
            guard let t = c.ints else { b.fail("the target shape must be integers (not NaN, infinite or beyond 64 bits)"); return nil }
            target = t
        }
        guard let target else { b.fail("the target shape must be a constant"); return nil }
        if target.filter({ $0 == -1 }).count > 1 || target.contains(where: { $0 < -1 }) { b.fail("bad target shape \(target)") }
        return anyRank(&b, n, .reshape(target, allowZero: (n.attrs.int("allowzero") ?? 0) != 0))
    }

    static func lowerTranspose(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["perm"])
        return anyRank(&b, n, .transpose(n.attrs.ints("perm")?.map(Int.init)))
    }

    static func lowerSoftmax(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["axis"])
        let legacy = b.opset < 13
        return anyRank(&b, n, .softmax(axis: Int(n.attrs.int("axis") ?? (legacy ? 1 : -1)), coerce2D: legacy))
    }

    static func lowerFlatten(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["axis"])
        return anyRank(&b, n, .flatten(axis: Int(n.attrs.int("axis") ?? 1)))
    }

    /// Squeeze and Unsqueeze: axes as an attribute before opset 13, a constant input from 13 on.
    static func lowerSqueeze(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["axes"])
        var axes: [Int]?
        if b.opset < 13 { axes = n.attrs.ints("axes")?.map(Int.init) } else if n.has(1) {
            guard let c = b.constant(n, 1) else { b.fail("axes must be a constant"); return nil }
            guard let a = c.ints else { b.fail("axes must be integers (not NaN, infinite or beyond 64 bits)"); return nil }
            axes = a.map(Int.init)
        }
        if n.node.opType == "Unsqueeze" {
            guard let axes else { b.fail("axes missing"); return nil }
            return anyRank(&b, n, .unsqueeze(axes))
        }
        return anyRank(&b, n, .squeeze(axes))
    }

    /// Slice: starts/ends/axes as attributes before opset 10, constant inputs (plus steps) from 10 on.
    static func lowerSlice(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["starts", "ends", "axes"])
        var starts: [Int64]?, ends: [Int64]?, axes: [Int64]?, steps: [Int64]?
        if b.opset < 10 {
            (starts, ends, axes) = (n.attrs.ints("starts"), n.attrs.ints("ends"), n.attrs.ints("axes"))
        } else {
            var missing = false, notIntegers = false
            func input(_ i: Int) -> [Int64]? {
                guard n.has(i) else { return nil }
                guard let c = b.constant(n, i) else { missing = true; return nil }
                guard let v = c.ints else { notIntegers = true; return nil }
                return v
            }
            (starts, ends, axes, steps) = (input(1), input(2), input(3), input(4))
            if missing { b.fail("starts, ends, axes and steps must be constants") ; return nil }
            if notIntegers { b.fail("starts, ends, axes and steps must be integers (not NaN, infinite or beyond 64 bits)"); return nil }
        }
        guard let starts, let ends else { b.fail("starts and ends are required"); return nil }
        return anyRank(&b, n, .slice(starts: starts, ends: ends, axes: axes, steps: steps))
    }

    /// Split: one planned op per output; sizes from the `split` attribute (< 13), a constant input (>= 13), or
    /// equal parts (`num_outputs` from opset 18).
    static func lowerSplit(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["axis", "split", "num_outputs"])
        let axis = Int(n.attrs.int("axis") ?? 0)
        var sizes: [Int]?
        if b.opset < 13 { sizes = n.attrs.ints("split")?.map(Int.init) } else if n.has(1) {
            guard let c = b.constant(n, 1) else { b.fail("split sizes must be a constant"); return nil }
            guard let s = c.ints else { b.fail("split sizes must be integers (not NaN, infinite or beyond 64 bits)"); return nil }
            sizes = s.map(Int.init)
        }
        let parts = n.node.outputs.count
        if let s = sizes, s.count != parts { b.fail("\(s.count) split sizes for \(parts) outputs"); return nil }
        if let k = n.attrs.int("num_outputs"), Int(k) != parts { b.fail("num_outputs \(k) but \(parts) outputs"); return nil }
        var first: Op?
        for index in 0..<parts where n.hasOutput(index) {
            let op = anyRank(&b, n, .splitPart(axis: axis, sizes: sizes, parts: parts, index: index), output: n.node.outputs[index])
            if index == 0 { first = op } else if let op { b.extraOutputs.append((op, n.node.outputs[index])) }
        }
        return first
    }

    /// The planned op, or nil after folding it when its data input is a constant.
    static func anyRank(_ b: inout Builder, _ n: LoweringNode, _ op: AnyRankOp, output: String? = nil) -> Op? {
        guard let c = b.constant(n, 0) else { return .anyRank(op) }
        let out = output ?? n.output
        do {
            b.constants[out] = try foldAnyRank(op, c, name: out)
        } catch let f as AnyRankOp.Failure {
            b.fail("constant input \(c.name) \(c.dims): \(f.message)")
        } catch {
            b.fail("\(error)")
        }
        return nil
    }

    /// Evaluates `op` on a constant, keeping integer constants integer (shape arithmetic stays exact).
    static func foldAnyRank(_ op: AnyRankOp, _ c: ONNXTensor, name: String) throws -> ONNXTensor {
        let shape = try op.outputShape(c.dims)
        switch op {
        case .reshape, .unsqueeze, .squeeze, .flatten:
            var t = c; t.name = name; t.dims = shape
            return t
        case .softmax:
            let x = Tensor(shape: c.dims, data: c.floats), out = Tensor(shape: shape)
            try op.run(x, into: out)
            return ONNXTensor(name: name, dims: shape, floats: out.array)
        case .transpose, .slice, .splitPart:
            let g = try op.gather(c.dims)
            let strides = Ops.contiguousStrides(g.shape)
            let indices = (0..<g.shape.reduce(1, *)).map { flat -> Int in
                var at = g.base, rem = flat
                for a in g.shape.indices { at += (rem / strides[a]) * g.strides[a]; rem %= strides[a] }
                return at
            }
            if case .int(let v) = c.values { return ONNXTensor(name: name, dims: g.shape, ints: indices.map { v[$0] }) }
            let v = c.floats
            return ONNXTensor(name: name, dims: g.shape, floats: indices.map { v[$0] })
        }
    }

    /// Rank of every value the plan can tell from ranks alone (the input is rank 4); used to keep NCHW-only
    /// rewrites (per-channel affine) off tensors of other ranks.
    static func ranks(_ p: Program) -> [String: Int] {
        var rank: [String: Int] = [p.input.name: 4]
        for n in p.nodes {
            let ins = n.inputs.map { rank[$0] }
            guard let r = ins.first ?? nil else { continue }
            switch n.op {
            case .binary: if let r2 = ins.count > 1 ? ins[1] : nil { rank[n.output] = max(r, r2) }
            case .binaryConstant(_, let c, _), .matMul(let c?): rank[n.output] = max(r, c.dims.count)
            case .matMul(nil): if let r2 = ins.count > 1 ? ins[1] : nil { rank[n.output] = max(r, r2) }
            case .anyRank(let a): rank[n.output] = a.outputRank(r)
            default: rank[n.output] = r
            }
        }
        return rank
    }
}
