import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Strict weight loading and architecture selection: bad weights give one clear error naming the file and listing
/// every problem.
final class BackboneLoadingTests: XCTestCase {
    override class func tearDown() { BackboneFixture.cleanUp() }

    func testMissingUnexpectedAndMisshapedKeysAreAllListed() throws {
        let fx = try BackboneFixture("resnet18-fpn")
        let url = try fx.writeWeights(
            drop: ["backbone.body.layer3.1.bn2.running_var", "backbone.fpn.layer_blocks.2.0.bias"],
            extra: ["backbone.body.layer1.0.conv1.weight": Tensor(shape: [64, 64, 1, 1]),  // is 3x3 in BasicBlock
                    "backbone.fpn.extra_blocks.p6.weight": Tensor(shape: [256, 256, 3, 3])])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: url)) { error in
            guard let e = error as? WeightMismatchError else { return XCTFail("unexpected error \(error)") }
            XCTAssertEqual(e.missing, ["backbone.body.layer3.1.bn2.running_var", "backbone.fpn.layer_blocks.2.0.bias"])
            XCTAssertEqual(e.unexpected, ["backbone.fpn.extra_blocks.p6.weight"])
            XCTAssertEqual(e.misshaped.map(\.key), ["backbone.body.layer1.0.conv1.weight"])
            XCTAssertEqual(e.misshaped.first?.expected, [64, 64, 3, 3])
            XCTAssertTrue("\(e)".contains(url.path), "error must name the file: \(e)")
        }
    }

    /// A tiny weights file with `metadata`: metadata errors come before any tensor is read.
    private func metadataOnly(_ metadata: [String: String]) throws -> URL {
        let url = TestPaths.temporaryDirectory("meta").appendingPathComponent("w.safetensors")
        try SafeTensorsWriter.write(["backbone.body.conv1.weight": Tensor(shape: [64, 3, 7, 7])], metadata: metadata, to: url)
        return url
    }

    func testArchitectureMustBeKnownAndPresent() throws {
        let fx = try BackboneFixture("resnet18-fpn")
        let unknown = try metadataOnly(["architecture": "resnet19-fpn"])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: unknown)) { error in
            guard let e = error as? ModelLoadError, case .unknownArchitecture("resnet19-fpn", let known) = e.reason else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertTrue(known.contains("resnet50-fpn") && known.contains("maskrcnn_resnet50_fpn"))
            XCTAssertTrue(e.description.contains(unknown.path))
        }
        // A v1 file declared as v2 fails on keys (the FPN BN keys are missing, the biases unexpected).
        let wrongVariant = try fx.writeWeights(metadata: ["architecture": "resnet18-fpn-v2", "fpn_norm": "batchnorm"])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: wrongVariant)) { error in
            guard let e = error as? WeightMismatchError else { return XCTFail("unexpected error \(error)") }
            XCTAssertTrue(e.missing.contains("backbone.fpn.inner_blocks.0.1.running_var"))
            XCTAssertTrue(e.unexpected.contains("backbone.fpn.inner_blocks.0.0.bias"))
        }
        let badEps = try metadataOnly(["architecture": "resnet18-fpn", "bn_eps": "tiny"])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: badEps)) { error in
            XCTAssertEqual((error as? ModelLoadError)?.reason, .badMetadata(key: "bn_eps", value: "tiny"))
        }
        // Descriptive fields must agree with the architecture.
        let contradicting = try metadataOnly(["architecture": "resnet18-fpn", "extra_blocks": "p6p7_from_p5"])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: contradicting)) { error in
            XCTAssertEqual((error as? ModelLoadError)?.reason, .badMetadata(key: "extra_blocks", value: "p6p7_from_p5"))
        }
        let url = try metadataOnly([:])
        XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: url)) { error in
            XCTAssertEqual((error as? ModelLoadError)?.reason, .missingMetadata("architecture"))
        }
    }

    func testCorruptOrMissingFilesFailWithTheirName() throws {
        let dir = TestPaths.temporaryDirectory("corrupt")
        defer { try? FileManager.default.removeItem(at: dir) }
        let truncated = dir.appendingPathComponent("truncated.safetensors")
        let fx = try BackboneFixture("resnet18-fpn")
        let full = try Data(contentsOf: try fx.writeWeights())
        try full.prefix(full.count / 2).write(to: truncated)
        let missing = dir.appendingPathComponent("absent.safetensors")
        for url in [truncated, missing] {
            XCTAssertThrowsError(try ResNetFPNBackbone(contentsOf: url)) { error in
                XCTAssertTrue(error is SafeTensorsError, "\(error)")
                XCTAssertTrue("\(error)".contains(url.lastPathComponent), "\(error)")
            }
        }
    }

    func testArchitectureNamesAndShapeSpecs() throws {
        let m = try XCTUnwrap(BackboneConfig(architecture: "maskrcnn_resnet50_fpn"))
        XCTAssertEqual(m, BackboneConfig(architecture: "resnet50-fpn"))
        XCTAssertEqual(m.bnEps, 0)
        XCTAssertEqual(m.outputShapes.map(\.name), ["p2", "p3", "p4", "p5", "p6"])
        XCTAssertEqual(m.outputShapes.map(\.shape.stride), [4, 8, 16, 32, 64])
        XCTAssertTrue(m.outputShapes.allSatisfy { $0.shape.channels == 256 })

        let r2 = try XCTUnwrap(BackboneConfig(architecture: "retinanet_resnet50_fpn_v2"))
        XCTAssertEqual(r2.returnedLayers, [2, 3, 4])
        XCTAssertEqual(r2.extraBlock, .p6p7(from: .c5))
        XCTAssertEqual(r2.bnEps, 1e-5)
        XCTAssertEqual(r2.outputShapes.map(\.name), ["p3", "p4", "p5", "p6", "p7"])
        XCTAssertEqual(r2.outputShapes.map(\.shape.stride), [8, 16, 32, 64, 128])
        XCTAssertEqual(BackboneConfig(architecture: "fcos_resnet50_fpn")?.extraBlock, .p6p7(from: .p5))
        XCTAssertEqual(BackboneConfig(architecture: "fcos_resnet50_fpn")?.bnEps, 1e-5)
        XCTAssertEqual(BackboneConfig(architecture: "maskrcnn_resnet50_fpn_v2")?.fpnNorm, .batchNorm)
        XCTAssertEqual(BackboneConfig(architecture: "resnet101-fpn")?.depth.blocks, [3, 4, 23, 3])
        // Detector names at other depths, as scripts/convert-torchvision writes them.
        XCTAssertEqual(BackboneConfig(architecture: "retinanet_resnet18_fpn_v2"),
                       BackboneConfig(architecture: "resnet18-p6p7-c5"))
        XCTAssertEqual(BackboneConfig(architecture: "maskrcnn_resnet101_fpn"), BackboneConfig(architecture: "resnet101-fpn"))
        XCTAssertEqual(BackboneConfig(architecture: "resnet152-fpn")?.depth.blocks, [3, 8, 36, 3])
        // MobileNetV3-Large: torchvision's stages 4 and 5 (features 13 and 16) are both at stride 32.
        let mb = try XCTUnwrap(BackboneConfig(architecture: "fasterrcnn_mobilenet_v3_large_320_fpn"))
        XCTAssertEqual(mb, BackboneConfig(architecture: "mobilenet-v3-large-fpn"))
        XCTAssertEqual(mb.body, .mobileNetV3Large)
        XCTAssertEqual(mb.returnedLayers, [4, 5])
        XCTAssertEqual(mb.returnedChannels, [160, 960])
        XCTAssertEqual(mb.bnEps, 1e-5)
        XCTAssertEqual(mb.outputShapes.map(\.name), ["p5a", "p5b", "p6"])
        XCTAssertEqual(mb.outputShapes.map(\.shape.stride), [32, 32, 64])
        XCTAssertEqual(mb.describingMetadata["backbone"], "mobilenet_v3_large")
        XCTAssertEqual(BackboneConfig.mobileNetV3Large(returnedLayers: [2, 3, 4]).outputShapes.map(\.name),
                       ["p3", "p4", "p5", "p6"])
        for bad in ["mobilenet-v3-small-fpn", "fasterrcnn_mobilenet_v3_large_fpn_v2", "maskrcnn_mobilenet_v3_large_fpn"] {
            XCTAssertNil(BackboneConfig(architecture: bad), bad)
        }
        for bad in ["resnet50", "resnet50-fpn-v3", "resnet-fpn", "resnet200-fpn", "vgg16-fpn", "", "fcos_resnet50_fpn_v2",
                    "keypointrcnn_resnet50_fpn_v2", "maskrcnn_resnet50", "maskrcnn_resnet50_fpn_v3", "ssd_resnet50_fpn"] {
            XCTAssertNil(BackboneConfig(architecture: bad), bad)
        }
    }

    /// Key names match torchvision's state_dict (committed key lists in Tests/Fixtures/torchvision-keys,
    /// torchvision 0.29; its README.md says how to regenerate them).
    func testExpectedKeysMatchTorchvisionStateDicts() throws {
        let reference = TestPaths.fixtures.appendingPathComponent("torchvision-keys")
        for (file, arch) in [("maskrcnn_v1", "resnet50-fpn"), ("maskrcnn_v2", "resnet50-fpn-v2"),
                             ("retinanet_v1", "resnet50-p6p7"), ("retinanet_v2", "resnet50-p6p7-c5"),
                             ("fcos", "fcos_resnet50_fpn"),
                             ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_mobilenet_v3_large_fpn")] {
            let text = try String(contentsOf: reference.appendingPathComponent(file + ".txt"), encoding: .utf8)
            var torch: [String: [Int]] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("backbone.") && !line.contains("num_batches_tracked") {
                let parts = line.split(separator: "\t")
                torch[String(parts[0])] = parts[1].split(whereSeparator: { "(), ".contains($0) }).map { Int($0)! }
            }
            let config = try XCTUnwrap(BackboneConfig(architecture: arch))
            let ours = try SyntheticWeights.expectedKeys(
                config, scratch: TestPaths.temporaryDirectory("keys").appendingPathComponent("e.safetensors"))
            XCTAssertEqual(ours.count, torch.count, file)
            XCTAssertEqual(ours, torch, file)
        }
    }
}
