import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Whole detectors (ResNet-18 FPN, 5 classes, a 160x120 crop of a vtest.avi frame) against torchvision's
/// detections stored in `Tests/Fixtures/heads/*.safetensors` (written by `scripts/parity heads-fixtures`).
/// The fixtures carry every tensor except the generated ones (conv/linear weights), which `SyntheticWeights`
/// regenerates bit for bit (times the stored power-of-two scale).
final class DetectorParityTests: XCTestCase {
    /// The fixture's weights as a safetensors file in a temporary directory, plus the fixture itself.
    static func materialize(_ name: String) throws -> (weights: URL, fixture: SafeTensorsFile) {
        let url = TestPaths.fixtures.appendingPathComponent("heads/\(name).safetensors")
        let fixture = try SafeTensorsFile(url: url)
        let generated = try XCTUnwrap(fixture.metadata["fixture.generated"])
        let spec = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(generated.utf8)) as? [String: [String: Any]])
        var tensors: [String: Tensor] = [:]
        for key in fixture.keys where !key.hasPrefix("fixture.") { tensors[key] = try fixture.tensor(key) }
        for (key, s) in spec {
            let shape = try XCTUnwrap(s["shape"] as? [Int])
            let k = try XCTUnwrap(s["log2_scale"] as? Int)
            let t = SyntheticWeights.tensor(key: key, shape: shape)
            if k != 0 {
                let f = Float(sign: .plus, exponent: k, significand: 1)
                t.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] *= f } }
            }
            tensors[key] = t
        }
        let metadata = fixture.metadata.filter { !$0.key.hasPrefix("fixture.") }
        let out = TestPaths.temporaryDirectory("heads").appendingPathComponent("\(name).safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: out)
        return (out, fixture)
    }

    func runFixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (weights, fixture) = try Self.materialize(name)
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let detector = try DetectorLoader.load(contentsOf: weights)
        let img = try fixture.tensor("fixture.image")
        let image = RGBImage(width: img.shape[1], height: img.shape[0],
                             pixels: img.array.map { UInt8(clamping: Int($0.rounded())) })
        let state = DetectorState()
        let got = detector.detect(image, state: state)
        let boxes = try fixture.floats("fixture.boxes")
        let scores = try fixture.floats("fixture.scores")
        let labels = try fixture.floats("fixture.labels").map { Int($0) }
        let masks = try fixture.metadata["fixture.masks"].map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [[Int]])
        }
        XCTAssertGreaterThan(scores.count, 3, "\(name): fixture should have several detections", file: file, line: line)
        XCTAssertEqual(got.count, scores.count, "\(name): detection count", file: file, line: line)
        var used = Set<Int>()
        for i in 0..<scores.count {
            let ref = Box(x1: boxes[4 * i], y1: boxes[4 * i + 1], x2: boxes[4 * i + 2], y2: boxes[4 * i + 3])
            let j = got.indices.first { j in
                !used.contains(j) && got[j].classID == labels[i] && abs(got[j].score - scores[i]) <= 1e-3
                    && got[j].box.iou(ref) >= 0.99
            }
            guard let j else {
                XCTFail("\(name): torch detection \(i) (label \(labels[i]), score \(scores[i]), \(ref)) unmatched",
                        file: file, line: line)
                continue
            }
            used.insert(j)
            XCTAssertEqual(got[j].className, "class\(labels[i])", file: file, line: line)
            if let masks {
                let want = MaskRLE(height: image.height, width: image.width, counts: masks[i].map { UInt32($0) })
                let have = try XCTUnwrap(got[j].mask, "\(name): detection \(i) has no mask", file: file, line: line)
                XCTAssertGreaterThanOrEqual(Self.iou(want, have), 0.98, "\(name): mask \(i)", file: file, line: line)
            } else {
                XCTAssertNil(got[j].mask, file: file, line: line)
            }
        }
        // A second frame through the same state reuses every buffer and gives the same result.
        let allocations = state.workspace.allocationCount
        XCTAssertEqual(detector.detect(image, state: state), got, file: file, line: line)
        XCTAssertEqual(state.workspace.allocationCount, allocations, "\(name): second frame allocated",
                       file: file, line: line)
    }

    static func iou(_ a: MaskRLE, _ b: MaskRLE) -> Double {
        let x = a.rowMajor(), y = b.rowMajor()
        var inter = 0, union = 0
        for i in x.indices {
            if x[i] != 0 || y[i] != 0 { union += 1 }
            if x[i] != 0 && y[i] != 0 { inter += 1 }
        }
        return union == 0 ? 1 : Double(inter) / Double(union)
    }

    func testMaskRCNNv1MatchesTorchvision() throws { try runFixture("tiny-maskrcnn") }
    func testMaskRCNNv2MatchesTorchvision() throws { try runFixture("tiny-maskrcnn-v2") }
    func testRetinaNetV2MatchesTorchvision() throws { try runFixture("tiny-retinanet-v2") }
    func testFCOSMatchesTorchvision() throws { try runFixture("tiny-fcos") }
}
