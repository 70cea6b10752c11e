import FPNStream
import Foundation
import TestSupport
import XCTest

/// Pipeline files that would make the loader allocate or recurse without bound fail with one clear error.
final class PipelineLimitsTests: XCTestCase {
    private func message(_ yaml: String) -> String {
        do {
            _ = try PipelineSpec.parse(yaml: yaml, file: "x.yaml")
            return "parsed"
        } catch { return "\(error)" }
    }

    func testSizesAboveTheirLimitsAreErrors() {
        XCTAssertEqual(message("model: { path: m.safetensors, min_size: 100000 }"),
                       "x.yaml:1: model.min_size: must be ≤ \(PipelineLimits.maxImageSide) (limit), got 100000")
        XCTAssertEqual(message("input:\n  live: { drop_policy: drop-oldest, queue_size: 1000000000000 }"),
                       "x.yaml:2: input.live.queue_size: must be ≤ \(PipelineLimits.maxQueueSize) (limit), got 1000000000000")
        XCTAssertEqual(message("outputs: { annotate: { font_scale: 1000 } }"),
                       "x.yaml:1: outputs.annotate.font_scale: must be ≤ \(PipelineLimits.maxFontScale) (limit), got 1000")
        XCTAssertEqual(message("tracker: { track_buffer: 99999999999 }"),
                       "x.yaml:1: tracker.track_buffer: must be ≤ \(PipelineLimits.maxHistoryFrames) (limit), got 99999999999")
        XCTAssertEqual(message("model: { path: m.safetensors, min_size: \(PipelineLimits.maxImageSide) }"), "parsed")
    }

    func testDeepNestingIsRefusedBeforeTheComposerRecurses() {
        let flow = String(repeating: "[", count: 100_000)
        XCTAssertEqual(message("name: x\ninput: \(flow)"), "x.yaml:2: nesting deeper than \(PipelineLimits.maxDepth) levels")
        let dashes = String(repeating: "- ", count: 100_000) + "x"
        XCTAssertEqual(message(dashes), "x.yaml:1: nesting deeper than \(PipelineLimits.maxDepth) levels")
        // A quoted `]` does not hide real nesting, nor does a misplaced quote.
        let closers = String(repeating: "]", count: 100)
        XCTAssertEqual(message("input: [\"\(closers)\", \(flow)"), "x.yaml:1: nesting deeper than \(PipelineLimits.maxDepth) levels")
        XCTAssertEqual(message("# it's\nname: '\ninput: \(flow)"), "x.yaml:3: nesting deeper than \(PipelineLimits.maxDepth) levels")
        XCTAssertEqual(message("name: '[[[[[[[[[['"), "parsed")
    }

    /// YAML 1.1's base-60 integers (`1:30` = 90) are read with overflow checks: a long one is an error, not a trap.
    func testLongBase60NumberIsAnErrorNotATrap() throws {
        let long = Array(repeating: "59", count: 12).joined(separator: ":")
        XCTAssertEqual(message("input: { stride: \(long) }"), "x.yaml:1: input.stride: expected a whole number, got \(long)")
        XCTAssertEqual(message("input: { max_frames: -1:2:3:4:5:6:7:8:9:10:11:12 }"),
                       "x.yaml:1: input.max_frames: expected a whole number, got -1:2:3:4:5:6:7:8:9:10:11:12")
        XCTAssertEqual(message("input: { stride: 1::30 }"), "x.yaml:1: input.stride: expected a whole number, got 1::30")
        XCTAssertEqual(try PipelineSpec.parse(yaml: "input: { stride: 1:30 }", file: "x.yaml").input.stride, 90)
        XCTAssertEqual(try PipelineSpec.parse(yaml: "input: { stride: 1_0 }", file: "x.yaml").input.stride, 10)
    }

    func testLongScalarsAreCutInMessages() {
        let m = message("input: { stride: \"\(String(repeating: "z", count: 10_000))\" }")
        XCTAssertTrue(m.hasPrefix("x.yaml:1: input.stride: expected a whole number, got \"zzz"), m)
        XCTAssertLessThan(m.count, 200, m)
    }

    func testOversizedFileIsRefusedUnread() throws {
        let dir = TestPaths.temporaryDirectory("pipeline-limits")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("big.yaml")
        try Data(repeating: UInt8(ascii: "#"), count: PipelineLimits.maxFileBytes + 1).write(to: url)
        XCTAssertThrowsError(try PipelineSpec.load(path: url.path)) { e in
            XCTAssertEqual("\(e)", "\(url.path): file of \(PipelineLimits.maxFileBytes + 1) bytes is larger than the limit of \(PipelineLimits.maxFileBytes)")
        }
    }
}
