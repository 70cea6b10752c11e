import StagePipeline

/// Runs a stage synchronously on the calling thread, without queues: the test harness for stages (like swift-nio's
/// `EmbeddedChannel`). Errors are wrapped exactly as the threaded `Pipeline` wraps them (`PipelineError` naming the
/// stage and the frame), so error messages can be tested here too.
///
/// ```swift
/// var harness = EmbeddedPipeline(MyStage())
/// XCTAssertEqual(try harness.feed(input), expected)
/// XCTAssertEqual(try harness.finish(), flushedOutputs)
/// ```
public struct EmbeddedPipeline<S: Stage> {
    /// The stage under test (inspect its state between calls).
    public var stage: S
    /// Items fed so far.
    public private(set) var sequence = 0
    /// How the stage was closed, once `finish()` or `abort()` ran.
    public private(set) var closeReason: CloseReason?

    public init(_ stage: S) { self.stage = stage }

    /// Processes one item; returns the stage's output (nil when it filtered the item).
    public mutating func feed(_ input: S.Input) throws -> S.Output? {
        precondition(closeReason == nil, "EmbeddedPipeline: feed after close")
        defer { sequence += 1 }
        do {
            return try stage.process(input)
        } catch {
            throw PipelineError.wrapping(error, stage: stage.name, phase: .process,
                                         frameIndex: (input as? IndexedItem)?.itemIndex, sequence: sequence)
        }
    }

    /// Processes several items in order; returns the forwarded outputs.
    public mutating func feed(_ inputs: [S.Input]) throws -> [S.Output] {
        var out: [S.Output] = []
        for i in inputs { if let o = try feed(i) { out.append(o) } }
        return out
    }

    /// End of stream: closes the stage and returns what it flushed.
    public mutating func finish() throws -> [S.Output] {
        try close(.endOfStream)
    }

    /// Closes the stage as aborted (what an error elsewhere or `cancel(.abort)` does).
    public mutating func abort() throws {
        _ = try close(.aborted)
    }

    private mutating func close(_ reason: CloseReason) throws -> [S.Output] {
        precondition(closeReason == nil, "EmbeddedPipeline: closed twice")
        closeReason = reason
        do {
            return try stage.close(reason)
        } catch {
            throw PipelineError.wrapping(error, stage: stage.name, phase: .close, frameIndex: nil, sequence: nil)
        }
    }

    /// Drains `source` through `stage` synchronously; returns every output including the flushed ones.
    public static func run<Src: Source>(_ source: Src, through stage: S) throws -> [S.Output]
    where Src.Output == S.Input {
        var harness = EmbeddedPipeline(stage)
        var out: [S.Output] = []
        defer { source.close() }
        var produced = 0
        while true {
            let item: Src.Output?
            do { item = try source.next() } catch {
                throw PipelineError(stage: source.name, phase: .source, sequence: produced, underlying: error)
            }
            guard let item else { break }
            produced += 1
            if let o = try harness.feed(item) { out.append(o) }
        }
        return out + (try harness.finish())
    }
}

/// A source that yields the elements of an array (for tests and examples).
public final class ArraySource<Element>: Source, @unchecked Sendable {
    public let name: String
    private var items: [Element]
    private var position = 0
    public init(_ items: [Element], name: String = "array") {
        self.items = items
        self.name = name
    }
    public func next() throws -> Element? {
        guard position < items.count else { return nil }
        defer { position += 1 }
        return items[position]
    }
}
