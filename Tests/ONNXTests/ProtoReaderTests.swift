import XCTest
@testable import ONNX

final class ProtoReaderTests: XCTestCase {
    private func read<R>(_ bytes: [UInt8], _ body: (inout ProtoReader) throws -> R) throws -> R {
        try bytes.withUnsafeBytes { raw in
            var r = ProtoReader(raw)
            return try body(&r)
        }
    }

    func testVarintsFixedAndNegativeInt64() throws {
        // 300 = 0xAC 0x02 (protobuf spec example); -2 as int64 takes 10 bytes.
        var w = ProtoWriter()
        w.int(1, 300); w.int(2, -2); w.float(3, 1.5)
        let got = try read(w.bytes) { r -> [String] in
            var out: [String] = []
            while let (f, t) = try r.nextField() {
                switch t {
                case .varint: out.append("\(f):\(try r.int64())")
                case .fixed32: out.append("\(f):\(try r.float())")
                default: try r.skip(t)
                }
            }
            return out
        }
        XCTAssertEqual(Array(w.bytes.prefix(3)), [0x08, 0xAC, 0x02])
        XCTAssertEqual(got, ["1:300", "2:-2", "3:1.5"])
    }

    func testPackedAndUnpackedRepeatedInts() throws {
        var w = ProtoWriter()
        w.packedInts(1, [1, 200, -1])
        w.int(1, 7)                     // an unpacked element of the same field
        let v = try read(w.bytes) { r -> [Int64] in
            var out: [Int64] = []
            while let (_, t) = try r.nextField() { try r.repeatedInt64(t, into: &out) }
            return out
        }
        XCTAssertEqual(v, [1, 200, -1, 7])
    }

    func testTruncationAndBadKeysThrow() {
        // A varint whose continuation bit runs off the end.
        XCTAssertThrowsError(try read([0x08, 0xFF]) { r in _ = try r.nextField(); _ = try r.varint() }) { e in
            XCTAssertEqual(e as? ProtoError, .truncated(offset: 1, "varint"))
        }
        // A length-delimited field claiming 100 bytes with 2 present.
        XCTAssertThrowsError(try read([0x0A, 100, 1, 2]) { r in _ = try r.nextField(); _ = try r.lengthDelimited() }) { e in
            guard case .truncated(let off, _)? = e as? ProtoError else { return XCTFail("\(e)") }
            XCTAssertEqual(off, 1)
        }
        // Field number 0 is invalid.
        XCTAssertThrowsError(try read([0x00, 0x01]) { r in _ = try r.nextField() })
        // Wire type 3 (groups) is rejected.
        XCTAssertThrowsError(try read([0x0B]) { r in _ = try r.nextField() })
    }

    func testUnknownFieldsAreSkipped() throws {
        var w = ProtoWriter()
        w.string(99, "future field")
        w.float(98, 3)
        w.int(1, 42)
        let v = try read(w.bytes) { r -> Int64? in
            var found: Int64?
            while let (f, t) = try r.nextField() { if f == 1 { found = try r.int64() } else { try r.skip(t) } }
            return found
        }
        XCTAssertEqual(v, 42)
    }

    func testHalfToFloat() {
        XCTAssertEqual(halfToFloat(0x3C00), 1)
        XCTAssertEqual(halfToFloat(0xC000), -2)
        XCTAssertEqual(halfToFloat(0x0001), Float(sign: .plus, exponent: -24, significand: 1))
        XCTAssertTrue(halfToFloat(0x7C00).isInfinite)
    }
}
