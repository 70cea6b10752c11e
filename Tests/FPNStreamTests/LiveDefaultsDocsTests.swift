import FPNStream
import Foundation
import StagePipeline
import TestSupport
import XCTest

/// The live drop policy and queue size are defined once (`LiveSpec.defaultDropPolicy`, `LiveDropPolicy`); the
/// pipeline YAML, `tail`, `pipelines/default.yaml` and the docs must all say the same.
final class LiveDefaultsDocsTests: XCTestCase {
    let policy = LiveSpec.defaultDropPolicy

    /// The cells of the markdown table row whose first cell is `key` (in backticks).
    func tableRow(_ doc: String, key: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        let text = try String(contentsOf: TestPaths.root.appendingPathComponent(doc), encoding: .utf8)
        // Cells are split on " | " (escaped pipes `\|` inside a cell stay).
        let row = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("| `\(key)") }, "\(doc): no row for \(key)",
                                file: file, line: line)
        return row.replacingOccurrences(of: "\\|", with: "¦").split(separator: "|")
            .map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "¦", with: "|") }
    }

    func testDefaultsOfTheCode() {
        XCTAssertEqual(policy, .keepLatest)
        XCTAssertEqual(LiveSpec().dropPolicy, policy)
        XCTAssertEqual(LiveSpec().effectiveQueueSize, policy.defaultQueueSize)
        let options = LiveRunOptions(inputs: ["rtsp://x/y"])
        XCTAssertEqual(options.dropPolicy, policy.queuePolicy)
        XCTAssertEqual(options.queueCapacity, policy.defaultQueueSize)
        XCTAssertEqual(LiveDropPolicy.keepLatest.queuePolicy, .dropOldest)
        XCTAssertEqual(LiveDropPolicy.keepLatest.defaultQueueSize, 1)
    }

    func testPipelineYAMLAcceptsTheCLINames() throws {
        for p in LiveDropPolicy.allCases {
            let spec = try PipelineSpec.parse(yaml: "input:\n  live:\n    drop_policy: \(p.rawValue)\n", file: "x.yaml")
            XCTAssertEqual(spec.input.live.dropPolicy, p)
            XCTAssertEqual(spec.input.live.effectiveQueueSize, p.defaultQueueSize)
        }
        XCTAssertThrowsError(try PipelineSpec.parse(yaml: "input:\n  live:\n    drop_policy: keep-latest\n    queue_size: 3\n",
                                                    file: "x.yaml")) { error in
            XCTAssertEqual("\(error)", "x.yaml:4: input.live.queue_size: keep-latest keeps exactly one frame; use "
                           + "drop-oldest with queue_size 3")
        }
        let defaults = try PipelineSpec.load(path: TestPaths.root.appendingPathComponent("pipelines/default.yaml").path)
        XCTAssertEqual(defaults.input.live.dropPolicy, policy, "pipelines/default.yaml spells out the defaults")
        XCTAssertEqual(defaults.input.live.effectiveQueueSize, LiveSpec().effectiveQueueSize)
    }

    func testDocsStateTheDefaults() throws {
        let dropRow = try tableRow("docs/pipelines.md", key: "input.live.drop_policy")
        XCTAssertEqual(dropRow[2], "`\(policy.rawValue)`", "docs/pipelines.md default column")
        for p in LiveDropPolicy.allCases { XCTAssertTrue(dropRow[1].contains("`\(p.rawValue)`"), "type column: \(p)") }
        let sizeRow = try tableRow("docs/pipelines.md", key: "input.live.queue_size")
        XCTAssertTrue(sizeRow[2].hasPrefix("`\(policy.defaultQueueSize)` for `\(policy.rawValue)`"), sizeRow[2])
        let liveRow = try tableRow("docs/live.md", key: "--drop-policy")
        XCTAssertTrue(liveRow[1].hasPrefix(policy.rawValue), "docs/live.md: \(liveRow[1])")

        let binary = try XCTUnwrap(ExternalTools.builtProduct("fpnstream"), "run `swift build --build-tests` first")
        let help = try ExternalTools.run(binary, ["tail", "--help"], environment: ["COLUMNS": "200"])
        XCTAssertTrue(help.stdoutText.contains("(default \(policy.rawValue))"), help.stdoutText)
    }
}
