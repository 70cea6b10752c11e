import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// The FPN level of a box (eq. 1 of the FPN paper, torchvision's `LevelMapper`) and the detector state's pyramid
/// observer that `fpnstream features --visualize` reads the levels through.
final class LevelAssignmentTests: XCTestCase {
    func square(_ side: Float) -> Box { Box(x1: 10, y1: 20, x2: 10 + side, y2: 20 + side) }

    func testLevelOfInputBoxFollowsEquationOneAndClamps() {
        let a = LevelAssignment(levels: 2...5)
        XCTAssertEqual(a.level(ofInputBox: square(224)), 4)    // the canonical ImageNet size → P4
        XCTAssertEqual(a.level(ofInputBox: square(223)), 3)
        XCTAssertEqual(a.level(ofInputBox: square(112)), 3)
        XCTAssertEqual(a.level(ofInputBox: square(111)), 2)
        XCTAssertEqual(a.level(ofInputBox: square(448)), 5)
        XCTAssertEqual(a.level(ofInputBox: square(2000)), 5)   // clamped to the top pooled level
        XCTAssertEqual(a.level(ofInputBox: square(4)), 2)      // clamped to the bottom
        // A non-square box uses sqrt(w h): 448 x 112 has sqrt(area) 224 → P4.
        XCTAssertEqual(a.level(ofInputBox: Box(x1: 0, y1: 0, x2: 448, y2: 112)), 4)
        XCTAssertEqual(LevelAssignment(levels: 3...7).level(ofInputBox: square(2000)), 7)
        XCTAssertEqual(LevelAssignment(levels: 3...7).level(ofInputBox: square(50)), 3)
    }

    func testSourceBoxIsMappedToInputPixelsFirst() {
        // A 640x480 frame resized to 1066x800 (x 1.666): a 134.4 px source box is 224 input pixels → P4,
        // while the same box measured in source pixels would be P3.
        let g = DetectionTransform(TransformConfig(resize: .shorterSide(min: 800, max: 1333))).geometry(width: 640, height: 480)
        XCTAssertEqual([g.resizedWidth, g.resizedHeight], [1066, 800])
        let a = LevelAssignment(levels: 2...5)
        XCTAssertEqual(a.level(ofSourceBox: Box(x1: 100, y1: 100, x2: 234.5, y2: 234.5), geometry: g), 4)
        XCTAssertEqual(a.level(ofInputBox: Box(x1: 100, y1: 100, x2: 234.5, y2: 234.5)), 3)
    }

    func testDetectorLevelsAndPyramidObserver() throws {
        for (name, levels, names) in [("tiny-maskrcnn", 2...5, ["p2", "p3", "p4", "p5", "p6"]),
                                      ("tiny-retinanet-v2", 3...7, ["p3", "p4", "p5", "p6", "p7"])] {
            let (weights, fixture) = try DetectorParityTests.materialize(name)
            defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
            let detector = try DetectorLoader.load(contentsOf: weights)
            XCTAssertEqual(LevelAssignment(detector: detector).levels, levels, name)
            let image = try DetectorParityTests.image(fixture)
            let state = DetectorState()
            var calls = 0
            var seen: [(name: String, shape: [Int], sum: Double)] = []
            var geometry: TransformGeometry?
            state.pyramidObserver = { pyramid, g in
                calls += 1
                geometry = g
                seen = pyramid.levels.map { ($0.name, $0.features.shape, $0.features.array.reduce(0) { $0 + Double($1) }) }
            }
            let dets = detector.detect(image, state: state)
            XCTAssertEqual(calls, 1, name)
            XCTAssertEqual(seen.map(\.name), names, name)
            XCTAssertEqual(geometry?.sourceWidth, image.width)
            XCTAssertEqual(geometry?.sourceHeight, image.height)
            // The observed levels are the backbone's output on the transformed frame.
            let ws = Workspace()
            let (input, _) = DetectionTransform(detector.config.transform)(image, workspace: ws)
            let direct = detector.backbone(input, workspace: ws).levels
            for (s, d) in zip(seen, direct) {
                XCTAssertEqual(s.shape, d.features.shape, "\(name) \(s.name)")
                XCTAssertEqual(s.sum, d.features.array.reduce(0) { $0 + Double($1) }, accuracy: 1e-6 * max(1, abs(s.sum)),
                               "\(name) \(s.name)")
            }
            // Observing changes nothing in the detections.
            XCTAssertEqual(detector.detect(image, state: DetectorState()), dets, name)
        }
    }
}
