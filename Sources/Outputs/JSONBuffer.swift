/// A fast, allocation-light JSON serializer into a byte buffer, for per-frame output lines.
///
/// Hand-written rather than `JSONEncoder` per frame: no reflection, no intermediate dictionaries, numbers written
/// with a fixed number of decimals and trailing zeros trimmed (`12.5`, not `12.500000001`). Strings are escaped per
/// RFC 8259 (quote, backslash and control characters; other Unicode passes through as UTF-8). Non-finite numbers
/// (NaN, ±inf) are written as `null`, since JSON has no spelling for them.
///
/// Commas are managed automatically: call `key` then a value inside objects, values alone inside arrays.
public struct JSONBuffer {
    /// The serialized bytes so far.
    public private(set) var bytes: [UInt8] = []
    /// One flag per open container: has it received an element yet?
    private var hasElement: [Bool] = []
    private var afterKey = false

    public init(capacity: Int = 512) { bytes.reserveCapacity(capacity) }

    /// The bytes as a string.
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    // MARK: containers

    public mutating func beginObject() { beginValue(); bytes.append(UInt8(ascii: "{")); hasElement.append(false) }
    public mutating func endObject() { hasElement.removeLast(); bytes.append(UInt8(ascii: "}")) }
    public mutating func beginArray() { beginValue(); bytes.append(UInt8(ascii: "[")); hasElement.append(false) }
    public mutating func endArray() { hasElement.removeLast(); bytes.append(UInt8(ascii: "]")) }

    /// Writes an object key (escaped); the next call must write its value.
    public mutating func key(_ k: String) {
        if hasElement.last == true { bytes.append(UInt8(ascii: ",")) }
        if !hasElement.isEmpty { hasElement[hasElement.count - 1] = true }
        appendEscaped(k)
        bytes.append(UInt8(ascii: ":"))
        afterKey = true
    }

    // MARK: values

    public mutating func string(_ s: String) { beginValue(); appendEscaped(s) }

    public mutating func int(_ v: Int) { beginValue(); appendInt(v) }

    public mutating func bool(_ v: Bool) {
        beginValue()
        bytes.append(contentsOf: v ? "true".utf8 : "false".utf8)
    }

    public mutating func null() { beginValue(); bytes.append(contentsOf: "null".utf8) }

    /// A number rounded to `decimals` places with trailing zeros trimmed (`decimals` 0...9); NaN/inf → `null`.
    public mutating func number(_ v: Double, decimals: Int) {
        beginValue()
        appendFixed(v, decimals: decimals)
    }

    /// A number rounded to `decimals` places; NaN/inf → `null`.
    public mutating func number(_ v: Float, decimals: Int) { number(Double(v), decimals: decimals) }

    /// Appends pre-serialized JSON (must be one complete value).
    public mutating func raw(_ json: String) { beginValue(); bytes.append(contentsOf: Array(json.utf8)) }

    /// A newline, ending a JSONL line.
    public mutating func newline() { bytes.append(0x0a) }

    // MARK: helpers

    private mutating func beginValue() {
        if afterKey { afterKey = false; return }
        if let has = hasElement.last {
            if has { bytes.append(UInt8(ascii: ",")) }
            hasElement[hasElement.count - 1] = true
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    private mutating func appendEscaped(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        var s = string
        s.withUTF8 { utf8 in
            // Copy runs of bytes that need no escaping in one go; escape the rest.
            var runStart = 0
            for i in 0..<utf8.count {
                let b = utf8[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                if runStart < i { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<i])) }
                runStart = i + 1
                switch b {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(b)
                case 0x0a: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
                case 0x0d: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
                case 0x09: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
                case 0x08: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "b"))
                case 0x0c: bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "f"))
                default:
                    bytes.append(contentsOf: "\\u00".utf8)
                    bytes.append(Self.hex[Int(b >> 4)]); bytes.append(Self.hex[Int(b & 15)])
                }
            }
            if runStart < utf8.count { bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...])) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func appendInt(_ v: Int) {
        if v == 0 { bytes.append(UInt8(ascii: "0")); return }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = v.magnitude
        var count = 0
        withUnsafeMutableBytes(of: &digits) { d in
            while n > 0 { d[count] = UInt8(n % 10) + 48; n /= 10; count += 1 }
        }
        if v < 0 { bytes.append(UInt8(ascii: "-")) }
        withUnsafeBytes(of: &digits) { d in
            var i = count - 1
            while i >= 0 { bytes.append(d[i]); i -= 1 }
        }
    }

    private static let powers: [Double] = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]

    private mutating func appendFixed(_ v: Double, decimals: Int) {
        guard v.isFinite else { bytes.append(contentsOf: "null".utf8); return }
        let d = min(max(decimals, 0), 9)
        let scale = Self.powers[d]
        let scaled = (v * scale).rounded()
        // Beyond 2^53 the integer path would lose digits; Swift's shortest round-trip form is valid JSON there.
        guard abs(scaled) < 9.0e15 else { bytes.append(contentsOf: Array("\(v)".utf8)); return }
        var m = Int(scaled)
        if m == 0 { bytes.append(UInt8(ascii: "0")); return }  // also turns -0.0001 at 2 decimals into 0, not -0
        if m < 0 { bytes.append(UInt8(ascii: "-")); m = -m }
        let unit = Int(scale)
        appendInt(m / unit)
        var frac = m % unit
        guard frac != 0 else { return }
        var width = d
        while frac % 10 == 0 { frac /= 10; width -= 1 }
        bytes.append(UInt8(ascii: "."))
        // Zero-padded fraction digits written in place, right to left (no temporary array per number).
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: width))
        var i = start + width - 1
        while frac > 0 { bytes[i] = UInt8(frac % 10) + 48; frac /= 10; i -= 1 }
    }
}
