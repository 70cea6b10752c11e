/// An owned RGB24 image, rows top to bottom, pixels `R,G,B` interleaved, no row padding
/// (`stride == width * 3`). Owned so a frame can cross queues without FFmpeg buffers attached.
public struct RGBImage: Sendable, Equatable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// `height * width * 3` bytes.
    public var pixels: [UInt8]

    /// A black image of the given size.
    public init(width: Int, height: Int) {
        precondition(width >= 0 && height >= 0)
        self.width = width
        self.height = height
        self.pixels = [UInt8](repeating: 0, count: width * height * 3)
    }

    /// Wraps existing bytes; `pixels.count` must be `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGBImage: \(pixels.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Bytes per row.
    @inlinable public var stride: Int { width * 3 }

    /// The pixel at column `x`, row `y`.
    @inlinable public subscript(x: Int, y: Int) -> (r: UInt8, g: UInt8, b: UInt8) {
        get {
            let o = (y * width + x) * 3
            return (pixels[o], pixels[o + 1], pixels[o + 2])
        }
        set {
            let o = (y * width + x) * 3
            pixels[o] = newValue.r; pixels[o + 1] = newValue.g; pixels[o + 2] = newValue.b
        }
    }
}

/// What is known about a frame besides its pixels.
public struct FrameInfo: Sendable, Equatable, Codable {
    /// 0-based index in decode order of frames delivered by the source (continues across reconnects).
    public var index: Int
    /// Presentation time in seconds from the stream's time base, made monotonic by the source.
    public var pts: Double
    /// Wall-clock capture time, seconds since the Unix epoch (when the decoder produced the frame).
    public var wallTime: Double
    /// Source frame width in pixels (coordinates in results are in this pixel space).
    public var width: Int
    /// Source frame height in pixels.
    public var height: Int
    /// Source identifier as printed in outputs (URL with credentials redacted, or the file path).
    public var source: String

    public init(index: Int, pts: Double, wallTime: Double, width: Int, height: Int, source: String) {
        self.index = index
        self.pts = pts
        self.wallTime = wallTime
        self.width = width
        self.height = height
        self.source = source
    }
}

/// A decoded video frame: metadata plus owned RGB24 pixels at the source's native size.
public struct Frame: Sendable {
    public var info: FrameInfo
    public var image: RGBImage

    public init(info: FrameInfo, image: RGBImage) {
        self.info = info
        self.image = image
    }
}
