/// One lowering function per supported op (the table is `ONNXPlan.lowerings`). Each checks its node's inputs
/// and attributes, reports every problem it finds (lowering goes on, so one error lists them all), and returns
/// the planned op.
extension ONNXPlan {
    /// What lowering carries from node to node: the model's opset, the constants known so far, and the problems
    /// found in the node being lowered.
    struct Builder {
        let opset: Int64
        var constants: [String: ONNXTensor]
        var problems: [String] = []
        /// Ops for a node's further outputs (Split), with their output names.
        var extraOutputs: [(Op, String)] = []

        mutating func fail(_ reason: String) { problems.append(reason) }

        /// Reports `name` unless every value is in `lower...ONNXLimits.maxGeometry` (kernel sizes, strides, pads,
        /// groups: bounded so shape arithmetic cannot overflow).
        mutating func checkRange(_ name: String, _ values: [Int], lower: Int) {
            if values.contains(where: { $0 < lower || $0 > ONNXLimits.maxGeometry }) {
                fail("\(name) \(values) outside \(lower)...\(ONNXLimits.maxGeometry)")
            }
        }

        /// Input `i` of `n` when it is given and a known constant.
        func constant(_ n: LoweringNode, _ i: Int) -> ONNXTensor? {
            n.has(i) ? constants[n.node.inputs[i]] : nil
        }
    }

    /// The node being lowered and the reader of its attributes (which remembers what the lowering looked at).
    struct LoweringNode {
        let node: ONNXNode
        let attrs: AttributeReader
        /// The first output's name.
        var output: String { node.outputs.first ?? "" }
        /// Whether input `i` is given (present and not empty).
        func has(_ i: Int) -> Bool { i < node.inputs.count && !node.inputs[i].isEmpty }
        /// Whether output `i` is requested (present and not empty).
        func hasOutput(_ i: Int) -> Bool { i < node.outputs.count && !node.outputs[i].isEmpty }
    }

    static func lowerConstant(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let attrs = n.attrs, out = n.output
        if let t = attrs.tensor("value") {
            var t = t; t.name = out
            b.constants[out] = t
        } else if let f = attrs.float("value_float") {
            b.constants[out] = ONNXTensor(name: out, dims: [], floats: [f])
        } else if let fs = attrs.floats("value_floats") {
            b.constants[out] = ONNXTensor(name: out, dims: [fs.count], floats: fs)
        } else if let i = attrs.int("value_int") {
            b.constants[out] = ONNXTensor(name: out, dims: [], ints: [i])
        } else if let i = attrs.ints("value_ints") {
            b.constants[out] = ONNXTensor(name: out, dims: [i.count], ints: i)
        } else {
            b.fail("Constant without a supported value attribute")
        }
        attrs.allow(["value", "value_float", "value_floats", "value_int", "value_ints"])
        return nil
    }

    /// Identity and Dropout: a constant stays a constant, anything else is copied through.
    static func lowerIdentity(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["ratio", "seed", "is_test"])
        var op: Op?
        if let c = b.constant(n, 0) { b.constants[n.output] = c } else { op = .identity }
        if n.node.opType == "Dropout", n.hasOutput(1) { b.fail("Dropout mask output is not supported") }
        // Dropout-12+: a training_mode input that is (or may be) true would drop values at random.
        if n.node.opType == "Dropout", n.has(2), b.constant(n, 2).map({ $0.count == 1 && $0.floats == [0] }) != true {
            b.fail("training_mode must be a constant false (inference)")
        }
        return op
    }

    /// Conv and ConvTranspose (2-D, constant weights and bias).
    static func lowerConv(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let attrs = n.attrs
        let transposed = n.node.opType == "ConvTranspose"
        attrs.allow(["kernel_shape", "strides", "dilations", "group", "pads", "auto_pad", "output_padding", "output_shape"])
        guard let w = b.constant(n, 1), w.dims.count == 4, w.floats.count == w.count else {
            b.fail("weight must be a constant 4-D float tensor (2-D convolution)")
            return nil
        }
        var bias: [Float]?
        if n.has(2) {
            if let c = b.constant(n, 2), c.floats.count == c.count { bias = c.floats } else { b.fail("bias must be a float constant") }
        }
        let k = attrs.ints("kernel_shape")
        if let k, k.map(Int.init) != Array(w.dims[2...]) {
            b.fail("kernel_shape \(k) does not match weight \(w.dims)")
        }
        let strides = attrs.pair("strides") ?? (1, 1)
        let dil = attrs.pair("dilations") ?? (1, 1)
        let group = Int(attrs.int("group") ?? 1)
        let pads = readPads(&b, attrs)
        let autoPad = attrs.string("auto_pad") ?? "NOTSET"
        if autoPad != "NOTSET" && autoPad != "VALID" { b.fail("auto_pad \(autoPad) is not supported (use explicit pads)") }
        b.checkRange("strides/dilations/group", [strides.0, strides.1, dil.0, dil.1, group], lower: 1)
        b.checkRange("kernel", Array(w.dims[2...]), lower: 1)
        b.checkRange("pads", [pads.0, pads.1, pads.2, pads.3], lower: 0)
        guard b.problems.isEmpty else { return nil }
        var spec = ConvSpec(weight: w, bias: bias, strides: strides, pads: pads, dilations: dil, group: group,
                            transposed: transposed)
        if transposed {
            checkTransposed(&b, attrs, &spec)
        } else if pads.0 != pads.2 || pads.1 != pads.3 {
            b.fail("asymmetric pads \(pads) are not supported")
        }
        if let c = bias, c.count != spec.outChannels { b.fail("bias has \(c.count) values for \(spec.outChannels) channels") }
        if w.dims[0] % group != 0 { b.fail("weight \(w.dims) is not divisible into \(group) groups") }
        if !transposed, attrs.ints("output_padding") != nil { b.fail("output_padding is only valid on ConvTranspose") }
        return .conv(spec)
    }

    /// ConvTranspose's own attributes and limits (`output_padding`, no `output_shape`, no dilation, symmetric pads).
    static func checkTransposed(_ b: inout Builder, _ attrs: AttributeReader, _ spec: inout ConvSpec) {
        let (strides, dil, pads) = (spec.strides, spec.dilations, spec.pads)
        if let op = attrs.pair("output_padding") { spec.outputPadding = op }
        b.checkRange("output_padding", [spec.outputPadding.0, spec.outputPadding.1], lower: 0)
        if spec.outputPadding.0 < 0 || spec.outputPadding.1 < 0 || spec.outputPadding.0 >= max(strides.0, dil.0)
            || spec.outputPadding.1 >= max(strides.1, dil.1) {
            b.fail("output_padding \(spec.outputPadding) must be smaller than the stride")
        }
        if attrs.ints("output_shape") != nil { b.fail("output_shape is not supported (use pads/output_padding)") }
        if dil != (1, 1) { b.fail("dilated ConvTranspose is not supported") }
        if pads.0 != pads.2 || pads.1 != pads.3 { b.fail("asymmetric pads \(pads) are not supported") }
    }

    /// The `pads` attribute (top, left, bottom, right), zeros when absent.
    static func readPads(_ b: inout Builder, _ attrs: AttributeReader) -> (Int, Int, Int, Int) {
        guard let p = attrs.ints("pads") else { return (0, 0, 0, 0) }
        guard p.count == 4 else { b.fail("pads \(p) is not 2-D"); return (0, 0, 0, 0) }
        return (Int(p[0]), Int(p[1]), Int(p[2]), Int(p[3]))
    }

    /// Inference-mode BatchNormalization as a per-channel affine (folded into a conv later when one precedes it).
    static func lowerBatchNormalization(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let attrs = n.attrs
        attrs.allow(["epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"])
        guard let s = b.constant(n, 1), let c = b.constant(n, 2), let m = b.constant(n, 3), let v = b.constant(n, 4) else {
            b.fail("scale, bias, mean and variance must be constants (inference mode)")
            return nil
        }
        if n.node.outputs.count > 1 && n.node.outputs[1...].contains(where: { !$0.isEmpty }) {
            b.fail("training-mode outputs (running mean/var) are not supported")
        }
        if let tm = attrs.int("training_mode"), tm != 0 { b.fail("training_mode=1 is not supported") }
        let eps = Double(attrs.float("epsilon") ?? 1e-5)
        let count = s.count
        guard c.count == count, m.count == count, v.count == count else { b.fail("parameter lengths differ"); return nil }
        let (sf, bf, mf, vf) = (s.floats, c.floats, m.floats, v.floats)
        guard [sf, bf, mf, vf].allSatisfy({ $0.count == count }) else { b.fail("parameters must be float"); return nil }
        var scale = [Float](repeating: 0, count: count), shift = scale
        for i in 0..<count {
            let k = Double(sf[i]) / (Double(vf[i]) + eps).squareRoot()
            scale[i] = Float(k)
            shift[i] = Float(Double(bf[i]) - Double(mf[i]) * k)
        }
        return .affine(scale: scale, shift: shift)
    }

    static func lowerLeakyRelu(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let op = Op.unary(.leakyRelu(alpha: n.attrs.float("alpha") ?? 0.01))
        n.attrs.allow(["alpha"])
        return op
    }

    static func lowerHardSigmoid(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let op = Op.unary(.hardSigmoid(alpha: n.attrs.float("alpha") ?? 0.2, beta: n.attrs.float("beta") ?? 0.5))
        n.attrs.allow(["alpha", "beta"])
        return op
    }

    /// Clip: bounds are attributes before opset 11, constant scalar inputs from 11 on.
    static func lowerClip(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        var lo = -Float.infinity, hi = Float.infinity
        if b.opset < 11 {
            lo = n.attrs.float("min") ?? lo; hi = n.attrs.float("max") ?? hi
            n.attrs.allow(["min", "max"])
        } else {
            if n.has(1) {
                if let c = b.constant(n, 1), c.count == 1, let v = c.floats.first { lo = v } else { b.fail("min must be a constant scalar") }
            }
            if n.has(2) {
                if let c = b.constant(n, 2), c.count == 1, let v = c.floats.first { hi = v } else { b.fail("max must be a constant scalar") }
            }
        }
        return .unary(.clip(lower: lo, upper: hi))
    }

    /// Add, Sub, Mul, Div: two constants fold now; one constant operand becomes `binaryConstant`.
    static func lowerBinary(_ b: inout Builder, _ n: LoweringNode) throws -> Op? {
        let kind: Binary = ["Add": .add, "Sub": .sub, "Mul": .mul, "Div": .div][n.node.opType]!
        let attrs = n.attrs
        attrs.allow(["broadcast", "axis", "consumed_inputs"])
        if attrs.int("broadcast") == 1, attrs.int("axis") != nil { b.fail("legacy broadcast with axis is not supported") }
        guard n.node.inputs.count == 2 else { b.fail("expects 2 inputs"); return nil }
        var op: Op?
        switch (b.constant(n, 0), b.constant(n, 1)) {
        case let (x?, y?): b.constants[n.output] = try foldBinary(kind, x, y, name: n.output, label: n.node.label)
        case let (x?, nil): op = .binaryConstant(kind, x, constantFirst: true)
        case let (nil, y?): op = .binaryConstant(kind, y, constantFirst: false)
        case (nil, nil): op = .binary(kind)
        }
        for c in [b.constant(n, 0), b.constant(n, 1)].compactMap({ $0 }) where c.floats.count != c.count {
            b.fail("constant operand \(c.name) has an unsupported element type \(ONNXDataType.name(c.dataType))")
        }
        return op
    }

    static func lowerMaxPool(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let attrs = n.attrs
        attrs.allow(["kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode", "storage_order"])
        guard let k = attrs.pair("kernel_shape") else { b.fail("kernel_shape missing or not 2-D"); return nil }
        let pads = readPads(&b, attrs)
        if let d = attrs.pair("dilations"), d != (1, 1) { b.fail("dilated MaxPool is not supported") }
        if let ap = attrs.string("auto_pad"), ap != "NOTSET", ap != "VALID" { b.fail("auto_pad \(ap) is not supported") }
        if attrs.int("storage_order") ?? 0 != 0 { b.fail("storage_order=1 is not supported") }
        if n.hasOutput(1) { b.fail("MaxPool indices output is not supported") }
        let strides = attrs.pair("strides") ?? (1, 1)
        b.checkRange("kernel_shape/strides", [k.0, k.1, strides.0, strides.1], lower: 1)
        b.checkRange("pads", [pads.0, pads.1, pads.2, pads.3], lower: 0)
        return .maxPool(kernel: k, strides: strides, pads: pads,
                        ceil: (attrs.int("ceil_mode") ?? 0) != 0)
    }

    /// Resize (opsets 10, 11+) and Upsample: mode and coordinate rules from the attributes, constant scales or sizes.
    static func lowerResize(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        let attrs = n.attrs
        let modeName = attrs.string("mode") ?? "nearest"
        let mode: ResizeSpec.Mode
        switch modeName {
        case "nearest": mode = .nearest
        case "linear", "bilinear": mode = .linear
        default: b.fail("mode \(modeName) is not supported (nearest, linear)"); mode = .nearest
        }
        let legacy = n.node.opType == "Upsample" || b.opset < 11
        let coordName = attrs.string("coordinate_transformation_mode") ?? (legacy ? "asymmetric" : "half_pixel")
        let coords = ResizeSpec.Coordinates(rawValue: coordName)
        if coords == nil { b.fail("coordinate_transformation_mode \(coordName) is not supported") }
        let nearestName = attrs.string("nearest_mode") ?? (legacy ? "floor" : "round_prefer_floor")
        let nearest = ResizeSpec.Nearest(rawValue: nearestName)
        if nearest == nil { b.fail("nearest_mode \(nearestName) is not supported") }
        if let ex = attrs.int("exclude_outside"), ex != 0 { b.fail("exclude_outside=1 is not supported") }
        if let a = attrs.ints("axes"), a != [2, 3] && a != [0, 1, 2, 3] { b.fail("axes \(a) are not supported") }
        if let kar = attrs.string("keep_aspect_ratio_policy"), kar != "stretch" { b.fail("keep_aspect_ratio_policy \(kar) is not supported") }
        if mode == .linear, let a = attrs.int("antialias"), a != 0 { b.fail("antialias=1 is not supported") }
        attrs.allow(["mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                     "extrapolation_value", "axes", "keep_aspect_ratio_policy", "antialias", "scales"])
        var spec = ResizeSpec(mode: mode, coordinates: coords ?? .asymmetric, nearest: nearest ?? .floor)
        readResizeTarget(&b, n, into: &spec)
        if spec.scales == nil && spec.sizes == nil { b.fail("neither scales nor sizes given") }
        return .resize(spec)
    }

    /// Resize's scales or sizes. Inputs: Upsample/Resize-10 (X, scales); Resize-11+ (X, roi, scales, sizes);
    /// Upsample-7: a scales attribute.
    static func readResizeTarget(_ b: inout Builder, _ n: LoweringNode, into spec: inout ResizeSpec) {
        let scalesIndex = (n.node.opType == "Upsample" || b.opset < 11) ? 1 : 2
        var scales: [Float]?
        if let s = n.attrs.floats("scales") { scales = s }
        if n.has(scalesIndex) {
            if let c = b.constant(n, scalesIndex) { scales = c.floats.isEmpty ? nil : c.floats } else { b.fail("scales must be a constant") }
        }
        if scalesIndex == 2, n.has(3) {
            if let c = b.constant(n, 3), c.count > 0 {
                guard let s = c.ints else { return b.fail("sizes must be integers (not NaN, infinite or beyond 64 bits)") }
                if s.count == 4 {
                    spec.sizes = (Int(s[2]), Int(s[3]))
                    b.checkRange("sizes", [Int(s[2]), Int(s[3])], lower: 1)
                } else { b.fail("sizes \(s) must have 4 values") }
            } else if b.constant(n, 3) == nil { b.fail("sizes must be a constant") }
        }
        if let s = scales {
            if s.count == 4, s[0] == 1, s[1] == 1 {
                spec.scales = (s[2], s[3])
                if !(s[2] > 0 && s[2] <= ONNXLimits.maxResizeScale && s[3] > 0 && s[3] <= ONNXLimits.maxResizeScale) {
                    b.fail("scales \(s) outside (0, \(ONNXLimits.maxResizeScale)]")
                }
            } else {
                b.fail("scales \(s) must be [1, 1, sh, sw] (only spatial resizing is supported)")
            }
        }
    }

    /// Concat of runtime tensors (constants are refused).
    static func lowerConcat(_ b: inout Builder, _ n: LoweringNode) -> Op? {
        n.attrs.allow(["axis"])
        guard let axis = n.attrs.int("axis") else { b.fail("axis missing"); return nil }
        guard (-4..<4).contains(axis) else { b.fail("axis \(axis) out of range for rank 4"); return nil }
        let constants = b.constants
        if n.node.inputs.allSatisfy({ constants[$0] != nil }) {
            b.fail("Concat of constants only is not supported")
        } else if n.node.inputs.contains(where: { constants[$0] != nil }) {
            b.fail("Concat of runtime tensors with constants is not supported")
        }
        return .concat(axis: Int(axis))
    }
}
