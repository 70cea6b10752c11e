import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Element types of the safetensors format. Float types load as Float32; the others are recognised (so a file
/// holding them opens) but cannot be loaded as tensors.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8", bool = "BOOL"
    case f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }
}

/// A malformed or unreadable safetensors file, or a key it lacks. The description names the file.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// What went wrong.
    public enum Reason: Equatable, Sendable {
        /// open/stat/mmap failed (message from the OS).
        case cannotOpen(String)
        /// Shorter than the 8-byte header length field.
        case truncated(fileSize: Int)
        /// The header length field points past the end of the file (or is absurd).
        case headerLengthBeyondFile(headerLength: UInt64, fileSize: Int)
        /// The header is not a JSON object of the expected form.
        case badHeader(String)
        /// A tensor's dtype string is not a safetensors dtype.
        case unknownDType(key: String, dtype: String)
        /// A tensor's data_offsets are outside the data section or disagree with its shape and dtype.
        case offsetsOutOfRange(key: String, begin: Int, end: Int, dataSize: Int, expectedBytes: Int)
        /// `tensor(_:)` for a key the file does not have.
        case missingKey(String)
        /// `tensor(_:)` for a non-float tensor.
        case notFloat(key: String, dtype: String)
    }
    /// The file.
    public let file: URL
    /// What went wrong.
    public let reason: Reason

    /// "weights file 'x.safetensors': ...".
    public var description: String {
        let f = "weights file '\(file.path)'"
        switch reason {
        case .cannotOpen(let m): return "\(f): cannot open: \(m)"
        case .truncated(let size): return "\(f): truncated (\(size) bytes, shorter than the 8-byte header length)"
        case .headerLengthBeyondFile(let n, let size):
            return "\(f): header length \(n) goes beyond the end of the file (\(size) bytes) — truncated or not safetensors"
        case .badHeader(let m): return "\(f): bad header: \(m)"
        case .unknownDType(let k, let d): return "\(f): tensor '\(k)' has unknown dtype '\(d)'"
        case .offsetsOutOfRange(let k, let b, let e, let size, let bytes):
            return "\(f): tensor '\(k)' data_offsets [\(b), \(e)] invalid (data section \(size) bytes, shape and dtype need \(bytes))"
        case .missingKey(let k): return "\(f): no tensor '\(k)'"
        case .notFloat(let k, let d): return "\(f): tensor '\(k)' has dtype \(d), expected F32, F16, BF16 or F64"
        }
    }
}

/// Strict weight verification failure: every missing, unexpected and mis-shaped key at once.
public struct WeightMismatchError: Error, CustomStringConvertible, Equatable {
    /// A key present with another shape.
    public struct Misshaped: Equatable, Sendable {
        /// The key.
        public let key: String
        /// Shape the model expects.
        public let expected: [Int]
        /// Shape in the file.
        public let actual: [Int]
    }
    /// The weights file.
    public let file: URL
    /// Expected keys absent from the file (sorted).
    public let missing: [String]
    /// Keys in the file the model does not use (sorted).
    public let unexpected: [String]
    /// Keys with the wrong shape (sorted by key).
    public let misshaped: [Misshaped]

    /// Multi-line listing of all three kinds of mismatch.
    public var description: String {
        var lines = ["weights file '\(file.path)' does not match the model: \(missing.count) missing, \(unexpected.count) unexpected, \(misshaped.count) mis-shaped key(s)"]
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            lines.append("  \(title):")
            lines += items.prefix(50).map { "    \($0)" }
            if items.count > 50 { lines.append("    ... and \(items.count - 50) more") }
        }
        list("missing", missing)
        list("unexpected", unexpected)
        list("mis-shaped", misshaped.map { "\($0.key): expected \($0.expected), file has \($0.actual)" })
        return lines.joined(separator: "\n")
    }
}

/// A memory-mapped safetensors file (https://github.com/huggingface/safetensors format): an 8-byte little-endian
/// header length, a JSON header `{key: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then the
/// data section. Opening validates the whole header (dtypes, offsets within the data, sizes matching shapes);
/// tensors are converted to Float32 on `tensor(_:)`. Thread-safe for reading.
public final class SafeTensorsFile: @unchecked Sendable {
    /// One tensor's header entry.
    public struct Entry: Sendable, Equatable {
        /// Stored element type.
        public let dtype: SafeTensorsDType
        /// Shape.
        public let shape: [Int]
        /// Byte range inside the data section.
        public let range: Range<Int>
    }

    /// The file.
    public let url: URL
    /// `__metadata__` (string to string; model description such as architecture, variant, BN eps, classes).
    public let metadata: [String: String]
    /// Every tensor entry by key.
    public let entries: [String: Entry]
    /// Sorted keys.
    public var keys: [String] { entries.keys.sorted() }

    private let mapping: UnsafeMutableRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    /// Maps and validates `url`. Throws `SafeTensorsError` naming the file on any defect.
    public init(url: URL) throws {
        self.url = url
        func fail(_ r: SafeTensorsError.Reason) -> SafeTensorsError { SafeTensorsError(file: url, reason: r) }
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw fail(.cannotOpen(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail(.cannotOpen(String(cString: strerror(errno)))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw fail(.cannotOpen("not a regular file")) }
        let size = Int(st.st_size)
        guard size >= 8 else { throw fail(.truncated(fileSize: size)) }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw fail(.cannotOpen("mmap: " + String(cString: strerror(errno))))
        }
        mapping = m
        mappedSize = size
        do {
            let headerLength = m.loadUnaligned(as: UInt64.self).littleEndian
            guard headerLength <= UInt64(size - 8) else {
                throw fail(.headerLengthBeyondFile(headerLength: headerLength, fileSize: size))
            }
            guard headerLength <= UInt64(Self.maxHeaderBytes) else {
                throw fail(.badHeader("header length \(headerLength) exceeds the limit of \(Self.maxHeaderBytes) bytes"))
            }
            dataStart = 8 + Int(headerLength)
            let headerData = Data(bytes: m + 8, count: Int(headerLength))
            let json: Any
            do { json = try JSONSerialization.jsonObject(with: headerData) } catch {
                throw fail(.badHeader("not valid JSON (\(headerLength) bytes)"))
            }
            guard let root = json as? [String: Any] else { throw fail(.badHeader("top level is not a JSON object")) }
            var meta: [String: String] = [:]
            var entries: [String: Entry] = [:]
            let dataSize = size - dataStart
            for (key, value) in root {
                if key == "__metadata__" {
                    guard let d = value as? [String: Any] else { throw fail(.badHeader("__metadata__ is not an object")) }
                    for (k, v) in d {
                        guard let s = v as? String else { throw fail(.badHeader("__metadata__ value for '\(k)' is not a string")) }
                        meta[k] = s
                    }
                    continue
                }
                guard let e = value as? [String: Any], let ds = e["dtype"] as? String,
                      let shapeAny = e["shape"] as? [Any], let offAny = e["data_offsets"] as? [Any], offAny.count == 2 else {
                    throw fail(.badHeader("entry '\(key)' lacks dtype, shape or data_offsets"))
                }
                let shape = try shapeAny.map { v -> Int in
                    guard let i = Self.integer(v), i >= 0 else { throw fail(.badHeader("entry '\(key)' has a bad shape")) }
                    return i
                }
                guard let begin = Self.integer(offAny[0]), let end = Self.integer(offAny[1]) else {
                    throw fail(.badHeader("entry '\(key)' has non-integer data_offsets"))
                }
                guard let dtype = SafeTensorsDType(rawValue: ds) else { throw fail(.unknownDType(key: key, dtype: ds)) }
                guard shape.count <= Self.maxRank else {
                    throw fail(.badHeader("entry '\(key)' has \(shape.count) dims (limit \(Self.maxRank))"))
                }
                // Left to right, as `Tensor` multiplies: an overflow anywhere (even before a 0) is refused.
                var bytes = dtype.size
                for d in shape {
                    let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
                    guard !overflow else { throw fail(.badHeader("entry '\(key)' has shape \(shape), too large to address")) }
                    bytes = p
                }
                guard begin >= 0, begin <= end, end <= dataSize, end - begin == bytes else {
                    throw fail(.offsetsOutOfRange(key: key, begin: begin, end: end, dataSize: dataSize, expectedBytes: bytes))
                }
                entries[key] = Entry(dtype: dtype, shape: shape, range: begin..<end)
            }
            self.metadata = meta
            self.entries = entries
        } catch {
            munmap(m, size)
            throw error
        }
    }

    deinit { munmap(mapping, mappedSize) }

    /// Longest JSON header accepted (the format's own limit, as in the reference implementation).
    public static let maxHeaderBytes = 100_000_000
    /// Most dimensions of one tensor.
    public static let maxRank = 32

    /// JSON numbers arrive as NSNumber (or Int); accept only exact integers.
    private static func integer(_ v: Any) -> Int? {
        if let i = v as? Int { return i }
        if let d = v as? Double, d == d.rounded(), abs(d) < 1e15 { return Int(d) }
        return nil
    }

    /// Shape of `key`, or nil when absent.
    public func shape(_ key: String) -> [Int]? { entries[key]?.shape }

    /// Whether the file has `key`.
    public func contains(_ key: String) -> Bool { entries[key] != nil }

    /// `key` as a new Float32 tensor (F32 copied, F16/BF16/F64 converted).
    public func tensor(_ key: String) throws -> Tensor {
        guard let e = entries[key] else { throw SafeTensorsError(file: url, reason: .missingKey(key)) }
        let t = Tensor(shape: e.shape)
        let src = UnsafeRawPointer(mapping + dataStart + e.range.lowerBound)
        let n = t.count
        let dst = t.ptr
        switch e.dtype {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
            for i in 0..<n { dst[i] = Float(bitPattern: dst[i].bitPattern.littleEndian) }
        case .f16:
            for i in 0..<n { dst[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
        case .bf16:
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
        case .f64:
            for i in 0..<n { dst[i] = Float(Double(bitPattern: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
        default:
            throw SafeTensorsError(file: url, reason: .notFloat(key: key, dtype: e.dtype.rawValue))
        }
        return t
    }

    /// `key`'s elements as a Float array (for biases and norm parameters).
    public func floats(_ key: String) throws -> [Float] { try tensor(key).array }

    /// Strict check against a model's expected keys and shapes: throws one `WeightMismatchError` listing every
    /// missing, unexpected and mis-shaped key. Keys matching `ignoring` (e.g. `num_batches_tracked`) are skipped.
    public func verify(expected: [String: [Int]], ignoring: (String) -> Bool = { _ in false }) throws {
        let missing = expected.keys.filter { entries[$0] == nil }.sorted()
        let unexpected = entries.keys.filter { expected[$0] == nil && !ignoring($0) }.sorted()
        let misshaped = expected.keys.sorted().compactMap { k -> WeightMismatchError.Misshaped? in
            guard let e = entries[k], e.shape != expected[k]! else { return nil }
            return .init(key: k, expected: expected[k]!, actual: e.shape)
        }
        if !missing.isEmpty || !unexpected.isEmpty || !misshaped.isEmpty {
            throw WeightMismatchError(file: url, missing: missing, unexpected: unexpected, misshaped: misshaped)
        }
    }
}

/// Writes safetensors files (for tests, converters and tools).
public enum SafeTensorsWriter {
    /// Writes `tensors` (stored in key order) with `metadata` as `__metadata__`, converting to `dtype`
    /// (F32, F16 or BF16; BF16 rounds to nearest even). The header is space-padded to 8 bytes.
    public static func write(_ tensors: [String: Tensor], metadata: [String: String] = [:],
                             dtype: SafeTensorsDType = .f32, to url: URL) throws {
        precondition([.f32, .f16, .bf16].contains(dtype), "SafeTensorsWriter writes F32, F16 or BF16")
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let keys = tensors.keys.sorted()
        for k in keys {
            let t = tensors[k]!
            let bytes = t.count * dtype.size
            header[k] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for k in keys {
            for v in tensors[k]!.array {
                switch dtype {
                case .f16: withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out.append(contentsOf: $0) }
                case .bf16: withUnsafeBytes(of: bfloat16Bits(v).littleEndian) { out.append(contentsOf: $0) }
                default: withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) }
                }
            }
        }
        try out.write(to: url, options: .atomic)
    }

    /// Float32 → BF16 bits, round to nearest even (NaN stays NaN).
    static func bfloat16Bits(_ v: Float) -> UInt16 {
        if v.isNaN { return 0x7FC0 }
        let u = v.bitPattern
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }
}
