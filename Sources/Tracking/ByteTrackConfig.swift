/// ByteTrack parameters, named as in ByteTrack's command line (and Ultralytics' `bytetrack.yaml` where ByteTrack has
/// no name). Decodes from the pipeline YAML/JSON with these snake_case keys; missing keys keep their defaults.
///
/// ```yaml
/// tracker:
///   track_thresh: 0.5        # "high" detections: score > this, matched first
///   track_low_thresh: 0.1    # "low" detections: track_low_thresh < score < track_thresh, matched second
///   new_track_thresh: 0.6    # an unmatched high detection starts a track when score ≥ this
///   match_thresh: 0.8        # first association: max cost (1 − IoU, or 1 − IoU·score with fuse_score)
///   track_buffer: 30         # frames a lost track is kept, at 30 fps (scaled by the stream's frame rate)
///   min_box_area: 10         # tracks whose box is not larger than this (px²) are not output
///   fuse_score: true
///   class_aware: false
/// ```
public struct ByteTrackConfig: Sendable, Equatable {
    /// High-score threshold: detections with `score > trackThresh` are associated first and may start tracks.
    public var trackThresh: Float = 0.5
    /// Low-score threshold: detections with `trackLowThresh < score < trackThresh` only continue tracked tracks.
    public var trackLowThresh: Float = 0.1
    /// An unmatched high detection starts a new (tentative) track only when `score ≥ newTrackThresh`.
    /// ByteTrack hard-codes `track_thresh + 0.1`, which is this default.
    public var newTrackThresh: Float = 0.6
    /// Cost limit of the first association (tracked + lost tracks × high detections).
    public var matchThresh: Double = 0.8
    /// Cost limit of the second association (remaining tracked tracks × low detections; ByteTrack: 0.5, IoU only).
    public var secondMatchThresh: Double = 0.5
    /// Cost limit for tentative tracks × remaining high detections (ByteTrack: 0.7).
    public var unconfirmedMatchThresh: Double = 0.7
    /// A tracked and a lost track closer than this (`1 − IoU`) are one object twice; the younger is dropped
    /// (ByteTrack: 0.15; supervision uses 0.05).
    public var duplicateThresh: Double = 0.15
    /// Frames, at 30 fps, a lost track is kept for re-identification. See `maxTimeLost`.
    public var trackBuffer: Int = 30
    /// The stream's frame rate; scales `trackBuffer` (ByteTrack's `frame_rate`). Usually left out of the YAML and
    /// taken from the stream with `resolvingFrameRate(stream:)`.
    public var frameRate: Double = 30 {
        didSet { frameRateIsExplicit = true }
    }
    /// True when `frameRate` was given (decoded, `init(frameRate:)` or assigned), so the stream's must not replace it.
    public private(set) var frameRateIsExplicit = false
    /// Tracks with box area (px²) not above this are tracked but not output (ByteTrack's demo filter).
    public var minBoxArea: Float = 10
    /// Multiply IoU by the detection score in the first and the tentative associations (ByteTrack: on unless MOT20).
    public var fuseScore: Bool = true
    /// Only associate detections with tracks of the same class. Off: ByteTrack's class-agnostic matching, and a
    /// track takes the class of its latest detection.
    public var classAware: Bool = false
    /// Output box: the Kalman-filtered box after the update (ByteTrack's `tlwh`, the default) or, when true, the
    /// matched detection's own box (what supervision's `update_with_detections` returns).
    public var outputDetectionBox: Bool = false
    /// How many removed tracks are remembered (`ByteTracker.removedTracks`); older ones are forgotten.
    public var removedHistory: Int = 100

    /// ByteTrack's defaults at 30 fps.
    public init() {}

    /// ByteTrack's defaults for a stream of the given frame rate (frames per second).
    public init(frameRate: Double) {
        self.frameRate = frameRate
        frameRateIsExplicit = true   // didSet does not run in initializers
    }

    /// This configuration with `frameRate` set to the stream's rate, unless a frame rate was given explicitly or the
    /// stream's is unknown (nil, 0, not finite: then 30 fps, ByteTrack's default, stays).
    public func resolvingFrameRate(stream fps: Double?) -> ByteTrackConfig {
        guard !frameRateIsExplicit, let fps, fps.isFinite, fps > 0 else { return self }
        var c = self
        c.frameRate = fps
        return c
    }

    /// Frames a lost track survives: `Int(frameRate / 30 · trackBuffer)`, as ByteTrack's `max_time_lost`.
    public var maxTimeLost: Int {
        Int(frameRate / 30.0 * Double(trackBuffer))
    }

    /// A configuration problem, naming the key as the YAML spells it.
    public struct InvalidValue: Error, Equatable, CustomStringConvertible {
        public var key: String
        public var reason: String
        public var description: String { "tracker: \(key) \(reason)" }
    }

    /// Checks ranges. Thresholds are unitless scores/costs, so out-of-range values are almost always typos.
    public func validate() throws {
        func unit(_ v: Double, _ key: String) throws {
            guard v.isFinite, v >= 0, v <= 1 else { throw InvalidValue(key: key, reason: "must be in [0, 1], got \(v)") }
        }
        try unit(Double(trackThresh), "track_thresh")
        try unit(Double(trackLowThresh), "track_low_thresh")
        try unit(Double(newTrackThresh), "new_track_thresh")
        try unit(matchThresh, "match_thresh")
        try unit(secondMatchThresh, "second_match_thresh")
        try unit(unconfirmedMatchThresh, "unconfirmed_match_thresh")
        try unit(duplicateThresh, "duplicate_thresh")
        guard trackLowThresh <= trackThresh else {
            throw InvalidValue(key: "track_low_thresh", reason: "must not exceed track_thresh (\(trackThresh))")
        }
        guard trackBuffer >= 0 else { throw InvalidValue(key: "track_buffer", reason: "must be ≥ 0, got \(trackBuffer)") }
        guard frameRate.isFinite, frameRate > 0 else {
            throw InvalidValue(key: "frame_rate", reason: "must be > 0, got \(frameRate)")
        }
        guard minBoxArea.isFinite, minBoxArea >= 0 else {
            throw InvalidValue(key: "min_box_area", reason: "must be ≥ 0, got \(minBoxArea)")
        }
        guard removedHistory >= 0 else {
            throw InvalidValue(key: "removed_history", reason: "must be ≥ 0, got \(removedHistory)")
        }
    }
}

extension ByteTrackConfig: Codable {
    enum CodingKeys: String, CodingKey, CaseIterable {
        case trackThresh = "track_thresh"
        case trackLowThresh = "track_low_thresh"
        case newTrackThresh = "new_track_thresh"
        case matchThresh = "match_thresh"
        case secondMatchThresh = "second_match_thresh"
        case unconfirmedMatchThresh = "unconfirmed_match_thresh"
        case duplicateThresh = "duplicate_thresh"
        case trackBuffer = "track_buffer"
        case frameRate = "frame_rate"
        case minBoxArea = "min_box_area"
        case fuseScore = "fuse_score"
        case classAware = "class_aware"
        case outputDetectionBox = "output_detection_box"
        case removedHistory = "removed_history"
    }

    /// Decodes the keys present, keeps defaults for the others, then validates. Unknown keys are an error (a
    /// misspelt `track_tresh` silently ignored would be worse), reported with the list of known keys.
    public init(from decoder: Decoder) throws {
        self.init()
        let known = try decoder.container(keyedBy: AnyKey.self)
        let names = Set(CodingKeys.allCases.map(\.rawValue))
        if let bad = known.allKeys.first(where: { !names.contains($0.stringValue) }) {
            throw InvalidValue(key: bad.stringValue,
                               reason: "is not a tracker parameter (known: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        trackThresh = try c.decodeIfPresent(Float.self, forKey: .trackThresh) ?? trackThresh
        trackLowThresh = try c.decodeIfPresent(Float.self, forKey: .trackLowThresh) ?? trackLowThresh
        // ByteTrack derives the start threshold from track_thresh; keep that link unless it is given.
        newTrackThresh = try c.decodeIfPresent(Float.self, forKey: .newTrackThresh) ?? min(1, trackThresh + 0.1)
        matchThresh = try c.decodeIfPresent(Double.self, forKey: .matchThresh) ?? matchThresh
        secondMatchThresh = try c.decodeIfPresent(Double.self, forKey: .secondMatchThresh) ?? secondMatchThresh
        unconfirmedMatchThresh = try c.decodeIfPresent(Double.self, forKey: .unconfirmedMatchThresh)
            ?? unconfirmedMatchThresh
        duplicateThresh = try c.decodeIfPresent(Double.self, forKey: .duplicateThresh) ?? duplicateThresh
        trackBuffer = try c.decodeIfPresent(Int.self, forKey: .trackBuffer) ?? trackBuffer
        if let fps = try c.decodeIfPresent(Double.self, forKey: .frameRate) {
            frameRate = fps
            frameRateIsExplicit = true
        }
        minBoxArea = try c.decodeIfPresent(Float.self, forKey: .minBoxArea) ?? minBoxArea
        fuseScore = try c.decodeIfPresent(Bool.self, forKey: .fuseScore) ?? fuseScore
        classAware = try c.decodeIfPresent(Bool.self, forKey: .classAware) ?? classAware
        outputDetectionBox = try c.decodeIfPresent(Bool.self, forKey: .outputDetectionBox) ?? outputDetectionBox
        removedHistory = try c.decodeIfPresent(Int.self, forKey: .removedHistory) ?? removedHistory
        try validate()
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}
