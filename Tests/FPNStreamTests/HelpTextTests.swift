import Foundation
import TestSupport
import XCTest

/// `--help` at 80 columns: help strings are single lines wrapped once by ArgumentParser, so no line is too long,
/// no prose line stops short of the width, and no example is broken over two lines.
final class HelpTextTests: XCTestCase {
    static let commands = [[], ["process"], ["tail"], ["calibrate"], ["features"], ["track-dets"], ["onnx-run"],
                           ["detect-frames"], ["bench"], ["bench", "decode"], ["bench", "tracker"], ["bench", "ops"],
                           ["bench", "backbone"], ["bench", "detector"], ["bench", "temporal"]]

    func testHelpIsWrappedOnceAt80Columns() throws {
        let binary = try XCTUnwrap(ExternalTools.builtProduct("fpnstream"), "run `swift build --build-tests` first")
        var env = ProcessInfo.processInfo.environment
        env["COLUMNS"] = "80"
        for command in Self.commands {
            let r = try ExternalTools.run(binary, command + ["--help"], environment: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            let lines = r.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let name = (["fpnstream"] + command).joined(separator: " ")
            for line in lines where line.count > 80 && !line.hasPrefix("USAGE:") {  // ArgumentParser does not wrap usage
            XCTFail("\(name): line over 80 columns: \(line)") }
            // The overview and discussion (before USAGE): prose lines are full, indented (example) lines whole.
            let top = Array(lines.prefix { !$0.hasPrefix("USAGE:") })
            for (line, next) in zip(top, top.dropFirst()) where !next.isEmpty {
                let nextIndented = next.hasPrefix(" ")
                if line.hasPrefix(" ") {
                    XCTAssertTrue(nextIndented, "\(name): example broken over two lines:\n\(line)\n\(next)")
                } else if !line.isEmpty && !nextIndented && !line.hasSuffix(":") {
                    let firstWord = next.split(separator: " ").first.map(String.init) ?? ""
                    XCTAssertGreaterThanOrEqual(line.count + 1 + firstWord.count, 80,  // ArgumentParser keeps lines under 80
                                         "\(name): ragged line (the next word would fit):\n\(line)\n\(next)")
                }
            }
        }
    }
}
