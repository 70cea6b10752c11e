import FPNCore
import Foundation
import Tensor
import TemporalReuse
import TestSupport
@testable import Vision
import XCTest

/// Reuse of the RoI heads' per-region results: a region whose box is unchanged and whose pooled pixels were not
/// written gets exactly the head's result back without being pooled or run, any other region is recomputed.
final class RegionReuseTests: XCTestCase {
    /// One 16x16 level (scale 1/4 of a 64-pixel image) on 2x2 tiles; the compute closure numbers its calls.
    func testKeepsRowsWhosePooledPixelsWereNotWrittenAndRecomputesTheOthers() {
        let reuse = RegionReuse(), pooler = MultiScaleRoIAlign(outputSize: 7)
        let level = Tensor(shape: [1, 1, 16, 16]), grid = TileGrid(height: 16, width: 16, tile: 2)
        // A reads level rows and columns 0..<7 (taps of 0...4 plus margin), B 9..<16.
        let a = Box(x1: 0, y1: 0, x2: 16, y2: 16), b = Box(x1: 40, y1: 40, x2: 60, y2: 60)
        var calls: [[Int]] = []
        func frame(_ written: RegionReuse.Written, _ boxes: [Box] = [a, b], labels: [Int]? = nil, head: RegionReuse.Head = .box,
                   level l: Tensor? = nil) -> [Float] {
            reuse.beginFrame(levels: [l ?? level], written: [written])
            return reuse.outputs(head, boxes: boxes, labels: labels, pooler: pooler, imageHeight: 64, width: 2) { misses in
                calls.append(misses)
                return misses.flatMap { [Float($0) + 10 * Float(calls.count), -1] }
            }
        }
        func tile(_ y: Int, _ x: Int) -> Int { (y / 2) * grid.columns + x / 2 }
        XCTAssertEqual(frame(nil), [10, -1, 11, -1], "nothing kept: both computed")
        XCTAssertEqual(frame((grid, [])), [10, -1, 11, -1], "nothing written: the kept rows")
        XCTAssertEqual(calls, [[0, 1]])
        XCTAssertEqual(reuse.lastReused[.box], 2)
        XCTAssertEqual(frame((grid, [tile(12, 12)])), [10, -1, 21, -1], "a tile under B written: B recomputed")
        XCTAssertEqual(calls.last, [1])
        XCTAssertEqual(frame((grid, [tile(6, 6)])), [30, -1, 21, -1],
                       "a tile in A's margin written; B's row of the last frame still holds")
        XCTAssertEqual(calls.last, [0])
        XCTAssertEqual(frame((grid, [tile(15, 0), tile(0, 15)])), [30, -1, 21, -1], "tiles under neither")
        XCTAssertEqual(calls.count, 3)
        var moved = a
        moved.x2 = 16.000002
        XCTAssertEqual(frame((grid, []), [moved, b]), [40, -1, 21, -1], "a box moved by one ulp is another region")
        XCTAssertEqual(reuse.lastComputed[.box], 1)
        XCTAssertEqual(frame(nil, [moved, b]), [50, -1, 51, -1], "a level without a record counts as all written")
        XCTAssertEqual(frame((grid, []), [moved, b], level: Tensor(shape: [1, 1, 16, 16])), [60, -1, 61, -1],
                       "as does a level in other storage")
        XCTAssertEqual(frame((grid, []), [moved, b], level: level), [70, -1, 71, -1], "and back")
        XCTAssertEqual(frame((grid, []), [moved, b], level: level), [70, -1, 71, -1])
        // The mask head keeps its own rows, keyed by box and label.
        XCTAssertEqual(frame((grid, []), labels: [1, 2], head: .mask), [80, -1, 81, -1])
        XCTAssertEqual(frame((grid, []), labels: [1, 3], head: .mask), [80, -1, 91, -1])
        XCTAssertEqual(reuse.lastReused[.mask], 1)
        XCTAssertEqual(frame((grid, []), [moved, b]), [70, -1, 71, -1], "the box head's rows were untouched")
        reuse.reset()
        XCTAssertEqual(frame((grid, []), [moved, b]), [100, -1, 101, -1], "reset forgets every row")
    }

    /// Every pixel a box's bilinear taps read (weight ≠ 0) lies in its footprint, on the level `pool` takes it
    /// from, for both poolers and boxes inside, across and past the image's edges; a small box's footprint stays
    /// small.
    func testFootprintHoldsEveryPixelTheTapsRead() {
        let levels = [(height: 48, width: 64), (height: 24, width: 32), (height: 12, width: 16), (height: 6, width: 8)]
        let imageHeight = 192
        var seed: UInt32 = 7
        func next() -> Float { seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 8) / Float(1 << 24) }
        var boxes = [Box(x1: 0, y1: 0, x2: 256, y2: 192), Box(x1: 255.5, y1: 191.5, x2: 256, y2: 192),
                     Box(x1: 0, y1: 0, x2: 0.3, y2: 0.2), Box(x1: -7, y1: -3, x2: 12, y2: 9),
                     Box(x1: 250, y1: 180, x2: 270, y2: 200)]
        for _ in 0..<400 {
            let x = next() * 270 - 8, y = next() * 200 - 6, w = next() * next() * 200, h = next() * next() * 150
            boxes.append(Box(x1: x, y1: y, x2: x + w, y2: y + h))
        }
        for pooler in [MultiScaleRoIAlign(outputSize: 7), MultiScaleRoIAlign(outputSize: 14)] {
            for box in boxes {
                let f = pooler.footprint(of: box, levels: levels, imageHeight: imageHeight)
                XCTAssertEqual(f.level, pooler.levelIndex(of: box, minLevel: 2, maxLevel: 5), "\(box)")
                let l = levels[f.level], scale = Float(1) / Float(4 << f.level), n = pooler.outputSize
                let taps = n * n * pooler.samplingRatio * pooler.samplingRatio * 4
                var pos = [Int](repeating: 0, count: taps), wts = [Float](repeating: 0, count: taps)
                pos.withUnsafeMutableBufferPointer { p in
                    wts.withUnsafeMutableBufferPointer { w in
                        RoIAlign.samples(box: box, spatialScale: scale, height: l.height, width: l.width, pooledHeight: n,
                                         pooledWidth: n, samplingRatio: pooler.samplingRatio, positions: p, weights: w)
                    }
                }
                for (p, w) in zip(pos, wts) where w != 0 {
                    XCTAssertTrue(f.rows.contains(p / l.width) && f.cols.contains(p % l.width),
                                  "\(box): tap (\(p / l.width), \(p % l.width)) outside \(f)")
                }
            }
        }
        let small = MultiScaleRoIAlign(outputSize: 7).footprint(of: Box(x1: 100, y1: 80, x2: 120, y2: 100), levels: levels,
                                                                 imageHeight: imageHeight)
        XCTAssertEqual(small.level, 0)
        XCTAssertEqual(small.rows, 19..<28, "taps on rows 20...25, with the margin")
        XCTAssertEqual(small.cols, 24..<33)
    }

    /// Hand-made P2-P5 of a `side` x `side` image: `a` and `b` channels-last (RoIAlign's layout), `b` differing
    /// from `a` in the image's top-left `corner` x `corner` pixels only; the levels as the runner returns them
    /// (channels-first; their storage is what the reuse tracks), their 2x2 tile grids and the tiles of the corner.
    struct Pyramid {
        let a: [Tensor], b: [Tensor], levels: [Tensor], grids: [TileGrid], corner: [[Int]]
        let geometry: TransformGeometry

        init(side: Int, channels c: Int, corner n: Int) {
            let strides = [4, 8, 16, 32]
            let a = strides.map { s in SyntheticWeights.uniform(key: "p\(s)", shape: [side / s, side / s, c], amplitude: 3) }
            b = zip(strides, a).map { s, t -> Tensor in
                let u = Tensor(shape: t.shape); u.copy(from: t)
                for y in 0..<(n / s) { for x in 0..<(n / s) { for ch in 0..<c { u[y, x, ch] += 1 } } }
                return u
            }
            self.a = a
            levels = strides.map { s in Tensor(shape: [1, c, side / s, side / s]) }
            let grids = strides.map { s in TileGrid(height: side / s, width: side / s, tile: 2) }
            self.grids = grids
            corner = zip(strides, grids).map { s, grid in
                (0..<grid.count).filter { grid.rect($0).rows.lowerBound < n / s && grid.rect($0).cols.lowerBound < n / s }
            }
            geometry = TransformGeometry(sourceWidth: side, sourceHeight: side, resizedWidth: side, resizedHeight: side,
                                         paddedWidth: side, paddedHeight: side)
        }
    }

    /// The tiny Mask R-CNN's RoI heads on hand-made pyramids and proposals: a frame whose levels were not written
    /// runs no region and gives bit-identical detections and masks; when the tiles of one corner are written, only
    /// the regions there are recomputed and the result is the heads' result on the new pyramid.
    func testMaskRCNNHeadsReuseUnchangedRegionsAndRecomputeChangedOnes() throws {
        let (weights, _) = try DetectorParityTests.materialize("tiny-maskrcnn")
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let heads = try XCTUnwrap(try DetectorLoader.load(contentsOf: weights) as? GeneralizedRCNN).roiHeads
        let ws = Workspace(), p = Pyramid(side: 256, channels: heads.channels, corner: 64)
        let (a, b, levels, grids, corner, g) = (p.a, p.b, p.levels, p.grids, p.corner, p.geometry)
        // 16 small boxes (pooled from P2) on a 4x4 grid: one in the changed corner.
        let proposals = (0..<16).map { i -> Box in
            let x = Float(i % 4 * 64 + 10), y = Float(i / 4 * 64 + 10)
            return Box(x1: x, y1: y, x2: x + 20, y2: y + 24)
        }
        let t = DetectionThresholds(score: 0, nms: 0.5, maxDetections: 100)
        let reuse = RegionReuse()
        func run(_ pooled: [Tensor], _ reuse: RegionReuse?) -> (RawDetections, [Float]) {
            let raw = heads.detect(pooled, proposals: proposals, geometry: g, thresholds: t, ws: ws, reuse: reuse)
            return (raw, heads.masks(pooled, detections: raw, geometry: g, ws: ws, reuse: reuse))
        }
        let denseA = run(a, nil), denseB = run(b, nil)
        XCTAssertFalse(denseA.0.boxes.isEmpty)
        reuse.beginFrame(levels: levels, written: grids.map { _ in nil })
        _ = run(a, reuse)
        XCTAssertEqual(reuse.lastComputed[.box], 16)
        reuse.beginFrame(levels: levels, written: grids.map { ($0, []) })
        let again = run(a, reuse)
        XCTAssertEqual(reuse.lastReused[.box], 16, "an unwritten pyramid runs no region through the box head")
        XCTAssertEqual(reuse.lastComputed[.mask], 0, "nor through the mask head")
        XCTAssertEqual(again.0.boxes, denseA.0.boxes, "bit-identical to the heads' result")
        XCTAssertEqual(again.0.scores, denseA.0.scores)
        XCTAssertEqual(again.0.labels, denseA.0.labels)
        XCTAssertEqual(again.1, denseA.1)
        reuse.beginFrame(levels: levels, written: zip(grids, corner).map { ($0, $1) })
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

    /// Keypoint R-CNN's keypoint branch (a synthetic model, 32 wide) on hand-made pyramids: detections under no
    /// written tile get their keypoints back without running the tower, bit for bit; one under a written corner is
    /// recomputed, equal to the branch on the new pyramid up to GEMM rounding.
    func testKeypointBranchReusesUnchangedDetections() throws {
        let dir = TestPaths.temporaryDirectory("keypoint-reuse")
        defer { try? FileManager.default.removeItem(at: dir) }
        let names = String(data: try JSONEncoder().encode(DetectorConfig.cocoKeypointNames), encoding: .utf8)!
        let metadata = ["architecture": "keypointrcnn_resnet18_fpn", "keypoint_names": names, "fpn_channels": "32",
                        "box_head_dim": "16", "class_names": #"["__background__","person"]"#]
        let scratch = dir.appendingPathComponent("empty.safetensors")
        try SafeTensorsWriter.write([:], metadata: metadata, to: scratch)
        var expected = try DetectorLoader.expectedKeys(file: SafeTensorsFile(url: scratch),
                                                       config: DetectorConfig(metadata: metadata, file: scratch))
        for i in 0..<8 {
            expected["roi_heads.keypoint_head.\(2 * i).weight"] = [16, i == 0 ? 32 : 16, 3, 3]
            expected["roi_heads.keypoint_head.\(2 * i).bias"] = [16]
        }
        expected["roi_heads.keypoint_predictor.kps_score_lowres.weight"] = [16, 17, 4, 4]
        let url = dir.appendingPathComponent("kp.safetensors")
        try SafeTensorsWriter.write(SyntheticWeights.stateDict(expected: expected), metadata: metadata, to: url)
        let model = try XCTUnwrap(try DetectorLoader.load(contentsOf: url) as? GeneralizedRCNN)
        let heads = model.roiHeads, branch = try XCTUnwrap(model.keypointHead)
        XCTAssertEqual(heads.channels, 32)
        let ws = Workspace(), p = Pyramid(side: 128, channels: heads.channels, corner: 32)
        let (a, b, levels, grids, corner, g) = (p.a, p.b, p.levels, p.grids, p.corner, p.geometry)
        // Three small detections (pooled from P2): the first in the changed corner.
        let boxes = [Box(x1: 4, y1: 6, x2: 20, y2: 24), Box(x1: 70, y1: 60, x2: 90, y2: 84),
                     Box(x1: 40, y1: 90, x2: 58, y2: 110)]
        let reuse = RegionReuse()
        let denseA = branch.keypoints(heads, a, boxes: boxes, geometry: g, ws: ws)
        let denseB = branch.keypoints(heads, b, boxes: boxes, geometry: g, ws: ws)
        XCTAssertNotEqual(denseA[0], denseB[0], "the change reaches the corner's keypoints")
        XCTAssertEqual(Array(denseA[1...]), Array(denseB[1...]))
        reuse.beginFrame(levels: levels, written: grids.map { _ in nil })
        XCTAssertEqual(branch.keypoints(heads, a, boxes: boxes, geometry: g, ws: ws, reuse: reuse), denseA)
        XCTAssertEqual(reuse.lastComputed[.keypoint], 3)
        reuse.beginFrame(levels: levels, written: grids.map { ($0, []) })
        XCTAssertEqual(branch.keypoints(heads, a, boxes: boxes, geometry: g, ws: ws, reuse: reuse), denseA,
                       "an unwritten pyramid: the kept keypoints, bit for bit")
        XCTAssertEqual(reuse.lastReused[.keypoint], 3)
        reuse.beginFrame(levels: levels, written: zip(grids, corner).map { ($0, $1) })
        let changed = branch.keypoints(heads, b, boxes: boxes, geometry: g, ws: ws, reuse: reuse)
        XCTAssertEqual(reuse.lastComputed[.keypoint], 1, "only the corner's detection runs the tower")
        XCTAssertEqual(Array(changed[1...]), Array(denseB[1...]))
        for (x, y) in zip(changed[0], denseB[0]) {
            XCTAssertEqual(x.x, y.x, accuracy: 1e-3); XCTAssertEqual(x.y, y.y, accuracy: 1e-3)
            XCTAssertEqual(x.score, y.score, accuracy: 1e-4)
        }
    }

    /// The kept channels-last levels equal a full transpose of each level after every frame: written tiles
    /// (scattered, in runs, at the ragged right and bottom edges) transposed again, a level without a record or
    /// in other storage in full, and a frame whose copy was not asked for (the next one cannot build on it). A level
    /// written whole goes to the workspace, not the kept copy, which the next frame rebuilds.
    func testChannelsLastCopiesEqualTheFullTransposeFrameAfterFrame() {
        let reuse = RegionReuse(), ws = Workspace()
        var keptLevel1: ObjectIdentifier?
        let c = 20, shapes = [(15, 21), (8, 11)]
        var levels = shapes.map { h, w in SyntheticWeights.uniform(key: "cl\(h)", shape: [1, c, h, w], amplitude: 2) }
        let grids = shapes.map { h, w in TileGrid(height: h, width: w, tile: 2) }
        var seed: UInt32 = 3
        func next(_ n: Int) -> Int { seed = seed &* 1_664_525 &+ 1_013_904_223; return Int(seed >> 8) % n }
        func check(_ frame: Int) {
            let got = reuse.channelsLast(levels, channels: c, workspace: ws)
            let id = ObjectIdentifier(got[1].storage)
            if frame == 6 { keptLevel1 = id }
            if frame == 7 { XCTAssertNotEqual(id, keptLevel1, "a level written whole is transposed into the workspace") }
            if frame == 8 { XCTAssertEqual(id, keptLevel1, "then the kept copy again") }
            for (l, t) in zip(levels, got) {
                var want = [Float](repeating: 0, count: l.count)
                l.withUnsafeBufferPointer { src in
                    want.withUnsafeMutableBufferPointer { RoIAlign.channelsLast(src, channels: c, height: l.h, width: l.w, into: $0) }
                }
                XCTAssertEqual(t.array, want, "frame \(frame)")
            }
        }
        /// Writes a new value into every pixel of `tiles` of level `i`, all channels.
        func write(_ i: Int, _ tiles: [Int]) {
            for tile in tiles {
                let r = grids[i].rect(tile)
                for ch in 0..<c { for y in r.rows { for x in r.cols { levels[i][0, ch, y, x] += Float(next(7) + 1) } } }
            }
        }
        reuse.beginFrame(levels: levels, written: [nil, nil])
        check(0)
        for frame in 1..<12 {
            var written: [RegionReuse.Written] = []
            for i in levels.indices {
                let n = grids[i].count
                var tiles = Set((0..<next(6)).map { _ in next(n) })
                if frame == 3 { tiles.formUnion([n - 1, n - 2, grids[i].columns - 1]) }   // the ragged edges
                if frame == 5 { tiles.formUnion(0..<min(n, 7)) }                         // a run across a row end
                write(i, Array(tiles))
                written.append((grids[i], Array(tiles).shuffled()))
            }
            if frame == 7 {
                write(1, Array(0..<grids[1].count))
                written[1] = nil
            }
            if frame == 9 {
                let moved = Tensor(shape: levels[0].shape); moved.copy(from: levels[0])
                levels[0] = moved
            }
            reuse.beginFrame(levels: levels, written: written)
            if frame == 10 { continue }   // no copy this frame: frame 11 must not build on frame 9's
            check(frame)
            if frame == 4 { check(frame) }   // asked twice in a frame
        }
    }
}
