import Foundation
import FPNCore
import Tensor

/// Ultralytics YOLO detect and segment exports (YOLOv8 / YOLO11 generation, `model.export(format="onnx")`):
/// layout checks, the file's metadata, letterbox geometry and decoding, as Ultralytics 8.4's predictor does it.
///
/// Outputs: `output0` `[1, 4 + C (+ M), N]` — per anchor the box centre x, centre y, width, height in network-input
/// pixels, C class scores (already sigmoid) and, for segment models, M mask coefficients; segment models add
/// `output1` `[1, M, H/4, W/4]` mask prototypes. Class ids are the model's 0-based indices.
public enum YOLO {
    public enum Task: String, Sendable { case detect, segment }

    /// What a model file is: task, classes, input size.
    public struct Layout: Sendable, Equatable {
        public var task: Task
        /// Class names by 0-based class index.
        public var names: [String]
        /// Mask coefficients per anchor (0 for detect).
        public var maskCount: Int
        /// Network input (height, width) from the file (`imgsz` metadata, else the declared input shape).
        public var inputHeight: Int, inputWidth: Int
    }

    /// Ultralytics' predictor defaults.
    public struct Options: Sendable, Equatable {
        /// Best class score must be strictly greater (Ultralytics `conf`, 0.25).
        public var score: Float = 0.25
        /// Class-aware NMS IoU (Ultralytics `iou`, 0.7): a box overlapping a kept one of its class by more is dropped.
        public var iou: Float = 0.7
        /// Kept after NMS (Ultralytics `max_det`, 300).
        public var maxDetections = 300
        public init() {}
    }

    /// The layouts the decoder accepts, for messages.
    static let expected = "expected an Ultralytics YOLO export: detect = one output [1, 4+classes, anchors]; "
        + "segment = [1, 4+classes+32, anchors] and prototypes [1, 32, H/4, W/4] (classes from the `names` metadata)"

    /// Reads the file's metadata and checks the output layout. Throws `ONNXError` naming the file and the expected
    /// layouts when the outputs are not a YOLO detect/segment head.
    public static func layout(of network: ONNXNetwork) throws -> Layout {
        let md = network.metadata
        func fail(_ m: String) -> ONNXError { ONNXError(file: network.file, .usage("\(m); \(expected)")) }
        var (h, w) = (640, 640)
        if let s = md["imgsz"], let size = parseImageSize(s) { (h, w) = size } else if let d = network.declaredInput, d.count == 4,
            case .value(let dh) = d[2], case .value(let dw) = d[3] { (h, w) = (Int(dh), Int(dw)) }
        let session = ONNXSession(network)
        let shapes = try session.outputShapes(forInput: network.inputShape(height: h, width: w))
        guard (1...2).contains(shapes.count), shapes[0].count == 3, shapes[0][0] == 1 else {
            throw fail("unknown output layout \(shapes)")
        }
        let channels = shapes[0][1]
        var maskCount = 0
        if shapes.count == 2 {
            let p = shapes[1]
            guard p.count == 4, p[0] == 1, p[2] == h / 4, p[3] == w / 4 else { throw fail("unknown output layout \(shapes)") }
            maskCount = p[1]
        }
        if let t = md["task"], t != "detect" && t != "segment" {
            throw fail("Ultralytics task '\(t)' is not supported (detect, segment)")
        }
        var names: [String]
        if let s = md["names"] {
            guard let parsed = parseNames(s) else { throw fail("metadata names is not a {index: 'name'} dictionary") }
            names = parsed
        } else {
            names = (0..<max(0, channels - 4 - maskCount)).map(String.init)
        }
        guard channels == 4 + names.count + maskCount, !names.isEmpty else {
            throw fail("output0 has \(channels) channels for \(names.count) classes and \(maskCount) mask coefficients")
        }
        return Layout(task: maskCount > 0 ? .segment : .detect, names: names, maskCount: maskCount,
                      inputHeight: h, inputWidth: w)
    }

    /// `names` metadata as Ultralytics writes it (a Python dict literal `{0: 'person', 1: "it's"}`), by index.
    static func parseNames(_ s: String) -> [String]? {
        var byIndex: [Int: String] = [:]
        var chars = Array(s.trimmingCharacters(in: .whitespaces)), i = 0
        func skipSpace() { while i < chars.count, chars[i] == " " || chars[i] == "," { i += 1 } }
        guard chars.first == "{", chars.last == "}" else { return nil }
        chars.removeFirst(); chars.removeLast()
        while true {
            skipSpace()
            if i >= chars.count { break }
            var digits = ""
            while i < chars.count, chars[i].isNumber { digits.append(chars[i]); i += 1 }
            guard let key = Int(digits), i < chars.count, chars[i] == ":" else { return nil }
            i += 1
            while i < chars.count, chars[i] == " " { i += 1 }
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { return nil }
            let quote = chars[i]; i += 1
            var name = ""
            while i < chars.count, chars[i] != quote {
                if chars[i] == "\\", i + 1 < chars.count { i += 1 }
                name.append(chars[i]); i += 1
            }
            guard i < chars.count else { return nil }
            i += 1
            byIndex[key] = name
        }
        guard !byIndex.isEmpty, Set(byIndex.keys) == Set(0..<byIndex.count) else { return nil }
        return (0..<byIndex.count).map { byIndex[$0]! }
    }

    /// `imgsz` metadata: `[640, 640]` (height, width) or `640`.
    static func parseImageSize(_ s: String) -> (Int, Int)? {
        let v = s.split(whereSeparator: { "[](), ".contains($0) }).compactMap { Int($0) }
        if v.count == 2, v[0] > 0, v[1] > 0 { return (v[0], v[1]) }
        if v.count == 1, v[0] > 0 { return (v[0], v[0]) }
        return nil
    }

    /// Ultralytics' `LetterBox` (auto=False, centred) for a source of `width` x `height` into the network input:
    /// the frame is scaled by `gain` to `resizedWidth` x `resizedHeight` and placed at (`left`, `top`), the rest
    /// is grey (114).
    public struct Letterbox: Sendable, Equatable {
        public var resizedWidth: Int, resizedHeight: Int, left: Int, top: Int

        public init(resizedWidth: Int, resizedHeight: Int, left: Int, top: Int) {
            (self.resizedWidth, self.resizedHeight, self.left, self.top) = (resizedWidth, resizedHeight, left, top)
        }

        public init(sourceWidth w: Int, sourceHeight h: Int, inputWidth iw: Int, inputHeight ih: Int) {
            let r = min(Double(ih) / Double(h), Double(iw) / Double(w))
            resizedWidth = max(Int((Double(w) * r).rounded(.toNearestOrEven)), 1)
            resizedHeight = max(Int((Double(h) * r).rounded(.toNearestOrEven)), 1)
            left = Int((Double(iw - resizedWidth) / 2 - 0.1).rounded(.toNearestOrEven))
            top = Int((Double(ih - resizedHeight) / 2 - 0.1).rounded(.toNearestOrEven))
        }
    }

    /// Detections in source pixels from the network outputs (`non_max_suppression` with one class per box,
    /// class-aware NMS by the 7680-pixel class offset, `scale_boxes`, and for segment models
    /// `process_mask_native`: masks at source resolution).
    public static func decode(_ outputs: [Tensor], layout: Layout, sourceWidth w: Int, sourceHeight h: Int,
                              options: Options) -> [Detection] {
        let out0 = outputs[0]
        let nc = layout.names.count, n = out0.shape[2]
        var boxes: [Box] = [], scores: [Float] = [], classes: [Int] = [], anchors: [Int] = []
        out0.withUnsafeBufferPointer { p in
            for a in 0..<n {
                var best = p[4 * n + a], cls = 0
                for c in 1..<max(nc, 1) where p[(4 + c) * n + a] > best { best = p[(4 + c) * n + a]; cls = c }
                guard best > options.score else { continue }
                let cx = p[a], cy = p[n + a], hw = p[2 * n + a] / 2, hh = p[3 * n + a] / 2
                boxes.append(Box(x1: cx - hw, y1: cy - hh, x2: cx + hw, y2: cy + hh))
                scores.append(best); classes.append(cls); anchors.append(a)
            }
        }
        let offset = boxes.indices.map { i -> Box in
            let o = Float(classes[i]) * 7680
            let b = boxes[i]
            return Box(x1: b.x1 + o, y1: b.y1 + o, x2: b.x2 + o, y2: b.y2 + o)
        }
        let keep = NMS.nms(boxes: offset, scores: scores, iouThreshold: options.iou).prefix(options.maxDetections)
        let lb = Letterbox(sourceWidth: w, sourceHeight: h, inputWidth: layout.inputWidth, inputHeight: layout.inputHeight)
        let gx = Float(Double(lb.resizedWidth) / Double(w)), gy = Float(Double(lb.resizedHeight) / Double(h))
        let (px, py) = (Float(lb.left), Float(lb.top))
        func clamp(_ v: Float, _ hi: Int) -> Float { min(max(v, 0), Float(hi)) }
        var detections = keep.map { i -> Detection in
            let b = boxes[i]
            let box = Box(x1: clamp((b.x1 - px) / gx, w), y1: clamp((b.y1 - py) / gy, h),
                          x2: clamp((b.x2 - px) / gx, w), y2: clamp((b.y2 - py) / gy, h))
            return Detection(box: box, score: scores[i], classID: classes[i], className: layout.names[classes[i]])
        }
        if layout.maskCount > 0, outputs.count > 1 {
            for (k, i) in keep.enumerated() {
                detections[k].mask = YOLOMasks.mask(outputs[0], anchor: anchors[i], classCount: nc, protos: outputs[1],
                                                    box: detections[k].box, sourceWidth: w, sourceHeight: h)
            }
        }
        return detections
    }
}
