import ArgumentParser
import Tracking

/// ByteTrack parameters as command-line options (names as in ByteTrack and the pipeline YAML).
struct TrackerOptions: ParsableArguments {
    @Option(help: "Stream frame rate; scales the lost-track buffer.")
    var fps: Double = 30
    @Option(name: .customLong("track-thresh"), help: "High-score threshold (first association, new tracks).")
    var trackThresh: Float?
    @Option(name: .customLong("track-low-thresh"), help: "Low-score threshold (second association).")
    var trackLowThresh: Float?
    @Option(name: .customLong("new-track-thresh"), help: "Minimum score to start a track (default track-thresh + 0.1).")
    var newTrackThresh: Float?
    @Option(name: .customLong("match-thresh"), help: "Cost limit of the first association (1 − IoU·score).")
    var matchThresh: Double?
    @Option(name: .customLong("track-buffer"), help: "Frames a lost track is kept, at 30 fps.")
    var trackBuffer: Int?
    @Option(name: .customLong("min-box-area"), help: "Tracks with a smaller box (px²) are not output.")
    var minBoxArea: Float?
    @Option(name: .customLong("duplicate-thresh"), help: "1 − IoU under which a tracked and a lost track are duplicates.")
    var duplicateThresh: Double?
    @Flag(name: .customLong("no-fuse-score"), help: "Match on IoU alone (ByteTrack's MOT20 setting).")
    var noFuseScore = false
    @Flag(name: .customLong("class-aware"), help: "Only match detections and tracks of the same class.")
    var classAware = false
    @Flag(name: .customLong("output-detection-box"), help: "Output the matched detection's box, not the Kalman box.")
    var outputDetectionBox = false

    /// The configuration these options describe (validated by `ByteTracker.init`).
    var config: ByteTrackConfig {
        var c = ByteTrackConfig(frameRate: fps)
        if let v = trackThresh { c.trackThresh = v; c.newTrackThresh = min(1, v + 0.1) }
        if let v = trackLowThresh { c.trackLowThresh = v }
        if let v = newTrackThresh { c.newTrackThresh = v }
        if let v = matchThresh { c.matchThresh = v }
        if let v = trackBuffer { c.trackBuffer = v }
        if let v = minBoxArea { c.minBoxArea = v }
        if let v = duplicateThresh { c.duplicateThresh = v }
        c.fuseScore = !noFuseScore
        c.classAware = classAware
        c.outputDetectionBox = outputDetectionBox
        return c
    }
}
