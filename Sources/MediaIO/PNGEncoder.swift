import CFFmpeg
import FPNCore

/// Lossless RGB24 → PNG bytes with FFmpeg's `png` encoder (COCO panoptic maps, where every pixel value is an id).
/// Keeps one encoder context while the image size stays the same (one per output; use from one thread at a time).
public final class PNGEncoder: @unchecked Sendable {
    /// Named in errors (e.g. the output directory).
    public let output: String
    private var context: UnsafeMutablePointer<AVCodecContext>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var size = (width: 0, height: 0)
    private var pts: Int64 = 0

    public init(output: String) { self.output = output }

    deinit { closeContext() }

    private func closeContext() {
        av_frame_free(&frame)
        av_packet_free(&packet)
        avcodec_free_context(&context)
    }

    private func open(width: Int, height: Int) throws {
        FFmpegLogLevel.applyLibraryDefault()
        closeContext()
        guard let codec = avcodec_find_encoder(AV_CODEC_ID_PNG) else {
            throw MediaIOError.encoderNotFound(output: output, tried: ["png"])
        }
        guard let cc = avcodec_alloc_context3(codec), let f = av_frame_alloc(), let p = av_packet_alloc() else {
            throw MediaIOError.encoderOpenFailed(output: output, encoder: "png", reason: "out of memory")
        }
        context = cc; frame = f; packet = p
        cc.pointee.width = Int32(width)
        cc.pointee.height = Int32(height)
        cc.pointee.pix_fmt = AV_PIX_FMT_RGB24
        cc.pointee.time_base = AVRational(num: 1, den: 25)
        let r = avcodec_open2(cc, codec, nil)
        if r < 0 {
            closeContext()
            throw MediaIOError.encoderOpenFailed(output: output, encoder: "png", reason: ffmpegErrorString(r))
        }
        f.pointee.format = AV_PIX_FMT_RGB24.rawValue
        f.pointee.width = Int32(width)
        f.pointee.height = Int32(height)
        let b = av_frame_get_buffer(f, 0)
        if b < 0 {
            closeContext()
            throw MediaIOError.encoderOpenFailed(output: output, encoder: "png", reason: ffmpegErrorString(b))
        }
        size = (width, height)
    }

    /// The PNG file bytes of `image` (8-bit RGB, lossless).
    /// - Throws: `MediaIOError` naming `output` when the encoder is missing or fails.
    public func encode(_ image: RGBImage) throws -> [UInt8] {
        precondition(image.width > 0 && image.height > 0, "PNGEncoder: empty image")
        if context == nil || size != (image.width, image.height) { try open(width: image.width, height: image.height) }
        guard let cc = context, let f = frame, let p = packet else { preconditionFailure("PNGEncoder not open") }
        // The encoder may still reference the last frame's buffer.
        let w = av_frame_make_writable(f)
        if w < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(w)) }
        let rowBytes = image.width * 3
        let stride = Int(f.pointee.linesize.0)
        image.pixels.withUnsafeBufferPointer { src in
            let dst = f.pointee.data.0!
            for y in 0..<image.height {
                (dst + y * stride).update(from: src.baseAddress! + y * rowBytes, count: rowBytes)
            }
        }
        f.pointee.pts = pts
        pts += 1
        let sent = avcodec_send_frame(cc, f)
        if sent < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(sent)) }
        var bytes: [UInt8] = []
        while true {
            let r = avcodec_receive_packet(cc, p)
            if r == AVCode.again || r == AVCode.eof { break }
            if r < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(r)) }
            bytes.append(contentsOf: UnsafeBufferPointer(start: p.pointee.data, count: Int(p.pointee.size)))
            av_packet_unref(p)
        }
        guard !bytes.isEmpty else { throw MediaIOError.writeFailed(output: output, reason: "png encoder gave no data") }
        return bytes
    }
}
