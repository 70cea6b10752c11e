import FPNCore
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// `fpnstream process --model` with a converted detector (the tiny Mask R-CNN fixture's weights) on real footage:
/// JSONL detections with class names and COCO RLE masks, COCO results, and bad model files as clear usage errors.
final class ModelDetectorTests: XCTestCase {
    var dir: URL!
    var binary: String!

    override func setUpWithError() throws {
        guard let b = ExternalTools.builtProduct("fpnstream") else {
            return XCTFail("fpnstream binary not built next to the tests: run `swift build --build-tests` first")
        }
        binary = b
        dir = TestPaths.temporaryDirectory("model")
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func weightsFile() throws -> String { try TinyModel.write(to: dir) }

    func testProcessWithModelWritesMasksAndCOCO() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        let jsonl = dir.appendingPathComponent("out.jsonl").path
        let coco = dir.appendingPathComponent("coco.json").path
        let r = try ExternalTools.run(binary, ["process", video.path, "--model", model, "--max-frames", "2",
                                               "--jsonl", jsonl, "--coco", coco, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try Data(contentsOf: URL(fileURLWithPath: jsonl)).split(separator: 0x0a).map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])
        }
        let frames = lines.filter { $0["type"] as? String == "frame" }
        XCTAssertEqual(frames.count, 2)
        var seen = 0
        for f in frames {
            for d in try XCTUnwrap(f["detections"] as? [[String: Any]]) {
                seen += 1
                let score = try XCTUnwrap(d["score"] as? Double)
                XCTAssertGreaterThanOrEqual(score, 0.3)
                let name = try XCTUnwrap(d["class"] as? String)
                XCTAssertTrue(["person", "bicycle", "car", "dog"].contains(name), name)
                let mask = try XCTUnwrap(d["mask"] as? [String: Any])
                XCTAssertEqual(mask["size"] as? [Int], [576, 768])
                let rle = try MaskRLE(cocoString: try XCTUnwrap(mask["counts"] as? String), height: 576, width: 768)
                XCTAssertGreaterThan(rle.area, 0)
            }
        }
        XCTAssertGreaterThan(seen, 0, "the fixture model should find something on vtest.avi")
        let results = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: coco)))
                                    as? [[String: Any]])
        XCTAssertEqual(results.count, seen)
        for o in results {
            XCTAssertEqual((o["bbox"] as? [Double])?.count, 4)
            let seg = try XCTUnwrap(o["segmentation"] as? [String: Any])
            XCTAssertNotNil(seg["counts"] as? String)
            XCTAssertTrue((1...4).contains(try XCTUnwrap(o["category_id"] as? Int)))
        }
    }

    /// `--mot` turns ByteTrack on: MOT lines (1-based frames) carry the same ids as the JSONL's track_id.
    func testProcessWithMOTTracksDetections() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        let jsonl = dir.appendingPathComponent("t.jsonl").path
        let mot = dir.appendingPathComponent("t.txt").path
        let r = try ExternalTools.run(binary, ["process", video.path, "--model", model, "--max-frames", "3",
                                               "--jsonl", jsonl, "--mot", mot, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        var jsonIDs = Set<String>()
        for line in try Data(contentsOf: URL(fileURLWithPath: jsonl)).split(separator: 0x0a) {
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            guard o["type"] as? String == "frame", let frame = o["frame"] as? Int else { continue }
            for d in try XCTUnwrap(o["detections"] as? [[String: Any]]) {
                if let id = d["track_id"] as? Int { jsonIDs.insert("\(frame + 1),\(id)") }
            }
        }
        let rows = try String(contentsOfFile: mot, encoding: .utf8).split(separator: "\n").map {
            $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        }
        XCTAssertFalse(rows.isEmpty, "the fixture model's detections should be tracked")
        for row in rows {
            XCTAssertEqual(row.count, 10, row.joined(separator: ","))
            XCTAssertTrue((1...3).contains(Int(row[0]) ?? 0), "1-based frame: \(row[0])")
            XCTAssertGreaterThan(Int(row[1]) ?? 0, 0)
            XCTAssertEqual(Array(row[7...]), ["-1", "-1", "-1"])
        }
        XCTAssertEqual(Set(rows.map { "\($0[0]),\($0[1])" }), jsonIDs)
    }

    func testBadModelFilesAreUsageErrorsNamingTheFile() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let missing = dir.appendingPathComponent("missing.safetensors").path
        var r = try ExternalTools.run(binary, ["process", video.path, "--model", missing, "--max-frames", "1", "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("missing.safetensors"), r.stderr)
        // Truncated.
        let data = try Data(contentsOf: TestPaths.fixtures.appendingPathComponent("heads/tiny-maskrcnn.safetensors"))
        let cut = dir.appendingPathComponent("cut.safetensors")
        try data.prefix(data.count / 3).write(to: cut)
        r = try ExternalTools.run(binary, ["process", video.path, "--model", cut.path, "--max-frames", "1", "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("cut.safetensors"), r.stderr)
        // Through a pipeline file: the error names the pipeline and model.path.
        let yaml = dir.appendingPathComponent("p.yaml")
        try "model: \(cut.path)\n".write(to: yaml, atomically: true, encoding: .utf8)
        r = try ExternalTools.run(binary, ["process", video.path, "--pipeline", yaml.path, "--max-frames", "1", "-q"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("model.path") && r.stderr.contains("cut.safetensors"), r.stderr)
    }
}
