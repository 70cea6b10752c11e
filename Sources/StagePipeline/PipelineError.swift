/// Why a pipeline stopped with an error: which stage, which item, and the error the stage threw.
///
/// The description is the one line the CLI prints, e.g.
/// `stage 'detect' failed on frame 42: weights have no key 'fpn.inner_blocks.0.weight'`.
public struct PipelineError: Error, Sendable, CustomStringConvertible {
    /// Where in the stage's life the error happened.
    public enum Phase: Sendable, Equatable {
        /// The source's `next()` threw.
        case source
        /// A stage's `process` (or a sink's `consume`) threw for an item.
        case process
        /// `close` threw (flushing or finalizing at the end).
        case close
    }

    /// Name of the stage (or source) that threw; for fused stages, the inner stage.
    public var stage: String
    /// What it was doing.
    public var phase: Phase
    /// Frame index of the item being processed when the item is `IndexedItem`; for a source error, the index of the
    /// last item it produced.
    public var frameIndex: Int?
    /// 0-based position of the item in source order (for a source error: how many items it had produced).
    public var sequence: Int?
    /// The error the stage threw.
    public var underlying: any Error

    public init(stage: String, phase: Phase, frameIndex: Int? = nil, sequence: Int? = nil, underlying: any Error) {
        self.stage = stage
        self.phase = phase
        self.frameIndex = frameIndex
        self.sequence = sequence
        self.underlying = underlying
    }

    /// Wraps an error thrown by `stageName` (keeping the inner stage's name for fused stages, and passing an
    /// existing `PipelineError` through unchanged). Used by the threaded pipeline and the test harness alike.
    public static func wrapping(_ error: any Error, stage stageName: String, phase: Phase, frameIndex: Int?,
                                sequence: Int?) -> PipelineError {
        if let p = error as? PipelineError { return p }
        if let f = error as? StageFailure {
            return PipelineError(stage: f.stage, phase: phase, frameIndex: frameIndex, sequence: sequence,
                                 underlying: f.underlying)
        }
        return PipelineError(stage: stageName, phase: phase, frameIndex: frameIndex, sequence: sequence,
                             underlying: error)
    }

    public var description: String {
        let what: String
        switch phase {
        case .process:
            if let f = frameIndex { what = "stage '\(stage)' failed on frame \(f)" }
            else if let s = sequence { what = "stage '\(stage)' failed on item \(s)" }
            else { what = "stage '\(stage)' failed" }
        case .source:
            if let f = frameIndex { what = "source '\(stage)' failed after frame \(f)" }
            else if let s = sequence, s > 0 { what = "source '\(stage)' failed after \(s) items" }
            else { what = "source '\(stage)' failed before the first item" }
        case .close:
            what = "stage '\(stage)' failed while closing"
        }
        return "\(what): \(underlying)"
    }
}
