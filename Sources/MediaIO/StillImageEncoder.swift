import CFFmpeg
import FPNCore

/// Lossless RGB24 → PNG bytes with FFmpeg's `png` encoder (COCO panoptic maps, where every pixel value is an id).
/// Keeps one encoder context while the image size stays the same (one per output; use from one thread at a time).
public final class PNGEncoder: @unchecked Sendable {
    /// Named in errors (e.g. the output directory).
    public var output: String { still.output }
    private let still: StillImageEncoder

    public init(output: String) { still = StillImageEncoder(output: output, codec: AV_CODEC_ID_PNG, name: "png", format: AV_PIX_FMT_RGB24) }

    /// The PNG file bytes of `image` (8-bit RGB, lossless).
    /// - Throws: `MediaIOError` naming `output` when the encoder is missing or fails.
    public func encode(_ image: RGBImage) throws -> [UInt8] { try still.encode(image) }
}

/// RGB24 → JPEG bytes with FFmpeg's `mjpeg` encoder (full-range 4:2:0; odd sizes lose their last row/column).
/// For snapshots (`serve`'s `latest.jpg`); one context per size, from one thread at a time.
public final class JPEGEncoder: @unchecked Sendable {
    private let still: StillImageEncoder

    /// `quality`: 1 (best) ... 31 (smallest), FFmpeg's `qscale`.
    public init(output: String, quality: Int = 4) {
        still = StillImageEncoder(output: output, codec: AV_CODEC_ID_MJPEG, name: "mjpeg", format: AV_PIX_FMT_YUVJ420P,
                                  quality: quality)
    }

    /// The JPEG file bytes of `image`.
    /// - Throws: `MediaIOError` naming `output` when the encoder is missing or fails.
    public func encode(_ image: RGBImage) throws -> [UInt8] { try still.encode(image) }
}

/// One still-image encoder context (PNG, JPEG), reopened when the image size changes.
final class StillImageEncoder {
    let output: String
    private let codecID: AVCodecID
    private let name: String
    private let format: AVPixelFormat
    private let quality: Int?
    private var context: UnsafeMutablePointer<AVCodecContext>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    private var converter: PixelConverter?
    private var size = (width: 0, height: 0)
    private var pts: Int64 = 0

    init(output: String, codec: AVCodecID, name: String, format: AVPixelFormat, quality: Int? = nil) {
        self.output = output
        self.codecID = codec
        self.name = name
        self.format = format
        self.quality = quality
        if format != AV_PIX_FMT_RGB24 { converter = PixelConverter(destinationFormat: format) }
    }

    deinit { closeContext() }

    private func closeContext() {
        av_frame_free(&frame)
        av_packet_free(&packet)
        avcodec_free_context(&context)
    }

    private func open(width: Int, height: Int) throws {
        FFmpegLogLevel.applyLibraryDefault()
        closeContext()
        guard let codec = avcodec_find_encoder(codecID) else {
            throw MediaIOError.encoderNotFound(output: output, tried: [name])
        }
        guard let cc = avcodec_alloc_context3(codec), let f = av_frame_alloc(), let p = av_packet_alloc() else {
            throw MediaIOError.encoderOpenFailed(output: output, encoder: name, reason: "out of memory")
        }
        context = cc; frame = f; packet = p
        // Chroma-subsampled formats need even sizes (the converter crops the odd row/column).
        let even = format != AV_PIX_FMT_RGB24
        let w = even ? width & ~1 : width, h = even ? height & ~1 : height
        cc.pointee.width = Int32(w)
        cc.pointee.height = Int32(h)
        cc.pointee.pix_fmt = format
        cc.pointee.time_base = AVRational(num: 1, den: 25)
        if let quality {
            cc.pointee.flags |= AV_CODEC_FLAG_QSCALE
            cc.pointee.global_quality = Int32(quality) * FF_QP2LAMBDA
        }
        let r = avcodec_open2(cc, codec, nil)
        if r < 0 {
            closeContext()
            throw MediaIOError.encoderOpenFailed(output: output, encoder: name, reason: ffmpegErrorString(r))
        }
        f.pointee.format = format.rawValue
        f.pointee.width = Int32(w)
        f.pointee.height = Int32(h)
        if quality != nil { f.pointee.quality = cc.pointee.global_quality }
        let b = av_frame_get_buffer(f, 0)
        if b < 0 {
            closeContext()
            throw MediaIOError.encoderOpenFailed(output: output, encoder: name, reason: ffmpegErrorString(b))
        }
        size = (width, height)
    }

    func encode(_ image: RGBImage) throws -> [UInt8] {
        precondition(image.width > 0 && image.height > 0, "StillImageEncoder: empty image")
        if converter != nil && (image.width < 2 || image.height < 2) {
            throw MediaIOError.writeFailed(output: output, reason: "\(name) needs an image of at least 2x2 pixels")
        }
        if context == nil || size != (image.width, image.height) { try open(width: image.width, height: image.height) }
        guard let cc = context, let f = frame, let p = packet else { preconditionFailure("StillImageEncoder not open") }
        // The encoder may still reference the last frame's buffer.
        let w = av_frame_make_writable(f)
        if w < 0 { throw MediaIOError.writeFailed(output: output, reason: ffmpegErrorString(w)) }
        if let converter {
            guard converter.convert(image, into: f) else {
                throw MediaIOError.writeFailed(output: output, reason: "pixel conversion failed")
            }
        } else {
            let rowBytes = image.width * 3
            let stride = Int(f.pointee.linesize.0)
            image.pixels.withUnsafeBufferPointer { src in
                let dst = f.pointee.data.0!
                for y in 0..<image.height {
                    (dst + y * stride).update(from: src.baseAddress! + y * image.stride, count: rowBytes)
                }
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
        guard !bytes.isEmpty else { throw MediaIOError.writeFailed(output: output, reason: "\(name) encoder gave no data") }
        return bytes
    }
}
