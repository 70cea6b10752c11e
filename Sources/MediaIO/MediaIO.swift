import CFFmpeg

/// Versions of the FFmpeg libraries linked at run time, e.g. `"libavformat 59.27.100"`.
public enum FFmpegVersions {
    public static var summary: String {
        func v(_ x: UInt32) -> String { "\(x >> 16).\((x >> 8) & 0xff).\(x & 0xff)" }
        return "libavformat \(v(avformat_version())), libavcodec \(v(avcodec_version())), libswscale \(v(swscale_version()))"
    }
}

/// How much FFmpeg itself prints to stderr (process-wide, like `ffmpeg -loglevel`).
public enum FFmpegLogLevel: Int32, Sendable, CaseIterable {
    case quiet = -8, panic = 0, fatal = 8, error = 16, warning = 24, info = 32, verbose = 40, debug = 48

    /// Sets FFmpeg's global log level. The CLI keeps FFmpeg quiet and reports errors itself, one line each.
    public static func set(_ level: FFmpegLogLevel) { av_log_set_level(level.rawValue) }

    /// Names as `ffmpeg -loglevel` spells them.
    public static var names: [String] { allCases.map { "\($0)" } }

    /// The level called `name` (`"quiet"`, `"error"`, `"warning"`, `"info"`, ...), nil if unknown.
    public static func named(_ name: String) -> FFmpegLogLevel? { allCases.first { "\($0)" == name.lowercased() } }
}
