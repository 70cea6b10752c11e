import FPNCore
import FPNStream
import Outputs
import Tensor
import Vision
import XCTest

/// Heatmaps of pyramid levels, the picture layout, and `--frames` lists.
final class PyramidVisualizerTests: XCTestCase {
    /// A level `[1, 2, 4, 5]` whose cell (x, y) holds channel values (x + 10 y, 2 (x + 10 y)).
    func level(stride: Int = 8) -> PyramidLevel {
        let t = Tensor(shape: [1, 2, 4, 5])
        t.withUnsafeMutableBufferPointer { p in
            for y in 0..<4 { for x in 0..<5 { p[y * 5 + x] = Float(x + 10 * y); p[20 + y * 5 + x] = Float(2 * (x + 10 * y)) } }
        }
        return PyramidLevel(name: "p3", stride: stride, features: t)
    }

    func geometry(resizedWidth: Int, resizedHeight: Int) -> TransformGeometry {
        var g = DetectionTransform(TransformConfig(resize: .none)).geometry(width: resizedWidth, height: resizedHeight)
        g.paddedWidth = 40
        g.paddedHeight = 32
        return g
    }

    func testHeatmapIsChannelRMSOverTheUnpaddedCells() {
        // Resized 33x20 at stride 8: ceil(33/8) = 5 columns, ceil(20/8) = 3 rows (row 3 sees only padding).
        let hm = LevelHeatmap(level: level(), geometry: geometry(resizedWidth: 33, resizedHeight: 20))
        XCTAssertEqual([hm.width, hm.height, hm.stride, hm.k], [5, 3, 8, 3])
        XCTAssertEqual(hm.name, "p3")
        for y in 0..<3 {
            for x in 0..<5 {
                let v = Float(x + 10 * y)
                XCTAssertEqual(hm.values[y * 5 + x], ((v * v + 4 * v * v) / 2).squareRoot(), accuracy: 1e-5)
            }
        }
        XCTAssertEqual(hm.range.min, 0)
        XCTAssertEqual(hm.range.max, (Float(24 * 24 * 5) / 2).squareRoot(), accuracy: 1e-4)
        // 32 wide: exactly 4 columns.
        XCTAssertEqual(LevelHeatmap(level: level(), geometry: geometry(resizedWidth: 32, resizedHeight: 32)).width, 4)
    }

    func testViridisEndsAndMidpoint() {
        XCTAssertTrue(Viridis.color(0) == (0x44, 0x01, 0x54))
        XCTAssertTrue(Viridis.color(1) == (0xfd, 0xe7, 0x25))
        XCTAssertTrue(Viridis.color(0.5) == (0x21, 0x91, 0x8c))
        XCTAssertTrue(Viridis.color(-3) == Viridis.color(0))
        XCTAssertTrue(Viridis.color(.nan) == Viridis.color(0))
    }

    /// A 200x120 grey frame; P2 (50x30 cells, value = column) and P3 (25x15 cells, 100 + column + row) over a
    /// 200x120 input; one detection (20, 20)-(60, 70) assigned to P3.
    func content() -> PyramidVisualizer.Content {
        let frame = RGBImage(width: 200, height: 120, pixels: [UInt8](repeating: 90, count: 200 * 120 * 3))
        let p2 = LevelHeatmap(name: "p2", stride: 4, width: 50, height: 30, values: (0..<1500).map { Float($0 % 50) })
        let p3 = LevelHeatmap(name: "p3", stride: 8, width: 25, height: 15,
                              values: (0..<375).map { Float(100 + $0 % 25 + $0 / 25) })
        let d = Detection(box: Box(x1: 20, y1: 20, x2: 60, y2: 70), score: 0.9, classID: 1, className: "person")
        return PyramidVisualizer.Content(frame: frame, heatmaps: [p2, p3], detections: [(d, 3)], inputWidth: 200,
                                         inputHeight: 120, caption: "frame 0", assignment: "rule")
    }

    func rgb(_ c: RGB) -> (UInt8, UInt8, UInt8) { (c.r, c.g, c.b) }

    func testLayoutPutsFrameAndLevelsInTheirCells() {
        let picture = PyramidVisualizer().render(content())
        // Cells of 100x60: frame top left, P2 and P3 in the column right of it, legend below three cell rows.
        XCTAssertEqual(picture.width, 300)
        XCTAssertGreaterThan(picture.height, 180)
        XCTAssertEqual(picture.height % 2, 0)
        XCTAssertTrue(picture[150, 100] == (90, 90, 90), "frame pixel away from the box")
        // The box's left edge on the frame is drawn in P3's colour.
        XCTAssertTrue(picture[20, 45] == rgb(PyramidVisualizer.color(level: 3)))
        // P2 tile (origin 200, 0): cell pixel (99, 59) shows input (199, 119) → column 49, the level's max; cell
        // pixel (10, 30) → input x 21 → column 5.
        XCTAssertTrue(picture[299, 59] == Viridis.color(1))
        XCTAssertTrue(picture[210, 30] == Viridis.color(5 / 49))
        // P3 tile (origin 200, 60): its last cell (24, 14) holds the max 138; the min is 100.
        XCTAssertTrue(picture[299, 119] == Viridis.color(1))
        XCTAssertTrue(picture[299, 90] == Viridis.color(Float(100 + 24 + 7 - 100) / 38))
        // Global: every level from 0 to the frame's largest value (138), so P2's 49 is dark.
        let global = PyramidVisualizer(normalization: .global).render(content())
        XCTAssertTrue(global[299, 59] == Viridis.color(49 / 138))
    }

    func testAssignedBoxIsDrawnOnItsLevelOnly() {
        let picture = PyramidVisualizer().render(content())
        let p3 = rgb(PyramidVisualizer.color(level: 3))
        // The box at half size on the P3 tile (origin 200, 60): (210, 70)-(230, 95), left edge x = 210.
        XCTAssertTrue(picture[210, 80] == p3)
        // Not on the P2 tile (origin 200, 0): the same place shows the heatmap.
        XCTAssertTrue(picture[210, 20] == Viridis.color(5 / 49))
    }

    func testAreaDownscaleAverages() {
        var img = RGBImage(width: 4, height: 2)
        for x in 0..<2 { for y in 0..<2 { img.pixels[(y * 4 + x) * 3] = 200 } }
        let small = img.areaDownscaled(width: 2, height: 1)
        XCTAssertEqual(small.pixels, [200, 0, 0, 0, 0, 0])
        let half = RGBImage(width: 2, height: 1, pixels: [100, 0, 0, 50, 0, 0]).areaDownscaled(width: 1, height: 1)
        XCTAssertEqual(half.pixels, [75, 0, 0])
    }

    func testFrameListParsing() throws {
        let l = try FrameList(parsing: "10,20,30-33")
        XCTAssertEqual(l.ranges, [10...10, 20...20, 30...33])
        XCTAssertEqual(l.count, 6)
        XCTAssertEqual(l.last, 33)
        XCTAssertTrue(l.contains(31))
        XCTAssertFalse(l.contains(21))
        XCTAssertEqual(l.description, "10,20,30-33")
        XCTAssertEqual(try FrameList(parsing: "100").ranges, [100...100])
        for bad in ["", "a", "5-3", "-1", "1,,2", "1-2-3", "2-"] {
            XCTAssertThrowsError(try FrameList(parsing: bad), bad) { e in
                XCTAssertTrue("\(e)".contains("--frames"), "\(e)")
            }
        }
    }
}
