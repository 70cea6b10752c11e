import FPNCore
import Foundation
import MediaIO
import Tensor
import TestSupport
import Vision
import XCTest

/// Weights files of the panoptic CLI tests, written once per test process (tens of MB each) into one scratch
/// directory that `ProcessCommandTests`' class tearDown removes.
enum PanopticModels {
    /// The tiny Panoptic FPN fixture (Tests/Fixtures/panoptic/tiny-panoptic.safetensors) as a weights file, with
    /// named thing classes and a merge threshold low enough for things to enter the panoptic map on the demo clip.
    static func panopticModel() throws -> String {
        try cached("tiny-panoptic", fixture: "panoptic/tiny-panoptic") { m in
            m["class_names"] = #"["__background__","circle","square","triangle","star"]"#
            m["panoptic_score_thresh"] = "0.2"
        }
    }

    /// The tiny Mask R-CNN fixture (no semantic head) as a weights file, written once per test process.
    static func plainModel() throws -> String { try cached("tiny-maskrcnn", fixture: "heads/tiny-maskrcnn") { _ in } }

    nonisolated(unsafe) static var scratch: URL?
    static let lock = NSLock()

    static func cached(_ name: String, fixture: String, edit: (inout [String: String]) -> Void) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let dir = scratch ?? TestPaths.temporaryDirectory("panoptic-models")
        scratch = dir
        let url = dir.appendingPathComponent(name + ".safetensors")
        if FileManager.default.fileExists(atPath: url.path) { return url.path }
        let f = try SafeTensorsFile(url: TestPaths.fixtures.appendingPathComponent(fixture + ".safetensors"))
        var (tensors, metadata) = try SyntheticWeights.fixtureWeights(f)
        edit(&metadata)
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        return url.path
    }

    /// Removes the scratch directory (the next use writes the files again).
    static func removeAll() {
        lock.lock()
        defer { lock.unlock() }
        if let scratch { try? FileManager.default.removeItem(at: scratch) }
        scratch = nil
    }
}

/// `fpnstream process --model PANOPTIC --panoptic DIR` (and `outputs.panoptic` in a pipeline): COCO panoptic PNGs
/// decoded back with FFmpeg agree with the JSONL panoptic segments and panoptic.json; bad uses are clear errors.
/// (Extends `ProcessCommandTests` for its binary, scratch directory and helpers.)
extension ProcessCommandTests {
    var demoClip: String { TestPaths.samples.appendingPathComponent("demo.mp4").path }

    /// Segment ids of a panoptic PNG decoded by FFmpeg: `R + 256 G + 65536 B`, row-major.
    func panopticIDs(png: String) throws -> (ids: [Int], width: Int, height: Int) {
        let decoder = try VideoDecoder(location: png)
        defer { decoder.close() }
        let frame = try XCTUnwrap(decoder.nextFrame(), "cannot decode \(png)")
        let p = frame.image.pixels
        return ((0..<(p.count / 3)).map { Int(p[3 * $0]) + 256 * Int(p[3 * $0 + 1]) + 65536 * Int(p[3 * $0 + 2]) },
                frame.image.width, frame.image.height)
    }

    func testPanopticPNGsMatchJSONLAndPanopticJSON() throws {
        let model = try PanopticModels.panopticModel()
        let out = path("pan/out"), jsonl = path("run.jsonl")   // missing parents are created
        let r = try fpnstream(["process", demoClip, "--model", model, "--max-frames", "3",
                                               "--panoptic", out, "--jsonl", jsonl, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOfFile: jsonl, encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "frame" }
        XCTAssertEqual(lines.count, 3)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/panoptic.json"))) as? [String: Any])
        let categories = try XCTUnwrap(json["categories"] as? [[String: Any]])
        XCTAssertEqual(categories.map { $0["name"] as? String },
                       ["circle", "square", "triangle", "star", "sky", "grass", "road"])
        XCTAssertEqual(categories.map { $0["isthing"] as? Int }, [1, 1, 1, 1, 0, 0, 0])
        let annotations = try XCTUnwrap(json["annotations"] as? [[String: Any]])
        XCTAssertEqual(annotations.map { $0["image_id"] as? Int }, [0, 1, 2])
        XCTAssertEqual((json["images"] as? [[String: Any]])?.count, 3)
        var things = 0, stuff = 0
        for (line, ann) in zip(lines, annotations) {
            let frame = try XCTUnwrap(line["frame"] as? Int)
            let file = try XCTUnwrap(ann["file_name"] as? String)
            XCTAssertEqual(file, String(format: "%06d.png", frame))
            let (ids, w, h) = try panopticIDs(png: out + "/" + file)
            XCTAssertEqual([w, h], [320, 240])
            let segments = try XCTUnwrap(line["panoptic"] as? [[String: Any]])
            let info = try XCTUnwrap(ann["segments_info"] as? [[String: Any]])
            XCTAssertEqual(info.map { $0["id"] as? Int }, segments.map { $0["id"] as? Int })
            XCTAssertEqual(info.map { $0["category_id"] as? Int }, segments.map { $0["category_id"] as? Int })
            XCTAssertEqual(info.map { $0["area"] as? Int }, segments.map { $0["area"] as? Int })
            // Every pixel of the PNG carries exactly the id whose JSONL mask covers it (0 elsewhere).
            var expected = [Int](repeating: 0, count: w * h)
            for s in segments {
                let m = try XCTUnwrap(s["mask"] as? [String: Any])
                let rle = try MaskRLE(cocoString: try XCTUnwrap(m["counts"] as? String), height: h, width: w)
                for (i, v) in rle.rowMajor().enumerated() where v != 0 { expected[i] = try XCTUnwrap(s["id"] as? Int) }
                if s["is_thing"] as? Bool == true { things += 1 } else { stuff += 1 }
            }
            XCTAssertEqual(ids, expected, "frame \(frame): PNG ids differ from the JSONL masks")
            for s in info {
                let id = try XCTUnwrap(s["id"] as? Int)
                XCTAssertEqual(ids.filter { $0 == id }.count, s["area"] as? Int, "segment \(id) area")
                let bbox = try XCTUnwrap(s["bbox"] as? [Int])
                let xs = ids.indices.filter { ids[$0] == id }.map { $0 % w }
                XCTAssertEqual(bbox[0], xs.min())
                XCTAssertEqual(bbox[2], xs.max()! - xs.min()! + 1)
            }
        }
        XCTAssertGreaterThan(things, 0, "the demo clip should give thing segments")
        XCTAssertGreaterThan(stuff, 0, "and stuff segments")
    }

    func testPipelineOutputsPanoptic() throws {
        let model = try PanopticModels.panopticModel()
        let yaml = path("p.yaml")
        try "model:\n  path: \(model)\noutputs:\n  panoptic: \(path("from-yaml"))\n"
            .write(toFile: yaml, atomically: true, encoding: .utf8)
        let r = try fpnstream(["process", demoClip, "--pipeline", yaml, "--max-frames", "2", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("from-yaml/000001.png")))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("from-yaml/panoptic.json")))
    }

    func testPanopticNeedsAPanopticModel() throws {
        var r = try fpnstream(["process", demoClip, "--panoptic", path("p"), "--max-frames", "1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("panoptic model"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("p")), "nothing created")
        // A detector without a semantic head (the tiny Mask R-CNN fixture).
        r = try fpnstream(["process", demoClip, "--model", try PanopticModels.plainModel(), "--panoptic", path("p"),
                                           "--max-frames", "1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("panoptic model") && r.stderr.contains("maskrcnn_resnet18_fpn"), r.stderr)
    }

    func testPanopticDirectoryThatIsAFile() throws {
        let model = try PanopticModels.panopticModel()
        let blocker = path("plainfile")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        var r = try fpnstream(["process", demoClip, "--model", model, "--panoptic", blocker,
                                               "--jsonl", path("o.jsonl"), "--max-frames", "1"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(blocker) && r.stderr.contains("not a directory"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.jsonl")), "empty JSONL left behind")
        r = try fpnstream(["process", demoClip, "--model", model, "--panoptic", blocker + "/sub",
                                           "--max-frames", "1"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(blocker + "/sub"), r.stderr)
    }

    /// SIGINT during a panoptic run: the PNGs written so far are all listed in a complete panoptic.json.
    func testSIGINTFinalizesPanopticJSON() throws {
        let model = try PanopticModels.panopticModel()
        let input = try makeClip("long.avi", seconds: 30)
        let out = path("pan")
        let (status, stderr) = try interruptedRun([input, "--model", model, "--panoptic", out], signal: SIGINT,
                                                  afterFrame: 8)
        XCTAssertEqual(status, 130, String(stderr.suffix(800)))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: out + "/panoptic.json"))) as? [String: Any])
        let annotations = try XCTUnwrap(json["annotations"] as? [[String: Any]])
        let pngs = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasSuffix(".png") }
        XCTAssertGreaterThanOrEqual(annotations.count, 8)
        XCTAssertLessThan(annotations.count, 300)
        XCTAssertEqual(Set(annotations.compactMap { $0["file_name"] as? String }), Set(pngs))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/panoptic.json.partial"))
    }
}
