import FPNCore
import Foundation
import Tensor
import TemporalReuse
import TestSupport
@testable import Vision
import XCTest

/// Reuse of the RoI heads' per-region results: an unchanged region gets exactly the head's result back without
/// running it, a changed one is recomputed.
final class RegionReuseTests: XCTestCase {
    func testKeepsRowsOfUnchangedRegionsAndRecomputesChangedOnes() {
        let reuse = RegionReuse()
        let boxes = [Box(x1: 0, y1: 0, x2: 4, y2: 4), Box(x1: 2, y1: 2, x2: 9, y2: 9)]
        let pooled = Tensor(shape: [2, 1, 2, 2], data: [1, 2, 3, 4, 5, 6, 7, 8])
        var calls: [[Int]] = []
        func run(_ p: Tensor, _ b: [Box]) -> [Float] {
            reuse.outputs(.box, keys: reuse.keys(b, labels: nil, pooled: p), width: 2) { misses in
                calls.append(misses)
                return misses.flatMap { [Float($0) + 10 * Float(calls.count), -1] }
            }
        }
        XCTAssertEqual(run(pooled, boxes), [10, -1, 11, -1])
        XCTAssertEqual(run(pooled, boxes), [10, -1, 11, -1], "both regions unchanged: the kept rows")
        XCTAssertEqual(calls, [[0, 1]])
        XCTAssertEqual(reuse.lastReused[.box], 2)
        // One value of region 1 changes by one ulp; region 0's box moves by one ulp: both recomputed.
        let changed = Tensor(shape: [2, 1, 2, 2], data: [1, 2, 3, 4, 5, 6, 7, 8.000001])
        var moved = boxes
        moved[0].x2 = 4.0000005
        XCTAssertEqual(run(changed, boxes), [10, -1, 21, -1])
        XCTAssertEqual(calls.last, [1])
        XCTAssertEqual(run(changed, moved), [30, -1, 21, -1])
        XCTAssertEqual(calls.last, [0])
        XCTAssertEqual(reuse.lastComputed[.box], 1)
        let swapped = [[Float(1), 2], [2, 1]].map { v in v.withUnsafeBufferPointer { Ops.rowDigest($0) } }
        XCTAssertTrue(swapped[0] != swapped[1], "a swap of two values changes the digest")
    }

    /// The tiny Mask R-CNN's RoI heads on hand-made pyramids and proposals: a repeated frame runs no region and
    /// gives bit-identical detections and masks; when the pyramid changes in one corner, only the regions there are
    /// recomputed and the result is the heads' result on the new pyramid.
    func testMaskRCNNHeadsReuseUnchangedRegionsAndRecomputeChangedOnes() throws {
        let (weights, _) = try DetectorParityTests.materialize("tiny-maskrcnn")
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let heads = try XCTUnwrap(try DetectorLoader.load(contentsOf: weights) as? GeneralizedRCNN).roiHeads
        let c = heads.channels, side = 256, ws = Workspace()
        let g = TransformGeometry(sourceWidth: side, sourceHeight: side, resizedWidth: side, resizedHeight: side,
                                  paddedWidth: side, paddedHeight: side)
        // Channels-last P2-P5 (RoIAlign's layout); B differs from A in the image's top-left 64x64 pixels only.
        let a = [4, 8, 16, 32].map { s in SyntheticWeights.uniform(key: "p\(s)", shape: [side / s, side / s, c], amplitude: 3) }
        let b = zip([4, 8, 16, 32], a).map { s, t -> Tensor in
            let u = Tensor(shape: t.shape); u.copy(from: t)
            for y in 0..<(64 / s) { for x in 0..<(64 / s) { for ch in 0..<c { u[y, x, ch] += 1 } } }
            return u
        }
        // 16 small boxes (pooled from P2) on a 4x4 grid: one in the changed corner.
        let proposals = (0..<16).map { i -> Box in
            let x = Float(i % 4 * 64 + 10), y = Float(i / 4 * 64 + 10)
            return Box(x1: x, y1: y, x2: x + 20, y2: y + 24)
        }
        let t = DetectionThresholds(score: 0, nms: 0.5, maxDetections: 100)
        let reuse = RegionReuse()
        func run(_ levels: [Tensor], _ reuse: RegionReuse?) -> (RawDetections, [Float]) {
            let raw = heads.detect(levels, proposals: proposals, geometry: g, thresholds: t, ws: ws, reuse: reuse)
            return (raw, heads.masks(levels, detections: raw, geometry: g, ws: ws, reuse: reuse))
        }
        let denseA = run(a, nil), denseB = run(b, nil)
        XCTAssertFalse(denseA.0.boxes.isEmpty)
        _ = run(a, reuse)
        XCTAssertEqual(reuse.lastComputed[.box], 16)
        let again = run(a, reuse)
        XCTAssertEqual(reuse.lastReused[.box], 16, "a repeated frame runs no region through the box head")
        XCTAssertEqual(reuse.lastComputed[.mask], 0, "nor through the mask head")
        XCTAssertEqual(again.0.boxes, denseA.0.boxes, "bit-identical to the heads' result")
        XCTAssertEqual(again.0.scores, denseA.0.scores)
        XCTAssertEqual(again.0.labels, denseA.0.labels)
        XCTAssertEqual(again.1, denseA.1)
        let changed = run(b, reuse)
        XCTAssertEqual(reuse.lastComputed[.box], 1, "only the corner's proposal is recomputed")
        XCTAssertEqual(reuse.lastReused[.box], 15)
        XCTAssertGreaterThan(reuse.lastComputed[.mask] ?? 0, 0)
        XCTAssertGreaterThan(reuse.lastReused[.mask] ?? 0, 0)
        // The recomputed region ran in a batch of one instead of 16: equal up to GEMM rounding.
        XCTAssertEqual(changed.0.labels, denseB.0.labels)
        XCTAssertEqual(changed.0.boxes.count, denseB.0.boxes.count)
        for (x, y) in zip(changed.0.scores, denseB.0.scores) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        for (x, y) in zip(changed.0.boxes, denseB.0.boxes) { XCTAssertEqual(x.x1, y.x1, accuracy: 1e-3); XCTAssertEqual(x.y2, y.y2, accuracy: 1e-3) }
        XCTAssertEqual(changed.1.count, denseB.1.count)
        for (x, y) in zip(changed.1, denseB.1) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        XCTAssertNotEqual(changed.0.scores, denseA.0.scores, "the change reached the corner's detections")
    }

    /// Two dense frames in a row (a moving camera) skip the keying: the heads run every region as without reuse and
    /// the kept rows are forgotten; a dense frame after a delta frame (a scheduled refresh) keys its regions, so the
    /// delta frame after it reuses them.
    func testDenseRunsSkipTheKeyingAndARefreshKeysForTheNextFrame() {
        let reuse = RegionReuse()
        var dense = true
        reuse.denseFrame = { dense }
        let boxes = [Box(x1: 0, y1: 0, x2: 4, y2: 4), Box(x1: 2, y1: 2, x2: 9, y2: 9)]
        let pooled = Tensor(shape: [2, 1, 2, 2], data: [1, 2, 3, 4, 5, 6, 7, 8])
        var computed = 0
        func frame(dense d: Bool) -> Bool {
            dense = d
            reuse.beginFrame()
            if reuse.active {
                _ = reuse.outputs(.box, keys: reuse.keys(boxes, labels: nil, pooled: pooled), width: 1) { misses in
                    computed += misses.count
                    return misses.map(Float.init)
                }
            } else {
                reuse.computedWithoutKeys(.box, count: boxes.count)
            }
            return reuse.active
        }
        XCTAssertTrue(frame(dense: true), "the first frame keys its regions for the next")
        XCTAssertTrue(frame(dense: false))
        XCTAssertEqual(reuse.lastReused[.box], 2)
        XCTAssertTrue(frame(dense: true), "a refresh after a delta frame keys its regions")
        XCTAssertEqual(reuse.lastReused[.box], 2, "and may still match where the pyramid kept its bits")
        XCTAssertFalse(frame(dense: true), "a second dense frame skips the keying")
        XCTAssertEqual(reuse.lastComputed[.box], 2)
        XCTAssertFalse(frame(dense: true))
        XCTAssertTrue(frame(dense: false), "a delta frame keys again")
        XCTAssertEqual(reuse.lastReused[.box], 0, "the rows kept before the dense run were forgotten")
        XCTAssertEqual(computed, 4)
        XCTAssertTrue(frame(dense: false))
        XCTAssertEqual(reuse.lastReused[.box], 2)
        XCTAssertEqual(computed, 4, "the last frame reused both regions")
    }

    /// A head whose keyed frame reused less than `minReusedFraction` of its regions stops keying for
    /// `pauseFrames` frames (the heads then run every region), a probe frame after the pause that still reuses too
    /// little doubles the pause, and one that reuses enough keys every frame again. The first keyed frame of a
    /// stream (nothing kept to match) and the other head are not paused.
    func testLowReusePausesKeyingAndDoublesThePauseWhileItStaysLow() {
        let reuse = RegionReuse()
        reuse.denseFrame = { false }
        let n = 8
        let boxes = (0..<n).map { i in Box(x1: Float(i), y1: 0, x2: Float(i) + 4, y2: 4) }
        var values = [Float](repeating: 0, count: n)
        /// One frame whose first `change` regions' pooled features change; false when the box head did not key.
        func frame(change: Int) -> Bool {
            for i in 0..<change { values[i] += 1 }
            reuse.beginFrame()
            guard reuse.keys(.box) else { return false }
            let pooled = Tensor(shape: [n, 1, 1, 2], data: (0..<n).flatMap { [Float($0), values[$0]] })
            _ = reuse.outputs(.box, keys: reuse.keys(boxes, labels: nil, pooled: pooled), width: 1) { $0.map(Float.init) }
            return true
        }
        XCTAssertTrue(frame(change: n), "the first frame keys")
        XCTAssertTrue(frame(change: n), "and gives no verdict: nothing was kept to match")
        XCTAssertEqual(reuse.lastReused[.box], 0, "0 of 8 reused: below the bound")
        let pause = RegionReuse.pauseFrames
        for i in 0..<pause { XCTAssertFalse(frame(change: 0), "paused frame \(i)") }
        XCTAssertTrue(reuse.keys(.mask), "the mask head keys on")
        XCTAssertTrue(frame(change: n - 1), "the probe after the pause keys")
        XCTAssertEqual(reuse.lastReused[.box], 1, "1 of 8: still below the bound")
        for i in 0..<(2 * pause) { XCTAssertFalse(frame(change: 0), "doubled pause, frame \(i)") }
        XCTAssertTrue(frame(change: n - 2), "the next probe keys")
        XCTAssertEqual(reuse.lastReused[.box], 2, "2 of 8: at the bound, not below")
        XCTAssertTrue(frame(change: n), "so keying goes on every frame")
        XCTAssertEqual(reuse.lastReused[.box], 0)
        for i in 0..<pause { XCTAssertFalse(frame(change: 0), "the pause starts short again, frame \(i)") }
        XCTAssertTrue(frame(change: 0))
        XCTAssertEqual(reuse.lastReused[.box], n, "rows kept before a pause still match after it")
    }
}
