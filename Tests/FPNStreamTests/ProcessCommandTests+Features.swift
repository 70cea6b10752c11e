import FPNCore
import FPNStream
import Foundation
import MediaIO
import TestSupport
import XCTest

/// `fpnstream features INPUT --model M --visualize OUT`: PNGs and videos of the chosen frames, decoded back; bad
/// uses are one clear error and leave no file. (Extends `ProcessCommandTests` for its binary and scratch directory.)
extension ProcessCommandTests {
    func decodeFirst(_ file: String) throws -> RGBImage {
        let decoder = try VideoDecoder(location: file)
        defer { decoder.close() }
        return try XCTUnwrap(decoder.nextFrame(), "cannot decode \(file)").image
    }

    func testFeaturesPNGShowsTheChosenFrameBesideItsLevels() throws {
        let model = try PanopticModels.plainModel()
        let clip = try makeClip()
        let out = path("levels/f3.png")
        let r = try fpnstream(["features", clip, "--model", model, "--visualize", out, "--frames", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("features: frame 3:"), r.stderr)
        let picture = try decodeFirst(out)
        // 160x120 frame: cells of 80x60, three columns and three rows plus the legend.
        XCTAssertEqual(picture.width, 240)
        XCTAssertGreaterThan(picture.height, 180)
        // The frame block is frame 3 of the clip, except where boxes and labels are drawn.
        let decoder = try VideoDecoder(location: clip)
        defer { decoder.close() }
        var frame: Frame?
        for _ in 0...3 { frame = decoder.nextFrame() }
        let source = try XCTUnwrap(frame).image
        var same = 0
        for y in 0..<120 { for x in 0..<160 where picture[x, y] == source[x, y] { same += 1 } }
        XCTAssertGreaterThan(same, 160 * 120 / 2, "frame block differs from frame 3")
        // A level tile is a viridis heatmap, not the frame: its pixels are colours of the map.
        let tile = picture[230, 50]
        XCTAssertTrue(Viridis.table.contains { $0 == (tile.r, tile.g, tile.b) }, "\(tile)")
    }

    func testFeaturesVideoAndSeveralPNGs() throws {
        let model = try PanopticModels.plainModel()
        let clip = try makeClip()
        let video = path("levels.mp4")
        let r = try fpnstream(["features", clip, "--model", model, "--visualize", video, "--frames", "1,5-6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(video), 3)
        let png = path("many.png")
        let r2 = try fpnstream(["features", clip, "--model", model, "--visualize", png, "--frames", "2,4",
                                "--scale", "0.5"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: png))
        for n in ["many-000002.png", "many-000004.png"] {
            // --scale 0.5: an 80x60 frame, cells of 40x30.
            XCTAssertEqual(try decodeFirst(path(n)).width, 120, n)
        }
    }

    func testFeaturesBadUsesAreClearErrorsAndLeaveNoFile() throws {
        let model = try PanopticModels.plainModel()
        let clip = try makeClip()
        let png = path("x.png")
        let cases: [([String], Int32, String)] = [
            ([clip, "--model", model, "--visualize", png], 2, "PNG output needs --frames"),
            ([clip, "--model", model, "--visualize", png, "--frames", "5-3"], 2, "'5-3'"),
            ([clip, "--model", path("m.onnx"), "--visualize", png, "--frames", "1"], 2, "ONNX"),
            ([clip, "--model", path("missing.safetensors"), "--visualize", png, "--frames", "1"], 2, "missing.safetensors"),
            ([clip, "--model", model, "--visualize", png, "--frames", "3,100"], 1, "no frame 100"),
            ([clip, "--model", model, "--visualize", png, "--normalize", "max", "--frames", "1"], 2, "--normalize"),
            ([clip, "--visualize", png, "--frames", "1"], 2, "--model"),
            ([clip, "--model", model], 2, "--visualize"),
        ]
        for (args, status, text) in cases {
            let r = try fpnstream(["features"] + args)
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(text), "\(args): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: png), "\(args) left \(png)")
        }
        // Several frames with one missing: the PNG already written for frame 3 is removed too.
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x-000003.png")))
    }
}
