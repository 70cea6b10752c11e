import XCTest
import FPNCore
import Tensor
import TestSupport
@testable import ONNX

final class CenterFaceTests: XCTestCase {
    /// Outputs for a 4x5 heatmap (network input 20x16) with chosen peaks.
    private func outputs(peaks: [(y: Int, x: Int, score: Float)]) -> [Tensor] {
        let h = 4, w = 5, plane = h * w
        let heat = Tensor(shape: [1, 1, h, w]), scale = Tensor(shape: [1, 2, h, w])
        let offset = Tensor(shape: [1, 2, h, w]), lms = Tensor(shape: [1, 10, h, w])
        scale.withUnsafeMutableBufferPointer { s in
            for i in 0..<plane { s[i] = logf(10 / 4); s[plane + i] = logf(20 / 4) }   // box 10 high, 20 wide
        }
        offset.withUnsafeMutableBufferPointer { o in for i in 0..<plane { o[i] = 0.25; o[plane + i] = 0.5 } }
        lms.withUnsafeMutableBufferPointer { l in for i in 0..<plane { l[i] = 0.5; l[plane + i] = 0.25 } }
        for p in peaks { heat[0, 0, p.y, p.x] = p.score }
        return [heat, scale, offset, lms]
    }

    func testDecodeFollowsDefaceFormulasThresholdAndNMS() {
        // (1,2) 0.9 and its neighbour (1,3) 0.8 overlap with IoU 2/3 ≥ 0.3 → the weaker goes; (3,0) 0.5 stays;
        // (0,4) exactly at the threshold is not a face (strict >).
        let outs = outputs(peaks: [(1, 2, 0.9), (1, 3, 0.8), (3, 0, 0.5), (0, 4, 0.3)])
        let faces = CenterFace.decode(outs, inputWidth: 20, inputHeight: 16, options: .init(threshold: 0.3))
        XCTAssertEqual(faces.map(\.score), [0.9, 0.5])
        let f = faces[0]
        // x1 = (2 + 0.5 + 0.5)*4 - 20/2 = 2, y1 = (1 + 0.25 + 0.5)*4 - 10/2 = 2; x2 clipped to the input width 20.
        XCTAssertEqual(f.box.x1, 2, accuracy: 1e-4); XCTAssertEqual(f.box.y1, 2, accuracy: 1e-4)
        XCTAssertEqual(f.box.x2, 20, accuracy: 1e-4); XCTAssertEqual(f.box.y2, 12, accuracy: 1e-4)
        XCTAssertEqual(f.className, "face")
        // Landmark 0: x = 0.25 * 20 + x1 = 7, y = 0.5 * 10 + y1 = 7.
        XCTAssertEqual(f.landmarks?.count, 5)
        XCTAssertEqual(f.landmarks?[0].x ?? 0, 7, accuracy: 1e-4); XCTAssertEqual(f.landmarks?[0].y ?? 0, 7, accuracy: 1e-4)
        // (3,0): x1 = max(0, (0+1)*4 - 10) = 0, y1 = (3.75)*4 - 5 = 10, y2 = min(20, 16) = 16.
        XCTAssertEqual(faces[1].box, Box(x1: 0, y1: 10, x2: 20, y2: 16))
    }

    func testInputSizeRoundsUpToMultiplesOf32() {
        XCTAssertTrue(CenterFace.inputSize(width: 176, height: 144, scale: 1) == (192, 160))
        XCTAssertTrue(CenterFace.inputSize(width: 176, height: 144, scale: 2) == (352, 288))
        XCTAssertTrue(CenterFace.inputSize(width: 768, height: 576, scale: 2) == (1536, 1152))
        XCTAssertTrue(CenterFace.inputSize(width: 10, height: 10, scale: 1) == (32, 32))
    }

    func testDetectorMapsFacesBackToSourcePixels() throws {
        let net = try ONNXNetwork(contentsOf: try ONNXModelFileTests.model("centerface.onnx"))
        let fx = TestPaths.fixtures.appendingPathComponent("onnx/centerface_carphone0.rgb")
        let rgb = try [UInt8](Data(contentsOf: fx))
        let image = RGBImage(width: 192, height: 160, pixels: rgb)
        let det = try CenterFaceDetector(network: net, options: .init(threshold: 0.5))
        let same = try det.detect(image)
        XCTAssertEqual(same.count, 1)
        // The same frame at 2x input scale: boxes come back in the 192x160 frame's pixels, near the 1x box.
        det.options.inputScale = 2
        let doubled = try det.detect(image)
        XCTAssertEqual(doubled.count, 1)
        XCTAssertGreaterThan(doubled[0].box.iou(same[0].box), 0.7, "\(doubled[0].box) vs \(same[0].box)")
        XCTAssertTrue(same[0].box.x2 <= 192 && same[0].box.y2 <= 160)
    }

    func testDetectorRefusesANonCenterFaceModel() throws {
        let net = try ONNXNetwork(contentsOf: try ONNXModelFileTests.model("ch_PP-OCRv4_det_infer.onnx"))
        XCTAssertThrowsError(try CenterFaceDetector(network: net)) { e in XCTAssertTrue("\(e)".contains("not a CenterFace model"), "\(e)") }
    }

    /// CenterFace's backbone is MobileNetV2: its 17 blocks run banded (the first one with the stem as its expand
    /// where the stem kernel runs), with the outputs of the step-by-step run bit for bit and without the expanded
    /// maps in the arena.
    func testBandedBlocksEqualTheStepByStepRunWithASmallerArena() throws {
        let net = try ONNXNetwork(contentsOf: try ONNXModelFileTests.model("centerface.onnx"))
        XCTAssertEqual(net.blocks.count, 17)
        // The first block has no 1x1 expand: the stem takes its place on the stem kernel's path, else none.
        let stemFirst = net.blocks.values.filter { $0.expand?.runsStemKernel == true }.count
        let bare = net.blocks.values.filter { $0.expand == nil }.count
        XCTAssertEqual(stemFirst + bare, 1)
        XCTAssertEqual(stemFirst, Compute.path == .avx512 ? 1 : 0)
        var rng = TestRandom(seed: 2)
        let x = rng.tensor([1, 3, 576, 768], 0, 255)  // vtest.avi at 1x: maps large enough for the arena to show it
        let banded = ONNXSession(net), stepwise = ONNXSession(net)
        stepwise.fuseBlocks = false
        for _ in 0..<2 {  // the second run replays the arena's plan
            let a = try banded.run(x).map(\.array), b = try stepwise.run(x).map(\.array)
            XCTAssertEqual(a.count, 4)
            for (u, v) in zip(a, b) {
                XCTAssertEqual(u.count, v.count)
                XCTAssertEqual(zip(u, v).filter { $0.bitPattern != $1.bitPattern }.count, 0)
            }
        }
        XCTAssertLessThan(Double(banded.workspace.allocatedBytes), 0.7 * Double(stepwise.workspace.allocatedBytes),
                          "\(banded.workspace.allocatedBytes) vs \(stepwise.workspace.allocatedBytes) bytes")
    }
}
