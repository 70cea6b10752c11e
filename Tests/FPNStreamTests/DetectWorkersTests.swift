import FPNCore
import Foundation
import Tensor
import TemporalReuse
import TestSupport
import XCTest
@testable import FPNStream

/// Several frames in inference at once: outputs in input order, each frame's own result, every replica used,
/// errors naming the failing frame, and one frame at a time when the detector cannot be replicated.
final class DetectWorkersTests: XCTestCase {
    /// Which replica ran which frame, shared by a detector and its replicas.
    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var ran: [Int: Int] = [:]   // frame index -> replica id
        private(set) var widths: Set<Int> = []
        func record(frame: Int, replica: Int, width: Int) {
            lock.lock(); ran[frame] = replica; widths.insert(width); lock.unlock()
        }
    }

    /// Reports one detection whose score is the frame index; throws on `failAt`.
    struct Echo: FrameDetector {
        let log: Log
        var id = 0
        var failAt: Int?
        var canReplicate = true
        var name: String { "echo" }
        func detect(_ frame: Frame, into result: inout FrameResult) throws {
            if frame.info.index == failAt { throw CocoaError(.fileReadCorruptFile) }
            log.record(frame: frame.info.index, replica: id, width: Parallel.width)
            result.detections = [Detection(box: Box(x1: 0, y1: 0, x2: 1, y2: 1), score: Float(frame.info.index),
                                           classID: 1, className: "thing")]
        }
        func replica() -> (any FrameDetector)? {
            guard canReplicate else { return nil }
            var r = self
            r.id = Int.random(in: 1...1_000_000)
            return r
        }
    }

    private func frame(_ i: Int) -> Frame {
        Frame(info: FrameInfo(index: i, pts: Double(i), wallTime: 0, width: 8, height: 8, source: "t"),
              image: RGBImage(width: 8, height: 8))
    }

    private func runAll(_ stage: inout DetectStage, frames: Int) throws -> [AnalyzedFrame] {
        var out: [AnalyzedFrame] = []
        for i in 0..<frames { if let f = try stage.process(frame(i)) { out.append(f) } }
        return out + (try stage.close(.endOfStream))
    }

    func testOutputsComeInInputOrderEachWithItsOwnResult() throws {
        let log = Log()
        var stage = DetectStage(detector: Echo(log: log), workers: 3)
        XCTAssertEqual(stage.workers?.count, 3)
        XCTAssertTrue(stage.delaysOutputs)
        XCTAssertNil(try stage.process(frame(0)), "the first frames are held while later ones start")
        let rest = try (1..<10).compactMap { try stage.process(frame($0)) } + (try stage.close(.endOfStream))
        XCTAssertEqual(rest.map(\.itemIndex), Array(0..<10))
        XCTAssertEqual(rest.map { $0.result.detections.first?.score }, (0..<10).map { Float($0) })
        XCTAssertNotNil(rest[0].result.timingsMs["detect"])
        XCTAssertEqual(Set(log.ran.values).count, 3, "every replica ran frames: \(log.ran)")
        XCTAssertEqual(log.widths, [1], "each worker runs its frame on one core")
    }

    func testOneWorkerOrNoReplicaRunsOneFrameAtATimeOnAllCores() throws {
        let log = Log()
        var one = DetectStage(detector: Echo(log: log), workers: 1)
        XCTAssertNil(one.workers)
        XCTAssertFalse(one.delaysOutputs)
        XCTAssertEqual(try runAll(&one, frames: 4).map(\.itemIndex), [0, 1, 2, 3])
        var fixed = DetectStage(detector: Echo(log: log, canReplicate: false), workers: 4)
        XCTAssertNil(fixed.workers, "a detector without replicas cannot run frames side by side")
        XCTAssertEqual(try runAll(&fixed, frames: 3).map(\.itemIndex), [0, 1, 2])
        XCTAssertEqual(log.widths, [Parallel.width])
    }

    func testAFailingFrameIsReportedByItsOwnIndex() throws {
        var stage = DetectStage(detector: Echo(log: Log(), failAt: 4), workers: 2)
        var thrown: Error?
        var passed: [Int] = []
        for i in 0..<8 {
            do { if let f = try stage.process(frame(i)) { passed.append(f.itemIndex) } } catch { thrown = error; break }
        }
        XCTAssertEqual(passed, [0, 1, 2, 3], "every frame before the failing one is handed on")
        XCTAssertEqual((thrown as? FrameDetectError)?.frameIndex, 4)
        XCTAssertTrue("\(thrown!)".hasPrefix("frame 4: "), "\(thrown!)")
        XCTAssertEqual(try stage.close(.aborted).count, 0)
    }

    func testTemporalReuseAndKeyframesHaveNoReplica() throws {
        let log = Log()
        XCTAssertNil(try withTemporal(Echo(log: log), TemporalSettings(mode: .keyframe)).replica())
        XCTAssertNotNil(NoDetector().replica())
    }

    func testWidthIsPerThreadAndRestored() {
        let all = Parallel.width
        XCTAssertEqual(all, Parallel.cores)
        Parallel.withWidth(1) {
            XCTAssertEqual(Parallel.width, 1)
            var calls = 0
            Parallel.forEach(1000, cost: 1 << 30) { r in calls += 1; XCTAssertEqual(r, 0..<1000) }
            XCTAssertEqual(calls, 1, "width 1 runs a large loop inline in one piece")
            let seen = Log(), done = DispatchSemaphore(value: 0)
            Thread { seen.record(frame: 0, replica: 0, width: Parallel.width); done.signal() }.start()
            done.wait()
            XCTAssertEqual(seen.widths, [all], "another thread keeps its own width")
            Parallel.withWidth(64) { XCTAssertEqual(Parallel.width, Parallel.cores, "capped at the cores") }
            XCTAssertEqual(Parallel.width, 1)
        }
        XCTAssertEqual(Parallel.width, all)
    }

    /// The built binary, the demo model and the demo clip (a skip when the samples are missing).
    private func demoInputs() throws -> (binary: String, model: String, video: String)? {
        guard let binary = ExternalTools.builtProduct("fpnstream") else { XCTFail("fpnstream not built"); return nil }
        let root = TestPaths.root
        let model = root.appendingPathComponent("samples/models/demo.safetensors").path
        let video = root.appendingPathComponent("samples/demo.mp4").path
        guard FileManager.default.fileExists(atPath: model), FileManager.default.fileExists(atPath: video) else {
            throw XCTSkip("samples/models/demo.safetensors or samples/demo.mp4 missing")
        }
        return (binary, model, video)
    }

    /// The demo model gives the same JSONL (timings aside) with two workers as with one.
    func testTwoWorkersGiveTheSameDetectionsAsOne() throws {
        guard let (binary, model, video) = try demoInputs() else { return }
        let dir = TestPaths.temporaryDirectory("workers")
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines: [[String]] = []
        for w in ["1", "2"] {
            let out = dir.appendingPathComponent("w\(w).jsonl").path
            let r = try ExternalTools.run(binary, ["process", video, "--model", model, "--max-frames", "6",
                                                   "--detect-workers", w, "--jsonl", out, "--stats", "-q"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let all = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
            let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(all.last!.utf8)) as? [String: Any])
            XCTAssertEqual(summary["detect_workers"] as? Int, Int(w))
            let parts = try XCTUnwrap(summary["detect_parts"] as? [[String: Any]])
            XCTAssertEqual(parts.map { $0["name"] as? String }, ["transform", "backbone", "rpn", "roi_heads", "masks",
                                                                 "semantic", "panoptic"])
            XCTAssertEqual(parts.map { $0["count"] as? Int }, Array(repeating: 6, count: 7))
            XCTAssertTrue(r.stderr.contains(w == "1" ? "detect parts, ms per frame (one frame at a time on all cores):"
                                                     : "detect parts, ms per frame (2 frames at once, one core each):"),
                          r.stderr)
            lines.append(all
                .filter { $0.contains("\"type\":\"frame\"") }
                .map { $0.replacingOccurrences(of: #""wall_time":[0-9.e+-]+,"#, with: "", options: .regularExpression)
                          .replacingOccurrences(of: #","timings_ms":\{[^}]*\}"#, with: "", options: .regularExpression) })
        }
        XCTAssertEqual(lines[0].count, 6)
        XCTAssertTrue(lines[0].joined().contains("\"detections\":[{"), "the demo model finds shapes")
        XCTAssertEqual(lines[0], lines[1])
    }

    /// In delta mode each worker keeps its own temporal cache: on a still clip the first frame of each of two workers
    /// is dense and every later one reuses everything (one cache would reuse from frame 1 on), and the detections are
    /// the dense ones.
    func testDeltaWorkersKeepOneCacheEach() throws {
        guard let (binary, model, video) = try demoInputs() else { return }
        let dir = TestPaths.temporaryDirectory("delta-workers")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The demo clip's first frame, ten times, losslessly: every frame decodes to the same pixels.
        let still = dir.appendingPathComponent("still.mkv").path
        try ExternalTools.ffmpeg(["-i", video, "-vf", "trim=end_frame=1,loop=loop=-1:size=1,setpts=N/10/TB",
                                  "-frames:v", "10", "-c:v", "ffv1", still])
        func frames(_ args: [String]) throws -> [[String: Any]] {
            let out = dir.appendingPathComponent("out.jsonl").path
            let r = try ExternalTools.run(binary, ["process", still, "--model", model, "--jsonl", out, "-q"] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
                .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["type"] as? String == "frame" }
        }
        let dense = try frames(["--temporal", "off"])
        let one = try frames(["--temporal", "delta", "--detect-workers", "1"])
        let two = try frames(["--temporal", "delta", "--detect-workers", "2"])
        XCTAssertEqual(two.map { $0["frame"] as? Int }, Array(0..<10), "frames in input order")
        XCTAssertEqual(one.prefix(3).map { $0["recomputed"] as? Double }, [1, 0, 0], "one cache reuses from frame 1")
        XCTAssertEqual(two.prefix(4).map { $0["recomputed"] as? Double }, [1, 1, 0, 0],
                       "each of two caches starts dense, then reuses its own previous frame")
        XCTAssertEqual(two.suffix(6).compactMap { $0["recomputed"] as? Double }.max(), 0)
        func boxes(_ f: [[String: Any]]) -> [String] {
            f.map { ($0["detections"] as? [[String: Any]] ?? []).map { "\($0["class"] ?? "")\($0["box"] ?? "")" }
                .joined(separator: ";") }
        }
        XCTAssertFalse(boxes(dense)[0].isEmpty, "the demo model finds shapes on the frame")
        XCTAssertEqual(boxes(two), boxes(dense), "reused frames give the dense detections")
    }
}
