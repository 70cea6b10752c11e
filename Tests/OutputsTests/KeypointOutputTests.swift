import FPNCore
@testable import Outputs
import TestSupport
import XCTest

/// Keypoint R-CNN detections in the outputs: JSONL `keypoints` / `keypoint_scores`, COCO keypoint results and the
/// skeleton in the annotated video.
final class KeypointOutputTests: XCTestCase {
    /// A person with COCO's 17 keypoints on a vertical line x = 20, y = 10 + 3k; keypoint 16 has a negative score.
    func person() -> Detection {
        var d = Detection(box: Box(x1: 10, y1: 5, x2: 30, y2: 70), score: 0.9, classID: 1, className: "person")
        d.keypoints = (0..<17).map { (k: Int) -> Keypoint in
            let score: Float = k == 16 ? -1.5 : Float(k) + 0.25
            return Keypoint(x: 20, y: Float(10 + 3 * k), score: score)
        }
        return d
    }

    func frame(_ d: Detection) -> FrameResult {
        FrameResult(info: FrameInfo(index: 7, pts: 0, wallTime: 0, width: 80, height: 80, source: "s"), detections: [d])
    }

    func testJSONLHasCOCOFlatKeypointsAndScores() throws {
        let line = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(JSONLRecord.frame(frame(person()))))
                                 as? [String: Any])
        let det = try XCTUnwrap((line["detections"] as? [[String: Any]])?.first)
        let kps = try XCTUnwrap(det["keypoints"] as? [Double])
        XCTAssertEqual(kps.count, 51)
        XCTAssertEqual(Array(kps[3..<6]), [20, 13, 1])   // keypoint 1: x, y, v
        let scores = try XCTUnwrap(det["keypoint_scores"] as? [Double])
        XCTAssertEqual(scores.count, 17)
        XCTAssertEqual(scores[2], 2.25)
        XCTAssertEqual(scores[16], -1.5)
    }

    func testCOCOResultsCarryKeypoints() throws {
        let dir = TestPaths.temporaryDirectory("coco-kp")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("kp.json").path
        let w = try COCOResultsWriter(path: path)
        try w.write(frame(person()))
        try w.close()
        let arr = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                                as? [[String: Any]])
        let kps = try XCTUnwrap(arr.first?["keypoints"] as? [Double])
        XCTAssertEqual(kps.count, 51)
        XCTAssertEqual(Array(kps[48..<51]), [20, 58, 1])
        XCTAssertEqual(arr.first?["image_id"] as? Int, 7)
    }

    func testSkeletonIsDrawnBetweenConfidentKeypoints() {
        var img = RGBImage(width: 80, height: 80)
        var style = AnnotationStyle()
        style.boxes = false; style.labels = false
        var d = person()
        // Move the left ankle (15) and knee (13) sideways so the 15-13 edge is a diagonal we can probe.
        d.keypoints![13] = Keypoint(x: 40, y: 40, score: 1)
        d.keypoints![15] = Keypoint(x: 60, y: 60, score: 1)
        Annotator(style: style).draw(frame(d), on: &img)
        let c = Palette.color(for: d)
        let mid = img[50, 50]
        XCTAssertTrue(mid == (c.r, c.g, c.b), "edge 15-13 midpoint \(mid)")
        // Edge 16-14 ((20, 58)-(20, 52)) is not drawn: keypoint 16's score is below 0. (20, 56) is past keypoint 14's
        // dot (rows 49...55) and would be on that edge.
        let below = img[20, 56]
        XCTAssertTrue(below == (0, 0, 0), "edge 16-14 must not be drawn: \(below)")
        // Keypoints off: nothing drawn at all.
        var plain = RGBImage(width: 80, height: 80)
        style.keypoints = false
        Annotator(style: style).draw(frame(d), on: &plain)
        XCTAssertEqual(plain.pixels, RGBImage(width: 80, height: 80).pixels)
    }
}
