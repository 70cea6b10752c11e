import FPNCore

/// The resize of Ultralytics' letterbox as OpenCV computes it for uint8 images (`cv2.resize`, INTER_LINEAR):
/// half-pixel source coordinates, 11-bit fixed-point weights, and the rounding of OpenCV's SIMD vertical pass.
/// Bit-exact with OpenCV 4 for downscaling (camera frames into 640x640); upscaling a small frame differs by one
/// grey level on under 0.1% of pixels. Matching OpenCV here matters: random or weakly trained networks move
/// scores noticeably for one-grey-level input changes.
enum OpenCVLinearResize {
    /// Source indices and 11-bit weights (summing to 2048) for each output index along one axis.
    static func taps(output: Int, input: Int) -> [(Int, Int, Int32, Int32)] {
        let scale = 1.0 / (Double(output) / Double(input))
        return (0..<output).map { d in
            var f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if s < 0 { f = 0; s = 0 }
            if s >= input - 1 { f = 0; s = input - 1 }
            let c0 = Int32(((1 - f) * 2048).rounded(.toNearestOrEven))
            return (s, min(s + 1, input - 1), c0, 2048 - c0)
        }
    }

    /// `image` resized to `width` x `height`, interleaved RGB bytes.
    static func resize(_ image: RGBImage, width: Int, height: Int) -> [UInt8] {
        if width == image.width && height == image.height { return image.pixels }
        let xs = taps(output: width, input: image.width), ys = taps(output: height, input: image.height)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        var row0 = [Int32](repeating: 0, count: width * 3), row1 = row0
        image.pixels.withUnsafeBufferPointer { p in
            func horizontal(_ y: Int, into row: inout [Int32]) {
                let base = y * image.width * 3
                for (x, (a, b, ca, cb)) in xs.enumerated() {
                    for c in 0..<3 {
                        row[x * 3 + c] = Int32(p[base + a * 3 + c]) * ca + Int32(p[base + b * 3 + c]) * cb
                    }
                }
            }
            for (y, (a, b, ca, cb)) in ys.enumerated() {
                horizontal(a, into: &row0)
                horizontal(b, into: &row1)
                let o = y * width * 3
                for i in 0..<(width * 3) {
                    let v = (((row0[i] >> 4) * ca) >> 16) + (((row1[i] >> 4) * cb) >> 16)
                    out[o + i] = UInt8(clamping: (v + 2) >> 2)
                }
            }
        }
        return out
    }
}
