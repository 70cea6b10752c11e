import XCTest
import Tensor
import TemporalReuse
import TestSupport
import Vision
@testable import ONNX

/// An ONNX graph's convolutions through a per-stream `TemporalCache` (issue 7): the session's runner hook.
final class ONNXTemporalTests: XCTestCase {
    /// conv 3→8 3x3/2 + ReLU → conv 8→8 3x3 + residual + ReLU → depthwise 3x3 → conv 8→4 1x1 → two outputs
    /// (the 1x1 head and a nearest 2x upsampling of it, a non-conv op between convs).
    private func network() throws -> ONNXNetwork {
        var rng = TestRNG(11)
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 32, 32]
        b.constant("w1", [8, 3, 3, 3], rng.array(8 * 27, scale: 0.4)); b.constant("b1", [8], rng.array(8))
        b.constant("w2", [8, 8, 3, 3], rng.array(8 * 72, scale: 0.2)); b.constant("b2", [8], rng.array(8))
        b.constant("w3", [8, 1, 3, 3], rng.array(72, scale: 0.4))
        b.constant("w4", [4, 8, 1, 1], rng.array(32, scale: 0.5)); b.constant("b4", [4], rng.array(4))
        b.node("Conv", ["x", "w1", "b1"], "c1", name: "stem", [("kernel_shape", .ints([3, 3])), ("pads", .ints([1, 1, 1, 1])), ("strides", .ints([2, 2]))])
        b.node("Relu", ["c1"], "r1", name: "stem_relu")
        b.node("Conv", ["r1", "w2", "b2"], "c2", name: "block", [("kernel_shape", .ints([3, 3])), ("pads", .ints([1, 1, 1, 1]))])
        b.node("Add", ["r1", "c2"], "s2", name: "block_add")
        b.node("Relu", ["s2"], "r2", name: "block_relu")
        b.node("Conv", ["r2", "w3"], "c3", name: "dw", [("kernel_shape", .ints([3, 3])), ("pads", .ints([1, 1, 1, 1])), ("group", .int(8))])
        b.node("Conv", ["c3", "w4", "b4"], "y", name: "head")
        b.outputs = ["y"]
        return try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))
    }

    func testConvsThroughTheCacheEqualDenseAndSkipAnIdenticalFrame() throws {
        let net = try network()
        XCTAssertEqual(net.steps.filter { $0.layer != nil }.count, 4, "\(net.stepDescriptions)")
        var rng = TestRNG(12)
        let a = Tensor(shape: [1, 3, 40, 48], data: rng.array(3 * 40 * 48))
        let patched = Tensor(shape: a.shape); patched.copy(from: a)
        for c in 0..<3 { for y in 30..<36 { for x in 2..<9 { patched[0, c, y, x] += 1.5 } } }
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0, tile: 4,
                                                             frameFallback: 1), profile: TemporalProfile())
        let delta = ONNXSession(net, runner: cache), dense = ONNXSession(net)
        for (i, x) in [a, patched, patched].enumerated() {
            let got = try delta.run(x)[0].array, want = try dense.run(x)[0].array
            XCTAssertEqual(got.count, want.count)
            let scale = want.reduce(Float(0)) { max($0, abs($1)) }
            var worst: Float = 0
            for j in got.indices { worst = max(worst, abs(got[j] - want[j])) }
            XCTAssertLessThanOrEqual(worst / scale, 1e-6, "frame \(i)")
            switch i {
            case 0: XCTAssertEqual(cache.lastStats.denseLayers, 4)
            case 1:
                XCTAssertGreaterThan(cache.lastStats.tiledLayers, 0, "a patch is a partial update")
                XCTAssertLessThan(cache.lastStats.recomputedFraction, 1)
            default: XCTAssertEqual(cache.lastStats.gemmCalls, 0, "an identical frame does no GEMM")
            }
        }
        // Without a runner the session is dense as before.
        XCTAssertNil(dense.runner)
    }

    /// An inverted-residual block (MobileNetV2): stem 3→8 3x3/2 + ReLU → expand 8→16 1x1 + ReLU → depthwise 3x3 +
    /// ReLU → project 16→8 1x1 → head 8→128 3x3 (wide enough per tile not to be a cheap leaf, which would run densely).
    private func invertedResidual() throws -> ONNXNetwork {
        var rng = TestRNG(21)
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 64, 64]
        b.constant("w1", [8, 3, 3, 3], rng.array(8 * 27, scale: 0.4)); b.constant("b1", [8], rng.array(8))
        b.constant("w2", [16, 8, 1, 1], rng.array(128, scale: 0.4)); b.constant("b2", [16], rng.array(16))
        b.constant("w3", [16, 1, 3, 3], rng.array(144, scale: 0.4)); b.constant("b3", [16], rng.array(16))
        b.constant("w4", [8, 16, 1, 1], rng.array(128, scale: 0.4)); b.constant("b4", [8], rng.array(8))
        b.constant("w5", [128, 8, 3, 3], rng.array(128 * 72, scale: 0.3)); b.constant("b5", [128], rng.array(128))
        let pad1 = ("pads", ONNXBuilder.Attr.ints([1, 1, 1, 1]))
        b.node("Conv", ["x", "w1", "b1"], "c1", name: "stem", [("kernel_shape", .ints([3, 3])), pad1, ("strides", .ints([2, 2]))])
        b.node("Relu", ["c1"], "r1", name: "stem_relu")
        b.node("Conv", ["r1", "w2", "b2"], "c2", name: "expand")
        b.node("Relu", ["c2"], "r2", name: "expand_relu")
        b.node("Conv", ["r2", "w3", "b3"], "c3", name: "dw", [("kernel_shape", .ints([3, 3])), pad1, ("group", .int(16))])
        b.node("Relu", ["c3"], "r3", name: "dw_relu")
        b.node("Conv", ["r3", "w4", "b4"], "c4", name: "project")
        b.node("Conv", ["c4", "w5", "b5"], "y", name: "head", [("kernel_shape", .ints([3, 3])), pad1])
        b.outputs = ["y"]
        return try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))
    }

    /// The depthwise conv and the 1x1 reading it are exact layers: they skip the compare and recompute every tile the
    /// producer's recomputed tiles reach; the next conv compares (and prunes) again. One input pixel changed
    /// (counts by hand, tile 4): the stem output changes only at (10, 10) (tile (2, 2)), so `expand` (1x1, compare)
    /// recomputes 1 tile; `dw` (3x3) the 3x3 = 9 tiles around it; `project` (1x1, exact) all 9 although only the dw
    /// output's rows/columns 9-11 (tile (2, 2)) changed in value; `head` (3x3, compare) 9. Equals dense.
    func testDepthwiseBlockLayersAreExactAndRecomputeTheTilesTheirProducerReaches() throws {
        let net = try invertedResidual()
        XCTAssertEqual(net.convLayers.count, 5, "\(net.stepDescriptions)")
        var rng = TestRNG(22)
        let a = Tensor(shape: [1, 3, 64, 64], data: rng.array(3 * 64 * 64, scale: 50))
        let patched = Tensor(shape: a.shape); patched.copy(from: a)
        for c in 0..<3 { patched[0, c, 20, 20] += 300 }
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 1e-4, refreshInterval: 0, tile: 4,
                                                             inputThreshold: 1e-4, frameFallback: 1), profile: TemporalProfile())
        let delta = ONNXSession(net, runner: cache), dense = ONNXSession(net)
        for (i, x) in [a, patched, patched].enumerated() {
            let got = try delta.run(x)[0].array, want = try dense.run(x)[0].array
            let scale = want.reduce(Float(0)) { max($0, abs($1)) }
            var worst: Float = 0
            for j in got.indices { worst = max(worst, abs(got[j] - want[j])) }
            XCTAssertLessThanOrEqual(worst / scale, 1e-5, "frame \(i)")
            if i == 1 {
                func tiles(_ name: String) -> Int? {
                    net.convLayers.first { $0.key.hasPrefix(name) }.flatMap { cache.profile!.lastLayerTiles[$0.index] }
                }
                XCTAssertEqual(tiles("stem"), 4, "stem: output rows/cols 8-12 = tiles 2-3")
                XCTAssertEqual(tiles("expand"), 1)
                XCTAssertEqual(tiles("dw"), 9)
                XCTAssertEqual(tiles("project"), 9, "exact: every tile the dw recomputed, unchanged ones included")
                XCTAssertEqual(tiles("head"), 9)
            }
            if i == 2 { XCTAssertEqual(cache.lastStats.gemmCalls, 0, "an identical frame does no GEMM") }
        }
        // A 12x12 patch at 18-29: the stem output changes at rows/cols 9-15 (tiles 2-3), so `expand` recomputes
        // 2x2 = 4 tiles, the depthwise conv the 4x4 = 16 of 64 tiles they reach (> 15%: it runs densely, but passes
        // on only those 16), `project` 16, not 64.
        let big = Tensor(shape: a.shape); big.copy(from: patched)
        for c in 0..<3 { for y in 18..<30 { for x in 18..<30 { big[0, c, y, x] += 200 } } }
        let got = try delta.run(big)[0].array, want = try dense.run(big)[0].array
        let scale = want.reduce(Float(0)) { max($0, abs($1)) }
        var worst: Float = 0
        for j in got.indices { worst = max(worst, abs(got[j] - want[j])) }
        XCTAssertLessThanOrEqual(worst / scale, 1e-5, "big patch")
        func tiles(_ name: String) -> Int? {
            net.convLayers.first { $0.key.hasPrefix(name) }.flatMap { cache.profile!.lastLayerTiles[$0.index] }
        }
        XCTAssertEqual(tiles("expand"), 4)
        XCTAssertEqual(tiles("dw"), 16)
        XCTAssertEqual(tiles("project"), 16, "the dense depthwise pass still hands on only the tiles it had to recompute")
        XCTAssertEqual(cache.lastStats.denseLayers, 1, "the depthwise conv ran densely")
    }

    /// Exact layers at threshold 0 over several changing frames (a moving patch, a global offset) equal dense.
    func testDepthwiseBlockAtThresholdZeroEqualsDense() throws {
        let net = try invertedResidual()
        var rng = TestRNG(23)
        let base = rng.array(3 * 48 * 56, scale: 50)
        let cache = TemporalCache(settings: TemporalSettings(mode: .delta, threshold: 0, refreshInterval: 0, tile: 2,
                                                             frameFallback: 1), profile: TemporalProfile())
        let delta = ONNXSession(net, runner: cache), dense = ONNXSession(net)
        for f in 0..<5 {
            let x = Tensor(shape: [1, 3, 48, 56], data: base)
            for c in 0..<3 { for y in (4 * f)..<(4 * f + 7) { for xx in (6 * f)..<(6 * f + 5) { x[0, c, y, xx] += 40 } } }
            if f == 4 { for c in 0..<3 { for y in 0..<48 { for xx in 0..<56 { x[0, c, y, xx] += 0.5 } } } }
            let got = try delta.run(x)[0].array, want = try dense.run(x)[0].array
            let scale = want.reduce(Float(0)) { max($0, abs($1)) }
            var worst: Float = 0
            for j in got.indices { worst = max(worst, abs(got[j] - want[j])) }
            XCTAssertLessThanOrEqual(worst / scale, 1e-6, "frame \(f)")
            if f > 0 && f < 4 { XCTAssertLessThan(cache.lastStats.recomputedFraction, 1, "frame \(f) is partial") }
        }
    }
}
