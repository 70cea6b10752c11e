import FPNCore
import FPNStream
import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// Temporal reuse through the built binary: `process --temporal`, the pipeline `temporal:` section, `bench temporal
/// --model`, and `calibrate` (tiny Mask R-CNN fixture weights, real footage and generated clips).
final class TemporalCommandTests: XCTestCase {
    var dir: URL!
    var binary: String!

    override func setUpWithError() throws {
        guard let b = ExternalTools.builtProduct("fpnstream") else {
            return XCTFail("fpnstream binary not built next to the tests: run `swift build --build-tests` first")
        }
        binary = b
        dir = TestPaths.temporaryDirectory("temporal")
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func weightsFile() throws -> String { try TinyModel.write(to: dir) }

    /// 8 identical frames (SMPTE bars, lossless FFV1), 160x120.
    func stillClip() throws -> String {
        let p = path("still.mkv")
        try ExternalTools.ffmpeg(["-f", "lavfi", "-i", "smptebars=s=160x120:r=8:d=1", "-c:v", "ffv1", p])
        return p
    }

    func lines(_ path: String) throws -> [[String: Any]] {
        try Data(contentsOf: URL(fileURLWithPath: path)).split(separator: 0x0a).map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])
        }
    }

    func run(_ args: [String]) throws -> ToolResult { try ExternalTools.run(binary, args) }

    /// off vs delta on vtest.avi: off frame lines carry no fraction, delta lines do (frame 0 dense = 1, later < 1 at
    /// threshold 0.3 on this static camera, one worker and so one cache), the summary line carries their mean, and
    /// the final stderr line prints fps and the mean. Delta lines count the RoI regions per head (none reused on the
    /// dense first frame), which the summary sums.
    func testProcessOffVersusDeltaOnRealFootage() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        for mode in ["off", "delta"] {
            let out = path("\(mode).jsonl")
            let r = try run(["process", video.path, "--model", model, "--max-frames", "4", "--jsonl", out,
                             "--temporal", mode]
                            + (mode == "delta" ? ["--temporal-threshold", "0.3", "--detect-workers", "1"] : []))
            XCTAssertEqual(r.status, 0, r.stderr)
            let all = try lines(out)
            let frames = all.filter { $0["type"] as? String == "frame" }
            let summary = try XCTUnwrap(all.last)
            XCTAssertEqual(summary["type"] as? String, "summary")
            XCTAssertEqual(frames.count, 4)
            XCTAssertTrue(frames.contains { !(($0["detections"] as? [Any])?.isEmpty ?? true) }, "\(mode): detections")
            let last = try XCTUnwrap(r.stderr.split(separator: "\n").last.map(String.init))
            XCTAssertTrue(last.contains(" fps)"), last)
            if mode == "off" {
                XCTAssertTrue(frames.allSatisfy { $0["recomputed"] == nil && $0["region_reuse"] == nil })
                XCTAssertNil(summary["recomputed_mean"])
                XCTAssertNil(summary["region_reuse"])
                XCTAssertFalse(last.contains(" temporal "), last)
            } else {
                let f = try frames.map { try XCTUnwrap($0["recomputed"] as? Double) }
                XCTAssertEqual(f[0], 1, "the first frame is dense")
                for v in f.dropFirst() { XCTAssertTrue(v > 0 && v < 1, "\(f)") }
                let mean = try XCTUnwrap(summary["recomputed_mean"] as? Double)
                XCTAssertEqual(mean, f.reduce(0, +) / 4, accuracy: 1e-3)
                XCTAssertEqual(summary["temporal"] as? String, "delta")
                XCTAssertTrue(last.contains("temporal delta (recomputed "), last)
                // Per head: {"reused": R, "total": N}; the box head runs on every frame's proposals.
                var sums: [String: (Int, Int)] = [:]
                for (i, frame) in frames.enumerated() {
                    let heads = try XCTUnwrap(frame["region_reuse"] as? [String: [String: Int]], "frame \(i)")
                    XCTAssertGreaterThan(heads["box"]?["total"] ?? 0, 0, "frame \(i): \(heads)")
                    for (head, c) in heads {
                        let reused = try XCTUnwrap(c["reused"]), total = try XCTUnwrap(c["total"])
                        XCTAssertTrue((0...total).contains(reused), "frame \(i) \(head): \(c)")
                        if i == 0 { XCTAssertEqual(reused, 0, "the dense first frame reuses nothing") }
                        sums[head, default: (0, 0)].0 += reused; sums[head, default: (0, 0)].1 += total
                    }
                }
                let tally = try XCTUnwrap(summary["region_reuse"] as? [String: [String: Any]])
                XCTAssertEqual(Set(tally.keys), Set(sums.keys))
                for (head, (reused, total)) in sums {
                    XCTAssertEqual(tally[head]?["reused"] as? Int, reused, head)
                    XCTAssertEqual(tally[head]?["total"] as? Int, total, head)
                    XCTAssertEqual(try XCTUnwrap(tally[head]?["fraction"] as? Double), Double(reused) / Double(total),
                                   accuracy: 1e-4)
                }
                XCTAssertTrue(last.contains(", RoI regions reused "), last)
            }
        }
    }

    /// Identical frames: after the dense first frame nothing is recomputed (one worker: one cache); keyframe mode
    /// recomputes on schedule.
    func testIdenticalFramesRecomputeNothingAndKeyframeSchedule() throws {
        let clip = try stillClip()
        let model = try weightsFile()
        let out = path("still.jsonl")
        var r = try run(["process", clip, "--model", model, "--jsonl", out, "--temporal", "delta", "--detect-workers", "1",
                         "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frameLines = try lines(out).filter { $0["type"] as? String == "frame" }
        var f = frameLines.map { $0["recomputed"] as? Double ?? -1 }
        XCTAssertEqual(f.count, 8)
        // Frame 6: the accuracy guard's first check (a quarter of the refresh interval), a dense pass.
        XCTAssertEqual(f, [1, 0, 0, 0, 0, 0, 1, 0])
        let check = try XCTUnwrap(frameLines[6]["temporal_guard"] as? [String: Any])
        XCTAssertEqual(check["action"] as? String, "hold")
        XCTAssertEqual(check["pyramid_error"] as? Double, 0)
        XCTAssertEqual(check["probe_recomputed"] as? Double, 0)
        // Nothing reached the pyramid on the delta frames (the guard's delta probe of frame 6 too, but its dense
        // pass ran the heads): each repeats the last result.
        XCTAssertEqual(frameLines.map { $0["repeated"] as? Bool ?? false }, [false, true, true, true, true, true, false, true])
        // Repeated frames ran no RoI head: no region counts.
        XCTAssertEqual(frameLines.map { $0["region_reuse"] != nil }, [true, false, false, false, false, false, true, false])
        let summary = try XCTUnwrap(try lines(out).last)
        XCTAssertEqual(summary["repeated_frames"] as? Int, 6)

        // The pipeline section, with the command line overriding its interval.
        let yaml = path("kf.yaml")
        try "model: {path: '\(model)'}\ntemporal: {mode: keyframe, keyframe_interval: 5}\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        r = try run(["process", clip, "--pipeline", yaml, "--jsonl", out, "--temporal-keyframe-interval", "3", "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let all = try lines(out)
        f = all.filter { $0["type"] as? String == "frame" }.map { $0["recomputed"] as? Double ?? -1 }
        XCTAssertEqual(f, [1, 0, 0, 1, 0, 0, 1, 0])
        let dets = all.filter { $0["type"] as? String == "frame" }.map { ($0["detections"] as? [[String: Any]])?.count ?? -1 }
        XCTAssertEqual(dets[1], dets[0], "frames between keyframes repeat the keyframe's detections")
        XCTAssertEqual(try XCTUnwrap(all.last?["recomputed_mean"] as? Double), 3.0 / 8.0, accuracy: 1e-4)
    }

    /// CenterFace (ONNX) through `pipelines/faces.yaml` with `--temporal delta`: the session's convs go through the
    /// stream's cache, so identical frames after the first recompute nothing; per-layer thresholds are rejected.
    func testCenterFaceDelta() throws {
        let onnx = TestPaths.samples.appendingPathComponent("onnx/centerface.onnx").path
        guard FileManager.default.fileExists(atPath: onnx) else { throw XCTSkip("centerface.onnx missing: run scripts/fetch-models") }
        let clip = try stillClip()
        let yaml = path("faces.yaml")
        try "model: {path: '\(onnx)', kind: onnx-centerface}\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let out = path("faces.jsonl")
        var r = try run(["process", clip, "--pipeline", yaml, "--jsonl", out, "--max-frames", "4", "--temporal", "delta", "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try lines(out).filter { $0["type"] as? String == "frame" }.map { $0["recomputed"] as? Double ?? -1 }
        XCTAssertEqual(f, [1, 0, 0, 0])
        try "model: {path: '\(onnx)', kind: onnx-centerface}\ntemporal: {mode: delta, layer_thresholds: {x: 1}}\n"
            .write(toFile: yaml, atomically: true, encoding: .utf8)
        r = try run(["process", clip, "--pipeline", yaml])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("layer_thresholds are not supported for ONNX models"), r.stderr)
    }

    /// Bad temporal configurations are usage errors naming the problem.
    func testTemporalConfigurationErrors() throws {
        let clip = try stillClip()
        let model = try weightsFile()
        var r = try run(["process", clip, "--temporal", "delta"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("temporal delta needs a model"), r.stderr)
        r = try run(["process", clip, "--model", model, "--temporal-threshold", "0.1"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--temporal-threshold applies to --temporal delta"), r.stderr)
        r = try run(["process", clip, "--model", model, "--temporal", "sometimes"])
        XCTAssertEqual(r.status, 2, r.stderr)
        let yaml = path("bad.yaml")
        try "model: {path: '\(model)'}\ntemporal:\n  mode: delta\n  layer_thresholds: {backbone.body.layer9.conv1: 0.1}\n"
            .write(toFile: yaml, atomically: true, encoding: .utf8)
        r = try run(["process", clip, "--pipeline", yaml])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(yaml): temporal: layer_thresholds: 'backbone.body.layer9.conv1' is not a conv layer"),
                      r.stderr)
    }

    /// `bench temporal --model`: threshold 0 agrees exactly (F1 1) with tiny errors; the report has every part.
    func testBenchTemporalWithModel() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        let out = path("bench.jsonl")
        let r = try run(["bench", "temporal", video.path, "--model", model, "--frames", "3", "--threshold", "0",
                         "--agreement-score", "0.3", "--jsonl", out, "--noise-floor"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for part in ["backbone+FPN speedup", "detector off", "recomputed: mean", "p2: mean", "p5: mean",
                     "agreement F1 over the 10 frames ending at frame 3: 1.0000"] {
            XCTAssertTrue(r.stdoutText.contains(part), "missing '\(part)' in\n\(r.stdoutText)")
        }
        let agreement = try XCTUnwrap(r.stdoutText.split(separator: "\n").first { $0.hasPrefix("agreement (score >= 0.30") })
        XCTAssertTrue(agreement.contains("F1 1.0000"), String(agreement))
        // The noise floor compares dense on the dithered frames with the same dense detections as the agreement.
        let offCount = try XCTUnwrap(agreement.split(separator: " ").firstIndex(of: "off").map { agreement.split(separator: " ")[$0 - 1] })
        let floor = try XCTUnwrap(r.stdoutText.split(separator: "\n").first { $0.hasPrefix("noise floor (") })
        XCTAssertTrue(floor.contains("matched of \(offCount) / "), "\(floor) vs \(agreement)")
        let noModel = try run(["bench", "temporal", video.path, "--noise-floor"])
        XCTAssertEqual(noModel.status, 2, noModel.stderr)
        XCTAssertTrue(noModel.stderr.contains("--noise-floor needs --model"), noModel.stderr)
        let frames = try lines(out)
        XCTAssertEqual(frames.count, 3)
        for f in frames {
            let e = try XCTUnwrap(f["rel_l2"] as? [String: Double])
            XCTAssertEqual(Set(e.keys), ["p2", "p3", "p4", "p5"])
            for v in e.values { XCTAssertLessThan(v, 1e-5) }
            XCTAssertEqual(f["f1"] as? Double, 1)
        }
    }

    /// `calibrate` on a short clip: a pipeline file with a threshold for every conv layer, fidelity ≥ target,
    /// that `process --pipeline` runs with delta; a clip that cannot be read is an error naming it.
    func testCalibrateWritesARunnablePipeline() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        let yaml = path("cal.yaml")
        var r = try run(["calibrate", video.path, "--model", model, "--target-fidelity", "0.9", "--frames", "3",
                         "--grid", "1,10", "--agreement-score", "0.3", "-o", yaml])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try String(contentsOfFile: yaml, encoding: .utf8)
        let fidelity = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("# metric f1: fidelity ") })
        let value = try XCTUnwrap(Double(fidelity.dropFirst("# metric f1: fidelity ".count).prefix(6)))
        XCTAssertGreaterThanOrEqual(value, 0.9)
        let spec = try PipelineSpec.load(path: yaml).temporal
        XCTAssertEqual(spec.mode, .delta)
        let keys = try DetectorLoader.load(contentsOf: URL(fileURLWithPath: model)).backbone.convLayers.map(\.key)
        XCTAssertEqual(Set(spec.layerThresholds.keys), Set(keys), "a threshold for every conv of the model")
        XCTAssertTrue(spec.layerThresholds.values.contains { $0 >= 1 }, "something was raised: \(spec.layerThresholds)")
        let out = path("cal.jsonl")
        r = try run(["process", video.path, "--pipeline", yaml, "--max-frames", "3", "--jsonl", out, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try lines(out).filter { $0["recomputed"] != nil }.count, 3)

        r = try run(["calibrate", path("missing.mp4"), "--model", model, "--target-fidelity", "0.9"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("missing.mp4"), r.stderr)
        r = try run(["calibrate", video.path, "--model", path("nope.safetensors"), "--target-fidelity", "0.9"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("nope.safetensors"), r.stderr)
    }

    /// `calibrate --group depth`: two groups, the stem and every deeper conv, each with one threshold; the runs
    /// it prints are one per grid value tried; an unknown grouping is a usage error.
    func testCalibrateDepthGroupsTheStemAndTheRest() throws {
        guard let video = TestPaths.external("vtest.avi") else { throw XCTSkip("samples/external/vtest.avi missing") }
        let model = try weightsFile()
        let yaml = path("cal-depth.yaml")
        var r = try run(["calibrate", video.path, "--model", model, "--target-fidelity", "0.5", "--frames", "3",
                         "--group", "depth", "--grid", "0.5,50", "--agreement-score", "0.3", "-o", yaml])
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try String(contentsOfFile: yaml, encoding: .utf8)
        let header = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("# groups (depth): ") })
        let groups = header.dropFirst("# groups (depth): ".count).split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces).split(separator: "=").map(String.init)
        }
        XCTAssertEqual(groups.map { $0[0] }, ["stem", "deep"], String(header))
        let stem = try XCTUnwrap(Float(groups[0][1])), deep = try XCTUnwrap(Float(groups[1][1]))
        let keys = try DetectorLoader.load(contentsOf: URL(fileURLWithPath: model)).backbone.convLayers.map(\.key)
        let spec = try PipelineSpec.load(path: yaml).temporal
        XCTAssertEqual(spec.layerThresholds[keys[0]], stem, "the stem is the first conv")
        for k in keys.dropFirst() { XCTAssertEqual(spec.layerThresholds[k], deep, k) }
        // One line per tried value of each group: at most 2 + 2 runs after the base run.
        let tried = r.stderr.split(separator: "\n").filter { $0.hasPrefix("  stem = ") || $0.hasPrefix("  deep = ") }
        XCTAssertGreaterThanOrEqual(tried.count, 2, r.stderr)
        XCTAssertLessThanOrEqual(tried.count, 4, r.stderr)

        r = try run(["calibrate", video.path, "--model", model, "--target-fidelity", "0.9", "--group", "stages"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--group must be stage, depth or layer"), r.stderr)
    }
}
