import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Bad weights give one clear error naming the file and the problem.
final class DetectorLoadTests: XCTestCase {
    var dir: URL!

    override func setUp() { dir = TestPaths.temporaryDirectory("detector-load") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// The tiny FCOS fixture's weights and metadata (valid).
    func validWeights() throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        try DetectorParityTests.weights("tiny-fcos")
    }

    func write(_ tensors: [String: Tensor], _ metadata: [String: String], _ name: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try DetectorParityTests.writeF32(tensors, metadata: metadata, to: url)
        return url
    }

    /// Only the class logits of the valid weights: enough for the errors found before any tensor is read.
    func smallWeights() throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (t, m) = try validWeights()
        let keys = ["head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias"]
        return (t.filter { keys.contains($0.key) }, m)
    }

    func loadError(_ url: URL) -> Error? {
        do { _ = try DetectorLoader.load(contentsOf: url); return nil } catch { return error }
    }

    func testValidWeightsLoadAndNameTheArchitecture() throws {
        let (t, m) = try validWeights()
        let d = try DetectorLoader.load(contentsOf: try write(t, m, "ok.safetensors"))
        XCTAssertEqual(d.config.architecture, "fcos_resnet18_fpn")
        XCTAssertEqual(d.config.family, .fcos)
        XCTAssertEqual(d.config.numClasses, 5)
        XCTAssertEqual(d.config.thresholds, DetectionThresholds(score: 0.2, nms: 0.6, maxDetections: 12))
        XCTAssertEqual(d.config.backbone.bnEps, 1e-5)
    }

    func testMissingFile() {
        let url = dir.appendingPathComponent("nope.safetensors")
        let e = loadError(url)
        XCTAssertTrue(e is SafeTensorsError, "\(String(describing: e))")
        XCTAssertTrue("\(e!)".contains("nope.safetensors"))
    }

    func testTruncatedFile() throws {
        let (t, m) = try smallWeights()
        let url = try write(t, m, "cut.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count / 2).write(to: url)
        let e = loadError(url)
        let st = try XCTUnwrap(e as? SafeTensorsError, "\(String(describing: e))")
        XCTAssertTrue(st.description.contains("cut.safetensors"))
        // Cut inside the header too.
        try data.prefix(100).write(to: url)
        XCTAssertTrue(loadError(url) is SafeTensorsError)
    }

    func testWrongDType() throws {
        let (t, m) = try smallWeights()
        let url = try write(t, m, "dtype.safetensors")
        var data = try Data(contentsOf: url)
        // Re-label one tensor's F32 as I32 (same size): a header a converter bug could produce.
        let key = "head.classification_head.cls_logits.bias"
        let header = String(decoding: data[8..<(8 + Int(data.withUnsafeBytes { $0.load(as: UInt64.self) }))],
                            as: UTF8.self)
        let k = try XCTUnwrap(header.range(of: "\"\(key)\""))
        let d = try XCTUnwrap(header.range(of: "\"F32\"", range: k.upperBound..<header.endIndex))
        let offset = 8 + header.utf8.distance(from: header.startIndex, to: d.lowerBound) + 1
        data[offset] = UInt8(ascii: "I")
        try data.write(to: url)
        let e = loadError(url)
        let st = try XCTUnwrap(e as? SafeTensorsError, "\(String(describing: e))")
        XCTAssertEqual(st.reason, .notFloat(key: key, dtype: "I32"))
        XCTAssertTrue(st.description.contains(key) && st.description.contains("dtype.safetensors"))
    }

    func testMissingAndUnexpectedKeys() throws {
        var (t, m) = try validWeights()
        t["head.regression_head.bbox_ctrness.bias"] = nil
        t["head.regression_head.extra.weight"] = Tensor(shape: [1, 1])
        let e = loadError(try write(t, m, "keys.safetensors"))
        let w = try XCTUnwrap(e as? WeightMismatchError, "\(String(describing: e))")
        XCTAssertEqual(w.missing, ["head.regression_head.bbox_ctrness.bias"])
        XCTAssertEqual(w.unexpected, ["head.regression_head.extra.weight"])
        XCTAssertTrue(w.description.contains("keys.safetensors"))
        // A RetinaNet name on FCOS weights: the class logits are not 9 x classes.
        m["architecture"] = "retinanet_resnet18_fpn"
        let e2 = loadError(try write(try smallWeights().tensors, m, "arch.safetensors"))
        XCTAssertTrue(e2 is DetectorLoadError, "\(String(describing: e2))")
    }

    func testUnknownArchitecture() throws {
        var (t, m) = try smallWeights()
        m["architecture"] = "fcos_vgg16_fpn"
        let e = loadError(try write(t, m, "unknown.safetensors"))
        let ml = try XCTUnwrap(e as? ModelLoadError, "\(String(describing: e))")
        guard case .unknownArchitecture(let name, let known) = ml.reason else { return XCTFail("\(ml)") }
        XCTAssertEqual(name, "fcos_vgg16_fpn")
        XCTAssertTrue(known.contains("maskrcnn_resnet50_fpn_v2"))
        XCTAssertFalse(known.contains("fcos_resnet50_fpn_v2"))
        m["architecture"] = nil
        t["x"] = nil
        let e2 = loadError(try write(t, m, "noarch.safetensors"))
        XCTAssertEqual((e2 as? ModelLoadError)?.reason, .missingMetadata("architecture"))
    }

    func testClassCountMismatch() throws {
        var (t, m) = try smallWeights()
        // Names for 4 classes, weights predict 5.
        m["num_classes"] = nil
        m["class_names"] = "[\"__background__\", \"a\", \"b\", \"c\"]"
        let e = loadError(try write(t, m, "classes.safetensors"))
        let d = try XCTUnwrap(e as? DetectorLoadError, "\(String(describing: e))")
        XCTAssertTrue(d.description.contains("4 classes") && d.description.contains("predicts 5"), d.description)
        // num_classes disagreeing with the names.
        m["num_classes"] = "5"
        let e2 = loadError(try write(t, m, "classes2.safetensors"))
        XCTAssertTrue("\(e2!)".contains("lists 4 names but 'num_classes' is 5"), "\(e2!)")
        // Unparsable class list and threshold.
        m["num_classes"] = nil
        m["class_names"] = "person,car"
        XCTAssertEqual((loadError(try write(t, m, "c3.safetensors")) as? ModelLoadError)?.reason,
                       .badMetadata(key: "class_names", value: "person,car"))
        m["class_names"] = nil
        m["score_thresh"] = "high"
        XCTAssertEqual((loadError(try write(t, m, "c4.safetensors")) as? ModelLoadError)?.reason,
                       .badMetadata(key: "score_thresh", value: "high"))
        _ = t
    }

    func testArchitectureNames() {
        XCTAssertEqual(DetectorConfig.parse(architecture: "maskrcnn_resnet50_fpn_v2")?.0, .maskRCNN)
        XCTAssertEqual(DetectorConfig.parse(architecture: "retinanet_resnet101_fpn")?.1, .resnet101)
        XCTAssertNil(DetectorConfig.parse(architecture: "fcos_resnet50_fpn_v2"))
        XCTAssertNil(DetectorConfig.parse(architecture: "maskrcnn_resnet50"))
        XCTAssertNil(DetectorConfig.parse(architecture: "resnet50-fpn"))
        let c = DetectorConfig(architecture: "retinanet_resnet50_fpn_v2")!
        XCTAssertEqual(c.backbone.extraBlock, .p6p7(from: .c5))
        XCTAssertEqual(c.backbone.bnEps, 1e-5)
        XCTAssertEqual(DetectorConfig(architecture: "maskrcnn_resnet50_fpn")!.backbone.bnEps, 0)
        XCTAssertEqual(c.thresholds.maxDetections, 300)
    }
}
