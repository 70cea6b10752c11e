import FPNCore
@testable import FPNStream
import Tensor
import TemporalReuse
import TestSupport
import XCTest

@testable import Serve

/// Cameras of one `serve` share each loaded model: ONNX networks like safetensors models.
final class ModelCacheTests: XCTestCase {
    private let yolo = TestPaths.fixtures.appendingPathComponent("onnx/yolo-tiny-detect.onnx").path

    private func frame(width: Int = 160, height: Int = 120) -> Frame {
        Frame(info: FrameInfo(index: 0, pts: 0, wallTime: 0, width: width, height: height, source: "t"),
              image: RGBImage(width: width, height: height))
    }

    /// Same path and settings: one network, read once; each camera its own session; both find the fixture's box.
    func testCamerasOnOneONNXModelShareItsNetworkNotTheirSessions() throws {
        let cache = ModelCache()
        let spec = ModelSpec(path: yolo)
        let a = try XCTUnwrap(try cache.detector(for: spec, pipelineFile: "cameras.a") as? YOLOFrameDetector)
        let b = try XCTUnwrap(try cache.detector(for: spec, pipelineFile: "cameras.b") as? YOLOFrameDetector)
        XCTAssertEqual(cache.count, 1)
        XCTAssertTrue(a.detector.network === b.detector.network, "one network for both cameras")
        XCTAssertFalse(a.detector === b.detector, "each camera its own session and buffers")
        // The fixture predicts one 'dog' box, mapped back through the letterbox to x 55...105, y 35...85.
        for d in [a, b] {
            var r = FrameResult(info: frame().info)
            try d.detect(frame(), into: &r)
            XCTAssertEqual(r.detections.map(\.className), ["dog"])
            XCTAssertEqual(Double(r.detections.first?.box.x1 ?? 0), 55, accuracy: 1e-3)
            XCTAssertEqual(Double(r.detections.first?.box.y2 ?? 0), 85, accuracy: 1e-3)
        }

        // Other settings are another model; dropping it from the cameras in use forgets it.
        var stricter = spec
        stricter.score = 0.95
        let c = try XCTUnwrap(try cache.detector(for: stricter, pipelineFile: "cameras.c") as? YOLOFrameDetector)
        XCTAssertEqual(cache.count, 2)
        var r = FrameResult(info: frame().info)
        try c.detect(frame(), into: &r)
        XCTAssertEqual(r.detections.count, 0, "score 0.9 is below the camera's 0.95")
        cache.retain(only: [spec])
        XCTAssertEqual(cache.count, 1)
    }

    /// A bad ONNX model is one error naming the camera's pipeline and key, and nothing is cached.
    func testABadONNXModelIsAnErrorAndNotCached() {
        let cache = ModelCache()
        XCTAssertThrowsError(try cache.detector(for: ModelSpec(path: "/nonexistent/m.onnx"), pipelineFile: "cameras.x")) {
            XCTAssertTrue("\($0)".hasPrefix("cameras.x: model.path: "), "\($0)")
        }
        XCTAssertEqual(cache.count, 0)
    }

    /// Cameras serialized on one inference slot share one forward-pass arena: each camera's results are exactly
    /// those of a detector with its own arena, frame after frame, with two frame sizes and temporal delta
    /// interleaved; the shared arena is as large as the largest pass, not the sum.
    func testOneArenaForCamerasThatInferInTurnChangesNoResult() throws {
        let model = TestPaths.samples.appendingPathComponent("models/demo.safetensors").path
        guard FileManager.default.fileExists(atPath: model) else { throw XCTSkip("demo model missing (make models)") }
        let shared = Workspace()
        let cache = ModelCache(sharedWorkspace: shared)
        let own = ModelCache()
        let spec = ModelSpec(path: model)
        func pair(_ temporal: TemporalMode) throws -> (any FrameDetector, any FrameDetector) {
            var a = try cache.detector(for: spec, pipelineFile: "p"), b = try own.detector(for: spec, pipelineFile: "p")
            try a.useTemporal(TemporalSettings(mode: temporal))
            try b.useTemporal(TemporalSettings(mode: temporal))
            return (a, b)
        }
        var cams = [try pair(.off), try pair(.delta), try pair(.delta)]
        XCTAssertTrue((cams[0].0 as? ModelDetector)?.state.workspace === shared)
        XCTAssertTrue((cams[2].0 as? ModelDetector)?.state.workspace === shared)
        XCTAssertFalse((cams[2].1 as? ModelDetector)?.state.workspace === shared)
        let sizes = [(320, 240), (256, 192), (320, 240)]
        var found = 0
        for f in 0..<4 {
            for c in cams.indices {
                let (w, h) = sizes[c]
                // A bright square moving over a grey background, with a little texture.
                var img = RGBImage(width: w, height: h)
                for y in 0..<h {
                    for x in 0..<w {
                        let inside = (40 + 6 * f + 10 * c..<110 + 6 * f + 10 * c).contains(x) && (50..<120).contains(y)
                        let v = inside ? 230 : 90 + (x &* 7 ^ y &* 13) % 17
                        for k in 0..<3 { img.pixels[(y * w + x) * 3 + k] = UInt8(k == 0 && inside ? 40 : v) }
                    }
                }
                let frame = Frame(info: FrameInfo(index: f, pts: Double(f), wallTime: 0, width: w, height: h, source: "c\(c)"),
                                  image: img)
                var got = FrameResult(info: frame.info), want = FrameResult(info: frame.info)
                try cams[c].0.detect(frame, into: &got)
                try cams[c].1.detect(frame, into: &want)
                XCTAssertEqual(got.detections, want.detections, "camera \(c) frame \(f)")
                found += got.detections.count
                XCTAssertEqual(got.recomputedFraction, want.recomputedFraction, "camera \(c) frame \(f)")
            }
        }
        XCTAssertGreaterThan(found, 0, "the comparison covers detections, not only empty frames")
        let separate = cams.map { ($0.1 as? ModelDetector)?.state.workspace.allocatedBytes ?? 0 }
        XCTAssertGreaterThan(shared.allocatedBytes, 0)
        // One pass of the largest camera plus what frame sizes taking turns fragment (delta mode's region copies
        // among them), well under the three arenas it replaces.
        XCTAssertLessThanOrEqual(shared.allocatedBytes, separate.max()! * 5 / 2, "about one pass, not \(separate)")
        XCTAssertLessThan(shared.allocatedBytes, separate.reduce(0, +))
    }
}
