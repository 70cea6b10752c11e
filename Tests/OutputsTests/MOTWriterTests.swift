import Foundation
import XCTest
import FPNCore
import TestSupport
@testable import Outputs

final class MOTWriterTests: XCTestCase {
    private func det(_ x1: Float, _ y1: Float, _ x2: Float, _ y2: Float, score: Float = 0.9, id: Int?) -> Detection {
        Detection(box: Box(x1: x1, y1: y1, x2: x2, y2: y2), score: score, classID: 1, className: "person", trackID: id)
    }

    func testWritesOneBasedFramesTLWHAndSkipsUntracked() throws {
        let dir = TestPaths.temporaryDirectory("mot")
        let path = dir.appendingPathComponent("out.txt").path
        let w = try MOTWriter(path: path)
        try w.write(frameIndex: 0, detections: [det(10, 20, 50, 100.5, score: 0.87654, id: 3),
                                                det(0, 0, 5, 5, id: nil)])
        try w.write(frameIndex: 1, detections: [])
        try w.write(frameIndex: 4, detections: [det(-2.25, 7, 8.125, 9, score: 1, id: 12), det(1, 1, 2, 2, id: 3)])
        try w.close()
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text, """
            1,3,10.00,20.00,40.00,80.50,0.8765,-1,-1,-1
            5,12,-2.25,7.00,10.38,2.00,1.0000,-1,-1,-1
            5,3,1.00,1.00,1.00,1.00,0.9000,-1,-1,-1

            """)
        XCTAssertThrowsError(try w.write(frameIndex: 5, detections: [det(0, 0, 1, 1, id: 1)]))
        try w.close()   // idempotent
    }

    func testLinesAreWholeAfterEachWrite() throws {
        let path = TestPaths.temporaryDirectory("mot").appendingPathComponent("live.txt").path
        let w = try MOTWriter(path: path)
        for f in 0..<20 {
            try w.write(frameIndex: f, detections: (0..<5).map { det(Float($0), 0, Float($0) + 10, 10, id: $0 + 1) })
            // A reader tailing the file sees only complete lines (no buffering inside the writer).
            let text = try String(contentsOfFile: path, encoding: .utf8)
            XCTAssertTrue(text.hasSuffix("\n"))
            XCTAssertEqual(text.split(separator: "\n").count, (f + 1) * 5)
        }
        try w.close()
    }

    func testFixedFormatting() {
        XCTAssertEqual(MOTWriter.fixed(0, 2), "0.00")
        XCTAssertEqual(MOTWriter.fixed(-0.004, 2), "0.00")
        XCTAssertEqual(MOTWriter.fixed(-0.006, 2), "-0.01")
        XCTAssertEqual(MOTWriter.fixed(1919.999, 2), "1920.00")
        XCTAssertEqual(MOTWriter.fixed(0.05, 4), "0.0500")
    }

    func testUncreatableFileNamesThePath() {
        XCTAssertThrowsError(try MOTWriter(path: "/nonexistent-dir/x/out.txt")) { error in
            XCTAssertEqual(String(describing: error),
                           "/nonexistent-dir/x/out.txt: cannot create MOT file: directory /nonexistent-dir/x does not exist")
        }
    }

    func testRoundTripThroughReader() throws {
        let path = TestPaths.temporaryDirectory("mot").appendingPathComponent("rt.txt").path
        let w = try MOTWriter(path: path)
        try w.write(frameIndex: 9, detections: [det(10, 20, 50, 100, score: 0.5, id: 7)])
        try w.close()
        let records = try MOTReader.read(path: path)
        XCTAssertEqual(records, [MOTRecord(frame: 10, id: 7, box: Box(x1: 10, y1: 20, x2: 50, y2: 100), score: 0.5)])
    }

    func testReaderAcceptsDetAndGTStylesAndRejectsGarbage() throws {
        let text = """
            # comment
            1,-1,10,20,30,40,0.9,-1,-1,-1
            2, 5, 1.5, 2.5, 3, 4, 1, 3, 0.8

            3 -1 0 0 10 10 0.25\r
            """
        let r = try MOTReader.parse(text, source: "d.txt")
        XCTAssertEqual(r.count, 3)
        XCTAssertEqual(r[0].detection.trackID, nil)
        XCTAssertEqual(r[0].box, Box(x1: 10, y1: 20, x2: 40, y2: 60))
        XCTAssertNil(r[0].classID)
        XCTAssertEqual(r[1].id, 5)
        XCTAssertEqual(r[1].classID, 3)
        XCTAssertEqual(r[2].score, 0.25)

        func error(_ text: String) -> String {
            do { _ = try MOTReader.parse(text, source: "d.txt"); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(error("1,-1,10,20,30,40,0.9\n1,-1,10,20,30"),
                       "d.txt:2: malformed MOT line: expected at least 7 columns (frame,id,x,y,w,h,conf), got 5")
        XCTAssertEqual(error("1,-1,10,abc,30,40,0.9"), "d.txt:1: malformed MOT line: column 4 is not a number: 'abc'")
        XCTAssertEqual(error("0,-1,10,20,30,40,0.9"), "d.txt:1: malformed MOT line: frame must be an integer ≥ 1, got 0")
        XCTAssertEqual(error("1,-1,10,20,-30,40,0.9"), "d.txt:1: malformed MOT line: negative width or height")
        XCTAssertThrowsError(try MOTReader.read(path: "/nonexistent/det.txt")) {
            XCTAssertEqual("\($0)", "/nonexistent/det.txt: cannot read MOT file: no such file")
        }
    }
}

extension MOTWriterTests {
    func testOversizedFileIsRefusedUnread() throws {
        // A sparse file: its size is checked, its bytes are never read.
        let url = TestPaths.temporaryDirectory("mot-limit").appendingPathComponent("det.txt")
        defer { try? FileManager.default.removeItem(at: url.deletingLastPathComponent()) }
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: nil))
        let h = try FileHandle(forWritingTo: url)
        try h.truncate(atOffset: UInt64(MOTReader.maxFileBytes) + 1)
        try h.close()
        XCTAssertThrowsError(try MOTReader.read(path: url.path)) { e in
            XCTAssertEqual("\(e)", "\(MOTFormatError.cannotRead(path: url.path, reason: "file of \(MOTReader.maxFileBytes + 1) bytes is larger than the limit of \(MOTReader.maxFileBytes)"))")
        }
    }
}
