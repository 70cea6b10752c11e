import FPNCore
import Foundation
import Outputs
import StagePipeline
import TestSupport
import XCTest

/// Checks the lines the writer produces against docs/jsonl.schema.json's required fields and types, parsing both
/// with JSONSerialization (scripts/validate-jsonl runs a full JSON Schema validator on real output).
final class JSONLSchemaTests: XCTestCase {
    private func schema() throws -> [String: Any] {
        let url = TestPaths.root.appendingPathComponent("docs/jsonl.schema.json")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func def(_ name: String) throws -> [String: Any] {
        try XCTUnwrap((try schema()["$defs"] as? [String: Any])?[name] as? [String: Any], name)
    }

    private func parse(_ line: [UInt8]) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
    }

    /// Every required key is present and its JSON type is one the schema allows.
    private func check(_ object: [String: Any], against d: [String: Any], _ what: String) throws {
        let required = try XCTUnwrap(d["required"] as? [String], what)
        XCTAssertFalse(required.isEmpty)
        let props = d["properties"] as? [String: Any] ?? [:]
        for key in required {
            guard let value = object[key] else { XCTFail("\(what): missing required '\(key)'"); continue }
            guard let p = props[key] as? [String: Any] else { continue }
            if let c = p["const"] { XCTAssertEqual("\(c)", "\(value)", "\(what).\(key)") }
            if let e = p["enum"] as? [String] { XCTAssertTrue(e.contains("\(value)"), "\(what).\(key) = \(value)") }
            if let t = p["type"] as? String { XCTAssertTrue(Self.matches(value, t), "\(what).\(key): \(value) is not \(t)") }
        }
    }

    static func matches(_ v: Any, _ type: String) -> Bool {
        switch type {
        case "string": return v is String
        // The text has no fraction (the serializer writes 3.0 as 3, so only integral values can be integers).
        case "integer": return (v as? NSNumber).map { $0.doubleValue == $0.doubleValue.rounded() } ?? false
        case "number": return v is NSNumber
        case "array": return v is [Any]
        case "object": return v is [String: Any]
        case "boolean": return v is Bool
        default: return true
        }
    }

    func testTopLevelRequiredFieldsMatchEveryLineType() throws {
        let top = try XCTUnwrap(try schema()["required"] as? [String])
        XCTAssertEqual(Set(top), ["type", "schema", "source", "wall_time"])
        XCTAssertEqual((try schema()["properties"] as? [String: Any]).flatMap { ($0["type"] as? [String: Any])?["enum"] as? [String] },
                       ["frame", "event", "stats", "summary"])
    }

    func testFrameLineSatisfiesTheSchema() throws {
        let mask = MaskRLE(rowMajor: [1, 0, 0, 1], height: 2, width: 2)
        let r = FrameResult(info: FrameInfo(index: 3, pts: 0.12, wallTime: 1_764_043_200, width: 2, height: 2,
                                            source: "rtsp://u:pw@cam/x"),
                            detections: [Detection(box: Box(x1: 0, y1: 0, x2: 2, y2: 2), score: 0.5, classID: 1,
                                                   className: "person", trackID: 4, mask: mask,
                                                   landmarks: [Point(x: 1, y: 1)])],
                            panoptic: [PanopticSegment(id: 1, categoryID: 184, categoryName: "sky", isThing: false,
                                                       area: 2, score: nil, mask: mask)],
                            recomputedFraction: 0.5, timingsMs: ["detect": 1])
        let line = try parse(JSONLRecord.frame(r))
        try check(line, against: try def("frame"), "frame")
        let det = try XCTUnwrap((line["detections"] as? [[String: Any]])?.first)
        try check(det, against: try def("detection"), "detection")
        try check(try XCTUnwrap(det["mask"] as? [String: Any]), against: try def("mask"), "mask")
        try check(try XCTUnwrap((line["panoptic"] as? [[String: Any]])?.first), against: try def("segment"), "segment")
        // Values, not only presence.
        XCTAssertEqual(line["frame"] as? Int, 3)
        XCTAssertEqual(line["pts"] as? Double, 0.12)
        XCTAssertEqual(line["source"] as? String, "rtsp://***@cam/x")
        XCTAssertEqual(det["track_id"] as? Int, 4)
        // Every property the writer emits is documented in the schema.
        let documented = Set(((try def("frame"))["properties"] as? [String: Any] ?? [:]).keys)
            .union(["type", "schema", "source", "wall_time"])
        XCTAssertTrue(Set(line.keys).isSubset(of: documented), "\(Set(line.keys).subtracting(documented))")
        let detDocumented = Set(((try def("detection"))["properties"] as? [String: Any] ?? [:]).keys)
        XCTAssertTrue(Set(det.keys).isSubset(of: detDocumented), "\(Set(det.keys).subtracting(detDocumented))")
    }

    func testEventStatsSummaryLinesSatisfyTheSchema() throws {
        var h = LatencyHistogram(); h.record(ms: 3)
        let stages = [StageMetrics(name: "decode", count: 1, latency: h)]
        let ev = try parse(JSONLRecord.event("disconnected", source: "s", wallTime: 1, frame: 9, message: "EOF"))
        try check(ev, against: try def("event"), "event")
        let st = try parse(JSONLRecord.stats(source: "s", wallTime: 1, frames: 1, fps: 10, stages: stages))
        try check(st, against: try def("stats"), "stats")
        try check(try XCTUnwrap((st["stages"] as? [[String: Any]])?.first), against: try def("stage"), "stage")
        for completion in [PipelineCompletion.finished, .drained, .aborted,
                           .failed(PipelineError(stage: "x", phase: .process, underlying: OutputError.cannotOpen(path: "p", reason: "r")))] {
            let sm = try parse(JSONLRecord.summary(source: "s", wallTime: 1, frames: 1,
                                                   report: PipelineReport(completion: completion, stages: stages, wallSeconds: 1)))
            try check(sm, against: try def("summary"), "summary \(completion)")
        }
    }
}
