@testable import TemporalReuse
import XCTest

/// The accuracy guard's control on given verifications (no model, no timing): it tightens after a drift, loosens
/// one group at a time on an unchanged stream, reverts a loosening that failed, falls back to dense frames when the
/// smallest scales fail, and verifies on the refresh schedule.
final class TemporalGuardTests: XCTestCase {
    private let exact = GuardMeasurement(matched: 10, reference: 10, candidate: 10, pyramidError: 0)
    private let drifted = GuardMeasurement(matched: 7, reference: 10, candidate: 9, pyramidError: 0.02)

    private func scales(_ g: TemporalGuard) -> [Float] { ThresholdGroup.allCases.map { g.scales[$0]! } }

    func testTightensEveryGroupAfterAnInjectedDrift() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta))
        let g = TemporalGuard(settings: TemporalGuardSettings(window: 3))
        XCTAssertEqual(g.record(exact, cache: cache).action, .hold)
        let e = g.record(drifted, cache: cache)
        XCTAssertEqual(e.action, .tighten, "pooled F1 (20+14)/(20+19) = 0.87 < 0.975")
        XCTAssertEqual(e.pooled?.matched, 17)
        XCTAssertEqual(scales(g), [0.5, 0.5, 0.5])
        XCTAssertEqual(cache.thresholdScales[.backbone], 0.5, "the cache thresholds follow")
        XCTAssertEqual(g.tightened, 1)
        XCTAssertTrue(g.window.isEmpty, "a change starts a new window")
        // A pyramid error past the bound tightens too, even with perfect detections.
        let far = GuardMeasurement(matched: 3, reference: 3, candidate: 3, pyramidError: 0.2)
        XCTAssertEqual(g.record(far, cache: cache).action, .tighten)
        XCTAssertEqual(scales(g), [0.25, 0.25, 0.25])
    }

    func testLoosensOneGroupAtATimeOnAnUnchangedStream() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta))
        let g = TemporalGuard(settings: TemporalGuardSettings(window: 2))
        var actions: [GuardEvent.Action] = [], groups: [ThresholdGroup?] = []
        for _ in 0..<8 {
            let e = g.record(exact, cache: cache)
            actions.append(e.action); groups.append(e.group)
        }
        XCTAssertEqual(actions, [.hold, .loosen, .hold, .loosen, .hold, .loosen, .hold, .loosen])
        XCTAssertEqual(groups, [nil, .input, nil, .backbone, nil, .heads, nil, .input])
        XCTAssertEqual(scales(g), [1.5625, 1.25, 1.25])
        XCTAssertEqual(cache.thresholdScales[.input], 1.5625)
        // No detections and a large-but-allowed pyramid error: no evidence to loosen on.
        let g2 = TemporalGuard(settings: TemporalGuardSettings(window: 1))
        let noisy = GuardMeasurement(matched: 0, reference: 0, candidate: 0, pyramidError: 0.1)
        XCTAssertEqual(g2.record(noisy, cache: cache).action, .hold)
        XCTAssertEqual(g2.scales[.input], 1)
    }

    func testRevertsAFailedLooseningAndStaysBelowIt() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta))
        let g = TemporalGuard(settings: TemporalGuardSettings(window: 1))
        XCTAssertEqual(g.record(exact, cache: cache).action, .loosen)     // input 1.25
        let e = g.record(drifted, cache: cache)
        XCTAssertEqual(e.action, .revert)
        XCTAssertEqual(e.group, .input)
        XCTAssertEqual(scales(g), [1, 1, 1])
        // Next loosenings skip the capped input group.
        XCTAssertEqual(g.record(exact, cache: cache).group, .backbone)
        XCTAssertEqual(g.record(exact, cache: cache).group, .heads)
        XCTAssertEqual(g.record(exact, cache: cache).group, .backbone, "input is capped at 1: skipped")
        XCTAssertEqual(scales(g), [1, 1.5625, 1.25])
        XCTAssertEqual(g.reverted, 1)
    }

    func testFailingAtTheSmallestScalesRunsDenseFramesThenRetries() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, refreshInterval: 8))
        let g = TemporalGuard(settings: TemporalGuardSettings(window: 1, minScale: 0.25, denseFrames: 3))
        XCTAssertEqual(g.record(drifted, cache: cache).action, .tighten)
        XCTAssertEqual(g.record(drifted, cache: cache).action, .tighten)
        XCTAssertEqual(scales(g), [0.25, 0.25, 0.25])
        XCTAssertEqual(g.record(drifted, cache: cache).action, .dense)
        XCTAssertEqual(g.denseFallbacks, 1)
        cache.beginFrame(inputShape: [1, 3, 8, 8])
        let plans = (0..<5).map { _ in
            let p = g.plan(for: cache)
            if p == .dense { cache.nextFrame = .dense }
            cache.beginFrame(inputShape: [1, 3, 8, 8])
            return p
        }
        XCTAssertEqual(plans, [.dense, .dense, .dense, .delta, .verify],
                       "then an early check once 2 delta frames ran (a quarter of refresh 8), the probe included")
        XCTAssertNil(g.record(nil, cache: cache).measurement, "a probe that fell back measures nothing")
    }

    func testVerifiesOnTheRefreshScheduleAndTheProbeKeepsIt() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, refreshInterval: 8))
        let g = TemporalGuard()
        var plans: [TemporalGuard.FramePlan] = [], dense: [Bool] = []
        for i in 0..<19 {
            let p = g.plan(for: cache)
            plans.append(p)
            if p == .verify {
                cache.nextFrame = .probe
                cache.beginFrame(inputShape: [1, 3, 8, 8])
                XCTAssertFalse(cache.lastStats.refreshed, "the probe runs delta although a refresh is due")
                cache.nextFrame = .dense
            }
            cache.beginFrame(inputShape: [1, 3, 8, 8])
            dense.append(cache.lastStats.refreshed)
            // The early check at frame 2 passes, the one at the refresh (8) fails: the next comes 2 frames later.
            if p == .verify { g.record(i == 8 ? drifted : exact, cache: cache) }
        }
        let verified = plans.indices.filter { plans[$0] == .verify }
        XCTAssertEqual(verified, [2, 8, 10, 16], "a quarter interval at the start and after a failure, else each refresh")
        XCTAssertEqual(dense.indices.filter { dense[$0] }, [0, 2, 8, 10, 16], "verified frames are refreshes too")
        XCTAssertEqual(cache.frameIndex, 19)
    }

    /// The verification schedule counts delta frames, the only ones that drift: a busy scene's fall-back frames
    /// (`busyLimit` set) do not bring a check closer, and a due check waits while the last frame fell back (the
    /// probe would too). Delta frames under a limit that stays set (calmer than the limit, not calm enough to clear
    /// it) drift like any others and are checked.
    func testVerificationWaitsWhileTheSceneIsBusy() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, refreshInterval: 16))
        let g = TemporalGuard()
        var busy = TemporalFrameStats()
        busy.denseFlops = 100; busy.kernelFlops = 90; busy.inputChangedFraction = 0.1
        var fallBack = TemporalFrameStats()
        fallBack.frameFallback = true; fallBack.inputChangedFraction = 0.1
        var between = busy
        between.kernelFlops = 70
        var calm = busy
        calm.kernelFlops = 10
        var plans: [TemporalGuard.FramePlan] = [], limits: [Bool] = []
        for i in 0..<14 {
            let p = g.plan(for: cache)
            plans.append(p)
            limits.append(cache.busyLimit != nil)
            if p == .verify {
                cache.nextFrame = .probe
                cache.beginFrame(inputShape: [1, 3, 8, 8])
                cache.nextFrame = .dense
            }
            cache.beginFrame(inputShape: [1, 3, 8, 8])
            if p == .verify { g.record(exact, cache: cache) }
            // Frame 0 recomputes 0.9 of the dense work (busy), 1-5 fall back, 6-9 run delta at 0.7 (between calm
            // and busy: the limit stays), later ones at 0.1. The cache learns from each when the next begins, after
            // the guard planned it.
            cache.lastStats = i < 1 ? busy : i < 6 ? fallBack : i < 10 ? between : calm
        }
        XCTAssertEqual(limits.indices.filter { limits[$0] }, Array(2...11))
        // The early check is due once a quarter of 16 delta frames ran, its probe included: frames 0, 6 and 7 (the
        // fall-backs do not count), so at frame 8, although the limit is still set.
        XCTAssertEqual(plans.indices.filter { plans[$0] == .verify }, [8])
    }

    /// A stream that keeps passing with nothing left to loosen is verified less often: every 2nd refresh after a
    /// full window of passes, every 4th after `window` more; a failure goes back to every refresh, after an early
    /// recheck.
    func testVerificationBacksOffWhileTheStreamHolds() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, refreshInterval: 4))
        let g = TemporalGuard(settings: TemporalGuardSettings(maxScale: 1))
        var verified: [Int] = []
        for i in 0..<110 {
            let p = g.plan(for: cache)
            if p == .verify {
                verified.append(i)
                cache.nextFrame = .probe
                cache.beginFrame(inputShape: [1, 3, 8, 8])
                cache.nextFrame = .dense
            }
            cache.beginFrame(inputShape: [1, 3, 8, 8])
            if p == .verify { g.record(i == 96 ? drifted : exact, cache: cache) }
        }
        // Early check at 2, then each refresh until the window of 4 passes is full (12), every 2nd (16-40: 4 more
        // passes), every 4th (48-96); the drift at 96 tightens, rechecks at 98 and checks every refresh again.
        XCTAssertEqual(verified, [2, 4, 8, 12, 16, 24, 32, 40, 48, 64, 80, 96, 98, 100, 104, 108])
        XCTAssertEqual(g.stride, 1)
    }
}
