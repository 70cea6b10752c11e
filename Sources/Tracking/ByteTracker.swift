import FPNCore

/// ByteTrack (Zhang et al., 2022) multi-object tracker over per-frame detections: one explicit object per stream,
/// fed every frame in order.
///
/// ```
///  detections ─┬─ high (score > track_thresh) ──▶ ① IoU-match with tracked + lost tracks (Kalman-predicted)
///              │                                     │ unmatched tracked tracks
///              └─ low (low < score < track_thresh) ▶ ② IoU-match with them ──▶ still unmatched → lost
///                 unmatched high ──▶ ③ match tentative tracks (unmatched tentative → removed)
///                                    ④ still unmatched, score ≥ new_track_thresh → new tentative track
///                 lost longer than max_time_lost → removed (kept in a bounded history)
/// ```
///
/// Lifecycle: a new track is *tentative* until it is matched on the next frame (tracks born on the very first frame
/// are confirmed at once, as in ByteTrack); then *confirmed* (it gets the next id, 1, 2, ..., and is output); when it
/// misses a frame it is *lost* (not output, still matched in ① and re-found with the same id); after
/// `maxTimeLost` frames lost it is *removed*.
///
/// The algorithm and its constants are ByteTrack's `BYTETracker.update` (also supervision's port), with three
/// deliberate differences: ids are dense (only confirmed tracks consume one, like supervision's external ids); a
/// removed track leaves the lost list at once (ByteTrack keeps it one extra frame by mistake); and gaps in `frameIndex`
/// (dropped frames) are predicted over and count toward the lost buffer.
///
/// Not thread-safe: confine to one queue (the pipeline's track stage).
public final class ByteTracker {
    /// The parameters in force.
    public let config: ByteTrackConfig
    /// Lifecycle events of the last `update` call.
    public private(set) var events: [TrackEvent] = []
    /// The most recently removed confirmed tracks, oldest first, at most `config.removedHistory`.
    public var removedTracks: [RemovedTrack] { removed.elements }

    private let kalman = KalmanBoxFilter()
    private var tracked: [Track] = []   // tentative and confirmed tracks matched on the last frame
    private var lost: [Track] = []
    private var removed: Ring<RemovedTrack>
    private var frameID = 0             // ByteTrack's 1-based frame counter (advances by frame-index gaps)
    private var lastFrameIndex = 0
    private var nextPublicID = 1

    /// A tracker with validated parameters.
    public init(config: ByteTrackConfig = ByteTrackConfig()) throws {
        try config.validate()
        self.config = config
        self.removed = Ring(capacity: config.removedHistory)
    }

    /// Number of tentative and confirmed tracks currently tracked (matched on the last frame).
    public var trackedCount: Int { tracked.count }
    /// Number of lost tracks waiting for re-identification.
    public var lostCount: Int { lost.count }

    /// Forgets every track. Ids keep increasing unless `restartIDs` (so a reconnecting stream never reuses an id).
    public func reset(restartIDs: Bool = false) {
        tracked.removeAll()
        lost.removeAll()
        removed.removeAll()
        events.removeAll()
        frameID = 0
        if restartIDs { nextPublicID = 1 }
    }

    /// Feeds one frame's detections and returns the tracked ones.
    ///
    /// - Parameters:
    ///   - detections: this frame's detections, source pixels, any score (below `trackLowThresh` they are ignored).
    ///   - frameIndex: the frame's index in the stream (`FrameInfo.index`). Frames must come in increasing order;
    ///     a gap of `k` (dropped frames) predicts `k` steps and ages lost tracks by `k`. A non-increasing index
    ///     counts as the next frame.
    /// - Returns: the detections that belong to a confirmed track this frame, in input order, each with `trackID`
    ///   set, its box replaced by the track's Kalman-filtered box (unless `outputDetectionBox`), its score, class,
    ///   mask and landmarks the detection's. Boxes with area ≤ `minBoxArea` are left out. Unmatched detections and
    ///   tentative tracks are not returned.
    public func update(detections: [Detection], frameIndex: Int) -> [Detection] {
        let step = frameID == 0 ? 1 : min(max(frameIndex - lastFrameIndex, 1), config.maxTimeLost + 2)
        frameID += step
        lastFrameIndex = frameIndex
        events.removeAll(keepingCapacity: true)

        var high: [Int] = [], low: [Int] = []
        for (i, d) in detections.enumerated() {
            // Empty or non-finite boxes cannot be filtered (the noise scales with the height) or matched.
            guard d.box.width > 0, d.box.height > 0, d.box.area.isFinite else { continue }
            if d.score > config.trackThresh { high.append(i) }
            else if d.score > config.trackLowThresh && d.score < config.trackThresh { low.append(i) }
        }
        let measurements = detections.map {
            KalmanBoxFilter.measurement(x1: $0.box.x1, y1: $0.box.y1, x2: $0.box.x2, y2: $0.box.y2)
        }

        let unconfirmed = tracked.filter { !$0.isActivated }
        let pool = tracked.filter { $0.isActivated } + lost
        for t in pool {
            for _ in 0..<step {
                // ByteTrack predicts lost tracks without height velocity.
                if t.phase != .tracked { t.kalmanState.velocity[3] = 0 }
                kalman.predict(&t.kalmanState)
            }
        }

        var refound: [Track] = []
        func apply(_ t: Track, _ d: Int) {
            let wasLost = t.phase == .lost
            kalman.update(&t.kalmanState, measurement: measurements[d])
            t.phase = .tracked
            t.lastFrame = frameID
            t.detection = detections[d]
            t.lastFrameIndex = frameIndex
            t.detectionIndex = d
            if !t.isActivated { confirm(t) }
            if wasLost {
                refound.append(t)
                event(.refound, t)
            }
        }

        // ① High detections × (confirmed tracked + lost) tracks.
        let m1 = associate(pool, high, detections, limit: config.matchThresh, fuse: config.fuseScore)
        for (ti, di) in m1.matches { apply(pool[ti], high[di]) }
        // ② Low detections × tracks still unmatched that were tracked on the last frame.
        let remaining = m1.unmatchedTracks.map { pool[$0] }.filter { $0.phase == .tracked }
        let m2 = associate(remaining, low, detections, limit: config.secondMatchThresh, fuse: false)
        for (ti, di) in m2.matches { apply(remaining[ti], low[di]) }
        var newlyLost: [Track] = []
        for ti in m2.unmatchedTracks {
            let t = remaining[ti]
            t.phase = .lost
            newlyLost.append(t)
            event(.lost, t)
        }
        // ③ Remaining high detections × tentative tracks; a tentative track without a match is dropped.
        let highLeft = m1.unmatchedDetections.map { high[$0] }
        let m3 = associate(unconfirmed, highLeft, detections, limit: config.unconfirmedMatchThresh,
                           fuse: config.fuseScore)
        for (ti, di) in m3.matches { apply(unconfirmed[ti], highLeft[di]) }
        for ti in m3.unmatchedTracks { unconfirmed[ti].phase = .removed }
        // ④ New tentative tracks (confirmed at once on the first frame).
        var started: [Track] = []
        for di in m3.unmatchedDetections {
            let d = highLeft[di]
            guard detections[d].score >= config.newTrackThresh else { continue }
            let t = Track(state: kalman.initiate(measurements[d]), detection: detections[d], detectionIndex: d,
                          frame: frameID, frameIndex: frameIndex)
            if frameID == 1 { confirm(t) }
            started.append(t)
        }
        // ⑤ Lost tracks past the buffer are removed.
        let maxTimeLost = config.maxTimeLost
        for t in lost where t.phase == .lost && frameID - t.lastFrame > maxTimeLost { remove(t) }

        tracked = tracked.filter { $0.phase == .tracked } + started + refound
        lost = lost.filter { $0.phase == .lost } + newlyLost
        removeDuplicates()

        var output: [(Int, Detection)] = []
        output.reserveCapacity(tracked.count)
        for t in tracked where t.isActivated {
            // Every track left in `tracked` was matched (or born) on this frame.
            guard let id = t.publicID else { continue }
            var out = t.detection
            out.trackID = id
            if !config.outputDetectionBox { out.box = t.box }
            guard out.box.width * out.box.height > config.minBoxArea else { continue }
            output.append((t.detectionIndex, out))
        }
        output.sort { $0.0 < $1.0 }
        return output.map(\.1)
    }

    // MARK: - Steps

    private func confirm(_ t: Track) {
        t.isActivated = true
        t.publicID = nextPublicID
        t.firstFrameIndex = t.lastFrameIndex
        nextPublicID += 1
        event(.started, t)
    }

    private func remove(_ t: Track) {
        t.phase = .removed
        guard let id = t.publicID else { return }
        event(.removed, t)
        removed.append(RemovedTrack(trackID: id, classID: t.detection.classID, firstFrameIndex: t.firstFrameIndex,
                                    lastFrameIndex: t.lastFrameIndex, lastBox: t.box))
    }

    private func event(_ kind: TrackEvent.Kind, _ t: Track) {
        guard let id = t.publicID else { return }
        events.append(TrackEvent(kind: kind, trackID: id, classID: t.detection.classID, box: t.box,
                                 frameIndex: lastFrameIndex))
    }

    /// A tracked and a lost track covering the same object (`1 − IoU < duplicateThresh`): the younger one goes (ByteTrack's
    /// `remove_duplicate_stracks`; the age is frames between birth and last match).
    private func removeDuplicates() {
        guard !tracked.isEmpty, !lost.isEmpty else { return }
        var dropTracked = Set<Int>(), dropLost = Set<Int>()
        for (p, a) in tracked.enumerated() {
            let ba = a.corners
            for (q, b) in lost.enumerated() {
                if config.classAware && a.detection.classID != b.detection.classID { continue }
                guard 1 - iou(ba, b.corners) < config.duplicateThresh else { continue }
                if a.lastFrame - a.startFrame > b.lastFrame - b.startFrame { dropLost.insert(q) } else { dropTracked.insert(p) }
            }
        }
        guard !dropTracked.isEmpty || !dropLost.isEmpty else { return }
        for q in dropLost { remove(lost[q]) }
        for p in dropTracked { remove(tracked[p]) }
        tracked = tracked.enumerated().filter { !dropTracked.contains($0.offset) }.map(\.element)
        lost = lost.enumerated().filter { !dropLost.contains($0.offset) }.map(\.element)
    }

    private struct Association {
        var matches: [(Int, Int)] = []
        var unmatchedTracks: [Int] = []
        var unmatchedDetections: [Int] = []
    }

    /// Optimal matching of `tracks` to `detections[dets]` on `1 − IoU` (or `1 − IoU·score`) with a cost limit.
    private func associate(_ tracks: [Track], _ dets: [Int], _ detections: [Detection], limit: Double,
                           fuse: Bool) -> Association {
        var a = Association()
        guard !tracks.isEmpty, !dets.isEmpty else {
            a.unmatchedTracks = Array(tracks.indices)
            a.unmatchedDetections = Array(dets.indices)
            return a
        }
        let n = tracks.count, m = dets.count
        var costs = [Double](repeating: .infinity, count: n * m)
        for (i, t) in tracks.enumerated() {
            let tb = t.corners
            for (j, d) in dets.enumerated() {
                let det = detections[d]
                if config.classAware && det.classID != t.detection.classID { continue }
                let b = det.box
                let overlap = iou(tb, (Double(b.x1), Double(b.y1), Double(b.x2), Double(b.y2)))
                costs[i * m + j] = 1 - (fuse ? overlap * Double(det.score) : overlap)
            }
        }
        let rowToCol = LinearAssignment.solve(costs: costs, rows: n, cols: m, costLimit: limit)
        var detMatched = [Bool](repeating: false, count: m)
        for (i, j) in rowToCol.enumerated() {
            if j >= 0 { a.matches.append((i, j)); detMatched[j] = true } else { a.unmatchedTracks.append(i) }
        }
        a.unmatchedDetections = (0..<m).filter { !detMatched[$0] }
        return a
    }
}

/// IoU of two corner boxes without the `+1` pixel convention (as supervision's `box_iou_batch` and `Box.iou`).
@inline(__always)
func iou(_ a: (Double, Double, Double, Double), _ b: (Double, Double, Double, Double)) -> Double {
    let iw = min(a.2, b.2) - max(a.0, b.0)
    let ih = min(a.3, b.3) - max(a.1, b.1)
    guard iw > 0, ih > 0 else { return 0 }
    let inter = iw * ih
    let union = (a.2 - a.0) * (a.3 - a.1) + (b.2 - b.0) * (b.3 - b.1) - inter
    return union > 0 ? inter / union : 0
}

/// One track's state (ByteTrack's `STrack`). A class because it moves between the tracked and lost lists.
final class Track {
    enum Phase { case tracked, lost, removed }

    var publicID: Int?
    var phase: Phase = .tracked
    /// Confirmed (ByteTrack's `is_activated`): matched on two consecutive frames, or born on the first frame.
    var isActivated = false
    var kalmanState: KalmanBoxFilter.State
    /// The latest matched detection (class, score, mask travel with the track's output).
    var detection: Detection
    /// ByteTrack frame counter values of birth and of the latest match (`start_frame`, `frame_id`).
    let startFrame: Int
    var lastFrame: Int
    /// Index of the matched detection in the current `update` call's input (for output order).
    var detectionIndex: Int
    /// Caller frame indices of the first output and of the latest match.
    var firstFrameIndex: Int
    var lastFrameIndex: Int

    init(state: KalmanBoxFilter.State, detection: Detection, detectionIndex: Int, frame: Int, frameIndex: Int) {
        self.kalmanState = state
        self.detection = detection
        self.detectionIndex = detectionIndex
        self.startFrame = frame
        self.lastFrame = frame
        self.firstFrameIndex = frameIndex
        self.lastFrameIndex = frameIndex
    }

    var corners: (Double, Double, Double, Double) {
        let c = KalmanBoxFilter.corners(kalmanState.position)
        return (c.x1, c.y1, c.x2, c.y2)
    }

    var box: Box {
        let c = KalmanBoxFilter.corners(kalmanState.position)
        return Box(x1: Float(c.x1), y1: Float(c.y1), x2: Float(c.x2), y2: Float(c.y2))
    }
}

/// A fixed-capacity FIFO: appending past capacity forgets the oldest element.
struct Ring<Element> {
    let capacity: Int
    private var storage: [Element] = []
    private var head = 0   // index of the oldest element once full

    init(capacity: Int) { self.capacity = max(0, capacity) }

    var count: Int { storage.count }

    mutating func append(_ e: Element) {
        guard capacity > 0 else { return }
        if storage.count < capacity { storage.append(e); return }
        storage[head] = e
        head = (head + 1) % capacity
    }

    mutating func removeAll() { storage.removeAll(); head = 0 }

    /// Oldest first.
    var elements: [Element] { Array(storage[head...] + storage[..<head]) }
}
