import Dispatch
import Foundation

/// A running chain of typed stages: one source, stages on their own serial queues, bounded queues between them.
///
/// ```
///             push ┌──────────────┐ pop        push ┌──────────────┐ pop        push ┌──────────────┐
///  Source ────────▶│BoundedQueue  │──▶ Stage A ────▶│BoundedQueue  │──▶ Stage B ────▶│BoundedQueue  │──▶ Sink
///  next() on its   │cap N, policy │   process() on  │cap N, policy │   process() on  │cap N, policy │  consume()
///  own queue       └──────────────┘   its own queue └──────────────┘   its own queue └──────────────┘
///     │ nil = end of stream: close() flows down the chain; each stage drains its queue, close(.endOfStream),
///     │ forwards its flushed outputs, then closes the next queue.
///     ▼ throw in stage K: the source and stages up to K are stopped (their queues cancelled, close(.aborted));
///       stages after K drain what already passed K and close(.endOfStream), so outputs hold every item before the
///       failing one. cancel(.abort): every queue is cancelled, every stage close(.aborted).
/// ```
///
/// - Order: each stage is one serial queue reading one FIFO, so output order equals input order (items filtered or
///   dropped leave gaps, never reorderings).
/// - Backpressure: with `DropPolicy.block` a full queue blocks its producer, so memory stays bounded and files never
///   drop frames. Live sources use `.dropOldest` (keep latest) on the first queue so latency cannot grow; drops are
///   counted per stage.
/// - Errors: the first error stops the pipeline and is reported as a `PipelineError` naming the stage and the frame;
///   items that had already passed the failing stage still reach the sinks.
/// - Cancellation: `cancel(.drain)` stops the source and lets in-flight items finish; `cancel(.abort)` discards them.
///
/// Build with `Pipeline.from(source).then(stageA).then(stageB).sink(sink)`; a type mismatch between neighbours is a
/// compile error. Then `run()` (blocking) or `start()` + `wait()`.
public final class Pipeline: @unchecked Sendable {
    /// How `cancel` treats items already in flight.
    public enum CancelMode: Sendable {
        /// Stop the source; everything already read goes through all stages and sinks (end of stream).
        case drain
        /// Stop the source and discard queued items; stages finish their current item and close as aborted.
        case abort
    }

    let control: PipelineControl
    private let startLock = NSLock()
    private var started = false
    private var startTime = DispatchTime.now()
    private var endTime: DispatchTime?

    init(control: PipelineControl) {
        self.control = control
    }

    /// Starts a pipeline whose items come from `source`; add stages with `then`, finish with `sink` or `build`.
    public static func from<S: Source>(_ source: S, options: PipelineOptions = PipelineOptions())
        -> PipelineBuilder<S.Output> {
        let control = PipelineControl(options: options)
        let node = SourceNode(source: source, control: control, position: 0)
        control.nodes.append(node)
        control.interruptSource = { [weak source] in source?.interrupt() }
        return PipelineBuilder(control: control, connect: { node.downstream = $0 })
    }

    /// Starts every stage and the source; returns at once. Call once.
    public func start() {
        startLock.lock()
        precondition(!started, "Pipeline.start() called twice")
        started = true
        startTime = DispatchTime.now()
        startLock.unlock()
        for node in control.nodes { control.group.enter(); node.start() }
    }

    /// Blocks until the pipeline has finished (every stage closed) and returns the report.
    public func wait() -> PipelineReport {
        control.group.wait()
        return report()
    }

    /// Calls `body` with the report on `queue` once the pipeline has finished. Call after `start()` (before it, the
    /// pipeline has nothing running and `body` would be called at once).
    public func notify(queue: DispatchQueue = .global(), _ body: @escaping @Sendable (PipelineReport) -> Void) {
        control.group.notify(queue: queue) { [self] in body(self.report()) }
    }

    /// Starts, waits, and throws the `PipelineError` if a stage failed; returns the report otherwise (also after a
    /// cancellation).
    @discardableResult
    public func run() throws -> PipelineReport {
        start()
        let r = wait()
        if let e = r.completion.error { throw e }
        return r
    }

    /// Stops the source (and interrupts a blocked `next()`); see `CancelMode`. Thread-safe; later calls can only
    /// escalate from `.drain` to `.abort`. Safe from a signal-handling queue.
    public func cancel(_ mode: CancelMode = .drain) {
        control.cancel(mode)
    }

    /// Per-stage metrics now (source first); thread-safe, usable while running for periodic stats lines.
    public func metrics() -> [StageMetrics] { control.nodes.map { $0.metrics() } }

    private func report() -> PipelineReport {
        startLock.lock()
        if endTime == nil { endTime = DispatchTime.now() }
        let wall = Double(endTime!.uptimeNanoseconds - startTime.uptimeNanoseconds) / 1e9
        startLock.unlock()
        return PipelineReport(completion: control.completion(), stages: metrics(), wallSeconds: wall)
    }
}

/// Pipeline-wide defaults.
public struct PipelineOptions: Sendable {
    /// Default capacity of each stage's input queue.
    public var queueCapacity: Int
    /// Default drop policy of each stage's input queue (`.block` for files).
    public var dropPolicy: DropPolicy
    /// Prefix of the Dispatch queue labels (shows in debuggers and crash logs).
    public var label: String

    public init(queueCapacity: Int = 4, dropPolicy: DropPolicy = .block, label: String = "fpnstream.pipeline") {
        precondition(queueCapacity >= 1, "queue capacity must be at least 1")
        self.queueCapacity = queueCapacity
        self.dropPolicy = dropPolicy
        self.label = label
    }
}

/// The input queue of one stage, overriding `PipelineOptions`.
public struct QueueOptions: Sendable, Equatable {
    public var capacity: Int
    public var policy: DropPolicy
    public init(capacity: Int, policy: DropPolicy = .block) {
        precondition(capacity >= 1, "queue capacity must be at least 1")
        self.capacity = capacity
        self.policy = policy
    }
}

/// A pipeline under construction whose last stage produces `Output`. Each call consumes the builder: build once.
public struct PipelineBuilder<Output> {
    let control: PipelineControl
    /// Connects the last node to whatever comes next.
    let connect: (Downstream<Output>) -> Void

    /// Appends `stage` on its own serial queue, fed by a bounded queue (`queue` or the pipeline defaults).
    public func then<S: Stage>(_ stage: S, queue: QueueOptions? = nil) -> PipelineBuilder<S.Output>
    where S.Input == Output {
        let q = queue ?? QueueOptions(capacity: control.options.queueCapacity, policy: control.options.dropPolicy)
        let node = StageNode(stage: stage, queue: q, control: control, position: control.nodes.count)
        control.nodes.append(node)
        // The upstream thread touches only the (locked) queue, never the node the stage thread works in.
        let input = node.input
        connect(Downstream(push: { input.push($0) != .rejected }, close: { input.close() }))
        return PipelineBuilder<S.Output>(control: control, connect: { node.downstream = $0 })
    }

    /// Appends a sink that also forwards every item unchanged (several outputs in one chain).
    public func tap<K: Sink>(_ sink: K, queue: QueueOptions? = nil) -> PipelineBuilder<Output>
    where K.Input == Output {
        then(TapStage(sink), queue: queue)
    }

    /// Ends the chain with `sink`.
    public func sink<K: Sink>(_ sink: K, queue: QueueOptions? = nil) -> Pipeline where K.Input == Output {
        then(SinkStage(sink), queue: queue).build()
    }

    /// Ends the chain; each output of the last stage is passed to `onOutput` (on that stage's queue, in order).
    public func build(onOutput: ((Output) -> Void)? = nil) -> Pipeline {
        connect(Downstream(push: { onOutput?($0.value); return true }, close: {}))
        return Pipeline(control: control)
    }
}

// MARK: - Internals

/// An item on its way through the chain, with its position in source order and its frame index if it has one.
struct Envelope<T> {
    var sequence: Int
    var frameIndex: Int?
    var value: T
}

/// How a node hands items to the next one.
struct Downstream<T> {
    /// False when the next queue was cancelled: stop producing.
    var push: (Envelope<T>) -> Bool
    var close: () -> Void
}

/// Shared state of one pipeline: nodes, first error, cancellation flags.
final class PipelineControl: @unchecked Sendable {
    let options: PipelineOptions
    let group = DispatchGroup()
    var nodes: [NodeBase] = []
    var interruptSource: () -> Void = {}

    private let lock = NSLock()
    private var _stopRequested = false
    /// Nodes at positions up to this one are aborted (source = 0); -1 while none is.
    private var abortedThrough = -1
    private var _abortRequested = false
    private var _sourceStoppedEarly = false
    private var firstError: PipelineError?

    init(options: PipelineOptions) { self.options = options }

    var stopRequested: Bool { lock.lock(); defer { lock.unlock() }; return _stopRequested }
    /// True when the node at `position` must stop and close as aborted.
    func isAborted(_ position: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return position <= abortedThrough }

    func sourceStoppedEarly() { lock.lock(); _sourceStoppedEarly = true; lock.unlock() }

    /// Records the first error and aborts the node at `position` and everything upstream of it; downstream nodes
    /// drain what already passed and see end of stream.
    func fail(_ error: PipelineError, at position: Int) {
        lock.lock()
        if firstError == nil && !_abortRequested { firstError = error }
        lock.unlock()
        abort(through: position)
    }

    func cancel(_ mode: Pipeline.CancelMode) {
        lock.lock()
        _stopRequested = true
        if mode == .abort { _abortRequested = true }
        lock.unlock()
        if mode == .abort { abort(through: nodes.count - 1) } else { interruptSource() }
    }

    private func abort(through position: Int) {
        lock.lock()
        let previous = abortedThrough
        abortedThrough = max(abortedThrough, position)
        _stopRequested = true
        lock.unlock()
        guard position > previous else { return }
        interruptSource()
        for n in nodes[(previous + 1)...position] { n.cancelInput() }
    }

    func completion() -> PipelineCompletion {
        lock.lock(); defer { lock.unlock() }
        if let e = firstError { return .failed(e) }
        if _abortRequested { return .aborted }
        if _sourceStoppedEarly { return .drained }
        return .finished
    }
}

/// What the pipeline needs from every node, whatever its element types.
class NodeBase {
    func start() {}
    func cancelInput() {}
    func metrics() -> StageMetrics { fatalError("abstract") }
}

/// Thread-safe per-node metrics.
final class MetricsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var m: StageMetrics
    init(name: String, capacity: Int) { m = StageMetrics(name: name, queueCapacity: capacity) }
    func record(ms: Double, filtered: Bool) {
        lock.lock()
        m.count += 1
        if filtered { m.filtered += 1 }
        m.latency.record(ms: ms)
        lock.unlock()
    }
    func snapshot() -> StageMetrics { lock.lock(); defer { lock.unlock() }; return m }
}

@inline(__always) func elapsedMs(since t0: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e6
}

final class SourceNode<S: Source>: NodeBase, @unchecked Sendable {
    let source: S
    let control: PipelineControl
    let queue: DispatchQueue
    let box: MetricsBox
    var downstream: Downstream<S.Output>?

    let position: Int

    init(source: S, control: PipelineControl, position: Int) {
        self.source = source
        self.control = control
        self.position = position
        self.queue = DispatchQueue(label: "\(control.options.label).\(source.name)", qos: .userInitiated)
        self.box = MetricsBox(name: source.name, capacity: 0)
    }

    override func start() {
        queue.async { [self] in
            run()
            control.group.leave()
        }
    }

    private func run() {
        guard let downstream else { preconditionFailure("pipeline built without a sink") }
        var sequence = 0
        var lastIndex: Int?
        while true {
            if control.stopRequested { control.sourceStoppedEarly(); break }
            let t0 = DispatchTime.now()
            let value: S.Output?
            do {
                value = try source.next()
            } catch {
                if control.stopRequested { control.sourceStoppedEarly() } else {
                    control.fail(PipelineError(stage: source.name, phase: .source, frameIndex: lastIndex,
                                               sequence: sequence, underlying: error), at: position)
                }
                break
            }
            guard let value else { break }
            box.record(ms: elapsedMs(since: t0), filtered: false)
            let index = (value as? IndexedItem)?.itemIndex
            guard downstream.push(Envelope(sequence: sequence, frameIndex: index, value: value)) else { break }
            sequence += 1
            lastIndex = index
        }
        source.close()
        downstream.close()
    }

    override func metrics() -> StageMetrics { box.snapshot() }
}

final class StageNode<S: Stage>: NodeBase, @unchecked Sendable {
    /// The stage until `run` moves it into a local that only the node's queue mutates. Mutated in a field, a stage of
    /// zero size would share its address with `input`, which other threads read (`metrics()`, `cancelInput()`, the
    /// upstream push), and ThreadSanitizer rightly sees unordered accesses to one location.
    private var pendingStage: S?
    let name: String
    let input: BoundedQueue<Envelope<S.Input>>
    let control: PipelineControl
    let queue: DispatchQueue
    let box: MetricsBox
    var downstream: Downstream<S.Output>?

    let position: Int

    init(stage: S, queue q: QueueOptions, control: PipelineControl, position: Int) {
        self.position = position
        self.pendingStage = stage
        self.name = stage.name
        self.input = BoundedQueue(capacity: q.capacity, policy: q.policy)
        self.control = control
        self.queue = DispatchQueue(label: "\(control.options.label).\(stage.name)", qos: .userInitiated)
        self.box = MetricsBox(name: stage.name, capacity: q.capacity)
    }

    override func start() {
        queue.async { [self] in
            run()
            control.group.leave()
        }
    }

    override func cancelInput() { input.cancel() }

    private func run() {
        guard let downstream else { preconditionFailure("pipeline built without a sink") }
        guard var stage = pendingStage.take() else { preconditionFailure("stage node started twice") }
        while let env = input.pop() {
            let t0 = DispatchTime.now()
            let out: S.Output?
            do {
                out = try stage.process(env.value)
            } catch {
                control.fail(failure(error, phase: .process, env: env), at: position)
                break
            }
            box.record(ms: elapsedMs(since: t0), filtered: out == nil && !stage.delaysOutputs)
            if let out {
                let index = (out as? IndexedItem)?.itemIndex ?? env.frameIndex
                guard downstream.push(Envelope(sequence: env.sequence, frameIndex: index, value: out)) else { break }
            }
        }
        let reason: CloseReason = control.isAborted(position) ? .aborted : .endOfStream
        do {
            let flushed = try stage.close(reason)
            if reason == .endOfStream {
                // Flushed outputs have no source item of their own; they continue the sequence after the last one.
                var seq = input.pushed
                for out in flushed {
                    guard downstream.push(Envelope(sequence: seq, frameIndex: (out as? IndexedItem)?.itemIndex,
                                                   value: out)) else { break }
                    seq += 1
                }
            }
        } catch {
            control.fail(failure(error, phase: .close, env: nil), at: position)
        }
        downstream.close()
    }

    private func failure(_ error: Error, phase: PipelineError.Phase, env: Envelope<S.Input>?) -> PipelineError {
        PipelineError.wrapping(error, stage: name, phase: phase, frameIndex: env?.frameIndex,
                               sequence: env?.sequence)
    }

    override func metrics() -> StageMetrics {
        var m = box.snapshot()
        m.drops = input.drops
        m.maxQueueDepth = input.maxDepth
        return m
    }
}
