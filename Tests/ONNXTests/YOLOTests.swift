import FPNCore
import Foundation
import Tensor
import TestSupport
import XCTest
@testable import ONNX

/// The any-rank ops YOLO heads use, Ultralytics metadata and letterbox, and YOLO decoding on hand-made outputs.
final class YOLOTests: XCTestCase {
    private func network(_ b: ONNXBuilder) throws -> ONNXNetwork {
        try ONNXNetwork(model: try ONNXModel(bytes: b.serialized()))
    }

    /// Reshape [1,2,2,3] → [1,4,3], Transpose → [1,3,4], Softmax over the last axis, Split it 1+2 on axis 1 and
    /// Slice the second part's every other column, against values computed here.
    func testReshapeTransposeSoftmaxSplitSliceMatchReference() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 2, 2, 3]
        b.intConstant("shape", [1, -1, 3])
        b.node("Reshape", ["x", "shape"], "r")
        b.node("Transpose", ["r"], "t", [("perm", .ints([0, 2, 1]))])
        b.node("Softmax", ["t"], "s", [("axis", .int(-1))])
        b.intConstant("sizes", [1, 2])
        b.node("Split", ["s", "sizes"], outputs: ["a", "c"], [("axis", .int(1))])
        b.intConstant("starts", [0]); b.intConstant("ends", [Int64.max]); b.intConstant("axes", [2]); b.intConstant("steps", [2])
        b.node("Slice", ["c", "starts", "ends", "axes", "steps"], "d")
        b.outputs = ["a", "d"]
        let net = try network(b)
        let x = (0..<12).map { Float($0) * 0.25 - 1 }
        let outs = try ONNXSession(net).run(Tensor(shape: [1, 2, 2, 3], data: x))
        // r[0, i, j] = x[i*3 + j]; t[0, j, i] = r[0, i, j]; softmax over i (4 values) for each j.
        func softmaxRow(_ j: Int) -> [Float] {
            let v = (0..<4).map { Double(x[$0 * 3 + j]) }, m = v.max()!
            let e = v.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
            return e.map { Float($0 / s) }
        }
        XCTAssertEqual(outs[0].shape, [1, 1, 4])
        XCTAssertEqual(outs[1].shape, [1, 2, 2])
        for (got, want) in zip(outs[0].array, softmaxRow(0)) { XCTAssertEqual(got, want, accuracy: 1e-6) }
        let rows = [softmaxRow(1), softmaxRow(2)]
        let want = rows.flatMap { [$0[0], $0[2]] }
        for (got, w) in zip(outs[1].array, want) { XCTAssertEqual(got, w, accuracy: 1e-6) }
    }

    /// A rank-3 tensor times a per-position constant stays a broadcast (not an NCHW per-channel affine), and
    /// Unsqueeze/Squeeze/Flatten/Concat work on ranks other than 4.
    func testRank3BroadcastUnsqueezeConcatFlatten() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 2, 1, 3]
        b.intConstant("shape", [1, 2, 3])
        b.node("Reshape", ["x", "shape"], "r")                      // [1, 2, 3]
        b.constant("k", [1, 3], [1, 10, 100])
        b.node("Mul", ["r", "k"], "m")                              // [1, 2, 3]
        b.node("Concat", ["m", "r"], "c", [("axis", .int(-1))])     // [1, 2, 6]
        b.intConstant("ax", [0])
        b.node("Squeeze", ["c", "ax"], "q")                         // [2, 6]
        b.node("Unsqueeze", ["q", "ax"], "u")                       // [1, 2, 6]
        b.node("Flatten", ["u"], "f", [("axis", .int(2))])          // [2, 6]
        b.outputs = ["f"]
        let out = try ONNXSession(try network(b)).run(Tensor(shape: [1, 2, 1, 3], data: [1, 2, 3, 4, 5, 6]))[0]
        XCTAssertEqual(out.shape, [2, 6])
        XCTAssertEqual(out.array, [1, 20, 300, 1, 2, 3, 4, 50, 600, 4, 5, 6])
    }

    /// Attention-style MatMul of two runtime tensors ([1, 2, 3, 4] · [1, 1, 4, 5], batch broadcast) and of a
    /// runtime tensor with a constant, against a naive product.
    func testMatMulBroadcastsBatchesAndTakesAConstantSecondOperand() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 2, 3, 4]
        var rng = TestRNG(7)
        let w = rng.array(20)
        b.constant("w", [4, 5], w)
        b.node("Slice", ["x", "s0", "s1", "s2"], "first")            // [1, 1, 3, 4]: the first batch item
        b.intConstant("s0", [0]); b.intConstant("s1", [1]); b.intConstant("s2", [1])
        b.node("Transpose", ["first"], "ft", [("perm", .ints([0, 1, 3, 2]))])   // [1, 1, 4, 3]
        b.node("MatMul", ["x", "ft"], "p")                           // [1, 2, 3, 3]
        b.node("MatMul", ["x", "w"], "q")                            // [1, 2, 3, 5]
        b.outputs = ["p", "q"]
        let x = rng.array(24)
        let outs = try ONNXSession(try network(b)).run(Tensor(shape: [1, 2, 3, 4], data: x))
        XCTAssertEqual(outs[0].shape, [1, 2, 3, 3])
        XCTAssertEqual(outs[1].shape, [1, 2, 3, 5])
        for bi in 0..<2 { for i in 0..<3 {
            for j in 0..<3 {
                let ref = (0..<4).reduce(Float(0)) { $0 + x[(bi * 3 + i) * 4 + $1] * x[j * 4 + $1] }
                XCTAssertEqual(outs[0].array[(bi * 3 + i) * 3 + j], ref, accuracy: 1e-5)
            }
            for j in 0..<5 {
                let ref = (0..<4).reduce(Float(0)) { $0 + x[(bi * 3 + i) * 4 + $1] * w[$1 * 5 + j] }
                XCTAssertEqual(outs[1].array[(bi * 3 + i) * 5 + j], ref, accuracy: 1e-5)
            }
        } }
    }

    /// A 7x5 RGB image shrunk to 4x3 must give exactly the bytes `cv2.resize(img, (4, 3), INTER_LINEAR)` gives
    /// (opencv-python 5.1.0, through ultralytics 8.4.190's pins).
    func testLetterboxResizeIsBitExactWithOpenCV() {
        let src: [UInt8] = [248, 194, 190, 207, 147, 26, 237, 21, 245, 211, 239, 45, 5, 157, 159, 60, 54, 236, 109, 46,
                            199, 82, 32, 205, 36, 7, 134, 222, 57, 146, 8, 149, 14, 15, 22, 10, 144, 208, 24, 24, 7, 41,
                            11, 85, 59, 104, 225, 110, 226, 201, 8, 159, 26, 27, 163, 122, 33, 41, 201, 67, 70, 166, 228,
                            40, 50, 179, 0, 177, 137, 63, 13, 188, 255, 64, 94, 8, 8, 156, 25, 29, 157, 146, 190, 115,
                            219, 135, 39, 100, 237, 127, 72, 227, 168, 21, 73, 132, 16, 153, 140, 107, 80, 163, 61, 110, 47]
        let cv2: [UInt8] = [177, 125, 145, 221, 55, 190, 25, 124, 100, 83, 60, 153, 46, 138, 78, 218, 179, 10, 163, 110,
                            32, 59, 179, 168, 124, 148, 102, 73, 145, 168, 24, 100, 142, 86, 109, 104]
        XCTAssertEqual(OpenCVLinearResize.resize(RGBImage(width: 7, height: 5, pixels: src), width: 4, height: 3), cv2)
    }

    func testUltralyticsMetadataParsing() {
        XCTAssertEqual(YOLO.parseNames("{0: 'person', 1: \"it's\", 2: 'traffic light'}"), ["person", "it's", "traffic light"])
        XCTAssertNil(YOLO.parseNames("{0: 'a', 2: 'c'}"), "indices must be 0..<n")
        XCTAssertNil(YOLO.parseNames("['a', 'b']"))
        XCTAssertEqual(YOLO.parseImageSize("[480, 640]").map { [$0.0, $0.1] }, [480, 640])
        XCTAssertEqual(YOLO.parseImageSize("320").map { [$0.0, $0.1] }, [320, 320])
        XCTAssertNil(YOLO.parseImageSize("[]"))
    }

    /// Ultralytics' LetterBox numbers for vtest.avi (768x576) and an odd size into 640x640.
    func testLetterboxGeometryMatchesUltralytics() {
        XCTAssertEqual(YOLO.Letterbox(sourceWidth: 768, sourceHeight: 576, inputWidth: 640, inputHeight: 640),
                       YOLO.Letterbox(resizedWidth: 640, resizedHeight: 480, left: 0, top: 80))
        // 176x144: r = 640/176, height 523.6 -> 524, padding 116 -> top round(57.9) = 58.
        XCTAssertEqual(YOLO.Letterbox(sourceWidth: 176, sourceHeight: 144, inputWidth: 640, inputHeight: 640),
                       YOLO.Letterbox(resizedWidth: 640, resizedHeight: 524, left: 0, top: 58))
    }

    /// Three anchors: two overlapping boxes of class 1 (the weaker is suppressed), one of class 0 overlapping them
    /// (kept: NMS is per class), one below the threshold; boxes mapped back through the letterbox.
    func testDecodeKeepsBestPerClassAndMapsThroughLetterbox() {
        let n = 4
        // rows: cx, cy, w, h, score class 0, score class 1
        let rows: [[Float]] = [
            [100, 180, 40, 40, 0.1, 0.9],
            [102, 181, 40, 40, 0.2, 0.8],
            [101, 180, 40, 40, 0.6, 0.3],
            [300, 300, 10, 10, 0.2, 0.24],
        ]
        var data = [Float](repeating: 0, count: 6 * n)
        for a in 0..<n { for c in 0..<6 { data[c * n + a] = rows[a][c] } }
        let layout = YOLO.Layout(task: .detect, names: ["cat", "dog"], maskCount: 0, inputHeight: 640, inputWidth: 640)
        let found = YOLO.decode([Tensor(shape: [1, 6, n], data: data)], layout: layout, sourceWidth: 768, sourceHeight: 576,
                                options: .init())
        XCTAssertEqual(found.map(\.className), ["dog", "cat"])
        XCTAssertEqual(found.map(\.score), [0.9, 0.6])
        // 768x576 -> 640x480 at top 80: source = (input - (0, 80)) / (640/768).
        let g = Float(640.0 / 768.0)
        XCTAssertEqual(found[0].box.x1, 80 / g, accuracy: 1e-3)
        XCTAssertEqual(found[0].box.y1, (160 - 80) / g, accuracy: 1e-3)
        XCTAssertEqual(found[0].box.x2, 120 / g, accuracy: 1e-3)
        XCTAssertEqual(found[0].box.y2, (200 - 80) / g, accuracy: 1e-3)
    }

    /// An ONNX file whose outputs are not a YOLO head: the error names the file's layout and what was expected.
    func testUnknownOutputLayoutNamesTheExpectedLayouts() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 32, 32]
        b.node("Relu", ["x"], "y")
        b.outputs = ["y"]
        b.metadata = [("imgsz", "[32, 32]")]
        let net = try network(b)
        XCTAssertThrowsError(try YOLODetector(network: net)) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("unknown output layout [[1, 3, 32, 32]]"), m)
            XCTAssertTrue(m.contains("expected an Ultralytics YOLO export: detect = one output [1, 4+classes, anchors]"), m)
        }
    }

    /// A [1, 4+C, N] output whose channel count disagrees with the `names` metadata is refused with both numbers.
    func testClassCountMustMatchNames() throws {
        var b = ONNXBuilder()
        b.inputDims = [1, 3, 8, 8]
        b.intConstant("shape", [1, 6, -1])
        b.constant("w", [6, 3, 1, 1], (0..<18).map { Float($0) })
        b.node("Conv", ["x", "w"], "c")
        b.node("Reshape", ["c", "shape"], "y")
        b.outputs = ["y"]
        b.metadata = [("imgsz", "[8, 8]"), ("names", "{0: 'a', 1: 'b', 2: 'c'}"), ("task", "detect")]
        XCTAssertThrowsError(try YOLODetector(network: try network(b))) { e in
            XCTAssertTrue("\(e)".contains("output0 has 6 channels for 3 classes and 0 mask coefficients"), "\(e)")
        }
        b.metadata = [("imgsz", "[8, 8]"), ("names", "{0: 'a', 1: 'b'}"), ("task", "detect")]
        let d = try YOLODetector(network: try network(b))
        XCTAssertEqual(d.layout, YOLO.Layout(task: .detect, names: ["a", "b"], maskCount: 0, inputHeight: 8, inputWidth: 8))
    }
}
