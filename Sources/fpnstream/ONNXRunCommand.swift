import ArgumentParser
import Foundation
import ONNX
import Tensor

/// `fpnstream onnx-run`: runs an ONNX model on a raw float32 tensor and writes every output as raw float32.
/// Hidden: a tool for `scripts/parity onnx-*` and `scripts/bench-onnx`, not a user command.
struct ONNXRunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "onnx-run",
        abstract: "Run an ONNX model on a raw float32 NCHW tensor; write outputs as raw float32 (parity tool).",
        shouldDisplay: false
    )

    @Argument(help: "The .onnx model file.")
    var model: String

    @Option(help: "Raw little-endian float32 input tensor (NCHW).")
    var input: String

    @Option(help: "Input shape, e.g. 1x3x192x224.")
    var shape: String

    @Option(help: "Directory for output<k>.f32 files and outputs.json (shapes).")
    var outputDir: String

    @Option(help: "Also decode CenterFace detections with this heatmap threshold into detections.json.")
    var centerfaceThreshold: Float?

    @Option(help: "Also decode YOLO detections (and masks) for a source frame of this WxH into detections.json (score 0.25, IoU 0.7 unless --yolo-score/--yolo-iou).")
    var yoloSource: String?
    @Option(help: "YOLO score threshold for --yolo-source.")
    var yoloScore: Float?
    @Option(help: "YOLO NMS IoU for --yolo-source.")
    var yoloIou: Float?
    @Option(help: "Run the model this many times; outputs.json gets every run's time (run_ms) and the median.")
    var runs: Int = 1

    @Flag(help: "Print the fused steps.")
    var listSteps = false

    @Flag(help: "Print each step's time (last run) and the total per op kind.")
    var profile = false

    func run() throws {
        let dims = shape.split(separator: "x").compactMap { Int($0) }
        guard dims.count == 4, dims.allSatisfy({ $0 > 0 }) else { throw ValidationError("--shape must be NxCxHxW, got \(shape)") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        let network = try ONNXNetwork(contentsOf: URL(fileURLWithPath: model))
        if listSteps { for s in network.stepDescriptions { print(s) } }
        guard let data = FileManager.default.contents(atPath: input) else { throw ValidationError("cannot read --input \(input)") }
        let count = dims.reduce(1, *)
        guard data.count == count * 4 else {
            throw ValidationError("--input \(input) has \(data.count) bytes, shape \(shape) needs \(count * 4)")
        }
        let x = Tensor(shape: dims)
        x.withUnsafeMutableBufferPointer { dst in
            data.withUnsafeBytes { src in for i in 0..<count { dst[i] = src.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) } }
        }
        let session = ONNXSession(network)
        session.profile = profile
        var times: [Double] = []
        var outputs: [Tensor] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            outputs = try session.run(x)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        if profile {
            var byKind: [String: Double] = [:]
            for (d, ms) in zip(network.stepDescriptions, session.stepMilliseconds) {
                print(String(format: "%8.2f ms  %@", ms, d))
                let kind = d.split(separator: ":").last!.split(separator: " ").prefix(1).joined()
                byKind[kind, default: 0] += ms
            }
            for (k, ms) in byKind.sorted(by: { $0.value > $1.value }) { print(String(format: "%8.2f ms  total %@", ms, k)) }
        }
        try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
        var manifest: [[String: Any]] = []
        for (k, (name, t)) in zip(network.outputNames, outputs).enumerated() {
            let file = "output\(k).f32"
            let bytes = t.withUnsafeBufferPointer { Data(buffer: $0) }
            try bytes.write(to: URL(fileURLWithPath: outputDir).appendingPathComponent(file))
            manifest.append(["name": name, "shape": t.shape, "file": file])
        }
        let median = times.sorted()[times.count / 2]
        let summary: [String: Any] = ["outputs": manifest, "median_ms": median, "run_ms": times,
                                      "steps": network.stepDescriptions.count]
        try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: outputDir).appendingPathComponent("outputs.json"))
        if let threshold = centerfaceThreshold {
            let faces = CenterFace.decode(outputs, inputWidth: dims[3], inputHeight: dims[2],
                                          options: .init(threshold: threshold))
            let list: [[String: Any]] = faces.map { d in
                ["box": [d.box.x1, d.box.y1, d.box.x2, d.box.y2].map(Double.init), "score": Double(d.score),
                 "landmarks": (d.landmarks ?? []).flatMap { [Double($0.x), Double($0.y)] }]
            }
            try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted])
                .write(to: URL(fileURLWithPath: outputDir).appendingPathComponent("detections.json"))
        }
        if let yoloSource { try writeYOLO(network, outputs, source: yoloSource) }
    }

    /// `YOLO.decode` of the outputs for a source frame `WxH`, as detections.json (boxes in source pixels,
    /// masks as COCO RLE strings).
    func writeYOLO(_ network: ONNXNetwork, _ outputs: [Tensor], source: String) throws {
        let wh = source.split(separator: "x").compactMap { Int($0) }
        guard wh.count == 2, wh.allSatisfy({ $0 > 0 }) else { throw ValidationError("--yolo-source must be WxH, got \(source)") }
        let layout = try YOLO.layout(of: network)
        var options = YOLO.Options()
        if let s = yoloScore { options.score = s }
        if let i = yoloIou { options.iou = i }
        let found = YOLO.decode(outputs, layout: layout, sourceWidth: wh[0], sourceHeight: wh[1], options: options)
        let list: [[String: Any]] = found.map { d in
            var o: [String: Any] = ["box": [d.box.x1, d.box.y1, d.box.x2, d.box.y2].map(Double.init),
                                    "score": Double(d.score), "class": d.classID]
            if let m = d.mask { o["mask"] = m.cocoString }
            return o
        }
        try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted])
            .write(to: URL(fileURLWithPath: outputDir).appendingPathComponent("detections.json"))
    }
}
