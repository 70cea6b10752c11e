import FPNCore

/// What the annotator draws (from the pipeline file's `outputs.annotate`).
public struct AnnotationStyle: Sendable, Equatable {
    /// How anonymized detections are hidden.
    public enum Anonymize: String, Sendable, Equatable, CaseIterable { case none, blur, pixelate }
    public var boxes = true
    public var labels = true
    public var masks = true
    /// Instance-mask opacity in [0, 1].
    public var maskAlpha: Float = 0.45
    /// Tint panoptic stuff segments.
    public var stuff = true
    /// Stuff-tint opacity in [0, 1].
    public var stuffAlpha: Float = 0.3
    /// Box outline width in pixels; 0 = automatic (2 px up to 1080 rows, thicker above).
    public var boxThickness = 0
    /// Font scale; 0 = automatic (`Annotator.fontScale(height:)`).
    public var fontScale = 0
    /// Hide the pixels of detections whose class is in `anonymizeClasses` (before anything is drawn).
    public var anonymize = Anonymize.none
    public var anonymizeClasses: Set<String> = ["person", "face"]
    /// Draw Keypoint R-CNN keypoints and their skeleton.
    public var keypoints = true
    /// Skeleton edges (pairs of 0-based keypoint indices); nil = COCO's person skeleton for 17 keypoints.
    public var skeleton: [[Int]]?
    /// Keypoints (and edges) with a heatmap score at or below this are not drawn (torchvision's scores are logits).
    public var keypointScore: Float = 0
    public init() {}
}

/// A colour palette (Ultralytics' 20 colours): stable per track id (by a fixed integer hash, identical across runs
/// and machines) or per class id when a detection is untracked.
public enum Palette {
    public static let colors: [RGB] = [
        0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17, 0x3DDB86, 0x1A9334, 0x00D4BB,
        0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF, 0x0018EC, 0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7,
    ].map { RGB(hex: $0) }

    /// The colour of track `id`: a SplitMix64-style hash of the id picks the palette entry, so neighbouring ids get
    /// unrelated colours and an id keeps its colour for the whole stream.
    public static func color(track id: Int) -> RGB {
        var z = UInt64(bitPattern: Int64(id)) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return colors[Int(z % UInt64(colors.count))]
    }

    /// The colour of class `id` (untracked detections).
    public static func color(class id: Int) -> RGB { colors[((id % colors.count) + colors.count) % colors.count] }

    /// Muted, well-separated tints for panoptic stuff regions, indexed by category id (so a category keeps its tint):
    /// steel blue, yellow-green, grey, brick, ochre, violet, teal, brown. Kept apart from the bright instance palette
    /// so instances stand out from the background they sit on.
    public static let stuffColors: [RGB] = [
        0xB0473A, 0x6A8FD0, 0x8A9A3A, 0xC0A040, 0x9070B0, 0x4682B4, 0x9ACD32, 0x8C8C8C,
    ].map { RGB(hex: $0) }

    /// The tint of stuff category `id`.
    public static func color(stuff id: Int) -> RGB {
        stuffColors[((id % stuffColors.count) + stuffColors.count) % stuffColors.count]
    }

    /// Track colour when tracked, class colour otherwise.
    public static func color(for d: Detection) -> RGB { d.trackID.map { color(track: $0) } ?? color(class: d.classID) }
}

/// Draws a frame's results on its RGB image: stuff tints, anonymization, instance masks, stuff names, motion trails,
/// boxes and labels (`person 0.87 #12`), in that order so labels stay readable on top. Stateless and cheap to copy; the
/// per-stream trail history is a separate `TrailHistory`.
public struct Annotator: Sendable {
    public var style: AnnotationStyle
    public var font = BitmapFont.fixed

    public init(style: AnnotationStyle = AnnotationStyle()) { self.style = style }

    /// Font scale used on an image `height` rows tall: `style.fontScale`, or round(height / 400) at least 1
    /// (1 up to 599 rows, 2 at 720p, 3 at 1080p: labels about 2.5 % of the frame height).
    public func fontScale(height: Int) -> Int {
        style.fontScale > 0 ? style.fontScale : max(1, (height + 200) / 400)
    }

    /// Box outline width on an image `height` rows tall.
    public func boxThickness(height: Int) -> Int { style.boxThickness > 0 ? style.boxThickness : max(2, height / 540) }

    /// The label of a detection: class name, score with 2 decimals, and `#id` when tracked.
    public static func label(_ d: Detection) -> String {
        var s = d.className.isEmpty ? "class \(d.classID)" : d.className
        if d.score.isFinite { s += " " + String(format2(d.score)) }
        if let t = d.trackID { s += " #\(t)" }
        return s
    }

    /// Draws `result` on `image` (which must be the frame the result describes). `trails` maps track ids to past
    /// centres, oldest first (see `TrailHistory`).
    public func draw(_ result: FrameResult, on image: inout RGBImage, trails: [Int: [Point]] = [:]) {
        let h = image.height
        if style.stuff, let segments = result.panoptic {
            for s in segments where !s.isThing {
                image.blendMask(s.mask, color: Palette.color(stuff: s.categoryID), alpha: style.stuffAlpha)
            }
        }
        if style.anonymize != .none {
            for d in result.detections where style.anonymizeClasses.contains(d.className) { anonymize(d.box, &image) }
        }
        if style.masks {
            for d in result.detections { if let m = d.mask { image.blendMask(m, color: Palette.color(for: d), alpha: style.maskAlpha) } }
        }
        if style.stuff && style.labels, let segments = result.panoptic {
            // Stuff names under the instances' boxes and labels, at a point inside each region.
            let scale = fontScale(height: h)
            for s in segments where !s.isThing {
                guard let p = Self.stuffLabelPoint(s.mask) else { continue }
                let (tw, th) = font.size(of: s.categoryName, scale: scale)
                let x0 = min(max(0, p.x - tw / 2 - scale), max(0, image.width - tw - 2 * scale))
                let y0 = min(max(0, p.y - th / 2 - scale), max(0, image.height - th - 2 * scale))
                let bg = Palette.color(stuff: s.categoryID)
                image.fillRect(x0: x0, y0: y0, x1: x0 + tw + 2 * scale, y1: y0 + th + 2 * scale, color: bg)
                font.draw(s.categoryName, on: &image, x: x0 + scale, y: y0 + scale, scale: scale, color: bg.contrasting)
            }
        }
        let thickness = boxThickness(height: h)
        for (id, points) in trails.sorted(by: { $0.key < $1.key }) where points.count > 1 {
            let c = Palette.color(track: id)
            for i in 1..<points.count { image.drawLine(from: points[i - 1], to: points[i], thickness: thickness, color: c) }
        }
        if style.keypoints {
            for d in result.detections { if let k = d.keypoints { drawSkeleton(k, Palette.color(for: d), thickness, &image) } }
        }
        if style.boxes {
            for d in result.detections { image.strokeBox(d.box, thickness: thickness, color: Palette.color(for: d)) }
        }
        if style.labels {
            let scale = fontScale(height: h)
            let rects = labelRects(result.detections, imageWidth: image.width, imageHeight: h)
            // Lowest score first, so if a crowded frame leaves no free place the better label is drawn on top.
            for i in result.detections.indices.sorted(by: { Self.placementOrder(result.detections, $1, $0) }) {
                drawLabel(result.detections[i], in: rects[i], on: &image, scale: scale)
            }
        }
    }

    /// Skeleton edges between confident keypoints, then a dot on each confident keypoint.
    func drawSkeleton(_ kps: [Keypoint], _ color: RGB, _ thickness: Int, _ image: inout RGBImage) {
        let edges = style.skeleton ?? (kps.count == 17 ? Keypoint.cocoSkeleton : [])
        let shown = kps.map { $0.score > style.keypointScore }
        for e in edges where e.count == 2 && e.allSatisfy({ kps.indices.contains($0) && shown[$0] }) {
            image.drawLine(from: Point(x: kps[e[0]].x, y: kps[e[0]].y), to: Point(x: kps[e[1]].x, y: kps[e[1]].y),
                           thickness: thickness, color: color)
        }
        let r = thickness + 1
        for (k, show) in zip(kps, shown) where show {
            let x = Int(k.x.rounded()), y = Int(k.y.rounded())
            image.fillRect(x0: x - r, y0: y - r, x1: x + r + 1, y1: y + r + 1, color: color.contrasting)
            image.fillRect(x0: x - r + 1, y0: y - r + 1, x1: x + r, y1: y + r, color: color)
        }
    }

    /// Where a stuff region's name goes: the region pixel nearest to the region's centroid (so the label sits on the
    /// region even when it is concave or ring-shaped, e.g. a wall around a window); nil for an empty mask. Works on
    /// the RLE runs (each run is a vertical segment of one column), not on pixels.
    public static func stuffLabelPoint(_ mask: MaskRLE) -> (x: Int, y: Int)? {
        let h = mask.height
        guard h > 0 else { return nil }
        var sumX = 0.0, sumY = 0.0, n = 0.0
        var runs: [(x: Int, y0: Int, y1: Int)] = []   // y1 inclusive
        var p = 0, on = false
        for c in mask.counts {
            var start = p, left = Int(c)
            p += left
            if on {
                while left > 0 {   // a run may wrap over several columns
                    let x = start / h, y = start % h, len = min(left, h - y)
                    runs.append((x, y, y + len - 1))
                    sumX += Double(x * len); sumY += Double(len) * (Double(y) + Double(len - 1) / 2); n += Double(len)
                    start += len; left -= len
                }
            }
            on.toggle()
        }
        guard n > 0 else { return nil }
        let cx = sumX / n, cy = sumY / n
        var best = (x: 0, y: 0), bestD = Double.infinity
        for r in runs {
            let y = min(max(Int(cy.rounded()), r.y0), r.y1)
            let d = (Double(r.x) - cx) * (Double(r.x) - cx) + (Double(y) - cy) * (Double(y) - cy)
            if d < bestD { bestD = d; best = (r.x, y) }
        }
        return best
    }

    /// The first-choice label rectangle for `d` alone on an image of the given size (half-open pixel bounds): above
    /// the box's top-left corner when there is room, else just inside it; shifted left to stay within the image.
    /// `labelRects` moves labels that would overlap.
    public func labelRect(_ d: Detection, imageWidth: Int, imageHeight: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int) {
        let scale = fontScale(height: imageHeight)
        let (tw, th) = font.size(of: Self.label(d), scale: scale)
        let pad = scale
        let w = tw + 2 * pad, hgt = th + 2 * pad
        let bx = d.box.x1.isFinite ? Int(clampToInt(d.box.x1.rounded(.down))) : 0
        let by = d.box.y1.isFinite ? Int(clampToInt(d.box.y1.rounded(.down))) : 0
        var x0 = max(0, bx)
        if x0 + w > imageWidth { x0 = max(0, imageWidth - w) }
        var y0 = by - hgt
        if y0 < 0 { y0 = max(0, by) }
        if y0 + hgt > imageHeight { y0 = max(0, imageHeight - hgt) }
        return (x0, y0, x0 + w, y0 + hgt)
    }

    /// A label's background rectangle (half-open pixel bounds).
    public typealias LabelRect = (x0: Int, y0: Int, x1: Int, y1: Int)

    /// Label rectangles for `detections` (same order) that do not overlap one another. Placed greedily by descending
    /// score: each label takes the first free place of: above the box (`labelRect`), below the box, inside its top
    /// edge, then lower and lower rows below that, then higher rows above the first place. Only when no row is free
    /// (more labels than the frame holds) does a label keep its first place, overlapping.
    public func labelRects(_ detections: [Detection], imageWidth: Int, imageHeight: Int) -> [LabelRect] {
        var placed: [LabelRect] = []
        var result = [LabelRect](repeating: (0, 0, 0, 0), count: detections.count)
        func free(_ r: LabelRect) -> Bool {
            !placed.contains { $0.x0 < r.x1 && r.x0 < $0.x1 && $0.y0 < r.y1 && r.y0 < $0.y1 }
        }
        let order = detections.indices.sorted { Self.placementOrder(detections, $0, $1) }
        for i in order {
            let d = detections[i]
            let first = labelRect(d, imageWidth: imageWidth, imageHeight: imageHeight)
            let hgt = first.y1 - first.y0
            let maxY = max(0, imageHeight - hgt)
            func at(_ y: Int) -> LabelRect { (first.x0, y, first.x1, y + hgt) }
            let top = d.box.y1.isFinite ? Int(clampToInt(d.box.y1.rounded(.down))) : 0
            let bottom = d.box.y2.isFinite ? Int(clampToInt(d.box.y2.rounded(.up))) : top
            var candidates = [first.y0, bottom, top].map { min(max(0, $0), maxY) }
            let inside = candidates[2]
            candidates += Array(stride(from: inside + 1, through: maxY, by: 1))
            candidates += Array(stride(from: first.y0 - 1, through: 0, by: -1))
            let y = candidates.first { free(at($0)) } ?? first.y0
            result[i] = at(y)
            placed.append(result[i])
        }
        return result
    }

    /// True when detection `a` is placed before `b`: higher score first, then the earlier one.
    static func placementOrder(_ detections: [Detection], _ a: Int, _ b: Int) -> Bool {
        let sa = detections[a].score.isFinite ? detections[a].score : -1
        let sb = detections[b].score.isFinite ? detections[b].score : -1
        return sa != sb ? sa > sb : a < b
    }

    private func drawLabel(_ d: Detection, in r: LabelRect, on image: inout RGBImage, scale: Int) {
        let bg = Palette.color(for: d)
        image.fillRect(x0: r.x0, y0: r.y0, x1: r.x1, y1: r.y1, color: bg)
        font.draw(Self.label(d), on: &image, x: r.x0 + scale, y: r.y0 + scale, scale: scale, color: bg.contrasting)
    }

    private func anonymize(_ box: Box, _ image: inout RGBImage) {
        guard box.x1.isFinite, box.y1.isFinite, box.x2.isFinite, box.y2.isFinite else { return }
        let x0 = Int(clampToInt(box.x1.rounded(.down))), y0 = Int(clampToInt(box.y1.rounded(.down)))
        let x1 = Int(clampToInt(box.x2.rounded(.up))), y1 = Int(clampToInt(box.y2.rounded(.up)))
        let side = max(1, min(x1 - x0, y1 - y0))
        switch style.anonymize {
        case .pixelate: image.pixelate(x0: x0, y0: y0, x1: x1, y1: y1, block: max(4, side / 8))
        case .blur: image.blur(x0: x0, y0: y0, x1: x1, y1: y1, radius: max(2, side / 10))
        case .none: break
        }
    }
}

/// Formats a score in [0, 1] with two decimals ("0.87") without Foundation.
func format2(_ v: Float) -> String {
    let c = Int((min(max(v, 0), 1) * 100).rounded())
    return "\(c / 100).\(c % 100 < 10 ? "0" : "")\(c % 100)"
}

/// Per-stream history of track centres for motion trails: feed each frame's tracked detections in order; tracks not
/// seen for `length` frames are forgotten.
public final class TrailHistory: @unchecked Sendable {
    /// Centres kept per track.
    public let length: Int
    private var points: [Int: [Point]] = [:]
    private var lastSeen: [Int: Int] = [:]
    private var frame = 0

    public init(length: Int) { self.length = max(0, length) }

    /// Adds this frame's centres (box centre of each tracked detection) and returns the trails to draw.
    public func update(with detections: [Detection]) -> [Int: [Point]] {
        frame += 1
        guard length > 0 else { return [:] }
        for d in detections {
            guard let id = d.trackID else { continue }
            let c = d.box.center
            var p = points[id] ?? []
            p.append(Point(x: c.x, y: c.y))
            if p.count > length { p.removeFirst(p.count - length) }
            points[id] = p
            lastSeen[id] = frame
        }
        for (id, seen) in lastSeen where frame - seen >= length {
            points[id] = nil
            lastSeen[id] = nil
        }
        return points
    }
}
