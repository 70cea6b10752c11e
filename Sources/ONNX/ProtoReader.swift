/// A minimal reader of the protobuf wire format (proto2/proto3 binary encoding), enough to decode ONNX's
/// `ModelProto` without generated code: varints, 32/64-bit fixed fields, length-delimited fields, and the
/// skipping of fields it does not know (protobuf's forward compatibility). Every read is bounds-checked; a
/// malformed or truncated buffer throws `ProtoError` rather than trapping.
struct ProtoReader {
    /// Wire types of protobuf's encoding (groups 3/4 are obsolete and rejected).
    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    private let bytes: UnsafeRawBufferPointer
    /// Current byte offset from the start of the whole buffer (kept absolute for error messages).
    private(set) var offset: Int
    private let end: Int

    /// Reads `bytes[range]`; `bytes` must stay alive while the reader is used.
    init(_ bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.bytes = bytes
        let r = range ?? 0..<bytes.count
        self.offset = r.lowerBound
        self.end = r.upperBound
    }

    var isAtEnd: Bool { offset >= end }

    /// The next field's number and wire type, or nil at the end of this message.
    mutating func nextField() throws -> (number: Int, type: WireType)? {
        guard offset < end else { return nil }
        let at = offset
        let key = try varint()
        let number = Int(key >> 3)
        guard number > 0, let type = WireType(rawValue: UInt8(key & 7)), type != .startGroup, type != .endGroup else {
            throw ProtoError.malformed(offset: at, "bad field key \(key)")
        }
        return (number, type)
    }

    /// A base-128 varint (at most 10 bytes).
    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while true {
            guard offset < end else { throw ProtoError.truncated(offset: start, "varint") }
            let b = bytes[offset]
            offset += 1
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            guard shift < 64 else { throw ProtoError.malformed(offset: start, "varint longer than 10 bytes") }
        }
    }

    /// An `int64`/`int32` field (two's complement in a varint; negative int32 use 10 bytes too).
    mutating func int64() throws -> Int64 { Int64(bitPattern: try varint()) }

    /// Little-endian 4 bytes.
    mutating func fixed32() throws -> UInt32 {
        guard end - offset >= 4 else { throw ProtoError.truncated(offset: offset, "fixed32") }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[offset + k]) << (8 * UInt32(k)) }
        offset += 4
        return v
    }

    /// Little-endian 8 bytes.
    mutating func fixed64() throws -> UInt64 {
        guard end - offset >= 8 else { throw ProtoError.truncated(offset: offset, "fixed64") }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[offset + k]) << (8 * UInt64(k)) }
        offset += 8
        return v
    }

    mutating func float() throws -> Float { Float(bitPattern: try fixed32()) }
    mutating func double() throws -> Double { Double(bitPattern: try fixed64()) }

    /// The byte range of a length-delimited field's payload (absolute offsets), advancing past it.
    mutating func lengthDelimited() throws -> Range<Int> {
        let at = offset
        let n = try varint()
        guard n <= UInt64(end - offset) else {
            throw ProtoError.truncated(offset: at, "length-delimited field of \(n) bytes, \(end - offset) left")
        }
        let r = offset..<(offset + Int(n))
        offset += Int(n)
        return r
    }

    /// A nested message reader over a length-delimited field.
    mutating func message() throws -> ProtoReader {
        ProtoReader(bytes, range: try lengthDelimited())
    }

    /// A UTF-8 string field (invalid UTF-8 is repaired, never fatal: names are only used for messages and lookups)
    /// of at most `ONNXLimits.maxStringBytes`.
    mutating func string() throws -> String {
        let at = offset
        let r = try lengthDelimited()
        guard r.count <= ONNXLimits.maxStringBytes else {
            throw ProtoError.tooLarge(offset: at, "string of \(r.count) bytes (limit \(ONNXLimits.maxStringBytes))")
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[r]), as: UTF8.self)
    }

    /// A bytes field, copied.
    mutating func data() throws -> [UInt8] {
        [UInt8](UnsafeRawBufferPointer(rebasing: bytes[try lengthDelimited()]))
    }

    /// Skips a field of the given wire type.
    mutating func skip(_ type: WireType) throws {
        switch type {
        case .varint: _ = try varint()
        case .fixed64: _ = try fixed64()
        case .fixed32: _ = try fixed32()
        case .lengthDelimited: _ = try lengthDelimited()
        case .startGroup, .endGroup: throw ProtoError.malformed(offset: offset, "group fields are not supported")
        }
    }

    /// Appends a repeated integer field, accepting both packed (length-delimited) and unpacked encodings.
    mutating func repeatedInt64(_ type: WireType, into out: inout [Int64]) throws {
        if type == .lengthDelimited {
            var sub = try message()
            while !sub.isAtEnd { out.append(try sub.int64()) }
        } else if type == .varint {
            out.append(try int64())
        } else {
            throw ProtoError.malformed(offset: offset, "integer field with wire type \(type)")
        }
    }

    /// Appends a repeated float field, packed or unpacked.
    mutating func repeatedFloat(_ type: WireType, into out: inout [Float]) throws {
        if type == .lengthDelimited {
            var sub = try message()
            guard (sub.end - sub.offset) % 4 == 0 else {
                throw ProtoError.malformed(offset: sub.offset, "packed floats of \(sub.end - sub.offset) bytes")
            }
            out.reserveCapacity(out.count + (sub.end - sub.offset) / 4)
            while !sub.isAtEnd { out.append(try sub.float()) }
        } else if type == .fixed32 {
            out.append(try float())
        } else {
            throw ProtoError.malformed(offset: offset, "float field with wire type \(type)")
        }
    }

    /// Appends a repeated double field, packed or unpacked.
    mutating func repeatedDouble(_ type: WireType, into out: inout [Double]) throws {
        if type == .lengthDelimited {
            var sub = try message()
            while !sub.isAtEnd { out.append(try sub.double()) }
        } else if type == .fixed64 {
            out.append(try double())
        } else {
            throw ProtoError.malformed(offset: offset, "double field with wire type \(type)")
        }
    }

    /// Checks a field has the expected wire type.
    func expect(_ type: WireType, is wanted: WireType, field: String) throws {
        guard type == wanted else {
            throw ProtoError.malformed(offset: offset, "field \(field) has wire type \(type), expected \(wanted)")
        }
    }
}

/// A protobuf decoding failure, with the byte offset where it was found.
enum ProtoError: Error, Equatable {
    case truncated(offset: Int, String)
    case malformed(offset: Int, String)
    /// A declared size beyond one of `ONNXLimits`.
    case tooLarge(offset: Int, String)
}
