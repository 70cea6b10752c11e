import ArgumentParser
import FPNCore
import Foundation
import Tensor
import Vision

/// `fpnstream detect-frames`: runs a detector on RGB frames stored in a safetensors file and writes the detections as
/// JSON, for parity checks against torchvision (`scripts/parity maskrcnn` etc.). Hidden: a developer tool.
struct DetectFrames: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detect-frames",
        abstract: "Run a detector on frames from a safetensors file (`frame.K`: [H, W, 3] RGB 0...255) and write JSON.",
        shouldDisplay: false)

    @Option(help: "Detector weights (.safetensors written by scripts/convert-torchvision).")
    var model: String

    @Option(help: "Safetensors file with `frame.K` tensors.")
    var frames: String

    @Option(help: "Output JSON file.")
    var out: String

    func run() throws {
        let detector = try DetectorLoader.load(contentsOf: URL(fileURLWithPath: model))
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: frames))
        let keys = file.keys.filter { $0.hasPrefix("frame.") }.sorted {
            (Int($0.dropFirst(6)) ?? 0) < (Int($1.dropFirst(6)) ?? 0)
        }
        guard !keys.isEmpty else { throw ValidationError("'\(frames)' has no `frame.K` tensors") }
        let state = DetectorState()
        var docs: [[String: Any]] = []
        var seconds = 0.0
        for key in keys {
            let t = try file.tensor(key)
            guard t.rank == 3, t.shape[2] == 3 else { throw ValidationError("\(key) must be [H, W, 3], got \(t.shape)") }
            let image = RGBImage(width: t.shape[1], height: t.shape[0],
                                 pixels: t.array.map { UInt8(clamping: Int($0.rounded())) })
            let t0 = Benchmark.now()
            let dets = detector.detect(image, state: state)
            seconds += Benchmark.now() - t0
            docs.append([
                "frame": Int(key.dropFirst(6)) ?? 0, "width": image.width, "height": image.height,
                "detections": dets.map { d -> [String: Any] in
                    var o: [String: Any] = ["box": [d.box.x1, d.box.y1, d.box.x2, d.box.y2].map(Double.init),
                                            "score": Double(d.score), "label": d.classID, "name": d.className]
                    if let m = d.mask { o["mask"] = m.counts.map(Int.init) }
                    if let kps = d.keypoints {
                        o["keypoints"] = kps.map { [Double($0.x), Double($0.y), Double($0.visibility)] }
                        o["keypoint_scores"] = kps.map { Double($0.score) }
                    }
                    return o
                },
            ])
            FileHandle.standardError.write(Data("detect-frames: \(key): \(dets.count) detections\n".utf8))
        }
        let doc: [String: Any] = ["architecture": detector.config.architecture, "frames": docs,
                                  "swift_seconds_per_frame": seconds / Double(keys.count)]
        let data = try JSONSerialization.data(withJSONObject: doc)
        try data.write(to: URL(fileURLWithPath: out))
    }
}
