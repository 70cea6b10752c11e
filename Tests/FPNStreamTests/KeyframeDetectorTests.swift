import FPNCore
import FPNStream
import TemporalReuse
import XCTest

/// Keyframe mode as one wrapper around any detector: the model runs on schedule, its result is repeated between
/// keyframes, and a new frame size restarts the schedule.
final class KeyframeDetectorTests: XCTestCase {
    /// Counts its calls and reports one detection whose score is the call number.
    struct Counting: FrameDetector {
        var calls = 0
        var name: String { "counting" }
        mutating func detect(_ frame: Frame, into result: inout FrameResult) throws {
            calls += 1
            result.detections = [Detection(box: Box(x1: 0, y1: 0, x2: 1, y2: 1), score: Float(calls), classID: 1,
                                           className: "thing")]
        }
        mutating func useTemporal(_ settings: TemporalSettings) throws {}
    }

    private func frame(_ i: Int, width: Int = 8) -> Frame {
        Frame(info: FrameInfo(index: i, pts: Double(i), wallTime: 0, width: width, height: 8, source: "t"),
              image: RGBImage(width: width, height: 8))
    }

    func testRunsTheModelOnScheduleAndRepeatsItsResultInBetween() throws {
        var d = try withTemporal(Counting(), TemporalSettings(mode: .keyframe, keyframeInterval: 3))
        XCTAssertTrue(d is KeyframeDetector)
        var scores: [Float] = [], fractions: [Double?] = []
        for i in 0..<7 {
            var r = FrameResult(info: frame(i).info)
            try d.detect(frame(i), into: &r)
            scores.append(r.detections.first?.score ?? -1)
            fractions.append(r.recomputedFraction)
        }
        XCTAssertEqual(scores, [1, 1, 1, 2, 2, 2, 3])
        XCTAssertEqual(fractions, [1, 0, 0, 1, 0, 0, 1])
        XCTAssertEqual((d as! KeyframeDetector).inner.name, "counting")
    }

    func testANewFrameSizeRestartsWithAKeyframe() throws {
        var d = KeyframeDetector(wrapping: Counting(), interval: 5)
        var r = FrameResult(info: frame(0).info)
        try d.detect(frame(0), into: &r)
        try d.detect(frame(1), into: &r)
        XCTAssertEqual(r.detections.first?.score, 1)
        try d.detect(frame(2, width: 16), into: &r)
        XCTAssertEqual(r.detections.first?.score, 2, "a new size runs the model at once")
        XCTAssertEqual(d.resets, 1)
        XCTAssertEqual(d.frameIndex, 0)
    }

    func testKeyframeModeWithoutAModelIsAnError() {
        XCTAssertThrowsError(try withTemporal(NoDetector(), TemporalSettings(mode: .keyframe))) { e in
            XCTAssertTrue("\(e)".contains("needs a model"), "\(e)")
        }
    }
}
