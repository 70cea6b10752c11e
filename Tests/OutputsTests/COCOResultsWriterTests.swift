import FPNCore
import Foundation
import Outputs
import StagePipeline
import TestSupport
import XCTest

final class COCOResultsWriterTests: XCTestCase {
    func testWritesAValidArrayOnlyOnClose() throws {
        let dir = TestPaths.temporaryDirectory("coco")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("res.json").path
        let w = try COCOResultsWriter(path: path)
        let mask = MaskRLE(rowMajor: [0, 1, 1, 1], height: 2, width: 2)
        let info = { (i: Int) in FrameInfo(index: i, pts: 0, wallTime: 0, width: 2, height: 2, source: "s") }
        try w.write(FrameResult(info: info(0), detections: [
            Detection(box: Box(x1: 1.234, y1: 2, x2: 11.5, y2: 22), score: 0.912345, classID: 18, className: "dog",
                      mask: mask),
            Detection(box: Box(x1: 0, y1: 0, x2: 1, y2: 1), score: 0.1, classID: 1, className: "person"),
        ]))
        try w.write(FrameResult(info: info(1)))
        try w.write(FrameResult(info: info(2), detections: [
            Detection(box: Box(x1: 5, y1: 5, x2: 6, y2: 9), score: 0.5, classID: 3, className: "car"),
        ]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "no half-written file at the final path")
        try w.close()
        try w.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))
        let arr = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                                as? [[String: Any]])
        XCTAssertEqual(arr.count, 3)
        XCTAssertEqual(arr.map { $0["image_id"] as? Int }, [0, 0, 2])
        XCTAssertEqual(arr[0]["category_id"] as? Int, 18)
        XCTAssertEqual(arr[0]["bbox"] as? [Double], [1.23, 2, 10.27, 20])
        XCTAssertEqual(arr[0]["score"] as? Double, 0.91234)
        let seg = try XCTUnwrap(arr[0]["segmentation"] as? [String: Any])
        XCTAssertEqual(seg["size"] as? [Int], [2, 2])
        XCTAssertEqual(try MaskRLE(cocoString: seg["counts"] as! String, height: 2, width: 2), mask)
        XCTAssertNil(arr[1]["segmentation"])
        XCTAssertEqual(w.count, 3)
    }

    func testEmptyResultsAndPipelineSink() throws {
        let dir = TestPaths.temporaryDirectory("coco-empty")
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("e.json").path
        let w = try COCOResultsWriter(path: path, imageID: { $0.index + 1 })
        let frames = (0..<3).map { FrameResult(info: FrameInfo(index: $0, pts: 0, wallTime: 0, width: 1, height: 1, source: "")) }
        try Pipeline.from(ArraySource(frames)).sink(COCOSink(w)).run()
        let arr = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [Any]
        XCTAssertEqual(arr?.count, 0)
    }

    func testUnwritableDirectoryNamesTheFile() {
        XCTAssertThrowsError(try COCOResultsWriter(path: "/nonexistent-dir/r.json")) { e in
            XCTAssertEqual("\(e)", "cannot open output '/nonexistent-dir/r.json': No such file or directory")
        }
    }
}
