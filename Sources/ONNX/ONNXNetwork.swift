import Foundation
import Tensor

/// An imported ONNX model, compiled into fused Tensor ops. Immutable and shareable by every stream; run it
/// through a per-stream `ONNXSession`, which owns the buffers.
///
/// Input: one float32 NCHW tensor (`[n, c, h, w]`). The spatial size declared in the file is only a default:
/// any size the graph's strides and concatenations accept runs (shapes are inferred through the graph per
/// input size, and a size the graph cannot take is a clear `ONNXError.shape`). Outputs: NCHW float32 tensors,
/// in the graph's output order.
public final class ONNXNetwork: @unchecked Sendable {
    /// The graph's input name.
    public let inputName: String
    /// Declared input dimensions (symbolic or fixed; `nil` when undeclared).
    public let declaredInput: [ONNXValueInfo.Dim]?
    /// Output names, in graph order (the order `ONNXSession.run` returns).
    public let outputNames: [String]
    /// Source file, for messages.
    public let file: String?
    /// Opset of the default domain.
    public let opset: Int64
    /// The file's `metadata_props` (exporters such as Ultralytics record class names and input size there).
    public let metadata: [String: String]
    /// The fused steps, one line each (`label: op`), for `--verbose`-style listings and tests.
    public let stepDescriptions: [String]

    let steps: [Step]
    /// The conv steps as the `ConvLayer`s a session's runner sees, in step order.
    public var convLayers: [ConvLayer] { steps.compactMap(\.layer) }
    let valueCount: Int
    let outputSlots: [Int]
    /// For each step, the value slots whose last reader it is (released right after it runs).
    let releaseAfter: [[Int]]
    /// Inverted-residual blocks (`InvertedResidual`) by their first step: a session without a conv runner runs
    /// such a run of steps as one banded op.
    let blocks: [Int: FusedBlock]

    /// Loads, validates and compiles an ONNX file. Errors name the file.
    public convenience init(contentsOf url: URL) throws {
        let model = try ONNXModel(contentsOf: url)
        do { try self.init(model: model, file: url.path) } catch let e as ONNXError {
            throw ONNXError(file: url.path, e.kind)
        }
    }

    /// Compiles a decoded model.
    public init(model: ONNXModel, file: String? = nil) throws {
        let program = try ONNXPlan.build(model)
        self.file = file
        self.opset = model.opset
        self.metadata = model.metadata
        self.inputName = program.input.name
        self.declaredInput = program.input.dims
        self.outputNames = program.outputs
        var slot: [String: Int] = [program.input.name: 0]
        var steps: [Step] = []
        for n in program.nodes {
            let inputs = try n.inputs.map { name -> Int in
                guard let s = slot[name] else {
                    throw ONNXError(.unsupportedModel("node \(n.label) reads \(name), which no earlier node produces "
                                                      + "(the graph is not topologically sorted)"))
                }
                return s
            }
            guard slot[n.output] == nil else {
                throw ONNXError(.unsupportedModel("node \(n.label) writes \(n.output), which the graph input or an earlier "
                                                  + "node already produces (an ONNX value is assigned once)"))
            }
            let out = slot.count
            slot[n.output] = out
            let kernel = try Step.Kernel(n.op, label: n.label)
            var layer: ConvLayer?
            if case .conv(let c) = kernel { layer = ConvLayer(key: n.label, index: steps.count, conv: c) }
            steps.append(Step(kernel: kernel, inputs: inputs, output: out, label: n.label, layer: layer))
        }
        self.steps = steps
        self.valueCount = slot.count
        self.outputSlots = try program.outputs.map { name in
            guard let s = slot[name] else { throw ONNXError(.unsupportedModel("output \(name) is not produced")) }
            return s
        }
        var lastUse = [Int](repeating: -1, count: slot.count)
        for (i, s) in steps.enumerated() { for v in s.inputs { lastUse[v] = i } }
        var release = [[Int]](repeating: [], count: steps.count)
        let keep = Set(outputSlots + [0])
        for (v, i) in lastUse.enumerated() where i >= 0 && !keep.contains(v) { release[i].append(v) }
        self.releaseAfter = release
        self.blocks = FusedBlock.find(in: steps, lastUse: lastUse, outputs: Set(outputSlots))
        self.stepDescriptions = steps.map { s in
            if case .conv = s.kernel, s.inputs.count > 1 { return "\(s.label): \(s.kernel) +residual" }
            return "\(s.label): \(s.kernel)"
        }
    }

    /// The input shape the file declares with `height`/`width` (and batch 1 when symbolic) substituted.
    public func inputShape(height: Int, width: Int, batch: Int = 1) -> [Int] {
        var c = 3
        if let d = declaredInput, d.count == 4, case .value(let v) = d[1] { c = Int(v) }
        return [batch, c, height, width]
    }
}

/// One executable step: a kernel over value slots.
struct Step: Sendable {
    enum Kernel: Sendable, CustomStringConvertible {
        case conv(Conv2d)
        case convTranspose(ConvTranspose2d)
        case unary(ONNXPlan.Unary)
        case broadcast(BinaryKind)
        case broadcastConstant(BinaryKind, Tensor, constantFirst: Bool)
        case affine(scale: [Float], shift: [Float])
        case globalAveragePool
        case maxPool(kernel: Size2, stride: Size2, padding: Size2)
        case resize(ONNXPlan.ResizeSpec)
        case concat(axis: Int)
        case anyRank(ONNXPlan.AnyRankOp)
        case matMul(Tensor?)
        case identity

        init(_ op: ONNXPlan.Op, label: String) throws {
            switch op {
            case .conv(let s):
                let w = Tensor(shape: s.weight.dims, data: s.weight.floats)
                if s.transposed {
                    self = .convTranspose(ConvTranspose2d(
                        weight: w, bias: s.bias, stride: Size2(s.strides.0, s.strides.1),
                        padding: Size2(s.pads.0, s.pads.1), outputPadding: Size2(s.outputPadding.0, s.outputPadding.1),
                        groups: s.group, activation: s.relu ? .relu : .none))
                } else {
                    guard w.shape[1] * s.group > 0 else { throw ONNXError(.shape("\(label): empty weight \(w.shape)")) }
                    self = .conv(Conv2d(weight: w, bias: s.bias, stride: Size2(s.strides.0, s.strides.1),
                                        padding: Size2(s.pads.0, s.pads.1), dilation: Size2(s.dilations.0, s.dilations.1),
                                        groups: s.group, activation: s.relu ? .relu : .none))
                }
            case .unary(let u): self = .unary(u)
            case .binary(let b): self = .broadcast(b.kind)
            case .binaryConstant(let b, let c, let first):
                guard c.dims.count <= 4 else { throw ONNXError(.shape("\(label): constant of rank \(c.dims.count) > 4")) }
                self = .broadcastConstant(b.kind, Tensor(shape: c.dims, data: c.floats), constantFirst: first)
            case .affine(let s, let t): self = .affine(scale: s, shift: t)
            case .globalAveragePool: self = .globalAveragePool
            case .maxPool(let k, let s, let p, let ceil):
                guard !ceil else { throw ONNXError(.unsupportedNodes([.init(node: label, opType: "MaxPool", reason: "ceil_mode=1 is not supported")])) }
                guard p.0 == p.2, p.1 == p.3, p.0 * 2 <= k.0, p.1 * 2 <= k.1 else {
                    throw ONNXError(.unsupportedNodes([.init(node: label, opType: "MaxPool", reason: "pads \(p) must be symmetric and at most half the kernel")]))
                }
                self = .maxPool(kernel: Size2(k.0, k.1), stride: Size2(s.0, s.1), padding: Size2(p.0, p.1))
            case .resize(let r): self = .resize(r)
            case .concat(let a): self = .concat(axis: a)
            case .anyRank(let a): self = .anyRank(a)
            case .matMul(let c): self = .matMul(c.map { Tensor(shape: $0.dims, data: $0.floats) })
            case .identity: self = .identity
            }
        }

        var description: String {
            switch self {
            case .conv(let c):
                return "Conv \(c.inChannels)→\(c.outChannels) k\(c.kernel) s\(c.stride) p\(c.padding) g\(c.groups)"
                    + (c.bias != nil ? " +bias" : "") + (c.activation == .relu ? " +relu" : "")
            case .convTranspose(let c):
                return "ConvTranspose \(c.inChannels)→\(c.outChannels) k\(c.kernel) s\(c.stride) p\(c.padding)"
                    + (c.activation == .relu ? " +relu" : "")
            case .unary(let u): return "\(u)"
            case .broadcast(let b): return "\(b)"
            case .broadcastConstant(let b, let t, let first): return "\(b) constant\(t.shape)" + (first ? " (constant first)" : "")
            case .affine(let s, _): return "affine[\(s.count)]"
            case .globalAveragePool: return "GlobalAveragePool"
            case .maxPool(let k, let s, let p): return "MaxPool k\(k) s\(s) p\(p)"
            case .resize(let r): return "Resize \(r.mode) \(r.coordinates.rawValue) \(r.nearest.rawValue)"
            case .concat(let a): return "Concat axis \(a)"
            case .anyRank(let a): return a.description
            case .matMul(let c): return "MatMul" + (c.map { " constant\($0.shape)" } ?? "")
            case .identity: return "Identity"
            }
        }
    }

    var kernel: Kernel
    var inputs: [Int]
    var output: Int
    var label: String
    /// Conv steps: the conv as a `ConvLayer` (key = node label, index = step index), the unit a session's
    /// `ConvolutionRunner` (temporal cache) takes over.
    var layer: ConvLayer?
}

/// Steps `first..<end` that compute `[expand 1x1 →] depthwise → project 1x1 (+ shortcut)`, whose intermediate
/// values nothing else reads.
struct FusedBlock: Sendable {
    let expand: Conv2d?
    let depthwise: Conv2d
    let project: Conv2d
    let first: Int, end: Int

    static func find(in steps: [Step], lastUse: [Int], outputs: Set<Int>) -> [Int: FusedBlock] {
        func conv(_ i: Int) -> Conv2d? {
            guard i >= 0, i < steps.count, case .conv(let c) = steps[i].kernel else { return nil }
            return c
        }
        // A value only the next step reads, and not a graph output.
        func readOnlyByNext(_ i: Int) -> Bool { lastUse[steps[i].output] == i + 1 && !outputs.contains(steps[i].output) }
        var blocks: [Int: FusedBlock] = [:]
        var i = 0, lastEnd = 0
        while i < steps.count {
            // The depthwise output feeds the project conv only as its input (never as its shortcut).
            if let dw = conv(i), let project = conv(i + 1), steps[i].inputs.count == 1,
               steps[i + 1].inputs[0] == steps[i].output, !steps[i + 1].inputs.dropFirst().contains(steps[i].output),
               readOnlyByNext(i), InvertedResidual.applies(expand: nil, depthwise: dw, project: project) {
                var expand: Conv2d?
                var first = i
                if i - 1 >= lastEnd, let e = conv(i - 1), steps[i - 1].inputs.count == 1,
                   steps[i].inputs[0] == steps[i - 1].output, readOnlyByNext(i - 1),
                   InvertedResidual.applies(expand: e, depthwise: dw, project: project) {
                    expand = e; first = i - 1
                }
                blocks[first] = FusedBlock(expand: expand, depthwise: dw, project: project, first: first, end: i + 2)
                lastEnd = i + 2
                i += 2
            } else {
                i += 1
            }
        }
        return blocks
    }
}

extension ONNXPlan.Binary {
    var kind: BinaryKind {
        switch self {
        case .add: return .add
        case .sub: return .sub
        case .mul: return .mul
        case .div: return .div
        }
    }
}
