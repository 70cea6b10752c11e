import Foundation
import TestSupport
import XCTest

/// End to end through the built `fpnstream` binary: exit codes, messages, and what ffprobe reads from the outputs.
final class ProcessCommandTests: XCTestCase {
    var dir: URL!
    var binary: String!

    override func setUpWithError() throws {
        guard let b = ExternalTools.builtProduct("fpnstream") else {
            return XCTFail("fpnstream binary not built next to the tests: run `swift build --build-tests` first")
        }
        binary = b
        dir = TestPaths.temporaryDirectory("process")
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    override class func tearDown() {
        PanopticModels.removeAll()  // weights files shared by the panoptic tests (ProcessCommandTests+Panoptic.swift)
        super.tearDown()
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    func fpnstream(_ args: [String]) throws -> ToolResult { try ExternalTools.run(binary, args) }

    /// 40 frames of testsrc2, 10 fps, 160x120, MPEG-4 in AVI.
    func makeClip(_ name: String = "clip.avi", seconds: Int = 4) throws -> String {
        let p = path(name)
        try ExternalTools.ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=\(seconds)", "-c:v", "mpeg4",
                                  "-q:v", "5", p])
        return p
    }

    /// Every line of a JSONL file parsed as a JSON object (fails the test on a partial or invalid line).
    func jsonlObjects(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[String: Any]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertEqual(data.last, 0x0a, "JSONL must end with a newline (whole lines only)", file: file, line: line)
        return try data.split(separator: 0x0a).map { lineData in
            let obj = try JSONSerialization.jsonObject(with: Data(lineData))
            return try XCTUnwrap(obj as? [String: Any], file: file, line: line)
        }
    }

    func frameLines(_ objects: [[String: Any]]) -> [[String: Any]] {
        objects.filter { $0["type"] as? String == "frame" }
    }

    /// stderr lines that are not progress/summary chatter.
    func errorLines(_ r: ToolResult) -> [String] {
        r.stderr.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    // MARK: - Normal runs

    func testWritesMP4WithAllFramesAndSourceTiming() throws {
        let input = try makeClip()
        let out = path("out.mp4")
        let r = try fpnstream(["process", input, "-o", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(out), 40)
        XCTAssertEqual(try ExternalTools.ffprobe(out, section: "stream", entry: "codec_name"), "h264")
        XCTAssertEqual(Double(try ExternalTools.ffprobe(out, section: "format", entry: "duration") ?? "") ?? 0, 4.0, accuracy: 0.001)
        XCTAssertTrue(r.stderr.contains("processed 40 frames"), r.stderr)
    }

    func testMaxFramesAndMKV() throws {
        let input = try makeClip()
        let out = path("out.mkv")
        let r = try fpnstream(["process", input, "-o", out, "--max-frames", "12", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")  // --quiet
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(out), 12)
        XCTAssertEqual(try ExternalTools.ffprobe(out, section: "format", entry: "format_name"), "matroska,webm")
    }

    /// `-o -`: MPEG-TS on stdout, readable by ffprobe (what `| ffplay -` gets).
    func testMPEGTSOnStdout() throws {
        let input = try makeClip(seconds: 2)
        let r = try fpnstream(["process", input, "-o", "-", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let bytes = [UInt8](r.stdout)
        XCTAssertGreaterThan(bytes.count, 188 * 10)
        XCTAssertEqual(bytes.count % 188, 0)
        for i in stride(from: 0, to: bytes.count, by: 188) { XCTAssertEqual(bytes[i], 0x47, "TS sync byte at \(i)") }
        let ts = path("stdout.ts")
        try r.stdout.write(to: URL(fileURLWithPath: ts))
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(ts), 20)
    }

    /// The reader of `-o -` goes away (e.g. ffplay closed): the run ends quietly, exit 0, as after `| head`.
    func testClosedStdoutEndsQuietly() throws {
        let input = try makeClip(seconds: 20)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["process", input, "-o", "-", "--quiet"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        _ = out.fileHandleForReading.availableData  // the stream started
        try out.fileHandleForReading.close()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, stderr)
        XCTAssertEqual(stderr, "")
    }

    func testFullVtestRun() throws {
        guard let vtest = TestPaths.external("vtest.avi") else { throw XCTSkip("vtest.avi missing (make samples)") }
        let out = path("vtest.mp4"), jsonl = path("vtest.jsonl")
        let r = try fpnstream(["process", vtest.path, "-o", out, "--jsonl", jsonl, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(out), 795)
        XCTAssertEqual(Double(try ExternalTools.ffprobe(out, section: "format", entry: "duration") ?? "") ?? 0, 79.5, accuracy: 0.001)
        let objects = try jsonlObjects(jsonl)
        let frames = frameLines(objects)
        XCTAssertEqual(frames.count, 795)
        for (i, f) in frames.enumerated() {
            XCTAssertEqual(f["frame"] as? Int, i)
            XCTAssertEqual(f["pts"] as? Double ?? -1, Double(i) / 10, accuracy: 1e-6)
            XCTAssertEqual(f["width"] as? Int, 768)
            XCTAssertEqual(f["height"] as? Int, 576)
            XCTAssertEqual((f["detections"] as? [Any])?.count, 0)
        }
        XCTAssertEqual(objects.last?["type"] as? String, "summary")
        XCTAssertEqual(objects.last?["frames"] as? Int, 795)
        XCTAssertEqual(objects.count, 796)
    }

    // MARK: - Interruption

    /// Runs `process` with per-frame progress lines and sends `sig` when the line for frame 30 arrives (no timing
    /// involved). Returns the exit status and stderr.
    func interruptedRun(_ extra: [String], signal sig: Int32, afterFrame: Int = 30) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["process"] + extra + ["--progress-interval", "0"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var seen = ""
        var signalled = false
        while true {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }  // EOF: the process closed stderr (exited)
            seen += String(decoding: chunk, as: UTF8.self)
            if !signalled, seen.contains("progress: \(afterFrame)/") {
                kill(process.processIdentifier, sig)
                signalled = true
            }
        }
        process.waitUntilExit()
        XCTAssertTrue(signalled, "never saw progress for frame \(afterFrame): \(seen.suffix(500))")
        return (process.terminationStatus, seen)
    }

    /// SIGINT halfway: the run drains, finalizes the MP4 (ffprobe reads it) and exits 130.
    func testSIGINTFinalizesOutputs() throws {
        let input = try makeClip("long.avi", seconds: 30)  // 300 frames
        let out = path("interrupted.mp4"), jsonl = path("interrupted.jsonl")
        let (status, stderr) = try interruptedRun([input, "-o", out, "--jsonl", jsonl], signal: SIGINT)
        XCTAssertEqual(status, 130, String(stderr.suffix(800)))
        XCTAssertTrue(stderr.contains("stopped by SIGINT; outputs finalized"), String(stderr.suffix(800)))
        let frames = try XCTUnwrap(try ExternalTools.ffprobeFrameCount(out), "ffprobe cannot read the interrupted MP4")
        XCTAssertGreaterThanOrEqual(frames, 30)
        XCTAssertLessThan(frames, 300)
        // The container's duration matches the frames it holds (the trailer was written).
        let duration = Double(try ExternalTools.ffprobe(out, section: "format", entry: "duration") ?? "") ?? 0
        XCTAssertEqual(duration, Double(frames) / 10, accuracy: 0.001)
        // Whole, valid JSONL lines only; the same frames as the video, in order; a summary saying it was stopped.
        let objects = try jsonlObjects(jsonl)
        let frameObjects = frameLines(objects)
        XCTAssertEqual(frameObjects.count, frames)
        XCTAssertEqual(frameObjects.map { $0["frame"] as? Int }, (0..<frames).map { $0 })
        XCTAssertEqual(objects.last?["type"] as? String, "summary")
        XCTAssertEqual(objects.last?["stopped"] as? Bool, true)
    }

    func testSIGTERMFinalizesOutputsToo() throws {
        let input = try makeClip("long.avi", seconds: 30)
        let out = path("terminated.mkv")
        let (status, stderr) = try interruptedRun([input, "-o", out], signal: SIGTERM)
        XCTAssertEqual(status, 143, String(stderr.suffix(800)))
        let frames = try XCTUnwrap(try ExternalTools.ffprobeFrameCount(out))
        XCTAssertGreaterThanOrEqual(frames, 30)
        XCTAssertLessThan(frames, 300)
    }

    // MARK: - Bad input: one line naming the input, exit 1, no output left behind

    func expectFailure(_ args: [String], naming name: String, status: Int32 = 1, contains: String? = nil,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try fpnstream(args)
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        let lines = errorLines(r)
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("fpnstream: \(name)") ?? false, r.stderr, file: file, line: line)
        if let contains { XCTAssertTrue(r.stderr.contains(contains), r.stderr, file: file, line: line) }
    }

    func testMissingInput() throws {
        let p = path("missing.mp4")
        try expectFailure(["process", p, "-o", path("o.mp4"), "--jsonl", path("o.jsonl")], naming: p,
                          contains: "no such file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.mp4")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.jsonl")))
    }

    func testDirectoryInput() throws {
        try expectFailure(["process", dir.path], naming: dir.path, contains: "is a directory")
    }

    func testEmptyInput() throws {
        let p = path("empty.mp4")
        XCTAssertTrue(FileManager.default.createFile(atPath: p, contents: Data()))
        try expectFailure(["process", p, "-o", path("o.mp4")], naming: p, contains: "empty")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.mp4")))
    }

    func testNonVideoInput() throws {
        let text = path("readme.txt")
        try Data(String(repeating: "plain text, not a video\n", count: 50).utf8).write(to: URL(fileURLWithPath: text))
        try expectFailure(["process", text], naming: text, contains: "not a video file")
        let binaryFile = path("random.mp4")
        var rng = TestRandom(seed: 1)
        let bytes = (0..<20_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        try Data(bytes).write(to: URL(fileURLWithPath: binaryFile))
        try expectFailure(["process", binaryFile], naming: binaryFile, contains: "cannot open input")
    }

    func testTruncatedMP4Input() throws {
        let good = path("good.mp4")
        try ExternalTools.ffmpeg(["-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2", "-c:v", "libx264", good])
        let bytes = try Data(contentsOf: URL(fileURLWithPath: good))
        let p = path("truncated.mp4")
        try bytes.prefix(bytes.count * 2 / 3).write(to: URL(fileURLWithPath: p))
        try expectFailure(["process", p, "-o", path("o.mp4")], naming: p, contains: "cannot open input")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.mp4")))
    }

    func testUnsupportedCodecInput() throws {
        let good = path("mjpeg.avi")
        try ExternalTools.ffmpeg(["-f", "lavfi", "-i", "color=c=red:s=64x48:r=10:d=1", "-c:v", "mjpeg", good])
        let patched = try Data(contentsOf: URL(fileURLWithPath: good)).replacingAll(Data("MJPG".utf8), with: Data("ZZZZ".utf8))
        let p = path("zzzz.avi")
        try patched.write(to: URL(fileURLWithPath: p))
        try expectFailure(["process", p], naming: p, contains: "unsupported video codec 'tag ZZZZ'")
    }

    func testUnwritableOutput() throws {
        let input = try makeClip(seconds: 1)
        let blocker = path("plainfile")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let out = blocker + "/out.mp4"
        try expectFailure(["process", input, "-o", out, "--jsonl", path("o.jsonl")], naming: out,
                          contains: "cannot open output")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.jsonl")), "empty JSONL left behind")
    }

    func testUnwritableJSONL() throws {
        let input = try makeClip(seconds: 1)
        let jsonl = path("no-such-dir/out.jsonl")
        let r = try fpnstream(["process", input, "--jsonl", jsonl, "-o", path("o.mp4")])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(errorLines(r).count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(jsonl), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.mp4")))
    }

    /// `--jsonl -`: frame lines on stdout (e.g. for jq), progress and summary stay on stderr.
    func testJSONLOnStdout() throws {
        let input = try makeClip(seconds: 1)
        let r = try fpnstream(["process", input, "--jsonl", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdoutText.split(separator: "\n")
        XCTAssertEqual(lines.count, 11)  // 10 frames + summary
        XCTAssertTrue(lines.first?.hasPrefix("{\"type\":\"frame\"") ?? false)
        XCTAssertTrue(r.stderr.contains("processed 10 frames"))
    }

    /// Garbage in the middle of the stream: the run completes, warns once with the count, output has the frames.
    func testCorruptBytesMidStreamCompleteWithWarning() throws {
        let clean = try makeClip("clean.avi", seconds: 6)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: clean)))
        var rng = TestRandom(seed: 42)
        let start = bytes.count / 2
        for i in start..<(start + 3000) { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let p = path("corrupt.avi")
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        let out = path("corrupt-out.mp4")
        let r = try fpnstream(["process", p, "-o", out, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = errorLines(r)
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(lines.first?.hasPrefix("warning: \(p): ") ?? false, r.stderr)
        XCTAssertTrue(r.stderr.contains("decode errors skipped"), r.stderr)
        let frames = try XCTUnwrap(try ExternalTools.ffprobeFrameCount(out))
        XCTAssertGreaterThanOrEqual(frames, 50)
        XCTAssertLessThanOrEqual(frames, 60)
    }

    // MARK: - Pipeline files

    func writeYAML(_ name: String, _ text: String) throws -> String {
        let p = path(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Bad YAML: exit 2, one line naming the file (and line and key), nothing written.
    func testBadPipelineYAML() throws {
        let input = try makeClip(seconds: 1)
        let cases: [(String, String, String)] = [
            ("typo.yaml", "input:\n  strid: 2\n", "typo.yaml:2: input: unknown key 'strid'"),
            ("syntax.yaml", "input: [1, 2\n", "syntax.yaml:2: invalid YAML"),
            ("type.yaml", "input:\n  stride: fast\n", "type.yaml:2: input.stride: expected a whole number"),
        ]
        for (name, text, expected) in cases {
            let spec = try writeYAML(name, text)
            let jsonl = path(name + ".jsonl"), out = path(name + ".mp4")
            let r = try fpnstream(["process", input, "--pipeline", spec, "--jsonl", jsonl, "-o", out])
            XCTAssertEqual(r.status, 2, "\(name): \(r.stderr)")
            XCTAssertEqual(errorLines(r).count, 1, "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("fpnstream: \(spec)"), "\(name): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(name): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: jsonl), name)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), name)
        }
        let missing = path("nope.yaml")
        let r = try fpnstream(["process", input, "--pipeline", missing])
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(errorLines(r), ["fpnstream: \(missing): no such file"])
    }

    func testPipelineWithMissingModelFileIsAConfigError() throws {
        let input = try makeClip(seconds: 1)
        let spec = try writeYAML("model.yaml", "model:\n  path: models/x.safetensors\n")
        let r = try fpnstream(["process", input, "--pipeline", spec])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(spec): model.path:") && r.stderr.contains("x.safetensors"), r.stderr)
    }

    /// The committed demo pipeline and its options: stride and max_frames from the file, outputs from the flags,
    /// tracker stage present (no detections yet, so nothing tracked).
    func testPipelineFileSettingsApply() throws {
        let input = try makeClip(seconds: 4)
        let spec = try writeYAML("s.yaml", "input:\n  stride: 3\n  max_frames: 10\ntracker:\n  track_buffer: 30\n")
        let jsonl = path("s.jsonl")
        let r = try fpnstream(["process", input, "--pipeline", spec, "--jsonl", jsonl, "--stats", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let frames = frameLines(try jsonlObjects(jsonl))
        XCTAssertEqual(frames.map { $0["frame"] as? Int }, stride(from: 0, to: 30, by: 3).map { $0 })
        XCTAssertEqual(frames[1]["pts"] as? Double ?? 0, 0.3, accuracy: 1e-6)
        XCTAssertTrue(r.stderr.contains("track "), r.stderr)
        let demo = TestPaths.root.appendingPathComponent("pipelines/demo.yaml").path
        let d = try fpnstream(["process", input, "--pipeline", demo, "--jsonl", path("d.jsonl"), "--quiet"])
        XCTAssertEqual(d.status, 0, d.stderr)
        XCTAssertEqual(frameLines(try jsonlObjects(path("d.jsonl"))).count, 40)
    }

    func testUsageErrorsExit2() throws {
        let r1 = try fpnstream(["process"])
        XCTAssertEqual(r1.status, 2)
        XCTAssertTrue(r1.stderr.contains("Missing expected argument"), r1.stderr)
        let r2 = try fpnstream(["process", "x.mp4", "--max-frames", "0"])
        XCTAssertEqual(r2.status, 2)
        let r3 = try fpnstream(["process", "x.mp4", "--no-such-flag"])
        XCTAssertEqual(r3.status, 2)
        let r4 = try fpnstream(["process", "x.mp4", "-o", "-", "--jsonl", "-"])
        XCTAssertEqual(r4.status, 2)
        XCTAssertEqual(errorLines(r4), ["fpnstream: only one output can go to stdout ('-'), got video and JSONL"])
        let help = try fpnstream(["process", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.stdoutText.contains("Examples:"))
        XCTAssertTrue(help.stdoutText.contains("Exit status"))
    }

    func testCredentialsAreRedactedInErrors() throws {
        // Nothing listens on port 1 of localhost: the connection is refused at once.
        let r = try fpnstream(["process", "rtsp://admin:hunter2@127.0.0.1:1/stream", "--input-option", "timeout=2000000"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertFalse(r.stderr.contains("hunter2"), r.stderr)
        XCTAssertFalse(r.stderr.contains("admin"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rtsp://***@127.0.0.1:1/stream"), r.stderr)
    }
}

extension Data {
    func replacingAll(_ target: Data, with replacement: Data) -> Data {
        var d = self
        while let r = d.range(of: target) { d.replaceSubrange(r, with: replacement) }
        return d
    }
}
