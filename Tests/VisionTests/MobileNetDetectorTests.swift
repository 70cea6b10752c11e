import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// torchvision's Faster R-CNN builders on MobileNetV3-Large-FPN: their defaults, anchors and pooled levels, and a
/// whole synthetic model running end to end. (Numerical parity with torch: `scripts/parity mobilenet-v3-fpn` and
/// `mobilenet-v3-320-fpn`.)
final class MobileNetDetectorTests: XCTestCase {
    func testBuilderDefaults() throws {
        let fpn = try XCTUnwrap(DetectorConfig(architecture: "fasterrcnn_mobilenet_v3_large_fpn"))
        XCTAssertEqual(fpn.family, .fasterRCNN)
        XCTAssertEqual(fpn.backbone.body, .mobileNetV3Large)
        XCTAssertEqual(fpn.rpn.scoreThreshold, 0.05)
        XCTAssertEqual([fpn.rpn.preNMSTopN, fpn.rpn.postNMSTopN], [1000, 1000])
        XCTAssertEqual(fpn.transform.resize, .shorterSide(min: 800, max: 1333))
        let small = try XCTUnwrap(DetectorConfig(architecture: "fasterrcnn_mobilenet_v3_large_320_fpn"))
        XCTAssertEqual(small.transform.resize, .shorterSide(min: 320, max: 640))
        XCTAssertEqual([small.rpn.preNMSTopN, small.rpn.postNMSTopN], [150, 150])
        XCTAssertEqual(small.rpn.scoreThreshold, 0.05)
        // Five sizes on each of three levels, ratio-major: 15 anchors per location.
        XCTAssertEqual((0..<3).map { small.anchorGenerator.anchorsPerLocation(level: $0) }, [15, 15, 15])
        XCTAssertEqual(small.anchorGenerator.cellAnchors(level: 2)[0], Box(x1: -23, y1: -11, x2: 23, y2: 11))
        XCTAssertEqual(small.pooledLevelCount, 2)
        XCTAssertEqual(DetectorConfig(architecture: "fasterrcnn_resnet50_fpn")?.pooledLevelCount, 4)
        XCTAssertEqual(DetectorConfig(architecture: "fasterrcnn_resnet50_fpn")?.rpn.scoreThreshold, 0)
        // Metadata sizes still win over the builder's.
        let url = URL(fileURLWithPath: "/m.safetensors")
        let m = try DetectorConfig(metadata: ["architecture": "fasterrcnn_mobilenet_v3_large_320_fpn", "min_size": "400",
                                              "rpn_score_thresh": "0.2"], file: url)
        XCTAssertEqual(m.transform.resize, .shorterSide(min: 400, max: 640))
        XCTAssertEqual(m.rpn.scoreThreshold, 0.2)
        XCTAssertNil(DetectorConfig(architecture: "maskrcnn_mobilenet_v3_large_fpn"))
    }

    /// A synthetic fasterrcnn_mobilenet_v3_large_320_fpn with 3 classes runs on a real frame.
    func testSyntheticModelRunsEndToEnd() throws {
        let dir = TestPaths.temporaryDirectory("mobilenet")
        defer { try? FileManager.default.removeItem(at: dir) }
        let metadata = ["architecture": "fasterrcnn_mobilenet_v3_large_320_fpn", "score_thresh": "0.0",
                        "rpn_score_thresh": "0.0", "class_names": #"["__background__","a","b"]"#]
        let scratch = dir.appendingPathComponent("empty.safetensors")
        try SafeTensorsWriter.write([:], metadata: metadata, to: scratch)
        let expected = try DetectorLoader.expectedKeys(file: SafeTensorsFile(url: scratch),
                                                       config: DetectorConfig(metadata: metadata, file: scratch))
        XCTAssertEqual(expected["rpn.head.cls_logits.weight"], [15, 256, 1, 1])
        XCTAssertEqual(expected["backbone.body.13.block.2.fc1.weight"], [168, 672, 1, 1])
        let url = dir.appendingPathComponent("m.safetensors")
        try SafeTensorsWriter.write(SyntheticWeights.stateDict(expected: expected), metadata: metadata, to: url)
        let detector = try DetectorLoader.load(contentsOf: url)
        XCTAssertEqual(LevelAssignment(detector: detector).levels, 5...5)
        var pixels = [UInt8](repeating: 0, count: 200 * 150 * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 7 + i / 600 * 13) % 256) }
        let image = RGBImage(width: 200, height: 150, pixels: pixels)
        let state = DetectorState()
        var names: [String] = []
        var shapes: [[Int]] = []
        state.pyramidObserver = { p, _ in names = p.levels.map(\.name); shapes = p.levels.map(\.features.shape) }
        let dets = detector.detect(image, state: state)
        // 200x150 → 320 short side (427x320, padded 448x320): stride-32 levels 14x10 (p5a, p5b), p6 7x5.
        XCTAssertEqual(names, ["p5a", "p5b", "p6"])
        XCTAssertEqual(shapes, [[1, 256, 10, 14], [1, 256, 10, 14], [1, 256, 5, 7]])
        XCTAssertFalse(dets.isEmpty)
        XCTAssertEqual(dets.map(\.score), dets.map(\.score).sorted(by: >))
        for d in dets {
            XCTAssertTrue(d.box.x1 >= 0 && d.box.x2 <= 200 && d.box.y1 >= 0 && d.box.y2 <= 150, "\(d.box)")
            XCTAssertTrue(["a", "b"].contains(d.className))
        }
        XCTAssertEqual(detector.detect(image, state: state), dets)
    }
}
