import FPNCore
import Foundation
import StagePipeline

/// Writes the per-frame JSONL output: one JSON object per line, each line a single `write(2)` (so `tail -f` sees
/// whole lines at once and a killed process never leaves half a line). Line format: docs/jsonl.md.
///
/// Thread-safe: the frame stage and, say, a reconnect monitor may both write lines.
public final class JSONLWriter: @unchecked Sendable {
    /// Output path (`-` for stdout).
    public var path: String { file.path }
    /// What frame lines include.
    public let options: JSONLRecord.Options
    private let file: LineFile
    private let counts = Counter()

    /// Creates (truncates) `path`; `-` writes to stdout.
    public init(path: String, options: JSONLRecord.Options = JSONLRecord.Options()) throws {
        self.file = try LineFile(path: path)
        self.options = options
    }

    /// Number of `"type":"frame"` lines written.
    public var frameLines: Int { counts.value }

    /// Writes the frame line of `result`, with extra `fields` appended.
    public func writeFrame(_ result: FrameResult, fields: [(String, JSONLRecord.Value)] = []) throws {
        try file.write(JSONLRecord.frame(result, options: options, fields: fields))
        counts.increment()
    }

    /// Writes a complete line (from `JSONLRecord.event/stats/summary`, ending in a newline).
    public func writeLine(_ line: [UInt8]) throws {
        precondition(line.last == 0x0a, "JSONL lines end with a newline")
        try file.write(line)
    }

    /// Closes the file (after the summary line).
    public func close() throws { try file.close() }
}

/// `JSONLWriter` as a pipeline sink of `FrameResult`s.
public struct JSONLSink: Sink {
    public let writer: JSONLWriter
    public var name: String { "jsonl" }
    public init(_ writer: JSONLWriter) { self.writer = writer }
    public func consume(_ input: FrameResult) throws { try writer.writeFrame(input) }
    /// Leaves the file open, so the runner can append the summary line and then `close()` it.
    public func close(_ reason: CloseReason) throws {}
}

final class Counter: @unchecked Sendable {
    private var n = 0
    private let lock = NSLock()
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    func increment() { lock.lock(); n += 1; lock.unlock() }
}
