import FPNCore
import Tensor
import Vision
import XCTest

/// Geometry of GeneralizedRCNNTransform (values printed by torchvision 0.29 for these sizes) and the
/// normalisation arithmetic. Pixel parity against torch on a real frame is in BackboneParityTests.
final class TransformTests: XCTestCase {
    func testGeometryFollowsTorchvision() {
        let t = DetectionTransform()
        // vtest.avi 768x576: scale = 800/576 → 1066x800 (1066.67 truncated), padded to 1088x800.
        let g = t.geometry(width: 768, height: 576)
        XCTAssertEqual([g.resizedWidth, g.resizedHeight, g.paddedWidth, g.paddedHeight], [1066, 800, 1088, 800])
        // Wide frame: the 1333 limit wins: scale = 1333/1920 → 1333x749 (749.68), padded 1344x768.
        let w = t.geometry(width: 1920, height: 1080)
        XCTAssertEqual([w.resizedWidth, w.resizedHeight, w.paddedWidth, w.paddedHeight], [1333, 749, 1344, 768])
        XCTAssertEqual(w.toSourceX, Float(1920) / Float(1333))
        // bikes.mp4 640x272: 800/272 = 2.94 but 1333/640 = 2.08 → 1333x566.
        let b = t.geometry(width: 640, height: 272)
        XCTAssertEqual([b.resizedWidth, b.resizedHeight, b.paddedWidth, b.paddedHeight], [1333, 566, 1344, 576])
        let f = DetectionTransform(TransformConfig(resize: .fixed(width: 640, height: 384))).geometry(width: 768, height: 576)
        XCTAssertEqual([f.resizedWidth, f.resizedHeight, f.paddedWidth, f.paddedHeight], [640, 384, 640, 384])
        let n = DetectionTransform(TransformConfig(resize: .none)).geometry(width: 45, height: 33)
        XCTAssertEqual([n.resizedWidth, n.resizedHeight, n.paddedWidth, n.paddedHeight], [45, 33, 64, 64])
    }

    func testNormalizeAndPadWithoutResize() {
        var image = RGBImage(width: 3, height: 2)
        image[2, 1] = (255, 0, 128)
        let ws = Workspace()
        ws.beginFrame()
        let (x, g) = DetectionTransform(TransformConfig(resize: .none, sizeDivisible: 4))(image, workspace: ws)
        XCTAssertEqual(x.shape, [1, 3, 4, 4])
        XCTAssertEqual(g.paddedWidth, 4)
        // (v/255 - mean) / std in Float32, as torch computes it.
        XCTAssertEqual(x[0, 0, 1, 2], (Float(255) / 255 - 0.485) / 0.229)
        XCTAssertEqual(x[0, 1, 1, 2], (Float(0) / 255 - 0.456) / 0.224)
        XCTAssertEqual(x[0, 2, 1, 2], (Float(128) / 255 - 0.406) / 0.225)
        XCTAssertEqual(x[0, 0, 0, 0], (0 - 0.485) / 0.229)
        // Padding is zero (not the normalised black level).
        XCTAssertEqual(x[0, 0, 1, 3], 0)
        XCTAssertEqual(x[0, 2, 3, 0], 0)
    }
}
