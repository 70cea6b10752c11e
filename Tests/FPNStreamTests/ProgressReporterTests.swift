import FPNStream
import XCTest

final class ProgressReporterTests: XCTestCase {
    func testPlainLineWithAndWithoutTotal() {
        XCTAssertEqual(ProgressReporter.plainLine(done: 312, total: 795, elapsed: 6.47),
                       "312/795 frames (39%), 48.2 fps, elapsed 0:06, ETA 0:10")
        XCTAssertEqual(ProgressReporter.plainLine(done: 50, total: nil, elapsed: 10), "50 frames, 5.0 fps, elapsed 0:10")
    }

    func testBarLineFillsByFraction() {
        let half = ProgressReporter.barLine(done: 50, total: 100, elapsed: 5)
        XCTAssertEqual(half, "   50/100 [" + String(repeating: "█", count: 12) + String(repeating: "░", count: 12)
                       + "]  50%  10.0 fps  ETA 0:05")
        XCTAssertEqual(ProgressReporter.barLine(done: 7, total: nil, elapsed: 3725), "7 frames  0.0 fps  1:02:05")
    }
}
