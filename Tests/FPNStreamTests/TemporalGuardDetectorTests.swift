import FPNCore
import FPNStream
import Foundation
import Outputs
import TemporalReuse
import TestSupport
import XCTest

/// The accuracy guard through a real detector (the tiny Mask R-CNN fixture) in delta mode: verified frames carry its
/// decision and the dense result; an unchanged stream loosens, an injected drift (thresholds that ignore a real
/// change) tightens; the decision reaches the JSONL frame line.
final class TemporalGuardDetectorTests: XCTestCase {
    private func detector(_ settings: TemporalSettings) throws -> (ModelDetector, ModelDetector) {
        let dir = TestPaths.temporaryDirectory("guard")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try TinyModel.write(to: dir)
        var delta = try ModelDetector(spec: ModelSpec(path: path))
        try delta.useTemporal(settings)
        return (delta, try ModelDetector(spec: ModelSpec(path: path)))
    }

    /// A 96x96 frame: a gradient, with a bright square at `patch` (x, y) when given.
    private func frame(_ i: Int, patch: (Int, Int)? = nil) -> Frame {
        var image = RGBImage(width: 96, height: 96)
        for y in 0..<96 {
            for x in 0..<96 {
                var v = UInt8((x * 2 + y) % 256)
                if let (px, py) = patch, (px..<px + 40).contains(x), (py..<py + 40).contains(y) { v = 250 }
                for c in 0..<3 { image.pixels[(y * 96 + x) * 3 + c] = v &+ UInt8(c * 20) }
            }
        }
        return Frame(info: FrameInfo(index: i, pts: Double(i), wallTime: 0, width: 96, height: 96, source: "t"),
                     image: image)
    }

    func testAnUnchangedStreamLoosensAndVerifiedFramesAreDense() throws {
        var settings = TemporalSettings(mode: .delta, refreshInterval: 2)
        settings.accuracyGuard = TemporalGuardSettings(window: 1)
        var (d, dense) = try detector(settings)
        var records: [TemporalGuardRecord?] = [], fractions: [Double?] = []
        for i in 0..<7 {
            var r = FrameResult(info: frame(i).info)
            try d.detect(frame(i), into: &r)
            records.append(r.temporalGuard); fractions.append(r.recomputedFraction)
            var ref = FrameResult(info: frame(i).info)
            try dense.detect(frame(i), into: &ref)
            XCTAssertEqual(r.detections, ref.detections, "frame \(i): an unchanged frame gives the dense result")
        }
        XCTAssertEqual(records.map { $0?.action }, [nil, nil, "loosen", nil, "loosen", nil, "loosen"])
        XCTAssertEqual(records.compactMap { $0?.group }, ["input", "backbone", "heads"])
        XCTAssertEqual(fractions, [1, 0, 1, 0, 1, 0, 1], "the verified frames are the refreshes")
        let last = try XCTUnwrap(records[6])
        XCTAssertEqual(last.pyramidError, 0, "the probe equals the dense pyramid on an unchanged frame")
        XCTAssertEqual(last.f1, 1)
        XCTAssertEqual(last.probeRecomputed, 0)
        XCTAssertEqual(last.scales.map(\.scale), [1.25, 1.25, 1.25])
        let scales = try XCTUnwrap(d.temporalState?.cache.thresholdScales)
        XCTAssertEqual(scales[.heads], 1.25)
        // The decision is on the frame's JSONL line.
        var r = FrameResult(info: frame(6).info)
        r.temporalGuard = last
        let line = String(decoding: JSONLRecord.frame(r), as: UTF8.self)
        XCTAssertTrue(line.contains(#""temporal_guard":{"action":"loosen","group":"heads","f1":1,"#), line)
        XCTAssertTrue(line.contains(#""scales":{"input":1.25,"backbone":1.25,"heads":1.25}"#), line)
    }

    func testAnInjectedDriftTightensAndTheFrameKeepsTheDenseResult() throws {
        // Thresholds so large that no change counts: the delta probe keeps the first frame's pyramid while a square
        // appeared, a drift the verification must see.
        var settings = TemporalSettings(mode: .delta, threshold: 1e6, refreshInterval: 8)
        settings.accuracyGuard = TemporalGuardSettings(window: 1)
        var (d, dense) = try detector(settings)
        var records: [TemporalGuardRecord?] = []
        for i in 0..<3 {
            let f = frame(i, patch: i == 0 ? nil : (30, 20))
            var r = FrameResult(info: f.info)
            try d.detect(f, into: &r)
            records.append(r.temporalGuard)
            if i == 2 {   // the early check, a quarter of the refresh interval after the start
                var ref = FrameResult(info: f.info)
                try dense.detect(f, into: &ref)
                XCTAssertEqual(r.detections, ref.detections, "a verified frame reports the dense result")
            } else if i > 0 {
                XCTAssertEqual(r.recomputedFraction, 0, "frame \(i): the change is ignored")
            }
        }
        XCTAssertNil(records[1])
        let e = try XCTUnwrap(records[2])
        XCTAssertEqual(e.action, "tighten")
        XCTAssertGreaterThan(try XCTUnwrap(e.pyramidError), 0.15)
        XCTAssertEqual(e.scales.map(\.scale), [0.5, 0.5, 0.5])
        XCTAssertEqual(d.temporalState?.cache.thresholdScales[.input], 0.5)
        XCTAssertEqual(d.temporalState?.accuracyGuard?.tightened, 1)
    }

    func testAutoCalibratesOnTheFirstFramesThenRunsDelta() throws {
        var settings = TemporalSettings(mode: .auto)
        settings.autoFrames = 2
        settings.autoRuns = 3
        var (d, _) = try detector(settings)
        var fractions: [Double?] = [], records: [TemporalGuardRecord?] = []
        for i in 0..<4 {
            var r = FrameResult(info: frame(i).info)
            try d.detect(frame(i), into: &r)
            fractions.append(r.recomputedFraction); records.append(r.temporalGuard)
        }
        XCTAssertEqual(fractions, [1, 1, 0, 0], "two dense calibration frames, then delta on the unchanged frames")
        XCTAssertNil(records[0])
        XCTAssertEqual(records[1]?.action, "calibrated")
        XCTAssertTrue(records[1]?.note?.hasSuffix("on 2 frames, 3 runs)") == true, records[1]?.note ?? "")
        let cache = try XCTUnwrap(d.temporalState?.cache)
        XCTAssertEqual(cache.settings.mode, .delta)
        XCTAssertEqual(Set(cache.settings.layerThresholds.keys), Set(d.temporalLayerKeys), "every backbone conv tuned")
        XCTAssertEqual(cache.settings.layerThresholds["backbone.body.conv1"], 0.05, "the stem climbed for 2 runs")
        XCTAssertEqual(d.temporal.mode, .auto, "a new stream calibrates again")
    }

    func testGuardOffRunsPlainDelta() throws {
        var settings = TemporalSettings(mode: .delta, refreshInterval: 2)
        settings.accuracyGuard.enabled = false
        var (d, _) = try detector(settings)
        for i in 0..<5 {
            var r = FrameResult(info: frame(i).info)
            try d.detect(frame(i), into: &r)
            XCTAssertNil(r.temporalGuard)
        }
        XCTAssertNil(d.temporalState?.accuracyGuard)
    }
}
