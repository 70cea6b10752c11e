import FPNCore
import Foundation
import Tensor
@testable import TemporalReuse
import TestSupport
import Vision
import XCTest

/// The temporal cache on a seeded ResNet-18-FPN at 128x128: delta at threshold 0 equals dense, an
/// identical frame costs no GEMM, a one-pixel change recomputes exactly the tiles its receptive field reaches,
/// state resets on a new size, dense refresh fires on schedule.
final class TemporalCacheTests: XCTestCase {
    private static var cached: ResNetFPNBackbone?

    private func backbone() throws -> ResNetFPNBackbone {
        if let b = Self.cached { return b }
        let b = try SyntheticWeights.backbone(architecture: "resnet18-fpn",
                                              directory: TestPaths.temporaryDirectory("temporal"))
        Self.cached = b
        return b
    }

    private func frame(_ key: String, h: Int = 128, w: Int = 128) -> Tensor {
        SyntheticWeights.uniform(key: key, shape: [1, 3, h, w], amplitude: 2)
    }

    /// A copy of `a` with every channel set to `value` on rows × cols.
    private func filled(_ a: Tensor, rows: Range<Int>, cols: Range<Int>, value: Float) -> Tensor {
        let t = Tensor(shape: a.shape); t.copy(from: a)
        for c in 0..<a.shape[1] { for y in rows { for x in cols { t[0, c, y, x] = value } } }
        return t
    }

    /// Dense pyramid levels as owned copies.
    private func dense(_ b: ResNetFPNBackbone, _ x: Tensor) -> [Tensor] {
        let ws = Workspace()
        return b(x, workspace: ws).levels.map { l in let t = Tensor(shape: l.features.shape); t.copy(from: l.features); return t }
    }

    /// How close a delta pass at threshold 0 stays to the dense pass (relative to each level's largest value): both
    /// compute the same tiles, but a Winograd tile of a tile pass also reads kept input pixels outside the
    /// recomputed receptive field, whose values can differ from the current frame's in the last bits.
    private let rounding = 1e-5

    /// max |a − b| / max |b| over all levels.
    private func maxRelativeError(_ got: FeaturePyramid, _ ref: [Tensor]) -> Double {
        var worst = 0.0
        XCTAssertEqual(got.levels.count, ref.count)
        for (l, r) in zip(got.levels, ref) {
            XCTAssertEqual(l.features.shape, r.shape)
            let a = l.features.array, b = r.array
            let scale = b.reduce(0) { max($0, abs(Double($1))) }
            var m = 0.0
            for i in a.indices { m = max(m, abs(Double(a[i]) - Double(b[i]))) }
            worst = max(worst, m / max(scale, 1e-30))
        }
        return worst
    }

    func testThresholdZeroEqualsDense() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        // Frame 2: a patch replaced; frame 3: a small global change (every tile moves).
        let patched = Tensor(shape: a.shape); patched.copy(from: a)
        let other = frame("t.b")
        for c in 0..<3 { for y in 40..<70 { for x in 10..<50 { patched[0, c, y, x] = other[0, c, y, x] } } }
        let shifted = Tensor(shape: a.shape); shifted.copy(from: patched)
        shifted.withUnsafeMutableBufferPointer { p in for i in p.indices where i % 7 == 0 { p[i] += 0.01 } }
        for (i, x) in [a, patched, shifted].enumerated() {
            ws.beginFrame()
            let p = b(x, workspace: ws, runner: cache)
            let err = maxRelativeError(p, dense(b, x))
            XCTAssertLessThanOrEqual(err, rounding, "frame \(i): delta at threshold 0 differs from dense")
        }
        // The patch frame was a real partial update, not a dense one.
        XCTAssertEqual(cache.frameIndex, 3)
    }

    func testBlocksWithoutDownsampleShareTheirShortcutCopy() throws {
        // ResNet-18: layer1's two blocks and the second block of layers 2-4 have an identity shortcut (the block
        // input, which the block's first conv keeps): 5 shared. Own residual copies remain for the three
        // downsample blocks' conv2 (shortcut = the downsample conv's output) and the FPN lateral convs with a
        // top-down sum (P2-P4; P5 has none). Ungated: with output gating the readers are exact and keep no
        // shortcut copy at all (testGatedOutputsMakeTheBackboneReadersExact).
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             gateOutputs: false), profile: TemporalProfile())
        let ws = Workspace()
        let p = b(frame("s.a"), workspace: ws, runner: cache)
        XCTAssertEqual(cache.sharedResidualCount, 5)
        let fpn = p.levels[0].features.c
        let own = 128 * 16 * 16 + 256 * 8 * 8 + 512 * 4 * 4 + fpn * (32 * 32 + 16 * 16 + 8 * 8)
        XCTAssertEqual(cache.stateBytes.residuals, own * 4)
        // The shared copies stay correct across a partial update and a frame identical to it.
        let patched = filled(frame("s.a"), rows: 60..<75, cols: 20..<33, value: 1.5)
        for x in [patched, patched] {
            ws.beginFrame()
            XCTAssertLessThanOrEqual(maxRelativeError(b(x, workspace: ws, runner: cache), dense(b, x)), rounding)
        }
        XCTAssertEqual(cache.lastStats.flops, 0, "an identical frame costs no conv work")
    }

    func testGatedOutputsMakeTheBackboneReadersExact() throws {
        // Inside the backbone every conv output is read only by convs (directly or through the max-pool and the
        // upsampling): each producer gates its output, and its readers keep no input or residual copy but read it
        // directly, from the first frame on. Only the stem keeps a copy (of the image).
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("g.a")
        _ = b(a, workspace: ws, runner: cache)
        let stemInput = 3 * 128 * 128 * 4
        XCTAssertEqual(cache.stateBytes.inputs, stemInput, "readers of kept outputs keep no input, from the first frame")
        XCTAssertEqual(cache.stateBytes.residuals, 0)
        let patched = filled(a, rows: 60..<75, cols: 20..<33, value: 1.5)
        for x in [patched, patched] {
            ws.beginFrame()
            XCTAssertLessThanOrEqual(maxRelativeError(b(x, workspace: ws, runner: cache), dense(b, x)), rounding)
        }
        XCTAssertEqual(cache.lastStats.flops, 0, "an identical frame costs no conv work")
        XCTAssertEqual(cache.stateBytes.inputs, stemInput)
        XCTAssertEqual(cache.stateBytes.residuals, 0)
        XCTAssertEqual(cache.sharedResidualCount, 0)
        // A partial change after the switch is still exact at threshold 0.
        let moved = filled(patched, rows: 90..<100, cols: 90..<110, value: -1)
        ws.beginFrame()
        XCTAssertLessThanOrEqual(maxRelativeError(b(moved, workspace: ws, runner: cache), dense(b, moved)), rounding)
        XCTAssertLessThan(cache.lastStats.recomputedFraction, 1)
        // Without gating every conv keeps its input.
        let ungated = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                               gateOutputs: false), profile: TemporalProfile())
        for x in [a, patched] { _ = b(x, workspace: Workspace(), runner: ungated) }
        XCTAssertGreaterThan(ungated.stateBytes.inputs, 10 * stemInput)
    }

    func testGateThatCommitsEverythingIsSkippedUntilTheNextRefresh() throws {
        // At threshold 0 a gated conv commits (nearly) every tile it recomputes: after `gateProbeTiles` it stops
        // comparing and writes them all (the same result), until the next scheduled dense pass measures it anew.
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 5), profile: TemporalProfile())
        cache.learnsBusyScenes = false  // the patches reach most tiles of this small network: keep every frame delta
        let ws = Workspace()
        var x = frame("b.a")
        var bypassing: [Int] = []
        for i in 0..<8 {
            if i > 0 { x = filled(x, rows: (8 * i)..<(8 * i + 14), cols: (100 - 9 * i)..<(112 - 9 * i), value: Float(i) * 0.3 - 1) }
            ws.beginFrame()
            XCTAssertLessThanOrEqual(maxRelativeError(b(x, workspace: ws, runner: cache), dense(b, x)), rounding, "frame \(i)")
            bypassing.append(cache.gateBypassCount)
        }
        XCTAssertEqual(bypassing[0], 0, "the dense first frame measures nothing yet")
        XCTAssertGreaterThan(bypassing[4], 0, "moving patches at threshold 0: some gates commit everything")
        XCTAssertEqual(bypassing[5], 0, "the refresh at frame 5 measures every gate anew")
        XCTAssertGreaterThan(bypassing[7], 0)
        XCTAssertLessThan(bypassing[4], 40, "not every conv is gated (the stem and the returned levels are not)")
    }

    func testPatchFrameIsPartialAndMatchesDense() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        _ = b(a, workspace: ws, runner: cache)
        let patched = Tensor(shape: a.shape); patched.copy(from: a)
        for c in 0..<3 { for y in 0..<16 { for x in 0..<16 { patched[0, c, y, x] += 1 } } }
        ws.beginFrame()
        let p = b(patched, workspace: ws, runner: cache)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, patched)), rounding)
        let s = cache.lastStats
        XCTAssertGreaterThan(s.tiledLayers, 0)
        XCTAssertGreaterThan(s.recomputedTiles, 0)
        XCTAssertLessThan(s.recomputedTiles, s.totalTiles, "a corner patch must not recompute every tile")
        XCTAssertLessThan(s.recomputedFraction, 1)
        XCTAssertLessThan(s.kernelFraction, 1)
        if Compute.path != .openblas {
            // The patch's edge tiles share Winograd output blocks with unchanged tiles, which the kernels run too.
            XCTAssertGreaterThan(s.kernelFraction, s.recomputedFraction)
        } else {
            XCTAssertEqual(s.kernelFraction, s.recomputedFraction)
        }
    }

    func testIdenticalFrameDoesNoGEMM() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        _ = b(a, workspace: ws, runner: cache)
        XCTAssertEqual(cache.lastStats.denseLayers, b.convLayers.count)
        let ref = dense(b, a)
        let copy = Tensor(shape: a.shape); copy.copy(from: a)
        ws.beginFrame()
        let p = b(copy, workspace: ws, runner: cache)
        XCTAssertEqual(cache.lastStats.gemmCalls, 0)
        XCTAssertEqual(cache.lastStats.skippedLayers, b.convLayers.count)
        XCTAssertEqual(cache.lastStats.recomputedTiles, 0)
        XCTAssertEqual(cache.lastStats.flops, 0)
        // The max-pool and the FPN's upsampling are reused too.
        XCTAssertEqual(Set(cache.profile!.lastOpTiles.keys), ["body.maxpool", "fpn.upsample.0", "fpn.upsample.1", "fpn.upsample.2"])
        XCTAssertEqual(cache.profile!.lastOpTiles.values.reduce(0, +), 0)
        XCTAssertLessThanOrEqual(maxRelativeError(p, ref), rounding)
    }

    func testOnePixelChangeRecomputesReceptiveFieldTiles() throws {
        let b = try backbone()
        // Threshold 1e-4 x input RMS: far below the change (a pixel set to 50) but above the last-bit differences
        // between the tile GEMM and the dense GEMM of recomputed-but-unchanged pixels (≤ 1e-6 relative), which at
        // threshold 0 would spread through every layer.
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 1e-4, refreshInterval: 0, tile: 8), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        _ = b(a, workspace: ws, runner: cache)
        let changed = Tensor(shape: a.shape); changed.copy(from: a)
        changed[0, 1, 40, 40] = 50
        ws.beginFrame()
        let p = b(changed, workspace: ws, runner: cache)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, changed)), 1e-5)
        // Stem 7x7/2 pad 3, output 64x64 in 8x8 tiles; its input grid has 16x16 tiles. Pixel (40, 40) lies in
        // input tile rows/cols 32..<48, whose receptive field reaches outputs o with 2o − 3 ≤ 47 and
        // 2o − 3 + 6 ≥ 32: o in 15...25 → tiles 1...3 in each direction = 9 tiles.
        let stem = b.body.conv1.index
        XCTAssertEqual(cache.profile!.lastLayerTiles[stem], 9)
        // The stem output really changes only at o with 2o − 3 ≤ 40 ≤ 2o + 3: 19...21; max-pool 3x3/2 pad 1 maps
        // that to 9...11 (2q − 1 ≤ 21, 2q + 1 ≥ 19): input tile (1, 1) (8..<16) of layer1.0.conv1 (3x3 pad 1,
        // 32x32, 8x8 tiles), whose receptive field reaches outputs 7...16 → tiles 0...2 each way = 9 of 16.
        let l1 = b.body.layers[0][0].conv1.index
        XCTAssertEqual(cache.profile!.lastLayerTiles[l1], 9)
        // The stem gates its output (its only reader is the max-pool, read only by convs): of its 9 recomputed
        // tiles only tile (2, 2) (outputs 16..<24, holding 19...21) changed, and the max-pool runs where that tile
        // reaches: pooled q with 2q − 1 ≤ 23 and 2q + 1 ≥ 16, q in 8...12 → tile (1, 1) of its 32x32 (4x4 tiles).
        XCTAssertEqual(cache.profile!.lastOpTiles["body.maxpool"], 1)
        XCTAssertEqual(cache.profile!.opTileCounts["body.maxpool"], 16)
        // Without gating the max-pool runs wherever the stem recomputed: stem output tiles 1...3 (pixels 8..<32)
        // reach q with 2q − 1 ≤ 31 and 2q + 1 ≥ 8: q in 4...16 → tiles 0...2 each way; layer1.0.conv1 compares
        // its input and finds the same 9 tiles as above.
        let ungated = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 1e-4, refreshInterval: 0, tile: 8,
                                                               gateOutputs: false), profile: TemporalProfile())
        _ = b(a, workspace: Workspace(), runner: ungated)
        let q = b(changed, workspace: Workspace(), runner: ungated)
        XCTAssertLessThanOrEqual(maxRelativeError(q, dense(b, changed)), 1e-5)
        XCTAssertEqual(ungated.profile!.lastLayerTiles[stem], 9)
        XCTAssertEqual(ungated.profile!.lastOpTiles["body.maxpool"], 9)
        XCTAssertEqual(ungated.profile!.lastLayerTiles[l1], 9)
        // The change reaches everything by layer4 (a 4x4 map, one tile): those layers fall back to dense.
        XCTAssertGreaterThan(cache.lastStats.tiledLayers, 0)
        XCTAssertLessThan(cache.lastStats.recomputedFraction, 1)
    }

    func testResetOnNewResolution() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0.5, refreshInterval: 0), profile: TemporalProfile())
        let ws = Workspace()
        _ = b(frame("t.a"), workspace: ws, runner: cache)
        _ = b(frame("t.a"), workspace: ws, runner: cache)
        XCTAssertEqual(cache.resetCount, 0)
        XCTAssertEqual(cache.frameIndex, 2)
        let small = frame("t.small", h: 96, w: 160)
        ws.beginFrame()
        let p = b(small, workspace: ws, runner: cache)
        XCTAssertEqual(cache.resetCount, 1)
        XCTAssertEqual(cache.frameIndex, 1)
        XCTAssertTrue(cache.lastStats.refreshed)
        XCTAssertEqual(cache.lastStats.denseLayers, b.convLayers.count)
        // A high threshold does not matter on a reset frame: it is dense.
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, small)), rounding)
    }

    func testDenseRefreshOnSchedule() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 3), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        var refreshed: [Bool] = [], gemms: [Int] = []
        for _ in 0..<7 {
            ws.beginFrame()
            _ = b(a, workspace: ws, runner: cache)
            refreshed.append(cache.lastStats.refreshed)
            gemms.append(cache.lastStats.gemmCalls)
        }
        XCTAssertEqual(refreshed, [true, false, false, true, false, false, true])
        let n = b.convLayers.count
        XCTAssertEqual(gemms, [n, 0, 0, n, 0, 0, n])
    }

    func testFrameLevelFallBackRunsAChangedFrameDenselyAndKeepsTheStateConsistent() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             frameFallback: 0.5), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a"), first = frame("t.c")
        _ = b(a, workspace: ws, runner: cache)
        // A whole new frame (a scene cut / camera move): every stem tile changed → one dense pass, no compare.
        ws.beginFrame()
        var p = b(first, workspace: ws, runner: cache)
        XCTAssertTrue(cache.lastStats.frameFallback)
        XCTAssertFalse(cache.lastStats.refreshed, "a fall-back is not a scheduled refresh")
        XCTAssertEqual(cache.lastStats.inputChangedFraction, 1)
        XCTAssertEqual(cache.lastStats.denseLayers, b.convLayers.count)
        XCTAssertEqual(cache.lastStats.tiledLayers + cache.lastStats.skippedLayers, 0)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, first)), rounding)
        // Sustained motion: a second changed frame falls back too (kept-input copies skipped, state stale).
        let c = frame("t.d")
        ws.beginFrame()
        p = b(c, workspace: ws, runner: cache)
        XCTAssertTrue(cache.lastStats.frameFallback)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, c)), rounding)
        // During the run the conv levels (P2-P5; the pool level is never kept) come from the workspace, as without
        // the cache, not from the kept outputs.
        let storages = { (p: FeaturePyramid) in p.levels.prefix(4).map { ObjectIdentifier($0.features.storage) } }
        let inRun = storages(p)
        // The first calm frame resyncs (dense with copies; without it the layers would compare against frame 0's
        // kept inputs and recompute), then repeating it costs nothing and a patch is a partial update again.
        ws.beginFrame()
        p = b(c, workspace: ws, runner: cache)
        XCTAssertTrue(cache.lastStats.frameFallback, "resync after a fall-back run")
        XCTAssertEqual(cache.lastStats.inputChangedFraction, 0)
        XCTAssertEqual(cache.lastStats.denseLayers, b.convLayers.count)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, c)), rounding)
        let kept = storages(p)
        XCTAssertTrue(Set(kept).isDisjoint(with: inRun), "the resync writes the kept outputs")
        ws.beginFrame()
        XCTAssertEqual(storages(b(c, workspace: ws, runner: cache)), kept, "which the delta frames return")
        XCTAssertFalse(cache.lastStats.frameFallback)
        XCTAssertEqual(cache.lastStats.gemmCalls, 0)
        let patched = Tensor(shape: c.shape); patched.copy(from: c)
        for ch in 0..<3 { for y in 100..<110 { for x in 100..<110 { patched[0, ch, y, x] = 1 } } }
        ws.beginFrame()
        p = b(patched, workspace: ws, runner: cache)
        XCTAssertFalse(cache.lastStats.frameFallback)
        XCTAssertGreaterThan(cache.lastStats.tiledLayers, 0)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, patched)), rounding)
        // With the fall-back off (1), the same whole-frame change goes through the per-layer path.
        let never = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             frameFallback: 1), profile: TemporalProfile())
        _ = b(a, workspace: Workspace(), runner: never)
        _ = b(first, workspace: Workspace(), runner: never)
        XCTAssertFalse(never.lastStats.frameFallback)
        XCTAssertEqual(never.lastStats.inputChangedFraction, 1)
    }

    func testStemBoxMetricIgnoresOneNoisyPixelButNotAChangedBox() throws {
        let b = try backbone()
        // Stem threshold 0.1 x image RMS (~1.15 for uniform ±2) on 4x4 boxes over 3 channels (48 values).
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 1e-4, refreshInterval: 0,
                                                             inputThreshold: 0.1, inputBlock: 4), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        _ = b(a, workspace: ws, runner: cache)
        let stem = b.body.conv1.index
        // One pixel of one channel moved by 3: box mean 3/48 ≈ 0.06 < 0.115 → nothing recomputed.
        let noisy = Tensor(shape: a.shape); noisy.copy(from: a)
        noisy[0, 0, 50, 50] += 3
        ws.beginFrame()
        _ = b(noisy, workspace: ws, runner: cache)
        XCTAssertEqual(cache.lastStats.gemmCalls, 0)
        XCTAssertNil(cache.profile!.lastLayerTiles[stem])
        XCTAssertEqual(cache.lastStats.inputChangedFraction, 0)
        // A 4x4 box (all channels) moved by 0.5 > 0.115: the stem recomputes.
        let moved = Tensor(shape: a.shape); moved.copy(from: noisy)
        for c in 0..<3 { for y in 64..<68 { for x in 64..<68 { moved[0, c, y, x] += 0.5 } } }
        ws.beginFrame()
        let p = b(moved, workspace: ws, runner: cache)
        XCTAssertGreaterThan(cache.profile!.lastLayerTiles[stem] ?? 0, 0)
        XCTAssertGreaterThan(cache.lastStats.inputChangedFraction, 0)
        // The ignored pixel stays ignored (below threshold) but everything else equals dense on `moved` with the
        // pixel restored to its propagated value.
        let propagated = Tensor(shape: a.shape); propagated.copy(from: moved)
        propagated[0, 0, 50, 50] = a[0, 0, 50, 50]
        // (Up to the deeper layers' threshold 1e-4 x RMS, applied where each conv output is gated.)
        XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, propagated)), 3e-5)
    }

    /// A frame whose small, scattered change still reaches most of the network (its convs ran ≥ `busyFraction` of
    /// the dense FLOPs, counting the Winograd blocks the scattered tiles touch) makes later frames that change as
    /// much take the frame-level fall-back; every few such frames a delta probe checks the scene again (the
    /// interval doubles while it stays busy), and a calm frame clears the limit.
    func testBusyScenesFallBackWithProbes() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                             frameFallback: 0.5), profile: TemporalProfile())
        let ws = Workspace()
        let a = frame("t.a")
        // One pixel in every 16x16 block changes, differently in every frame: a sliver of the input, every deep tile.
        func dotted(_ k: Int) -> Tensor {
            let t = Tensor(shape: a.shape); t.copy(from: a)
            for y in stride(from: 5, to: a.h, by: 16) { for x in stride(from: 7, to: a.w, by: 16) { t[0, 0, y, x] = Float(k) } }
            return t
        }
        _ = b(a, workspace: ws, runner: cache)
        var fallback: [Bool] = [], recomputed: [Double] = [], kernel: [Double] = []
        for k in 1...21 {
            ws.beginFrame()
            let x = dotted(k)
            let p = b(x, workspace: ws, runner: cache)
            XCTAssertLessThanOrEqual(maxRelativeError(p, dense(b, x)), rounding, "frame \(k)")
            fallback.append(cache.lastStats.frameFallback)
            recomputed.append(cache.lastStats.recomputedFraction)
            kernel.append(cache.lastStats.kernelFraction)
        }
        XCTAssertLessThan(cache.lastStats.inputChangedFraction, 0.5, "below the frame fall-back of the settings")
        XCTAssertGreaterThanOrEqual(kernel[0], TemporalCache.busyFraction, "the first dotted frame is busy")
        XCTAssertLessThanOrEqual(kernel[0], 1)
        // 1: delta (busy); 2-9: 8 fall-backs; 10: resync of the stale state; 11: a delta probe, still busy;
        // from 12: fall-backs again, now for 16 frames.
        XCTAssertEqual(fallback, [false] + Array(repeating: true, count: 9) + [false] + Array(repeating: true, count: 10))
        XCTAssertNotNil(cache.busyLimit)
        // Somewhat calmer frames (the dots of 2 block rows in 3 change: 2/3 of the busy frame's input change) still
        // fall back: only a frame changing less than `busyInputShare` of the busy one probes early.
        for k in 22...23 {
            ws.beginFrame()
            let x = dotted(21)
            for y in stride(from: 5, to: a.h, by: 48) { for x0 in stride(from: 7, to: a.w, by: 16) { x[0, 0, y, x0] = Float(k) } }
            for y in stride(from: 21, to: a.h, by: 48) { for x0 in stride(from: 7, to: a.w, by: 16) { x[0, 0, y, x0] = Float(k) } }
            _ = b(x, workspace: ws, runner: cache)
            XCTAssertTrue(cache.lastStats.frameFallback, "frame \(k)")
        }
        // A calm scene: the resync, then a delta frame with nothing to do clears the limit.
        for _ in 0..<18 { ws.beginFrame(); _ = b(dotted(21), workspace: ws, runner: cache) }
        ws.beginFrame(); _ = b(dotted(21), workspace: ws, runner: cache)
        XCTAssertNil(cache.busyLimit, "a calm delta frame clears the busy limit")
        XCTAssertFalse(cache.lastStats.frameFallback)
        XCTAssertEqual(cache.lastStats.gemmCalls, 0)
    }

    /// A delta frame between calm and busy (0.6-0.8 of the dense FLOPs) sets no limit, but lowers one that is set
    /// to its own input change: such frames cost about a dense pass by delta.
    func testBusyLimitFollowsFramesBetweenCalmAndBusy() {
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta))
        func stats(kernel: Double, input: Double) -> TemporalFrameStats {
            var s = TemporalFrameStats()
            s.denseFlops = 100; s.kernelFlops = 100 * kernel; s.inputChangedFraction = input
            return s
        }
        cache.learnBusy(from: stats(kernel: 0.7, input: 0.1))
        XCTAssertNil(cache.busyLimit, "in between sets no limit")
        cache.learnBusy(from: stats(kernel: 0.9, input: 0.12))
        XCTAssertEqual(cache.busyLimit, 0.12)
        cache.learnBusy(from: stats(kernel: 0.7, input: 0.05))
        XCTAssertEqual(cache.busyLimit, 0.05, "lowered to the in-between frame's input change")
        cache.learnBusy(from: stats(kernel: 0.7, input: 0.08))
        XCTAssertEqual(cache.busyLimit, 0.05, "never raised")
        cache.learnBusy(from: stats(kernel: 0.5, input: 0.03))
        XCTAssertNil(cache.busyLimit, "a calm frame clears it")
    }

    func testDeepTileAppliesToLayersAtStride16AndBeyond() throws {
        let b = try backbone()
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0, tile: 4,
                                                             deepTile: 2), profile: TemporalProfile())
        _ = b(frame("t.a"), workspace: Workspace(), runner: cache)
        // 128x128 input: layer2 outputs 16x16 (stride 8) in 4x4 tiles = 16; layer3 8x8 (stride 16) in 2x2 = 16;
        // layer4 4x4 (stride 32) in 2x2 = 4.
        XCTAssertEqual(cache.profile!.layerTileCounts[b.body.layers[1][1].conv2.index], 16)
        XCTAssertEqual(cache.profile!.layerTileCounts[b.body.layers[2][1].conv2.index], 16)
        XCTAssertEqual(cache.profile!.layerTileCounts[b.body.layers[3][1].conv2.index], 4)
    }

    /// A tiny parity detector (`DetectorParityTests.materialize`) and the RGB bytes of its fixture frame; the caller
    /// removes `directory`.
    private func tinyDetector(_ name: String) throws
        -> (detector: any Detector, pixels: [UInt8], width: Int, height: Int, directory: URL) {
        let (weights, fixture) = try DetectorParityTests.materialize(name)
        let img = try fixture.tensor("fixture.image")
        return (try DetectorLoader.load(contentsOf: weights), img.array.map { UInt8(clamping: Int($0.rounded())) },
                img.shape[1], img.shape[0], weights.deletingLastPathComponent())
    }

    /// Backbone, FPN and the dense heads (RPN conv + 1x1s; RetinaNet/FCOS towers and predictors, per level)
    /// through one cache: at threshold 0 a patched frame gives the dense detections, an identical one no GEMM.
    func testDenseHeadsRunThroughTheCachePerLevelAndEqualDense() throws {
        for name in ["tiny-maskrcnn", "tiny-retinanet-v2", "tiny-fcos"] {
            let tiny = try tinyDetector(name)
            defer { try? FileManager.default.removeItem(at: tiny.directory) }
            let detector = tiny.detector
            var pixels = tiny.pixels
            let image = RGBImage(width: tiny.width, height: tiny.height, pixels: pixels)
            // A patch of the image changes in frame 2.
            for y in 0..<(image.height / 4) { for x in 0..<(image.width / 4) { for c in 0..<3 {
                pixels[(y * image.width + x) * 3 + c] = UInt8((x * 7 + y * 3 + c * 50) % 256)
            } } }
            let patched = RGBImage(width: image.width, height: image.height, pixels: pixels)
            let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                                 frameFallback: 1), profile: TemporalProfile())
            let state = DetectorState(runner: cache), denseState = DetectorState()
            let backboneLayers = Set(detector.backbone.convLayers.map(\.index))
            for (i, frame) in [image, patched, patched].enumerated() {
                let got = detector.detect(frame, state: state)
                let want = detector.detect(frame, state: denseState)
                XCTAssertEqual(got.count, want.count, "\(name) frame \(i)")
                for (g, w) in zip(got, want) {
                    XCTAssertEqual(g.classID, w.classID, "\(name) frame \(i)")
                    XCTAssertEqual(g.score, w.score, accuracy: 1e-4, "\(name) frame \(i)")
                    XCTAssertLessThan(abs(g.box.x1 - w.box.x1) + abs(g.box.y1 - w.box.y1) + abs(g.box.x2 - w.box.x2)
                                      + abs(g.box.y2 - w.box.y2), 1e-2, "\(name) frame \(i)")
                }
                let heads = cache.profile!.layerTileCounts.keys.filter { !backboneLayers.contains($0) }
                XCTAssertFalse(heads.isEmpty, "\(name): head convs did not go through the cache")
                if i == 1 {
                    XCTAssertFalse(cache.lastStats.refreshed)
                    XCTAssertLessThan(cache.lastStats.recomputedFraction, 1, "\(name): patch frame was not partial")
                }
                if i == 2 { XCTAssertEqual(cache.lastStats.gemmCalls, 0, "\(name): identical frame did GEMM work") }
                // The identical frame repeats the patched frame's result without running the heads.
                XCTAssertEqual(state.lastFrameRepeated, i == 2, "\(name) frame \(i)")
                XCTAssertEqual(state.timingsMs["heads"] == nil && state.timingsMs["rpn"] == nil, i == 2, "\(name) frame \(i)")
            }
        }
    }

    /// A moving scene's fall-back frames run the dense heads into the workspace, where the GroupNorm towers
    /// (RetinaNet v2, FCOS) normalise in place: those frames give the dense detections bit for bit, and the resync
    /// and the delta frame after them (threshold 0) still do.
    func testDenseHeadsFallBackFramesAndTheFramesAfterThemEqualDense() throws {
        for name in ["tiny-retinanet-v2", "tiny-fcos"] {
            let tiny = try tinyDetector(name)
            defer { try? FileManager.default.removeItem(at: tiny.directory) }
            let detector = tiny.detector, pixels = tiny.pixels, w = tiny.width, h = tiny.height
            func shifted(_ k: Int, patch: Bool = false) -> RGBImage {
                var p = [UInt8](repeating: 0, count: pixels.count)
                for y in 0..<h { for x in 0..<w { for c in 0..<3 {
                    let inPatch = patch && y < h / 8 && x < w / 8
                    p[(y * w + x) * 3 + c] = inPatch ? UInt8((x * 7 + y * 3 + c * 50) % 256)
                        : pixels[(((y + k / 2) % h) * w + (x + k) % w) * 3 + c]
                } } }
                return RGBImage(width: w, height: h, pixels: p)
            }
            let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0,
                                                                 frameFallback: 0.05))
            let state = DetectorState(runner: cache), denseState = DetectorState()
            var fellBack: [Bool] = []
            for (i, frame) in [shifted(0), shifted(4), shifted(8), shifted(8), shifted(8, patch: true)].enumerated() {
                let got = detector.detect(frame, state: state)
                let want = detector.detect(frame, state: denseState)
                fellBack.append(cache.lastStats.frameFallback)
                XCTAssertEqual(got.count, want.count, "\(name) frame \(i)")
                let exact = i < 4   // dense passes; the last frame recomputes tiles
                for (g, d) in zip(got, want) {
                    XCTAssertEqual(g.classID, d.classID, "\(name) frame \(i)")
                    XCTAssertEqual(g.score, d.score, accuracy: exact ? 0 : 1e-4, "\(name) frame \(i)")
                    XCTAssertEqual(g.box.x1, d.box.x1, accuracy: exact ? 0 : 1e-2, "\(name) frame \(i)")
                    XCTAssertEqual(g.box.y2, d.box.y2, accuracy: exact ? 0 : 1e-2, "\(name) frame \(i)")
                }
            }
            XCTAssertEqual(Array(fellBack[1...3]), [true, true, true], "\(name): the moving frames fall back")
            XCTAssertEqual(fellBack[4], false, "\(name): the patched frame runs delta")
            XCTAssertGreaterThan(cache.lastStats.tiledLayers, 0, "\(name): the patched frame recomputes tiles")
        }
    }

    /// A runner's result may be state it keeps across frames: no model writes into it. A runner that returns
    /// tensors of its own and remembers what they held finds them unchanged after every detector's frame (the
    /// GroupNorm towers and the semantic head normalise into workspace tensors), and the detections equal the
    /// dense ones; a runner returning workspace tensors lets them normalise in place, with the same detections.
    func testNoModelWritesIntoARunnersOwnOutputs() throws {
        for name in ["tiny-maskrcnn", "tiny-retinanet-v2", "tiny-fcos"] {
            let tiny = try tinyDetector(name)
            defer { try? FileManager.default.removeItem(at: tiny.directory) }
            let detector = tiny.detector
            let image = RGBImage(width: tiny.width, height: tiny.height, pixels: tiny.pixels)
            let owning = OwningRunner()
            let got = detector.detect(image, state: DetectorState(runner: owning))
            let want = detector.detect(image, state: DetectorState())
            XCTAssertGreaterThan(owning.outputs.count, 0, name)
            for (key, (output, copy)) in owning.outputs {
                XCTAssertEqual(output.array, copy, "\(name): \(key)'s output was written after the runner returned it")
            }
            XCTAssertEqual(got.map(\.classID), want.map(\.classID), name)
            XCTAssertEqual(got.map(\.score), want.map(\.score), name)
        }
    }

    /// The RPN conv reads the gated pyramid levels directly (no kept copy). Its 1x1 outputs (objectness, box
    /// deltas) are cheap leaves: no conv of the cache reads them and a tile costs more to gather than to compute.
    /// After the first frame they read the RPN conv's kept output directly (their kept input copies are dropped)
    /// and run densely on every level where it recomputed anything, also where it ran by tiles.
    func testRPNReadsGatedLevelsAndItsCheapLeavesRunDensely() throws {
        let (weights, fixture) = try DetectorParityTests.materialize("tiny-maskrcnn")
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let detector = try DetectorLoader.load(contentsOf: weights)
        let img = try fixture.tensor("fixture.image")
        var pixels = img.array.map { UInt8(clamping: Int($0.rounded())) }
        let image = RGBImage(width: img.shape[1], height: img.shape[0], pixels: pixels)
        for y in 0..<8 { for x in 0..<8 { for c in 0..<3 {
            pixels[(y * image.width + x) * 3 + c] = UInt8((x * 5 + y * 11 + c * 70) % 256)
        } } }
        let patched = RGBImage(width: image.width, height: image.height, pixels: pixels)
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0.05, refreshInterval: 0,
                                                             frameFallback: 1), profile: TemporalProfile())
        let state = DetectorState(runner: cache)
        _ = detector.detect(image, state: state)
        let keptInputs = cache.stateBytes.inputs
        _ = detector.detect(patched, state: state)
        XCTAssertFalse(cache.lastStats.refreshed || cache.lastStats.frameFallback)
        let profile = cache.profile!
        func index(_ suffix: String) throws -> Int {
            try XCTUnwrap(profile.layerKeys.first { $0.value == "rpn.head." + suffix }?.key, suffix)
        }
        let conv = try index("conv.0.0"), logits = try index("cls_logits"), deltas = try index("bbox_pred")
        let levels = try XCTUnwrap(profile.layerInstances[conv])
        XCTAssertEqual(levels, 5, "P2-P6")
        let convDense = profile.lastLayerDense[conv] ?? 0
        XCTAssertLessThan(convDense, levels, "the RPN conv ran by tiles on some level")
        let logitsDense = profile.lastLayerDense[logits] ?? 0
        XCTAssertGreaterThan(logitsDense, convDense, "the 1x1s ran densely where the RPN conv ran by tiles")
        XCTAssertEqual(profile.lastLayerDense[deltas], logitsDense)
        XCTAssertLessThan(cache.stateBytes.inputs, keptInputs, "the 1x1s' kept input copies were not dropped")
        // The RPN conv reads the gated pyramid levels exactly (no copy of them): besides the stem's copy of the
        // image only its P6 instance keeps one (P6 comes from LastLevelMaxPool, which is not run through the
        // cache), 2.5% of the image here; a copy of every level would be 3x the image.
        let imageBytes = try XCTUnwrap(cache.inputShape).reduce(4, *)
        XCTAssertGreaterThanOrEqual(cache.stateBytes.inputs, imageBytes)
        XCTAssertLessThan(cache.stateBytes.inputs, imageBytes + imageBytes / 20, "the RPN conv keeps copies of the levels")
    }

    /// The per-layer dense fall-back judges what a tile pass would compute: scattered changes whose 2x2 tiles are
    /// about half of a Winograd conv's output touch every F(4x4, 3x3) block, so the conv runs densely; the same
    /// number of changes packed together runs by tiles. Either way the result equals the dense pass.
    func testScatteredTilesThatTouchEveryWinogradBlockRunDensely() throws {
        let first = Conv2d(weight: SyntheticWeights.uniform(key: "wb.a", shape: [32, 3, 1, 1], amplitude: 0.5),
                           bias: [Float](repeating: 0.1, count: 32), activation: .relu)
        let second = Conv2d(weight: SyntheticWeights.uniform(key: "wb.b", shape: [32, 32, 3, 3], amplitude: 0.2),
                            bias: [Float](repeating: 0, count: 32), padding: 1)
        let a = ConvLayer(key: "a", index: 0, conv: first), b = ConvLayer(key: "b", index: 1, conv: second)
        let base = frame("wb.x", h: 32, w: 32)
        // Wide enough not to be a cheap leaf (the cache reads nothing of its output).
        let winograd = second.runsWinograd(shape: [1, 32, 32, 32])
        // One pixel changed every 8 rows and columns (tile-aligned at 8i+2): each reaches 3x3 output tiles of the
        // 3x3 conv (144 of 256, 56%) spanning pixels 8i...8i+5, which touch all 64 4x4 blocks. Packed 2 pixels
        // apart, 16 changes reach 36 tiles (14%) and 9 blocks.
        let spread = (0..<4).flatMap { i in (0..<4).map { j in (8 * i + 2, 8 * j + 2) } }
        let packed = (0..<4).flatMap { i in (0..<4).map { j in (2 + 2 * i, 2 + 2 * j) } }
        for (name, pixels, tiles, dense) in [("spread", spread, 144, winograd), ("packed", packed, 36, false)] {
            let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 1e-4, refreshInterval: 0,
                                                                 inputBlock: 1, frameFallback: 1),
                                      profile: TemporalProfile())
            let changed = Tensor(shape: base.shape); changed.copy(from: base)
            for (y, x) in pixels { for c in 0..<3 { changed[0, c, y, x] += 3 } }
            var out: [Float] = []
            for x in [base, changed] {
                let ws = Workspace()
                cache.beginFrame(inputShape: x.shape)
                let y = cache.run(a, input: x, residual: nil, workspace: ws)
                out = cache.run(b, input: y, residual: nil, workspace: ws).array
            }
            XCTAssertEqual(cache.profile!.lastLayerTiles[1], tiles, name)
            XCTAssertEqual(cache.profile!.lastLayerDense[1] ?? 0, dense ? 1 : 0, name)
            let ws = Workspace()
            let want = second(first(changed, in: ws), in: ws).array
            let scale = want.reduce(Float(0)) { max($0, abs($1)) }
            var worst: Float = 0
            for i in want.indices { worst = max(worst, abs(out[i] - want[i])) }
            XCTAssertLessThanOrEqual(Double(worst / scale), rounding, name)
        }
    }
}

/// A runner that computes every conv into a tensor of its own (as a temporal cache returns its kept outputs) and
/// keeps a copy of what it returned, by conv key and instance.
final class OwningRunner: ConvolutionRunner {
    var outputs: [String: (output: Tensor, copy: [Float])] = [:]

    func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        run(layer, instance: 0, input: input, residual: residual, workspace: workspace)
    }

    func run(_ layer: ConvLayer, instance: Int, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        let out = Tensor(shape: layer.conv.outputShape(input.shape))
        layer.conv.forward(input, residual: residual, into: out, workspace: workspace)
        outputs["\(layer.key)#\(instance)"] = (out, out.array)
        return out
    }
}
