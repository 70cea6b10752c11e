/// A binary mask in COCO run-length encoding.
///
/// Runs are over the mask flattened **column-major** (x outer, y inner, as pycocotools), alternating
/// background/foreground and starting with background (the first count may be 0).
public struct MaskRLE: Sendable, Equatable, Hashable {
    /// Mask height in pixels.
    public var height: Int
    /// Mask width in pixels.
    public var width: Int
    /// Alternating run lengths, background first; they sum to `height * width`.
    public var counts: [UInt32]

    public init(height: Int, width: Int, counts: [UInt32]) {
        self.height = height
        self.width = width
        self.counts = counts
    }

    /// Encodes a row-major binary mask (`mask[y * width + x] != 0` is foreground).
    public init(rowMajor mask: [UInt8], height: Int, width: Int) {
        precondition(mask.count == height * width, "mask has \(mask.count) values for \(height)x\(width)")
        var counts: [UInt32] = []
        counts.reserveCapacity(16)
        var current: UInt8 = 0
        var run: UInt32 = 0
        mask.withUnsafeBufferPointer { m in
            for x in 0..<width {
                var i = x
                for _ in 0..<height {
                    let v: UInt8 = m[i] != 0 ? 1 : 0
                    if v != current {
                        counts.append(run)
                        run = 0
                        current = v
                    }
                    run += 1
                    i += width
                }
            }
        }
        counts.append(run)
        self.init(height: height, width: width, counts: counts)
    }

    /// Number of foreground pixels.
    public var area: Int {
        var a = 0
        var i = 1
        while i < counts.count { a += Int(counts[i]); i += 2 }
        return a
    }

    /// The mask as row-major bytes, 1 = foreground.
    public func rowMajor() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: height * width)
        var pos = 0  // column-major position
        for (k, c) in counts.enumerated() {
            let n = Int(c)
            if k % 2 == 1 {
                for p in pos..<(pos + n) {
                    let x = p / height, y = p % height
                    out[y * width + x] = 1
                }
            }
            pos += n
        }
        return out
    }

    /// Tight bounding box of the foreground in pixel corners (x2, y2 exclusive), nil if empty.
    public var boundingBox: Box? {
        var minX = Int.max, minY = Int.max, maxX = -1, maxY = -1
        var pos = 0
        for (k, c) in counts.enumerated() {
            let n = Int(c)
            if k % 2 == 1, n > 0 {
                let first = pos, last = pos + n - 1
                let x0 = first / height, x1 = last / height
                minX = min(minX, x0); maxX = max(maxX, x1)
                if x0 == x1 {
                    minY = min(minY, first % height); maxY = max(maxY, last % height)
                } else {
                    minY = 0; maxY = height - 1
                }
            }
            pos += n
        }
        guard maxX >= 0 else { return nil }
        return Box(x1: Float(minX), y1: Float(minY), x2: Float(maxX + 1), y2: Float(maxY + 1))
    }

    /// pycocotools' compressed string form (`rleToString`): counts from index 3 on are delta-coded
    /// against `counts[i-2]`; each value is written 5 bits at a time, 0x20 = more follows, char = value + 48.
    public var cocoString: String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(counts.count * 2)
        for i in 0..<counts.count {
            var x = Int64(counts[i])
            if i > 2 { x -= Int64(counts[i - 2]) }
            var more = true
            while more {
                var c = UInt8(truncatingIfNeeded: x & 0x1f)
                x >>= 5
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                bytes.append(c + 48)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Errors decoding a compressed RLE string.
    public enum DecodeError: Error, Equatable {
        case badCharacter(Character)
        case truncated
        case countsMismatch(expected: Int, got: Int)
    }

    /// Decodes pycocotools' compressed string form (`rleFrString`), checking the counts sum to `height * width`.
    public init(cocoString s: String, height: Int, width: Int) throws {
        var counts: [UInt32] = []
        let bytes = Array(s.utf8)
        var p = 0
        while p < bytes.count {
            var x: Int64 = 0
            var k: Int64 = 0
            var more = true
            while more {
                guard p < bytes.count else { throw DecodeError.truncated }
                let raw = bytes[p]
                guard raw >= 48, raw < 48 + 64 else { throw DecodeError.badCharacter(Character(UnicodeScalar(raw))) }
                let c = Int64(raw) - 48
                x |= (c & 0x1f) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if !more && (c & 0x10) != 0 { x |= -1 << (5 * k) }
            }
            if counts.count > 2 { x += Int64(counts[counts.count - 2]) }
            guard x >= 0, x <= Int64(UInt32.max) else { throw DecodeError.truncated }
            counts.append(UInt32(x))
        }
        let total = counts.reduce(0) { $0 + Int($1) }
        guard total == height * width else { throw DecodeError.countsMismatch(expected: height * width, got: total) }
        self.init(height: height, width: width, counts: counts)
    }
}
