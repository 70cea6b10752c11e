import XCTest
import Tensor
import TestSupport
@testable import ONNX

/// Graph lowering, fusion and execution on small models written by `ONNXBuilder`, against naive references.
final class ONNXNetworkTests: XCTestCase {
    private func network(_ b: ONNXBuilder) throws -> ONNXNetwork {
        try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))
    }

    private func input(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var rng = TestRNG(seed)
        return Tensor(shape: shape, data: rng.array(shape.reduce(1, *), scale: scale))
    }

    /// Naive NCHW convolution (groups, stride, symmetric padding), for references.
    private func naiveConv(_ x: [Float], _ s: [Int], _ w: [Float], _ ws: [Int], bias: [Float], stride: Int, pad: Int, groups: Int) -> ([Float], [Int]) {
        let (n, c, h, wd) = (s[0], s[1], s[2], s[3]), (oc, cg, kh, kw) = (ws[0], ws[1], ws[2], ws[3])
        let ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1
        var out = [Float](repeating: 0, count: n * oc * ho * wo)
        let mg = oc / groups
        for b in 0..<n { for o in 0..<oc { for y in 0..<ho { for xx in 0..<wo {
            var acc = Double(bias[o])
            let g = o / mg
            for ci in 0..<cg { for ky in 0..<kh { for kx in 0..<kw {
                let iy = y * stride - pad + ky, ix = xx * stride - pad + kx
                guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                acc += Double(x[((b * c + g * cg + ci) * h + iy) * wd + ix]) * Double(w[((o * cg + ci) * kh + ky) * kw + kx])
            } } }
            out[((b * oc + o) * ho + y) * wo + xx] = Float(acc)
        } } } }
        _ = c
        return (out, [n, oc, ho, wo])
    }

    func testConvBatchNormReluFoldIntoOneStepAndMatchReference() throws {
        var rng = TestRNG(1)
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 32, 32]
        let w = rng.array(4 * 3 * 3 * 3, scale: 0.5), bias = rng.array(4)
        let gamma = rng.array(4).map { $0 + 1.5 }, beta = rng.array(4), mean = rng.array(4), varr = rng.array(4).map { $0 + 1.2 }
        b.constant("w", [4, 3, 3, 3], w); b.constant("b", [4], bias)
        b.constant("g", [4], gamma); b.constant("beta", [4], beta); b.constant("m", [4], mean); b.constant("v", [4], varr)
        b.node("Conv", ["x", "w", "b"], "c", name: "conv1", [("kernel_shape", .ints([3, 3])), ("pads", .ints([1, 1, 1, 1])), ("strides", .ints([2, 2]))])
        b.node("BatchNormalization", ["c", "g", "beta", "m", "v"], "bn", name: "bn1", [("epsilon", .float(1e-3))])
        b.node("Relu", ["bn"], "y", name: "relu1")
        b.outputs = ["y"]
        let net = try network(b)
        XCTAssertEqual(net.stepDescriptions.count, 1, "\(net.stepDescriptions)")
        XCTAssertTrue(net.stepDescriptions[0].contains("+relu"))

        // Runs at a size other than the declared 32x32 (input dims are overridden by the frame's size).
        let x = input([1, 3, 20, 26], seed: 2)
        let out = try ONNXSession(net).run(x)[0]
        let (conv, shape) = naiveConv(x.array, x.shape, w, [4, 3, 3, 3], bias: bias, stride: 2, pad: 1, groups: 1)
        XCTAssertEqual(out.shape, shape)
        let plane = shape[2] * shape[3]
        var worst: Float = 0
        for i in conv.indices {
            let c = (i / plane) % 4
            let bn = Float((Double(conv[i]) - Double(mean[c])) / (Double(varr[c]) + 1e-3).squareRoot() * Double(gamma[c]) + Double(beta[c]))
            worst = max(worst, abs(max(bn, 0) - out.array[i]))
        }
        XCTAssertLessThan(worst, 1e-5)
    }

    func testResidualAddAndReluFuseIntoTheConv() throws {
        // MobileNetV2/ResNet tail: Relu(Add(x, Conv(x))) → one conv step with residual x and ReLU epilogue.
        var rng = TestRNG(7)
        var b = ONNXBuilder()
        b.inputDims = [1, 4, 6, 5]
        let w = rng.array(4 * 4, scale: 0.5), bias = rng.array(4)
        b.constant("w", [4, 4, 1, 1], w); b.constant("b", [4], bias)
        b.node("Conv", ["x", "w", "b"], "c", name: "project")
        b.node("Add", ["x", "c"], "s", name: "residual")
        b.node("Relu", ["s"], "y", name: "act")
        b.outputs = ["y"]
        let net = try network(b)
        XCTAssertEqual(net.stepDescriptions, ["project+residual+act: Conv 4→4 k1x1 s1x1 p0x0 g1 +bias +relu +residual"])
        let x = input([1, 4, 6, 5], seed: 8)
        let y = try ONNXSession(net).run(x)[0].array
        let (conv, _) = naiveConv(x.array, x.shape, w, [4, 4, 1, 1], bias: bias, stride: 1, pad: 0, groups: 1)
        for i in conv.indices { XCTAssertEqual(y[i], max(0, conv[i] + x.array[i]), accuracy: 1e-5) }
    }

    func testHardSwishPatternAndScalarAffinesFuse() throws {
        // PaddlePaddle's export of hardswish: Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Div(·, 6), then Mul/Add scalars.
        var b = ONNXBuilder()
        b.opset = 12
        b.inputDims = [1, 2, 4, 4]
        b.constant("three", [], [3]); b.constant("zero", [], [0]); b.constant("six", [], [6]); b.constant("six2", [], [6])
        b.constant("k", [1], [0.5]); b.constant("t", [1], [-0.25])
        b.node("Add", ["x", "three"], "a")
        b.node("Clip", ["a", "zero", "six"], "c")
        b.node("Mul", ["x", "c"], "m")
        b.node("Div", ["m", "six2"], "hs")
        b.node("Mul", ["k", "hs"], "s")
        b.node("Add", ["s", "t"], "y")
        b.outputs = ["y"]
        let net = try network(b)
        XCTAssertEqual(net.stepDescriptions.count, 2, "\(net.stepDescriptions)")  // hard-swish + one merged affine
        let x = input([1, 2, 4, 4], seed: 3, scale: 5)
        let y = try ONNXSession(net).run(x)[0].array
        for (v, got) in zip(x.array, y) {
            let hs = v * min(max(v + 3, 0), 6) / 6
            XCTAssertEqual(got, hs * 0.5 - 0.25, accuracy: 1e-6)
        }
    }

    func testSqueezeExcitationBroadcastMulAndGlobalPool() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 5, 6]
        b.node("GlobalAveragePool", ["x"], "p")
        b.node("HardSigmoid", ["p"], "g", [("alpha", .float(0.2)), ("beta", .float(0.5))])
        b.node("Mul", ["x", "g"], "y")
        b.outputs = ["y"]
        let x = input([1, 3, 5, 6], seed: 4, scale: 4)
        let y = try ONNXSession(try network(b)).run(x)[0].array
        let xs = x.array
        for c in 0..<3 {
            let mean = xs[(c * 30)..<(c * 30 + 30)].reduce(0, +) / 30
            let gate = max(0, min(1, 0.2 * mean + 0.5))
            for i in 0..<30 { XCTAssertEqual(y[c * 30 + i], xs[c * 30 + i] * gate, accuracy: 1e-5) }
        }
    }

    func testResizeNearestAsymmetricFloorAndLinearHalfPixel() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 1, 2, 3]
        b.constant("roi", [0], []); b.constant("scales", [4], [1, 1, 2, 2])
        b.node("Resize", ["x", "roi", "scales"], "n", [("mode", .string("nearest")), ("coordinate_transformation_mode", .string("asymmetric")),
                                                        ("nearest_mode", .string("floor"))])
        b.node("Resize", ["x", "roi", "scales"], "l", [("mode", .string("linear"))])
        b.outputs = ["n", "l"]
        let x = Tensor(shape: [1, 1, 2, 3], data: [0, 1, 2, 3, 4, 5])
        let outs = try ONNXSession(try network(b)).run(x)
        XCTAssertEqual(outs[0].shape, [1, 1, 4, 6])
        XCTAssertEqual(outs[0].array, [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 3, 3, 4, 4, 5, 5])
        // half_pixel: src = (o + 0.5)/2 - 0.5, clamped to [0, in-1]; row 0 → src y 0 (clamped), row 1 → 0.25.
        let l = outs[1].array
        XCTAssertEqual(Array(l[0..<6]), [0, 0.25, 0.75, 1.25, 1.75, 2], "first row")
        XCTAssertEqual(l[6 + 1], 0.25 + 0.25 * 3, accuracy: 1e-6)   // y 0.25 between rows 0 and 1 (step 3), x 0.25
    }

    func testConcatOfMismatchedSizesIsAShapeErrorNamingTheNode() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 1, 8, 8]
        b.constant("w", [1, 1, 1, 1], [1])
        b.node("Conv", ["x", "w"], "d", name: "down", [("strides", .ints([2, 2]))])
        b.constant("roi", [0], []); b.constant("scales", [4], [1, 1, 2, 2])
        b.node("Resize", ["d", "roi", "scales"], "u", name: "up", [("mode", .string("nearest"))])
        b.node("Concat", ["x", "u"], "y", name: "merge", [("axis", .int(1))])
        b.outputs = ["y"]
        let session = ONNXSession(try network(b))
        XCTAssertEqual(try session.outputShapes(forInput: [1, 1, 8, 8]), [[1, 2, 8, 8]])
        XCTAssertThrowsError(try session.run(Tensor(shape: [1, 1, 9, 9]))) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("merge") && m.contains("[1, 1, 9, 9]") && m.contains("[1, 1, 10, 10]"), m)
        }
        XCTAssertThrowsError(try session.run(Tensor(shape: [1, 2, 8, 8]))) { e in XCTAssertTrue("\(e)".contains("1 channels"), "\(e)") }
    }

    func testUnsupportedOpsAndAttributesAreAllListedWithNodeNames() throws {
        var b = ONNXBuilder()
        b.constant("w", [2, 3, 1, 1], [Float](repeating: 0.1, count: 6))
        b.node("Conv", ["x", "w"], "c", name: "conv_ok")
        b.node("GRU", ["c"], "s", name: "gru")
        b.node("LSTM", ["s"], "l", name: "rnn")
        b.node("Conv", ["l", "w"], "c2", name: "conv_weird", [("auto_pad", .string("SAME_UPPER")), ("frobnicate", .int(1))])
        b.outputs = ["c2"]
        XCTAssertThrowsError(try network(b)) { e in
            guard let err = e as? ONNXError, case .unsupportedNodes(let list) = err.kind else { return XCTFail("\(e)") }
            XCTAssertEqual(Set(list.map(\.node)), ["gru", "rnn", "conv_weird"])
            XCTAssertEqual(list.filter { $0.node == "conv_weird" }.count, 2)  // auto_pad and the unknown attribute
            let m = err.description
            XCTAssertTrue(m.contains("GRU") && m.contains("LSTM") && m.contains("frobnicate") && m.contains("SAME_UPPER"), m)
        }
    }

    func testBuffersArePlannedOncePerInputSize() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 16, 16]
        var rng = TestRNG(5)
        b.constant("w1", [8, 3, 3, 3], rng.array(216)); b.constant("w2", [8, 8, 1, 1], rng.array(64))
        b.constant("wt", [8, 4, 2, 2], rng.array(128))
        b.node("Conv", ["x", "w1"], "a", [("pads", .ints([1, 1, 1, 1]))])
        b.node("Relu", ["a"], "r")
        b.node("Conv", ["r", "w2"], "c")
        b.node("Add", ["c", "r"], "s")
        b.node("ConvTranspose", ["s", "wt"], "u", [("strides", .ints([2, 2]))])
        b.node("Sigmoid", ["u"], "y")
        b.outputs = ["y"]
        let session = ONNXSession(try network(b))
        let x = input([1, 3, 16, 16], seed: 6)
        let first = try session.run(x)[0].array
        let allocations = session.workspace.allocationCount
        for _ in 0..<3 { _ = try session.run(x) }
        XCTAssertEqual(session.workspace.allocationCount, allocations, "frames 2...N must not allocate")
        XCTAssertEqual(try session.run(x)[0].array, first, "reused buffers give the same result")
        XCTAssertEqual(try session.run(x)[0].shape, [1, 4, 32, 32])
    }

    func testFloatDataInitializersAndIdentityAreHandled() throws {
        var b = ONNXBuilder()
        b.floatDataEncoding = true
        b.inputDims = [1, 1, 2, 2]
        b.constant("k", [1, 1, 1, 1], [2])
        b.node("Identity", ["x"], "i")
        b.node("Sub", ["k", "i"], "y")    // constant first: 2 - x
        b.outputs = ["y"]
        let y = try ONNXSession(try network(b)).run(Tensor(shape: [1, 1, 2, 2], data: [1, 2, 3, 4]))[0]
        XCTAssertEqual(y.array, [1, 0, -1, -2])
    }
}
