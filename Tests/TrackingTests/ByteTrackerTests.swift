import Foundation
import XCTest
import TestSupport
import FPNCore
@testable import Tracking

final class ByteTrackerTests: XCTestCase {
    private func det(_ cx: Float, _ cy: Float, w: Float = 40, h: Float = 80, score: Float = 0.9,
                     cls: Int = 1) -> Detection {
        Detection(box: Box(x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2), score: score,
                  classID: cls, className: "c\(cls)")
    }

    private func tracker(_ configure: (inout ByteTrackConfig) -> Void = { _ in }) throws -> ByteTracker {
        var c = ByteTrackConfig()
        configure(&c)
        return try ByteTracker(config: c)
    }

    // MARK: - Lifecycle

    func testFirstFrameConfirmsAtOnceLaterTracksAreTentativeForOneFrame() throws {
        let t = try tracker()
        let f0 = t.update(detections: [det(100, 100)], frameIndex: 0)
        XCTAssertEqual(f0.map(\.trackID), [1])
        XCTAssertEqual(t.events.map(\.kind), [.started])
        // A second object appears on frame 1: tentative (not output), confirmed on frame 2 with id 2.
        let f1 = t.update(detections: [det(102, 100), det(400, 100)], frameIndex: 1)
        XCTAssertEqual(f1.map(\.trackID), [1])
        let f2 = t.update(detections: [det(104, 100), det(400, 101)], frameIndex: 2)
        XCTAssertEqual(f2.map(\.trackID), [1, 2])
        XCTAssertEqual(t.events, [TrackEvent(kind: .started, trackID: 2, classID: 1, box: f2[1].box, frameIndex: 2)])
        // A one-frame false positive never gets an id: the next real newcomer takes 3.
        _ = t.update(detections: [det(106, 100), det(400, 100), det(250, 300)], frameIndex: 3)
        _ = t.update(detections: [det(108, 100), det(400, 100)], frameIndex: 4)
        _ = t.update(detections: [det(110, 100), det(400, 100), det(600, 300)], frameIndex: 5)
        let f6 = t.update(detections: [det(112, 100), det(400, 100), det(600, 300)], frameIndex: 6)
        XCTAssertEqual(f6.map(\.trackID), [1, 2, 3])
    }

    func testLowScoreDetectionsContinueTracksButNeverStartThem() throws {
        let t = try tracker()
        _ = t.update(detections: [det(100, 100)], frameIndex: 0)
        // The object's score drops to 0.3 (between low 0.1 and high 0.5): stage ② keeps the track alive.
        for i in 1...5 {
            let out = t.update(detections: [det(100 + Float(i) * 3, 100, score: 0.3)], frameIndex: i)
            XCTAssertEqual(out.map(\.trackID), [1], "frame \(i)")
            XCTAssertEqual(out.first?.score, 0.3)
        }
        // A low-score detection elsewhere never starts a track; nor does one below track_low_thresh.
        for i in 6...9 {
            let out = t.update(detections: [det(500, 300, score: 0.4), det(800, 300, score: 0.05)], frameIndex: i)
            XCTAssertTrue(out.isEmpty, "frame \(i): \(out)")
        }
        // A high score below new_track_thresh (0.6) matches nothing and starts nothing either.
        for i in 10...12 {
            XCTAssertTrue(t.update(detections: [det(500, 300, score: 0.55)], frameIndex: i).isEmpty)
        }
    }

    func testOutputBoxIsKalmanStateUnlessDetectionBoxRequested() throws {
        let kalman = try tracker()
        let raw = try tracker { $0.outputDetectionBox = true }
        var lastK: [Detection] = [], lastR: [Detection] = [], lastD = det(0, 0)
        for i in 0..<10 {
            // Jittered detections of an object moving 5 px/frame.
            let d = det(100 + Float(i) * 5 + (i % 2 == 0 ? 3 : -3), 200)
            lastD = d
            lastK = kalman.update(detections: [d], frameIndex: i)
            lastR = raw.update(detections: [d], frameIndex: i)
        }
        XCTAssertEqual(lastR.first?.box, lastD.box)
        let k = try XCTUnwrap(lastK.first).box
        XCTAssertNotEqual(k, lastD.box)
        // Smoothed towards the true centre 145 from the jittered 148.
        XCTAssertLessThan(abs(k.center.x - 145), abs(lastD.box.center.x - 145))
        XCTAssertEqual(k.height, 80, accuracy: 0.5)
    }

    func testMinBoxAreaFiltersOutputOnly() throws {
        let t = try tracker { $0.minBoxArea = 100 }
        // 8×10 = 80 px²: tracked (same id comes back once it grows) but not output while small.
        XCTAssertTrue(t.update(detections: [det(50, 50, w: 8, h: 10)], frameIndex: 0).isEmpty)
        XCTAssertEqual(t.trackedCount, 1)
        XCTAssertTrue(t.update(detections: [det(50, 50, w: 8, h: 10)], frameIndex: 1).isEmpty)
        var out: [Detection] = []
        for i in 2..<8 { out = t.update(detections: [det(50, 50, w: 12, h: 14)], frameIndex: i) }
        XCTAssertEqual(out.map(\.trackID), [1])
    }

    // MARK: - Occlusion, crossing

    func testIdPersistsThroughShortOcclusion() throws {
        let t = try tracker()
        var ids: [Int] = []
        var kinds: [TrackEvent.Kind] = []
        for i in 0..<60 {
            let x = 100 + Float(i) * 6
            let occluded = (20..<32).contains(i)   // 12 frames without a detection (buffer: 30)
            // A static distractor keeps the tracker busy.
            var dets = [det(600, 400, score: 0.8)]
            if !occluded { dets.append(det(x, 200)) }
            let out = t.update(detections: dets, frameIndex: i)
            kinds += t.events.map(\.kind)
            if occluded { XCTAssertEqual(out.count, 1, "frame \(i): the lost track must not be output") }
            ids += out.filter { $0.box.center.x < 550 || $0.box.center.y < 300 }.compactMap(\.trackID)
        }
        XCTAssertEqual(Set(ids).count, 1, "ids \(Set(ids))")
        XCTAssertEqual(kinds, [.started, .started, .lost, .refound])
    }

    /// Two pedestrians walk towards each other and cross (B passes behind A); the detector loses B while they
    /// overlap heavily. Ids before and after the crossing must be the same per object.
    func testNoIdSwitchOnCrossingBoxesAtConstantSpeed() throws {
        for speed: Float in [2, 4, 7] {
            let t = try tracker()
            var before: [String: Set<Int>] = [:], after: [String: Set<Int>] = [:]
            var occludedFrames = 0
            let frames = Int(560 / (2 * speed)) * 2
            for i in 0..<frames {
                let ax = 100 + Float(i) * speed, bx = 660 - Float(i) * speed
                let a = det(ax, 200), b = det(bx, 210, score: 0.8)
                let overlap = a.box.iou(b.box)
                if overlap > 0.3 { occludedFrames += 1 }
                let out = t.update(detections: overlap > 0.3 ? [a] : [b, a], frameIndex: i)
                guard overlap == 0 else { continue }
                for d in out {
                    // Away from the crossing the nearer ground truth is unambiguous.
                    let who = abs(d.box.center.x - ax) < abs(d.box.center.x - bx) ? "A" : "B"
                    if ax < bx { before[who, default: []].insert(d.trackID!) } else { after[who, default: []].insert(d.trackID!) }
                }
            }
            XCTAssertGreaterThan(occludedFrames, 2, "speed \(speed)")
            XCTAssertEqual(before["A"]?.count, 1, "speed \(speed): \(before)")
            XCTAssertEqual(before["B"]?.count, 1, "speed \(speed): \(before)")
            XCTAssertNotEqual(before["A"], before["B"])
            XCTAssertEqual(after["A"], before["A"], "speed \(speed): A switched")
            XCTAssertEqual(after["B"], before["B"], "speed \(speed): B switched")
        }
    }

    // MARK: - Class-aware matching

    func testClassAwareMatchingKeepsClassesApart() throws {
        // A class-1 object moves right; at frame 10 its detection is missed while a class-2 object is detected on
        // the same spot (a rider dismounting). Agnostic ByteTrack lets track 1 take the class-2 detection.
        func run(_ classAware: Bool) throws -> [Int: Set<Int>] {
            let t = try tracker { $0.classAware = classAware }
            var classesOfID: [Int: Set<Int>] = [:]
            for i in 0..<25 {
                let x = 100 + Float(i) * 4
                var dets: [Detection] = []
                if i != 10 && i != 11 { dets.append(det(x, 200, cls: 1)) }
                if i >= 10 { dets.append(det(x + 2, 202, score: 0.85, cls: 2)) }
                for d in t.update(detections: dets, frameIndex: i) {
                    classesOfID[d.trackID!, default: []].insert(d.classID)
                }
            }
            return classesOfID
        }
        let aware = try run(true)
        XCTAssertTrue(aware.values.allSatisfy { $0.count == 1 }, "class-aware mixed classes: \(aware)")
        XCTAssertEqual(Set(aware.values.flatMap { $0 }), [1, 2])
        let agnostic = try run(false)
        XCTAssertTrue(agnostic.values.contains { $0.count == 2 }, "agnostic kept classes apart: \(agnostic)")
    }

    // MARK: - Frame-rate-aware buffer

    func testMaxTimeLostScalesWithFrameRate() {
        XCTAssertEqual(ByteTrackConfig(frameRate: 30).maxTimeLost, 30)
        XCTAssertEqual(ByteTrackConfig(frameRate: 10).maxTimeLost, 10)
        XCTAssertEqual(ByteTrackConfig(frameRate: 25).maxTimeLost, 25)
        XCTAssertEqual(ByteTrackConfig(frameRate: 60).maxTimeLost, 60)
        var c = ByteTrackConfig(frameRate: 29.97)
        c.trackBuffer = 60
        XCTAssertEqual(c.maxTimeLost, 59)
    }

    func testStreamFrameRateAppliesUnlessGivenExplicitly() throws {
        XCTAssertEqual(ByteTrackConfig().resolvingFrameRate(stream: 12.5).maxTimeLost, 12)
        XCTAssertEqual(ByteTrackConfig().resolvingFrameRate(stream: nil).maxTimeLost, 30)
        XCTAssertEqual(ByteTrackConfig().resolvingFrameRate(stream: 0).maxTimeLost, 30)
        XCTAssertEqual(ByteTrackConfig(frameRate: 60).resolvingFrameRate(stream: 12.5).maxTimeLost, 60)
        let yaml = try JSONDecoder().decode(ByteTrackConfig.self, from: Data(#"{"frame_rate": 15}"#.utf8))
        XCTAssertEqual(yaml.resolvingFrameRate(stream: 25).frameRate, 15)
        let noRate = try JSONDecoder().decode(ByteTrackConfig.self, from: Data(#"{"track_buffer": 60}"#.utf8))
        XCTAssertEqual(noRate.resolvingFrameRate(stream: 10).maxTimeLost, 20)
        // Round trip through the encoder keeps every parameter.
        var c = ByteTrackConfig(frameRate: 24)
        c.classAware = true; c.matchThresh = 0.7; c.minBoxArea = 0; c.removedHistory = 5
        let back = try JSONDecoder().decode(ByteTrackConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(back, c)
    }

    /// A stationary object missing for `gap` frames keeps its id iff gap ≤ max_time_lost.
    private func idsAfterGap(_ gap: Int, fps: Double) throws -> [Int] {
        let t = try tracker { $0.frameRate = fps }
        var ids: [Int] = []
        var frame = 0
        for _ in 0..<5 { ids += t.update(detections: [det(300, 300)], frameIndex: frame).compactMap(\.trackID); frame += 1 }
        for _ in 0..<gap { _ = t.update(detections: [], frameIndex: frame); frame += 1 }
        for _ in 0..<3 { ids += t.update(detections: [det(300, 300)], frameIndex: frame).compactMap(\.trackID); frame += 1 }
        return ids
    }

    func testLostBufferIsFrameRateAware() throws {
        XCTAssertEqual(Set(try idsAfterGap(10, fps: 10)), [1])            // 10 fps: 10 frames kept
        XCTAssertEqual(Set(try idsAfterGap(11, fps: 10)), [1, 2])         // 11 frames: removed, new id
        XCTAssertEqual(Set(try idsAfterGap(11, fps: 30)), [1])            // 30 fps: 30 frames kept
        XCTAssertEqual(Set(try idsAfterGap(30, fps: 30)), [1])
        XCTAssertEqual(Set(try idsAfterGap(31, fps: 30)), [1, 2])
    }

    func testFrameIndexGapsAgeLostTracks() throws {
        let t = try tracker { $0.frameRate = 10 }   // max_time_lost 10
        for i in 0..<5 { _ = t.update(detections: [det(300, 300)], frameIndex: i) }
        _ = t.update(detections: [], frameIndex: 5)             // lost
        XCTAssertEqual(t.lostCount, 1)
        _ = t.update(detections: [], frameIndex: 17)            // 13 frames later (dropped frames)
        XCTAssertEqual(t.lostCount, 0)
        XCTAssertEqual(t.removedTracks.map(\.trackID), [1])
        XCTAssertEqual(t.removedTracks.first?.lastFrameIndex, 4)
    }

    // MARK: - Bounded state

    func testStateStaysBoundedOver100kFrames() throws {
        let t = try tracker { $0.removedHistory = 50 }
        var rng = TestRandom(seed: 11)
        // Objects that live a few hundred frames, plus false positives and low-score clutter every frame.
        var objects: [(x: Float, y: Float, vx: Float, vy: Float, death: Int)] = []
        var maxTracks = 0, maxEvents = 0, lastID = 0
        for f in 0..<100_000 {
            objects.removeAll { $0.death <= f }
            while objects.count < 6 {
                objects.append((Float(rng.uniform(100, 1800)), Float(rng.uniform(100, 1000)),
                                Float(rng.uniform(-4, 4)), Float(rng.uniform(-3, 3)), f + 50 + rng.int(400)))
            }
            var dets: [Detection] = []
            for k in objects.indices {
                objects[k].x += objects[k].vx; objects[k].y += objects[k].vy
                if rng.int(10) > 0 { dets.append(det(objects[k].x, objects[k].y, score: 0.9)) }
            }
            for _ in 0..<2 { dets.append(det(Float(rng.uniform(0, 1920)), Float(rng.uniform(0, 1080)), score: 0.7)) }
            dets.append(det(Float(rng.uniform(0, 1920)), Float(rng.uniform(0, 1080)), score: 0.2))
            let out = t.update(detections: dets, frameIndex: f)
            for d in out { lastID = max(lastID, d.trackID!) }
            maxTracks = max(maxTracks, t.trackedCount + t.lostCount)
            maxEvents = max(maxEvents, t.events.count)
        }
        // 6 live objects + ~2 tentative + tracks lost within the last 30 frames.
        XCTAssertLessThanOrEqual(maxTracks, 60, "tracks grew to \(maxTracks)")
        XCTAssertLessThanOrEqual(maxEvents, 30)
        XCTAssertEqual(t.removedTracks.count, 50, "history must fill to its cap and stay there")
        XCTAssertGreaterThan(lastID, 1000, "objects did come and go")
        // The history holds the most recent removals, oldest first.
        let ids = t.removedTracks.map(\.lastFrameIndex)
        XCTAssertEqual(ids, ids.sorted())
        XCTAssertGreaterThan(ids.first!, 95_000)
    }

    func testResetForgetsTracksAndKeepsIdsUnlessAsked() throws {
        let t = try tracker()
        _ = t.update(detections: [det(100, 100)], frameIndex: 0)
        t.reset()
        XCTAssertEqual(t.trackedCount + t.lostCount, 0)
        XCTAssertEqual(t.update(detections: [det(100, 100)], frameIndex: 0).map(\.trackID), [2])
        t.reset(restartIDs: true)
        XCTAssertEqual(t.update(detections: [det(100, 100)], frameIndex: 0).map(\.trackID), [1])
    }

    func testDegenerateDetectionsAreIgnored() throws {
        let t = try tracker()
        let bad = [Detection(box: Box(x1: 10, y1: 10, x2: 10, y2: 50), score: 0.9, classID: 1, className: "a"),
                   Detection(box: Box(x1: .nan, y1: 0, x2: 5, y2: 5), score: 0.9, classID: 1, className: "a"),
                   Detection(box: Box(x1: 0, y1: 0, x2: 5, y2: 5), score: .nan, classID: 1, className: "a")]
        XCTAssertTrue(t.update(detections: bad, frameIndex: 0).isEmpty)
        XCTAssertEqual(t.trackedCount, 0)
    }

    // MARK: - Config

    func testConfigDecodesByteTrackNamesAndRejectsTyposAndRanges() throws {
        let json = #"{"track_thresh": 0.6, "track_buffer": 60, "frame_rate": 15, "class_aware": true}"#
        let c = try JSONDecoder().decode(ByteTrackConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c.trackThresh, 0.6)
        XCTAssertEqual(c.newTrackThresh, 0.7, accuracy: 1e-6)    // derived: track_thresh + 0.1
        XCTAssertEqual(c.maxTimeLost, 30)
        XCTAssertTrue(c.classAware)
        XCTAssertEqual(c.matchThresh, 0.8)

        XCTAssertThrowsError(try JSONDecoder().decode(ByteTrackConfig.self, from: Data(#"{"track_tresh": 0.5}"#.utf8))) {
            XCTAssertEqual(($0 as? ByteTrackConfig.InvalidValue)?.key, "track_tresh")
        }
        XCTAssertThrowsError(try JSONDecoder().decode(ByteTrackConfig.self, from: Data(#"{"match_thresh": 8}"#.utf8))) {
            XCTAssertEqual(($0 as? ByteTrackConfig.InvalidValue)?.key, "match_thresh")
        }
        var bad = ByteTrackConfig()
        bad.trackLowThresh = 0.7
        XCTAssertThrowsError(try ByteTracker(config: bad))
        bad = ByteTrackConfig(frameRate: 0)
        XCTAssertThrowsError(try ByteTracker(config: bad)) {
            XCTAssertEqual(String(describing: $0), "tracker: frame_rate must be > 0, got 0.0")
        }
    }
}
