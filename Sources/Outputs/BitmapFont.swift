import FPNCore

/// A fixed-width bitmap font for labels: X11 misc-fixed 6x10 (public domain), printable ASCII, drawn at an integer
/// scale. Characters outside ASCII 32...126 are drawn as `?`.
public struct BitmapFont: Sendable {
    /// Glyph cell width in pixels at scale 1.
    public let cellWidth = 6
    /// Glyph cell height in pixels at scale 1 (baseline at row 8, descenders below).
    public let cellHeight = 10

    /// The built-in font.
    public static let fixed = BitmapFont()

    /// Width and height of `text` at `scale`.
    public func size(of text: String, scale: Int) -> (width: Int, height: Int) {
        (text.unicodeScalars.count * cellWidth * scale, cellHeight * scale)
    }

    /// Whether the pixel at column `x`, row `y` of the glyph for `scalar` is set (scale 1).
    public func isSet(_ scalar: Unicode.Scalar, x: Int, y: Int) -> Bool {
        guard x >= 0, x < cellWidth, y >= 0, y < cellHeight else { return false }
        let code = (32...126).contains(scalar.value) ? Int(scalar.value) : 63  // '?'
        return Self.fixed6x10Rows[(code - 32) * cellHeight + y] & (0x80 >> UInt8(x)) != 0
    }

    /// Draws `text` with its top-left corner at (`x`, `y`), each font pixel a `scale`×`scale` square; clipped.
    public func draw(_ text: String, on image: inout RGBImage, x: Int, y: Int, scale: Int, color: RGB) {
        let s = max(1, scale)
        var penX = x
        for scalar in text.unicodeScalars {
            if penX >= image.width { break }
            if penX + cellWidth * s > 0 {
                for gy in 0..<cellHeight {
                    for gx in 0..<cellWidth where isSet(scalar, x: gx, y: gy) {
                        image.fillRect(x0: penX + gx * s, y0: y + gy * s, x1: penX + (gx + 1) * s, y1: y + (gy + 1) * s,
                                       color: color)
                    }
                }
            }
            penX += cellWidth * s
        }
    }
}
