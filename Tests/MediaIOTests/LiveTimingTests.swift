import MediaIO
import XCTest

/// The pure parts of live sources: timestamp rule, backoff, deadline.
final class LiveTimingTests: XCTestCase {
    func testStreamClockFollowsPTSAndSurvivesMissingBackwardAndJumpingPTS() {
        var c = StreamClock(nominalInterval: 0.04, tolerance: 1)
        XCTAssertEqual(c.time(pts: 1000.0, wall: 50.00), 0)            // first frame ever: 0
        XCTAssertEqual(c.time(pts: 1000.04, wall: 50.04), 0.04, accuracy: 1e-9)
        XCTAssertEqual(c.time(pts: 1000.12, wall: 50.05), 0.12, accuracy: 1e-9)  // burst: PTS spacing kept
        XCTAssertEqual(c.time(pts: nil, wall: 50.09), 0.16, accuracy: 1e-9)      // missing: + nominal
        XCTAssertEqual(c.time(pts: 1000.20, wall: 50.13), 0.20, accuracy: 1e-9)  // back on PTS? no previous raw: + max(nominal, wall gap)
        XCTAssertEqual(c.time(pts: 1000.10, wall: 50.17), 0.24, accuracy: 1e-9)  // backwards: + nominal
        XCTAssertEqual(c.time(pts: 1000.14, wall: 50.21), 0.28, accuracy: 1e-9)  // continues from the new anchor
        XCTAssertEqual(c.time(pts: 95000.0, wall: 50.25), 0.32, accuracy: 1e-9)  // leap far beyond the wall clock
        XCTAssertEqual(c.time(pts: 95000.04, wall: 50.29), 0.36, accuracy: 1e-9)
        c.beginSession()                                                         // reconnect after 5 s
        XCTAssertEqual(c.time(pts: 3.0, wall: 55.29), 5.36, accuracy: 1e-9)
        XCTAssertEqual(c.time(pts: 3.04, wall: 55.33), 5.40, accuracy: 1e-9)
    }

    func testBackoffGrowsIsCappedAndJittered() {
        let p = ReconnectPolicy(initialDelay: 0.5, maxDelay: 4, multiplier: 2, jitter: 0.2, maxAttempts: 5)
        XCTAssertEqual(p.delay(attempt: 1, unit: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 2, unit: 0.5), 1.0, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 3, unit: 0.5), 2.0, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 4, unit: 0.5), 4.0, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 1000, unit: 0.5), 4.0, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 1, unit: 0), 0.4, accuracy: 1e-12)    // -20 %
        XCTAssertEqual(p.delay(attempt: 2, unit: 1), 1.2, accuracy: 1e-12)    // +20 %
        XCTAssertEqual(p.delay(attempt: 9, unit: 1), 4.0, accuracy: 1e-12)    // jitter never exceeds the cap
        XCTAssertTrue(p.allows(attempt: 5))
        XCTAssertFalse(p.allows(attempt: 6))
        XCTAssertTrue(ReconnectPolicy().allows(attempt: 1_000_000))
        XCTAssertThrowsError(try ReconnectPolicy(multiplier: 0.5).validate())
        XCTAssertThrowsError(try ReconnectPolicy(initialDelay: 5, maxDelay: 1).validate())
        XCTAssertThrowsError(try ReconnectPolicy(jitter: 2).validate())
    }

    /// However long the outage, the wait before the next attempt stays within the default cap (+0 jitter past
    /// it), so a source that comes back is reconnected about 2 s later at most, not after a grown backoff.
    func testDefaultBackoffIsCappedAtTwoSecondsForLongOutages() throws {
        let p = ReconnectPolicy()
        XCTAssertEqual(p.maxDelay, 2)
        XCTAssertEqual(p.delay(attempt: 1, unit: 0.5), 0.5, accuracy: 1e-12)
        XCTAssertEqual(p.delay(attempt: 3, unit: 0.5), 2.0, accuracy: 1e-12)
        // 60 s of outage is about 30 attempts at the cap; every one of them, at the largest jitter, waits ≤ 2 s.
        for attempt in 1...60 { XCTAssertLessThanOrEqual(p.delay(attempt: attempt, unit: 0.9999), 2.0) }
    }

    func testDeadlineFiresOnlyAfterItPassesAndCancelWins() {
        let d = InterruptDeadline()
        XCTAssertFalse(d.shouldInterrupt(), "disarmed")
        d.arm(seconds: 3600)
        XCTAssertFalse(d.shouldInterrupt())
        XCTAssertEqual(d.reason, .none)
        d.arm(seconds: 0)
        XCTAssertTrue(d.shouldInterrupt())
        XCTAssertEqual(d.reason, .stalled(0))
        d.arm(seconds: 2.5)
        XCTAssertEqual(d.reason, .none, "re-arming resets the reason")
        d.cancel()
        XCTAssertTrue(d.shouldInterrupt())
        XCTAssertEqual(d.reason, .cancelled)
        d.disarm()
        XCTAssertTrue(d.shouldInterrupt(), "cancel cannot be undone")
    }
}

final class CaptureClockTests: XCTestCase {
    func testCaptureTimeUsesTheEarliestArrivalAndFollowsSlowClocksWithinTwoWindows() {
        var c = CaptureClock(window: 10)
        XCTAssertEqual(c.captureTime(streamTime: 0, arrival: 100.05), 100.05)          // first frame: its arrival
        XCTAssertEqual(c.captureTime(streamTime: 0.04, arrival: 100.08), 100.08, accuracy: 1e-9)  // earlier than predicted: new anchor
        XCTAssertEqual(c.captureTime(streamTime: 0.08, arrival: 100.30), 100.12, accuracy: 1e-9)  // late arrival: 180 ms latency kept
        // Frames held up (consumer blocked): latency grows as arrivals fall behind stream time.
        XCTAssertEqual(c.captureTime(streamTime: 1.0, arrival: 102.04), 101.04, accuracy: 1e-9)
        // A camera clock 1 % slow: offsets creep up; after two windows the old minimum is forgotten.
        var last = 0.0
        for i in 1...300 {
            let t = 1.0 + Double(i) * 0.1
            last = c.captureTime(streamTime: t, arrival: 100.04 + t * 1.01) - (100.04 + t * 1.01)
        }
        XCTAssertEqual(last, 0, accuracy: 0.11, "latency of an on-time frame returns to ~0 after two windows")
        c.beginSession()
        XCTAssertEqual(c.captureTime(streamTime: 50, arrival: 500), 500)
    }
}
