/// Runs the convolutions of a forward pass. The default (no runner) computes every conv densely; a per-stream
/// temporal cache or a profiler conforms to this to take over individual layers, identified by
/// `ConvLayer.index`/`key`. The runner must return `layer.conv(input, residual: residual)` =
/// act(conv(input) + bias + residual) (exactly, or within the cache's own tolerance) with shape
/// `layer.conv.outputShape(input.shape)`, and must not modify `input` or `residual`.
/// Returned tensors may be owned by the runner (kept across frames); the model never writes into them.
public protocol ConvolutionRunner: AnyObject {
    /// `layer.conv(input, residual: residual)`, computed however the runner likes. `residual` (output shape) is the
    /// ResNet shortcut for a block's last conv and the upsampled top-down path for an FPN lateral conv, else nil.
    func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor
    /// The same for instance `instance` of a layer that runs several times per frame on different inputs (a dense
    /// head conv shared by every pyramid level: instance = level index). A runner keeping per-layer state keys it by
    /// (layer, instance). Default: `run(_:input:residual:workspace:)`; a runner wrapping another should forward
    /// this one too.
    func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor
    /// `op` applied to `input` (the max-pool after the stem, the FPN's nearest upsampling), computed however the
    /// runner likes but exactly; `key` names the op's place in the model (unique per model). The result may be
    /// owned by the runner. Default: the dense op into a workspace tensor. A runner wrapping another should forward
    /// this too.
    func run(_ op: SpatialOp, key: String, input: Tensor, workspace: Workspace) -> Tensor
    /// A model whose convs and ops read each other's outputs only through the runner (every inner read, until
    /// `endClosedGraph`) says so, so a runner may approximate the outputs its own calls read (the temporal cache's
    /// output gating), the returned ones included: their other readers accept that approximation (a detector's
    /// RoI pooling reads pyramid levels as approximate as the heads' convs do). Default: nothing. A runner wrapping
    /// another should forward both.
    func beginClosedGraph()
    /// Ends the closed graph; `returning` (tensors returned by the runner inside it) are read outside from now on.
    func endClosedGraph(returning: [Tensor])
    /// A new frame starts: the model calls this once per frame, before its first conv, with the shape of the
    /// network input `[n, c, h, w]`. The first conv run after it reads that input. Default: nothing. A runner
    /// wrapping another should forward it.
    func beginFrame(inputShape: [Int])
    /// Whether `output`, a tensor the runner returned inside this frame's closed graph (a pyramid level), holds
    /// exactly the values it held when the previous frame returned it: the same storage, not one element written
    /// since. A model may then reuse what it computed from it last frame, bit for bit. Call after
    /// `endClosedGraph`. Default: false. A runner wrapping another should forward it.
    func repeatsLastFrame(_ output: Tensor) -> Bool
    /// The tiles of `output` (a tensor the runner returned inside this frame's closed graph: a pyramid level) that
    /// this frame wrote, on the grid they index: everywhere else `output` holds exactly the values it held when the
    /// previous frame returned it (the same storage). A model may then reuse what it computed last frame from
    /// parts of `output` outside those tiles. nil: unknown, or written everywhere (a dense frame). Call after
    /// `endClosedGraph`. Default: nil. A runner wrapping another should forward it.
    func writtenTiles(_ output: Tensor) -> (grid: TileGrid, tiles: [Int])?
    /// The model repeated the last frame's result (every returned tensor `repeatsLastFrame`) and skipped the convs it
    /// runs after the closed graph (its heads). A runner counting work may count them as run with nothing to
    /// recompute. Default: nothing. A runner wrapping another should forward it.
    func skippedRestOfFrame()
}

/// A parameter-free spatial op between convs. A `ConvolutionRunner` may take it over: the temporal cache computes
/// it only where its input changed, so the change mask reaches the next conv through it without a full compare.
public enum SpatialOp: Hashable, Sendable {
    /// `Ops.maxPool2d` (padding never wins).
    case maxPool(kernel: Size2, stride: Size2, padding: Size2)
    /// `Ops.upsampleNearest` to `height` x `width` (torch's nearest).
    case upsampleNearest(height: Int, width: Int)

    /// Output shape for an NCHW `input` shape.
    public func outputShape(_ input: [Int]) -> [Int] {
        switch self {
        case let .maxPool(kernel, stride, padding):
            return Ops.maxPool2dShape(input, kernel: kernel, stride: stride, padding: padding)
        case let .upsampleNearest(height, width):
            return [input[0], input[1], height, width]
        }
    }

    /// The dense op into `out` (shape `outputShape(x.shape)`).
    public func dense(_ x: Tensor, into out: Tensor) {
        switch self {
        case let .maxPool(kernel, stride, padding): Ops.maxPool2d(x, kernel: kernel, stride: stride, padding: padding, into: out)
        case .upsampleNearest: Ops.upsampleNearest(x, into: out)
        }
    }

    /// The dense op into a tensor from `ws`.
    public func callAsFunction(_ x: Tensor, in ws: Workspace) -> Tensor {
        let out = ws.tensor(outputShape(x.shape))
        dense(x, into: out)
        return out
    }

    /// The op on the output tiles `tiles` of `grid` only (bit-identical to `dense` there; the rest of `out` untouched).
    public func forward(_ x: Tensor, tiles: [Int], grid: TileGrid, into out: Tensor) {
        switch self {
        case let .maxPool(kernel, stride, padding):
            Ops.maxPool2d(x, kernel: kernel, stride: stride, padding: padding, tiles: tiles, grid: grid, into: out)
        case .upsampleNearest: Ops.upsampleNearest(x, tiles: tiles, grid: grid, into: out)
        }
    }
}

extension ConvolutionRunner {
    public func run(_ op: SpatialOp, key: String, input: Tensor, workspace: Workspace) -> Tensor {
        op(input, in: workspace)
    }
    public func beginClosedGraph() {}
    public func endClosedGraph(returning: [Tensor]) {}
    public func beginFrame(inputShape: [Int]) {}
    public func repeatsLastFrame(_ output: Tensor) -> Bool { false }
    public func writtenTiles(_ output: Tensor) -> (grid: TileGrid, tiles: [Int])? { nil }
    public func skippedRestOfFrame() {}
}

extension ConvolutionRunner {
    public func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        run(layer, input: input, residual: residual, workspace: workspace)
    }
}

/// A convolution (BatchNorm folded in, activation fused) with its place in the model: the unit of work a
/// `ConvolutionRunner` sees. Immutable and shared by every stream running the model.
public final class ConvLayer: @unchecked Sendable {
    /// State-dict key of the conv, e.g. `backbone.body.layer1.0.conv1` (its BN, if any, was `...bn1`).
    public let key: String
    /// Position in the model's `convLayers` (a dense index for per-layer state arrays).
    public let index: Int
    /// The folded convolution.
    public let conv: Conv2d

    /// A layer outside a `ModuleLoader` (e.g. an imported ONNX graph's conv steps); `index` must be unique within
    /// the model a runner serves.
    public init(key: String, index: Int, conv: Conv2d) { self.key = key; self.index = index; self.conv = conv }

    /// act(conv(x) + bias + residual) through `context`'s runner, or densely (the residual sum is fused into the
    /// GEMM). Output from the workspace (or the runner). `instance`: which of several per-frame uses of a shared
    /// layer this is (pyramid level of a head conv).
    @inline(__always)
    public func callAsFunction(_ x: Tensor, residual: Tensor? = nil, instance: Int = 0, _ context: ForwardContext) -> Tensor {
        if let runner = context.runner {
            return instance == 0
                ? runner.run(self, input: x, residual: residual, workspace: context.workspace)
                : runner.run(self, instance: instance, input: x, residual: residual, workspace: context.workspace)
        }
        return conv(x, residual: residual, in: context.workspace)
    }
}

/// Per-call state of a forward pass: the stream's buffer arena and an optional convolution runner.
public struct ForwardContext {
    /// Per-stream arena; outputs are valid until its next `beginFrame()`.
    public let workspace: Workspace
    /// Optional per-stream runner (temporal cache, profiler); nil = dense.
    public let runner: ConvolutionRunner?

    public init(workspace: Workspace, runner: ConvolutionRunner? = nil) {
        self.workspace = workspace
        self.runner = runner
    }

    /// `op` on `x` through the runner, or densely into the workspace.
    @inline(__always)
    public func callAsFunction(_ op: SpatialOp, key: String, _ x: Tensor) -> Tensor {
        runner?.run(op, key: key, input: x, workspace: workspace) ?? op(x, in: workspace)
    }

    /// Returns `t`'s buffer to the arena (no-op for tensors a runner owns).
    @inline(__always) public func release(_ t: Tensor) { workspace.release(t) }
}

