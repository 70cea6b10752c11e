import ArgumentParser
import MediaIO

/// Video output encoding flags shared by `process` and `tail`.
struct EncoderFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Video encoder (default: libx264, falling back to what this FFmpeg has).",
                               valueName: "name"))
    var encoder: String?

    @Option(help: "H.264 constant rate factor (lower = better quality, bigger file).")
    var crf: Int = 23

    @Option(help: "x264 preset (ultrafast ... veryslow).")
    var preset: String = "veryfast"

    @Option(help: ArgumentHelp("Output container, when the name does not tell (e.g. matroska, mpegts).",
                               valueName: "name"))
    var format: String?

    var options: EncoderOptions { EncoderOptions(encoder: encoder, crf: crf, preset: preset, format: format) }
}

/// FFmpeg input flags shared by `process` and `tail`: `--input-option KEY=VALUE` and `--ffmpeg-log LEVEL`.
struct FFmpegInputFlags: ParsableArguments {
    @Option(name: .customLong("input-option"), parsing: .singleValue,
            help: ArgumentHelp("FFmpeg input option KEY=VALUE (repeatable), e.g. rtsp_transport=tcp, video_size=640x480.",
                               valueName: "key=value"))
    var inputOptions: [String] = []

    @Option(help: ArgumentHelp("FFmpeg's own log level: quiet, error, warning, info, verbose, debug.",
                               valueName: "level"))
    var ffmpegLog: String = "quiet"

    func validate() throws {
        for o in inputOptions where !o.contains("=") {
            throw ValidationError("--input-option \(o): expected KEY=VALUE")
        }
        guard FFmpegLogLevel.named(ffmpegLog) != nil else {
            throw ValidationError("--ffmpeg-log \(ffmpegLog): expected one of \(FFmpegLogLevel.names.joined(separator: ", "))")
        }
    }

    /// The `--input-option` pairs as an options dictionary.
    var formatOptions: [String: String] {
        var d: [String: String] = [:]
        for o in inputOptions {
            let kv = o.split(separator: "=", maxSplits: 1).map(String.init)
            d[kv[0]] = kv.count > 1 ? kv[1] : ""
        }
        return d
    }

    /// Sets FFmpeg's global log level.
    func applyLogLevel() { FFmpegLogLevel.set(FFmpegLogLevel.named(ffmpegLog) ?? .quiet) }
}
