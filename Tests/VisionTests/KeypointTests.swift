import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Keypoint R-CNN pieces against torch 2.15 / torchvision 0.29: bicubic heatmap resizing and
/// `heatmaps_to_keypoints` (values printed by torch for the same maps), and the keypoint metadata checks.
final class KeypointTests: XCTestCase {
    /// m[i] = 2 sin(0.37 i) + 3 cos(0.011 i) over a 56x56 map (i row-major); maps m, mᵀ and -m.
    func maps() -> [Float] {
        let m = (0..<3136).map { i -> Float in sinf(Float(i) * 0.37) * 2 + cosf(Float(i) * 0.011) * 3 }
        let t = (0..<3136).map { m[($0 % 56) * 56 + $0 / 56] }
        return m + t + m.map { -$0 }
    }

    func testBicubicResizeMatchesTorch() {
        let all = maps()
        // torch: F.interpolate(maps[:, None], size=(37, 23), mode="bicubic", align_corners=False)
        let sums: [Double] = [6.202599602751434, 10.253664064453915, -6.202599602751434]
        var resized: [[Float]] = []
        all.withUnsafeBufferPointer { p in
            for k in 0..<3 {
                resized.append(HeatmapKeypoints.resizeBicubic(UnsafeBufferPointer(rebasing: p[(k * 3136)..<((k + 1) * 3136)]),
                                                              height: 56, width: 56, outHeight: 37, outWidth: 23))
            }
        }
        for k in 0..<3 {
            XCTAssertEqual(resized[k].reduce(0.0) { $0 + Double($1) }, sums[k], accuracy: 1e-4)
        }
        let first: [Float] = [3.7983274459838867, 4.451845645904541, 3.9080708026885986, 2.5737199783325195, 1.479844570159912]
        for (a, b) in zip(resized[0].prefix(5), first) { XCTAssertEqual(a, b, accuracy: 2e-6) }
        XCTAssertEqual(resized[1][36 * 23 + 22], -1.3710670471191406, accuracy: 2e-6)
        XCTAssertEqual(resized[2][18 * 23 + 11], 1.7800898551940918, accuracy: 2e-6)
    }

    func testHeatmapsToKeypointsMatchesTorchvision() {
        // torchvision heatmaps_to_keypoints(maps, rois=[[10.25, 20.5, 32.75, 57.125]]): the box is 22.5 x 36.625,
        // so the maps are resized to 23 x 37 and the cell centres scaled by 22.5/23 and 36.625/37.
        let want: [(Float, Float, Float)] = [(19.54347801208496, 33.86317443847656, 4.986635208129883),
                                             (22.478260040283203, 46.73141860961914, 5.005540370941162),
                                             (26.39130401611328, 43.76182556152344, 4.9837422370910645)]
        let got = maps().withUnsafeBufferPointer {
            HeatmapKeypoints.decode($0, count: 3, size: 56, box: Box(x1: 10.25, y1: 20.5, x2: 32.75, y2: 57.125))
        }
        XCTAssertEqual(got.count, 3)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g.x, w.0, accuracy: 1e-4)
            XCTAssertEqual(g.y, w.1, accuracy: 1e-4)
            XCTAssertEqual(g.score, w.2, accuracy: 1e-5)
            XCTAssertEqual(g.visibility, 1)
        }
    }

    func testKeypointModelNeedsKeypointNames() throws {
        let url = URL(fileURLWithPath: "/models/kp.safetensors")
        XCTAssertThrowsError(try DetectorConfig(metadata: ["architecture": "keypointrcnn_resnet50_fpn"], file: url)) { e in
            XCTAssertTrue("\(e)".contains("/models/kp.safetensors"), "\(e)")
            XCTAssertTrue("\(e)".contains("'keypoint_names'"), "\(e)")
            XCTAssertTrue("\(e)".contains("a keypoint model must name its keypoints"), "\(e)")
        }
        XCTAssertThrowsError(try DetectorConfig(metadata: ["architecture": "keypointrcnn_resnet50_fpn",
                                                           "keypoint_names": "nose"], file: url)) { e in
            XCTAssertTrue("\(e)".contains("'keypoint_names' has an invalid value"), "\(e)")
        }
        let names = DetectorConfig.cocoKeypointNames
        let json = String(data: try JSONEncoder().encode(names), encoding: .utf8)!
        let c = try DetectorConfig(metadata: ["architecture": "keypointrcnn_resnet50_fpn", "keypoint_names": json],
                                   file: url)
        XCTAssertEqual(c.family, .keypointRCNN)
        XCTAssertEqual(c.keypointNames.count, 17)
        XCTAssertEqual(c.skeleton, Keypoint.cocoSkeleton)
        XCTAssertThrowsError(try DetectorConfig(metadata: ["architecture": "keypointrcnn_resnet50_fpn",
                                                           "keypoint_names": json, "keypoint_skeleton": "[[0, 17]]"],
                                                file: url))
        XCTAssertNil(DetectorConfig(architecture: "keypointrcnn_resnet50_fpn_v2"))
    }
}

extension KeypointTests {
    /// A synthetic keypointrcnn_resnet18_fpn (3 detections at most): every detection gets 17 keypoints inside its box;
    /// keypoint names that disagree with the predictor's width are refused.
    func testSyntheticKeypointModelRunsAndChecksItsNames() throws {
        let dir = TestPaths.temporaryDirectory("keypoints")
        defer { try? FileManager.default.removeItem(at: dir) }
        let names = String(data: try JSONEncoder().encode(DetectorConfig.cocoKeypointNames), encoding: .utf8)!
        var metadata = ["architecture": "keypointrcnn_resnet18_fpn", "keypoint_names": names, "score_thresh": "0.0",
                        "detections_per_img": "3", "min_size": "96", "max_size": "128",
                        "class_names": #"["__background__","person"]"#]
        let scratch = dir.appendingPathComponent("empty.safetensors")
        try SafeTensorsWriter.write([:], metadata: metadata, to: scratch)
        let expected = try DetectorLoader.expectedKeys(file: SafeTensorsFile(url: scratch),
                                                       config: DetectorConfig(metadata: metadata, file: scratch))
        XCTAssertEqual(expected["roi_heads.keypoint_head.14.weight"], [512, 512, 3, 3])
        XCTAssertEqual(expected["roi_heads.keypoint_predictor.kps_score_lowres.weight"], [512, 17, 4, 4])
        let tensors = SyntheticWeights.stateDict(expected: expected)
        let url = dir.appendingPathComponent("kp.safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        let detector = try DetectorLoader.load(contentsOf: url)
        var pixels = [UInt8](repeating: 0, count: 160 * 120 * 3)
        for i in pixels.indices { pixels[i] = UInt8((i * 5 + i / 480 * 11) % 256) }
        let dets = detector.detect(RGBImage(width: 160, height: 120, pixels: pixels), state: DetectorState())
        XCTAssertFalse(dets.isEmpty)
        for d in dets {
            let kps = try XCTUnwrap(d.keypoints)
            XCTAssertEqual(kps.count, 17)
            for k in kps {
                XCTAssertTrue(k.x >= d.box.x1 && k.x <= d.box.x2 && k.y >= d.box.y1 && k.y <= d.box.y2, "\(k) \(d.box)")
                XCTAssertTrue(k.score.isFinite)
            }
        }
        metadata["keypoint_names"] = #"["a","b"]"#
        let bad = dir.appendingPathComponent("bad.safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: bad)
        XCTAssertThrowsError(try DetectorLoader.load(contentsOf: bad)) { e in
            XCTAssertTrue("\(e)".contains("'keypoint_names' lists 2 keypoints but"), "\(e)")
            XCTAssertTrue("\(e)".contains("predicts 17"), "\(e)")
        }
    }
}
