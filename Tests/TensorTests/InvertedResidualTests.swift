import TestSupport
import XCTest
@testable import Tensor

/// The banded inverted-residual block against its three convs run one after the other: bit for bit, for every band
/// height (one output row per band up to the whole map), strides 1 and 2, kernels 3 and 5, with and without the
/// expand conv and the shortcut, on ragged sizes and a batch of two.
final class InvertedResidualTests: XCTestCase {
    struct Case { let expand: Bool; let kernel: Int; let stride: Int; let residual: Bool }

    func convs(_ c: Case, rng: inout TestRandom) -> (Conv2d?, Conv2d, Conv2d) {
        let cin = 5, ce = c.expand ? 12 : 5, cout = c.residual ? 5 : 7
        let expand = c.expand ? Conv2d(weight: rng.tensor([ce, cin, 1, 1]), bias: rng.tensor([ce]).array, activation: .relu) : nil
        let dw = Conv2d(weight: rng.tensor([ce, 1, c.kernel, c.kernel]), bias: rng.tensor([ce]).array,
                        stride: Size2(c.stride, c.stride), padding: Size2(c.kernel / 2, c.kernel / 2), groups: ce,
                        activation: .relu)
        let project = Conv2d(weight: rng.tensor([cout, ce, 1, 1]), bias: rng.tensor([cout]).array)
        return (expand, dw, project)
    }

    func testBandsEqualTheThreeConvsBitForBit() {
        var rng = TestRandom(seed: 11)
        let cases = [Case(expand: true, kernel: 3, stride: 1, residual: true),
                     Case(expand: true, kernel: 3, stride: 2, residual: false),
                     Case(expand: true, kernel: 5, stride: 1, residual: false),
                     Case(expand: true, kernel: 5, stride: 2, residual: false),
                     Case(expand: false, kernel: 3, stride: 1, residual: false),
                     Case(expand: false, kernel: 3, stride: 2, residual: false)]
        let ws = Workspace()
        for c in cases {
            let (expand, dw, project) = convs(c, rng: &rng)
            XCTAssertTrue(InvertedResidual.applies(expand: expand, depthwise: dw, project: project))
            let x = rng.tensor([2, 5, 17, 13])
            ws.beginFrame()
            let mid = expand.map { $0(x, in: ws) } ?? x
            let d = dw(mid, in: ws)
            let residual = c.residual ? rng.tensor(project.outputShape(d.shape)) : nil
            let want = project(d, residual: residual, in: ws).array
            let ho = project.outputShape(d.shape)[2]
            // Scratch bytes per output row of a band: band heights 1, 2, 3, ..., the whole map in one band.
            let perRow = dw.inChannels * (c.stride * 13 + d.w) * 4
            var heights = Set<Int>()
            for rows in [1, 2, 3, 4, 7, ho] {
                let out = Tensor(shape: project.outputShape(d.shape))
                out.fill(.nan)
                InvertedResidual.forward(expand: expand, depthwise: dw, project: project, x, residual: residual,
                                         into: out, workspace: ws, bandBytes: rows * perRow)
                let got = out.array
                XCTAssertEqual(got.count, want.count)
                let differing = zip(got, want).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(c), \(rows) rows per band: \(differing) elements differ")
                heights.insert(rows)
            }
            XCTAssertEqual(heights.count, 6)
        }
    }

    /// A stem as the expand conv (MobileNetV2's first block: stem → depthwise → project): the bands compute the
    /// stem's rows with the stem kernel, bit for bit the three convs, for 3x3 and 7x7 stems and every band height.
    func testStemExpandEqualsTheThreeConvsBitForBit() throws {
        var rng = TestRandom(seed: 29)
        let ws = Workspace()
        for (k, dwStride) in [(3, 1), (7, 2)] {
            let stem = Conv2d(weight: rng.tensor([16, 3, k, k]), bias: rng.tensor([16]).array, stride: 2,
                              padding: Size2(k / 2, k / 2), activation: .relu)
            try XCTSkipUnless(stem.runsStemKernel, "no stem kernel on \(Compute.path)")
            let dw = Conv2d(weight: rng.tensor([16, 1, 3, 3]), bias: rng.tensor([16]).array,
                            stride: Size2(dwStride, dwStride), padding: 1, groups: 16, activation: .relu)
            let project = Conv2d(weight: rng.tensor([8, 16, 1, 1]), bias: rng.tensor([8]).array)
            XCTAssertTrue(InvertedResidual.applies(expand: stem, depthwise: dw, project: project))
            let x = rng.tensor([2, 3, 35, 27])
            ws.beginFrame()
            let d = dw(stem(x, in: ws), in: ws)
            let want = project(d, in: ws).array
            let ho = d.h
            let perRow = 16 * (dwStride * stem.outputShape(x.shape)[3] + d.w) * 4
            for rows in [1, 2, 5, ho] {
                let out = Tensor(shape: project.outputShape(d.shape))
                out.fill(.nan)
                InvertedResidual.forward(expand: stem, depthwise: dw, project: project, x, residual: nil, into: out,
                                         workspace: ws, bandBytes: rows * perRow)
                let differing = zip(out.array, want).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "stem \(k)x\(k), depthwise stride \(dwStride), \(rows) rows per band")
            }
        }
    }

    func testTakesOnlyPointwiseDepthwisePointwise() {
        var rng = TestRandom(seed: 3)
        let (expand, dw, project) = convs(Case(expand: true, kernel: 3, stride: 1, residual: false), rng: &rng)
        XCTAssertTrue(InvertedResidual.applies(expand: expand, depthwise: dw, project: project))
        let expand3x3 = Conv2d(weight: rng.tensor([12, 5, 3, 3]), padding: 1)
        XCTAssertFalse(InvertedResidual.applies(expand: expand3x3, depthwise: dw, project: project))
        let dense3x3 = Conv2d(weight: rng.tensor([12, 12, 3, 3]), padding: 1)
        XCTAssertFalse(InvertedResidual.applies(expand: expand, depthwise: dense3x3, project: project))
        let dilated = Conv2d(weight: rng.tensor([12, 1, 3, 3]), padding: 2, dilation: 2, groups: 12)
        XCTAssertFalse(InvertedResidual.applies(expand: expand, depthwise: dilated, project: project))
        let wrongChannels = Conv2d(weight: rng.tensor([7, 8, 1, 1]))
        XCTAssertFalse(InvertedResidual.applies(expand: expand, depthwise: dw, project: wrongChannels))
    }
}
