import Foundation
import TestSupport
import XCTest
@testable import Tensor

final class SafeTensorsTests: XCTestCase {
    private var dir: URL!
    override func setUp() { dir = TestPaths.temporaryDirectory("safetensors") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    private func sample() -> [String: Tensor] {
        var rng = TestRandom(seed: 301)
        return ["backbone.body.conv1.weight": rng.tensor([4, 3, 3, 3], -8, 8),
                "backbone.body.bn1.bias": rng.tensor([4]),
                "scalar": Tensor(shape: [], data: [1.5])]
    }

    func testRoundTripF32WithMetadata() throws {
        let url = dir.appendingPathComponent("w.safetensors")
        let t = sample()
        try SafeTensorsWriter.write(t, metadata: ["architecture": "resnet18-fpn", "bn_eps": "0.0"], to: url)
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(f.metadata, ["architecture": "resnet18-fpn", "bn_eps": "0.0"])
        XCTAssertEqual(f.keys, t.keys.sorted())
        for (k, v) in t {
            XCTAssertEqual(f.shape(k), v.shape)
            XCTAssertEqual(try f.tensor(k).array, v.array, k)
        }
        XCTAssertEqual(f.entries["backbone.body.conv1.weight"]?.dtype, .f32)
    }

    func testHalfPrecisionConversions() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, 65504, 6.1035156e-05, 5.9604645e-08, 0.1, 3.140625, -1e-3]
        let t = Tensor(shape: [values.count], data: values)
        for dtype in [SafeTensorsDType.f16, .bf16] {
            let url = dir.appendingPathComponent("\(dtype.rawValue).safetensors")
            try SafeTensorsWriter.write(["x": t], dtype: dtype, to: url)
            let f = try SafeTensorsFile(url: url)
            XCTAssertEqual(f.entries["x"]?.dtype, dtype)
            XCTAssertEqual(f.entries["x"]?.range.count, values.count * 2)
            let got = try f.tensor("x").array
            for (g, v) in zip(got, values) {
                let rel: Float = dtype == .f16 ? 1e-3 : 8e-3
                XCTAssertEqual(g, v, accuracy: max(abs(v) * rel, dtype == .f16 ? 6e-8 : 1e-38), "\(dtype) \(v)")
            }
        }
        // Exact bit patterns: F16 0x3C00 = 1.0, 0xC000 = -2, 0x7C00 = inf; BF16 0x3F80 = 1.0, 0x4049 = 3.140625.
        let url = dir.appendingPathComponent("bits.safetensors")
        try writeRaw(url, header: #"{"h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]}}"#,
                     data: [0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C, 0x80, 0x3F, 0x49, 0x40])
        let f = try SafeTensorsFile(url: url)
        XCTAssertEqual(try f.tensor("h").array, [1, -2, .infinity])
        XCTAssertEqual(try f.tensor("b").array, [1, 3.140625])
    }

    private func writeRaw(_ url: URL, header: String, data: [UInt8], lengthOverride: UInt64? = nil) throws {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian) { Array($0) }
        bytes += h + data
        try Data(bytes).write(to: url)
    }

    /// Opening `url` throws a reason passing `check`, in a message naming the file (and `field` when given).
    private func expectError(_ url: URL, _ check: (SafeTensorsError.Reason) -> Bool, _ what: String, field: String? = nil,
                             file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try SafeTensorsFile(url: url)
            XCTFail("\(what): opened without error", file: file, line: line)
        } catch let e as SafeTensorsError {
            XCTAssertTrue(check(e.reason), "\(what): unexpected reason \(e.reason)", file: file, line: line)
            XCTAssertTrue(e.description.contains(url.lastPathComponent), "\(what): message must name the file: \(e)", file: file, line: line)
            if let field {
                XCTAssertTrue(e.description.contains(field), "\(what): message must name \(field): \(e)", file: file, line: line)
            }
        } catch {
            XCTFail("\(what): wrong error type \(error)", file: file, line: line)
        }
    }

    func testBadFilesGiveClearErrors() throws {
        let good = dir.appendingPathComponent("good.safetensors")
        try SafeTensorsWriter.write(sample(), to: good)
        let bytes = try Data(contentsOf: good)

        let missing = dir.appendingPathComponent("missing.safetensors")
        expectError(missing, { if case .cannotOpen = $0 { return true }; return false }, "missing file")

        let tiny = dir.appendingPathComponent("tiny.safetensors")
        try Data([1, 2, 3]).write(to: tiny)
        expectError(tiny, { $0 == .truncated(fileSize: 3) }, "3-byte file")

        let truncated = dir.appendingPathComponent("truncated.safetensors")
        try bytes.prefix(bytes.count - 10).write(to: truncated)
        expectError(truncated, { if case .offsetsOutOfRange = $0 { return true }; return false }, "truncated data")

        let headerCut = dir.appendingPathComponent("headercut.safetensors")
        try bytes.prefix(40).write(to: headerCut)
        expectError(headerCut, { if case .headerLengthBeyondFile = $0 { return true }; return false }, "truncated header")

        let huge = dir.appendingPathComponent("huge.safetensors")
        try writeRaw(huge, header: "{}", data: [], lengthOverride: UInt64.max)
        expectError(huge, { if case .headerLengthBeyondFile = $0 { return true }; return false }, "absurd header length")

        let badJSON = dir.appendingPathComponent("badjson.safetensors")
        try writeRaw(badJSON, header: #"{"x": {"dtype": "F32", "#, data: [])
        expectError(badJSON, { if case .badHeader = $0 { return true }; return false }, "bad JSON")

        let notObject = dir.appendingPathComponent("array.safetensors")
        try writeRaw(notObject, header: "[1, 2]", data: [])
        expectError(notObject, { if case .badHeader = $0 { return true }; return false }, "JSON array header")

        let noOffsets = dir.appendingPathComponent("nooffsets.safetensors")
        try writeRaw(noOffsets, header: #"{"x":{"dtype":"F32","shape":[1]}}"#, data: [0, 0, 0, 0])
        expectError(noOffsets, { if case .badHeader = $0 { return true }; return false }, "entry without offsets")

        let dtype = dir.appendingPathComponent("dtype.safetensors")
        try writeRaw(dtype, header: #"{"x":{"dtype":"F24","shape":[1],"data_offsets":[0,3]}}"#, data: [0, 0, 0])
        expectError(dtype, { $0 == .unknownDType(key: "x", dtype: "F24") }, "unknown dtype")

        let range = dir.appendingPathComponent("range.safetensors")
        try writeRaw(range, header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: [UInt8](repeating: 0, count: 8))
        expectError(range, { $0 == .offsetsOutOfRange(key: "x", begin: 4, end: 12, dataSize: 8, expectedBytes: 8) }, "offsets beyond data")

        let sizeMismatch = dir.appendingPathComponent("size.safetensors")
        try writeRaw(sizeMismatch, header: #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        expectError(sizeMismatch, { if case .offsetsOutOfRange = $0 { return true }; return false }, "offsets disagree with shape")

        let badMeta = dir.appendingPathComponent("meta.safetensors")
        try writeRaw(badMeta, header: #"{"__metadata__":{"eps":0.0}}"#, data: [])
        expectError(badMeta, { if case .badHeader = $0 { return true }; return false }, "non-string metadata")

        // Non-float tensors open but do not load as Float32; absent keys name the key.
        let ints = dir.appendingPathComponent("ints.safetensors")
        try writeRaw(ints, header: #"{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#, data: [UInt8](repeating: 0, count: 8))
        let f = try SafeTensorsFile(url: ints)
        XCTAssertThrowsError(try f.tensor("n")) { XCTAssertEqual(($0 as? SafeTensorsError)?.reason, .notFloat(key: "n", dtype: "I64")) }
        XCTAssertThrowsError(try f.tensor("nope")) { XCTAssertTrue("\($0)".contains("'nope'")) }
    }

    /// Each refusal names the file and the tensor, and raises the process's peak RSS by less than 4 MiB.
    func testAbsurdSizesAreRefusedBeforeAllocating() throws {
        // 10^12 elements against a 4-byte data section.
        let trillion = dir.appendingPathComponent("trillion.safetensors")
        try writeRaw(trillion, header: #"{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        assertSmallPeakMemoryGrowth("10^12 elements") {
            expectError(trillion, { $0 == .offsetsOutOfRange(key: "w", begin: 0, end: 4, dataSize: 4, expectedBytes: 4_000_000_000_000) },
                        "10^12 elements", field: "tensor 'w'")
        }
        // 2^32 x 2^32 wraps to 0 in 64 bits: it used to pass as an empty tensor and trap in `tensor(_:)`.
        let wrap = dir.appendingPathComponent("wrap.safetensors")
        try writeRaw(wrap, header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#, data: [])
        assertSmallPeakMemoryGrowth("overflowing shape") {
            expectError(wrap, { if case .badHeader(let m) = $0 { return m == "entry 'w' has shape [4294967296, 4294967296], too large to address" }; return false },
                        "overflowing shape", field: "entry 'w'")
        }
        let rank = dir.appendingPathComponent("rank.safetensors")
        let ones = Array(repeating: "1", count: 40).joined(separator: ",")
        try writeRaw(rank, header: #"{"w":{"dtype":"F32","shape":["# + ones + #"],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])
        assertSmallPeakMemoryGrowth("rank 40") {
            expectError(rank, { $0 == .badHeader("entry 'w' has 40 dims (limit \(SafeTensorsFile.maxRank))") }, "rank 40", field: "entry 'w'")
        }
        // A zero dimension makes the tensor empty whatever the others claim.
        let empty = dir.appendingPathComponent("empty.safetensors")
        try writeRaw(empty, header: #"{"w":{"dtype":"F32","shape":[0,1000000],"data_offsets":[0,0]}}"#, data: [])
        XCTAssertEqual(try SafeTensorsFile(url: empty).tensor("w").shape, [0, 1_000_000])
    }

    func testStrictVerificationListsEverything() throws {
        let url = dir.appendingPathComponent("verify.safetensors")
        try SafeTensorsWriter.write(sample(), to: url)
        let f = try SafeTensorsFile(url: url)
        XCTAssertNoThrow(try f.verify(expected: ["backbone.body.conv1.weight": [4, 3, 3, 3], "backbone.body.bn1.bias": [4], "scalar": []]))
        do {
            try f.verify(expected: ["backbone.body.conv1.weight": [4, 3, 7, 7], "backbone.body.bn1.bias": [4],
                                    "backbone.body.bn1.weight": [4], "fpn.x": [1]])
            XCTFail("verification passed")
        } catch let e as WeightMismatchError {
            XCTAssertEqual(e.missing, ["backbone.body.bn1.weight", "fpn.x"])
            XCTAssertEqual(e.unexpected, ["scalar"])
            XCTAssertEqual(e.misshaped, [.init(key: "backbone.body.conv1.weight", expected: [4, 3, 7, 7], actual: [4, 3, 3, 3])])
            let text = e.description
            for s in ["verify.safetensors", "missing", "fpn.x", "unexpected", "scalar", "mis-shaped", "[4, 3, 7, 7]"] {
                XCTAssertTrue(text.contains(s), "description lacks \(s): \(text)")
            }
        }
        // Ignored keys are not reported as unexpected.
        XCTAssertNoThrow(try f.verify(expected: ["backbone.body.conv1.weight": [4, 3, 3, 3], "backbone.body.bn1.bias": [4]],
                                      ignoring: { $0 == "scalar" }))
    }
}
