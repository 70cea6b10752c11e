import XCTest
import Tensor
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
                                                             frameFallback: 1))
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
}
