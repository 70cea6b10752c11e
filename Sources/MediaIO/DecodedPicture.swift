import CFFmpeg
import FPNCore

/// A decoded picture still in the decoder's pixel format (usually YUV 4:2:0), holding a reference to FFmpeg's
/// buffer (no copy). Immutable, so it may cross threads: decode on one queue, convert on another.
public final class DecodedPicture: @unchecked Sendable {
    /// Index, PTS, wall time and source size, final.
    public let info: FrameInfo
    let frame: UnsafeMutablePointer<AVFrame>

    init(frame: UnsafeMutablePointer<AVFrame>, info: FrameInfo) {
        self.frame = frame
        self.info = info
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }
}

/// Converts decoded pictures to owned RGB24 `Frame`s at the native size or straight to `outputSize`.
/// Keeps one swscale context per stream (negotiated on the first picture, rebuilt only if the input format or size
/// changes). Not thread-safe: one converter per stream, used from one thread at a time.
public final class RGBConverter {
    /// Size of the produced images; nil = the picture's own size.
    public let outputSize: PixelSize?
    private let converter = PixelConverter(destinationFormat: AV_PIX_FMT_RGB24)

    public init(outputSize: PixelSize? = nil) { self.outputSize = outputSize }

    /// The picture as an RGB24 frame (an empty 0x0 image if swscale cannot handle its pixel format).
    public func convert(_ picture: DecodedPicture) -> Frame {
        let image = converter.rgbImage(from: picture.frame, size: outputSize) ?? RGBImage(width: 0, height: 0)
        return Frame(info: picture.info, image: image)
    }
}
