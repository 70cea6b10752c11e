import FPNCore
import Tensor

/// Per-stream reuse of the RoI heads' per-region results across frames (temporal `delta` mode; never shared between
/// streams): a region whose box is bit-identical to one the heads ran on in an earlier frame, and whose pooling
/// reads no pixel of its pyramid level written since then, gets that row back without being pooled or run through
/// the head. With the temporal cache the levels keep their bits wherever it wrote nothing
/// (`ConvolutionRunner.writtenTiles`), and the proposals decoded there keep theirs; the pooling and the heads are
/// deterministic per region, so a reused row is exactly what pooling and running the head again would give.
///
/// What is checked per region is a lookup of its box and the last-write frame of the level tiles under its
/// bilinear taps (`MultiScaleRoIAlign.footprint`): nothing is pooled or hashed, so keying costs next to nothing
/// where few regions stay unchanged (sensor noise reaching most proposals).
public final class RegionReuse: @unchecked Sendable {
    /// Regions of one head kind (`box`: proposals → class logits and box deltas; `mask`: detections → the mask
    /// probabilities of their label; `keypoint`: detections → their keypoints).
    public enum Head: Sendable { case box, mask, keypoint }

    /// Tiles of a level written since the last frame, on the grid they index; nil: unknown (all of it).
    public typealias Written = (grid: TileGrid, tiles: [Int])?

    /// One pyramid level as the heads last pooled it.
    struct Level {
        /// The tensor's storage and offset: another tensor (a dense pass into the workspace) counts as all written.
        var storage: ObjectIdentifier, offset: Int
        var height: Int, width: Int
        /// The frame that last wrote the whole level.
        var wholeAt: Int
        /// The grid of `lastWrite`, nil while no frame said which tiles it wrote.
        var grid: TileGrid?
        /// The frame that last wrote each tile.
        var lastWrite: [Int]

        /// Whether none of the pixels `rows` x `cols` was written after frame `since`.
        func unchanged(rows: Range<Int>, cols: Range<Int>, since: Int) -> Bool {
            guard since >= wholeAt else { return false }
            guard let grid else { return true }
            let r = rows.clamped(to: 0..<grid.height), c = cols.clamped(to: 0..<grid.width)
            guard !r.isEmpty, !c.isEmpty else { return true }
            for ty in (r.lowerBound / grid.tile.h)...((r.upperBound - 1) / grid.tile.h) {
                for tx in (c.lowerBound / grid.tile.w)...((c.upperBound - 1) / grid.tile.w)
                where lastWrite[ty * grid.columns + tx] > since {
                    return false
                }
            }
            return true
        }
    }

    struct Key: Hashable {
        let x1, y1, x2, y2: UInt32
        let label: Int
        init(_ b: Box, label: Int) {
            x1 = b.x1.bitPattern; y1 = b.y1.bitPattern; x2 = b.x2.bitPattern; y2 = b.y2.bitPattern
            self.label = label
        }
    }

    /// The rows of the last frame's regions of one head (`width` floats each) and the frame each was computed in.
    private struct Kept {
        var index: [Key: Int] = [:]
        var rows: [Float] = []
        var since: [Int] = []
    }

    private var levels: [Level] = []
    private var frame = 0
    /// Per level, the tiles written this frame (`beginFrame`), nil: all of it; what `channelsLast` must update.
    private var fresh: [[Int]?] = []
    /// Per level, its channels-last copy `[h, w, C]` (RoIAlign's layout), kept across frames, and the frame it
    /// was last brought up to date in.
    private var transposed: [(copy: Tensor, at: Int)?] = []
    private var kept: [Head: Kept] = [:]
    /// Regions reused / computed in the current frame (since `beginFrame`), per head that ran.
    public private(set) var lastReused: [Head: Int] = [:], lastComputed: [Head: Int] = [:]

    /// The current frame's regions per head that ran, by head name (`box`, `mask`, `keypoint`).
    public var lastCounts: [String: RegionReuseCount] {
        var out: [String: RegionReuseCount] = [:]
        for (head, computed) in lastComputed {
            let reused = lastReused[head] ?? 0
            out["\(head)"] = RegionReuseCount(reused: reused, total: reused + computed)
        }
        return out
    }

    public init() {}

    /// Forgets every kept region and level (a new stream or size).
    public func reset() {
        levels.removeAll(); kept.removeAll(); lastReused.removeAll(); lastComputed.removeAll()
        fresh.removeAll(); transposed.removeAll()
        frame = 0
    }

    /// Starts a frame whose heads pool from `current` (the pyramid levels the runner returned, finest first, in
    /// the order the poolers take them), `written[i]` being the tiles of `current[i]` written this frame
    /// (`ConvolutionRunner.writtenTiles`). A level in other storage than last frame, or without a record, counts
    /// as written everywhere.
    public func beginFrame(levels current: [Tensor], written: [Written]) {
        precondition(current.count == written.count, "one record per level")
        frame += 1
        lastReused.removeAll(keepingCapacity: true); lastComputed.removeAll(keepingCapacity: true)
        if levels.count != current.count { levels.removeAll() }
        fresh = [[Int]?](repeating: nil, count: current.count)
        for (i, t) in current.enumerated() {
            let id = ObjectIdentifier(t.storage)
            if i < levels.count, levels[i].storage == id, levels[i].offset == t.offset, levels[i].height == t.h,
               levels[i].width == t.w, let w = written[i], w.grid.height == t.h, w.grid.width == t.w {
                if levels[i].grid != w.grid {
                    // The first record after a whole write dates every tile to it; another grid's stamps are lost.
                    if levels[i].grid != nil { levels[i].wholeAt = frame }
                    levels[i].grid = w.grid
                    levels[i].lastWrite = [Int](repeating: levels[i].wholeAt, count: w.grid.count)
                }
                for tile in w.tiles { levels[i].lastWrite[tile] = frame }
                if levels[i].wholeAt < frame { fresh[i] = w.tiles }
                continue
            }
            let grid = written[i]?.grid
            let level = Level(storage: id, offset: t.offset, height: t.h, width: t.w, wholeAt: frame, grid: grid,
                              lastWrite: [Int](repeating: frame, count: grid?.count ?? 0))
            if i < levels.count { levels[i] = level } else { levels.append(level) }
        }
    }

    /// This frame's levels (`beginFrame`, each `[1, channels, h, w]`) in the channels-last layout RoIAlign reads,
    /// `[h, w, channels]` each: copies kept across frames, in which only the tiles written since the last frame
    /// are transposed again. A level written whole this frame (no record: a dense frame) is transposed into a
    /// tensor of `ws` instead (its kept copy, now behind, is rebuilt whole the next time). Valid until the
    /// next frame; not to be written. Equal to `RoIAlign.channelsLast` of every level.
    public func channelsLast(_ current: [Tensor], channels: Int, workspace ws: Workspace) -> [Tensor] {
        precondition(current.count == fresh.count, "channelsLast of other levels than beginFrame's")
        if transposed.count != current.count {
            transposed = [(copy: Tensor, at: Int)?](repeating: nil, count: current.count)
        }
        return current.enumerated().map { i, f in
            let shape = [f.h, f.w, channels]
            if let t = transposed[i], t.copy.shape == shape, t.at == frame { return t.copy }
            guard fresh[i] != nil else {
                // Runs of dense frames (fall-backs) would otherwise write the whole kept copy every frame: the
                // workspace's recycled buffers are the ones still in the CPU caches.
                let t = ws.tensor(shape)
                f.withUnsafeBufferPointer { src in
                    t.withUnsafeMutableBufferPointer {
                        RoIAlign.channelsLast(src, channels: channels, height: f.h, width: f.w, into: $0)
                    }
                }
                return t
            }
            // Only the copy of the frame before plus this frame's written tiles is this frame's level.
            let incremental = transposed[i].map { $0.copy.shape == shape && $0.at == frame - 1 } == true
            let t = transposed[i].flatMap { $0.copy.shape == shape ? $0.copy : nil } ?? Tensor(shape: shape)
            f.withUnsafeBufferPointer { src in
                t.withUnsafeMutableBufferPointer { dst in
                    guard incremental, let tiles = fresh[i], let grid = levels[i].grid else {
                        RoIAlign.channelsLast(src, channels: channels, height: f.h, width: f.w, into: dst)
                        return
                    }
                    // Runs of written tiles along each tile row, one pixel row at a time.
                    let plane = f.h * f.w
                    let sorted = tiles.sorted()
                    var k = 0
                    while k < sorted.count {
                        var end = k + 1
                        while end < sorted.count, sorted[end] == sorted[end - 1] + 1,
                              sorted[end] / grid.columns == sorted[k] / grid.columns { end += 1 }
                        let a = grid.rect(sorted[k]), b = grid.rect(sorted[end - 1])
                        let x0 = a.cols.lowerBound, n = b.cols.upperBound - x0
                        for y in a.rows {
                            Ops.transpose(rows: channels, columns: n, src.baseAddress! + y * f.w + x0, lds: plane,
                                          into: dst.baseAddress! + (y * f.w + x0) * channels, ldd: channels)
                        }
                        k = end
                    }
                }
            }
            transposed[i] = (t, frame)
            return t
        }
    }

    /// The per-region outputs (`width` floats each) of `head` for the regions `boxes` (with `labels`, or 0)
    /// pooled by `pooler` from this frame's levels (`beginFrame`): the kept rows of the regions whose box and
    /// pooled pixels did not change since they were computed, and `compute(misses)` for the others (called with
    /// the indices to compute, returning their rows in that order, `[misses.count * width]`). Keeps this frame's
    /// rows for the next one.
    func outputs(_ head: Head, boxes: [Box], labels: [Int]?, pooler: MultiScaleRoIAlign, imageHeight: Int,
                 width: Int, compute: ([Int]) -> [Float]) -> [Float] {
        let previous = kept[head] ?? Kept()
        let sizes = levels.map { (height: $0.height, width: $0.width) }
        var out = [Float](repeating: 0, count: boxes.count * width)
        var since = [Int](repeating: frame, count: boxes.count)
        var misses: [Int] = []
        var next = Kept()
        next.index.reserveCapacity(boxes.count)
        out.withUnsafeMutableBufferPointer { o in
            previous.rows.withUnsafeBufferPointer { r in
                for (i, box) in boxes.enumerated() {
                    let key = Key(box, label: labels?[i] ?? 0)
                    next.index[key] = i
                    if !sizes.isEmpty, let j = previous.index[key] {
                        let f = pooler.footprint(of: box, levels: sizes, imageHeight: imageHeight)
                        if levels[f.level].unchanged(rows: f.rows, cols: f.cols, since: previous.since[j]) {
                            (o.baseAddress! + i * width).update(from: r.baseAddress! + j * width, count: width)
                            since[i] = previous.since[j]
                            continue
                        }
                    }
                    misses.append(i)
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
        next.rows = out
        next.since = since
        kept[head] = next
        lastReused[head] = boxes.count - misses.count
        lastComputed[head] = misses.count
        return out
    }
}
