import FPNCore
import Foundation
import Tensor
@testable import Vision
import XCTest

/// The per-architecture parts of the one-stage dense head on hand-made level outputs: which entries become
/// candidates, in which flattened order, and how a candidate's box and label come out.
final class DenseHeadDecoderTests: XCTestCase {
    private func sigmoid(_ x: Float) -> Float { DetectorSupport.sigmoid(x) }

    /// A 1x2 grid (hw = 2), 2 classes: RetinaNet logits have A·K = 18 channels, regression 4A = 36.
    func testRetinaNetCandidatesAreInYXAKOrderAndDecodeTheirAnchor() {
        let a = RetinaNetDecoder.anchorsPerLocation, k = 2, hw = 2
        var logits = [Float](repeating: -10, count: a * k * hw)
        // (loc 1, anchor 4, class 1) and (loc 0, anchor 8, class 0) score; one logit just below the threshold.
        logits[(4 * k + 1) * hw + 1] = 2
        logits[(8 * k + 0) * hw + 0] = 1
        logits[(0 * k + 0) * hw + 0] = -0.0001   // sigmoid < 0.5
        var regression = [Float](repeating: 0, count: 4 * a * hw)
        regression[(4 * 4 + 0) * hw + 1] = 0.5     // dx of anchor 4 at location 1
        let out = DenseHead.LevelOutputs(logits: Tensor(shape: [1, a * k, 1, hw], data: logits),
                                         regression: Tensor(shape: [1, 4 * a, 1, hw], data: regression), extras: [])
        let decoder = RetinaNetDecoder(numClasses: k)
        let (idx, scores) = decoder.candidates(out, threshold: 0.5)
        XCTAssertEqual(idx, [(0 * a + 8) * k + 0, (1 * a + 4) * k + 1])
        XCTAssertEqual(scores, [sigmoid(1), sigmoid(2)])
        let anchors = (0..<(hw * a)).map { i in Box(x1: Float(i), y1: 0, x2: Float(i) + 10, y2: 10) }
        regression.withUnsafeBufferPointer { d in
            let (box, label) = decoder.decode(idx[1], regression: d, locations: hw, anchors: anchors)
            XCTAssertEqual(label, 1)
            XCTAssertEqual(box, BoxCoder(weights: (1, 1, 1, 1)).decode(0.5, 0, 0, 0, reference: anchors[1 * a + 4]))
            let (box0, label0) = decoder.decode(idx[0], regression: d, locations: hw, anchors: anchors)
            XCTAssertEqual(label0, 0)
            XCTAssertEqual(box0, anchors[8])
        }
        // Threshold 0 keeps every entry (no logit floor), in (y, x, a, k) order.
        XCTAssertEqual(decoder.candidates(out, threshold: 0).indices, Array(0..<(hw * a * k)))
    }

    /// FCOS: score = sqrt(sigmoid(cls) · sigmoid(ctr)) in (y, x, k) order; boxes are distances from the location's
    /// anchor in units of its size.
    func testFCOSCandidatesWeighByCenternessAndDecodeDistances() {
        let k = 3, hw = 2
        var logits = [Float](repeating: -10, count: k * hw)
        logits[2 * hw + 0] = 3      // class 2 at location 0
        logits[0 * hw + 1] = 3      // class 0 at location 1
        let ctr: [Float] = [2, -4]  // location 1's centerness pulls its score under the threshold
        let regression: [Float] = [0.5, 0, 1, 0, 0.25, 0, 2, 0]  // planes l, t, r, b; location 0: (0.5, 1, 0.25, 2)
        let out = DenseHead.LevelOutputs(logits: Tensor(shape: [1, k, 1, hw], data: logits),
                                         regression: Tensor(shape: [1, 4, 1, hw], data: regression),
                                         extras: [Tensor(shape: [1, 1, 1, hw], data: ctr)])
        let decoder = FCOSDecoder(numClasses: k)
        let (idx, scores) = decoder.candidates(out, threshold: 0.5)
        XCTAssertEqual(idx, [0 * k + 2])
        XCTAssertEqual(scores, [(sigmoid(3) * sigmoid(2)).squareRoot()])
        XCTAssertEqual(decoder.candidates(out, threshold: 0.1).indices, [2, 1 * k + 0])
        let anchors = [Box(x1: 0, y1: 0, x2: 8, y2: 8), Box(x1: 8, y1: 0, x2: 16, y2: 8)]
        regression.withUnsafeBufferPointer { d in
            let (box, label) = decoder.decode(2, regression: d, locations: hw, anchors: anchors)
            XCTAssertEqual(label, 2)
            XCTAssertEqual(box, Box(x1: 4 - 0.5 * 8, y1: 4 - 1 * 8, x2: 4 + 0.25 * 8, y2: 4 + 2 * 8))
        }
    }
}
