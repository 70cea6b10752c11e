import FPNCore
import Tensor
import TestSupport
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

    func testResizedInputEqualsNormalizingEveryRowFirst() {
        var rng = TestRandom(seed: 31)
        // Down (rows between taps skipped), up, and a width-only resize; odd sizes.
        for (w, h, rw, rh) in [(97, 61, 40, 17), (20, 9, 45, 30), (64, 48, 32, 48)] {
            var image = RGBImage(width: w, height: h)
            for i in image.pixels.indices { image.pixels[i] = UInt8(rng.int(256)) }
            let ws = Workspace()
            ws.beginFrame()
            let (x, g) = DetectionTransform(TransformConfig(resize: .fixed(width: rw, height: rh), sizeDivisible: 8))(
                image, workspace: ws)
            // Reference: every row normalised with the torch formula, the whole image resized, padded with zeros.
            let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
            let full = Tensor(shape: [1, 3, h, w])
            for c in 0..<3 { for y in 0..<h { for xx in 0..<w {
                full[0, c, y, xx] = (Float(image.pixels[(y * w + xx) * 3 + c]) / 255 - mean[c]) / std[c]
            } } }
            let resized = full.resizeBilinear(height: rh, width: rw, in: ws)
            var wrong = 0
            for c in 0..<3 { for y in 0..<g.paddedHeight { for xx in 0..<g.paddedWidth {
                let want: Float = y < rh && xx < rw ? resized[0, c, y, xx] : 0
                if x[0, c, y, xx].bitPattern != want.bitPattern { wrong += 1 }
            } } }
            XCTAssertEqual(wrong, 0, "\(w)x\(h) → \(rw)x\(rh)")
        }
    }

    func testBilinearSourceRunsAreTheRowsTheTapsRead() {
        // 960 → 240: src = 4o + 1.5, rows 4o + 1 and 4o + 2 only.
        XCTAssertEqual(Ops.bilinearSourceRuns(input: 960, output: 240).prefix(3), [1..<3, 5..<7, 9..<11])
        XCTAssertEqual(Ops.bilinearSourceRuns(input: 960, output: 240).count, 240)
        // Upsampling reads every row, as one run; one row in, one out.
        XCTAssertEqual(Ops.bilinearSourceRuns(input: 10, output: 25), [0..<10])
        XCTAssertEqual(Ops.bilinearSourceRuns(input: 1, output: 1), [0..<1])
        // 7 → 2: src = 3.5o + 1.25 → rows 1, 2 and 4, 5.
        XCTAssertEqual(Ops.bilinearSourceRuns(input: 7, output: 2), [1..<3, 4..<6])
    }
}
