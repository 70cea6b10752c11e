import Tensor

/// Turns an `ONNXGraph` into a short list of fused steps over NCHW Float32 tensors.
///
/// ```
/// ONNXGraph ──lower──▶ [IRNode] ──fold constants──▶ ──fuse (BN/Mul/Add/Relu into conv, hard-swish,
///                                                        per-channel affine chains)──▶ [PlanNode] → ONNXNetwork
/// ```
/// Lowering checks every node's op and attributes and collects *all* problems before throwing one
/// `ONNXError.unsupportedNodes`. Constants (initializers, `Constant` nodes, and any node whose inputs are all
/// constant) are evaluated once here, never per frame. Shapes are not fixed here: `ONNXSession` infers them
/// from the actual input size, so a model exported for 32x32 runs on any frame size.
enum ONNXPlan {
    /// Ops the loader understands (default ONNX domain).
    static let supportedOps: Set<String> = [
        "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish",
        "Clip", "Add", "Sub", "Mul", "Div", "GlobalAveragePool", "MaxPool", "Resize", "Upsample", "Concat",
        "Constant", "Identity", "Dropout",
    ]

    /// Elementwise binary kinds.
    enum Binary: Sendable, Equatable {
        case add, sub, mul, div
        func apply(_ a: Float, _ b: Float) -> Float {
            switch self {
            case .add: return a + b
            case .sub: return a - b
            case .mul: return a * b
            case .div: return a / b
            }
        }
    }

    /// Elementwise unary kinds.
    enum Unary: Sendable, Equatable {
        case relu, sigmoid
        case leakyRelu(alpha: Float)
        case hardSigmoid(alpha: Float, beta: Float)
        /// x * clip(x + 3, 0, 6) / 6 (ONNX HardSwish, or the Add/Clip/Mul/Div pattern exporters emit).
        case hardSwish
        case clip(lower: Float, upper: Float)
    }

    /// Convolution geometry and folded parameters (weights `[out, in/groups, kh, kw]` for Conv,
    /// `[in, out/groups, kh, kw]` for ConvTranspose, ONNX layouts).
    struct ConvSpec: Sendable {
        var weight: ONNXTensor
        var bias: [Float]?
        var strides: (Int, Int)
        /// ONNX order: top, left, bottom, right.
        var pads: (Int, Int, Int, Int)
        var dilations: (Int, Int)
        var group: Int
        /// ConvTranspose only.
        var outputPadding: (Int, Int) = (0, 0)
        var relu = false
        var transposed = false
        /// The node's second input is added to the output before the activation (a fused residual Add).
        var residual = false
        /// Output channels.
        var outChannels: Int { transposed ? weight.dims[1] * group : weight.dims[0] }
    }

    /// ONNX Resize semantics, constant over the run (scales or sizes were constants).
    struct ResizeSpec: Sendable, Equatable {
        enum Mode: Sendable, Equatable { case nearest, linear }
        typealias Coordinates = ResizeCoordinates
        typealias Nearest = ResizeNearestRounding
        var mode: Mode
        var coordinates: Coordinates
        var nearest: Nearest
        /// Scale per spatial axis (h, w), when given by scales.
        var scales: (Float, Float)?
        /// Output size (h, w), when given by sizes.
        var sizes: (Int, Int)?
        static func == (a: ResizeSpec, b: ResizeSpec) -> Bool {
            a.mode == b.mode && a.coordinates == b.coordinates && a.nearest == b.nearest
                && a.scales?.0 == b.scales?.0 && a.scales?.1 == b.scales?.1
                && a.sizes?.0 == b.sizes?.0 && a.sizes?.1 == b.sizes?.1
        }
    }

    /// One planned op.
    enum Op: Sendable {
        case conv(ConvSpec)
        case unary(Unary)
        /// Two runtime inputs, numpy broadcasting.
        case binary(Binary)
        /// One runtime input and a constant; `constantFirst` for `c - x`, `c / x`.
        case binaryConstant(Binary, ONNXTensor, constantFirst: Bool)
        /// y = x * scale[c] + shift[c]; arrays of 1 (all channels) or C values.
        case affine(scale: [Float], shift: [Float])
        case globalAveragePool
        case maxPool(kernel: (Int, Int), strides: (Int, Int), pads: (Int, Int, Int, Int), ceil: Bool)
        case resize(ResizeSpec)
        case concat(axis: Int)
        /// A value copied through (Identity/Dropout/reshape-free aliasing is resolved at plan time).
        case identity
    }

    /// A node of the plan: op, runtime input names, one output name.
    struct Node: Sendable {
        var op: Op
        var inputs: [String]
        var output: String
        var label: String
    }

    /// The lowered, folded and fused program (still by value name; `ONNXNetwork` numbers the values).
    struct Program: Sendable {
        var input: ONNXValueInfo
        var outputs: [String]
        var nodes: [Node]
    }

    // MARK: - Lowering

    static func build(_ model: ONNXModel) throws -> Program {
        let g = model.graph
        var unsupported: [ONNXError.Unsupported] = []
        for (domain, _) in model.opsets where !(domain.isEmpty || domain == "ai.onnx") {
            // Non-default opset imports are fine as long as no node uses them (checked per node below).
            _ = domain
        }
        let inputs = g.realInputs
        guard inputs.count == 1, let input = inputs.first else {
            throw ONNXError(.unsupportedModel("the model has \(inputs.count) inputs (\(inputs.map(\.name).joined(separator: ", "))); "
                                              + "only single-input image models are supported"))
        }
        if let t = input.dims, t.count != 4 {
            throw ONNXError(.unsupportedModel("input \(input.name) has rank \(t.count); an NCHW image input of rank 4 is required"))
        }
        if input.elementType != 0 && input.elementType != ONNXDataType.float {
            throw ONNXError(.unsupportedModel("input \(input.name) is \(ONNXDataType.name(input.elementType)); float32 is required"))
        }

        var constants: [String: ONNXTensor] = g.initializers
        var nodes: [Node] = []
        let opset = model.opset

        for n in g.nodes {
            var problems: [String] = []
            func fail(_ reason: String) { problems.append(reason) }
            guard n.domain.isEmpty || n.domain == "ai.onnx" else {
                unsupported.append(.init(node: n.label, opType: n.opType, reason: "custom domain \(n.domain)"))
                continue
            }
            guard supportedOps.contains(n.opType) else {
                unsupported.append(.init(node: n.label, opType: n.opType, reason: "op not supported"))
                continue
            }
            let attrs = AttributeReader(node: n)
            let runtime = n.inputs.filter { !$0.isEmpty && constants[$0] == nil }
            func const(_ i: Int) -> ONNXTensor? {
                i < n.inputs.count && !n.inputs[i].isEmpty ? constants[n.inputs[i]] : nil
            }
            let out = n.outputs.first ?? ""
            var op: Op?

            switch n.opType {
            case "Constant":
                if let t = attrs.tensor("value") {
                    var t = t; t.name = out
                    constants[out] = t
                } else if let f = attrs.float("value_float") {
                    constants[out] = ONNXTensor(name: out, dims: [], floats: [f])
                } else if let fs = attrs.floats("value_floats") {
                    constants[out] = ONNXTensor(name: out, dims: [fs.count], floats: fs)
                } else if let i = attrs.int("value_int") {
                    constants[out] = ONNXTensor(name: out, dims: [], ints: [i])
                } else if let i = attrs.ints("value_ints") {
                    constants[out] = ONNXTensor(name: out, dims: [i.count], ints: i)
                } else {
                    fail("Constant without a supported value attribute")
                }
                attrs.allow(["value", "value_float", "value_floats", "value_int", "value_ints"])
            case "Identity", "Dropout":
                attrs.allow(["ratio", "seed", "is_test"])
                if let c = const(0) { constants[out] = c } else { op = .identity }
                if n.opType == "Dropout", n.outputs.count > 1, !n.outputs[1].isEmpty {
                    fail("Dropout mask output is not supported")
                }
            case "Conv", "ConvTranspose":
                let transposed = n.opType == "ConvTranspose"
                attrs.allow(["kernel_shape", "strides", "dilations", "group", "pads", "auto_pad", "output_padding", "output_shape"])
                guard let w = const(1), w.dims.count == 4 else {
                    fail("weight must be a constant 4-D tensor (2-D convolution)")
                    break
                }
                var bias: [Float]?
                if n.inputs.count > 2, !n.inputs[2].isEmpty {
                    if let b = const(2) { bias = b.floats } else { fail("bias must be a constant") }
                }
                let k = attrs.ints("kernel_shape")
                if let k, k.map(Int.init) != Array(w.dims[2...]) {
                    fail("kernel_shape \(k) does not match weight \(w.dims)")
                }
                let strides = attrs.pair("strides") ?? (1, 1)
                let dil = attrs.pair("dilations") ?? (1, 1)
                let group = Int(attrs.int("group") ?? 1)
                var pads = (0, 0, 0, 0)
                if let p = attrs.ints("pads") {
                    if p.count == 4 { pads = (Int(p[0]), Int(p[1]), Int(p[2]), Int(p[3])) } else { fail("pads \(p) is not 2-D") }
                }
                let autoPad = attrs.string("auto_pad") ?? "NOTSET"
                if autoPad != "NOTSET" && autoPad != "VALID" { fail("auto_pad \(autoPad) is not supported (use explicit pads)") }
                if strides.0 < 1 || strides.1 < 1 || dil.0 < 1 || dil.1 < 1 || group < 1 { fail("bad strides/dilations/group") }
                if min(pads.0, pads.1, pads.2, pads.3) < 0 { fail("negative pads \(pads)") }
                var spec = ConvSpec(weight: w, bias: bias, strides: strides, pads: pads, dilations: dil, group: group,
                                    transposed: transposed)
                if transposed {
                    if let op = attrs.pair("output_padding") { spec.outputPadding = op }
                    if spec.outputPadding.0 < 0 || spec.outputPadding.1 < 0 || spec.outputPadding.0 >= max(strides.0, dil.0)
                        || spec.outputPadding.1 >= max(strides.1, dil.1) {
                        fail("output_padding \(spec.outputPadding) must be smaller than the stride")
                    }
                    if attrs.ints("output_shape") != nil { fail("output_shape is not supported (use pads/output_padding)") }
                    if dil != (1, 1) { fail("dilated ConvTranspose is not supported") }
                    if pads.0 != pads.2 || pads.1 != pads.3 { fail("asymmetric pads \(pads) are not supported") }
                } else if pads.0 != pads.2 || pads.1 != pads.3 {
                    fail("asymmetric pads \(pads) are not supported")
                }
                if let b = bias, b.count != spec.outChannels { fail("bias has \(b.count) values for \(spec.outChannels) channels") }
                if w.dims[0] % group != 0 { fail("weight \(w.dims) is not divisible into \(group) groups") }
                if !transposed, attrs.ints("output_padding") != nil { fail("output_padding is only valid on ConvTranspose") }
                op = .conv(spec)
            case "BatchNormalization":
                attrs.allow(["epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"])
                guard let s = const(1), let b = const(2), let m = const(3), let v = const(4) else {
                    fail("scale, bias, mean and variance must be constants (inference mode)")
                    break
                }
                if n.outputs.count > 1 && n.outputs[1...].contains(where: { !$0.isEmpty }) {
                    fail("training-mode outputs (running mean/var) are not supported")
                }
                if let tm = attrs.int("training_mode"), tm != 0 { fail("training_mode=1 is not supported") }
                let eps = Double(attrs.float("epsilon") ?? 1e-5)
                let c = s.count
                guard b.count == c, m.count == c, v.count == c else { fail("parameter lengths differ"); break }
                let (sf, bf, mf, vf) = (s.floats, b.floats, m.floats, v.floats)
                var scale = [Float](repeating: 0, count: c), shift = scale
                for i in 0..<c {
                    let k = Double(sf[i]) / (Double(vf[i]) + eps).squareRoot()
                    scale[i] = Float(k)
                    shift[i] = Float(Double(bf[i]) - Double(mf[i]) * k)
                }
                op = .affine(scale: scale, shift: shift)
            case "Relu": op = .unary(.relu)
            case "Sigmoid": op = .unary(.sigmoid)
            case "LeakyRelu":
                op = .unary(.leakyRelu(alpha: attrs.float("alpha") ?? 0.01)); attrs.allow(["alpha"])
            case "HardSigmoid":
                op = .unary(.hardSigmoid(alpha: attrs.float("alpha") ?? 0.2, beta: attrs.float("beta") ?? 0.5))
                attrs.allow(["alpha", "beta"])
            case "HardSwish": op = .unary(.hardSwish)
            case "Clip":
                var lo = -Float.infinity, hi = Float.infinity
                if opset < 11 {
                    lo = attrs.float("min") ?? lo; hi = attrs.float("max") ?? hi
                    attrs.allow(["min", "max"])
                } else {
                    if n.inputs.count > 1, !n.inputs[1].isEmpty {
                        if let c = const(1), c.count == 1 { lo = c.floats[0] } else { fail("min must be a constant scalar") }
                    }
                    if n.inputs.count > 2, !n.inputs[2].isEmpty {
                        if let c = const(2), c.count == 1 { hi = c.floats[0] } else { fail("max must be a constant scalar") }
                    }
                }
                op = .unary(.clip(lower: lo, upper: hi))
            case "Add", "Sub", "Mul", "Div":
                let kind: Binary = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div][n.opType]!
                attrs.allow(["broadcast", "axis", "consumed_inputs"])
                if attrs.int("broadcast") == 1, attrs.int("axis") != nil { fail("legacy broadcast with axis is not supported") }
                guard n.inputs.count == 2 else { fail("expects 2 inputs"); break }
                switch (const(0), const(1)) {
                case let (a?, b?): constants[out] = try foldBinary(kind, a, b, name: out, label: n.label)
                case let (a?, nil): op = .binaryConstant(kind, a, constantFirst: true)
                case let (nil, b?): op = .binaryConstant(kind, b, constantFirst: false)
                case (nil, nil): op = .binary(kind)
                }
                for c in [const(0), const(1)].compactMap({ $0 }) where c.floats.count != c.count {
                    fail("constant operand \(c.name) has an unsupported element type \(ONNXDataType.name(c.dataType))")
                }
            case "GlobalAveragePool": op = .globalAveragePool
            case "MaxPool":
                attrs.allow(["kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode", "storage_order"])
                guard let k = attrs.pair("kernel_shape") else { fail("kernel_shape missing or not 2-D"); break }
                var pads = (0, 0, 0, 0)
                if let p = attrs.ints("pads") {
                    if p.count == 4 { pads = (Int(p[0]), Int(p[1]), Int(p[2]), Int(p[3])) } else { fail("pads \(p) is not 2-D") }
                }
                if let d = attrs.pair("dilations"), d != (1, 1) { fail("dilated MaxPool is not supported") }
                if let ap = attrs.string("auto_pad"), ap != "NOTSET", ap != "VALID" { fail("auto_pad \(ap) is not supported") }
                if attrs.int("storage_order") ?? 0 != 0 { fail("storage_order=1 is not supported") }
                if n.outputs.count > 1, !n.outputs[1].isEmpty { fail("MaxPool indices output is not supported") }
                op = .maxPool(kernel: k, strides: attrs.pair("strides") ?? (1, 1), pads: pads,
                              ceil: (attrs.int("ceil_mode") ?? 0) != 0)
            case "Resize", "Upsample":
                let modeName = attrs.string("mode") ?? "nearest"
                let mode: ResizeSpec.Mode
                switch modeName {
                case "nearest": mode = .nearest
                case "linear", "bilinear": mode = .linear
                default: fail("mode \(modeName) is not supported (nearest, linear)"); mode = .nearest
                }
                let legacy = n.opType == "Upsample" || opset < 11
                let coordName = attrs.string("coordinate_transformation_mode") ?? (legacy ? "asymmetric" : "half_pixel")
                let coords = ResizeSpec.Coordinates(rawValue: coordName)
                if coords == nil { fail("coordinate_transformation_mode \(coordName) is not supported") }
                let nearestName = attrs.string("nearest_mode") ?? (legacy ? "floor" : "round_prefer_floor")
                let nearest = ResizeSpec.Nearest(rawValue: nearestName)
                if nearest == nil { fail("nearest_mode \(nearestName) is not supported") }
                if let ex = attrs.int("exclude_outside"), ex != 0 { fail("exclude_outside=1 is not supported") }
                if let a = attrs.ints("axes"), a != [2, 3] && a != [0, 1, 2, 3] { fail("axes \(a) are not supported") }
                if let kar = attrs.string("keep_aspect_ratio_policy"), kar != "stretch" { fail("keep_aspect_ratio_policy \(kar) is not supported") }
                if mode == .linear, let a = attrs.int("antialias"), a != 0 { fail("antialias=1 is not supported") }
                attrs.allow(["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                             "extrapolation_value", "axes", "keep_aspect_ratio_policy", "antialias", "scales"])
                var spec = ResizeSpec(mode: mode, coordinates: coords ?? .asymmetric, nearest: nearest ?? .floor)
                // Inputs: Upsample/Resize-10 (X, scales); Resize-11+ (X, roi, scales, sizes). Upsample-7: scales attribute.
                let scalesIndex = (n.opType == "Upsample" || opset < 11) ? 1 : 2
                var scales: [Float]?
                if let s = attrs.floats("scales") { scales = s }
                if n.inputs.count > scalesIndex, !n.inputs[scalesIndex].isEmpty {
                    if let c = const(scalesIndex) { scales = c.floats.isEmpty ? nil : c.floats } else { fail("scales must be a constant") }
                }
                if scalesIndex == 2, n.inputs.count > 3, !n.inputs[3].isEmpty {
                    if let c = const(3), c.count > 0 {
                        let s = c.ints
                        if s.count == 4 { spec.sizes = (Int(s[2]), Int(s[3])) } else { fail("sizes \(s) must have 4 values") }
                    } else if const(3) == nil { fail("sizes must be a constant") }
                }
                if let s = scales {
                    if s.count == 4, s[0] == 1, s[1] == 1 { spec.scales = (s[2], s[3]) } else {
                        fail("scales \(s) must be [1, 1, sh, sw] (only spatial resizing is supported)")
                    }
                }
                if spec.scales == nil && spec.sizes == nil { fail("neither scales nor sizes given") }
                op = .resize(spec)
            case "Concat":
                attrs.allow(["axis"])
                guard let axis = attrs.int("axis") else { fail("axis missing"); break }
                if n.inputs.allSatisfy({ constants[$0] != nil }) {
                    fail("Concat of constants only is not supported")
                } else if n.inputs.contains(where: { constants[$0] != nil }) {
                    fail("Concat of runtime tensors with constants is not supported")
                }
                op = .concat(axis: Int(axis))
            default:
                fail("op not supported")
            }
            problems += attrs.unknown()
            if op != nil, n.outputs.count != 1 && !(n.opType == "Dropout" || n.opType == "BatchNormalization" || n.opType == "MaxPool") {
                problems.append("expects 1 output, has \(n.outputs.count)")
            }
            if !problems.isEmpty {
                for p in problems { unsupported.append(.init(node: n.label, opType: n.opType, reason: p)) }
                continue
            }
            if let op {
                if runtime.isEmpty {
                    unsupported.append(.init(node: n.label, opType: n.opType,
                                             reason: "all inputs are constant, folding this op is not supported"))
                    continue
                }
                nodes.append(Node(op: op, inputs: runtime, output: out, label: n.label))
            }
        }
        if !unsupported.isEmpty { throw ONNXError(.unsupportedNodes(unsupported)) }
        let produced = Set(nodes.map(\.output)).union([input.name])
        for o in g.outputs where !produced.contains(o.name) {
            throw ONNXError(.unsupportedModel("graph output \(o.name) is constant or not produced by any node"))
        }
        var program = Program(input: input, outputs: g.outputs.map(\.name), nodes: nodes)
        fuse(&program)
        return program
    }

    /// Folds `a op b` for two constants (numpy broadcasting).
    static func foldBinary(_ kind: Binary, _ a: ONNXTensor, _ b: ONNXTensor, name: String, label: String) throws -> ONNXTensor {
        guard let shape = broadcastShape(a.dims, b.dims) else {
            throw ONNXError(.shape("\(label): cannot broadcast \(a.dims) with \(b.dims)"))
        }
        let av = a.floats, bv = b.floats
        let n = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            out[i] = kind.apply(av[broadcastIndex(i, shape, a.dims)], bv[broadcastIndex(i, shape, b.dims)])
        }
        if case .int = a.values, case .int = b.values {
            return ONNXTensor(name: name, dims: shape, ints: out.map { Int64($0) })
        }
        return ONNXTensor(name: name, dims: shape, floats: out)
    }

    /// Numpy broadcast of two shapes, or nil.
    static func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let da = i < r - a.count ? 1 : a[i - (r - a.count)]
            let db = i < r - b.count ? 1 : b[i - (r - b.count)]
            guard da == db || da == 1 || db == 1 else { return nil }
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Flat index into a (right-aligned, broadcast) operand of shape `dims` for flat output index `i` of `shape`.
    static func broadcastIndex(_ i: Int, _ shape: [Int], _ dims: [Int]) -> Int {
        var rem = i, idx = 0, step = 1
        for k in (0..<shape.count).reversed() {
            let coord = rem % shape[k]; rem /= shape[k]
            let dk = k - (shape.count - dims.count)
            if dk >= 0 {
                if dims[dk] != 1 { idx += coord * step }
                step *= dims[dk]
            }
        }
        return idx
    }
}

/// Typed access to a node's attributes, remembering which names the op consumed so the rest can be reported.
final class AttributeReader {
    let node: ONNXNode
    private var used: Set<String> = []

    init(node: ONNXNode) { self.node = node }

    private func get(_ name: String) -> ONNXAttribute? { used.insert(name); return node.attributes[name] }

    func allow(_ names: [String]) { used.formUnion(names) }

    func int(_ name: String) -> Int64? { if case .int(let v)? = get(name) { return v }; return nil }
    func float(_ name: String) -> Float? {
        switch get(name) {
        case .float(let v)?: return v
        case .int(let v)?: return Float(v)
        default: return nil
        }
    }
    func string(_ name: String) -> String? { if case .string(let v)? = get(name) { return v }; return nil }
    func ints(_ name: String) -> [Int64]? { if case .ints(let v)? = get(name) { return v }; return nil }
    func floats(_ name: String) -> [Float]? { if case .floats(let v)? = get(name) { return v }; return nil }
    func tensor(_ name: String) -> ONNXTensor? { if case .tensor(let v)? = get(name) { return v }; return nil }
    /// A 2-element ints attribute as (h, w).
    func pair(_ name: String) -> (Int, Int)? {
        guard let v = ints(name), v.count == 2 else { return nil }
        return (Int(v[0]), Int(v[1]))
    }
    /// Attributes the op did not look at: reported, since silently ignoring one could change results.
    func unknown() -> [String] {
        node.attributes.keys.filter { !used.contains($0) }.sorted().map { "attribute \($0) is not supported" }
    }
}
