import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// The Swift transform and backbone against torchvision on the committed ResNet-18 FPN fixtures (v1: FrozenBN eps 0,
/// FPN with bias; v2: BatchNorm eps 1e-5 in body and FPN). Tolerance per level: relative L2 ≤ 1e-5 and
/// max abs ≤ 1e-4 · max|reference| (scripts/parity runs the same check on full frames and ResNet-50).
final class BackboneParityTests: XCTestCase {
    override class func tearDown() { BackboneFixture.cleanUp() }

    func testResNet18FPNv1MatchesTorchvision() throws { try checkFixture("resnet18-fpn", expectEps: 0) }

    func testResNet18FPNv2MatchesTorchvision() throws { try checkFixture("resnet18-fpn-v2", expectEps: 1e-5) }

    private func checkFixture(_ name: String, expectEps: Double) throws {
        let fx = try BackboneFixture(name)
        let backbone = try ResNetFPNBackbone(contentsOf: try fx.writeWeights())
        XCTAssertEqual(backbone.config.bnEps, expectEps)
        XCTAssertEqual(backbone.config.fpnNorm, name.hasSuffix("v2") ? .batchNorm : FPNNorm.none)

        // Transform: the crop through torch's GeneralizedRCNNTransform(min_size 45, max_size 1333).
        let image = try fx.tensor("fixture.image")
        let rgb = RGBImage(width: image.shape[1], height: image.shape[0], pixels: image.array.map { UInt8($0) })
        let transform = DetectionTransform(TransformConfig(
            resize: .shorterSide(min: Int(fx.metadata["min_size"]!)!, max: Int(fx.metadata["max_size"]!)!)))
        let ws = Workspace()
        ws.beginFrame()
        let (input, geometry) = transform(rgb, workspace: ws)
        XCTAssertEqual(geometry.resizedWidth, Int(fx.metadata["resized_width"]!))
        XCTAssertEqual(geometry.resizedHeight, Int(fx.metadata["resized_height"]!))
        assertParity(input, try fx.tensor("fixture.input"), "\(name) transform")

        // Padded input (64x64) and the unpadded odd-sized one (61x45: C2 16x12... nearest upsampling to odd sizes).
        for (inputKey, prefix) in [("fixture.input", "fixture.ref."), ("fixture.odd_input", "fixture.odd.")] {
            let x = try fx.tensor(inputKey)
            ws.beginFrame()
            let pyramid = backbone(x, workspace: ws)
            let names = fx.levels(prefix)
            XCTAssertEqual(pyramid.levels.map(\.name), names)
            XCTAssertEqual(pyramid.levels.map(\.stride), [4, 8, 16, 32, 64])
            for level in pyramid.levels {
                assertParity(level.features, try fx.tensor(prefix + level.name), "\(name) \(inputKey) \(level.name)")
            }
        }
    }

    /// The FrozenBN epsilon comes from the file's metadata and is folded into the conv: a wrong eps must change
    /// the folded stem weights (v1 fixtures are exported with eps 0.0, the value torchvision's COCO v1 models use).
    func testBNEpsilonFromMetadataIsFolded() throws {
        let fx = try BackboneFixture("resnet18-fpn")
        let zero = try ResNetFPNBackbone(contentsOf: try fx.writeWeights())
        let large = try ResNetFPNBackbone(contentsOf: try fx.writeWeights(metadata: ["bn_eps": "0.5"]))
        XCTAssertEqual(large.config.bnEps, 0.5)
        let raw = SyntheticWeights.tensor(key: "backbone.body.conv1.weight", shape: [64, 3, 7, 7])
        let gamma = try fx.tensor("backbone.body.bn1.weight").array, variance = try fx.tensor("backbone.body.bn1.running_var").array
        for (model, eps) in [(zero, 0.0), (large, 0.5)] {
            let folded = model.body.conv1.conv.weight
            for o in [0, 17, 63] {
                let expected = Double(raw[o, 0, 3, 3]) * Double(gamma[o]) / (Double(variance[o]) + eps).squareRoot()
                XCTAssertEqual(Double(folded[o, 0, 3, 3]), expected, accuracy: 1e-6 * abs(expected), "eps \(eps) channel \(o)")
            }
        }
    }

    /// A runner sees every conv exactly once, in `convLayers` order, and a dense runner reproduces the plain forward.
    func testConvolutionRunnerSeesEveryLayer() throws {
        let fx = try BackboneFixture("resnet18-fpn")
        let backbone = try ResNetFPNBackbone(contentsOf: try fx.writeWeights())
        final class Recorder: ConvolutionRunner {
            var keys: [String] = []
            var withResidual: [String] = []
            func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
                keys.append(layer.key)
                if residual != nil { withResidual.append(layer.key) }
                return layer.conv(input, residual: residual, in: workspace)
            }
        }
        let recorder = Recorder()
        let x = try fx.tensor("fixture.input")
        let ws = Workspace()
        ws.beginFrame()
        let plain = backbone(x, workspace: ws).levels.map { $0.features.array }
        ws.beginFrame()
        let viaRunner = backbone(x, workspace: ws, runner: recorder).levels.map { $0.features.array }
        XCTAssertEqual(plain, viaRunner)
        XCTAssertEqual(Set(recorder.keys).count, recorder.keys.count, "a conv ran twice")
        XCTAssertEqual(Set(recorder.keys), Set(backbone.convLayers.map(\.key)))
        // ResNet-18: stem + 8 blocks x 2 convs + 3 downsamples; FPN: 4 inner + 4 layer convs.
        XCTAssertEqual(recorder.keys.count, 1 + 16 + 3 + 8)
        XCTAssertEqual(recorder.keys.first, "backbone.body.conv1")
        XCTAssertTrue(recorder.keys.contains("backbone.body.layer2.0.downsample.0"))
        // Shortcut sums ride on each block's last conv (8 BasicBlocks), top-down sums on 3 lateral convs.
        XCTAssertEqual(recorder.withResidual.count, 8 + 3)
        XCTAssertTrue(recorder.withResidual.contains("backbone.body.layer4.1.conv2"))
        XCTAssertTrue(recorder.withResidual.contains("backbone.fpn.inner_blocks.0.0"))
    }

    /// After the first frame of a size, the forward allocates nothing, and outputs do not depend on arena reuse.
    func testNoAllocationAfterFirstFrame() throws {
        let fx = try BackboneFixture("resnet18-fpn-v2")
        let backbone = try ResNetFPNBackbone(contentsOf: try fx.writeWeights())
        let x = try fx.tensor("fixture.odd_input")
        let ws = Workspace()
        ws.beginFrame()
        let first = backbone(x, workspace: ws).levels.map { $0.features.array }
        let allocations = ws.allocationCount
        for _ in 0..<3 {
            ws.beginFrame()
            let again = backbone(x, workspace: ws).levels.map { $0.features.array }
            XCTAssertEqual(again, first)
        }
        XCTAssertEqual(ws.allocationCount, allocations, "frames 2...4 allocated")
    }
}
