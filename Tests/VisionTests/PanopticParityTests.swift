import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Semantic FPN head and panoptic merge against torch (Tests/Fixtures/panoptic/semseg.safetensors, written by
/// `scripts/fixtures-panoptic` from scripts/py/panoptic_fpn.py: detectron2's head and merge re-implemented in torch).
final class PanopticParityTests: XCTestCase {
    func fixture() throws -> SafeTensorsFile {
        try SafeTensorsFile(url: TestPaths.fixtures.appendingPathComponent("panoptic/semseg.safetensors"))
    }

    func size(_ s: String?) throws -> (height: Int, width: Int) {
        let p = try XCTUnwrap(s).split(separator: ",").compactMap { Int($0) }
        return (p[0], p[1])
    }

    func head(_ f: SafeTensorsFile) throws -> SemanticFPNHead {
        let m = f.metadata
        return try SemanticFPNHead(ModuleLoader(file: f), inChannels: Int(m["in_channels"]!)!,
                                   convDims: Int(m["conv_dims"]!)!, numClasses: Int(m["num_classes"]!)!,
                                   groups: Int(m["groups"]!)!)
    }

    func testLogitsAndLabelsMatchTorch() throws {
        let f = try fixture()
        let h = try head(f)
        let ws = Workspace()
        for frame in 0..<2 {   // the second pass replays the workspace plan: buffer reuse must not change results
            ws.beginFrame()
            let feats = try (2...5).map { try f.tensor("fixture.p\($0)") }
            let logits = h.logits(feats, workspace: ws)
            assertParity(logits, try f.tensor("fixture.logits"), "semantic logits (pass \(frame))")
            let seg = h.segmentation(logits: logits, inputSize: try size(f.metadata["input_size"]),
                                     outputSize: try size(f.metadata["output_size"]), workspace: ws)
            let want = try f.tensor("fixture.labels").array.map { UInt8($0) }
            XCTAssertEqual(seg.labels.count, want.count)
            let mismatches = zip(seg.labels, want).filter { $0 != $1 }.count
            // Ties between classes are impossible with random logits; a crop/resize/argmax bug changes hundreds.
            XCTAssertLessThanOrEqual(mismatches, 2, "labels differing from torch")
            XCTAssertEqual(Set(want).count, 4, "fixture exercises 4 labels")
        }
    }

    func testMergeMatchesDetectron2() throws {
        let f = try fixture()
        let (hgt, wid) = try size(f.metadata["output_size"])
        let labels = try f.tensor("fixture.labels").array.map { UInt8($0) }
        let masks = try f.tensor("fixture.masks")
        let scores = try f.tensor("fixture.scores").array, classes = try f.tensor("fixture.classes").array
        let plane = hgt * wid
        let all = masks.array
        let instances = scores.indices.map { i in
            (score: scores[i], classID: Int(classes[i]), mask: all[(i * plane)..<((i + 1) * plane)].map { UInt8($0) })
        }
        let config = PanopticMergeConfig(stuffAreaLimit: Int(f.metadata["stuff_area"]!)!)
        let got = PanopticMerge.merge(instances: instances,
                                      semantic: SemanticSegmentation(height: hgt, width: wid, labels: labels),
                                      config: config)
        XCTAssertEqual(got.ids.map { Float($0) }, try f.tensor("fixture.panoptic").array, "panoptic id map")
        struct Seg: Decodable { let id: Int; let isthing: Bool; let category_id: Int; let area: Int
                                let score: Float?; let instance_id: Int? }
        let want = try JSONDecoder().decode([Seg].self, from: Data(f.metadata["segments"]!.utf8))
        XCTAssertEqual(got.segments.count, want.count)
        for (g, w) in zip(got.segments, want) {
            XCTAssertEqual(g.id, w.id); XCTAssertEqual(g.isThing, w.isthing); XCTAssertEqual(g.categoryID, w.category_id)
            XCTAssertEqual(g.area, w.area, "segment \(w.id) area"); XCTAssertEqual(g.score, w.score)
            XCTAssertEqual(g.instanceIndex, w.instance_id)
            XCTAssertEqual(got.mask(of: g.id).area, g.area)
        }
        XCTAssertEqual(got.masks(), got.segments.map { got.mask(of: $0.id) }, "one-pass masks")
        // The fixture covers: a skipped overlapped instance, a kept partially overlapped one, an empty mask, a
        // score below 0.5 and a stuff label below the area limit.
        XCTAssertTrue(want.contains { $0.instance_id == 4 })
        XCTAssertFalse(want.contains { $0.instance_id == 1 || $0.instance_id == 5 || $0.instance_id == 6 })
        XCTAssertFalse(want.contains { !$0.isthing && $0.category_id == 1 })
    }

    /// The whole Panoptic FPN (tiny Mask R-CNN fixture + semantic head, `scripts/fixtures-panoptic`) against torch:
    /// detections as `DetectorParityTests`, the panoptic segments exactly (ids, thing/stuff, categories, scores) and
    /// the id map to within a few pixels (mask-threshold and argmax knife edges), twice on one state.
    func testPanopticDetectorMatchesTorch() throws {
        let (weights, fixture) = try DetectorParityTests.materialize("panoptic/tiny-panoptic")
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let detector = try DetectorLoader.load(contentsOf: weights)
        let image = try DetectorParityTests.image(fixture)
        let state = DetectorState()
        let (dets, pan) = detector.detectPanoptic(image, state: state)
        try DetectorParityTests.assertDetections(dets, fixture: fixture, image: image, "tiny-panoptic")
        let segments = try XCTUnwrap(pan)
        struct Seg: Decodable { let id: Int; let isthing: Bool; let category_id: Int; let area: Int; let score: Float? }
        let want = try JSONDecoder().decode([Seg].self, from: Data(fixture.metadata["fixture.segments"]!.utf8))
        XCTAssertEqual(segments.count, want.count, "segment count")
        XCTAssertTrue(want.contains { $0.isthing } && want.contains { !$0.isthing }, "fixture has things and stuff")
        let things = detector.config.numClasses - 1
        for (g, w) in zip(segments, want) {
            XCTAssertEqual(g.id, w.id)
            XCTAssertEqual(g.isThing, w.isthing, "segment \(w.id)")
            XCTAssertEqual(g.categoryID, w.isthing ? w.category_id : things + w.category_id, "segment \(w.id)")
            XCTAssertEqual(abs(g.area - w.area) <= max(2, w.area / 100), true, "segment \(w.id) area \(g.area) vs \(w.area)")
            if let s = w.score { XCTAssertEqual(Double(g.score ?? -1), Double(s), accuracy: 1e-3) } else { XCTAssertNil(g.score) }
            if !w.isthing {
                XCTAssertEqual(g.categoryName, ["things", "sky", "grass", "road"][w.category_id])
            }
        }
        // Rebuild the id map from the segments' masks and compare with torch's.
        var ids = [Float](repeating: 0, count: image.width * image.height)
        for s in segments {
            for (i, v) in s.mask.rowMajor().enumerated() where v != 0 { ids[i] = Float(s.id) }
        }
        let ref = try fixture.tensor("fixture.panoptic").array
        XCTAssertEqual(ref.count, ids.count)
        let differing = zip(ids, ref).filter { $0 != $1 }.count
        XCTAssertLessThanOrEqual(differing, ids.count / 500, "panoptic id map: \(differing) of \(ids.count) pixels differ")
        XCTAssertEqual(Set(ref).count, want.count + (ref.contains(0) ? 1 : 0))
        let allocations = state.workspace.allocationCount
        let again = detector.detectPanoptic(image, state: state)
        XCTAssertEqual(again.panoptic, segments)
        XCTAssertEqual(state.workspace.allocationCount, allocations, "second frame allocated")
    }

    func testMergeThresholdsAreConfigurable() {
        // 4x4 image: stuff label 1 everywhere; one instance (score 0.3) covering the left half.
        let sem = SemanticSegmentation(height: 4, width: 4, labels: [UInt8](repeating: 1, count: 16))
        let mask = (0..<16).map { UInt8($0 % 4 < 2 ? 1 : 0) }
        let strict = PanopticMerge.merge(instances: [(0.3, 2, mask)], semantic: sem)
        XCTAssertEqual(strict.segments.map(\.isThing), [], "score 0.3 < 0.5 and 16 px < 4096: nothing")
        let loose = PanopticMerge.merge(instances: [(0.3, 2, mask)], semantic: sem,
                                        config: PanopticMergeConfig(stuffAreaLimit: 8, instanceScoreThreshold: 0.2))
        XCTAssertEqual(loose.segments.map(\.isThing), [true, false])
        XCTAssertEqual(loose.segments.map(\.area), [8, 8])
        XCTAssertEqual(loose.ids, (0..<16).map { Int32($0 % 4 < 2 ? 1 : 2) })
        // Column-major: segment 1 is the first 8 pixels, segment 2 the last 8.
        XCTAssertEqual(loose.masks().map(\.counts), [[0, 8, 8], [8, 8]])
    }

    /// Masks given over their regions merge exactly as the same masks over the whole image: overlapping
    /// instances (one dropped by the overlap rule, one taking only free pixels), one below the score threshold,
    /// an empty region, regions touching the image's edges.
    func testRegionMasksMergeAsFullImageMasks() {
        let h = 37, w = 53
        var rng = TestRandom(seed: 5)
        let labels = (0..<(h * w)).map { UInt8(($0 / w) < 20 ? 1 : ($0 % w) < 30 ? 2 : 3) }
        let sem = SemanticSegmentation(height: h, width: w, labels: labels)
        let boxes: [(Float, Int, Int, Int, Int, Int)] = [  // score, class, x0, y0, x1, y1
            (0.9, 1, 0, 0, 20, 15), (0.8, 2, 5, 3, 25, 18), (0.7, 3, 2, 1, 18, 14), (0.6, 1, 30, 20, 53, 37),
            (0.55, 4, 40, 0, 40, 10), (0.3, 2, 10, 25, 30, 35),
        ]
        var regions: [PanopticMerge.Instance] = [], full: [(score: Float, classID: Int, mask: [UInt8])] = []
        for (score, cls, x0, y0, x1, y1) in boxes {
            let mask = (0..<((x1 - x0) * (y1 - y0))).map { _ in UInt8(Int.random(in: 0..<10, using: &rng) < 7 ? 1 : 0) }
            regions.append(.init(score: score, classID: cls, x0: x0, y0: y0, x1: x1, y1: y1, mask: mask))
            var image = [UInt8](repeating: 0, count: h * w)
            for y in y0..<y1 { for x in x0..<x1 { image[y * w + x] = mask[(y - y0) * (x1 - x0) + x - x0] } }
            full.append((score, cls, image))
        }
        let config = PanopticMergeConfig(stuffAreaLimit: 50)
        let want = PanopticMerge.merge(instances: full, semantic: sem, config: config)
        let got = PanopticMerge.merge(regions: regions, semantic: sem, config: config)
        XCTAssertEqual(got, want)
        XCTAssertEqual(want.segments.filter(\.isThing).map(\.instanceIndex), [0, 1, 3],
                       "the third instance overlaps the first two by more than half; the fifth is empty; the sixth scores 0.3")
        XCTAssertEqual(want.segments.filter { !$0.isThing }.count, 3)
    }

    func testOnePassMasksEqualPerSegmentMasks() {
        // 3x5 map (row-major) whose segments start at the first pixel, end at the last, run across column
        // boundaries, come back after a gap and include an id with no pixels.
        let ids: [Int32] = [1, 1, 0, 2, 3,
                            1, 2, 0, 2, 3,
                            2, 2, 1, 1, 3]
        let segs = (1...4).map { PanopticResult.Segment(id: $0, isThing: true, categoryID: $0, area: 0) }
        let r = PanopticResult(height: 3, width: 5, ids: ids, segments: segs)
        XCTAssertEqual(r.masks(), segs.map { r.mask(of: $0.id) })
        XCTAssertEqual(r.masks()[0].counts, [0, 2, 1, 1, 4, 1, 2, 1, 3])
        XCTAssertEqual(r.masks()[2].counts, [12, 3])
        XCTAssertEqual(r.masks()[3].counts, [15])
        // Random maps of blocky regions with speckles, around the 16-column blocks the pass works in, against each
        // segment's own scan (the row compare on every ISA: RoIAlignKernelTests).
        var rng = TestRandom(seed: 77)
        for (h, w) in [(1, 1), (1, 40), (37, 1), (9, 15), (9, 16), (9, 17), (23, 33), (40, 48), (64, 100)] {
            let segments = 6
            var map = [Int32](repeating: 0, count: h * w)
            for y in 0..<h { for x in 0..<w { map[y * w + x] = Int32((x / 5 + y / 4 * 3) % (segments + 1)) } }
            for _ in 0..<(h * w / 7) { map[rng.int(h * w)] = Int32(rng.int(segments + 1)) }
            let segs = (1...segments).map { PanopticResult.Segment(id: $0, isThing: $0 < 3, categoryID: $0, area: 0) }
            let r = PanopticResult(height: h, width: w, ids: map, segments: segs)
            XCTAssertEqual(r.masks(), segs.map { r.mask(of: $0.id) }, "\(h)x\(w)")
        }
    }
}
