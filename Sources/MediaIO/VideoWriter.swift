import CFFmpeg
import FPNCore
import Foundation

/// How to encode and mux the annotated video.
public struct EncoderOptions: Sendable {
    /// Encoder name (`"libx264"`, `"mpeg4"`, ...); nil tries `libx264`, then the fallbacks in `fallbackEncoders`.
    public var encoder: String?
    /// Constant rate factor for libx264/libx265 (lower is better; 23 is x264's default, visually good).
    public var crf = 23
    /// x264 preset: speed vs size. `veryfast` keeps encoding well below decode+inference cost.
    public var preset = "veryfast"
    /// Container (muxer) name; nil chooses by extension (`.mp4`, `.mkv`, ...), and MPEG-TS for `-`, `pipe:` and
    /// network protocols (`udp://`, `tcp://`, `srt://`, `rtp://`).
    public var format: String?
    /// Extra encoder options passed to `avcodec_open2` (e.g. `["tune": "zerolatency"]`).
    public var encoderOptions: [String: String] = [:]
    /// Encoder threads, 0 = automatic.
    public var threadCount = 0

    /// Encoders tried in order when `encoder` is nil; the first available one that the container accepts wins.
    public var candidates = ["libx264", "libopenh264", "mpeg4", "mjpeg"]

    public init(encoder: String? = nil, crf: Int = 23, preset: String = "veryfast", format: String? = nil) {
        self.encoder = encoder
        self.crf = crf
        self.preset = preset
        self.format = format
    }
}

/// Encodes RGB24 frames (annotated video) to H.264 (libx264, yuv420p) in any libavformat container or URL, keeping
/// the source's frame rate and timestamps.
///
/// - Output location: a file path (container from the extension), `-` (MPEG-TS on stdout, e.g. `| ffplay -`), or
///   any libavformat URL (`udp://239.0.0.1:1234` → MPEG-TS).
/// - Timestamps: `pts` in seconds is converted to the encoder time base relative to the first frame written, so the
///   output starts at 0; repeated or backwards values are nudged forward by one tick.
/// - 4:2:0 needs even sizes: an odd width or height loses its last column or row (no scaling). Frames of another
///   size (a live source changed resolution) are scaled to the output size.
/// - `finish()` drains the encoder and writes the trailer. Call it at the end, on error and on interruption;
///   it is idempotent, and `deinit` calls it as a last resort, so the container is always playable.
/// - Not thread-safe: one writer per output, used from one thread at a time.
public final class VideoWriter {
    /// The encoder actually used, e.g. `"libx264"`.
    public let encoderName: String
    /// Set when a fallback encoder was chosen, for the user (e.g. "libx264 not available; using mpeg4").
    public let note: String?
    /// Location as printed (credentials redacted).
    public let output: String
    /// Size of the encoded picture (the input size rounded down to even for 4:2:0 encoders).
    public let encodedSize: PixelSize
    /// Frames handed to the encoder so far.
    public private(set) var framesWritten = 0
    /// True once `finish()` ran.
    public private(set) var isFinished = false

    private var formatContext: UnsafeMutablePointer<AVFormatContext>?
    private var codecContext: UnsafeMutablePointer<AVCodecContext>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private let stream: UnsafeMutablePointer<AVStream>
    private let converter: PixelConverter
    private let timeBase: Rational
    private let ticksPerFrame: Int64
    private var firstPTS: Double?
    private var lastTick: Int64 = .min

    /// Opens the output and the encoder. `frameRate` is the source's (used for the nominal frame duration and
    /// rate control); `timeBase` is the encoder/stream time base, by default the inverse of the frame rate (pass the
    /// source stream's time base to keep its timestamps exactly).
    public init(location: String, size: PixelSize, frameRate: Rational, timeBase: Rational? = nil,
                options: EncoderOptions = EncoderOptions()) throws {
        FFmpegLogLevel.applyLibraryDefault()
        let shown = redactCredentials(location)
        output = shown
        let rate = frameRate.value == nil ? Rational(25, 1) : frameRate

        let (url, formatName) = Self.resolve(location: location, format: options.format)
        var fmt: UnsafeMutablePointer<AVFormatContext>?
        let allocated = avformat_alloc_output_context2(&fmt, nil, formatName, url)
        guard allocated >= 0, let fmt else {
            let reason = allocated == fpn_averror(EINVAL)
                ? "cannot tell the container from the name (use .mp4, .mkv, .ts or --format)" : ffmpegErrorString(allocated)
            throw MediaIOError.outputOpenFailed(output: shown, reason: reason)
        }
        var fmtOwned: UnsafeMutablePointer<AVFormatContext>? = fmt
        var ccOwned: UnsafeMutablePointer<AVCodecContext>?
        var frameOwned: UnsafeMutablePointer<AVFrame>?
        var packetOwned: UnsafeMutablePointer<AVPacket>?
        func cleanUp() {
            av_frame_free(&frameOwned)
            av_packet_free(&packetOwned)
            avcodec_free_context(&ccOwned)
            if let f = fmtOwned {
                if f.pointee.pb != nil && f.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 { avio_closep(&f.pointee.pb) }
                avformat_free_context(f)
                fmtOwned = nil
            }
        }

        do {
            // Pick the encoder.
            let candidates = options.encoder.map { [$0] } ?? options.candidates
            var codec: UnsafePointer<AVCodec>?
            var chosen = ""
            for name in candidates {
                // query_codec: 1 = supported, 0 = not, negative = the muxer does not say (e.g. mpegts): try it.
                if let c = avcodec_find_encoder_by_name(name), avformat_query_codec(fmt.pointee.oformat, c.pointee.id,
                                                                                     FF_COMPLIANCE_NORMAL) != 0 {
                    codec = c; chosen = name; break
                }
            }
            guard let codec else { throw MediaIOError.encoderNotFound(output: shown, tried: candidates) }
            encoderName = chosen
            note = (options.encoder == nil && chosen != candidates[0])
                ? "\(candidates[0]) not available; using \(chosen)" : nil

            // Pixel format: yuv420p when supported (plays everywhere), else the encoder's first.
            var pixFmt = AV_PIX_FMT_YUV420P
            if let list = codec.pointee.pix_fmts {
                var supported: [AVPixelFormat] = []
                var i = 0
                while list[i] != AV_PIX_FMT_NONE { supported.append(list[i]); i += 1 }
                if !supported.contains(AV_PIX_FMT_YUV420P), let first = supported.first { pixFmt = first }
            }
            let subsampled = pixFmt == AV_PIX_FMT_YUV420P || pixFmt == AV_PIX_FMT_YUVJ420P || pixFmt == AV_PIX_FMT_NV12
            let encW = subsampled ? size.width & ~1 : size.width
            let encH = subsampled ? size.height & ~1 : size.height
            guard encW > 0, encH > 0 else {
                throw MediaIOError.encoderOpenFailed(output: shown, encoder: chosen, reason: "frame size \(size) too small")
            }
            encodedSize = PixelSize(width: encW, height: encH)

            // Time base: the caller's, unless MPEG-4 part 2's 16-bit limit forbids it.
            var tb = timeBase ?? Rational(rate.den, rate.num)
            if codec.pointee.id == AV_CODEC_ID_MPEG4 && tb.den > 65535 { tb = Rational(rate.den, rate.num) }
            self.timeBase = tb
            // Nominal duration of one frame in time-base ticks (at least 1).
            ticksPerFrame = max(1, av_rescale_q(1, AVRational(num: rate.den, den: rate.num), tb.av))

            guard let cc = avcodec_alloc_context3(codec) else {
                throw MediaIOError.encoderOpenFailed(output: shown, encoder: chosen, reason: "out of memory")
            }
            ccOwned = cc
            cc.pointee.width = Int32(encW)
            cc.pointee.height = Int32(encH)
            cc.pointee.pix_fmt = pixFmt
            cc.pointee.time_base = tb.av
            cc.pointee.framerate = rate.av
            cc.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
            cc.pointee.thread_count = Int32(options.threadCount)
            // swscale's RGB→YUV uses BT.601 limited range: say so, or players guess BT.709 for HD sizes.
            cc.pointee.colorspace = AVCOL_SPC_SMPTE170M
            cc.pointee.color_primaries = AVCOL_PRI_SMPTE170M
            cc.pointee.color_trc = AVCOL_TRC_SMPTE170M
            cc.pointee.color_range = pixFmt == AV_PIX_FMT_YUVJ420P ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG
            if fmt.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER != 0 {
                cc.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
            }
            var encOpts = options.encoderOptions
            switch codec.pointee.id {
            case AV_CODEC_ID_H264, AV_CODEC_ID_HEVC:
                if chosen.hasPrefix("libx26") {
                    encOpts["crf"] = encOpts["crf"] ?? String(options.crf)
                    encOpts["preset"] = encOpts["preset"] ?? options.preset
                } else {
                    cc.pointee.bit_rate = Self.fallbackBitRate(encW, encH, rate)
                }
            default:
                // Fallback encoders are rate-controlled by bit rate: about 0.2 bits per pixel, at least 1 Mbit/s.
                cc.pointee.bit_rate = Self.fallbackBitRate(encW, encH, rate)
                cc.pointee.gop_size = Int32(max(1, min(250, Int((rate.value ?? 25) * 2))))
            }
            var dict = makeDictionary(encOpts)
            let opened = avcodec_open2(cc, codec, &dict)
            av_dict_free(&dict)
            if opened < 0 {
                throw MediaIOError.encoderOpenFailed(output: shown, encoder: chosen, reason: ffmpegErrorString(opened))
            }

            guard let st = avformat_new_stream(fmt, nil) else {
                throw MediaIOError.outputOpenFailed(output: shown, reason: "cannot add a stream")
            }
            stream = st
            st.pointee.time_base = tb.av
            st.pointee.avg_frame_rate = rate.av
            st.pointee.r_frame_rate = rate.av
            let copied = avcodec_parameters_from_context(st.pointee.codecpar, cc)
            if copied < 0 { throw MediaIOError.outputOpenFailed(output: shown, reason: ffmpegErrorString(copied)) }

            if fmt.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 {
                let r = avio_open(&fmt.pointee.pb, url, AVIO_FLAG_WRITE)
                if r < 0 { throw MediaIOError.outputOpenFailed(output: shown, reason: ffmpegErrorString(r)) }
            }
            if Self.isStream(url) {
                fmt.pointee.flags |= AVFMT_FLAG_FLUSH_PACKETS  // a pipe/network reader sees each frame at once
            }
            let header = avformat_write_header(fmt, nil)
            if header < 0 { throw MediaIOError.outputOpenFailed(output: shown, reason: ffmpegErrorString(header)) }

            guard let f = av_frame_alloc(), let p = av_packet_alloc() else {
                throw MediaIOError.encoderOpenFailed(output: shown, encoder: chosen, reason: "out of memory")
            }
            frameOwned = f
            packetOwned = p
            f.pointee.format = pixFmt.rawValue
            f.pointee.width = Int32(encW)
            f.pointee.height = Int32(encH)
            let buf = av_frame_get_buffer(f, 0)
            if buf < 0 { throw MediaIOError.encoderOpenFailed(output: shown, encoder: chosen, reason: ffmpegErrorString(buf)) }
            converter = PixelConverter(destinationFormat: pixFmt)
        } catch {
            cleanUp()
            throw error
        }
        formatContext = fmtOwned
        codecContext = ccOwned
        frame = frameOwned
        packet = packetOwned
    }

    deinit {
        if !isFinished { try? finish() }
    }

    /// Encodes one RGB24 image (any size; see the type's notes) shown at `pts` seconds (source time; only differences matter). With `pts` nil the
    /// frame follows the previous one by one nominal frame duration.
    public func write(_ image: RGBImage, pts: Double?) throws {
        guard !isFinished, let cc = codecContext, let frame else {
            throw MediaIOError.writeFailed(output: output, reason: "writer already finished")
        }
        guard image.width > 0, image.height > 0 else {
            throw MediaIOError.writeFailed(output: output, reason: "empty frame")
        }
        var tick: Int64
        if let pts {
            if firstPTS == nil { firstPTS = pts }
            tick = Int64(((pts - firstPTS!) / (timeBase.value ?? 1)).rounded())
        } else {
            tick = lastTick == .min ? 0 : lastTick + ticksPerFrame
        }
        if tick <= lastTick { tick = lastTick + 1 }
        lastTick = tick

        let writable = av_frame_make_writable(frame)  // the encoder may still hold the previous buffer
        if writable < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(writable)) }
        guard converter.convert(image, into: frame) else {
            throw MediaIOError.writeFailed(output: output, reason: "pixel conversion failed")
        }
        frame.pointee.pts = tick
        frame.pointee.pkt_duration = ticksPerFrame
        let sent = avcodec_send_frame(cc, frame)
        if sent < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(sent)) }
        framesWritten += 1
        try drainPackets()
    }

    /// Flushes the encoder, writes the container trailer and closes the output. Idempotent. Throws if the trailer
    /// could not be written (the output is still closed).
    public func finish() throws {
        guard !isFinished else { return }
        isFinished = true
        var firstError: Error?
        if let cc = codecContext {
            avcodec_send_frame(cc, nil)
            do { try drainPackets() } catch { firstError = error }
        }
        if let fmt = formatContext {
            let t = av_write_trailer(fmt)
            if t < 0 && firstError == nil {
                firstError = MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(t))
            }
            if fmt.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 && fmt.pointee.pb != nil {
                // Also reports deferred write errors (e.g. disk full on the final flush).
                if fmt.pointee.pb.pointee.error < 0 && firstError == nil {
                    firstError = MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(fmt.pointee.pb.pointee.error))
                }
                avio_closep(&fmt.pointee.pb)
            }
            avformat_free_context(fmt)
            formatContext = nil
        }
        av_frame_free(&frame)
        av_packet_free(&packet)
        avcodec_free_context(&codecContext)
        if let firstError { throw firstError }
    }

    /// Moves every packet the encoder has ready into the muxer.
    private func drainPackets() throws {
        guard let cc = codecContext, let pkt = packet, let fmt = formatContext else { return }
        while true {
            let r = avcodec_receive_packet(cc, pkt)
            if r == AVCode.again || r == AVCode.eof { return }
            if r < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(r)) }
            if pkt.pointee.duration == 0 { pkt.pointee.duration = ticksPerFrame }
            pkt.pointee.stream_index = stream.pointee.index
            av_packet_rescale_ts(pkt, cc.pointee.time_base, stream.pointee.time_base)
            let w = av_interleaved_write_frame(fmt, pkt)  // takes ownership of the packet's data
            if w < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(w)) }
        }
    }

    // MARK: - Helpers

    /// Maps `-` to stdout and picks MPEG-TS for pipes and network protocols.
    static func resolve(location: String, format: String?) -> (url: String, format: String?) {
        let url = location == "-" ? "pipe:1" : location
        if let format { return (url, format) }
        return (url, isStream(url) ? "mpegts" : nil)
    }

    static func isStream(_ url: String) -> Bool {
        let scheme = url.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        guard url.contains(":") else { return false }
        return ["pipe", "udp", "tcp", "srt", "rtp", "rist"].contains(scheme)
    }

    private static func fallbackBitRate(_ w: Int, _ h: Int, _ rate: Rational) -> Int64 {
        max(1_000_000, Int64(Double(w * h) * (rate.value ?? 25) * 0.2))
    }
}
