import FPNCore
import Foundation
@testable import Outputs
import StagePipeline
import TestSupport
import XCTest

final class JSONBufferTests: XCTestCase {
    private func num(_ v: Double, _ d: Int) -> String {
        var j = JSONBuffer(); j.number(v, decimals: d); return j.string
    }

    func testNumbersAreCompactAndRounded() {
        XCTAssertEqual(num(12.5, 2), "12.5")
        XCTAssertEqual(num(3.0, 2), "3")
        XCTAssertEqual(num(0.98765, 4), "0.9877")
        XCTAssertEqual(num(-7.25, 2), "-7.25")
        XCTAssertEqual(num(-0.001, 2), "0")
        XCTAssertEqual(num(0.05, 2), "0.05")
        XCTAssertEqual(num(1764043200.123456, 6), "1764043200.123456")
        XCTAssertEqual(num(99.999, 2), "100")
        XCTAssertEqual(num(1e20, 2), "1e+20")
        XCTAssertEqual(num(.nan, 2), "null")
        XCTAssertEqual(num(.infinity, 2), "null")
        XCTAssertEqual(num(-.infinity, 4), "null")
        var j = JSONBuffer()
        j.beginArray(); j.int(Int.min); j.int(Int.max); j.int(0); j.int(-12); j.endArray()
        XCTAssertEqual(j.string, "[-9223372036854775808,9223372036854775807,0,-12]")
    }

    func testStringsAreEscapedAndRoundTrip() throws {
        let nasty = "a\"b\\c\nd\re\tf\u{08}\u{0C}\u{01}\u{1F} é 人 🚲 \u{7F}/"
        var j = JSONBuffer()
        j.beginObject(); j.key("k\"ey"); j.string(nasty); j.endObject()
        XCTAssertTrue(j.string.contains("\\u0001"), j.string)
        XCTAssertTrue(j.string.contains("\\u001f"), j.string)
        XCTAssertFalse(j.bytes.contains(0x0a), "no raw newline may appear inside a JSONL line")
        let parsed = try JSONSerialization.jsonObject(with: Data(j.bytes)) as? [String: String]
        XCTAssertEqual(parsed?["k\"ey"], nasty)
    }

    func testCommasInNestedContainers() throws {
        var j = JSONBuffer()
        j.beginObject()
        j.key("a"); j.beginArray(); j.int(1); j.beginObject(); j.key("x"); j.null(); j.key("y"); j.bool(true); j.endObject()
        j.beginArray(); j.endArray(); j.endArray()
        j.key("b"); j.bool(false)
        j.endObject()
        XCTAssertEqual(j.string, #"{"a":[1,{"x":null,"y":true},[]],"b":false}"#)
    }
}

final class JSONLRecordTests: XCTestCase {
    static func sampleResult() throws -> FrameResult {
        let mask = MaskRLE(rowMajor: [0, 1, 1, 0,
                                      0, 1, 1, 0,
                                      0, 0, 0, 0], height: 3, width: 4)
        let info = FrameInfo(index: 41, pts: 1.64, wallTime: 1764043200.25, width: 768, height: 576,
                             source: "rtsp://admin:hunter2@cam.local:554/live?token=abc&ch=1")
        let dets = [
            Detection(box: Box(x1: 10.123, y1: 20.5, x2: 110.999, y2: 220), score: 0.98766, classID: 1,
                      className: "person", trackID: 12, mask: mask,
                      landmarks: [Point(x: 1.234, y: 5.678), Point(x: 9, y: 10)]),
            Detection(box: Box(x1: 0, y1: 0, x2: 5, y2: 5), score: .nan, classID: 3, className: "car \"fast\"\n"),
        ]
        return FrameResult(info: info, detections: dets, recomputedFraction: 0.25, timingsMs: ["detect": 81.25])
    }

    func testFrameLineFieldsParseBack() throws {
        let line = JSONLRecord.frame(try Self.sampleResult())
        XCTAssertEqual(line.last, 0x0a)
        XCTAssertEqual(line.filter { $0 == 0x0a }.count, 1, "exactly one newline, at the end")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        XCTAssertEqual(obj["type"] as? String, "frame")
        XCTAssertEqual(obj["schema"] as? Int, 1)
        XCTAssertEqual(obj["source"] as? String, "rtsp://***@cam.local:554/live?token=***&ch=1")
        XCTAssertEqual(obj["frame"] as? Int, 41)
        XCTAssertEqual(obj["pts"] as? Double, 1.64)
        XCTAssertEqual(obj["wall_time"] as? Double, 1764043200.25)
        XCTAssertEqual(obj["width"] as? Int, 768)
        XCTAssertEqual(obj["height"] as? Int, 576)
        XCTAssertEqual(obj["recomputed"] as? Double, 0.25)
        XCTAssertEqual((obj["timings_ms"] as? [String: Double])?["detect"], 81.25)
        let dets = try XCTUnwrap(obj["detections"] as? [[String: Any]])
        XCTAssertEqual(dets.count, 2)
        XCTAssertEqual(dets[0]["box"] as? [Double], [10.12, 20.5, 111, 220])
        XCTAssertEqual(dets[0]["score"] as? Double, 0.9877)
        XCTAssertEqual(dets[0]["class_id"] as? Int, 1)
        XCTAssertEqual(dets[0]["class"] as? String, "person")
        XCTAssertEqual(dets[0]["track_id"] as? Int, 12)
        XCTAssertEqual(dets[0]["landmarks"] as? [[Double]], [[1.23, 5.68], [9, 10]])
        let mask = try XCTUnwrap(dets[0]["mask"] as? [String: Any])
        XCTAssertEqual(mask["size"] as? [Int], [3, 4])
        let counts = try XCTUnwrap(mask["counts"] as? String)
        let decoded = try MaskRLE(cocoString: counts, height: 3, width: 4)
        XCTAssertEqual(decoded.area, 4)
        XCTAssertTrue(dets[1]["score"] is NSNull, "NaN is written as null")
        XCTAssertEqual(dets[1]["class"] as? String, "car \"fast\"\n")
        XCTAssertNil(dets[1]["track_id"], "absent, not null, when untracked")
        XCTAssertNil(dets[1]["mask"])
    }

    func testOptionsLeaveOutMasksAndTimings() throws {
        let line = JSONLRecord.frame(try Self.sampleResult(), options: .init(masks: false, timings: false))
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        XCTAssertNil(obj["timings_ms"])
        XCTAssertNil((obj["detections"] as? [[String: Any]])?[0]["mask"])
    }

    func testEventStatsAndSummaryLines() throws {
        let ev = JSONLRecord.event("reconnected", source: "rtsp://u:p@h/x", wallTime: 10.5, frame: 99,
                                   message: "after 2 attempts", fields: [("attempts", .int(2))])
        let e = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(ev)) as? [String: Any])
        XCTAssertEqual(e["type"] as? String, "event")
        XCTAssertEqual(e["event"] as? String, "reconnected")
        XCTAssertEqual(e["frame"] as? Int, 99)
        XCTAssertEqual(e["attempts"] as? Int, 2)
        XCTAssertEqual(e["source"] as? String, "rtsp://***@h/x")

        var h = LatencyHistogram(); h.record(ms: 2); h.record(ms: 4)
        let stage = StageMetrics(name: "detect", count: 2, drops: 1, queueCapacity: 4, maxQueueDepth: 3, latency: h)
        let st = JSONLRecord.stats(source: "a.mp4", wallTime: 1, frames: 2, fps: 29.971, stages: [stage])
        let s = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(st)) as? [String: Any])
        XCTAssertEqual(s["type"] as? String, "stats")
        XCTAssertEqual(s["fps"] as? Double, 29.97)
        let st0 = try XCTUnwrap((s["stages"] as? [[String: Any]])?.first)
        XCTAssertEqual(st0["name"] as? String, "detect")
        XCTAssertEqual(st0["drops"] as? Int, 1)
        XCTAssertEqual(st0["mean_ms"] as? Double, 3)

        let err = PipelineError(stage: "detect", phase: .process, frameIndex: 7, underlying: OutputError.writeFailed(path: "x", reason: "disk full"))
        let report = PipelineReport(completion: .failed(err), stages: [stage], wallSeconds: 1.5)
        let sm = JSONLRecord.summary(source: "a.mp4", wallTime: 2, frames: 7, report: report,
                                     fields: [("decode_errors", .int(0))])
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(sm)) as? [String: Any])
        XCTAssertEqual(m["type"] as? String, "summary")
        XCTAssertEqual(m["completion"] as? String, "failed")
        XCTAssertEqual(m["error"] as? String, "stage 'detect' failed on frame 7: cannot write output 'x': disk full")
        XCTAssertEqual(m["wall_seconds"] as? Double, 1.5)
        XCTAssertEqual(m["decode_errors"] as? Int, 0)
    }

    func testSourceIsRedactedOnEveryLineType() throws {
        var r = try Self.sampleResult()
        r.info.source = "rtsp://admin:secret@10.0.0.2/s?token=abc"
        let lines = [JSONLRecord.frame(r), JSONLRecord.event("x", source: r.info.source, wallTime: 0),
                     JSONLRecord.stats(source: r.info.source, wallTime: 0, frames: 0, fps: 0, stages: [])]
        for l in lines {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l)) as? [String: Any])
            XCTAssertEqual(o["source"] as? String, "rtsp://***@10.0.0.2/s?token=***")
        }
    }
}

final class JSONLWriterTests: XCTestCase {
    func testWritesWholeLinesReadableAsTheyAreWritten() throws {
        let dir = TestPaths.temporaryDirectory("jsonl")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("out.jsonl").path
        let writer = try JSONLWriter(path: path)
        var base = try JSONLRecordTests.sampleResult()
        for i in 0..<3 {
            base.info.index = i
            try writer.writeFrame(base)
            // Unbuffered: the line is in the file before the next one is written (what `tail -f` relies on).
            let text = try String(contentsOfFile: path, encoding: .utf8)
            XCTAssertEqual(text.split(separator: "\n").count, i + 1)
            XCTAssertTrue(text.hasSuffix("\n"))
        }
        try writer.writeLine(JSONLRecord.event("disconnected", source: "x", wallTime: 0))
        try writer.close()
        XCTAssertEqual(writer.frameLines, 3)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        let types = try lines.map { l -> String in
            let o = try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any]
            return o?["type"] as? String ?? "?"
        }
        XCTAssertEqual(types, ["frame", "frame", "frame", "event"])
        XCTAssertThrowsError(try writer.writeFrame(base), "writing after close fails")
    }

    func testUnwritablePathNamesTheFile() {
        XCTAssertThrowsError(try JSONLWriter(path: "/nonexistent-dir/x.jsonl")) { error in
            XCTAssertEqual("\(error)", "cannot open output '/nonexistent-dir/x.jsonl': No such file or directory")
        }
    }

    func testAsPipelineSink() throws {
        let dir = TestPaths.temporaryDirectory("jsonl-sink")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("o.jsonl").path
        let writer = try JSONLWriter(path: path)
        let frames = (0..<20).map { i in
            FrameResult(info: FrameInfo(index: i, pts: Double(i) / 10, wallTime: 0, width: 4, height: 4, source: "s"))
        }
        try Pipeline.from(ArraySource(frames)).sink(JSONLSink(writer)).run()
        try writer.close()
        let idx = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { l in
            (try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])?["frame"] as? Int
        }
        XCTAssertEqual(idx, Array(0..<20))
    }
}
