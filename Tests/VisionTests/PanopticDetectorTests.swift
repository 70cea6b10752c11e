import TemporalReuse
import FPNCore
import Foundation
@testable import Tensor
@testable import Vision
import TestSupport
import XCTest

/// A Panoptic FPN of the demo model's structure (ResNet-10, narrow FPN / box / mask / semantic heads, widths taken
/// from metadata and weight shapes) built from synthetic weights: loading, strict errors, and the panoptic output's
/// invariants. Numerical parity with torch is `PanopticParityTests.testPanopticDetectorMatchesTorch`.
final class PanopticDetectorTests: XCTestCase {
    var dir: URL!

    override func setUp() { dir = TestPaths.temporaryDirectory("panoptic-detector") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    static let metadata: [String: String] = [
        "architecture": "maskrcnn_resnet10_fpn", "backbone": "resnet10", "returned_layers": "1,2,3,4",
        "extra_blocks": "pool", "fpn_norm": "none", "fpn_channels": "32", "box_head_dim": "24", "bn_eps": "1e-05",
        "class_names": #"["__background__","circle","square"]"#, "panoptic": "semantic_fpn",
        "stuff_classes": #"["things","sky","grass","road"]"#, "sem_seg_conv_dims": "16", "gn_groups": "8",
        "gn_eps": "1e-05", "sem_seg_common_stride": "4", "min_size": "96", "max_size": "128",
        "panoptic_score_thresh": "0.0", "panoptic_stuff_area": "64", "score_thresh": "0.0",
        "detections_per_img": "6", "rpn_pre_nms_top_n": "50", "rpn_post_nms_top_n": "20",
    ]

    /// Mask head widths 20 (four convs) and 12 (conv5_mask): only the weight shapes say so.
    static func weights(metadata: [String: String] = metadata, scratch: URL) throws -> [String: Tensor] {
        try SafeTensorsWriter.write([:], metadata: metadata, to: scratch)
        let file = try SafeTensorsFile(url: scratch)
        var expected = try DetectorLoader.expectedKeys(file: file, config: DetectorConfig(metadata: metadata, file: scratch))
        try? FileManager.default.removeItem(at: scratch)
        let p = "roi_heads.mask_head."
        var cin = 32
        for i in 0..<4 {
            expected["\(p)\(i).0.weight"] = [20, cin, 3, 3]
            expected["\(p)\(i).0.bias"] = [20]
            cin = 20
        }
        expected["roi_heads.mask_predictor.conv5_mask.weight"] = [20, 12, 2, 2]
        expected["roi_heads.mask_predictor.conv5_mask.bias"] = [12]
        expected["roi_heads.mask_predictor.mask_fcn_logits.weight"] = [3, 12, 1, 1]
        return SyntheticWeights.stateDict(expected: expected)
    }

    func write(_ tensors: [String: Tensor], _ metadata: [String: String] = metadata, _ name: String = "pan.safetensors")
        throws -> URL {
        let url = dir.appendingPathComponent(name)
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        return url
    }

    /// A 128x96 frame: a sky/grass split with a bright square (varied enough for the random heads).
    static func image() -> RGBImage {
        var img = RGBImage(width: 128, height: 96)
        for y in 0..<96 {
            for x in 0..<128 {
                img[x, y] = y < 40 ? (UInt8(90 + y), 140, 230) : (60, UInt8(120 + (x * 7 + y * 3) % 60), 50)
                if (30..<70).contains(x) && (50..<80).contains(y) { img[x, y] = (250, 200, 20) }
            }
        }
        return img
    }

    func testResNet10NarrowHeadsLoadFromMetadataAndShapes() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        XCTAssertEqual(d.config.backbone.depth, .resnet10)
        XCTAssertEqual(d.config.backbone.fpnChannels, 32)
        XCTAssertEqual(d.backbone.body.layers.map(\.count), [1, 1, 1, 1])
        let rcnn = try XCTUnwrap(d as? GeneralizedRCNN)
        XCTAssertEqual(rcnn.roiHeads.clsScore.weight.shape, [3, 24])
        XCTAssertEqual(rcnn.roiHeads.maskConvs?.map(\.conv.outChannels), [20, 20, 20, 20])
        XCTAssertEqual(rcnn.roiHeads.maskLogits?.conv.inChannels, 12)
        let p = try XCTUnwrap(d.config.panoptic)
        XCTAssertEqual(p.stuffNames, ["things", "sky", "grass", "road"])
        XCTAssertEqual(p.convDims, 16)
        XCTAssertEqual(p.groups, 8)
        XCTAssertEqual(p.merge, PanopticMergeConfig(overlapThreshold: 0.5, stuffAreaLimit: 64, instanceScoreThreshold: 0))
    }

    func testPanopticOutputIsConsistentAndReusesBuffers() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let image = Self.image()
        let state = DetectorState()
        let (dets, pan) = d.detectPanoptic(image, state: state)
        let segments = try XCTUnwrap(pan, "a panoptic model returns segments")
        XCTAssertFalse(segments.isEmpty)
        XCTAssertEqual(segments.map(\.id), Array(1...segments.count), "ids 1, 2, ... in order")
        var taken = [Int](repeating: 0, count: image.width * image.height)
        for s in segments {
            let m = s.mask.rowMajor()
            XCTAssertEqual(m.count, taken.count)
            XCTAssertEqual(m.reduce(0) { $0 + Int($1) }, s.area, "segment \(s.id) area = mask pixels")
            for i in m.indices where m[i] != 0 { taken[i] += 1 }
            if s.isThing {
                XCTAssertTrue((1...2).contains(s.categoryID))
                XCTAssertNotNil(s.score)
                XCTAssertTrue(dets.contains { $0.classID == s.categoryID && $0.score == s.score })
                XCTAssertEqual(s.categoryName, ["circle", "square"][s.categoryID - 1])
            } else {
                // stuff label k (1...3) -> category 2 + k, named from stuff_classes
                XCTAssertTrue((3...5).contains(s.categoryID), "stuff category \(s.categoryID)")
                XCTAssertNil(s.score)
                XCTAssertEqual(s.categoryName, ["sky", "grass", "road"][s.categoryID - 3])
                XCTAssertGreaterThanOrEqual(s.area, 64)
            }
        }
        XCTAssertTrue(taken.allSatisfy { $0 <= 1 }, "segments are disjoint")
        // Plain detect() gives the same detections without the semantic head; a second frame allocates nothing.
        XCTAssertEqual(d.detect(image, state: state), dets)
        let allocations = state.workspace.allocationCount
        let again = d.detectPanoptic(image, state: state)
        XCTAssertEqual(again.detections, dets)
        XCTAssertEqual(again.panoptic, segments)
        XCTAssertEqual(state.workspace.allocationCount, allocations, "second panoptic frame allocated tensors")
        XCTAssertNotNil(state.timingsMs["semantic"])
    }

    /// The semantic head's convs go through a temporal cache like the backbone's: at threshold 0 the panoptic output
    /// equals dense on a first, a patched and a repeated frame; the patched frame recomputes semantic-head tiles (on
    /// this 128x96 frame the top-down path and GroupNorm spread any change over whole levels at threshold 0), and the
    /// repeated one does no GEMM at all.
    func testSemanticHeadRunsThroughTheTemporalCacheAndEqualsDense() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let image = Self.image()
        var patched = image
        for y in 4..<20 { for x in 90..<110 { patched[x, y] = (UInt8(x * 2), 30, UInt8(y * 9)) } }
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             frameFallback: 1), profile: TemporalProfile())
        let state = DetectorState(runner: cache), dense = DetectorState()
        let semantic = Set(try XCTUnwrap((d as? GeneralizedRCNN)?.semanticHead).levels.flatMap { $0.map(\.conv.index) })
        XCTAssertEqual(semantic.count, 7, "p2: 1, p3: 1, p4: 2, p5: 3 convs")
        for (i, frame) in [image, patched, patched].enumerated() {
            let got = d.detectPanoptic(frame, state: state), want = d.detectPanoptic(frame, state: dense)
            XCTAssertEqual(got.detections.map(\.classID), want.detections.map(\.classID), "frame \(i)")
            let g = try XCTUnwrap(got.panoptic), w = try XCTUnwrap(want.panoptic)
            XCTAssertEqual(g.map(\.categoryID), w.map(\.categoryID), "frame \(i)")
            XCTAssertEqual(g.map(\.area), w.map(\.area), "frame \(i)")
            XCTAssertTrue(semantic.allSatisfy { cache.profile!.layerTileCounts[$0] != nil }, "semantic convs not cached")
            if i == 1 {
                XCTAssertGreaterThan(semantic.map { cache.profile!.lastLayerTiles[$0] ?? 0 }.reduce(0, +), 0,
                                     "the patch did not reach the semantic head")
            }
            if i == 2 { XCTAssertEqual(cache.lastStats.gemmCalls, 0, "identical frame did GEMM work") }
        }
    }

    /// A delta frame whose changes never reach the pyramid levels returns the last frame's result without running
    /// the heads: bit for bit what a twin stream that always runs them computes (the twin's runner forwards
    /// everything to its own cache but never vouches for a level). A changed frame, other thresholds, or new guard
    /// scales run the heads again.
    func testAnUnchangedPyramidRepeatsTheLastResult() throws {
        final class AlwaysRunHeads: ConvolutionRunner {
            let inner: TemporalCache
            init(_ inner: TemporalCache) { self.inner = inner }
            func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
                inner.run(layer, input: input, residual: residual, workspace: workspace)
            }
            func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
                inner.run(layer, instance: instance, input: input, residual: residual, workspace: workspace)
            }
            func run(_ op: SpatialOp, key: String, input: Tensor, workspace: Workspace) -> Tensor {
                inner.run(op, key: key, input: input, workspace: workspace)
            }
            func beginClosedGraph() { inner.beginClosedGraph() }
            func endClosedGraph(returning: [Tensor]) { inner.endClosedGraph(returning: returning) }
            func beginFrame(inputShape: [Int]) { inner.beginFrame(inputShape: inputShape) }
        }
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let image = Self.image()
        var patched = image, faint = image
        for y in 4..<20 { for x in 90..<110 { patched[x, y] = (UInt8(x * 2), 30, UInt8(y * 9)) } }
        // One grey level on one pixel: below the stem's threshold, so nothing reaches the levels.
        let p = faint[50, 30]
        faint[50, 30] = (p.0 &+ 1, p.1, p.2)
        let settings = TemporalSettings(mode: .delta, threshold: 0.05, refreshInterval: 0, frameFallback: 1)
        let cache = TemporalCache(settings: settings), twinCache = TemporalCache(settings: settings)
        let state = DetectorState(runner: cache), twin = DetectorState(runner: AlwaysRunHeads(twinCache))
        let base = d.config.thresholds
        var other = base
        other.mask = 0.6
        // (frame, thresholds, guard scales, repeats)
        let steps: [(RGBImage, DetectionThresholds, Float, Bool)] = [
            (image, base, 1, false), (image, base, 1, true), (faint, base, 1, true), (patched, base, 1, false),
            (patched, base, 1, true), (patched, other, 1, false), (patched, other, 1, true),
            (patched, other, 0.5, false), (patched, other, 0.5, true),
        ]
        for (i, (frame, t, scale, repeats)) in steps.enumerated() {
            cache.thresholdScales = [.heads: scale]; twinCache.thresholdScales = [.heads: scale]
            let got = d.detectPanoptic(frame, state: state, thresholds: t)
            let want = d.detectPanoptic(frame, state: twin, thresholds: t)
            XCTAssertEqual(state.lastFrameRepeated, repeats, "step \(i)")
            XCTAssertFalse(twin.lastFrameRepeated)
            XCTAssertEqual(got.detections, want.detections, "step \(i)")
            XCTAssertEqual(got.panoptic, want.panoptic, "step \(i)")
            XCTAssertFalse(try XCTUnwrap(got.panoptic).isEmpty, "step \(i)")
            XCTAssertEqual(state.timingsMs["rpn"] == nil, repeats, "step \(i): the heads ran on a repeated frame")
            // The skipped head convs count as run with nothing recomputed: the same figures as the twin's.
            XCTAssertEqual(cache.lastStats.denseFlops, twinCache.lastStats.denseFlops, "step \(i)")
            XCTAssertEqual(cache.lastStats.flops, twinCache.lastStats.flops, "step \(i)")
            XCTAssertEqual(cache.lastStats.totalTiles, twinCache.lastStats.totalTiles, "step \(i)")
        }
        XCTAssertEqual(state.repeatedFrames, steps.filter(\.3).count)
    }

    /// A delta stream whose RoI heads reuse the regions the cache wrote nothing under (`RegionReuse`) gives the
    /// detections and panoptic segments of a twin stream that runs every region, up to the GEMM rounding of the
    /// regions recomputed in a smaller batch: away from a local change its regions are reused, on it recomputed.
    func testRegionReuseInADeltaStreamMatchesRunningEveryRegion() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let image = Self.image()
        var patched = image
        for y in 84..<92 { for x in 116..<124 { patched[x, y] = (250, 250, 250) } }
        let settings = TemporalSettings(mode: .delta, threshold: 0.05, refreshInterval: 0, frameFallback: 1)
        let state = DetectorState(runner: TemporalCache(settings: settings))
        let twin = DetectorState(runner: TemporalCache(settings: settings))
        let reuse = RegionReuse()
        state.regionReuse = reuse
        var reused = 0, computed = 0
        for (i, frame) in [image, patched, image, patched].enumerated() {
            let got = d.detectPanoptic(frame, state: state, thresholds: d.config.thresholds)
            let want = d.detectPanoptic(frame, state: twin, thresholds: d.config.thresholds)
            XCTAssertFalse(state.lastFrameRepeated, "frame \(i)")
            XCTAssertEqual(got.detections.count, want.detections.count, "frame \(i)")
            for (x, y) in zip(got.detections, want.detections) {
                XCTAssertEqual(x.classID, y.classID, "frame \(i)")
                XCTAssertEqual(x.score, y.score, accuracy: 1e-4, "frame \(i)")
                XCTAssertEqual(x.box.x1, y.box.x1, accuracy: 1e-2, "frame \(i)")
                XCTAssertEqual(x.box.y2, y.box.y2, accuracy: 1e-2, "frame \(i)")
            }
            XCTAssertEqual(got.panoptic?.map(\.categoryID), want.panoptic?.map(\.categoryID), "frame \(i)")
            if i > 0 {
                reused += reuse.lastReused[.box] ?? 0
                computed += reuse.lastComputed[.box] ?? 0
            }
        }
        XCTAssertGreaterThan(reused, 0, "regions away from the change were reused")
        XCTAssertGreaterThan(computed, 0, "regions on it were recomputed")
    }

    /// A moving scene's fall-back frames (computed into the workspace, where the semantic head normalises in place
    /// and RoIAlign's channels-last levels go) equal a dense stream's bit for bit, and the frames after them (a
    /// resync, then a delta frame at threshold 0) still match it.
    func testFallBackFramesAndTheFramesAfterThemEqualDense() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let image = Self.image()
        func shifted(_ k: Int) -> RGBImage {
            var img = image
            for y in 0..<96 { for x in 0..<128 { img[x, y] = image[(x + k) % 128, (y + k / 2) % 96] } }
            return img
        }
        var patched = shifted(6)
        for y in 10..<18 { for x in 100..<108 { patched[x, y] = (250, 250, 250) } }
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             frameFallback: 0.05))
        let state = DetectorState(runner: cache), dense = DetectorState()
        state.regionReuse = RegionReuse()
        var fellBack: [Bool] = []
        for (i, frame) in [image, shifted(2), shifted(4), shifted(6), shifted(6), patched].enumerated() {
            let got = d.detectPanoptic(frame, state: state, thresholds: d.config.thresholds)
            let want = d.detectPanoptic(frame, state: dense, thresholds: d.config.thresholds)
            fellBack.append(cache.lastStats.frameFallback)
            let exact = i < 5   // dense passes; the last frame recomputes tiles (equal to dense within GEMM blocking)
            XCTAssertEqual(got.detections.count, want.detections.count, "frame \(i)")
            for (x, y) in zip(got.detections, want.detections) {
                XCTAssertEqual(x.classID, y.classID, "frame \(i)")
                XCTAssertEqual(x.score, y.score, accuracy: exact ? 0 : 1e-4, "frame \(i)")
                XCTAssertEqual(x.box.x1, y.box.x1, accuracy: exact ? 0 : 1e-2, "frame \(i)")
                XCTAssertEqual(x.box.y2, y.box.y2, accuracy: exact ? 0 : 1e-2, "frame \(i)")
            }
            XCTAssertEqual(got.panoptic?.map(\.categoryID), want.panoptic?.map(\.categoryID), "frame \(i)")
            XCTAssertEqual(got.panoptic?.map(\.area), want.panoptic?.map(\.area), "frame \(i)")
        }
        XCTAssertEqual(Array(fellBack[1...3]), [true, true, true], "the moving frames fall back")
        XCTAssertEqual(fellBack[5], false, "the patched frame runs delta")
        XCTAssertGreaterThan(cache.lastStats.tiledLayers, 0, "the patched frame recomputes tiles")
    }

    /// The semantic head normalises a runner's own conv outputs into workspace tensors, never in place: a runner
    /// that returns tensors of its own (as a temporal cache does) finds them as it left them, and the panoptic
    /// output equals the dense one.
    func testSemanticHeadNeverWritesARunnersOwnOutputs() throws {
        let url = try write(try Self.weights(scratch: dir.appendingPathComponent("s.safetensors")))
        let d = try DetectorLoader.load(contentsOf: url)
        let owning = OwningRunner()
        let got = d.detectPanoptic(Self.image(), state: DetectorState(runner: owning))
        let want = d.detectPanoptic(Self.image(), state: DetectorState())
        XCTAssertTrue(owning.outputs.keys.contains { $0.hasPrefix("sem_seg_head.") }, "\(owning.outputs.keys)")
        for (key, (output, copy)) in owning.outputs {
            XCTAssertEqual(output.array, copy, "\(key)'s output was written after the runner returned it")
        }
        XCTAssertEqual(got.panoptic?.map(\.area), want.panoptic?.map(\.area))
        XCTAssertEqual(got.detections.map(\.score), want.detections.map(\.score))
    }

    func testWidthMetadataContradictingShapesNamesTheKey() throws {
        var m = Self.metadata
        let w = try Self.weights(scratch: dir.appendingPathComponent("s.safetensors"))
        m["box_head_dim"] = "32"
        let e = try XCTUnwrap(loadError(try write(w, m)) as? WeightMismatchError)
        XCTAssertTrue(e.misshaped.contains { $0.key == "roi_heads.box_head.fc6.weight" }, "\(e)")
        m = Self.metadata
        m["fpn_channels"] = "wide"
        let e2 = try XCTUnwrap(loadError(try write(w, m, "b.safetensors")) as? ModelLoadError)
        XCTAssertEqual(e2.reason, .badMetadata(key: "fpn_channels", value: "wide"))
        XCTAssertTrue(e2.description.contains("b.safetensors"))
    }

    func testPanopticMetadataErrors() throws {
        let w = try Self.weights(scratch: dir.appendingPathComponent("s.safetensors"))
        var m = Self.metadata
        m["stuff_classes"] = #"["things","sky"]"#
        let e = try XCTUnwrap(loadError(try write(w, m, "a.safetensors")) as? DetectorLoadError, "stuff count")
        XCTAssertTrue(e.description.contains("stuff_classes") && e.description.contains("a.safetensors"), e.description)
        m = Self.metadata
        m["panoptic"] = "panoptic_deeplab"
        XCTAssertEqual((loadError(try write(w, m, "b.safetensors")) as? ModelLoadError)?.reason,
                       .badMetadata(key: "panoptic", value: "panoptic_deeplab"))
        m = Self.metadata
        m["panoptic_stuff_area"] = "-1"
        XCTAssertEqual((loadError(try write(w, m, "c.safetensors")) as? ModelLoadError)?.reason,
                       .badMetadata(key: "panoptic_stuff_area", value: "-1"))
        // Without the semantic head's weights: every sem_seg_head key is reported missing.
        m = Self.metadata
        let noHead = w.filter { !$0.key.hasPrefix("sem_seg_head.") }
        let missing = try XCTUnwrap(loadError(try write(noHead, m, "d.safetensors")) as? WeightMismatchError)
        XCTAssertTrue(missing.missing.contains("sem_seg_head.predictor.weight"), "\(missing)")
        // The same weights without `panoptic` metadata: the head's keys are unexpected (strict).
        m["panoptic"] = nil
        let extra = try XCTUnwrap(loadError(try write(w, m, "e.safetensors")) as? WeightMismatchError)
        XCTAssertTrue(extra.unexpected.contains("sem_seg_head.predictor.weight"), "\(extra)")
    }

    func loadError(_ url: URL) -> Error? {
        do { _ = try DetectorLoader.load(contentsOf: url); return nil } catch { return error }
    }
}
