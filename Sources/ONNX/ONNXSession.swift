import Dispatch
import Tensor

/// Runs an `ONNXNetwork` for one stream. Owns a `Workspace`: shapes are inferred and buffers planned on the
/// first input of a given size, and later frames of that size reuse every buffer (no allocation).
/// Not thread-safe: one session per stream (or per thread), many sessions may share one network.
public final class ONNXSession {
    /// The compiled model.
    public let network: ONNXNetwork
    /// The buffer arena; `workspace.allocationCount` stays constant across frames of one size.
    public let workspace: Workspace

    /// Optional per-stream runner for the graph's convolutions (a temporal cache in `delta` mode; `run` starts
    /// each frame with `beginFrame(inputShape:)`). Each conv step is a `ConvLayer` keyed by its node label;
    /// nil = dense. Outputs a runner returns may be owned by it (valid until the next `run`, like the workspace's).
    public var runner: ConvolutionRunner?

    /// When true (the default) and no `runner` is set, inverted-residual blocks run banded (`InvertedResidual`;
    /// the same result, less memory traffic). False runs every conv on its own (for comparisons).
    public var fuseBlocks = true

    /// When true, `run` records each step's wall time in `stepMilliseconds` (for `onnx-run --profile`).
    public var profile = false
    /// Milliseconds per step of the last profiled run, in `network.stepDescriptions` order.
    public private(set) var stepMilliseconds: [Double] = []

    private var plannedInput: [Int] = []
    private var shapes: [[Int]] = []
    private var values: [Tensor?]

    public init(_ network: ONNXNetwork, workspace: Workspace = Workspace(), runner: ConvolutionRunner? = nil) {
        self.network = network
        self.runner = runner
        self.workspace = workspace
        self.values = [Tensor?](repeating: nil, count: network.valueCount)
    }

    /// Output shapes for an input shape, in `network.outputNames` order. Throws `ONNXError.shape` naming the
    /// first node that cannot take the size (e.g. a concat of levels whose sizes disagree).
    public func outputShapes(forInput shape: [Int]) throws -> [[Int]] {
        try plan(shape)
        return network.outputSlots.map { shapes[$0] }
    }

    /// Runs the model on `input` (NCHW float32). The returned tensors live in this session's workspace: they
    /// are valid until the next `run`; copy what must outlive it.
    public func run(_ input: Tensor) throws -> [Tensor] {
        try plan(input.shape)
        workspace.beginFrame()
        values[0] = input
        let ws = workspace
        runner?.beginFrame(inputShape: input.shape)
        if profile { stepMilliseconds = [Double](repeating: 0, count: network.steps.count) }
        var fusedUntil = 0
        for (i, step) in network.steps.enumerated() {
            let t0 = profile ? DispatchTime.now().uptimeNanoseconds : 0
            if i >= fusedUntil {
                let x = values[step.inputs[0]]!
                if fuseBlocks, runner == nil, let block = network.blocks[i] {
                    let last = network.steps[block.end - 1]
                    let y = ws.tensor(shapes[last.output])
                    InvertedResidual.forward(expand: block.expand, depthwise: block.depthwise, project: block.project,
                                             x, residual: last.inputs.count > 1 ? values[last.inputs[1]]! : nil,
                                             into: y, workspace: ws)
                    values[last.output] = y
                    fusedUntil = block.end  // the block's other steps have nothing left to compute
                } else {
                    values[step.output] = try runStep(step, x, ws)
                }
            }
            if profile { stepMilliseconds[i] = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6 }
            for v in network.releaseAfter[i] {
                if let t = values[v] { ws.release(t) }
                values[v] = nil
            }
        }
        let outs = network.outputSlots.map { values[$0]! }
        for i in values.indices { values[i] = nil }
        return outs
    }

    /// One step's kernel on its inputs (`x` = the first), output from `ws`.
    private func runStep(_ step: Step, _ x: Tensor, _ ws: Workspace) throws -> Tensor {
        let out: Tensor
        switch step.kernel {
        case .conv(let c):
            let residual = step.inputs.count > 1 ? values[step.inputs[1]]! : nil
            if let runner, let layer = step.layer {
                out = runner.run(layer, input: x, residual: residual, workspace: ws)
            } else {
                out = c(x, residual: residual, in: ws)
            }
        case .convTranspose(let c): out = c(x, in: ws)
        case .unary(let u):
            out = ws.tensor(x.shape)
            switch u {
            case .relu: Ops.relu(x, into: out)
            case .sigmoid: Ops.sigmoid(x, into: out)
            case .leakyRelu(let a): Ops.leakyRelu(x, alpha: a, into: out)
            case .hardSigmoid(let a, let b): Ops.hardSigmoid(x, alpha: a, beta: b, into: out)
            case .hardSwish: Ops.hardSwish(x, into: out)
            case .clip(let lo, let hi): Ops.clip(x, lower: lo, upper: hi, into: out)
            }
        case .broadcast(let k):
            let y = values[step.inputs[1]]!
            out = ws.tensor(shapes[step.output])
            Ops.broadcast(k, Self.rank4(x), Self.rank4(y), into: Self.rank4(out))
        case .broadcastConstant(let k, let c, let first):
            out = ws.tensor(shapes[step.output])
            let (a, b) = first ? (c, x) : (x, c)
            Ops.broadcast(k, Self.rank4(a), Self.rank4(b), into: Self.rank4(out))
        case .affine(let s, let t):
            out = ws.tensor(x.shape)
            Ops.channelAffine(x, scale: s, shift: t, into: out)
        case .globalAveragePool:
            out = ws.tensor([x.n, x.c, 1, 1])
            Ops.globalAveragePool(x, into: out)
        case .maxPool(let k, let s, let p):
            out = ws.tensor(shapes[step.output])
            Ops.maxPool2d(x, kernel: k, stride: s, padding: p, into: out)
        case .resize(let r):
            out = ws.tensor(shapes[step.output])
            Ops.resize(x, into: out, linear: r.mode == .linear, coordinates: r.coordinates, nearest: r.nearest,
                       scaleH: r.scales?.0, scaleW: r.scales?.1)
        case .concat(let axis):
            out = ws.tensor(shapes[step.output])
            Ops.concat(step.inputs.map { values[$0]! }, dim: axis < 0 ? axis + x.rank : axis, into: out)
        case .anyRank(let op):
            out = ws.tensor(shapes[step.output])
            try op.run(x, into: out)
        case .matMul(let c):
            out = ws.tensor(shapes[step.output])
            ONNXPlan.runMatMul(x, c ?? values[step.inputs[1]]!, into: out)
        case .identity:
            out = ws.tensor(x.shape)
            out.copy(from: x)
        }
        return out
    }

    /// `t` viewed as rank 4 with leading 1s (broadcasting is right-aligned; shapes were checked to have rank <= 4).
    private static func rank4(_ t: Tensor) -> Tensor {
        t.rank == 4 ? t : t.reshaped([Int](repeating: 1, count: 4 - t.rank) + t.shape)
    }

    /// Infers every value's shape for `input` (cached until the input shape changes).
    private func plan(_ input: [Int]) throws {
        if input == plannedInput { return }
        let net = network
        guard input.count == 4, input.allSatisfy({ $0 > 0 }) else {
            throw ONNXError(file: net.file, .usage("input must be a non-empty NCHW tensor, got \(input)"))
        }
        if let d = net.declaredInput, d.count == 4, case .value(let c) = d[1], Int(c) != input[1] {
            throw ONNXError(file: net.file, .shape("input \(net.inputName) has \(c) channels, got \(input[1]) (\(input))"))
        }
        var shapes = [[Int]](repeating: [], count: net.valueCount)
        shapes[0] = input
        for step in net.steps {
            let ins = step.inputs.map { shapes[$0] }
            do {
                let out = try Self.outputShape(step.kernel, ins)
                // An empty dimension would let the others grow without bound (their product stays 0).
                guard out.allSatisfy({ $0 > 0 }) else { throw ShapeFailure.message("empty output \(out)") }
                _ = try ONNXLimits.elementCount(out.map(Int64.init), of: "output of node \(step.label)")
                shapes[step.output] = out
            } catch let e as ONNXError {
                throw ONNXError(file: net.file, e.kind)
            } catch let ShapeFailure.message(m) {
                throw ONNXError(file: net.file, .shape("node \(step.label) cannot take input \(ins.map { "\($0)" }.joined(separator: ", ")) "
                                                        + "for model input \(input): \(m)"))
            }
        }
        self.shapes = shapes
        self.plannedInput = input
    }

    private enum ShapeFailure: Error { case message(String) }

    private static func outputShape(_ k: Step.Kernel, _ ins: [[Int]]) throws -> [Int] {
        func fail(_ m: String) -> ShapeFailure { .message(m) }
        let x = ins[0]
        switch k {
        case .conv, .convTranspose, .affine, .globalAveragePool, .maxPool, .resize:
            guard x.count == 4 else { throw fail("needs a 4-D NCHW tensor, got rank \(x.count)") }
        default: break
        }
        switch k {
        case .conv(let c):
            guard x[1] == c.inChannels else { throw fail("expects \(c.inChannels) channels") }
            let eh = x[2] + 2 * c.padding.h - c.dilation.h * (c.kernel.h - 1)
            let ew = x[3] + 2 * c.padding.w - c.dilation.w * (c.kernel.w - 1)
            guard eh > 0, ew > 0 else { throw fail("input smaller than the \(c.kernel) kernel") }
            let out = c.outputShape(x)
            if ins.count > 1, ins[1] != out {
                throw fail("the Add fused into this conv needs equal shapes, got \(out) + \(ins[1]) (broadcasting is not supported there)")
            }
            return out
        case .convTranspose(let c):
            guard x[1] == c.inChannels else { throw fail("expects \(c.inChannels) channels") }
            let s = c.outputShape(x)
            guard s[2] > 0, s[3] > 0 else { throw fail("empty output") }
            return s
        case .unary, .affine, .identity:
            if case .affine(let s, _) = k, s.count != 1, s.count != x[1] {
                throw fail("\(s.count) per-channel values for \(x[1]) channels")
            }
            return x
        case .broadcast:
            guard let s = ONNXPlan.broadcastShape(x, ins[1]), s.count <= 4 else { throw fail("shapes do not broadcast (rank <= 4)") }
            return s
        case .broadcastConstant(_, let c, _):
            guard let s = ONNXPlan.broadcastShape(x, c.shape), s.count <= 4 else {
                throw fail("shape does not broadcast with constant \(c.shape) (rank <= 4)")
            }
            return s
        case .globalAveragePool: return [x[0], x[1], 1, 1]
        case .maxPool(let kk, let s, let p):
            guard x[2] + 2 * p.h >= kk.h, x[3] + 2 * p.w >= kk.w else { throw fail("input smaller than the pool kernel") }
            return Ops.maxPool2dShape(x, kernel: kk, stride: s, padding: p)
        case .resize(let r):
            let (h, w): (Int, Int)
            if let sz = r.sizes { (h, w) = sz } else {
                let sc = r.scales!
                (h, w) = (Ops.resizedLength(x[2], scale: sc.0), Ops.resizedLength(x[3], scale: sc.1))
            }
            guard h > 0, w > 0 else { throw fail("resize to an empty \(h)x\(w)") }
            return [x[0], x[1], h, w]
        case .concat(let axis):
            let a = axis < 0 ? axis + x.count : axis
            guard (0..<x.count).contains(a) else { throw fail("axis \(axis) out of range for rank \(x.count)") }
            var out = x
            for s in ins.dropFirst() {
                guard s.count == x.count, (0..<x.count).allSatisfy({ $0 == a || s[$0] == x[$0] }) else {
                    throw fail("shapes differ outside axis \(a) (input sizes that are multiples of 32 usually fix this)")
                }
                out[a] += s[a]
            }
            return out
        case .anyRank(let op):
            do { return try op.outputShape(x) } catch let f as ONNXPlan.AnyRankOp.Failure { throw fail(f.message) }
        case .matMul(let c):
            switch ONNXPlan.matMulShape(x, c?.shape ?? ins[1]) {
            case .success(let s): return s
            case .failure(let f): throw fail(f.message)
            }
        }
    }
}
