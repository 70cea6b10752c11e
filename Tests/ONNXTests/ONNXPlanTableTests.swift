import Foundation
import TestSupport
import XCTest
@testable import ONNX

/// The lowering table is the one list of supported ops: docs/onnx.md and the unsupported-op error agree with it.
final class ONNXPlanTableTests: XCTestCase {
    /// The op names in the first column of the table under docs/onnx.md's "## Supported ops" heading.
    static func documentedOps() throws -> Set<String> {
        let doc = try String(contentsOf: TestPaths.root.appendingPathComponent("docs/onnx.md"), encoding: .utf8)
        let lines = doc.components(separatedBy: "\n")
        let start = try XCTUnwrap(lines.firstIndex(of: "## Supported ops"), "docs/onnx.md has no '## Supported ops'")
        let rows = lines[(start + 1)...].drop { !$0.hasPrefix("|") }.prefix { $0.hasPrefix("|") }
        XCTAssertGreaterThan(rows.count, 2, "no table under '## Supported ops'")
        var ops: Set<String> = []
        for row in rows.dropFirst(2) {  // header and separator
            let firstCell = row.split(separator: "|", omittingEmptySubsequences: true).first ?? ""
            for name in firstCell.split(separator: ",") {
                ops.insert(name.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: ""))
            }
        }
        return ops
    }

    func testTableOpsAreTheOpsDocsONNXDocumentsAsSupported() throws {
        let documented = try Self.documentedOps()
        let lowered = Set(ONNXPlan.lowerings.keys)
        XCTAssertEqual(lowered.subtracting(documented).sorted(), [], "lowered but not in docs/onnx.md")
        XCTAssertEqual(documented.subtracting(lowered).sorted(), [], "in docs/onnx.md but without a lowering")
        XCTAssertEqual(ONNXPlan.supportedOps, lowered)
    }

    func testUnsupportedOpErrorListsTheTable() throws {
        var b = ONNXBuilder()
        b.node("LSTM", ["x"], "y", name: "rnn")
        b.outputs = ["y"]
        XCTAssertThrowsError(try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))) { e in
            let m = "\(e)"
            let listed = "supported ops: " + ONNXPlan.lowerings.keys.sorted().joined(separator: ", ") + "\n"
            XCTAssertTrue(m.contains(listed), m)
            XCTAssertTrue(m.hasSuffix("rnn [LSTM]: op not supported"), m)
        }
    }
}
