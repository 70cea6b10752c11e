import FPNCore
import FPNStream
import XCTest

/// The fidelity metric of `bench temporal` and `calibrate` (`DetectionAgreement`).
final class DetectionAgreementTests: XCTestCase {
    func det(_ x: Float, _ y: Float, _ w: Float, _ h: Float, cls: Int = 1, score: Float = 0.9, mask: MaskRLE? = nil) -> Detection {
        Detection(box: Box(x1: x, y1: y, x2: x + w, y2: y + h), score: score, classID: cls, className: "c\(cls)", mask: mask)
    }

    func testMatchesSameClassAtHighIoUOnly() {
        let ref = [det(0, 0, 100, 100), det(200, 0, 50, 50, cls: 2), det(400, 0, 40, 40)]
        let cand = [det(1, 1, 100, 100),          // IoU 0.961 with ref 0: match
                    det(200, 0, 50, 50, cls: 3),  // same box, other class: no match
                    det(404, 0, 40, 40)]          // IoU 0.818 < 0.9: no match
        let a = DetectionAgreement(reference: ref, candidate: cand, minScore: 0.5)
        XCTAssertEqual(a.matched, 1)
        XCTAssertEqual(a.reference, 3)
        XCTAssertEqual(a.candidate, 3)
        XCTAssertEqual(a.f1, 2.0 / 6.0, accuracy: 1e-12)
        // A looser IoU bar accepts the shifted box.
        XCTAssertEqual(DetectionAgreement(reference: ref, candidate: cand, minScore: 0.5, iou: 0.8).matched, 2)
    }

    func testScoreThresholdAppliesToEachSide() {
        let ref = [det(0, 0, 100, 100, score: 0.6)]
        let cand = [det(0, 0, 100, 100, score: 0.4)]  // fell below the threshold in delta: a disagreement
        let a = DetectionAgreement(reference: ref, candidate: cand, minScore: 0.5)
        XCTAssertEqual([a.matched, a.reference, a.candidate], [0, 1, 0])
        XCTAssertEqual(a.f1, 0)
        XCTAssertEqual(a.scoreFlips, 1, "the box is still there in delta, below the threshold")
        XCTAssertEqual(DetectionAgreement(reference: ref, candidate: cand, minScore: 0.3).f1, 1)
    }

    func testScoreFlipsCountOnlyBoxesStillInPlace() {
        let ref = [det(0, 0, 100, 100, score: 0.6), det(200, 0, 50, 50, score: 0.3), det(400, 0, 40, 40, score: 0.7)]
        let cand = [det(0, 0, 100, 100, score: 0.45),            // flipped below: counted
                    det(200, 0, 50, 50, score: 0.8),             // flipped above: counted (ref partner at 0.3)
                    det(404, 0, 40, 40, score: 0.3),             // below, but IoU 0.818 < 0.9: the box moved
                    det(600, 0, 40, 40, cls: 2, score: 0.9)]     // no partner at all
        let a = DetectionAgreement(reference: ref, candidate: cand, minScore: 0.5)
        XCTAssertEqual([a.matched, a.reference, a.candidate], [0, 2, 2])
        XCTAssertEqual(a.unmatched, 4)
        XCTAssertEqual(a.scoreFlips, 2)
        XCTAssertEqual((a + a).scoreFlips, 4)
    }

    func testOneToOneGreedyByIoU() {
        // Two candidates near one reference: only the better one matches; the other counts against F1.
        let ref = [det(0, 0, 100, 100)]
        let cand = [det(3, 0, 100, 100), det(1, 0, 100, 100)]
        let a = DetectionAgreement(reference: ref, candidate: cand, minScore: 0)
        XCTAssertEqual(a.matched, 1)
        XCTAssertEqual(a.f1, 2.0 / 3.0, accuracy: 1e-12)
    }

    func testEmptyAndPooling() {
        XCTAssertEqual(DetectionAgreement(reference: [], candidate: [], minScore: 0.5).f1, 1)
        XCTAssertEqual(DetectionAgreement(reference: [det(0, 0, 10, 10)], candidate: [], minScore: 0.5).f1, 0)
        let a = DetectionAgreement(reference: [det(0, 0, 10, 10)], candidate: [det(0, 0, 10, 10)], minScore: 0)
        let b = DetectionAgreement(reference: [det(0, 0, 10, 10), det(50, 50, 10, 10)], candidate: [], minScore: 0)
        let pooled = a + b
        XCTAssertEqual([pooled.matched, pooled.reference, pooled.candidate], [1, 3, 1])
        XCTAssertEqual(pooled.f1, 0.5, accuracy: 1e-12)
    }

    func testMaskIoUOfMatchedPairs() {
        // 4x4 masks (column-major RLE): A = first two columns (8 px), B = first column plus the top half of the second.
        var a = [UInt8](repeating: 0, count: 16), b = a
        for y in 0..<4 { a[y * 4] = 1; a[y * 4 + 1] = 1; b[y * 4] = 1 }
        b[1] = 1; b[4 + 1] = 1
        let ma = MaskRLE(rowMajor: a, height: 4, width: 4), mb = MaskRLE(rowMajor: b, height: 4, width: 4)
        XCTAssertEqual(DetectionAgreement.maskIoU(ma, mb), 6.0 / 8.0, accuracy: 1e-12)
        XCTAssertEqual(DetectionAgreement.maskIoU(ma, ma), 1)
        let empty = MaskRLE(rowMajor: [UInt8](repeating: 0, count: 16), height: 4, width: 4)
        XCTAssertEqual(DetectionAgreement.maskIoU(ma, empty), 0)
        XCTAssertEqual(DetectionAgreement.maskIoU(ma, MaskRLE(rowMajor: a + a, height: 8, width: 4)), 0, "size mismatch")
        let r = DetectionAgreement(reference: [det(0, 0, 4, 4, mask: ma)], candidate: [det(0, 0, 4, 4, mask: mb)], minScore: 0)
        XCTAssertEqual(r.maskPairs, 1)
        XCTAssertEqual(try XCTUnwrap(r.meanMaskIoU), 0.75, accuracy: 1e-12)
        XCTAssertNil(DetectionAgreement(reference: [det(0, 0, 4, 4)], candidate: [det(0, 0, 4, 4)], minScore: 0).meanMaskIoU)
    }

    func testDitherMovesEveryByteByAtMostOneLevelDeterministically() {
        var pixels = [UInt8](repeating: 128, count: 64 * 48 * 3)
        pixels[0] = 0; pixels[1] = 255
        let image = RGBImage(width: 64, height: 48, pixels: pixels)
        let a = ditheredByOneLevel(image, seed: 7)
        XCTAssertEqual(a, ditheredByOneLevel(image, seed: 7))
        XCTAssertNotEqual(a, ditheredByOneLevel(image, seed: 8))
        var counts = [0, 0, 0]
        for (x, y) in zip(image.pixels.dropFirst(2), a.pixels.dropFirst(2)) { counts[Int(y) - Int(x) + 1] += 1 }
        // 9214 bytes, each moved by -1/0/+1 with probability 1/3: every bucket within 5 sigma (~225) of 3071.
        for c in counts { XCTAssertEqual(Double(c), 9214.0 / 3, accuracy: 250) }
        XCTAssertLessThanOrEqual(a.pixels[0], 1)        // clamped at 0, never wrapped to 255
        XCTAssertGreaterThanOrEqual(a.pixels[1], 254)   // clamped at 255, never wrapped to 0
    }
}
