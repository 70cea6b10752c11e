import FPNCore
import Tensor

/// Per-stream reuse of the RoI heads' per-region results across frames (temporal `delta` mode; never shared between
/// streams): a region whose box is bit-identical to one of the previous frame's and whose pooled features are too
/// gets that frame's head outputs back instead of running the head again. With the temporal cache, the pyramid is
/// bit-identical wherever it did not recompute, and so are the RPN's proposals there and the boxes decoded from
/// them; the heads are deterministic per row, so a reused row is exactly what the head would compute.
///
/// Pooled features are compared through a 128-bit digest of their bit patterns (two multiply-add sums over the row,
/// read once, nothing copied): equal digests are taken as equal rows.
public final class RegionReuse: @unchecked Sendable {
    /// Regions of one head kind (`box`: proposals → class logits and box deltas; `mask`: detections → the mask
    /// probabilities of their label).
    public enum Head: Sendable { case box, mask }

    struct Key: Hashable {
        let x1, y1, x2, y2: UInt32
        let label: Int
        let digest: (UInt64, UInt64)
        static func == (a: Key, b: Key) -> Bool {
            a.x1 == b.x1 && a.y1 == b.y1 && a.x2 == b.x2 && a.y2 == b.y2 && a.label == b.label
                && a.digest.0 == b.digest.0 && a.digest.1 == b.digest.1
        }
        func hash(into h: inout Hasher) {
            h.combine(x1); h.combine(y1); h.combine(x2); h.combine(y2); h.combine(label)
            h.combine(digest.0); h.combine(digest.1)
        }
    }

    /// Last frame's outputs per head: region key → its output row.
    private var kept: [Head: [Key: [Float]]] = [:]
    /// Regions reused / computed in the last frame, per head.
    public private(set) var lastReused: [Head: Int] = [:], lastComputed: [Head: Int] = [:]

    public init() {}

    /// Forgets every kept region (a new stream or size).
    public func reset() { kept.removeAll(); lastReused.removeAll(); lastComputed.removeAll() }

    /// Keys of `boxes` (with `labels`, or 0) and their rows of `pooled` `[R, ...]`.
    func keys(_ boxes: [Box], labels: [Int]?, pooled: Tensor) -> [Key] {
        let row = pooled.count / max(boxes.count, 1)
        return pooled.withUnsafeBufferPointer { p in
            boxes.indices.map { i in
                let b = boxes[i]
                return Key(x1: b.x1.bitPattern, y1: b.y1.bitPattern, x2: b.x2.bitPattern, y2: b.y2.bitPattern,
                           label: labels?[i] ?? 0, digest: Self.digest(UnsafeBufferPointer(rebasing: p[(i * row)..<((i + 1) * row)])))
            }
        }
    }

    /// Two multiply-add sums of the 32-bit patterns with position-dependent odd weights (32-bit lanes, so it
    /// vectorises), so a change of any value, or a swap of two, changes them. Not a cryptographic hash: it tells
    /// changed pooled rows from unchanged ones, which nobody chooses adversarially.
    static func digest(_ x: UnsafeBufferPointer<Float>) -> (UInt64, UInt64) {
        var a0: UInt32 = 0, a1: UInt32 = 0, b0: UInt32 = 0, b1: UInt32 = 0
        var i = 0
        while i + 1 < x.count {
            let v = x[i].bitPattern, u = x[i + 1].bitPattern, w = UInt32(truncatingIfNeeded: i) &* 2 &+ 1
            a0 = a0 &+ v &* (w &* 0x9E37_79B9 | 1); a1 = a1 &+ u &* ((w &+ 2) &* 0x9E37_79B9 | 1)
            b0 = b0 &+ (v ^ w) &* 0x85EB_CA6B; b1 = b1 &+ (u ^ (w &+ 2)) &* 0x85EB_CA6B
            i += 2
        }
        if i < x.count { a0 = a0 &+ x[i].bitPattern &* 0xC2B2_AE35; b0 ^= x[i].bitPattern }
        return (UInt64(a0) << 32 | UInt64(a1), UInt64(b0) << 32 | UInt64(b1))
    }

    /// The per-region outputs (`width` floats each) for `keys`: the kept rows of the regions seen last frame, and
    /// `compute(misses)` for the others (called with the indices to compute, returning their rows in that order,
    /// `[misses.count * width]`). Keeps this frame's rows for the next one.
    func outputs(_ head: Head, keys: [Key], width: Int, compute: ([Int]) -> [Float]) -> [Float] {
        let previous = kept[head] ?? [:]
        var out = [Float](repeating: 0, count: keys.count * width)
        var misses: [Int] = []
        for (i, k) in keys.enumerated() {
            if let row = previous[k] { out.replaceSubrange((i * width)..<((i + 1) * width), with: row) } else { misses.append(i) }
        }
        if !misses.isEmpty {
            let computed = compute(misses)
            precondition(computed.count == misses.count * width, "region head returned the wrong size")
            for (j, i) in misses.enumerated() {
                out.replaceSubrange((i * width)..<((i + 1) * width), with: computed[(j * width)..<((j + 1) * width)])
            }
        }
        var next: [Key: [Float]] = [:]
        next.reserveCapacity(keys.count)
        for (i, k) in keys.enumerated() { next[k] = Array(out[(i * width)..<((i + 1) * width)]) }
        kept[head] = next
        lastReused[head] = keys.count - misses.count
        lastComputed[head] = misses.count
        return out
    }
}
