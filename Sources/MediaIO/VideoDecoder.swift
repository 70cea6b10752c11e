import CFFmpeg
import FPNCore
import Foundation

/// How to open and decode a source.
public struct DecoderOptions: Sendable {
    /// Size of the RGB images delivered; nil keeps the source's native size. Boxes and `FrameInfo` sizes stay in
    /// source pixels either way.
    public var outputSize: PixelSize?
    /// Decoder threads; 0 lets FFmpeg choose (one per core). Frame and slice threading are both enabled.
    public var threadCount: Int = 0
    /// Demuxer/protocol options passed to `avformat_open_input`, e.g. `["rtsp_transport": "tcp",
    /// "rw_timeout": "5000000"]`. Options the demuxer did not recognise are listed in `unusedOptions`.
    public var formatOptions: [String: String] = [:]
    /// Decoder options passed to `avcodec_open2`.
    public var codecOptions: [String: String] = [:]
    /// Forces a demuxer by name (e.g. `"mjpeg"`, `"v4l2"`); nil probes the input.
    public var inputFormat: String?
    /// Polled by FFmpeg while it blocks in I/O; returning true aborts the blocking call (the decoder then reports
    /// end of stream). `VideoDecoder.requestStop()` has the same effect without a hook.
    public var interrupt: (@Sendable () -> Bool)?
    /// Overrides live-source detection (nil: network protocols without a known duration count as live).
    public var isLive: Bool?
    /// Deliver RGB images; false delivers frames with an empty 0x0 image (for counting/probing without conversion).
    public var convertToRGB = true

    public init(outputSize: PixelSize? = nil, threadCount: Int = 0, formatOptions: [String: String] = [:],
                codecOptions: [String: String] = [:], inputFormat: String? = nil,
                interrupt: (@Sendable () -> Bool)? = nil, isLive: Bool? = nil) {
        self.outputSize = outputSize
        self.threadCount = threadCount
        self.formatOptions = formatOptions
        self.codecOptions = codecOptions
        self.inputFormat = inputFormat
        self.interrupt = interrupt
        self.isLive = isLive
    }
}

/// A stop flag FFmpeg's interrupt callback polls from whatever thread is blocked in I/O.
private final class InterruptState: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    let hook: (@Sendable () -> Bool)?
    init(hook: (@Sendable () -> Bool)?) { self.hook = hook }
    func stop() { lock.lock(); stopped = true; lock.unlock() }
    var shouldInterrupt: Bool {
        lock.lock(); let s = stopped; lock.unlock()
        return s || (hook?() ?? false)
    }
}

/// Demuxes and decodes the best video stream of any libavformat input (file path or URL) into RGB24 frames.
///
/// ```
/// input ──av_read_frame──▶ packets of the best video stream ──avcodec (threaded)──▶ AVFrame
///       ──swscale (context negotiated once)──▶ Frame { index, pts (s), wallTime, size, RGB24 pixels }
/// ```
/// - PTS: `best_effort_timestamp × time_base` in seconds; when missing, previous PTS + 1/fps; forced strictly
///   increasing (a repeated or backwards PTS becomes previous + 1/fps).
/// - Damaged data inside the stream is skipped and counted in `stats`, never thrown. Errors are thrown only when the
///   input cannot be opened or has no decodable video.
/// - Not thread-safe: call `nextFrame()` from one thread at a time. `requestStop()` may be called from any thread.
public final class VideoDecoder {
    /// What the source says about itself.
    public let metadata: SourceMetadata
    /// Counters of frames and damage so far.
    public private(set) var stats = DecodeStats()
    /// Options given to the demuxer that it did not use (misspelled or not applicable), for a warning.
    public let unusedOptions: [String]

    /// Largest picture side decoded: a stream declaring more is refused at open (`MediaIOError.imageTooLarge`),
    /// and a frame changing to more mid-stream is skipped as damage, before any RGB buffer is allocated.
    public static let maxSide = 16384
    /// Largest picture area decoded (8K UHD is 33.2 M pixels).
    public static let maxPixels = 1 << 26

    static func sizeAllowed(width: Int32, height: Int32) -> Bool {
        width >= 0 && height >= 0 && width <= maxSide && height <= maxSide && Int(width) * Int(height) <= maxPixels
    }

    private var formatContext: UnsafeMutablePointer<AVFormatContext>?
    private var codecContext: UnsafeMutablePointer<AVCodecContext>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private let interruptState: InterruptState
    /// Memory input's I/O context; must outlive `formatContext`.
    private let memoryInput: MemoryInput?
    private let converter: RGBConverter
    private let options: DecoderOptions
    private let streamIndex: Int32
    private let timeBase: Double
    private let frameDuration: Double
    private var lastPTS: Double?
    private var draining = false
    private var finished = false

    /// Opens `location` (a path, `file:` or any protocol URL libavformat supports) and its best video stream.
    /// Throws `MediaIOError` naming the location (credentials redacted) when that fails.
    public convenience init(location: String, options: DecoderOptions = DecoderOptions()) throws {
        let shown = redactCredentials(location)
        try Self.checkLocalPath(location, shown: shown)
        try self.init(url: location, memory: nil, shown: shown, options: options)
    }

    /// Opens a whole container held in memory; `name` stands for it in metadata and errors. Nothing else is
    /// opened: demuxers that refer to other files or URLs (playlists, SDP, concat lists) are refused access.
    public convenience init(data: Data, name: String, options: DecoderOptions = DecoderOptions()) throws {
        guard !data.isEmpty else { throw MediaIOError.inputEmpty(name) }
        guard let memory = MemoryInput(data: data) else { throw MediaIOError.openFailed(input: name, reason: "out of memory") }
        var options = options
        if options.formatOptions["protocol_whitelist"] == nil { options.formatOptions["protocol_whitelist"] = "none" }
        if options.isLive == nil { options.isLive = false }
        try self.init(url: nil, memory: memory, shown: name, options: options)
    }

    private init(url: String?, memory: MemoryInput?, shown: String, options: DecoderOptions) throws {
        FFmpegLogLevel.applyLibraryDefault()
        self.options = options
        self.memoryInput = memory

        interruptState = InterruptState(hook: options.interrupt)
        converter = RGBConverter(outputSize: options.outputSize)
        guard let ctx = avformat_alloc_context() else { throw MediaIOError.openFailed(input: shown, reason: "out of memory") }
        ctx.pointee.interrupt_callback.callback = { opaque in
            guard let opaque else { return 0 }
            return Unmanaged<InterruptState>.fromOpaque(opaque).takeUnretainedValue().shouldInterrupt ? 1 : 0
        }
        ctx.pointee.interrupt_callback.opaque = Unmanaged.passUnretained(interruptState).toOpaque()
        if let memory {
            ctx.pointee.pb = memory.context
            ctx.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        }
        let location = url ?? ""

        var fmt: UnsafeMutablePointer<AVFormatContext>? = ctx
        var dict = makeDictionary(options.formatOptions)
        var inputFormat: UnsafePointer<AVInputFormat>?
        if let name = options.inputFormat {
            inputFormat = av_find_input_format(name)
            if inputFormat == nil {
                av_dict_free(&dict)
                avformat_free_context(ctx)
                throw MediaIOError.openFailed(input: shown, reason: "unknown input format '\(name)'")
            }
        }
        // On failure avformat_open_input frees the context and sets fmt to nil.
        let openResult = avformat_open_input(&fmt, url, inputFormat, &dict)
        unusedOptions = dictionaryKeys(dict)
        av_dict_free(&dict)
        guard openResult >= 0, let fmt else {
            throw MediaIOError.openFailed(input: shown, reason: ffmpegErrorString(openResult))
        }
        var fmtOwned: UnsafeMutablePointer<AVFormatContext>? = fmt
        // FFmpeg renders any .txt/.nfo file as "ANSI art" video; nobody means that unless they ask for it by name.
        if options.inputFormat == nil, String(cString: fmt.pointee.iformat.pointee.name) == "tty" {
            avformat_close_input(&fmtOwned)
            throw MediaIOError.openFailed(input: shown, reason: "not a video file (text)")
        }
        var ccOwned: UnsafeMutablePointer<AVCodecContext>?
        do {
            let found = avformat_find_stream_info(fmt, nil)
            if found < 0 { throw MediaIOError.openFailed(input: shown, reason: ffmpegErrorString(found)) }

            var decoder: UnsafePointer<AVCodec>?
            let best = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0)
            if best == AVCode.streamNotFound || best < 0 && !Self.hasVideoStream(fmt) {
                throw MediaIOError.noVideoStream(shown)
            }
            if best < 0 || decoder == nil {
                // A video stream exists but nothing here decodes it.
                let idx = best >= 0 ? Int(best) : Self.firstVideoStream(fmt)
                throw MediaIOError.unsupportedCodec(input: shown, codec: Self.codecDescription(fmt, stream: idx))
            }
            streamIndex = best
            let stream = fmt.pointee.streams[Int(best)]!
            let par = stream.pointee.codecpar!
            guard Self.sizeAllowed(width: par.pointee.width, height: par.pointee.height) else {
                throw MediaIOError.imageTooLarge(input: shown, width: Int(par.pointee.width), height: Int(par.pointee.height))
            }
            // The codec's name as ffprobe prints it (`msmpeg4v3`), not the decoder implementation's (`msmpeg4`).
            let codecName = String(cString: avcodec_get_name(par.pointee.codec_id))

            guard let cc = avcodec_alloc_context3(decoder) else {
                throw MediaIOError.decoderOpenFailed(input: shown, codec: codecName, reason: "out of memory")
            }
            ccOwned = cc
            var r = avcodec_parameters_to_context(cc, par)
            if r < 0 { throw MediaIOError.decoderOpenFailed(input: shown, codec: codecName, reason: ffmpegErrorString(r)) }
            cc.pointee.pkt_timebase = stream.pointee.time_base
            cc.pointee.thread_count = Int32(options.threadCount)
            cc.pointee.thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE
            // FFmpeg then refuses larger pictures itself, before allocating their planes.
            cc.pointee.max_pixels = Int64(Self.maxPixels)
            var codecDict = makeDictionary(options.codecOptions)
            r = avcodec_open2(cc, decoder, &codecDict)
            av_dict_free(&codecDict)
            if r < 0 { throw MediaIOError.decoderOpenFailed(input: shown, codec: codecName, reason: ffmpegErrorString(r)) }

            guard let pkt = av_packet_alloc(), let frm = av_frame_alloc() else {
                throw MediaIOError.decoderOpenFailed(input: shown, codec: codecName, reason: "out of memory")
            }
            packet = pkt
            frame = frm

            let tb = Rational(stream.pointee.time_base)
            timeBase = tb.value ?? 1.0 / 90000
            var rate = Rational(stream.pointee.avg_frame_rate)
            if rate.value == nil { rate = Rational(stream.pointee.r_frame_rate) }
            let frameRate: Rational? = rate.value == nil ? nil : rate
            frameDuration = 1 / (frameRate?.value ?? 25)

            var duration: Double?
            if stream.pointee.duration != AVCode.noPTS && stream.pointee.duration > 0 {
                duration = Double(stream.pointee.duration) * timeBase
            } else if fmt.pointee.duration != AVCode.noPTS && fmt.pointee.duration > 0 {
                duration = Double(fmt.pointee.duration) / Double(AV_TIME_BASE)
            }
            var count: Int?
            if stream.pointee.nb_frames > 0 {
                count = Int(stream.pointee.nb_frames)
            } else if let d = duration, let fps = frameRate?.value {
                count = Int((d * fps).rounded())
            }
            let formatName = String(cString: fmt.pointee.iformat.pointee.name)
            let live = options.isLive ?? Self.looksLive(location: location, formatName: formatName, duration: duration)
            metadata = SourceMetadata(
                source: shown, formatName: formatName, codecName: codecName, streamIndex: Int(best),
                size: PixelSize(width: Int(par.pointee.width), height: Int(par.pointee.height)),
                frameRate: frameRate, timeBase: tb, duration: live ? nil : duration,
                frameCountEstimate: live ? nil : count, isLive: live)
        } catch {
            avcodec_free_context(&ccOwned)
            avformat_close_input(&fmtOwned)
            throw error
        }
        formatContext = fmt
        codecContext = ccOwned
    }

    deinit { releaseResources() }

    /// Makes a blocked or future read return end of stream. Safe from any thread (e.g. a signal handler's queue).
    public func requestStop() { interruptState.stop() }

    /// Decodes and converts the next frame, or returns nil at end of stream (or after `requestStop()`).
    /// Damaged packets are skipped and counted in `stats`. Same as `nextPicture()` + `converter.convert(_:)` on
    /// one thread.
    public func nextFrame() -> Frame? {
        guard let picture = nextPicture() else { return nil }
        guard options.convertToRGB else { return Frame(info: picture.info, image: RGBImage(width: 0, height: 0)) }
        return converter.convert(picture)
    }

    /// Decodes the next picture without converting it, or returns nil at end of stream. Hand it to an
    /// `RGBConverter` on another thread to overlap decoding and conversion.
    public func nextPicture() -> DecodedPicture? {
        guard let raw = nextDecodedFrame(), let owned = av_frame_alloc() else { return nil }
        let info = makeInfo(raw)
        av_frame_move_ref(owned, raw)  // hands the refcounted buffers over; no pixel copy
        return DecodedPicture(frame: owned, info: info)
    }

    /// Frees FFmpeg state now instead of at deinit. `nextFrame()` returns nil afterwards.
    public func close() { releaseResources() }

    // MARK: - Decode loop

    /// Runs the send/receive loop until the decoder produces a frame (returned, owned by `self.frame`) or the
    /// stream ends.
    private func nextDecodedFrame() -> UnsafeMutablePointer<AVFrame>? {
        guard !finished, let fmt = formatContext, let cc = codecContext, let pkt = packet, let frame else { return nil }
        while true {
            let received = avcodec_receive_frame(cc, frame)
            if received >= 0 {
                if Self.sizeAllowed(width: frame.pointee.width, height: frame.pointee.height) { return frame }
                av_frame_unref(frame)
                noteDecodeError(AVCode.invalidData)
                continue
            }
            if received == AVCode.eof { finished = true; return nil }
            if received != AVCode.again {
                // With threaded decoding a damaged packet's error surfaces here; skip and keep going.
                noteDecodeError(received)
                continue
            }
            if draining { finished = true; return nil }  // EAGAIN while draining should not happen; stop safely.
            if interruptState.shouldInterrupt {
                // Stop reading, but still deliver the frames already inside the decoder.
                avcodec_send_packet(cc, nil)
                draining = true
                continue
            }

            let read = av_read_frame(fmt, pkt)
            if read < 0 {
                if read == AVCode.again { continue }
                if read != AVCode.eof && read != AVCode.exit && !interruptState.shouldInterrupt {
                    stats.readError = ffmpegErrorString(read)
                }
                avcodec_send_packet(cc, nil)  // enter draining: flush frames still inside the decoder
                draining = true
                continue
            }
            defer { av_packet_unref(pkt) }
            guard pkt.pointee.stream_index == streamIndex else { continue }
            stats.packetsRead += 1
            let sent = avcodec_send_packet(cc, pkt)
            if sent < 0 && sent != AVCode.again && sent != AVCode.eof { noteDecodeError(sent) }
        }
    }

    private func noteDecodeError(_ code: Int32) {
        stats.decodeErrors += 1
        stats.lastDecodeError = ffmpegErrorString(code)
    }

    private func makeInfo(_ raw: UnsafeMutablePointer<AVFrame>) -> FrameInfo {
        var pts: Double
        let ts = raw.pointee.best_effort_timestamp
        if ts != AVCode.noPTS {
            pts = Double(ts) * timeBase
        } else {
            pts = (lastPTS ?? -frameDuration) + frameDuration
        }
        if let last = lastPTS, pts <= last { pts = last + frameDuration }
        lastPTS = pts
        if raw.pointee.decode_error_flags != 0 || raw.pointee.flags & AV_FRAME_FLAG_CORRUPT != 0 {
            stats.corruptFrames += 1
        }
        let info = FrameInfo(index: stats.framesDelivered, pts: pts, wallTime: Date().timeIntervalSince1970,
                             width: Int(raw.pointee.width), height: Int(raw.pointee.height), source: metadata.source)
        stats.framesDelivered += 1
        return info
    }

    private func releaseResources() {
        finished = true
        if frame != nil { av_frame_free(&frame) }
        if packet != nil { av_packet_free(&packet) }
        if codecContext != nil { avcodec_free_context(&codecContext) }
        if formatContext != nil { avformat_close_input(&formatContext) }
    }

    // MARK: - Opening helpers

    /// Plain paths get precise errors before FFmpeg's generic ones ("No such file or directory" without a name).
    private static func checkLocalPath(_ location: String, shown: String) throws {
        let path: String
        if location.hasPrefix("file:") {
            path = String(location.dropFirst(5))
        } else if location.contains("://") || location.hasPrefix("pipe:") || location == "-" {
            return
        } else {
            path = location
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw MediaIOError.inputNotFound(shown)
        }
        if isDirectory.boolValue { throw MediaIOError.inputIsDirectory(shown) }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
           size.intValue == 0, !path.hasPrefix("/dev/") {
            throw MediaIOError.inputEmpty(shown)
        }
    }

    private static func looksLive(location: String, formatName: String, duration: Double?) -> Bool {
        let scheme = location.split(separator: ":", maxSplits: 1).first.map { $0.lowercased() } ?? ""
        let liveSchemes: Set<String> = ["rtsp", "rtsps", "rtmp", "rtmps", "rtp", "udp", "srt", "tcp", "rist", "zmq"]
        if liveSchemes.contains(scheme) { return true }
        if ["rtsp", "sdp", "v4l2", "video4linux2", "x11grab", "lavfi"].contains(formatName) { return duration == nil }
        if scheme == "http" || scheme == "https" { return duration == nil }
        return false
    }

    private static func hasVideoStream(_ fmt: UnsafeMutablePointer<AVFormatContext>) -> Bool {
        firstVideoStream(fmt) >= 0
    }

    private static func firstVideoStream(_ fmt: UnsafeMutablePointer<AVFormatContext>) -> Int {
        for i in 0..<Int(fmt.pointee.nb_streams) where fmt.pointee.streams[i]!.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_VIDEO {
            return i
        }
        return -1
    }

    /// "name" of the codec, or its container tag (e.g. `ZZZZ`) when FFmpeg does not know the codec at all.
    private static func codecDescription(_ fmt: UnsafeMutablePointer<AVFormatContext>, stream: Int) -> String {
        guard stream >= 0 else { return "unknown" }
        let par = fmt.pointee.streams[stream]!.pointee.codecpar.pointee
        if par.codec_id != AV_CODEC_ID_NONE, let name = avcodec_get_name(par.codec_id) {
            return String(cString: name)
        }
        let tag = par.codec_tag
        let chars = (0..<4).map { Character(Unicode.Scalar(UInt8((tag >> (8 * $0)) & 0xff))) }
        let printable = chars.allSatisfy { $0.isASCII && !$0.isWhitespace && ($0.isLetter || $0.isNumber) }
        return printable ? "tag \(String(chars))" : "unknown"
    }
}

/// Builds an AVDictionary from Swift options (caller frees it with `av_dict_free`).
func makeDictionary(_ options: [String: String]) -> OpaquePointer? {
    var dict: OpaquePointer?
    for (k, v) in options.sorted(by: { $0.key < $1.key }) { av_dict_set(&dict, k, v, 0) }
    return dict
}

/// Keys left in an AVDictionary after an open call consumed the ones it understood.
func dictionaryKeys(_ dict: OpaquePointer?) -> [String] {
    var keys: [String] = []
    var entry: UnsafeMutablePointer<AVDictionaryEntry>?
    while let e = av_dict_get(dict, "", entry, AV_DICT_IGNORE_SUFFIX) {
        keys.append(String(cString: e.pointee.key))
        entry = e
    }
    return keys
}
