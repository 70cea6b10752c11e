/// A per-stream buffer arena: after the first frame of a given input size, a model's forward pass allocates nothing.
///
/// How a model uses it (one `Workspace` per stream, used by one thread at a time):
/// ```swift
/// let ws = Workspace()              // per stream, lives as long as the stream
/// for frame in frames {
///     ws.beginFrame()               // every tensor handed out in the previous frame is free again
///     let y = conv1(x, in: ws)      // ops take their outputs from ws.tensor(_:)
///     let z = y.maxPool2d(kernel: 3, stride: 2, padding: 1, in: ws)
///     ws.release(y)                 // optional: y is dead, its buffer may serve a later op of this frame
///     ...
/// }
/// ```
/// Plan: the workspace records which storage served the i-th `tensor(_:)` request of a frame. The next frame
/// replays that plan (the request sequence of a model is the same for the same input size), so frames 2...N
/// allocate nothing; `allocationCount` lets a test assert it. Requests that do not fit the recorded storage
/// (e.g. a larger input) take the best-fitting free storage or allocate a new one, and the plan is updated.
/// Ops also draw scratch memory (im2col columns, tile buffers) from `scratch(_:)`, one growable buffer reused by
/// every op. Tensors obtained from a workspace are valid until the next `beginFrame()`; use after that traps.
/// Copy results that must outlive the frame. State that must survive frames (a temporal cache's kept outputs)
/// belongs in plain `Tensor(shape:)` storage owned by that per-stream state object, not in the arena.
public final class Workspace: @unchecked Sendable {
    private var pool: [TensorStorage] = []
    private var inUse: [Bool] = []
    private var plan: [Int] = []           // pool index that served request #i of a frame
    private var requestIndex = 0
    private var scratchStorage = TensorStorage(capacity: 0)
    private var intScratch = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    private var intScratchCount = 0

    /// Number of buffers this workspace has allocated so far (tensor storages and scratch growth).
    /// Constant across frames once the plan is complete: a test asserts frames 2...N do not change it.
    public private(set) var allocationCount = 0
    /// Bytes currently held by the arena (tensor storages plus scratch).
    public var allocatedBytes: Int { (pool.reduce(0) { $0 + $1.capacity } + scratchStorage.capacity) * 4 }
    /// Number of tensor storages in the arena.
    public var bufferCount: Int { pool.count }

    /// Creates an empty workspace. It allocates lazily, on first use.
    public init() {}

    /// Starts a frame: every tensor handed out since the previous `beginFrame()` becomes invalid and its storage free.
    public func beginFrame() {
        for i in inUse.indices { inUse[i] = false }
        requestIndex = 0
    }

    /// An output tensor of `shape` for this frame (contents unspecified: ops overwrite every element).
    public func tensor(_ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        let slot: Int
        if requestIndex < plan.count, !inUse[plan[requestIndex]], pool[plan[requestIndex]].capacity >= n {
            slot = plan[requestIndex]
        } else {
            slot = bestFit(n) ?? allocate(n)
            if requestIndex < plan.count { plan[requestIndex] = slot } else { plan.append(slot) }
        }
        requestIndex += 1
        inUse[slot] = true
        let storage = pool[slot]
        storage.generation &+= 1
        return Tensor(shape: shape, storage: storage, offset: 0)
    }

    /// Returns `tensor`'s storage to the arena before the frame ends (the tensor must not be used afterwards).
    /// Tensors not from this workspace are ignored.
    public func release(_ tensor: Tensor) {
        guard let i = pool.firstIndex(where: { $0 === tensor.storage }), inUse[i] else { return }
        tensor.checkValid()
        inUse[i] = false
        tensor.storage.generation &+= 1
    }

    /// Whether `tensor` is one this workspace handed out in the current frame and still lent (not released): the
    /// caller may then overwrite it, where a runner's result can also be state it keeps across frames.
    public func holds(_ tensor: Tensor) -> Bool {
        guard let i = pool.firstIndex(where: { $0 === tensor.storage }) else { return false }
        return inUse[i]
    }

    private func bestFit(_ n: Int) -> Int? {
        var best: Int?
        for i in pool.indices where !inUse[i] && pool[i].capacity >= n {
            if best == nil || pool[i].capacity < pool[best!].capacity { best = i }
        }
        return best
    }

    private func allocate(_ n: Int) -> Int {
        pool.append(TensorStorage(capacity: n))
        inUse.append(false)
        allocationCount += 1
        return pool.count - 1
    }

    /// Scratch floats for one op at a time (im2col columns, tile staging); valid until the next `scratch` call.
    func scratch(_ n: Int) -> UnsafeMutablePointer<Float> {
        if scratchStorage.capacity < n {
            scratchStorage = TensorStorage(capacity: n)
            allocationCount += 1
        }
        return scratchStorage.base
    }

    /// Reusable integer scratch (tile geometry); grows only.
    func ints(_ n: Int) -> UnsafeMutablePointer<Int> {
        if intScratchCount < n {
            intScratch.deallocate()
            intScratch = UnsafeMutablePointer<Int>.allocate(capacity: n)
            intScratchCount = n
            allocationCount += 1
        }
        return intScratch
    }

    deinit { intScratch.deallocate() }
}
