import TestSupport
import XCTest
@testable import Tensor

/// MobileNetV3's ops against torch 2.15 (CPU): hard-swish and hard-sigmoid bit for bit on 2007 inputs (the sum of
/// the outputs' bit patterns, printed by torch, and a few values), squeeze-excitation's channel scaling.
final class MobileNetOpsTests: XCTestCase {
    /// x = (i - 1000) / 250 for i in 0...2000 (exact in Float32), then six values near the kinks and zero.
    func inputs() -> Tensor {
        let v: [Float] = (0...2000).map { Float($0 - 1000) / 250 } + [1 / 3, -2.9999998, 2.9999998, 0.1, -0.1, 1e-8]
        return Tensor(shape: [1, 1, 1, v.count], data: v)
    }

    func bitSum(_ t: Tensor) -> Int64 { t.array.reduce(0) { $0 + Int64(Int32(bitPattern: $1.bitPattern)) } }

    func testHardSwishMatchesTorchBitForBit() {
        let x = inputs()
        x.applyHardSwish()
        // torch: F.hardswish(x).view(torch.int32).to(torch.int64).sum()
        XCTAssertEqual(bitSum(x), -295_906_100_258)
        XCTAssertEqual(Array(x.array.suffix(6)), [0.18518519401550293, -1.1920928244535389e-07, 2.999999761581421,
                                                 0.05166666582226753, -0.04833333566784859, 4.999999969612645e-09])
        let y = inputs().array, got = x.array
        for i in y.indices {  // the definition, in Double
            let v = Double(y[i])
            XCTAssertEqual(Double(got[i]), v * min(max(v + 3, 0), 6) / 6, accuracy: 1e-6 * max(1, abs(v)))
        }
    }

    func testHardSigmoidMatchesTorchBitForBit() {
        let x = inputs()
        x.applyHardSigmoid()
        XCTAssertEqual(bitSum(x), 1_851_701_501_222)
        XCTAssertEqual(Array(x.array.suffix(6)), [0.555555522441864, 3.973643103449831e-08, 1.0, 0.5166666507720947,
                                                 0.4833333492279053, 0.5])
        // ONNX's alpha x + beta form rounds differently on 685 of these inputs: the torch order is needed.
        let onnx = Tensor(shape: x.shape)
        Ops.hardSigmoid(inputs(), alpha: 1 / 6, beta: 0.5, into: onnx)
        XCTAssertGreaterThan(zip(onnx.array, x.array).filter { $0 != $1 }.count, 100)
    }

    func testScaleChannelsMultipliesEachPlane() {
        var rng = TestRandom(seed: 5)
        let x = rng.tensor([2, 3, 4, 5])
        let s = rng.tensor([2, 3, 1, 1])
        let out = Tensor(shape: x.shape)
        Ops.scaleChannels(x, by: s, into: out)
        let xa = x.array, sa = s.array, oa = out.array
        for i in xa.indices { XCTAssertEqual(oa[i], sa[i / 20] * xa[i]) }
        x.scaleChannels(by: s)   // in place
        XCTAssertEqual(x.array, oa)
    }
}
