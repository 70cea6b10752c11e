import FPNCore
import Foundation
@testable import MediaIO
import TestSupport
import XCTest

/// Writes frames with VideoWriter and reads them back with ffprobe (independent reader) and VideoDecoder.
final class WriterTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = TestPaths.temporaryDirectory("writer") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Frame `i`: a solid colour that changes with i (so a dropped or reordered frame changes what is read back).
    func colour(_ i: Int) -> (UInt8, UInt8, UInt8) {
        (UInt8(40 + (i * 37) % 180), UInt8(200 - (i * 23) % 150), UInt8(60 + (i * 11) % 120))
    }

    func solid(_ w: Int, _ h: Int, _ c: (UInt8, UInt8, UInt8)) -> RGBImage {
        var img = RGBImage(width: w, height: h)
        for o in stride(from: 0, to: img.pixels.count, by: 3) {
            img.pixels[o] = c.0; img.pixels[o + 1] = c.1; img.pixels[o + 2] = c.2
        }
        return img
    }

    func testMP4H264RoundTrip() throws {
        let path = dir.appendingPathComponent("out.mp4").path
        let writer = try VideoWriter(location: path, size: PixelSize(width: 160, height: 120), frameRate: Rational(10, 1))
        XCTAssertEqual(writer.encoderName, "libx264")
        XCTAssertNil(writer.note)
        for i in 0..<20 { try writer.write(solid(160, 120, colour(i)), pts: 5.0 + Double(i) / 10) }
        try writer.finish()
        try writer.finish()  // idempotent
        XCTAssertEqual(writer.framesWritten, 20)

        XCTAssertEqual(try ExternalTools.ffprobe(path, section: "stream", entry: "codec_name"), "h264")
        XCTAssertEqual(try ExternalTools.ffprobe(path, section: "stream", entry: "pix_fmt"), "yuv420p")
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(path), 20)
        XCTAssertEqual(Double(try ExternalTools.ffprobe(path, section: "format", entry: "duration") ?? "") ?? 0, 2.0, accuracy: 0.001)
        XCTAssertEqual(try ExternalTools.ffprobe(path, section: "stream", entry: "r_frame_rate"), "10/1")

        let decoder = try VideoDecoder(location: path)
        var n = 0
        while let f = decoder.nextFrame() {
            XCTAssertEqual(f.info.pts, Double(n) / 10, accuracy: 1e-6)  // starts at 0, source spacing kept
            let p = f.image[80, 60], c = colour(n)
            XCTAssertEqual(Int(p.r), Int(c.0), accuracy: 6, "frame \(n)")
            XCTAssertEqual(Int(p.g), Int(c.1), accuracy: 6, "frame \(n)")
            XCTAssertEqual(Int(p.b), Int(c.2), accuracy: 6, "frame \(n)")
            n += 1
        }
        XCTAssertEqual(n, 20)
    }

    /// Irregular source timestamps (a gap, a repeat) survive: gaps stay, repeats move one tick forward.
    func testKeepsSourceTimestampsInSourceTimeBase() throws {
        let path = dir.appendingPathComponent("vfr.mkv").path
        let writer = try VideoWriter(location: path, size: PixelSize(width: 64, height: 48), frameRate: Rational(25, 1),
                                     timeBase: Rational(1, 1000))
        let times = [0.0, 0.04, 0.08, 0.5, 0.54, 0.54]
        for (i, t) in times.enumerated() { try writer.write(solid(64, 48, colour(i)), pts: t) }
        try writer.finish()
        let read = try ExternalTools.ffprobeFrameTimes(path)
        XCTAssertEqual(read.count, 6)
        let expected = [0.0, 0.04, 0.08, 0.5, 0.54, 0.541]
        for (r, e) in zip(read, expected) { XCTAssertEqual(r, e, accuracy: 1e-6) }
    }

    func testOddSizeIsCroppedToEven() throws {
        let path = dir.appendingPathComponent("odd.mkv").path
        let writer = try VideoWriter(location: path, size: PixelSize(width: 161, height: 121), frameRate: Rational(10, 1))
        XCTAssertEqual(writer.encodedSize, PixelSize(width: 160, height: 120))
        for i in 0..<3 { try writer.write(solid(161, 121, colour(i)), pts: nil) }
        try writer.finish()
        XCTAssertEqual(try ExternalTools.ffprobe(path, section: "stream", entry: "width"), "160")
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(path), 3)
    }

    func testFallbackEncoderWhenPreferredIsMissing() throws {
        let path = dir.appendingPathComponent("fallback.mp4").path
        var options = EncoderOptions()
        options.candidates = ["libnotthere", "mpeg4"]
        let writer = try VideoWriter(location: path, size: PixelSize(width: 64, height: 48), frameRate: Rational(10, 1),
                                     options: options)
        XCTAssertEqual(writer.encoderName, "mpeg4")
        XCTAssertEqual(writer.note, "libnotthere not available; using mpeg4")
        for i in 0..<10 { try writer.write(solid(64, 48, colour(i)), pts: Double(i) / 10) }
        try writer.finish()
        XCTAssertEqual(try ExternalTools.ffprobe(path, section: "stream", entry: "codec_name"), "mpeg4")
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(path), 10)
    }

    func testMPEGTSForStreamLocations() {
        XCTAssertEqual(VideoWriter.resolve(location: "-", format: nil).url, "pipe:1")
        XCTAssertEqual(VideoWriter.resolve(location: "-", format: nil).format, "mpegts")
        XCTAssertEqual(VideoWriter.resolve(location: "udp://239.0.0.1:1234", format: nil).format, "mpegts")
        XCTAssertNil(VideoWriter.resolve(location: "out.mp4", format: nil).format)
        XCTAssertEqual(VideoWriter.resolve(location: "out.bin", format: "matroska").format, "matroska")
    }

    /// Dropping an unfinished writer still writes the trailer (the last-resort path on unexpected exits).
    func testDeinitFinalizes() throws {
        let path = dir.appendingPathComponent("dropped.mp4").path
        do {
            let writer = try VideoWriter(location: path, size: PixelSize(width: 64, height: 48), frameRate: Rational(10, 1))
            for i in 0..<7 { try writer.write(solid(64, 48, colour(i)), pts: Double(i) / 10) }
        }
        XCTAssertEqual(try ExternalTools.ffprobeFrameCount(path), 7)
    }

    func testUnwritableOutputNamesIt() throws {
        let blocker = dir.appendingPathComponent("file.txt")
        try Data("x".utf8).write(to: blocker)
        let path = blocker.appendingPathComponent("out.mp4").path  // a path under a regular file: ENOTDIR
        XCTAssertThrowsError(try VideoWriter(location: path, size: PixelSize(width: 64, height: 48),
                                             frameRate: Rational(10, 1))) { error in
            guard case .outputOpenFailed(let o, let reason)? = error as? MediaIOError else { return XCTFail("\(error)") }
            XCTAssertEqual(o, path)
            XCTAssertTrue(reason.lowercased().contains("not a directory"), reason)
        }
    }

    func testUnknownContainerAndEncoder() {
        let p = dir.appendingPathComponent("out.unknownext").path
        XCTAssertThrowsError(try VideoWriter(location: p, size: PixelSize(width: 64, height: 48), frameRate: Rational(10, 1))) {
            guard case .outputOpenFailed(let o, _)? = $0 as? MediaIOError else { return XCTFail("\($0)") }
            XCTAssertEqual(o, p)
        }
        let q = dir.appendingPathComponent("x.mp4").path
        XCTAssertThrowsError(try VideoWriter(location: q, size: PixelSize(width: 64, height: 48), frameRate: Rational(10, 1),
                                             options: EncoderOptions(encoder: "nosuchenc"))) {
            XCTAssertEqual($0 as? MediaIOError, .encoderNotFound(output: q, tried: ["nosuchenc"]))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: q))
    }

    /// A frame of another size (live resolution change) is scaled to the output size, not an error.
    func testOtherFrameSizesAreScaled() throws {
        let path = dir.appendingPathComponent("size.mkv").path
        let writer = try VideoWriter(location: path, size: PixelSize(width: 64, height: 48), frameRate: Rational(10, 1))
        try writer.write(solid(64, 48, colour(0)), pts: 0)
        var half = solid(32, 24, (250, 10, 10))
        for y in 0..<24 { for x in 16..<32 { half[x, y] = (10, 10, 250) } }
        try writer.write(half, pts: 0.1)
        try writer.finish()
        XCTAssertThrowsError(try writer.write(half, pts: 0.2))  // finished
        let decoder = try VideoDecoder(location: path)
        _ = decoder.nextFrame()
        let f = try XCTUnwrap(decoder.nextFrame())
        XCTAssertEqual(f.image.width, 64)
        XCTAssertGreaterThan(f.image[8, 24].r, 200)   // left half red
        XCTAssertGreaterThan(f.image[56, 24].b, 200)  // right half blue
        XCTAssertLessThan(f.image[56, 24].r, 60)
    }
}
