import FPNCore
import Foundation
import Tensor

/// Thresholds of detectron2's panoptic merge (`combine_semantic_and_instance_outputs`).
public struct PanopticMergeConfig: Sendable, Equatable {
    /// An instance is dropped when more than this fraction of its mask is already taken by higher-scored ones (0.5).
    public var overlapThreshold: Float
    /// Stuff regions smaller than this many pixels (at output resolution) are left void. detectron2's 4096 is for
    /// COCO-size images (~800x1200, 0.4% of the image); models for small frames should scale it (the demo model
    /// at 320x240 uses 512 via its metadata).
    public var stuffAreaLimit: Int
    /// Instances are taken by descending score until the first one below this (0.5).
    public var instanceScoreThreshold: Float

    public init(overlapThreshold: Float = 0.5, stuffAreaLimit: Int = 4096, instanceScoreThreshold: Float = 0.5) {
        self.overlapThreshold = overlapThreshold; self.stuffAreaLimit = stuffAreaLimit
        self.instanceScoreThreshold = instanceScoreThreshold
    }
}

/// A panoptic map of one image.
public struct PanopticResult: Sendable, Equatable {
    /// Height in pixels.
    public let height: Int
    /// Width in pixels.
    public let width: Int
    /// Row-major segment id per pixel `[height * width]`; 0 = void.
    public let ids: [Int32]
    /// Segments in id order (ids 1, 2, ...): things first (by descending score), then stuff (ascending label).
    public let segments: [Segment]

    /// detectron2's `segments_info` entry.
    public struct Segment: Sendable, Equatable {
        /// Segment id in `ids`.
        public var id: Int
        /// True for instances.
        public var isThing: Bool
        /// Things: the detection's class id; stuff: the semantic label (1...N; 0 is "things" and never a segment).
        public var categoryID: Int
        /// Pixels of the segment.
        public var area: Int
        /// Things: detection score; stuff: nil.
        public var score: Float?
        /// Things: index of the detection in the input list; stuff: nil.
        public var instanceIndex: Int?

        public init(id: Int, isThing: Bool, categoryID: Int, area: Int, score: Float? = nil, instanceIndex: Int? = nil) {
            self.id = id; self.isThing = isThing; self.categoryID = categoryID; self.area = area
            self.score = score; self.instanceIndex = instanceIndex
        }
    }

    /// A result from its id map (`ids.count == height * width`) and segments (ids 1...segments.count, in order).
    public init(height: Int, width: Int, ids: [Int32], segments: [Segment]) {
        precondition(ids.count == height * width, "id map has \(ids.count) values for \(height)x\(width)")
        precondition(segments.indices.allSatisfy { segments[$0].id == $0 + 1 }, "segment ids must be 1...count in order")
        let (lowest, highest) = ids.withUnsafeBufferPointer { v in
            v.reduce((Int32.max, Int32.min)) { (min($0.0, $1), max($0.1, $1)) }
        }
        precondition(ids.isEmpty || (lowest >= 0 && Int(highest) <= segments.count), "id map holds an id without a segment")
        self.height = height; self.width = width; self.ids = ids; self.segments = segments
    }

    /// The segment's binary mask as COCO RLE.
    public func mask(of segmentID: Int) -> MaskRLE {
        let id = Int32(segmentID)
        return MaskRLE(rowMajor: ids.map { $0 == id ? 1 : 0 }, height: height, width: width)
    }

    /// Every segment's mask as COCO RLE, in `segments` order: one column-major pass over `ids` for all of them
    /// (equal to `mask(of:)` of each, which scans the whole map once per segment). The pass visits only where the
    /// id changes: 16 columns at a time, the rows where any of them changes are found by one vector compare per row
    /// (`Ops.rowChanges`), then each column's runs are closed at its top and at those rows.
    public func masks() -> [MaskRLE] {
        let n = height * width, count = segments.count
        var counts = [[UInt32]](repeating: [], count: count + 1)  // index = segment id; 0 (void) unused
        var runStart = [Int](repeating: 0, count: count + 1), lastEnd = [Int](repeating: 0, count: count + 1)
        var prev: Int32 = 0
        // Column-major index k: id `from` gives way to `to`.
        func change(at k: Int, from: Int32, to: Int32) {
            if from > 0 {  // from's run of ones ends at k
                let p = Int(from)
                counts[p].append(UInt32(runStart[p] - lastEnd[p]))
                counts[p].append(UInt32(k - runStart[p]))
                lastEnd[p] = k
            }
            if to > 0 { runStart[Int(to)] = k }
        }
        if n > 0 {
            ids.withUnsafeBufferPointer { m in
                withUnsafeTemporaryAllocation(of: Int32.self, capacity: height) { rows in
                    withUnsafeTemporaryAllocation(of: UInt16.self, capacity: height) { lanes in
                        var x0 = 0
                        while x0 < width {
                            let block = min(16, width - x0)
                            let events = Ops.rowChanges(m.baseAddress! + x0, stride: width, rows: height, lanes: block,
                                                        rowsOut: rows.baseAddress!, masksOut: lanes.baseAddress!)
                            for j in 0..<block {
                                let x = x0 + j, column = x * height, bit = UInt16(1) << UInt16(j)
                                let top = m[x]
                                if top != prev { change(at: column, from: prev, to: top) }
                                for e in 0..<events where lanes[e] & bit != 0 {
                                    let y = Int(rows[e])
                                    change(at: column + y, from: m[(y - 1) * width + x], to: m[y * width + x])
                                }
                                prev = m[(height - 1) * width + x]
                            }
                            x0 += block
                        }
                    }
                }
            }
        }
        if prev > 0 { change(at: n, from: prev, to: 0) }
        return segments.map { seg in
            var c = counts[seg.id]
            if lastEnd[seg.id] < n || c.isEmpty { c.append(UInt32(n - lastEnd[seg.id])) }
            return MaskRLE(height: height, width: width, counts: c)
        }
    }
}

/// detectron2's panoptic merge of instance masks and semantic labels.
public enum PanopticMerge {
    /// Merges `instances` (each: score, class id, binary row-major mask at `semantic`'s size) with `semantic`.
    ///
    /// Instances by descending score (stable), stopping at the first score below the threshold; empty masks skipped;
    /// an instance whose mask overlaps already-assigned pixels by more than `overlapThreshold` of its area is
    /// skipped, otherwise it takes only the unassigned pixels. Then each stuff label (ascending, not 0) takes its
    /// unassigned pixels if there are at least `stuffAreaLimit` of them.
    public static func merge(instances: [(score: Float, classID: Int, mask: [UInt8])], semantic: SemanticSegmentation,
                             config: PanopticMergeConfig = PanopticMergeConfig()) -> PanopticResult {
        let n = semantic.height * semantic.width
        return merge(regions: instances.map { inst in
            precondition(inst.mask.count == n, "instance mask has \(inst.mask.count) pixels, image \(n)")
            return Instance(score: inst.score, classID: inst.classID, x0: 0, y0: 0, x1: semantic.width,
                            y1: semantic.height, mask: inst.mask)
        }, semantic: semantic, config: config)
    }

    /// An instance of `merge(regions:)`: its binary mask inside a region of the image, zero outside it.
    public struct Instance: Sendable, Equatable {
        /// Detection score.
        public var score: Float
        /// The detection's class id.
        public var classID: Int
        /// Region in image pixels: columns `x0..<x1`, rows `y0..<y1` (inside the image; empty when `x1 <= x0` or
        /// `y1 <= y0`).
        public var x0: Int, y0: Int, x1: Int, y1: Int
        /// Row-major 0/1 over the region, `(y1 - y0) * (x1 - x0)` values.
        public var mask: [UInt8]

        public init(score: Float, classID: Int, x0: Int, y0: Int, x1: Int, y1: Int, mask: [UInt8]) {
            self.score = score; self.classID = classID
            self.x0 = x0; self.y0 = y0; self.x1 = max(x0, x1); self.y1 = max(y0, y1); self.mask = mask
        }

        /// A pasted mask thresholded (`value > threshold`) over its pasted region.
        public init(score: Float, classID: Int, pasted: PastedMask, threshold: Float) {
            self.init(score: score, classID: classID, x0: pasted.x0, y0: pasted.y0, x1: pasted.x1, y1: pasted.y1,
                      mask: pasted.values.map { $0 > threshold ? 1 : 0 })
        }
    }

    /// `merge(instances:semantic:config:)` for masks given over their regions: each instance costs its region's
    /// pixels, not the image's (the same result as the full-image masks with zeros outside the regions).
    public static func merge(regions instances: [Instance], semantic: SemanticSegmentation,
                             config: PanopticMergeConfig = PanopticMergeConfig()) -> PanopticResult {
        let n = semantic.height * semantic.width, width = semantic.width
        var ids = [Int32](repeating: 0, count: n)
        var segments: [PanopticResult.Segment] = []
        let order = instances.indices.sorted { a, b in
            instances[a].score != instances[b].score ? instances[a].score > instances[b].score : a < b
        }
        for i in order {
            let inst = instances[i]
            if inst.score < config.instanceScoreThreshold { break }
            let rw = inst.x1 - inst.x0, rh = inst.y1 - inst.y0
            if rw == 0 || rh == 0 { continue }
            precondition(inst.x0 >= 0 && inst.y0 >= 0 && inst.x1 <= width && inst.y1 <= semantic.height,
                         "instance region \(inst.x0)..<\(inst.x1) x \(inst.y0)..<\(inst.y1) outside the image")
            precondition(inst.mask.count == rw * rh, "instance mask has \(inst.mask.count) pixels, region \(rw * rh)")
            var area = 0, overlap = 0
            inst.mask.withUnsafeBufferPointer { m in
                ids.withUnsafeBufferPointer { idp in
                    for y in 0..<rh {
                        let row = (inst.y0 + y) * width + inst.x0, mrow = y * rw
                        for x in 0..<rw where m[mrow + x] != 0 {
                            area += 1
                            if idp[row + x] != 0 { overlap += 1 }
                        }
                    }
                }
            }
            if area == 0 { continue }
            if Float(overlap) / Float(area) > config.overlapThreshold { continue }
            let id = Int32(segments.count + 1)
            var kept = 0
            inst.mask.withUnsafeBufferPointer { m in
                ids.withUnsafeMutableBufferPointer { idp in
                    for y in 0..<rh {
                        let row = (inst.y0 + y) * width + inst.x0, mrow = y * rw
                        for x in 0..<rw where m[mrow + x] != 0 && idp[row + x] == 0 { idp[row + x] = id; kept += 1 }
                    }
                }
            }
            segments.append(.init(id: Int(id), isThing: true, categoryID: inst.classID, area: kept, score: inst.score,
                                  instanceIndex: i))
        }
        // Unassigned pixels per stuff label (CKernels: 16 pixels of one label at a time inside stuff regions).
        var areas = [Int](repeating: 0, count: 256)
        if n > 0 {
            ids.withUnsafeBufferPointer { idp in
                semantic.labels.withUnsafeBufferPointer { l in
                    Ops.voidLabelHistogram(ids: idp.baseAddress!, labels: l.baseAddress!, count: n, into: &areas)
                }
            }
        }
        // Stuff ids per label decided from the areas first, then assigned in one pass (not one pass per label).
        var stuffID = [Int32](repeating: 0, count: 256)
        for label in 1..<256 where areas[label] > 0 && areas[label] >= config.stuffAreaLimit {
            let id = Int32(segments.count + 1)
            stuffID[label] = id
            segments.append(.init(id: Int(id), isThing: false, categoryID: label, area: areas[label], score: nil,
                                  instanceIndex: nil))
        }
        if n > 0, segments.contains(where: { !$0.isThing }) {
            semantic.labels.withUnsafeBufferPointer { l in
                ids.withUnsafeMutableBufferPointer { idp in
                    stuffID.withUnsafeBufferPointer { sid in
                        Ops.selectStuff(ids: idp.baseAddress!, labels: l.baseAddress!, count: n, table: sid.baseAddress!)
                    }
                }
            }
        }
        return PanopticResult(height: semantic.height, width: semantic.width, ids: ids, segments: segments)
    }
}
