import FPNCore
@testable import FPNStream
import Foundation
import MediaIO
import TestSupport
import Tracking
import XCTest

/// The runner through its library API with a fixed-box detector in the detector slot: every output sees the
/// detections, the video is annotated, a tracker assigns one id.
final class StreamRunnerTests: XCTestCase {
    /// Reports one person box on every frame.
    struct FixedBoxDetector: FrameDetector {
        var name: String { "fixed" }
        func detect(_ frame: Frame, into result: inout FrameResult) throws {
            result.detections = [Detection(box: Box(x1: 40, y1: 30, x2: 120, y2: 90), score: 0.9, classID: 1,
                                           className: "person")]
        }
    }

    func testDetectionsReachEveryOutputAndTheVideoIsAnnotated() throws {
        let dir = TestPaths.temporaryDirectory("runner")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("grey.mkv").path
        try ExternalTools.ffmpeg(["-f", "lavfi", "-i", "color=c=0x808080:s=160x120:r=10:d=1", "-c:v", "ffv1", input])
        var options = RunOptions(input: input, output: dir.appendingPathComponent("out.mkv").path,
                                 jsonl: dir.appendingPathComponent("out.jsonl").path)
        options.coco = dir.appendingPathComponent("coco.json").path
        options.tracker = ByteTrackConfig()
        options.detector = FixedBoxDetector()
        let runner = try StreamRunner(options: options)
        let summary = try runner.run()
        XCTAssertEqual(summary.framesProcessed, 10)
        XCTAssertFalse(summary.stopped)

        // JSONL: the box in source pixels on every frame, one track id once the track is confirmed.
        let lines = try String(contentsOfFile: options.jsonl!, encoding: .utf8).split(separator: "\n")
        let frames = try lines.compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "frame" }
        XCTAssertEqual(frames.count, 10)
        let last = try XCTUnwrap((frames.last?["detections"] as? [[String: Any]])?.first)
        XCTAssertEqual(last["box"] as? [Double], [40, 30, 120, 90])
        XCTAssertEqual(last["class"] as? String, "person")
        XCTAssertNotNil(last["track_id"] as? Int)

        // COCO: a complete JSON array, one entry per frame, bbox as x, y, w, h.
        let coco = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: options.coco!))) as? [[String: Any]])
        XCTAssertEqual(coco.count, 10)
        XCTAssertEqual(coco.first?["bbox"] as? [Double], [40, 30, 80, 60])

        // Video: the box outline is drawn (far from grey), the inside is untouched.
        let decoder = try VideoDecoder(location: options.output!)
        var n = 0
        while let f = decoder.nextFrame() {
            let edge = f.image[40, 60], inside = f.image[80, 60]
            let edgeDistance = [Int(edge.r), Int(edge.g), Int(edge.b)].map { abs($0 - 128) }.max()!
            XCTAssertGreaterThan(edgeDistance, 60, "frame \(n): box edge not drawn")
            XCTAssertEqual(Int(inside.r), 128, accuracy: 8)
            XCTAssertEqual(Int(inside.g), 128, accuracy: 8)
            n += 1
        }
        XCTAssertEqual(n, 10)
    }
}
