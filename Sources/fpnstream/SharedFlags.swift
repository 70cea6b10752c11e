import TemporalReuse
import ArgumentParser
import FPNStream
import MediaIO
import Tensor
import Vision

/// Which frames are analysed, shared by `process` and `tail`. The values are read unconditionally, so a negative
/// number (`--max-frames -1`) reaches `validate` and gets a message naming the flag.
struct FrameSelectionFlags: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("Analyze every Nth frame.", valueName: "n"))
    var stride: Int?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Analyze at most this many frames per second of stream time.", valueName: "fps"))
    var maxFps: Double?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Stop after this many analyzed frames (tail: per stream).", valueName: "n"))
    var maxFrames: Int?

    func validate() throws {
        if let n = stride, n < 1 { throw ValidationError("--stride must be at least 1 (got \(n))") }
        if let f = maxFps, !(f > 0) { throw ValidationError("--max-fps must be > 0 (got \(f))") }
        if let n = maxFrames, n < 1 { throw ValidationError("--max-frames must be at least 1 (got \(n))") }
    }
}

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

/// Temporal reuse flags shared by `process` and `tail` (docs/temporal.md); they override a pipeline's `temporal:`.
struct TemporalFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Reuse backbone/FPN work across frames: off (dense), keyframe (model every N frames, "
                               + "detections repeated between), delta (recompute changed tiles only), auto (delta "
                               + "calibrated on the first frames).",
                               valueName: "off|keyframe|delta|auto"))
    var temporal: TemporalMode?

    @Option(help: ArgumentHelp("delta: a tile is recomputed when its max |change| exceeds this × the layer input's "
                               + "RMS (default \(TemporalSettings().threshold); 0 = exact).", valueName: "t"))
    var temporalThreshold: Float?

    @Option(help: ArgumentHelp("delta: dense refresh every N frames (default \(TemporalSettings().refreshInterval); 0 = only the first).",
                               valueName: "n"))
    var temporalRefresh: Int?

    @Option(help: ArgumentHelp("keyframe: run the model every N frames (default \(TemporalSettings().keyframeInterval)).", valueName: "n"))
    var temporalKeyframeInterval: Int?

    @Option(help: ArgumentHelp("delta: a layer runs densely when a tile pass would compute more than this fraction of its output (its changed tiles; for a Winograd conv, the F(4x4, 3x3) blocks they touch) (default \(TemporalSettings().denseFallback)).",
                               valueName: "f"))
    var temporalDenseFallback: Double?

    @Option(help: ArgumentHelp("delta: output tile side in pixels (default \(TemporalSettings().tile)).", valueName: "n"))
    var temporalTile: Int?

    @Option(help: ArgumentHelp("delta: threshold of the image-reading (stem) conv, × the image RMS on box means of "
                               + "|change| (default: --temporal-threshold).", valueName: "t"))
    var temporalInputThreshold: Float?

    @Option(help: ArgumentHelp("delta: box side in image pixels of the stem's change metric (default \(TemporalSettings().inputBlock)).", valueName: "n"))
    var temporalInputBlock: Int?

    @Option(help: ArgumentHelp("delta: the whole frame runs densely when more than this fraction of the image changed "
                               + "(default \(TemporalSettings().frameFallback); 1 = never).", valueName: "f"))
    var temporalFrameFallback: Double?

    @Option(help: ArgumentHelp("delta: output tile side for layers at stride >= 16 (default \(TemporalSettings().deepTile) = --temporal-tile).",
                               valueName: "n"))
    var temporalDeepTile: Int?

    @Option(help: ArgumentHelp("delta: gate conv outputs inside the backbone+FPN, so their readers keep no input copy "
                               + "(default \(TemporalSettings().gateOutputs); false = every conv compares its own input).",
                               valueName: "true|false"))
    var temporalGateOutputs: Bool?

    @Option(help: ArgumentHelp("delta: the accuracy guard, which verifies the delta result against a dense pass every "
                               + "refresh and adapts the thresholds (default \(TemporalSettings().accuracyGuard.enabled)).",
                               valueName: "true|false"))
    var temporalGuard: Bool?

    @Option(help: ArgumentHelp("delta: agreement F1 with the dense detector that the guard holds (default "
                               + "\(TemporalSettings().accuracyGuard.targetF1)).", valueName: "f1"))
    var temporalGuardTarget: Double?

    func validate() throws {
        if let t = temporalThreshold, !(t >= 0) { throw ValidationError("--temporal-threshold must be >= 0") }
        if let n = temporalRefresh, n < 0 { throw ValidationError("--temporal-refresh must be >= 0") }
        if let n = temporalKeyframeInterval, n < 1 { throw ValidationError("--temporal-keyframe-interval must be >= 1") }
        if let f = temporalDenseFallback, !(0...1).contains(f) {
            throw ValidationError("--temporal-dense-fallback must be in [0, 1]")
        }
        if let n = temporalTile, n < 1 { throw ValidationError("--temporal-tile must be >= 1") }
        if let t = temporalInputThreshold, !(t >= 0) { throw ValidationError("--temporal-input-threshold must be >= 0") }
        if let n = temporalInputBlock, n < 1 { throw ValidationError("--temporal-input-block must be >= 1") }
        if let f = temporalFrameFallback, !(0...1).contains(f) {
            throw ValidationError("--temporal-frame-fallback must be in [0, 1]")
        }
        if let n = temporalDeepTile, n < 0 { throw ValidationError("--temporal-deep-tile must be >= 0") }
        if let f = temporalGuardTarget, !(0...1).contains(f) {
            throw ValidationError("--temporal-guard-target must be in [0, 1]")
        }
    }

    /// `settings` (from a pipeline file, or the defaults) with the flags given applied. Tuning flags that the
    /// resulting mode does not use are an error, so a forgotten `--temporal delta` does not go unnoticed.
    func applied(to settings: TemporalSettings) throws -> TemporalSettings {
        var s = settings
        if let m = temporal { s.mode = m }
        if let v = temporalThreshold { s.threshold = v }
        if let v = temporalRefresh { s.refreshInterval = v }
        if let v = temporalKeyframeInterval { s.keyframeInterval = v }
        if let v = temporalDenseFallback { s.denseFallback = v }
        if let v = temporalTile { s.tile = v }
        if let v = temporalInputThreshold { s.inputThreshold = v }
        if let v = temporalInputBlock { s.inputBlock = v }
        if let v = temporalFrameFallback { s.frameFallback = v }
        if let v = temporalDeepTile { s.deepTile = v }
        if let v = temporalGateOutputs { s.gateOutputs = v }
        if let v = temporalGuard { s.accuracyGuard.enabled = v }
        if let v = temporalGuardTarget { s.accuracyGuard.targetF1 = v }
        let deltaOnly = [("--temporal-threshold", temporalThreshold != nil), ("--temporal-refresh", temporalRefresh != nil),
                         ("--temporal-dense-fallback", temporalDenseFallback != nil), ("--temporal-tile", temporalTile != nil),
                         ("--temporal-input-threshold", temporalInputThreshold != nil),
                         ("--temporal-input-block", temporalInputBlock != nil),
                         ("--temporal-frame-fallback", temporalFrameFallback != nil),
                         ("--temporal-deep-tile", temporalDeepTile != nil),
                         ("--temporal-gate-outputs", temporalGateOutputs != nil),
                         ("--temporal-guard", temporalGuard != nil), ("--temporal-guard-target", temporalGuardTarget != nil)]
        if !s.usesCache, let flag = deltaOnly.first(where: \.1) {
            throw ValidationError("\(flag.0) applies to --temporal delta (the mode is \(s.mode.rawValue))")
        }
        if s.mode != .keyframe && temporalKeyframeInterval != nil {
            throw ValidationError("--temporal-keyframe-interval applies to --temporal keyframe (the mode is \(s.mode.rawValue))")
        }
        return s
    }
}

extension TemporalMode: ExpressibleByArgument {}

extension LiveDropPolicy: ExpressibleByArgument {}

/// The GEMM precision, shared by `process`, `tail` and `bench backbone`; applied before a model loads.
struct ComputeFlags: ParsableArguments {
    @Option(help: ArgumentHelp("GEMM precision: f32 (default) or bf16 (CPUs with AVX512_BF16, inputs rounded to bfloat16: about 2x faster GEMMs on AMD Zen 4, slower on Intel without AMX; `fpnstream --version` says which). Same as FPNSTREAM_PRECISION.",
                               valueName: "f32|bf16"))
    var precision: String?

    @Option(help: ArgumentHelp("Frames in inference at once, each on one core: auto (default: one per core when temporal "
                               + "reuse is off, else 1) or a number. More frames per second; each frame's latency grows.",
                               valueName: "auto|n"))
    var detectWorkers: String?

    func validate() throws {
        if let p = precision, Precision(rawValue: p) == nil {
            throw ValidationError("--precision must be one of \(Precision.allCases.map(\.rawValue).joined(separator: ", ")) (got '\(p)')")
        }
        _ = try workers()
    }

    /// `--detect-workers` as a count; nil = automatic.
    func workers() throws -> Int? {
        guard let w = detectWorkers, w != "auto" else { return nil }
        guard let n = Int(w), (1...64).contains(n) else {
            throw ValidationError("--detect-workers must be auto or a number from 1 to 64 (got '\(w)')")
        }
        return n
    }

    /// Selects the precision for the models loaded from now on; a precision this CPU cannot run is a usage error.
    func apply() throws {
        guard let p = precision.flatMap(Precision.init(rawValue:)) else { return }
        do { try Compute.use(p) } catch { throw CLIFailure(message: "\(error)", status: ExitStatus.usageError) }
    }
}
