@testable import FPNStream
import XCTest

final class FrameSelectionTests: XCTestCase {
    func kept(_ selection: FrameSelection, fps: Double, count: Int) -> [Int] {
        var s = selection
        return (0..<count).filter { s.keep(pts: Double($0) / fps) }
    }

    func testStride() {
        XCTAssertEqual(kept(FrameSelection(stride: 4), fps: 25, count: 10), [0, 4, 8])
        XCTAssertEqual(kept(FrameSelection(stride: 1), fps: 25, count: 3), [0, 1, 2])
        XCTAssertEqual(kept(FrameSelection(stride: 0), fps: 25, count: 3), [0, 1, 2])  // clamped to 1
    }

    func testMaxFPSOnStreamTime() {
        // 25 fps source limited to 10 fps: keeps a frame once at least 0.1 s of stream time passed.
        XCTAssertEqual(kept(FrameSelection(maxFPS: 10), fps: 25, count: 13), [0, 3, 6, 9, 12])
        // Exactly divisible rates keep an exact pattern (no drift from rounding).
        XCTAssertEqual(kept(FrameSelection(maxFPS: 5), fps: 10, count: 10), [0, 2, 4, 6, 8])
    }

    func testMaxFramesAndExhaustion() {
        var s = FrameSelection(stride: 2, maxFrames: 3)
        let k = (0..<20).filter { s.keep(pts: Double($0)) }
        XCTAssertEqual(k, [0, 2, 4])
        XCTAssertTrue(s.isExhausted)
    }
}
