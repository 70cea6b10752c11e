import Foundation
import TestSupport
import XCTest

/// `fpnstream process --model x.onnx` with Ultralytics YOLO files (Tests/Fixtures/onnx, scripts/fixtures yolo).
extension ProcessCommandTests {
    /// The tiny YOLO file predicts one box (centre 32,32, 20x20 in its 64x64 input, class 'dog', score 0.9) at every
    /// anchor; with no flags every frame of a 160x120 clip gets that one box mapped back through the letterbox
    /// (gain 0.4, 64x48 content at top 8): x 55...105, y 35...85.
    func testYOLOModelRunsWithNoFlagsAndBoxesComeBackThroughTheLetterbox() throws {
        let clip = try makeClip(seconds: 1)
        let model = TestPaths.fixtures.appendingPathComponent("onnx/yolo-tiny-detect.onnx").path
        let out = path("yolo.jsonl")
        let r = try fpnstream(["process", clip, "--model", model, "--jsonl", out, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frames = frameLines(try jsonlObjects(out))
        XCTAssertEqual(frames.count, 10)
        for f in frames {
            let dets = try XCTUnwrap(f["detections"] as? [[String: Any]])
            XCTAssertEqual(dets.count, 1)
            let d = try XCTUnwrap(dets.first)
            XCTAssertEqual(d["class"] as? String, "dog")
            XCTAssertEqual(d["score"] as? Double ?? 0, 0.9, accuracy: 1e-6)
            let box = try XCTUnwrap(d["box"] as? [Double])
            for (got, want) in zip(box, [55.0, 35, 105, 85]) { XCTAssertEqual(got, want, accuracy: 1e-3) }
        }
    }

    /// An ONNX file with an unknown output layout: one error naming the file, its layout and the layouts expected.
    func testONNXWithUnknownOutputLayoutIsRefusedNamingTheExpectedLayouts() throws {
        let clip = try makeClip(seconds: 1)
        let model = TestPaths.fixtures.appendingPathComponent("onnx/not-yolo.onnx").path
        let r = try fpnstream(["process", clip, "--model", model, "--jsonl", path("x.jsonl")])
        XCTAssertNotEqual(r.status, 0)
        let lines = errorLines(r)
        XCTAssertEqual(lines.count, 1, r.stderr)
        let m = lines.first ?? ""
        XCTAssertTrue(m.contains(model) && m.contains("unknown output layout [[1, 3, 64, 64]]")
                      && m.contains("detect = one output [1, 4+classes, anchors]")
                      && m.contains("segment = [1, 4+classes+32, anchors] and prototypes [1, 32, H/4, W/4]"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x.jsonl")), "no partial output")
    }
}
