import FPNCore
import XCTest

final class MaskRLETests: XCTestCase {
    /// 4x5 mask, rows 1-2 and columns 1-3 set (reference/torchvision-parity.md).
    func testKnownEncodingSmallRectangle() throws {
        var m = [UInt8](repeating: 0, count: 4 * 5)
        for y in 1...2 { for x in 1...3 { m[y * 5 + x] = 1 } }
        let rle = MaskRLE(rowMajor: m, height: 4, width: 5)
        XCTAssertEqual(rle.counts, [5, 2, 2, 2, 2, 2, 5])
        XCTAssertEqual(rle.cocoString, "5220003")
        XCTAssertEqual(rle.area, 6)
        XCTAssertEqual(rle.rowMajor(), m)
        XCTAssertEqual(rle.boundingBox, Box(x1: 1, y1: 1, x2: 4, y2: 3))
        XCTAssertEqual(try MaskRLE(cocoString: "5220003", height: 4, width: 5), rle)
    }

    func testKnownEncodingAllOnes() throws {
        let rle = MaskRLE(rowMajor: [UInt8](repeating: 1, count: 9), height: 3, width: 3)
        XCTAssertEqual(rle.counts, [0, 9])
        XCTAssertEqual(rle.cocoString, "09")
        XCTAssertEqual(try MaskRLE(cocoString: "09", height: 3, width: 3).counts, [0, 9])
    }

    func testRoundTripRandomMasksWithLargeRuns() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<50 {
            let h = Int.random(in: 1...70, using: &rng), w = Int.random(in: 1...70, using: &rng)
            let m = (0..<(h * w)).map { _ in UInt8.random(in: 0...9, using: &rng) < 3 ? 1 : 0 } as [UInt8]
            let rle = MaskRLE(rowMajor: m, height: h, width: w)
            XCTAssertEqual(rle.area, m.reduce(0) { $0 + Int($1) })
            XCTAssertEqual(rle.rowMajor(), m)
            XCTAssertEqual(try MaskRLE(cocoString: rle.cocoString, height: h, width: w), rle)
        }
        // Deltas that go negative and runs wider than 5 bits.
        let big = MaskRLE(height: 100, width: 100, counts: [3000, 40, 10, 5000, 1950])
        XCTAssertEqual(try MaskRLE(cocoString: big.cocoString, height: 100, width: 100), big)
    }

    func testBadStringsAreRejected() {
        XCTAssertThrowsError(try MaskRLE(cocoString: "5220003", height: 4, width: 4))
        XCTAssertThrowsError(try MaskRLE(cocoString: "5 2", height: 4, width: 5))
    }

    func testBoxIoU() {
        let a = Box(x1: 0, y1: 0, x2: 10, y2: 10), b = Box(x1: 5, y1: 0, x2: 15, y2: 10)
        XCTAssertEqual(a.iou(b), 50.0 / 150.0, accuracy: 1e-6)
        XCTAssertEqual(a.iou(Box(x1: 20, y1: 20, x2: 30, y2: 30)), 0)
    }
}
