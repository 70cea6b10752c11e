import CFFmpeg
import FPNCore

/// Everything that can go wrong in MediaIO. Every case names the input or output it concerns (credentials
/// redacted), so `description` is a complete one-line message for the user.
public enum MediaIOError: Error, CustomStringConvertible, Equatable {
    /// The input path does not exist.
    case inputNotFound(String)
    /// The input path is a directory.
    case inputIsDirectory(String)
    /// The input file has zero bytes.
    case inputEmpty(String)
    /// libavformat could not open or probe the input (`reason` is FFmpeg's message).
    case openFailed(input: String, reason: String)
    /// The input has no video stream.
    case noVideoStream(String)
    /// The video stream's codec has no decoder in this FFmpeg build.
    case unsupportedCodec(input: String, codec: String)
    /// The decoder exists but could not be opened.
    case decoderOpenFailed(input: String, codec: String, reason: String)
    /// The video declares a picture size beyond `VideoDecoder.maxSide` or `VideoDecoder.maxPixels`.
    case imageTooLarge(input: String, width: Int, height: Int)
    /// Reading the input failed in a way that is not a clean end of stream (live sources care; files end).
    case readFailed(input: String, reason: String)
    /// The output could not be created (`reason` is FFmpeg's or the OS's message).
    case outputOpenFailed(output: String, reason: String)
    /// No usable video encoder was found for the output.
    case encoderNotFound(output: String, tried: [String])
    /// The encoder could not be opened with the requested settings.
    case encoderOpenFailed(output: String, encoder: String, reason: String)
    /// Encoding or writing a frame failed.
    case writeFailed(output: String, reason: String)

    public var description: String {
        switch self {
        case .inputNotFound(let i): return "\(i): no such file"
        case .inputIsDirectory(let i): return "\(i): is a directory, not a video file"
        case .inputEmpty(let i): return "\(i): file is empty"
        case .openFailed(let i, let r): return "\(i): cannot open input: \(r)"
        case .noVideoStream(let i): return "\(i): no video stream in input"
        case .unsupportedCodec(let i, let c): return "\(i): unsupported video codec '\(c)' (no decoder in this FFmpeg build)"
        case .decoderOpenFailed(let i, let c, let r): return "\(i): cannot open \(c) decoder: \(r)"
        case .imageTooLarge(let i, let w, let h):
            return "\(i): picture size \(w)x\(h) is larger than the limit (\(VideoDecoder.maxSide) pixels a side, "
                + "\(VideoDecoder.maxPixels) pixels)"
        case .readFailed(let i, let r): return "\(i): read error: \(r)"
        case .outputOpenFailed(let o, let r): return "\(o): cannot open output: \(r)"
        case .encoderNotFound(let o, let t): return "\(o): no video encoder available (tried \(t.joined(separator: ", ")))"
        case .encoderOpenFailed(let o, let e, let r): return "\(o): cannot open encoder \(e): \(r)"
        case .writeFailed(let o, let r): return "\(o): write failed: \(r)"
        }
    }
}

/// FFmpeg's message for an error code (`av_strerror`), e.g. "Invalid data found when processing input".
func ffmpegErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    if av_strerror(code, &buffer, buffer.count) < 0 { return "FFmpeg error \(code)" }
    return String(cString: buffer)
}

/// Error codes that are macros in C, as Swift constants.
enum AVCode {
    static let eof = fpn_averror_eof()
    static let again = fpn_averror(EAGAIN)
    static let exit = fpn_averror_exit()
    static let invalidData = fpn_averror_invaliddata()
    static let decoderNotFound = fpn_averror_decoder_not_found()
    static let streamNotFound = fpn_averror_stream_not_found()
    static let noPTS = fpn_nopts_value()
}
