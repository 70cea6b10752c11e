import FPNCore
import Tensor

/// Per-stream reuse of the RoI heads' per-region results across frames (temporal `delta` mode; never shared between
/// streams): a region whose box is bit-identical to one of the previous frame's and whose pooled features are too
/// gets that frame's head outputs back instead of running the head again. With the temporal cache, the pyramid is
/// bit-identical wherever it did not recompute, and so are the RPN's proposals there and the boxes decoded from
/// them; the heads are deterministic per row, so a reused row is exactly what the head would compute.
///
/// Pooled features are compared through a 128-bit digest of their bit patterns (`Ops.rowDigest`, the row read once,
/// nothing copied): equal digests are taken as equal rows.
///
/// Keying costs a digest of every pooled row, a lookup and a copy per region, and a gather of the regions to compute:
/// about a quarter of the box head's time. Where few regions keep their bits (sensor noise or re-coding reaching
/// the tiles under most proposals), that is all loss, so a head whose keyed frame reused less than
/// `minReusedFraction` of its regions pauses keying for `pauseFrames` frames, doubling up to `maxPauseFrames` while
/// the frames after each pause still reuse too little. The decision depends on the frames' content only, so a run
/// is reproducible.
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

    /// Last frame's outputs of one head: each region key's row in `rows` (`width` floats a row).
    private struct Kept {
        var index: [Key: Int] = [:]
        var rows: [Float] = []
    }

    /// Last frame's outputs per head.
    private var kept: [Head: Kept] = [:]
    /// Regions reused / computed in the last frame, per head.
    public private(set) var lastReused: [Head: Int] = [:], lastComputed: [Head: Int] = [:]
    /// Whether this frame keys its regions (`beginFrame`); when false the heads run every region as without reuse.
    public private(set) var active = true
    /// A keyed frame that reused less than this fraction of a head's regions pauses that head's keying.
    public static let minReusedFraction = 0.25
    /// Frames a head skips keying after its first frame below `minReusedFraction`; each further such frame right
    /// after a pause doubles it, up to `maxPauseFrames`.
    public static let pauseFrames = 8, maxPauseFrames = 64
    /// Per head: frames left to skip keying, and the next pause's length.
    private var pause: [Head: (left: Int, next: Int)] = [:]
    /// Heads whose keying this frame skips.
    private var paused: Set<Head> = []
    /// Asked by `beginFrame` whether the frame's pyramid was computed densely (a refresh or the temporal cache's
    /// frame-level fall-back); nil: never.
    public var denseFrame: (() -> Bool)?
    private var lastDense = false

    public init() {}

    /// Forgets every kept region (a new stream or size).
    public func reset() {
        kept.removeAll(); lastReused.removeAll(); lastComputed.removeAll(); pause.removeAll(); paused.removeAll()
        lastDense = false
    }

    /// Whether this frame keys the regions of `head` (it is active and the head's keying is not paused).
    public func keys(_ head: Head) -> Bool { active && !paused.contains(head) }

    /// Starts a frame, after its backbone ran. A dense frame after a dense frame (a moving camera, a scene cut)
    /// matches next to nothing of the last one, and the next frame is most likely dense too: such frames skip the
    /// keying (a digest of every pooled row, a lookup and a copy of every output row) and forget the kept rows.
    /// A dense frame after a delta frame (a scheduled refresh) keys its regions for the delta frames that follow.
    public func beginFrame() {
        let dense = denseFrame?() ?? false
        active = !(dense && lastDense)
        lastDense = dense
        if !active { kept.removeAll(keepingCapacity: true) }
        paused.removeAll(keepingCapacity: true)
        for (head, p) in pause where p.left > 0 {
            paused.insert(head)
            pause[head] = (p.left - 1, p.next)
        }
    }

    /// Counts `count` regions of `head` computed without keys (an inactive frame).
    func computedWithoutKeys(_ head: Head, count: Int) {
        lastReused[head] = 0; lastComputed[head] = count
    }

    /// Keys of `boxes` (with `labels`, or 0) and their rows of `pooled` `[R, ...]`.
    func keys(_ boxes: [Box], labels: [Int]?, pooled: Tensor) -> [Key] {
        let row = pooled.count / max(boxes.count, 1)
        return pooled.withUnsafeBufferPointer { p in
            boxes.indices.map { i in
                let b = boxes[i]
                return Key(x1: b.x1.bitPattern, y1: b.y1.bitPattern, x2: b.x2.bitPattern, y2: b.y2.bitPattern,
                           label: labels?[i] ?? 0,
                           digest: Ops.rowDigest(UnsafeBufferPointer(rebasing: p[(i * row)..<((i + 1) * row)])))
            }
        }
    }

    /// The per-region outputs (`width` floats each) for `keys`: the kept rows of the regions seen last frame, and
    /// `compute(misses)` for the others (called with the indices to compute, returning their rows in that order,
    /// `[misses.count * width]`). Keeps this frame's rows for the next one.
    func outputs(_ head: Head, keys: [Key], width: Int, compute: ([Int]) -> [Float]) -> [Float] {
        let previous = kept[head] ?? Kept()
        var out = [Float](repeating: 0, count: keys.count * width)
        var misses: [Int] = []
        out.withUnsafeMutableBufferPointer { o in
            previous.rows.withUnsafeBufferPointer { r in
                for (i, k) in keys.enumerated() {
                    if let j = previous.index[k] {
                        (o.baseAddress! + i * width).update(from: r.baseAddress! + j * width, count: width)
                    } else {
                        misses.append(i)
                    }
                }
            }
        }
        if !misses.isEmpty {
            let computed = compute(misses)
            precondition(computed.count == misses.count * width, "region head returned the wrong size")
            out.withUnsafeMutableBufferPointer { o in
                computed.withUnsafeBufferPointer { c in
                    for (j, i) in misses.enumerated() {
                        (o.baseAddress! + i * width).update(from: c.baseAddress! + j * width, count: width)
                    }
                }
            }
        }
        var next = Kept()
        next.index.reserveCapacity(keys.count)
        for (i, k) in keys.enumerated() { next.index[k] = i }
        next.rows = out
        kept[head] = next
        lastReused[head] = keys.count - misses.count
        lastComputed[head] = misses.count
        let length = pause[head]?.next ?? Self.pauseFrames
        if previous.index.isEmpty {
            // Nothing was kept to match (a new stream, or after a dense run): no verdict.
        } else if Double(keys.count - misses.count) < Self.minReusedFraction * Double(keys.count) {
            // Rows kept now stay valid through the pause: a key is the exact box and pooled bits.
            pause[head] = (length, min(Self.maxPauseFrames, length * 2))
        } else {
            pause[head] = nil
        }
        return out
    }
}
