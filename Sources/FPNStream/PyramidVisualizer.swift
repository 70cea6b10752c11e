import FPNCore
import Outputs

/// Draws a frame beside its FPN levels, for `fpnstream features --visualize`.
///
/// ```
///  ┌───────────────┬───────┐   frame W x H with every detection boxed in the colour of its assigned level
///  │               │  P2   │   and labelled `P3 person 0.91`; levels as heatmaps in cells of W/2 x H/2
///  │     frame     ├───────┤   (nearest-neighbour: one block per feature cell), each with the boxes assigned
///  │               │  P3   │   to it; a tile covers exactly the resized image, so it lines up with the frame
///  ├───────┬───────┼───────┤
///  │  P4   │  P5   │  P6   │
///  ├───────┴───────┴───────┤
///  │ legend                │   colour bar, normalisation, level colours
///  └───────────────────────┘
/// ```
/// Levels beyond five continue the bottom row. Stateless.
public struct PyramidVisualizer: Sendable {
    /// How heatmap values map to colours.
    public var normalization: HeatmapNormalization
    public var font = BitmapFont.fixed

    public init(normalization: HeatmapNormalization = .level) { self.normalization = normalization }

    /// Box and label colour of level `k` (P2 red, P3 orange, P4 white, P5 magenta, P6 cyan, P7 blue): all readable
    /// on the viridis heatmaps and on a photo.
    public static func color(level k: Int) -> RGB {
        let colors: [UInt32] = [0xff3030, 0xff9900, 0xffffff, 0xff40ff, 0x40e0ff, 0x3060ff]
        return RGB(hex: colors[min(max(k - 2, 0), colors.count - 1)])
    }

    /// What one rendered picture shows.
    public struct Content {
        /// The source frame.
        public var frame: RGBImage
        /// Levels, finest first.
        public var heatmaps: [LevelHeatmap]
        /// Detections in frame pixels and the level k each was assigned to (same order).
        public var detections: [(detection: Detection, level: Int)]
        /// Resized (unpadded) network-input size the heatmaps cover.
        public var inputWidth: Int, inputHeight: Int
        /// First legend line (e.g. `frame 100 · maskrcnn_resnet50_fpn · 7 detections`).
        public var caption: String
        /// Second legend line (how levels were assigned).
        public var assignment: String

        public init(frame: RGBImage, heatmaps: [LevelHeatmap], detections: [(detection: Detection, level: Int)],
                    inputWidth: Int, inputHeight: Int, caption: String, assignment: String) {
            self.frame = frame
            self.heatmaps = heatmaps
            self.detections = detections
            self.inputWidth = inputWidth
            self.inputHeight = inputHeight
            self.caption = caption
            self.assignment = assignment
        }
    }

    /// Cell size (half the frame, rounded up) and the cell's origin for level slot `i`.
    static func cell(_ i: Int, frameWidth w: Int, frameHeight h: Int) -> (x: Int, y: Int, w: Int, h: Int) {
        let cw = (w + 1) / 2, ch = (h + 1) / 2
        return i < 2 ? (2 * cw, i * ch, cw, ch) : ((i - 2) * cw, 2 * ch, cw, ch)
    }

    /// Font scale for a canvas `width` pixels wide (1 below 1000 px).
    func fontScale(width: Int) -> Int { max(1, width / 800) }

    /// Height of the legend strip at font scale `s`: three text rows.
    func legendHeight(_ s: Int) -> Int { 3 * (font.cellHeight + 4) * s + 4 * s }

    /// The picture for `content`; width and height are even (for 4:2:0 video).
    public func render(_ content: Content) -> RGBImage {
        let f = content.frame
        let n = content.heatmaps.count
        let c0 = Self.cell(0, frameWidth: f.width, frameHeight: f.height)
        let gridW = max(3, n - 2) * c0.w, gridH = 3 * c0.h
        let scale = fontScale(width: gridW)
        var canvas = RGBImage(width: (gridW + 1) & ~1, height: (gridH + legendHeight(scale) + 1) & ~1)
        blit(f, into: &canvas, x: 0, y: 0)
        drawDetections(content.detections, on: &canvas, scale: scale, labels: true, sx: 1, sy: 1, ox: 0, oy: 0)
        let globalMax = content.heatmaps.map { $0.range.max }.max() ?? 0
        for (i, hm) in content.heatmaps.enumerated() {
            let c = Self.cell(i, frameWidth: f.width, frameHeight: f.height)
            let r = hm.range
            let (lo, hi) = normalization == .level ? (r.min, r.max) : (0, globalMax)
            drawHeatmap(hm, lo: lo, hi: hi, on: &canvas, cell: c, input: (content.inputWidth, content.inputHeight))
            // A black edge left and above separates neighbouring tiles of similar colour.
            canvas.fillRect(x0: c.x, y0: c.y, x1: c.x + c.w, y1: c.y + scale, color: .black)
            canvas.fillRect(x0: c.x, y0: c.y, x1: c.x + scale, y1: c.y + c.h, color: .black)
            let assigned = content.detections.filter { $0.level == hm.k }
            drawDetections(assigned, on: &canvas, scale: scale, labels: false,
                           sx: Float(c.w) / Float(f.width), sy: Float(c.h) / Float(f.height), ox: c.x, oy: c.y)
            let title = "\(hm.name.uppercased()) /\(hm.stride) \(hm.width)x\(hm.height) rms \(Self.short(r.min))-\(Self.short(r.max))"
            label(title, on: &canvas, x: c.x + scale, y: c.y + scale, scale: scale, background: .black,
                  color: Self.color(level: hm.k))
        }
        drawLegend(content, on: &canvas, y: gridH, scale: scale)
        return canvas
    }

    /// `v` with 3 significant digits, no exponent for ordinary activations.
    static func short(_ v: Float) -> String {
        let a = abs(v)
        let digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3
        return String(format: "%.\(digits)f", Double(v))
    }

    private func blit(_ image: RGBImage, into canvas: inout RGBImage, x: Int, y: Int) {
        let rowBytes = min(image.width, canvas.width - x) * 3
        guard rowBytes > 0 else { return }
        for row in 0..<min(image.height, canvas.height - y) {
            let src = row * image.stride, dst = (y + row) * canvas.stride + x * 3
            canvas.pixels.replaceSubrange(dst..<(dst + rowBytes), with: image.pixels[src..<(src + rowBytes)])
        }
    }

    /// The heatmap scaled to `cell` so that the cell spans the resized image (`input`): pixel (px, py) shows the
    /// feature cell under input pixel ((px + 0.5) · inputW / cellW, ...) — nearest neighbour.
    private func drawHeatmap(_ hm: LevelHeatmap, lo: Float, hi: Float, on canvas: inout RGBImage,
                             cell c: (x: Int, y: Int, w: Int, h: Int), input: (w: Int, h: Int)) {
        let span = hi > lo ? hi - lo : 1
        let xs = (0..<c.w).map { min(hm.width - 1, Int((Float($0) + 0.5) * Float(input.w) / Float(c.w)) / hm.stride) }
        let cw = canvas.width
        canvas.pixels.withUnsafeMutableBufferPointer { p in
            for py in 0..<c.h where c.y + py < canvas.height {
                let cy = min(hm.height - 1, Int((Float(py) + 0.5) * Float(input.h) / Float(c.h)) / hm.stride)
                var o = ((c.y + py) * cw + c.x) * 3
                for px in 0..<min(c.w, cw - c.x) {
                    let (r, g, b) = Viridis.color((hm.values[cy * hm.width + xs[px]] - lo) / span)
                    p[o] = r; p[o + 1] = g; p[o + 2] = b
                    o += 3
                }
            }
        }
    }

    /// Boxes (frame pixels scaled by sx, sy and offset by ox, oy) in their level's colour; with `labels`, a
    /// `P3 person 0.91` tag above each box.
    private func drawDetections(_ dets: [(detection: Detection, level: Int)], on canvas: inout RGBImage, scale: Int,
                                labels: Bool, sx: Float, sy: Float, ox: Int, oy: Int) {
        let thickness = max(1, Int((2 * sx * Float(scale)).rounded()))
        for (d, k) in dets {
            let b = d.box
            let box = Box(x1: b.x1 * sx + Float(ox), y1: b.y1 * sy + Float(oy), x2: b.x2 * sx + Float(ox),
                          y2: b.y2 * sy + Float(oy))
            canvas.strokeBox(box, thickness: thickness, color: Self.color(level: k))
        }
        guard labels else { return }
        for (d, k) in dets {
            let text = "P\(k) " + Annotator.label(d)
            let h = (font.cellHeight + 2) * scale
            let y = Int(d.box.y1 * sy) + oy - h >= 0 ? Int(d.box.y1 * sy) + oy - h : Int(d.box.y1 * sy) + oy
            let bg = Self.color(level: k)
            label(text, on: &canvas, x: Int(d.box.x1 * sx) + ox, y: y, scale: scale, background: bg, color: bg.contrasting)
        }
    }

    private func label(_ text: String, on canvas: inout RGBImage, x: Int, y: Int, scale: Int, background: RGB,
                       color: RGB) {
        let (tw, th) = font.size(of: text, scale: scale)
        canvas.fillRect(x0: x, y0: y, x1: x + tw + 2 * scale, y1: y + th + 2 * scale, color: background)
        font.draw(text, on: &canvas, x: x + scale, y: y + scale, scale: scale, color: color)
    }

    /// Caption; colour bar with what it means; level colours and the assignment rule.
    private func drawLegend(_ content: Content, on canvas: inout RGBImage, y: Int, scale s: Int) {
        let row = (font.cellHeight + 4) * s
        var y = y + 2 * s
        font.draw(content.caption, on: &canvas, x: 2 * s, y: y, scale: s, color: .white)
        y += row
        let barW = 64 * s
        for i in 0..<barW {
            let (r, g, b) = Viridis.color(Float(i) / Float(barW - 1))
            canvas.fillRect(x0: 2 * s + i, y0: y, x1: 3 * s + i, y1: y + font.cellHeight * s, color: RGB(r, g, b))
        }
        let scaleText = normalization == .level ? "channel RMS, each level min to max" : "channel RMS, 0 to the frame's max"
        font.draw(scaleText, on: &canvas, x: 4 * s + barW, y: y, scale: s, color: .white)
        y += row
        var x = 2 * s
        for hm in content.heatmaps {
            let text = "P\(hm.k)"
            label(text, on: &canvas, x: x, y: y, scale: s, background: Self.color(level: hm.k),
                  color: Self.color(level: hm.k).contrasting)
            x += font.size(of: text, scale: s).width + 4 * s
        }
        font.draw(content.assignment, on: &canvas, x: x + 2 * s, y: y + s, scale: s, color: .white)
    }
}

extension RGBImage {
    /// This image shrunk by area averaging to `width` x `height` (each at most the current size).
    public func areaDownscaled(width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0 && width <= self.width && height <= self.height)
        var out = RGBImage(width: width, height: height)
        let xb = (0...width).map { $0 * self.width / width }, yb = (0...height).map { $0 * self.height / height }
        for oy in 0..<height {
            for ox in 0..<width {
                var sum = (0, 0, 0)
                for y in yb[oy]..<yb[oy + 1] {
                    for x in xb[ox]..<xb[ox + 1] {
                        let o = (y * self.width + x) * 3
                        sum.0 += Int(pixels[o]); sum.1 += Int(pixels[o + 1]); sum.2 += Int(pixels[o + 2])
                    }
                }
                let n = (yb[oy + 1] - yb[oy]) * (xb[ox + 1] - xb[ox])
                let o = (oy * width + ox) * 3
                out.pixels[o] = UInt8((sum.0 + n / 2) / n)
                out.pixels[o + 1] = UInt8((sum.1 + n / 2) / n)
                out.pixels[o + 2] = UInt8((sum.2 + n / 2) / n)
            }
        }
        return out
    }
}
