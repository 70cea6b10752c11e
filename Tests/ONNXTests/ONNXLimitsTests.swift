import Foundation
@testable import ONNX
import TestSupport
import XCTest

/// Files declaring absurd sizes fail with a `.tooLarge` message naming the file and the field, before anything
/// of the declared size is allocated: refusing one raises the process's peak RSS by less than 4 MiB.
final class ONNXLimitsTests: XCTestCase {
    private var dir: URL!
    override func setUp() { dir = TestPaths.temporaryDirectory("onnx-limits") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// A one-Relu model whose graph also holds `extra` (raw graph fields).
    private func model(_ extra: (inout ProtoWriter) -> Void) -> Data {
        var m = ProtoWriter()
        m.int(1, 7)
        m.message(8) { o in o.string(1, ""); o.int(2, 13) }
        m.message(7) { g in
            g.message(1) { n in n.string(1, "x"); n.string(2, "y"); n.string(4, "Relu") }
            extra(&g)
            g.message(11) { v in v.string(1, "x") }
            g.message(12) { v in v.string(1, "y") }
        }
        return Data(m.bytes)
    }

    private func expectTooLarge(_ bytes: Data, _ name: String, contains: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        let url = dir.appendingPathComponent(name)
        try! bytes.write(to: url)
        func refuse() {
            XCTAssertThrowsError(try ONNXNetwork(contentsOf: url), file: file, line: line) { e in
                guard let e = e as? ONNXError, case .tooLarge = e.kind else { return XCTFail("\(e)", file: file, line: line) }
                let m = "\(e)"
                XCTAssertTrue(m.contains(url.path) && m.contains("too large"), m, file: file, line: line)
                for c in contains { XCTAssertTrue(m.contains(c), "\(m) lacks \(c)", file: file, line: line) }
            }
        }
        assertSmallPeakMemoryGrowth(name, file: file, line: line, refuse)
    }

    func testTensorClaimingATrillionElementsIsRefused() {
        let bytes = model { g in
            g.message(5) { t in t.packedInts(1, [1_000_000, 1_000_000]); t.int(2, 1); t.string(8, "w") }
        }
        expectTooLarge(bytes, "trillion.onnx", contains: ["tensor w", "[1000000, 1000000]", "\(ONNXLimits.maxTensorElements) elements"])
    }

    func testDimsWhoseProductOverflowsAreRefusedNotTrapped() {
        // 2^40 cubed wraps a 64-bit product; an unchecked multiply would trap.
        let bytes = model { g in
            g.message(5) { t in t.packedInts(1, [1 << 40, 1 << 40, 1 << 40]); t.int(2, 1); t.string(8, "big") }
        }
        expectTooLarge(bytes, "overflow.onnx", contains: ["tensor big"])
    }

    func testUnknownElementTypeWithHugeDimsIsStillRefused() {
        // An element type no op reads is kept empty; its dims must still be bounded.
        let bytes = model { g in
            g.message(5) { t in t.packedInts(1, [1 << 20, 1 << 20]); t.int(2, 14); t.string(8, "c64") }
        }
        expectTooLarge(bytes, "complex.onnx", contains: ["tensor c64"])
    }

    func testTooManyDimsIsRefused() {
        let bytes = model { g in
            g.message(5) { t in t.packedInts(1, [Int64](repeating: 1, count: 40)); t.int(2, 1); t.string(8, "deep") }
        }
        expectTooLarge(bytes, "rank.onnx", contains: ["tensor deep", "40 dims"])
    }

    func testGraphWithTooManyNodesIsRefused() {
        // Each empty node is 2 bytes; they are counted before any is decoded, so none is built.
        let bytes = model { g in
            let empty: [UInt8] = [0x0A, 0x00]
            g.bytes.reserveCapacity(ONNXLimits.maxNodes * 2 + 64)
            for _ in 0..<ONNXLimits.maxNodes { g.bytes += empty }
        }
        expectTooLarge(bytes, "nodes.onnx", contains: ["more than \(ONNXLimits.maxNodes) nodes"])
    }

    func testOverlongStringIsRefused() {
        let bytes = model { g in g.string(2, String(repeating: "n", count: ONNXLimits.maxStringBytes + 1)) }
        expectTooLarge(bytes, "name.onnx", contains: ["string of \(ONNXLimits.maxStringBytes + 1) bytes"])
    }

    func testNodeOverwritingTheInputIsRefused() throws {
        // Found by the fuzzer: a node writing the graph input's name left the value table one slot short.
        let bytes = model { g in g.message(1) { n in n.string(1, "y"); n.string(2, "x"); n.string(4, "Relu") } }
        XCTAssertThrowsError(try ONNXNetwork(model: try ONNXModel(bytes: bytes))) { e in
            XCTAssertTrue("\(e)".contains("writes x, which the graph input or an earlier node already produces"), "\(e)")
        }
    }

    /// A Reshape whose target dims multiply past Int.max (found by the fuzzer: Fuzz/regressions/onnx/
    /// reshape-target-overflow) is an error, not an overflow trap; so is one with two -1s or a negative dim.
    func testReshapeTargetWhoseProductOverflowsIsAnError() {
        let x = [1, 3, 8, 8]
        for target: [Int64] in [[1 << 40, 1 << 40, 1 << 40], [-1, 1 << 62, 1 << 62], [-1, -1], [1, -3, 8, 8], [1 << 62, 0, 4]] {
            XCTAssertThrowsError(try ONNXPlan.AnyRankOp.reshape(target, allowZero: true).outputShape(x), "\(target)")
        }
        XCTAssertEqual(try ONNXPlan.AnyRankOp.reshape([1, -1], allowZero: false).outputShape(x), [1, 192])
        XCTAssertEqual(try ONNXPlan.AnyRankOp.reshape([0, 3, -1], allowZero: false).outputShape(x), [1, 3, 64])
    }

    /// Float constants read as integers (Reshape targets, Slice bounds, Split sizes, Squeeze axes, Resize sizes)
    /// that are NaN, infinite or beyond 64 bits are an error, not a conversion trap (found by the fuzzer:
    /// Fuzz/regressions/onnx/reshape-target-not-finite); so is an integer constant folded from a division by zero.
    func testNonIntegerFloatsReadAsIntegersAreErrors() throws {
        /// x [1, 3, 4, 4] reshaped to a float constant target.
        func reshape(to target: [Float]) throws -> ONNXNetwork {
            var b = ONNXBuilder()
            b.inputDims = [1, 3, 4, 4]
            b.constant("shape", [target.count], target)
            b.node("Reshape", ["x", "shape"], "y")
            b.outputs = ["y"]
            return try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))
        }
        for bad: Float in [.nan, .infinity, -.infinity, 1e30] {
            XCTAssertThrowsError(try reshape(to: [1, bad])) { e in
                XCTAssertTrue("\(e)".contains("the target shape must be integers"), "\(bad): \(e)")
            }
        }
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 4, 4]
        b.intConstant("a", [1, 48]); b.intConstant("zero", [0, 0])
        b.node("Div", ["a", "zero"], "q")
        b.node("Reshape", ["x", "q"], "y")
        b.outputs = ["y"]
        XCTAssertThrowsError(try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))) { e in
            XCTAssertTrue("\(e)".contains("integer result is NaN, infinite or beyond 64 bits"), "\(e)")
        }
        // The same graph with a float target that is a whole number still plans.
        XCTAssertNoThrow(try reshape(to: [1, 48]))
    }

    func testOversizedFileIsRefusedUnread() throws {
        let url = dir.appendingPathComponent("huge.onnx")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
        let h = try FileHandle(forWritingTo: url)
        try h.truncate(atOffset: UInt64(ONNXLimits.maxFileBytes) + 1)  // sparse: nothing is written or read
        try h.close()
        func refuse() {
            XCTAssertThrowsError(try ONNXModel(contentsOf: url)) { e in
                XCTAssertEqual("\(e)", "ONNX model \(url.path): too large: file of \(ONNXLimits.maxFileBytes + 1) bytes (limit \(ONNXLimits.maxFileBytes))")
            }
        }
        assertSmallPeakMemoryGrowth("2 GiB file", refuse)
    }

    func testDeeplyNestedSubgraphsAreSkippedWithoutRecursion() throws {
        // An attribute holding a graph holding a node holding a graph ... 5000 levels: skipped as one field.
        var inner = ProtoWriter()
        for _ in 0..<5000 {
            var node = ProtoWriter()
            node.message(5) { a in a.string(1, "body"); a.bytes(6, inner.bytes); a.int(20, 5) }
            var graph = ProtoWriter()
            graph.bytes(1, node.bytes)
            inner = graph
        }
        let bytes = model { g in
            g.message(1) { n in
                n.string(1, "y"); n.string(2, "z"); n.string(4, "Relu")
                n.message(5) { a in a.string(1, "body"); a.bytes(6, inner.bytes); a.int(20, 5) }
            }
        }
        let m = try ONNXModel(bytes: bytes)
        XCTAssertEqual(m.graph.nodes.count, 2)
        XCTAssertEqual(m.graph.nodes[1].attributes["body"], .other("graph"))
    }
}
