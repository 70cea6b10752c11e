import FPNCore
import Foundation
import TestSupport
import Vision
import XCTest

/// Post-processing ops against torch/torchvision outputs stored in `Tests/Fixtures/ops/ops.json`
/// (written by `scripts/parity ops --write-fixtures`, i.e. scripts/py/fixtures_ops.py).
final class OpsParityTests: XCTestCase {
    static let doc: [String: Any]? = {
        let url = TestPaths.fixtures.appendingPathComponent("ops/ops.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }()

    func section(_ name: String) throws -> [[String: Any]] {
        let doc = try XCTUnwrap(Self.doc, "Tests/Fixtures/ops/ops.json missing or unreadable")
        return try XCTUnwrap(doc[name] as? [[String: Any]], "no section \(name)")
    }

    func testAnchorsMatchTorchvision() throws {
        let cases = try section("anchors")
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let name = c["name"] as! String
            let sizes = (c["sizes"] as! [[Double]]).map { $0.map(Float.init) }
            let ratios = (c["ratios"] as! [[Double]]).map { $0.map(Float.init) }
            let gen = AnchorGenerator(sizes: sizes, aspectRatios: ratios)
            switch name {
            case "rcnn", "rcnn_odd": XCTAssertEqual(gen, .rcnn)
            case "retinanet": XCTAssertEqual(gen, .retinaNet)
            case "fcos": XCTAssertEqual(gen, .fcos)
            default: XCTFail("unknown case \(name)")
            }
            let cells = c["cells"] as! [[String: Any]]
            for (l, cell) in cells.enumerated() {
                XCTAssertEqual(flatten(gen.cellAnchors(level: l)), try F32(cell).values, "\(name) cell \(l)")
            }
            let padded = c["padded"] as! [Int]
            let grids = c["grids"] as! [[Int]]
            var all: [Box] = []
            for (l, g) in grids.enumerated() {
                all += gen.anchors(level: l, gridHeight: g[0], gridWidth: g[1],
                                   paddedHeight: padded[0], paddedWidth: padded[1])
            }
            XCTAssertEqual(flatten(all), try F32(c["anchors"]).values, "\(name) grid anchors")
        }
        // torch.round is half-to-even: RetinaNet's 161 (= int(128 * 2^(1/3))) at ratio 1 gives ±80.5 → ±80,
        // 203 gives ±101.5 → ±102 (rounding half away from zero would give 81 and 102).
        let cells = AnchorGenerator.retinaNet.cellAnchors(level: 2)
        XCTAssertEqual(cells[4], Box(x1: -80, y1: -80, x2: 80, y2: 80))
        XCTAssertEqual(cells[5], Box(x1: -102, y1: -102, x2: 102, y2: 102))
    }

    func testBoxCoderMatchesTorchvision() throws {
        for c in try section("coder") {
            let ref = boxes(try F32(c["reference"]).values)
            let deltas = try F32(c["deltas"]).values
            let want = try F32(c["decoded"]).values
            var got: [Box] = []
            if c["linear"] as? Bool == true {
                let coder = BoxLinearCoder()
                for i in 0..<ref.count {
                    got.append(coder.decode(deltas[4 * i], deltas[4 * i + 1], deltas[4 * i + 2], deltas[4 * i + 3],
                                            reference: ref[i]))
                }
            } else {
                let w = (c["weights"] as! [Double]).map(Float.init)
                let coder = BoxCoder(weights: (w[0], w[1], w[2], w[3]))
                deltas.withUnsafeBufferPointer { d in
                    for i in 0..<ref.count { got.append(coder.decode(d, at: i, reference: ref[i])) }
                }
            }
            assertClose(flatten(got), want, relTol: 2e-6, "decode \(c["weights"] ?? "linear")")
        }
    }

    func testNMSMatchesTorchvision() throws {
        var kinds: [String] = []
        for c in try section("nms") {
            let kind = c["kind"] as! String
            kinds.append(kind)
            let keep = c["keep"] as! [Int]
            switch kind {
            case "nms":
                let got = NMS.nms(boxes: boxes(try F32(c["boxes"]).values), scores: try F32(c["scores"]).values,
                                  iouThreshold: Float(c["iou"] as! Double))
                XCTAssertEqual(got, keep, "nms @\(c["iou"]!)")
            case "batched":
                let got = NMS.batched(boxes: boxes(try F32(c["boxes"]).values), scores: try F32(c["scores"]).values,
                                      idxs: c["idxs"] as! [Int], iouThreshold: Float(c["iou"] as! Double))
                XCTAssertEqual(got, keep, "batched NMS with \(keep.count) kept")
            case "topk":
                XCTAssertEqual(NMS.topK(try F32(c["values"]).values, c["k"] as! Int), keep)
            default:
                XCTFail("unknown kind \(kind)")
            }
        }
        XCTAssertEqual(kinds, ["nms", "nms", "nms", "batched", "batched", "topk"])
    }

    /// `NMS.nms` against the plain greedy loop (boxes indexed through the stable score order) on random clusters
    /// with tied scores, zero-area, identical and NaN-cornered boxes, 1 to 1000 boxes.
    func testNMSMatchesTheGreedyLoopOnRandomBoxes() {
        var rng = TestRandom(seed: 31)
        func greedy(_ b: [Box], _ s: [Float], _ t: Float) -> [Int] {
            let order = NMS.sortedDescending(s)
            var sup = [Bool](repeating: false, count: b.count), keep: [Int] = []
            for (oi, i) in order.enumerated() where !sup[i] {
                keep.append(i)
                let ai = (b[i].x2 - b[i].x1) * (b[i].y2 - b[i].y1)
                for j in order[(oi + 1)...] where !sup[j] {
                    let w = max(0, min(b[i].x2, b[j].x2) - max(b[i].x1, b[j].x1))
                    let h = max(0, min(b[i].y2, b[j].y2) - max(b[i].y1, b[j].y1))
                    let aj = (b[j].x2 - b[j].x1) * (b[j].y2 - b[j].y1)
                    if w * h / (ai + aj - w * h) > t { sup[j] = true }
                }
            }
            return keep
        }
        for n in [1, 2, 3, 17, 300, 1000] {
            var boxes: [Box] = [], scores: [Float] = []
            for i in 0..<n {
                let cx = Float(rng.uniform(0, 200)), cy = Float(rng.uniform(0, 150))
                let w = Float(rng.uniform(0, 60)), h = i % 13 == 5 ? 0 : Float(rng.uniform(1, 60))
                boxes.append(i % 29 == 7 && i > 0 ? boxes[i - 1]
                             : Box(x1: cx, y1: cy, x2: i % 31 == 11 ? .nan : cx + w, y2: cy + h))
                scores.append(Float(rng.int(50)) / 50)   // many ties
            }
            for t: Float in [0.3, 0.5, 0.7] {
                XCTAssertEqual(NMS.nms(boxes: boxes, scores: scores, iouThreshold: t), greedy(boxes, scores, t), "n \(n) iou \(t)")
            }
        }
    }

    func testRoIAlignMatchesTorchvision() throws {
        for c in try section("roialign") where c["kind"] as? String == "single" {
            let feat = try F32(c["feature"])
            let bx = boxes(try F32(c["boxes"]).values)
            let size = c["size"] as! Int
            let scale = Float(c["scale"] as! Double)
            let (ch, h, w) = (feat.shape[0], feat.shape[1], feat.shape[2])
            var got = [Float](repeating: 0, count: bx.count * ch * size * size)
            var last = [Float](repeating: .nan, count: feat.values.count)
            feat.values.withUnsafeBufferPointer { f in
                last.withUnsafeMutableBufferPointer { RoIAlign.channelsLast(f, channels: ch, height: h, width: w, into: $0) }
            }
            // The transpose: element (c, y, x) of the channels-first map at (y * w + x) * ch + c.
            for (c, y, x) in [(0, 0, 0), (ch - 1, h - 1, w - 1), (ch / 2, h / 3, w - 2)] {
                XCTAssertEqual(last[(y * w + x) * ch + c], feat.values[(c * h + y) * w + x])
            }
            last.withUnsafeBufferPointer { f in
                got.withUnsafeMutableBufferPointer { o in
                    for (i, b) in bx.enumerated() {
                        let per = ch * size * size
                        RoIAlign.pool(channelsLast: f, channels: ch, height: h, width: w, box: b, spatialScale: scale,
                                      pooledHeight: size, pooledWidth: size, samplingRatio: 2,
                                      output: UnsafeMutableBufferPointer(rebasing: o[(i * per)..<((i + 1) * per)]))
                    }
                }
            }
            assertClose(got, try F32(c["pooled"]).values, relTol: 0, absTol: 1e-6, "roi_align \(size)")
        }
    }

    func testMultiScaleRoIAlignMatchesTorchvision() throws {
        let c = try XCTUnwrap(try section("roialign").first { $0["kind"] as? String == "multi" })
        let feats = try (c["features"] as! [Any]).map { try F32($0) }
        let image = c["image"] as! [Int]
        let bx = boxes(try F32(c["boxes"]).values)
        let pooler = MultiScaleRoIAlign(outputSize: 7)
        XCTAssertEqual(bx.map { pooler.levelIndex(of: $0, minLevel: 2, maxLevel: 5) }, c["levels"] as! [Int])
        // A 112x112 box sits exactly on the 2^-1 boundary: +1e-6 puts it on level 3 (index 1), 111.9 stays on 2.
        XCTAssertEqual(pooler.levelIndex(of: Box(x1: 0, y1: 0, x2: 112, y2: 112), minLevel: 2, maxLevel: 5), 1)
        let ch = feats[0].shape[0]
        let arrays = feats.map { $0.values }
        let got: [Float] = withBuffers(arrays) { bufs in
            pooler(features: zip(bufs, feats).map { ($0, $1.shape[1], $1.shape[2]) }, channels: ch, boxes: bx,
                   imageHeight: image[0], imageWidth: image[1])
        }
        assertClose(got, try F32(c["pooled"]).values, relTol: 0, absTol: 1e-6, "MultiScaleRoIAlign")
    }

    func testPasteMasksMatchesTorchvision() throws {
        let c = try XCTUnwrap(try section("paste").first)
        let masks = try F32(c["masks"]).values
        let bx = boxes(try F32(c["boxes"]).values)
        let image = c["image"] as! [Int]
        let want = try F32(c["pasted"]).values
        let plane = image[0] * image[1]
        var nonEmpty = 0
        for (i, b) in bx.enumerated() {
            let pasted = masks.withUnsafeBufferPointer {
                MaskPaste.paste(mask: UnsafeBufferPointer(rebasing: $0[(i * 784)..<((i + 1) * 784)]), size: 28,
                                box: b, imageHeight: image[0], imageWidth: image[1])
            }
            let ref = Array(want[(i * plane)..<((i + 1) * plane)])
            assertClose(pasted.fullImage(), ref, relTol: 0, absTol: 1e-6, "paste \(i)")
            // Binary mask at > 0.5, as RLE, equals thresholding torch's soft mask (no value is within 1e-6 of 0.5).
            let bin = ref.map { $0 > 0.5 ? UInt8(1) : 0 }
            XCTAssertFalse(ref.contains { abs($0 - 0.5) < 1e-6 })
            XCTAssertEqual(pasted.rle(threshold: 0.5), MaskRLE(rowMajor: bin, height: image[0], width: image[1]),
                           "rle \(i)")
            if bin.contains(1) { nonEmpty += 1 }
        }
        XCTAssertGreaterThanOrEqual(nonEmpty, 5)
    }

    /// A pasted mask's RLE equals the row-major RLE of its full image thresholded, on random masks with many runs
    /// per column: boxes inside the image, over its edges and outside it, thresholds that most and few values pass
    /// (outside the region every pixel is background, as a probability of 0).
    func testPastedRLEEqualsTheFullImageThresholded() {
        var rng = TestRandom(seed: 37)
        let h = 37, w = 53
        let boxes = [Box(x1: 3, y1: 4, x2: 40, y2: 30), Box(x1: -10, y1: -6, x2: 20, y2: 50), Box(x1: 30, y1: 20, x2: 80, y2: 60),
                     Box(x1: 60, y1: 40, x2: 90, y2: 70), Box(x1: 5, y1: 5, x2: 5.5, y2: 6)]
        for (i, box) in boxes.enumerated() {
            let mask = rng.floats(28 * 28, 0, 1)
            let pasted = mask.withUnsafeBufferPointer {
                MaskPaste.paste(mask: $0, size: 28, box: box, imageHeight: h, imageWidth: w)
            }
            for t: Float in [0.5, 0, 0.99] {
                let bin = pasted.fullImage().map { $0 > t ? UInt8(1) : 0 }
                XCTAssertEqual(pasted.rle(threshold: t), MaskRLE(rowMajor: bin, height: h, width: w), "box \(i) at \(t)")
            }
        }
    }

    // MARK: helpers

    struct F32 {
        var shape: [Int]
        var values: [Float]
        init(_ any: Any?) throws {
            let d = try XCTUnwrap(any as? [String: Any])
            shape = try XCTUnwrap(d["shape"] as? [Int])
            let data = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(d["f32"] as? String)))
            values = data.withUnsafeBytes { raw in
                (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.load(fromByteOffset: $0 * 4,
                                                                                            as: UInt32.self))) }
            }
            XCTAssertEqual(values.count, shape.reduce(1, *))
        }
    }

    func boxes(_ v: [Float]) -> [Box] {
        stride(from: 0, to: v.count, by: 4).map { Box(x1: v[$0], y1: v[$0 + 1], x2: v[$0 + 2], y2: v[$0 + 3]) }
    }

    func flatten(_ b: [Box]) -> [Float] { b.flatMap { [$0.x1, $0.y1, $0.x2, $0.y2] } }

    func assertClose(_ got: [Float], _ want: [Float], relTol: Float, absTol: Float = 1e-5, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        var worst: Float = 0, at = -1
        for i in 0..<min(got.count, want.count) {
            let err = abs(got[i] - want[i]) - relTol * abs(want[i])
            if !(err <= absTol) && (at < 0 || err > worst) { worst = err; at = i }
        }
        if at >= 0 {
            XCTFail("\(what): index \(at) got \(got[at]) want \(want[at])", file: file, line: line)
        }
    }

    func withBuffers<R>(_ arrays: [[Float]], _ body: ([UnsafeBufferPointer<Float>]) -> R) -> R {
        func go(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) -> R {
            if i == arrays.count { return body(acc) }
            return arrays[i].withUnsafeBufferPointer { go(i + 1, acc + [$0]) }
        }
        return go(0, [])
    }
}
