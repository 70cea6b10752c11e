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
    /// Lowers one node of a supported op: reads its attributes through `node.attrs`, reports each problem with
    /// `b.fail`, may add constants to `b.constants`, and returns the planned op (nil when the node became a
    /// constant, disappeared, or failed).
    typealias Lowering = @Sendable (_ b: inout Builder, _ node: LoweringNode) throws -> Op?

    /// The closed list of supported ops (default ONNX domain), each with its lowering
    /// (`ONNXPlan+Lowering.swift`). Adding an op is adding an entry here and its row in docs/onnx.md's
    /// "Supported ops" table (a test keeps the two equal).
    static let lowerings: [String: Lowering] = [
        "Conv":                { lowerConv(&$0, $1) },
        "ConvTranspose":       { lowerConv(&$0, $1) },
        "BatchNormalization":  { lowerBatchNormalization(&$0, $1) },
        "Relu":                { _, _ in .unary(.relu) },
        "LeakyRelu":           { lowerLeakyRelu(&$0, $1) },
        "Sigmoid":             { _, _ in .unary(.sigmoid) },
        "HardSigmoid":         { lowerHardSigmoid(&$0, $1) },
        "HardSwish":           { _, _ in .unary(.hardSwish) },
        "Clip":                { lowerClip(&$0, $1) },
        "Add":                 { try lowerBinary(&$0, $1) },
        "Sub":                 { try lowerBinary(&$0, $1) },
        "Mul":                 { try lowerBinary(&$0, $1) },
        "Div":                 { try lowerBinary(&$0, $1) },
        "GlobalAveragePool":   { _, _ in .globalAveragePool },
        "MaxPool":             { lowerMaxPool(&$0, $1) },
        "Resize":              { lowerResize(&$0, $1) },
        "Upsample":            { lowerResize(&$0, $1) },
        "Concat":              { lowerConcat(&$0, $1) },
        "Constant":            { lowerConstant(&$0, $1) },
        "Identity":            { lowerIdentity(&$0, $1) },
        "Dropout":             { lowerIdentity(&$0, $1) },
        "Reshape":             { lowerReshape(&$0, $1) },
        "Flatten":             { lowerFlatten(&$0, $1) },
        "Squeeze":             { lowerSqueeze(&$0, $1) },
        "Unsqueeze":           { lowerSqueeze(&$0, $1) },
        "Transpose":           { lowerTranspose(&$0, $1) },
        "Softmax":             { lowerSoftmax(&$0, $1) },
        "Slice":               { lowerSlice(&$0, $1) },
        "Split":               { lowerSplit(&$0, $1) },
        "MatMul":              { lowerMatMul(&$0, $1) },
    ]

    /// Ops the loader understands (default ONNX domain): the keys of `lowerings`.
    static let supportedOps: Set<String> = Set(lowerings.keys)

    /// Ops whose lowering checks their optional extra outputs itself; every other op must have exactly one output.
    static let multiOutputOps: Set<String> = ["Dropout", "BatchNormalization", "MaxPool", "Split"]

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
        /// Reshape/Transpose/Softmax/Slice/Split…: any rank, shapes resolved per input size.
        case anyRank(AnyRankOp)
        /// a · b; the second operand is this constant, or the node's second runtime input when nil.
        case matMul(ONNXTensor?)
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
        let input = try imageInput(g)
        var b = Builder(opset: model.opset, constants: g.initializers)
        var nodes: [Node] = []
        var unsupported: [ONNXError.Unsupported] = []
        for n in g.nodes {
            guard n.domain.isEmpty || n.domain == "ai.onnx" else {
                unsupported.append(.init(node: n.label, opType: n.opType, reason: "custom domain \(n.domain)"))
                continue
            }
            guard let lower = lowerings[n.opType] else {
                unsupported.append(.init(node: n.label, opType: n.opType, reason: "op not supported"))
                continue
            }
            let runtime = n.inputs.filter { !$0.isEmpty && b.constants[$0] == nil }
            let node = LoweringNode(node: n, attrs: AttributeReader(node: n))
            b.problems = []
            b.extraOutputs = []
            let op = try lower(&b, node)
            var problems = b.problems + node.attrs.unknown()
            if op != nil, n.outputs.count != 1 && !multiOutputOps.contains(n.opType) {
                problems.append("expects 1 output, has \(n.outputs.count)")
            }
            if !problems.isEmpty {
                for p in problems { unsupported.append(.init(node: n.label, opType: n.opType, reason: p)) }
                continue
            }
            guard let op else { continue }
            if runtime.isEmpty {
                unsupported.append(.init(node: n.label, opType: n.opType,
                                         reason: "all inputs are constant, folding this op is not supported"))
                continue
            }
            nodes.append(Node(op: op, inputs: runtime, output: node.output, label: n.label))
            for (k, (extra, output)) in b.extraOutputs.enumerated() {
                nodes.append(Node(op: extra, inputs: runtime, output: output, label: "\(n.label)#\(k + 1)"))
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

    /// The graph's one image input (float32, rank 4); anything else is a model-level error.
    static func imageInput(_ g: ONNXGraph) throws -> ONNXValueInfo {
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
        return input
    }
}
