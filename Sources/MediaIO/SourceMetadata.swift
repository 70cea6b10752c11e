import CFFmpeg

/// An exact rational number (FFmpeg's `AVRational`), e.g. a frame rate `30000/1001` or a time base `1/90000`.
public struct Rational: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var num: Int32
    public var den: Int32
    public init(_ num: Int32, _ den: Int32) { self.num = num; self.den = den }
    init(_ r: AVRational) { self.num = r.num; self.den = r.den }
    var av: AVRational { AVRational(num: num, den: den) }
    /// `num / den` as a Double; nil when the denominator or numerator is 0 (FFmpeg's "unknown").
    public var value: Double? { (den == 0 || num == 0) ? nil : Double(num) / Double(den) }
    public var description: String { "\(num)/\(den)" }
}

/// A size in pixels.
public struct PixelSize: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var width: Int
    public var height: Int
    public init(width: Int, height: Int) { self.width = width; self.height = height }
    public var description: String { "\(width)x\(height)" }
}

/// What the source says about itself once opened.
public struct SourceMetadata: Sendable, Equatable {
    /// The input location with credentials redacted (what outputs print).
    public var source: String
    /// Demuxer name(s), e.g. `"mov,mp4,m4a,3gp,3g2,mj2"` or `"rtsp"`.
    public var formatName: String
    /// Decoder codec name, e.g. `"h264"`, `"msmpeg4v3"`.
    public var codecName: String
    /// Index of the chosen (best) video stream in the container.
    public var streamIndex: Int
    /// Coded frame size in pixels.
    public var size: PixelSize
    /// Frame rate as the container reports it (average rate, else the base rate), nil when unknown.
    public var frameRate: Rational?
    /// Time base of the video stream: PTS values are integer multiples of it.
    public var timeBase: Rational
    /// Duration in seconds when known (files), nil for live sources.
    public var duration: Double?
    /// Frame count from the container header, else `duration * frameRate`, nil when neither is known.
    public var frameCountEstimate: Int?
    /// True for network streams without an end (RTSP, RTMP, UDP, SRT, ...): callers use drop policies and
    /// reconnect rather than expecting end of file.
    public var isLive: Bool

    /// Frames per second as a Double, falling back to 25 when the container does not say (FFmpeg's habit).
    public var framesPerSecond: Double { frameRate?.value ?? 25 }
}

/// Counters the decoder keeps while running; read them at the end to report damage.
public struct DecodeStats: Sendable, Equatable {
    /// Frames delivered to the caller.
    public var framesDelivered = 0
    /// Video packets read from the container.
    public var packetsRead = 0
    /// Packets or frames the decoder rejected (skipped; decoding continued).
    public var decodeErrors = 0
    /// Frames delivered although the decoder flagged them as damaged (concealed errors).
    public var corruptFrames = 0
    /// FFmpeg's message for the most recent decode error.
    public var lastDecodeError: String?
    /// Set when reading stopped on an error rather than a clean end of file (truncated file, dropped connection).
    public var readError: String?
    public init() {}
}
