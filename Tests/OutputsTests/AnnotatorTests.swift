import FPNCore
@testable import Outputs
import XCTest

final class AnnotatorTests: XCTestCase {
    let bg = RGB(50, 60, 70)

    private func canvas(_ w: Int = 100, _ h: Int = 80) -> RGBImage {
        var img = RGBImage(width: w, height: h)
        img.fillRect(x0: 0, y0: 0, x1: w, y1: h, color: bg)
        return img
    }

    private func px(_ img: RGBImage, _ x: Int, _ y: Int) -> RGB { let p = img[x, y]; return RGB(p.r, p.g, p.b) }

    private func frame(_ dets: [Detection], panoptic: [PanopticSegment]? = nil, w: Int = 100, h: Int = 80) -> FrameResult {
        FrameResult(info: FrameInfo(index: 0, pts: 0, wallTime: 0, width: w, height: h, source: "t"),
                    detections: dets, panoptic: panoptic)
    }

    private func style(boxes: Bool = true, labels: Bool = false, masks: Bool = true) -> AnnotationStyle {
        var s = AnnotationStyle(); s.boxes = boxes; s.labels = labels; s.masks = masks; return s
    }

    func testBoxEdgesHaveTheBoxColourAndAreTwoPixelsWide() {
        var img = canvas()
        let d = Detection(box: Box(x1: 10, y1: 10, x2: 50, y2: 40), score: 0.9, classID: 3, className: "car")
        Annotator(style: style()).draw(frame([d]), on: &img)
        let c = Palette.color(class: 3)
        XCTAssertEqual(px(img, 10, 20), c, "left edge")
        XCTAssertEqual(px(img, 11, 20), c, "2 px wide")
        XCTAssertEqual(px(img, 12, 20), bg, "inside stays")
        XCTAssertEqual(px(img, 9, 20), bg, "outside stays")
        XCTAssertEqual(px(img, 49, 39), c, "bottom-right corner (x2, y2 exclusive)")
        XCTAssertEqual(px(img, 50, 39), bg)
        XCTAssertEqual(px(img, 30, 10), c, "top edge")
        XCTAssertEqual(px(img, 30, 38), c, "bottom edge")
        XCTAssertEqual(px(img, 30, 37), bg)
    }

    func testMaskPixelsFollowTheBlendFormula() throws {
        var img = canvas(20, 10)
        var bits = [UInt8](repeating: 0, count: 200)
        for y in 2..<6 { for x in 3..<9 { bits[y * 20 + x] = 1 } }
        let mask = MaskRLE(rowMajor: bits, height: 10, width: 20)
        let d = Detection(box: Box(x1: 3, y1: 2, x2: 9, y2: 6), score: 0.5, classID: 1, className: "person",
                          trackID: 7, mask: mask)
        var s = style(boxes: false)
        s.maskAlpha = 0.45
        Annotator(style: s).draw(frame([d], w: 20, h: 10), on: &img)
        let c = Palette.color(track: 7)
        let a = Int((0.45 * 256).rounded())  // 115
        func f(_ src: UInt8, _ col: UInt8) -> UInt8 { UInt8((Int(src) * (256 - a) + Int(col) * a + 128) >> 8) }
        XCTAssertEqual(px(img, 5, 3), RGB(f(bg.r, c.r), f(bg.g, c.g), f(bg.b, c.b)))
        XCTAssertEqual(px(img, 3, 2), px(img, 8, 5), "every mask pixel gets the same blend")
        XCTAssertEqual(px(img, 9, 3), bg, "right of the mask")
        XCTAssertEqual(px(img, 5, 6), bg, "below the mask")
        XCTAssertNotEqual(px(img, 5, 3), bg)
    }

    func testLabelTextStaysInsideItsBackgroundBox() {
        var img = canvas(200, 120)
        let d = Detection(box: Box(x1: 40, y1: 50, x2: 120, y2: 110), score: 0.87, classID: 1, className: "person",
                          trackID: 12)
        XCTAssertEqual(Annotator.label(d), "person 0.87 #12")
        let ann = Annotator(style: style(boxes: false, labels: true, masks: false))
        ann.draw(frame([d], w: 200, h: 120), on: &img)
        let r = ann.labelRect(d, imageWidth: 200, imageHeight: 120)
        XCTAssertEqual(r.y1, 50, "above the box")
        XCTAssertEqual(r.x0, 40)
        let back = Palette.color(track: 12)
        var textPixels = 0
        for y in 0..<120 {
            for x in 0..<200 {
                let p = px(img, x, y)
                let inside = x >= r.x0 && x < r.x1 && y >= r.y0 && y < r.y1
                if !inside { XCTAssertEqual(p, bg, "pixel (\(x), \(y)) outside the label changed"); continue }
                if p == back.contrasting { textPixels += 1 } else { XCTAssertEqual(p, back) }
            }
        }
        // Exactly the glyph bits of the label, each one font pixel at scale 1.
        let font = BitmapFont.fixed
        var bits = 0
        for ch in "person 0.87 #12".unicodeScalars {
            for y in 0..<font.cellHeight { for x in 0..<font.cellWidth where font.isSet(ch, x: x, y: y) { bits += 1 } }
        }
        XCTAssertGreaterThan(bits, 60)
        XCTAssertEqual(textPixels, bits)
    }

    func testGlyphsAreDistinctAndScaled() {
        let f = BitmapFont.fixed
        func glyph(_ c: Unicode.Scalar) -> [Bool] { (0..<60).map { f.isSet(c, x: $0 % 6, y: $0 / 6) } }
        let printable = (33...126).map { glyph(Unicode.Scalar($0)!) }
        XCTAssertEqual(Set(printable.map { $0.description }).count, printable.count, "every printable glyph differs")
        XCTAssertFalse(glyph(" ").contains(true))
        XCTAssertEqual(glyph("é"), glyph("?"), "non-ASCII falls back to '?'")
        var img = RGBImage(width: 40, height: 30)
        f.draw("A", on: &img, x: 2, y: 3, scale: 3, color: .white)
        var lit = 0
        for y in 0..<30 { for x in 0..<40 where img[x, y].r == 255 { lit += 1 } }
        XCTAssertEqual(lit, glyph("A").filter { $0 }.count * 9)
        XCTAssertEqual(f.size(of: "ab", scale: 2).width, 24)
    }

    func testClippingAtBordersAndGarbageBoxes() {
        var img = canvas(64, 48)
        let dets = [
            Detection(box: Box(x1: -10, y1: -10, x2: 20, y2: 20), score: 0.9, classID: 2, className: "bicycle", trackID: 1),
            Detection(box: Box(x1: 50, y1: 40, x2: 500, y2: 900), score: 0.9, classID: 2, className: "a very long label"),
            Detection(box: Box(x1: .nan, y1: 0, x2: 10, y2: .infinity), score: .nan, classID: -5, className: ""),
            Detection(box: Box(x1: 1e30, y1: -1e30, x2: -1e30, y2: 1e30), score: 2, classID: 1, className: "x"),
            Detection(box: Box(x1: 100, y1: 100, x2: 200, y2: 200), score: 0.5, classID: 1, className: "off"),
        ]
        var s = style(boxes: true, labels: true)
        s.anonymize = .blur
        s.anonymizeClasses = ["bicycle", "off"]
        let trails: [Int: [Point]] = [1: [Point(x: -1e9, y: 5), Point(x: 30, y: 30), Point(x: 1e9, y: 1e9)]]
        Annotator(style: s).draw(frame(dets, w: 64, h: 48), on: &img, trails: trails)
        let c = Palette.color(track: 1)
        XCTAssertEqual(px(img, 19, 15), c, "right edge of a box clipped at the top-left corner")
        XCTAssertEqual(px(img, 0, 15), bg, "its left edge is outside the image and is not pulled in")

        var t = canvas(64, 48)
        Annotator(style: style(boxes: false)).draw(frame([], w: 64, h: 48), on: &t, trails: trails)
        XCTAssertEqual(px(t, 10, 29), c, "a trail from a point far outside is drawn on the visible part")
        XCTAssertEqual(px(t, 40, 40), c, "and towards a point far outside")
        XCTAssertEqual(px(t, 10, 10), bg)
        XCTAssertEqual(px(img, 63, 47) == bg, false, "box reaching past the bottom-right corner is drawn to the edge")
    }

    func testTrackColoursAreStableAndSpread() {
        XCTAssertEqual(Palette.color(track: 12), Palette.color(track: 12))
        let colours = Set((1...40).map { Palette.color(track: $0) })
        XCTAssertGreaterThanOrEqual(colours.count, 15, "40 consecutive ids use most of the 20 colours")
        XCTAssertNotEqual(Palette.color(track: 1), Palette.color(track: 2))
        XCTAssertEqual(Palette.color(class: 21), Palette.color(class: 1))
        XCTAssertEqual(Palette.color(class: -1), Palette.colors[19])
    }

    func testStuffTintOnlyForStuffSegments() {
        var img = canvas(10, 10)
        var top = [UInt8](repeating: 0, count: 100)
        for i in 0..<50 { top[i] = 1 }
        let bottom = top.map { 1 - $0 }
        let segs = [
            PanopticSegment(id: 1, categoryID: 184, categoryName: "sky", isThing: false, area: 50, score: nil,
                            mask: MaskRLE(rowMajor: top, height: 10, width: 10)),
            PanopticSegment(id: 2, categoryID: 1, categoryName: "person", isThing: true, area: 50, score: 0.9,
                            mask: MaskRLE(rowMajor: bottom, height: 10, width: 10)),
        ]
        Annotator(style: style()).draw(frame([], panoptic: segs, w: 10, h: 10), on: &img)
        let c = Palette.color(stuff: 184)
        let a = Int((0.3 * 256).rounded())
        XCTAssertEqual(px(img, 5, 2).r, UInt8((Int(bg.r) * (256 - a) + Int(c.r) * a + 128) >> 8))
        XCTAssertEqual(px(img, 5, 7), bg, "thing segments are drawn from detections, not tinted")
        XCTAssertNotEqual(Palette.color(stuff: 5), Palette.color(stuff: 6))
    }

    func testStuffLabelPointIsInsideTheRegion() throws {
        // A ring (a wall around a window): its centroid is in the hole, the label point must not be.
        let w = 40, h = 30
        var ring = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h { for x in 0..<w where !(8..<32).contains(x) || !(6..<24).contains(y) { ring[y * w + x] = 1 } }
        let p = try XCTUnwrap(Annotator.stuffLabelPoint(MaskRLE(rowMajor: ring, height: h, width: w)))
        XCTAssertEqual(ring[p.y * w + p.x], 1, "label point \(p) inside the ring")
        XCTAssertTrue(abs(p.x - 20) <= 1 && (p.y == 5 || p.y == 24), "nearest ring pixel to the centre, got \(p)")
        // A convex blob: the centroid itself.
        var blob = [UInt8](repeating: 0, count: w * h)
        for y in 10..<20 { for x in 4..<15 { blob[y * w + x] = 1 } }
        let q = try XCTUnwrap(Annotator.stuffLabelPoint(MaskRLE(rowMajor: blob, height: h, width: w)))
        XCTAssertEqual(q.x, 9); XCTAssertTrue((14...15).contains(q.y), "\(q)")
        XCTAssertNil(Annotator.stuffLabelPoint(MaskRLE(rowMajor: [UInt8](repeating: 0, count: 12), height: 3, width: 4)))
    }

    func testStuffNamesAreDrawnWithLabels() {
        let w = 80, h = 60
        var top = [UInt8](repeating: 0, count: w * h)
        for i in 0..<(w * 30) { top[i] = 1 }
        let seg = PanopticSegment(id: 1, categoryID: 5, categoryName: "sky", isThing: false, area: w * 30, score: nil,
                                  mask: MaskRLE(rowMajor: top, height: h, width: w))
        var plain = canvas(w, h), labelled = canvas(w, h)
        Annotator(style: style()).draw(frame([], panoptic: [seg], w: w, h: h), on: &plain)
        Annotator(style: style(labels: true)).draw(frame([], panoptic: [seg], w: w, h: h), on: &labelled)
        let c = Palette.color(stuff: 5)
        // The label's background (the stuff colour, opaque) covers the region's centre (40, 15); nothing below.
        XCTAssertEqual(px(labelled, 40 - 6, 15), c)
        XCTAssertNotEqual(px(plain, 40 - 6, 15), c)
        for y in 31..<h { for x in 0..<w { XCTAssertEqual(px(labelled, x, y), bg) } }
    }

    func testTrailHistoryAndTrailPixels() {
        let h = TrailHistory(length: 3)
        for i in 0..<5 {
            let d = Detection(box: Box(x1: Float(i * 10), y1: 10, x2: Float(i * 10 + 10), y2: 20), score: 1,
                              classID: 1, className: "p", trackID: 4)
            _ = h.update(with: [d])
        }
        let trails = h.update(with: [])
        XCTAssertEqual(trails[4]?.map(\.x), [25, 35, 45], "the last 3 centres, oldest first")
        XCTAssertTrue(h.update(with: []).isEmpty == false)
        _ = h.update(with: [])
        XCTAssertNil(h.update(with: [])[4], "forgotten after `length` frames unseen")

        var img = canvas(60, 30)
        Annotator(style: style(boxes: false)).draw(frame([], w: 60, h: 30), on: &img, trails: trails)
        XCTAssertEqual(px(img, 30, 15), Palette.color(track: 4), "on the polyline between centres")
        XCTAssertEqual(px(img, 30, 25), bg)
    }

    func testPixelateAndBlurChangeOnlyTheBox() {
        var img = RGBImage(width: 32, height: 32)
        for y in 0..<32 { for x in 0..<32 { img[x, y] = (x + y) % 2 == 0 ? (255, 255, 255) : (0, 0, 0) } }
        var p = img
        p.pixelate(x0: 8, y0: 8, x1: 24, y1: 24, block: 4)
        XCTAssertEqual(p[9, 9].r, 127, "a 4x4 checkerboard block averages to grey")
        XCTAssertEqual(p[2, 2].r, img[2, 2].r, "outside untouched")
        var b = img
        b.blur(x0: 8, y0: 8, x1: 24, y1: 24, radius: 2)
        XCTAssertTrue((100...155).contains(Int(b[16, 16].r)), "\(b[16, 16].r)")
        XCTAssertEqual(b[30, 30].r, img[30, 30].r)
    }
}

extension AnnotatorTests {
    func overlaps(_ a: Annotator.LabelRect, _ b: Annotator.LabelRect) -> Bool {
        a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
    }

    /// Two boxes whose first-choice labels overlap (the demo's `circle 1.00 #11` under `triangle 0.99 #28`): the
    /// better-scored label keeps its place above its box, the other moves to a free place.
    func testOverlappingLabelsAreMovedApart() {
        let ann = Annotator(style: style(boxes: true, labels: true, masks: false))
        let circle = Detection(box: Box(x1: 100, y1: 60, x2: 160, y2: 120), score: 1.0, classID: 1, className: "circle",
                               trackID: 11)
        let triangle = Detection(box: Box(x1: 90, y1: 62, x2: 150, y2: 130), score: 0.99, classID: 3,
                                 className: "triangle", trackID: 28)
        let dets = [triangle, circle]
        XCTAssertTrue(overlaps(ann.labelRect(circle, imageWidth: 320, imageHeight: 240),
                               ann.labelRect(triangle, imageWidth: 320, imageHeight: 240)), "the case under test")
        let rects = ann.labelRects(dets, imageWidth: 320, imageHeight: 240)
        XCTAssertFalse(overlaps(rects[0], rects[1]), "\(rects)")
        XCTAssertTrue(rects[1] == ann.labelRect(circle, imageWidth: 320, imageHeight: 240), "the best score keeps its place")
        XCTAssertEqual(rects[0].y0, 130, "the other goes below its box")
    }

    /// Many boxes on one spot: every label finds a free row, none overlaps another, all stay in the image; the
    /// drawn frame shows every label's background colour.
    func testCrowdedLabelsNeverOverlap() {
        let ann = Annotator(style: style(boxes: false, labels: true, masks: false))
        let dets = (0..<8).map { i in
            Detection(box: Box(x1: 50 + Float(i), y1: 40, x2: 120, y2: 90), score: 0.9 - Float(i) * 0.05, classID: 1,
                      className: "object", trackID: i + 1)
        }
        let rects = ann.labelRects(dets, imageWidth: 200, imageHeight: 200)
        for i in rects.indices {
            XCTAssertGreaterThanOrEqual(rects[i].y0, 0)
            XCTAssertLessThanOrEqual(rects[i].y1, 200)
            for j in rects.indices where j > i { XCTAssertFalse(overlaps(rects[i], rects[j]), "\(i) and \(j)") }
        }
        var img = canvas(200, 200)
        ann.draw(frame(dets, w: 200, h: 200), on: &img)
        for (d, r) in zip(dets, rects) {
            XCTAssertEqual(px(img, r.x1 - 1, r.y1 - 1), Palette.color(track: d.trackID!), "label of #\(d.trackID!)")
        }
    }
}
