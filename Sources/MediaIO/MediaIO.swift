import CFFmpeg
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    /// An explicit level always wins over `libraryDefault`, whenever either happens first.
    public static func set(_ level: FFmpegLogLevel) {
        applyLibraryDefault()  // settle the default now, so that it can never override this call later
        av_log_set_level(level.rawValue)
    }

    /// The level MediaIO sets before it opens its first decoder or encoder, unless `set(_:)` came first: `warning`.
    /// FFmpeg's own default is `info`, at which libx264 prints its statistics on every close ("frame I:...",
    /// "mb P ...", "kb/s:...", ~10 lines per video written) and banners into the embedding program's stderr (e.g.
    /// ~100 lines per `swift test`); warnings and errors still show. The environment variable `FPNSTREAM_FFMPEG_LOG`
    /// (`quiet` ... `debug`, as `names`) overrides it, e.g. `FPNSTREAM_FFMPEG_LOG=info swift test` to see them again.
    public static let libraryDefault: FFmpegLogLevel = .warning

    private static let appliedLibraryDefault: Void = {
        let fromEnvironment = getenv("FPNSTREAM_FFMPEG_LOG").flatMap { named(String(cString: $0)) }
        av_log_set_level((fromEnvironment ?? libraryDefault).rawValue)
    }()

    /// Applies `libraryDefault` once per process (a no-op after `set(_:)`). Every MediaIO type that opens FFmpeg
    /// (`VideoDecoder`, so `LiveSource` too, `VideoWriter`, `PNGEncoder`) calls it first.
    static func applyLibraryDefault() { _ = appliedLibraryDefault }

    /// Names as `ffmpeg -loglevel` spells them.
    public static var names: [String] { allCases.map { "\($0)" } }

    /// The level called `name` (`"quiet"`, `"error"`, `"warning"`, `"info"`, ...), nil if unknown.
    public static func named(_ name: String) -> FFmpegLogLevel? { allCases.first { "\($0)" == name.lowercased() } }
}
