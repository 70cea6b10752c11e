import CFFmpeg
import FPNCore

/// A swscale context negotiated once for a (source format, source size) → (destination format, size) pair and
/// reused for every frame. When a live stream changes size or format mid-way, the context is rebuilt once for the
/// new input (the per-frame path has no other format branches).
final class PixelConverter {
    private var context: OpaquePointer?
    private var key: (format: Int32, width: Int32, height: Int32, outW: Int32, outH: Int32)?
    private let flags: Int32
    private let destinationFormat: AVPixelFormat

    /// `flags`: swscale interpolation for resizing (bilinear by default; irrelevant at native size).
    init(destinationFormat: AVPixelFormat, flags: Int32 = SWS_BILINEAR) {
        self.destinationFormat = destinationFormat
        self.flags = flags
    }

    deinit { sws_freeContext(context) }

    /// Returns the context for this input and output geometry, creating it when it changed.
    func context(format: Int32, width: Int32, height: Int32, outWidth: Int32, outHeight: Int32) -> OpaquePointer? {
        if let k = key, k.format == format, k.width == width, k.height == height, k.outW == outWidth, k.outH == outHeight,
           let context {
            return context
        }
        sws_freeContext(context)
        // Full-range/accurate-rounding flags are left at swscale defaults: they match the ffmpeg CLI's conversion.
        context = sws_getContext(width, height, AVPixelFormat(rawValue: format), outWidth, outHeight,
                                 destinationFormat, flags, nil, nil, nil)
        key = (format, width, height, outWidth, outHeight)
        return context
    }

    /// Converts a decoded frame to an owned, tightly packed RGB24 image of `size` (the frame's size when nil).
    func rgbImage(from frame: UnsafePointer<AVFrame>, size: PixelSize?) -> RGBImage? {
        let w = Int32(size?.width ?? Int(frame.pointee.width))
        let h = Int32(size?.height ?? Int(frame.pointee.height))
        guard let ctx = context(format: frame.pointee.format, width: frame.pointee.width,
                                height: frame.pointee.height, outWidth: w, outHeight: h) else { return nil }
        let count = Int(w) * Int(h) * 3
        // No zero-fill: swscale writes every byte.
        let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var dst: [UnsafeMutablePointer<UInt8>?] = [buffer.baseAddress, nil, nil, nil]
            var dstStride: [Int32] = [w * 3, 0, 0, 0]
            withUnsafeSourcePlanes(frame) { src, srcStride in
                _ = sws_scale(ctx, src, srcStride, 0, frame.pointee.height, &dst, &dstStride)
            }
            initialized = count
        }
        return RGBImage(width: Int(w), height: Int(h), pixels: pixels)
    }

    /// Converts an RGB24 image into `frame` (already allocated in the destination format). An image at most one pixel
    /// larger in each direction is cropped to the frame (odd sizes made even for 4:2:0); any other size is scaled to
    /// the frame's size (a live source changed resolution).
    func convert(_ image: RGBImage, into frame: UnsafeMutablePointer<AVFrame>) -> Bool {
        let w = frame.pointee.width, h = frame.pointee.height
        let crop = (0...1).contains(image.width - Int(w)) && (0...1).contains(image.height - Int(h))
        let srcW = crop ? w : Int32(image.width), srcH = crop ? h : Int32(image.height)
        guard srcW > 0, srcH > 0,
              let ctx = context(format: AV_PIX_FMT_RGB24.rawValue, width: srcW, height: srcH, outWidth: w, outHeight: h)
        else { return false }
        return image.pixels.withUnsafeBufferPointer { src -> Bool in
            var srcPlanes: [UnsafePointer<UInt8>?] = [src.baseAddress, nil, nil, nil]
            var srcStride: [Int32] = [Int32(image.stride), 0, 0, 0]
            let f = frame.pointee
            var dst: [UnsafeMutablePointer<UInt8>?] = [f.data.0, f.data.1, f.data.2, f.data.3]
            var dstStride: [Int32] = [f.linesize.0, f.linesize.1, f.linesize.2, f.linesize.3]
            return sws_scale(ctx, &srcPlanes, &srcStride, 0, srcH, &dst, &dstStride) == h
        }
    }
}

/// Calls `body` with the frame's plane pointers and strides as swscale wants them (`const uint8_t *const[]`).
func withUnsafeSourcePlanes<R>(_ frame: UnsafePointer<AVFrame>,
                               _ body: (UnsafePointer<UnsafePointer<UInt8>?>, UnsafePointer<Int32>) -> R) -> R {
    let f = frame.pointee
    let planes: [UnsafePointer<UInt8>?] = [UnsafePointer(f.data.0), UnsafePointer(f.data.1),
                                           UnsafePointer(f.data.2), UnsafePointer(f.data.3)]
    let strides: [Int32] = [f.linesize.0, f.linesize.1, f.linesize.2, f.linesize.3]
    return planes.withUnsafeBufferPointer { p in
        strides.withUnsafeBufferPointer { s in body(p.baseAddress!, s.baseAddress!) }
    }
}
