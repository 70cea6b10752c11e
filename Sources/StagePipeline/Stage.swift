/// A typed processing step: turns one `Input` into at most one `Output`, in order.
///
/// A pipeline calls `process` on the stage's own serial queue, one item at a time and in input order, so a stage may
/// keep per-stream state in stored properties without locks (it is never called concurrently). Stages are composed
/// generically (`PipelineBuilder.then`, `Stage.then`), so a chain whose `Output`/`Input` types do not match fails to
/// compile rather than at run time.
public protocol Stage {
    /// What the stage consumes.
    associatedtype Input
    /// What the stage produces.
    associatedtype Output

    /// Name shown in errors and the metrics summary (e.g. `"detect"`).
    var name: String { get }

    /// Processes one item. Return `nil` to consume the item without forwarding anything (e.g. a frame-stride filter);
    /// that is flow control, not an error. Throwing stops the whole pipeline with a `PipelineError` naming this stage
    /// and the item.
    mutating func process(_ input: Input) throws -> Output?

    /// Called exactly once when no more input will come. On `.endOfStream` (the source ended, or a draining
    /// cancellation) the returned outputs are forwarded downstream before end-of-stream is passed on (flush buffered
    /// work, finalize files). On `.aborted` (error elsewhere or aborting cancellation) outputs are discarded, but the
    /// stage should still release resources and finalize files so they stay readable.
    mutating func close(_ reason: CloseReason) throws -> [Output]
    /// True for a stage that works on several items at once and returns an item's output from a later `process`
    /// call or from `close` (still in input order); its `nil` returns are then not counted as filtered. Default false.
    var delaysOutputs: Bool { get }
}

/// Why a stage is being closed.
public enum CloseReason: Sendable, Equatable {
    /// All input was delivered and processed (normal end, or cancellation in drain mode).
    case endOfStream
    /// The pipeline stopped early (an error in this stage or upstream of it, or cancellation in abort mode);
    /// in-flight items were dropped. Stages downstream of a failing stage get `.endOfStream` instead, after every
    /// item that had already passed it.
    case aborted
}

extension Stage {
    public var name: String { String(describing: Self.self) }
    public var delaysOutputs: Bool { false }
    public mutating func close(_ reason: CloseReason) throws -> [Output] { [] }
}

/// Where items come from (a decoder, a camera, an array in tests). Runs on its own serial queue.
///
/// A class, because `interrupt()` is called from another thread while `next()` may be blocked.
public protocol Source: AnyObject {
    /// What the source produces.
    associatedtype Output
    /// Name shown in errors and the metrics summary (e.g. `"decode"`).
    var name: String { get }
    /// The next item, or `nil` at end of stream (flow control, not an error). Throwing stops the pipeline.
    func next() throws -> Output?
    /// Asks a blocked `next()` to return soon (e.g. an FFmpeg interrupt callback). Called from another thread on
    /// cancellation or on an error elsewhere; must be thread-safe. After it, errors thrown by `next()` are ignored and
    /// treated as end of stream. Default: nothing (a file source returns from `next()` quickly anyway).
    func interrupt()
    /// Called once on the source's queue after the last `next()`, whatever the outcome (release handles here).
    func close()
}

extension Source {
    public var name: String { String(describing: Self.self) }
    public func interrupt() {}
    public func close() {}
}

/// A terminal step: consumes items and forwards nothing (JSONL writer, video encoder, MOT writer).
public protocol Sink {
    associatedtype Input
    /// Name shown in errors and the metrics summary.
    var name: String { get }
    /// Consumes one item, in order. Throwing stops the pipeline.
    mutating func consume(_ input: Input) throws
    /// Called once at the end; `.endOfStream` after the last item, `.aborted` when the pipeline stopped early.
    /// Finalize files in both cases.
    mutating func close(_ reason: CloseReason) throws
}

extension Sink {
    public var name: String { String(describing: Self.self) }
    public mutating func close(_ reason: CloseReason) throws {}
}

/// Items that know their position in the stream (a frame index). Errors then name `frame N` instead of the
/// pipeline's own sequence number, and the index survives stages that drop or filter items.
public protocol IndexedItem {
    /// 0-based frame index in the stream.
    var itemIndex: Int { get }
}

// MARK: - Adapters

/// A sink used as the last stage of a chain.
public struct SinkStage<S: Sink>: Stage {
    public typealias Input = S.Input
    public typealias Output = Never
    public var sink: S
    public init(_ sink: S) { self.sink = sink }
    public var name: String { sink.name }
    public mutating func process(_ input: S.Input) throws -> Never? {
        try sink.consume(input)
        return nil
    }
    public mutating func close(_ reason: CloseReason) throws -> [Never] {
        try sink.close(reason)
        return []
    }
}

/// A sink that also forwards every item unchanged, so several sinks can sit in one chain (each on its own queue):
/// `… .tap(jsonl).tap(mot).sink(video)`.
public struct TapStage<S: Sink>: Stage {
    public typealias Input = S.Input
    public typealias Output = S.Input
    public var sink: S
    public init(_ sink: S) { self.sink = sink }
    public var name: String { sink.name }
    public mutating func process(_ input: S.Input) throws -> S.Input? {
        try sink.consume(input)
        return input
    }
    public mutating func close(_ reason: CloseReason) throws -> [S.Input] {
        try sink.close(reason)
        return []
    }
}

/// A stage made from a closure; handy for small conversions and tests.
public struct MapStage<Input, Output>: Stage {
    public let name: String
    private let transform: (Input) throws -> Output?
    /// `transform` returns `nil` to filter the item out.
    public init(_ name: String, _ transform: @escaping (Input) throws -> Output?) {
        self.name = name
        self.transform = transform
    }
    public func process(_ input: Input) throws -> Output? { try transform(input) }
}

/// A sink made from a closure.
public struct ClosureSink<Input>: Sink {
    public let name: String
    private let body: (Input) throws -> Void
    public init(_ name: String, _ body: @escaping (Input) throws -> Void) {
        self.name = name
        self.body = body
    }
    public func consume(_ input: Input) throws { try body(input) }
}

/// Two stages fused into one, run back to back on one queue (for cheap steps not worth a thread hop).
/// Errors keep the name of the inner stage that failed.
public struct ComposedStage<A: Stage, B: Stage>: Stage where A.Output == B.Input {
    public var first: A
    public var second: B
    public init(_ first: A, _ second: B) {
        self.first = first
        self.second = second
    }
    public var name: String { "\(first.name)+\(second.name)" }

    public mutating func process(_ input: A.Input) throws -> B.Output? {
        let mid: A.Output?
        do { mid = try first.process(input) } catch { throw StageFailure.wrap(error, stage: first.name) }
        guard let mid else { return nil }
        do { return try second.process(mid) } catch { throw StageFailure.wrap(error, stage: second.name) }
    }

    public mutating func close(_ reason: CloseReason) throws -> [B.Output] {
        let flushed: [A.Output]
        do { flushed = try first.close(reason) } catch { throw StageFailure.wrap(error, stage: first.name) }
        var out: [B.Output] = []
        do {
            if reason == .endOfStream {
                for m in flushed { if let o = try second.process(m) { out.append(o) } }
            }
            out += try second.close(reason)
        } catch { throw StageFailure.wrap(error, stage: second.name) }
        return reason == .endOfStream ? out : []
    }
}

extension Stage {
    /// This stage followed by `next` on the same queue.
    public func then<B: Stage>(_ next: B) -> ComposedStage<Self, B> where B.Input == Output {
        ComposedStage(self, next)
    }
}

/// An error thrown inside a fused stage, remembering which inner stage threw it.
struct StageFailure: Error {
    var stage: String
    var underlying: Error

    static func wrap(_ error: Error, stage: String) -> StageFailure {
        if let f = error as? StageFailure { return f }
        return StageFailure(stage: stage, underlying: error)
    }
}
