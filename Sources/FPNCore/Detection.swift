/// An axis-aligned box in pixel coordinates, corners `(x1, y1)` top-left and `(x2, y2)` bottom-right,
/// continuous coordinates (a box covering pixel columns 0...9 is x1 = 0, x2 = 10), like torchvision.
public struct Box: Sendable, Equatable, Codable, Hashable {
    public var x1: Float
    public var y1: Float
    public var x2: Float
    public var y2: Float

    public init(x1: Float, y1: Float, x2: Float, y2: Float) {
        self.x1 = x1; self.y1 = y1; self.x2 = x2; self.y2 = y2
    }

    /// Width, never negative.
    @inlinable public var width: Float { max(0, x2 - x1) }
    /// Height, never negative.
    @inlinable public var height: Float { max(0, y2 - y1) }
    /// Area in square pixels (no +1, as torchvision).
    @inlinable public var area: Float { width * height }
    /// Centre point.
    @inlinable public var center: (x: Float, y: Float) { ((x1 + x2) / 2, (y1 + y2) / 2) }

    /// Intersection over union; 0 when either box is empty.
    @inlinable public func iou(_ o: Box) -> Float {
        let iw = min(x2, o.x2) - max(x1, o.x1)
        let ih = min(y2, o.y2) - max(y1, o.y1)
        guard iw > 0, ih > 0 else { return 0 }
        let inter = iw * ih
        let union = area + o.area - inter
        return union > 0 ? inter / union : 0
    }

    /// The box clipped to `[0, width] x [0, height]`.
    @inlinable public func clipped(width w: Float, height h: Float) -> Box {
        Box(x1: min(max(x1, 0), w), y1: min(max(y1, 0), h), x2: min(max(x2, 0), w), y2: min(max(y2, 0), h))
    }
}

/// A 2-D point in source pixels (landmarks).
public struct Point: Sendable, Equatable, Codable, Hashable {
    public var x: Float
    public var y: Float
    public init(x: Float, y: Float) { self.x = x; self.y = y }
}

/// A keypoint of a Keypoint R-CNN detection (COCO person keypoints: nose, eyes, ears, shoulders, ...).
public struct Keypoint: Sendable, Equatable {
    /// Position in source pixels.
    public var x: Float, y: Float
    /// torchvision's visibility flag (always 1 at inference).
    public var visibility: Int
    /// The heatmap logit at the keypoint (torchvision's `keypoints_scores`; not a probability).
    public var score: Float
    public init(x: Float, y: Float, visibility: Int = 1, score: Float) {
        self.x = x; self.y = y; self.visibility = visibility; self.score = score
    }

    /// COCO's person skeleton (the person_keypoints annotations' `skeleton`, made 0-based) over COCO's 17 keypoints
    /// (nose, left/right eye, ear, shoulder, elbow, wrist, hip, knee, ankle).
    public static let cocoSkeleton: [[Int]] = [
        [15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8], [7, 9], [8, 10],
        [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
    ]
}

/// One detected object in source-frame pixels.
public struct Detection: Sendable, Equatable {
    /// Box in source pixels.
    public var box: Box
    /// Confidence in [0, 1].
    public var score: Float
    /// Model class id (COCO-style: for torchvision COCO models 1...90, 0 is background).
    public var classID: Int
    /// Human-readable class name from the model metadata.
    public var className: String
    /// Track id assigned by the tracker; nil until tracked.
    public var trackID: Int?
    /// Binary instance mask at source resolution, when the model has a mask head.
    public var mask: MaskRLE?
    /// Optional keypoints/landmarks in source pixels (e.g. 5 face landmarks).
    public var landmarks: [Point]?
    /// Keypoint R-CNN keypoints in the model's keypoint order (nil for other models).
    public var keypoints: [Keypoint]?

    public init(box: Box, score: Float, classID: Int, className: String,
                trackID: Int? = nil, mask: MaskRLE? = nil, landmarks: [Point]? = nil) {
        self.box = box
        self.score = score
        self.classID = classID
        self.className = className
        self.trackID = trackID
        self.mask = mask
        self.landmarks = landmarks
    }
}

/// One segment of a panoptic result (COCO panoptic `segments_info` plus its mask).
public struct PanopticSegment: Sendable, Equatable {
    /// Segment id in the panoptic map (0 is void).
    public var id: Int
    /// Category id.
    public var categoryID: Int
    /// Category name.
    public var categoryName: String
    /// True for "thing" (instance) segments, false for "stuff".
    public var isThing: Bool
    /// Area in source pixels.
    public var area: Int
    /// Instance score for things; nil for stuff.
    public var score: Float?
    /// Segment mask at source resolution.
    public var mask: MaskRLE

    public init(id: Int, categoryID: Int, categoryName: String, isThing: Bool, area: Int, score: Float?, mask: MaskRLE) {
        self.id = id
        self.categoryID = categoryID
        self.categoryName = categoryName
        self.isThing = isThing
        self.area = area
        self.score = score
        self.mask = mask
    }
}

/// Regions of one RoI head in one frame (or summed over frames): `reused` of `total` got an earlier frame's results.
public struct RegionReuseCount: Sendable, Equatable {
    public var reused: Int
    public var total: Int

    public init(reused: Int, total: Int) {
        self.reused = reused; self.total = total
    }
}

extension Dictionary where Key == String, Value == RegionReuseCount {
    /// Adds `other`'s counts head by head (a run's tally of its frames' `FrameResult.regionReuse`).
    public mutating func add(_ other: [String: RegionReuseCount]) {
        for (head, c) in other {
            self[head, default: RegionReuseCount(reused: 0, total: 0)].reused += c.reused
            self[head, default: RegionReuseCount(reused: 0, total: 0)].total += c.total
        }
    }
}

/// Everything the pipeline knows about one frame after inference (and tracking).
public struct FrameResult: Sendable {
    public var info: FrameInfo
    public var detections: [Detection]
    /// Panoptic segments when the model has a semantic head.
    public var panoptic: [PanopticSegment]?
    /// Fraction of backbone/FPN work recomputed for this frame (1 = dense), when temporal reuse is on.
    public var recomputedFraction: Double?
    /// Temporal `delta` only: no change reached the pyramid levels (every change stayed below its thresholds), so
    /// the detector returned the previous frame's detections and segments, which its heads computed from these same
    /// levels, without running the heads again.
    public var repeated = false
    /// The temporal accuracy guard's decision, on the frames it verified (delta mode).
    public var temporalGuard: TemporalGuardRecord?
    /// Temporal `delta`, R-CNN models: per RoI head that ran this frame (`box`: the proposals, `mask` and
    /// `keypoint`: the detections), how many of its regions got their results back from an earlier frame (the
    /// pyramid under them unwritten since) instead of being pooled and run again. Empty otherwise.
    public var regionReuse: [String: RegionReuseCount] = [:]
    /// Per-stage wall time for this frame in milliseconds, keyed by stage name.
    public var timingsMs: [String: Double]

    public init(info: FrameInfo, detections: [Detection] = [], panoptic: [PanopticSegment]? = nil,
                recomputedFraction: Double? = nil, timingsMs: [String: Double] = [:]) {
        self.info = info
        self.detections = detections
        self.panoptic = panoptic
        self.recomputedFraction = recomputedFraction
        self.timingsMs = timingsMs
    }
}
