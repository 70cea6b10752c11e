import Foundation
import TestSupport
import XCTest

/// How `process` ends early: on SIGINT with a slow model, and when the reader of stdout goes away.
extension ProcessCommandTests {
    /// SIGINT with the demo model on vtest.avi (795 frames, inference is the slow stage): one "stopping" line, the
    /// frames queued in front of inference are dropped, the ones inside it finish; exit 130, whole JSONL lines and a
    /// summary, a video ffprobe reads.
    func testSIGINTDropsFramesNotStartedAndFinalizes() throws {
        guard let vtest = TestPaths.external("vtest.avi") else { throw XCTSkip("vtest.avi missing (make samples)") }
        let model = TestPaths.samples.appendingPathComponent("models/demo.safetensors").path
        guard FileManager.default.fileExists(atPath: model) else { throw XCTSkip("demo model missing") }
        let out = path("stopped.mp4")
        let (process, stdout, stderr, firstLine) = try startReadingFirstLine(
            ["process", vtest.path, "--model", model, "-o", out, "--jsonl", "-", "--quiet"])
        var received = firstLine
        let linesBeforeSignal = received.split(separator: 0x0a, omittingEmptySubsequences: true).count
        kill(process.processIdentifier, SIGINT)
        received += stdout.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        XCTAssertEqual(process.terminationStatus, 130, errText)
        let stopping = errText.split(separator: "\n").filter { $0.hasPrefix("stopping: ") }
        XCTAssertEqual(stopping.count, 1, errText)
        let line = try XCTUnwrap(stopping.first.map(String.init))
        XCTAssertTrue(line.hasSuffix(" frames in flight, Ctrl-C again to abort"), line)
        let inFlight = try XCTUnwrap(Int(line.split(separator: " ")[2]), line)

        XCTAssertEqual(received.last, 0x0a, "whole lines only")
        let objects = try received.split(separator: 0x0a).map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])
        }
        let frames = frameLines(objects)
        XCTAssertEqual(objects.last?["type"] as? String, "summary")
        XCTAssertEqual(objects.last?["stopped"] as? Bool, true)
        // Only frames inference had started when the signal came are finished: with the old drain, the queues in
        // front of inference (4 + 4 frames and the decoder's own) were processed too.
        XCTAssertGreaterThanOrEqual(frames.count, linesBeforeSignal)
        // In flight: the frames inference holds (one per detect worker; 1 before workers) and up to 3 behind it.
        let workers = ProcessInfo.processInfo.activeProcessorCount
        XCTAssertLessThanOrEqual(inFlight, 3 + workers, line)
        XCTAssertLessThanOrEqual(frames.count, linesBeforeSignal + inFlight + 3, "frames after the signal: \(line)")
        XCTAssertEqual(frames.map { $0["frame"] as? Int }, (0..<frames.count).map { $0 })
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(out), frames.count)
    }
}

extension ProcessCommandTests {
    /// `--jsonl - | head -n 1`: the reader takes one line and closes the pipe. The run ends at once and quietly
    /// (exit 0, nothing on stderr) and the other outputs are finalized.
    func testJSONLReaderClosingThePipeEndsQuietly() throws {
        let input = try makeClip("long.avi", seconds: 100)  // 1000 frame lines: far more than a pipe buffer holds
        let out = path("head.mp4")
        let (process, stdout, stderr, _) = try startReadingFirstLine(["process", input, "-o", out, "--jsonl", "-", "--quiet"])
        try stdout.fileHandleForReading.close()  // what `head -n 1` does after its line
        let errText = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        XCTAssertEqual(process.terminationStatus, 0, errText)
        XCTAssertEqual(errText, "", "no 'Broken pipe' error")
        let frames = try XCTUnwrap(try ExternalTools.ffprobeFrameCount(out), "ffprobe cannot read the video")
        XCTAssertGreaterThanOrEqual(frames, 1)
        XCTAssertLessThan(frames, 1000, "the run should end when the reader goes away")
    }

    /// Starts the binary with `arguments`, stdout and stderr piped, and reads stdout until its first whole line.
    private func startReadingFirstLine(_ arguments: [String]) throws -> (Process, Pipe, Pipe, Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        var received = Data()
        while !received.contains(0x0a) {
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            received += chunk
        }
        return (process, stdout, stderr, received)
    }
}
