import Foundation
import TestSupport
import XCTest

/// `fpnstream tail` end to end: the built binary against scripts/rtsp-server on loopback.
final class TailCommandTests: XCTestCase {
    private var server: RTSPTestServer?
    private var tail: Process?
    private var dir: URL!

    override func setUpWithError() throws {
        dir = TestPaths.temporaryDirectory("tail")
    }

    override func tearDown() {
        if let t = tail, t.isRunning { t.terminate(); t.waitUntilExit() }
        server?.stop()
        try? FileManager.default.removeItem(at: dir)
        super.tearDown()
    }

    private func binary() throws -> String {
        guard let b = ExternalTools.builtProduct("fpnstream") else { throw XCTSkip("fpnstream not built (swift build)") }
        return b
    }

    private func startServer(_ args: [String] = []) throws -> RTSPTestServer {
        let s = RTSPTestServer(arguments: args)
        do { try s.start() } catch let e as RTSPTestServer.Unavailable { throw XCTSkip(e.description) }
        server = s
        return s
    }

    /// Starts `fpnstream tail ARGS` in the background; stderr goes to `dir/stderr.txt`.
    private func startTail(_ args: [String], environment: [String: String] = [:]) throws -> Process {
        let p = Process()
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.executableURL = URL(fileURLWithPath: try binary())
        p.arguments = ["tail"] + args
        let err = dir.appendingPathComponent("stderr.txt")
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        tail = p
        return p
    }

    private var stderrText: String { (try? String(contentsOf: dir.appendingPathComponent("stderr.txt"), encoding: .utf8)) ?? "" }

    /// Parsed JSONL lines; fails the test on a line that is not a whole JSON object.
    private func lines(_ url: URL, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var out: [[String: Any]] = []
        let parts = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, l) in parts.enumerated() where !l.isEmpty {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any] else {
                // A line still being written can only be the last one while the process runs.
                if i == parts.count - 1 && tail?.isRunning == true { continue }
                XCTFail("not a whole JSON line: \(l.prefix(200))", file: file, line: line)
                continue
            }
            out.append(obj)
        }
        return out
    }

    /// Polls the JSONL (every 50 ms, at most `timeout` s, longer under a sanitizer) until `condition` holds.
    @discardableResult
    private func waitFor(_ url: URL, timeout: Double = 20, _ condition: ([[String: Any]]) -> Bool) -> [[String: Any]] {
        let end = Date().addingTimeInterval(Sanitizer.scaled(timeout))
        var l = lines(url)
        while !condition(l) && Date() < end && tail?.isRunning != false {
            usleep(50_000)
            l = lines(url)
        }
        return l
    }

    private func frames(_ l: [[String: Any]]) -> [[String: Any]] { l.filter { $0["type"] as? String == "frame" } }
    private func events(_ l: [[String: Any]], _ name: String) -> [[String: Any]] {
        l.filter { $0["type"] as? String == "event" && $0["event"] as? String == name }
    }

    /// False when `p` is still running after `timeout` s (times the sanitizer's slowdown in an instrumented build,
    /// whose `fpnstream` is instrumented too); it is killed then, so that reading its status afterwards fails the
    /// test instead of trapping the whole test process.
    private func waitExit(_ p: Process, timeout: Double = 20) -> Bool {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { p.waitUntilExit(); done.signal() }
        if done.wait(timeout: .now() + Sanitizer.scaled(timeout)) == .success { return true }
        kill(p.processIdentifier, SIGKILL)
        done.wait()
        return false
    }

    // MARK: - Tests

    func testReconnectsAfterRestartAndStallWithContinuingIndices() throws {
        let s = try startServer()
        let out = dir.appendingPathComponent("out.jsonl")
        let p = try startTail([s.url, "--jsonl", out.path, "--stall-timeout", "1", "--reconnect-delay", "0.2",
                               "--reconnect-max-delay", "0.5", "--stats-interval", "0.5", "--quiet"])
        waitFor(out) { self.frames($0).count >= 5 }
        try s.restart()                                         // killed and back on the same port
        waitFor(out) { !self.events($0, "reconnected").isEmpty && self.frames($0).count >= 10 }
        s.freeze()                                              // SIGSTOP: connection open, nothing sent
        waitFor(out) { self.events($0, "disconnected").count >= 2 }
        s.thaw()
        let l = waitFor(out) { self.events($0, "reconnected").count >= 2 }
        p.terminate()
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderrText)

        let all = lines(out)
        let reasons = events(all, "disconnected").compactMap { $0["message"] as? String }
        XCTAssertEqual(reasons.first, "end of stream", "\(reasons)")
        XCTAssertEqual(reasons.dropFirst().first, "stalled: no frame for 1.0 s", "\(reasons)")
        XCTAssertEqual(events(l, "reconnected").count, 2)
        for r in events(all, "reconnected") { XCTAssertGreaterThan(r["gap_s"] as? Double ?? 0, 0) }
        // Frame indices continue across both outages (never restart, never repeat; gaps only where the keep-latest
        // queue dropped a frame), and stream time only increases.
        let f = frames(all)
        let indices = f.compactMap { $0["frame"] as? Int }
        XCTAssertEqual(indices.count, f.count)
        XCTAssertTrue(zip(indices, indices.dropFirst()).allSatisfy { $0 < $1 }, "\(indices)")
        let pts = f.compactMap { $0["pts"] as? Double }
        XCTAssertEqual(pts.count, f.count)
        XCTAssertTrue(zip(pts, pts.dropFirst()).allSatisfy { $0 < $1 })
        let last = try XCTUnwrap(all.last)
        XCTAssertEqual(last["type"] as? String, "summary")
        XCTAssertEqual(last["reconnects"] as? Int, 2)
        XCTAssertEqual(last["processed"] as? Int, f.count)
        let dropped = try XCTUnwrap(last["dropped"] as? Int)
        XCTAssertEqual((indices.last ?? -1) + 1, f.count + dropped, "every delivered index is processed or dropped")
        XCTAssertFalse(all.filter { $0["type"] as? String == "stats" }.isEmpty, "periodic stats lines")
    }

    /// Inference 3x slower than the camera (25 fps → 120 ms per frame): keep-latest holds latency at about one
    /// inference time plus a frame, counting drops; `block` (control) lets it grow without bound.
    func testSlowInferenceKeepsLatencyBoundedAndCountsDrops() throws {
        let s = try startServer()
        let stageMs = 120.0  // 3x the 40 ms frame interval of the test server

        func run(_ policy: String) throws -> (latencies: [Double], dropped: Int, processed: Int) {
            let out = dir.appendingPathComponent("\(policy).jsonl")
            let p = try startTail([s.url, "--jsonl", out.path, "--debug-stage-delay-ms", String(stageMs),
                                   "--drop-policy", policy, "--max-frames", "20", "--quiet"])
            XCTAssertTrue(waitExit(p, timeout: 60))
            XCTAssertEqual(p.terminationStatus, 0, stderrText)
            let all = lines(out)
            let latencies = frames(all).compactMap { $0["latency_ms"] as? Double }
            XCTAssertEqual(latencies.count, 20)
            let final = try XCTUnwrap(all.last { $0["type"] as? String == "summary" })
            return (latencies, final["dropped"] as? Int ?? -1, final["processed"] as? Int ?? -1)
        }
        func median(_ xs: ArraySlice<Double>) -> Double { xs.sorted()[xs.count / 2] }

        // No wall-clock limits (the machine may be loaded): keep-latest is compared with `block` in the same
        // run, and with itself over time. With `block` frames pile up, so latency grows with every frame;
        // with keep-latest it must stay flat and well below.
        let latest = try run("keep-latest")
        let blocking = try run("block")
        XCTAssertEqual(latest.processed, 20)
        XCTAssertGreaterThan(latest.dropped, 20, "about 2 of 3 frames must be dropped")
        XCTAssertEqual(blocking.dropped, 0)
        XCTAssertGreaterThanOrEqual(latest.latencies.max() ?? 0, stageMs, "latency includes the inference time")
        XCTAssertLessThan(median(latest.latencies[15...]), median(latest.latencies[5..<10]) + 2 * stageMs,
                          "keep-latest latency must not grow: \(latest.latencies)")
        XCTAssertGreaterThan(median(blocking.latencies[15...]), median(blocking.latencies[5..<10]) + 4 * stageMs,
                             "control: without dropping, latency grows: \(blocking.latencies)")
        XCTAssertLessThan(2 * (latest.latencies.max() ?? 0), blocking.latencies.max() ?? 0)
    }

    func testSIGTERMDrainsAndFinalizesOutputsAndExitsZero() throws {
        let s = try startServer()
        let out = dir.appendingPathComponent("out.jsonl")
        let video = dir.appendingPathComponent("out.mp4")
        let p = try startTail([s.url, "--jsonl", out.path, "-o", video.path, "--debug-stage-delay-ms", "20", "--quiet"])
        waitFor(out) { self.frames($0).count >= 15 }
        let t0 = Date()
        p.terminate()
        XCTAssertTrue(waitExit(p, timeout: 10))
        let seconds = Date().timeIntervalSince(t0)
        XCTAssertEqual(p.terminationStatus, 0, stderrText)
        // A hang guard, not a timing test: the 2 s shutdown figure is measured by scripts/soak-rtsp.
        XCTAssertLessThan(seconds, 10, "shutdown hangs")

        let all = lines(out)                          // every line whole (checked inside)
        let n = frames(all).count
        XCTAssertGreaterThanOrEqual(n, 15)
        XCTAssertEqual(all.last?["type"] as? String, "summary")
        XCTAssertEqual(all.last?["processed"] as? Int, n)
        XCTAssertEqual(all.last?["completion"] as? String, "cancelled")
        // The MP4 is finalized (moov written): ffprobe decodes every frame line's frame.
        let probe = try ExternalTools.run("ffprobe", ["-v", "error", "-count_frames", "-select_streams", "v:0",
                                                      "-show_entries", "stream=codec_name,nb_read_frames",
                                                      "-of", "csv=p=0", video.path])
        XCTAssertEqual(probe.status, 0, probe.stderr)
        XCTAssertEqual(probe.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), "h264,\(n)")
    }

    func testUDPTransportWithCredentialsNeverLeaksThem() throws {
        let s = try startServer(["--protocols", "udp"])
        let withCreds = s.url.replacingOccurrences(of: "rtsp://", with: "rtsp://admin:s3cr3t@")
        let out = dir.appendingPathComponent("out.jsonl")
        let p = try startTail([withCreds, "--rtsp-transport", "udp", "--jsonl", out.path, "--max-frames", "10"])
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderrText)
        let text = try String(contentsOf: out, encoding: .utf8)
        XCTAssertEqual(frames(lines(out)).count, 10)
        XCTAssertFalse(text.contains("s3cr3t") || text.contains("admin"), "credentials in JSONL")
        XCTAssertFalse(stderrText.contains("s3cr3t") || stderrText.contains("admin"), "credentials on stderr")
        XCTAssertTrue(text.contains("rtsp://***@127.0.0.1:\(s.port)/test"))
    }

    func testPipelineYAMLLiveSectionAppliesAndFlagsWin() throws {
        let s = try startServer()
        let yaml = dir.appendingPathComponent("live.yaml")
        let out = dir.appendingPathComponent("yaml.jsonl")
        try """
            input:
              stride: 3
              max_frames: 6
              live: {drop_policy: block, queue_size: 1, reconnect: {io_timeout: 2}}
            tracker: on
            outputs:
              jsonl: \(out.path)
            """.write(to: yaml, atomically: true, encoding: .utf8)
        let p = try startTail([s.url, "--pipeline", yaml.path, "--quiet"])
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderrText)
        let all = lines(out)
        XCTAssertEqual(frames(all).count, 6, "max_frames from the YAML")
        let summary = try XCTUnwrap(all.last)
        XCTAssertEqual(summary["dropped"] as? Int, 0, "block from the YAML never drops")
        XCTAssertGreaterThanOrEqual(summary["skipped_by_rate"] as? Int ?? 0, 10, "stride 3 skips 2 of 3")
        let stages = (summary["stages"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        XCTAssertTrue(stages.contains("track"), "tracker section → ByteTrack stage: \(stages)")

        // A flag beats the YAML.
        let p2 = try startTail([s.url, "--pipeline", yaml.path, "--max-frames", "2", "--quiet"])
        XCTAssertTrue(waitExit(p2))
        XCTAssertEqual(frames(lines(out)).count, 2)

        // Bad YAML: usage error naming the file.
        try "input: {stride: 0}\n".write(to: yaml, atomically: true, encoding: .utf8)
        let p3 = try startTail([s.url, "--pipeline", yaml.path])
        XCTAssertTrue(waitExit(p3))
        XCTAssertEqual(p3.terminationStatus, 2)
        XCTAssertTrue(stderrText.contains("live.yaml"), stderrText)
    }

    /// `--temporal delta` with a pipeline model on two live streams: every frame line carries `recomputed`, each
    /// stream's first frame is dense (1: its own temporal state, not the other stream's), and each summary has the
    /// mean; `stats` lines carry the mean of the frames processed so far.
    func testTemporalDeltaIsPerStream() throws {
        let a = try startServer()
        let b = RTSPTestServer(arguments: [])
        try b.start()
        defer { b.stop() }
        let model = try TinyModel.write(to: dir)
        let yaml = dir.appendingPathComponent("t.yaml")
        try "model: {path: '\(model)'}\n".write(to: yaml, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("t.jsonl")
        let p = try startTail([a.url, b.url, "--pipeline", yaml.path, "--temporal", "delta", "--jsonl", out.path,
                               "--max-frames", "4", "--drop-policy", "block", "--quiet", "--stats-interval", "0.05"])
        XCTAssertTrue(waitExit(p, timeout: 60))
        XCTAssertEqual(p.terminationStatus, 0, stderrText)
        let all = lines(out)
        for stream in [0, 1] {
            let f = frames(all).filter { $0["stream"] as? Int == stream }
            XCTAssertEqual(f.count, 4, "stream \(stream)")
            let r = f.map { $0["recomputed"] as? Double ?? -1 }
            XCTAssertEqual(r.first, 1, "stream \(stream) starts dense: \(r)")
            XCTAssertTrue(r.allSatisfy { (0...1).contains($0) }, "\(r)")
            let summary = try XCTUnwrap(all.last { $0["type"] as? String == "summary" && $0["stream"] as? Int == stream })
            XCTAssertEqual(try XCTUnwrap(summary["recomputed_mean"] as? Double), r.reduce(0, +) / 4, accuracy: 1e-3)
            XCTAssertEqual(summary["repeated_frames"] as? Int, f.filter { $0["repeated"] as? Bool == true }.count)
            // The RoI regions of the frame lines, summed per head.
            var boxes = (0, 0)
            for line in f {
                if let c = (line["region_reuse"] as? [String: [String: Int]])?["box"] {
                    boxes.0 += c["reused"] ?? -1; boxes.1 += c["total"] ?? -1
                }
            }
            XCTAssertGreaterThan(boxes.1, 0, "stream \(stream): the box head ran")
            let tally = try XCTUnwrap((summary["region_reuse"] as? [String: [String: Any]])?["box"])
            XCTAssertEqual(tally["reused"] as? Int, boxes.0)
            XCTAssertEqual(tally["total"] as? Int, boxes.1)
            let stats = all.filter { $0["type"] as? String == "stats" && $0["stream"] as? Int == stream
                                     && ($0["processed"] as? Int ?? 0) > 0 }
            XCTAssertFalse(stats.isEmpty, "stream \(stream): no stats line after a processed frame")
            for s in stats {
                let n = try XCTUnwrap(s["processed"] as? Int)
                XCTAssertEqual(try XCTUnwrap(s["recomputed_mean"] as? Double), r.prefix(n).reduce(0, +) / Double(n),
                               accuracy: 1e-3, "stream \(stream) stats after \(n) frames")
            }
        }
    }

    func testSeveralURLsAreIndependentStreamsWithTheirOwnVideo() throws {
        let a = try startServer()
        let b = RTSPTestServer(arguments: ["--size", "160x120"])
        try b.start()
        defer { b.stop() }
        let out = dir.appendingPathComponent("two.jsonl")
        let video = dir.appendingPathComponent("cam{stream}.mkv").path
        let p = try startTail([a.url, b.url, "--jsonl", out.path, "-o", video, "--max-frames", "6", "--quiet"])
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderrText)
        let all = lines(out)
        for (stream, width) in [(0, 320), (1, 160)] {
            let f = frames(all).filter { $0["stream"] as? Int == stream }
            XCTAssertEqual(f.count, 6, "stream \(stream)")
            XCTAssertTrue(f.allSatisfy { $0["width"] as? Int == width })
            XCTAssertEqual(events(all, "connected").filter { $0["stream"] as? Int == stream }.count, 1)
            let probe = try ExternalTools.run("ffprobe", ["-v", "error", "-count_frames", "-show_entries",
                                                          "stream=width,nb_read_frames", "-of", "csv=p=0",
                                                          dir.appendingPathComponent("cam\(stream).mkv").path])
            XCTAssertEqual(probe.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), "\(width),6")
        }
        XCTAssertEqual(all.filter { $0["type"] as? String == "summary" }.count, 2, "one summary per stream")
    }

    func testUnreachableURLFailsOnceWithARedactedMessage() throws {
        let out = dir.appendingPathComponent("out.jsonl")
        // The password comes from the environment: the command line holds only the reference.
        let p = try startTail(["rtsp://user:${TAIL_TEST_PW}@127.0.0.1:1/cam", "--jsonl", out.path, "--open-timeout", "2"],
                              environment: ["TAIL_TEST_PW": "s3cr3t"])
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 1)
        let err = stderrText.split(separator: "\n").filter { $0.hasPrefix("fpnstream:") }
        XCTAssertEqual(err.count, 1, stderrText)
        XCTAssertTrue(err.first?.contains("rtsp://***@127.0.0.1:1/cam") == true, stderrText)
        XCTAssertFalse(stderrText.contains("s3cr3t"))
        // The JSONL says why instead of being empty: one connect_failed event, redacted.
        let l = lines(out)
        XCTAssertEqual(l.count, 1, "\(l)")
        XCTAssertEqual(l.first?["event"] as? String, "connect_failed")
        XCTAssertEqual(l.first?["source"] as? String, "rtsp://***@127.0.0.1:1/cam")
        XCTAssertFalse((l.first?["message"] as? String ?? "").isEmpty)
        XCTAssertFalse((try? String(contentsOf: out, encoding: .utf8))?.contains("s3cr3t") ?? true)

        let unset = try startTail(["rtsp://user:${TAIL_TEST_UNSET_VAR}@127.0.0.1:1/cam"])
        XCTAssertTrue(waitExit(unset))
        XCTAssertEqual(unset.terminationStatus, 2, "an unset variable is a usage error")
        XCTAssertTrue(stderrText.contains("${TAIL_TEST_UNSET_VAR}: environment variable not set"), stderrText)

        let bad = try startTail(["rtsp://x/y", "--drop-policy", "newest"])
        XCTAssertTrue(waitExit(bad))
        XCTAssertEqual(bad.terminationStatus, 2, "usage error")
    }
}
