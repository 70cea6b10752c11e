import FPNCore

/// A change in a track's life, reported by `ByteTracker.update` in `ByteTracker.events` (optional to consume).
/// Only tracks that were output (that have an id) report events; a tentative track that never got a second
/// detection disappears silently.
public struct TrackEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable, Codable {
        /// The track was confirmed and got its id (its first output frame).
        case started
        /// The track had no detection this frame; it is kept for re-identification for `maxTimeLost` frames.
        case lost
        /// A lost track was matched again, keeping its id.
        case refound
        /// The track was dropped: lost for longer than the buffer, or a duplicate of an older track.
        case removed
    }

    public var kind: Kind
    /// The track's id (as in `Detection.trackID`).
    public var trackID: Int
    /// The track's class (its latest detection's).
    public var classID: Int
    /// The track's box at the event, in source pixels (Kalman state; predicted when lost or removed).
    public var box: Box
    /// The frame index passed to `update` when the event happened.
    public var frameIndex: Int

    public init(kind: Kind, trackID: Int, classID: Int, box: Box, frameIndex: Int) {
        self.kind = kind
        self.trackID = trackID
        self.classID = classID
        self.box = box
        self.frameIndex = frameIndex
    }
}

/// What is remembered of a removed track (`ByteTracker.removedTracks`, bounded by `ByteTrackConfig.removedHistory`).
public struct RemovedTrack: Sendable, Equatable {
    /// Its id.
    public var trackID: Int
    /// Class of its latest detection.
    public var classID: Int
    /// Frame index of its first output.
    public var firstFrameIndex: Int
    /// Frame index of its last matched detection.
    public var lastFrameIndex: Int
    /// Kalman box at its last matched detection, source pixels.
    public var lastBox: Box

    public init(trackID: Int, classID: Int, firstFrameIndex: Int, lastFrameIndex: Int, lastBox: Box) {
        self.trackID = trackID
        self.classID = classID
        self.firstFrameIndex = firstFrameIndex
        self.lastFrameIndex = lastFrameIndex
        self.lastBox = lastBox
    }
}
