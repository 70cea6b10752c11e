/// Non-maximum suppression and the selection helpers used by every detector's post-processing, matching
/// torchvision (`ops/boxes.py` and the CPU kernel `csrc/ops/cpu/nms_kernel.cpp`).
public enum NMS {
    /// Indices of the boxes kept by greedy NMS, in descending score order.
    ///
    /// As torchvision's CPU kernel: boxes are visited by a **stable** descending sort of the scores (equal scores keep
    /// their input order); a box is suppressed when its IoU with a kept box is strictly greater than `iouThreshold`;
    /// areas are `(x2 - x1) * (y2 - y1)` (no +1) and `IoU = inter / (area_i + area_j - inter)` in Float32.
    public static func nms(boxes: [Box], scores: [Float], iouThreshold: Float) -> [Int] {
        precondition(boxes.count == scores.count, "NMS: \(boxes.count) boxes, \(scores.count) scores")
        let n = boxes.count
        if n == 0 { return [] }
        let order = sortedDescending(scores)
        // Boxes and areas in visiting order, one contiguous array per coordinate: the inner loop reads them in
        // sequence (same values and the same arithmetic as indexing the boxes through `order`).
        var keep: [Int] = []
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 5 * n) { buf in
            let x1 = buf.baseAddress!, y1 = x1 + n, x2 = y1 + n, y2 = x2 + n, area = y2 + n
            for oi in 0..<n {
                let b = boxes[order[oi]]
                x1[oi] = b.x1; y1[oi] = b.y1; x2[oi] = b.x2; y2[oi] = b.y2
                area[oi] = (b.x2 - b.x1) * (b.y2 - b.y1)
            }
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n) { flags in
                let suppressed = flags.baseAddress!
                suppressed.initialize(repeating: 0, count: n)
                for oi in 0..<n where suppressed[oi] == 0 {
                    keep.append(order[oi])
                    let ix1 = x1[oi], iy1 = y1[oi], ix2 = x2[oi], iy2 = y2[oi], ai = area[oi]
                    // Every later box, suppressed or not (marking one twice changes nothing): a loop without
                    // branches, which the compiler vectorises.
                    for oj in (oi + 1)..<n {
                        let w = max(0, min(ix2, x2[oj]) - max(ix1, x1[oj]))
                        let h = max(0, min(iy2, y2[oj]) - max(iy1, y1[oj]))
                        let inter = w * h
                        let ovr = inter / (ai + area[oj] - inter)
                        suppressed[oj] |= ovr > iouThreshold ? 1 : 0
                    }
                }
            }
        }
        return keep
    }

    /// NMS applied independently per category (`idxs`), as torchvision's `batched_nms`; returns kept indices sorted by
    /// descending score.
    ///
    /// torchvision switches strategy on size and so do we, because the two give (slightly) different results:
    /// - more than 1000 boxes (`boxes.numel() > 4000` on CPU): NMS per category, then the kept indices in ascending
    ///   index order are sorted by descending score (stable here; torch's CPU sort keeps ties in index order too);
    /// - otherwise the "coordinate trick": every box is offset by `idx * (maxCoordinate + 1)` in Float32 so categories
    ///   never overlap, and one NMS runs on the offset boxes (IoUs are computed on the offset coordinates, which
    ///   round differently — reproduced here).
    public static func batched(boxes: [Box], scores: [Float], idxs: [Int], iouThreshold: Float) -> [Int] {
        precondition(boxes.count == scores.count && boxes.count == idxs.count, "batched NMS: length mismatch")
        let n = boxes.count
        if n == 0 { return [] }
        if n * 4 > 4000 {
            var byClass: [Int: [Int]] = [:]
            for i in 0..<n { byClass[idxs[i], default: []].append(i) }
            var keepMask = [Bool](repeating: false, count: n)
            for (_, members) in byClass {
                let kept = nms(boxes: members.map { boxes[$0] }, scores: members.map { scores[$0] },
                               iouThreshold: iouThreshold)
                for k in kept { keepMask[members[k]] = true }
            }
            let kept = (0..<n).filter { keepMask[$0] }
            let order = sortedDescending(kept.map { scores[$0] })
            return order.map { kept[$0] }
        }
        var maxCoordinate = -Float.infinity
        for b in boxes { maxCoordinate = max(maxCoordinate, b.x1, b.y1, b.x2, b.y2) }
        let step = maxCoordinate + 1
        let shifted = (0..<n).map { i -> Box in
            let off = Float(idxs[i]) * step
            let b = boxes[i]
            return Box(x1: b.x1 + off, y1: b.y1 + off, x2: b.x2 + off, y2: b.y2 + off)
        }
        return nms(boxes: shifted, scores: scores, iouThreshold: iouThreshold)
    }

    /// Indices of `scores` sorted by descending value; equal values keep ascending index order (stable).
    public static func sortedDescending(_ scores: [Float]) -> [Int] {
        Array(0..<scores.count).sorted { a, b in
            let sa = scores[a], sb = scores[b]
            return sa > sb || (sa == sb && a < b)
        }
    }

    /// Indices of the `k` largest values of `values` (all of them when `k >= count`), sorted by descending value,
    /// ties by ascending index. Matches `torch.topk(sorted=True)` except for the order among exactly equal values,
    /// which torch leaves unspecified.
    public static func topK(_ values: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        let n = values.count
        if k >= n {
            return Array(0..<n).sorted { a, b in values[a] > values[b] || (values[a] == values[b] && a < b) }
        }
        if k <= 0 { return [] }
        // Min-heap of the best k (worst at the root): "worse" = smaller value, or equal value and larger index.
        @inline(__always) func worse(_ a: Int, _ b: Int) -> Bool {
            values[a] < values[b] || (values[a] == values[b] && a > b)
        }
        var heap = [Int]()
        heap.reserveCapacity(k)
        func siftDown(_ start: Int) {
            var i = start
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && worse(heap[l], heap[m]) { m = l }
                if r < heap.count && worse(heap[r], heap[m]) { m = r }
                if m == i { return }
                heap.swapAt(i, m)
                i = m
            }
        }
        for i in 0..<n {
            if heap.count < k {
                heap.append(i)
                var c = heap.count - 1
                while c > 0 {
                    let p = (c - 1) / 2
                    if worse(heap[c], heap[p]) { heap.swapAt(c, p); c = p } else { break }
                }
            } else if worse(heap[0], i) {
                heap[0] = i
                siftDown(0)
            }
        }
        return heap.sorted { a, b in values[a] > values[b] || (values[a] == values[b] && a < b) }
    }

    /// `topK` over an array.
    public static func topK(_ values: [Float], _ k: Int) -> [Int] {
        values.withUnsafeBufferPointer { topK($0, k) }
    }
}
