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
    /// The fixture's full weights (stored tensors plus regenerated ones) and metadata, built once per process.
    static func weights(_ name: String) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        lock.lock()
        defer { lock.unlock() }
        if let w = cache[name] { return w }
        let fixture = try SafeTensorsFile(url: fixtureURL(name))
        let w = try SyntheticWeights.fixtureWeights(fixture)
        cache[name] = w
        return w
    }

    nonisolated(unsafe) static var cache: [String: (tensors: [String: Tensor], metadata: [String: String])] = [:]
    static let lock = NSLock()

    /// `Tests/Fixtures/heads/NAME.safetensors`, or `Tests/Fixtures/NAME.safetensors` when `name` has a folder.
    static func fixtureURL(_ name: String) -> URL {
        TestPaths.fixtures.appendingPathComponent((name.contains("/") ? name : "heads/\(name)") + ".safetensors")
    }

    /// The fixture's weights as a safetensors file in a temporary directory, plus the fixture itself.
    static func materialize(_ name: String) throws -> (weights: URL, fixture: SafeTensorsFile) {
        let fixture = try SafeTensorsFile(url: fixtureURL(name))
        let (tensors, metadata) = try weights(name)
        let out = TestPaths.temporaryDirectory("heads").appendingPathComponent(
            "\(fixture.url.deletingPathExtension().lastPathComponent).safetensors")
        try writeF32(tensors, metadata: metadata, to: out)
        return (out, fixture)
    }

    /// A safetensors file of F32 tensors, written with bulk copies (tests write tens of MB per fixture).
    static func writeF32(_ tensors: [String: Tensor], metadata: [String: String], to url: URL) throws {
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        let keys = tensors.keys.sorted()
        for k in keys {
            let bytes = tensors[k]!.count * 4
            header[k] = ["dtype": "F32", "shape": tensors[k]!.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for k in keys { tensors[k]!.withUnsafeBufferPointer { out.append(UnsafeBufferPointer(start: $0.baseAddress, count: $0.count)) } }
        try out.write(to: url)
    }

    func runFixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (weights, fixture) = try Self.materialize(name)
        defer { try? FileManager.default.removeItem(at: weights.deletingLastPathComponent()) }
        let detector = try DetectorLoader.load(contentsOf: weights)
        let image = try Self.image(fixture)
        let state = DetectorState()
        let got = detector.detect(image, state: state)
        try Self.assertDetections(got, fixture: fixture, image: image, name, file: file, line: line)
        // A second frame through the same state reuses every buffer and gives the same result.
        let allocations = state.workspace.allocationCount
        XCTAssertEqual(detector.detect(image, state: state), got, file: file, line: line)
        XCTAssertEqual(state.workspace.allocationCount, allocations, "\(name): second frame allocated",
                       file: file, line: line)
    }

    /// The fixture's RGB image (`fixture.image`, HxWx3 0...255).
    static func image(_ fixture: SafeTensorsFile) throws -> RGBImage {
        let img = try fixture.tensor("fixture.image")
        return RGBImage(width: img.shape[1], height: img.shape[0],
                        pixels: img.array.map { UInt8(clamping: Int($0.rounded())) })
    }

    /// `got` matches torch's detections stored in the fixture one to one: same label, score within 1e-3, box IoU
    /// >= 0.99, mask IoU >= 0.98 (when the fixture has masks).
    static func assertDetections(_ got: [Detection], fixture: SafeTensorsFile, image: RGBImage, _ name: String,
                                 file: StaticString = #filePath, line: UInt = #line) throws {
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
