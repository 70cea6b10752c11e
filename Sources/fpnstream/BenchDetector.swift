import ArgumentParser
import FPNCore
import Foundation
import Tensor
import Vision

/// `fpnstream bench detector`: full-frame detector time per frame (transform → backbone → heads → masks), median of
/// several runs on the same frame. `scripts/bench-detector` runs torchvision on the same weights and frame in the same
/// run and prints the ratio.
struct BenchDetector: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detector",
        abstract: "Detector time per frame (median) on frames from a safetensors file; see scripts/bench-detector.",
        discussion: """
            --frames holds `frame.K` tensors ([H, W, 3] RGB 0...255, float). The first frame is used. Weights are a \
            converted torchvision detector (scripts/convert-torchvision); the transform size comes from their \
            metadata unless --min-size/--max-size are given.

            Example:
              scripts/bench-detector maskrcnn   # weights and frames, torch and this, ratios
            """)

    @Option(help: "Detector weights (.safetensors).")
    var model: String

    @Option(help: "Safetensors file with `frame.K` tensors.")
    var frames: String

    @Option(help: "Timed runs (median reported).")
    var runs = 5

    @Option(help: "Untimed warm-up runs.")
    var warmup = 1

    @Option(help: "Override the transform's shorter-side size.")
    var minSize: Int?

    @Option(help: "Override the transform's longer-side limit.")
    var maxSize: Int?

    func validate() throws {
        guard runs >= 1, warmup >= 0 else { throw ValidationError("--runs must be >= 1 and --warmup >= 0") }
    }

    func run() throws {
        let url = URL(fileURLWithPath: model)
        let file = try SafeTensorsFile(url: url)
        var config = try DetectorConfig(metadata: file.metadata, file: url)
        if minSize != nil || maxSize != nil, case .shorterSide(let lo, let hi) = config.transform.resize {
            config.transform.resize = .shorterSide(min: minSize ?? lo, max: maxSize ?? hi)
        }
        let detector = try DetectorLoader.load(file: file, config: config)
        let frameFile = try SafeTensorsFile(url: URL(fileURLWithPath: frames))
        guard let key = frameFile.keys.first(where: { $0.hasPrefix("frame.") }) else {
            throw ValidationError("'\(frames)' has no `frame.K` tensors")
        }
        let t = try frameFile.tensor(key)
        guard t.rank == 3, t.shape[2] == 3 else { throw ValidationError("\(key) must be [H, W, 3], got \(t.shape)") }
        let image = RGBImage(width: t.shape[1], height: t.shape[0],
                             pixels: t.array.map { UInt8(clamping: Int($0.rounded())) })
        let g = DetectionTransform(config.transform).geometry(width: image.width, height: image.height)
        let state = DetectorState()
        var count = 0
        for _ in 0..<warmup { count = detector.detect(image, state: state).count }
        var times: [Double] = []
        var parts: [String: [Double]] = [:]
        for _ in 0..<runs {
            let t0 = Benchmark.now()
            count = detector.detect(image, state: state).count
            times.append(Benchmark.now() - t0)
            for (k, v) in state.timingsMs { parts[k, default: []].append(v) }
        }
        print("detector: \(config.architecture) on \(image.width)x\(image.height) → input "
              + "\(g.resizedWidth)x\(g.resizedHeight) (padded \(g.paddedWidth)x\(g.paddedHeight)), \(count) detections")
        print(Compute.description)
        print("machine: \(BLASInfo.config), OpenBLAS threads \(BLASInfo.threads), cores "
              + "\(ProcessInfo.processInfo.activeProcessorCount) (may be shared)")
        let order = ["transform", "backbone", "rpn", "roi_heads", "masks", "keypoints", "heads"]
        let breakdown = order.compactMap { k in parts[k].map { String(format: "%@ %.0f", k, Benchmark.median($0) * 1) } }
        print("stages (median ms): " + breakdown.joined(separator: ", "))
        print(String(format: "fpnstream ms/frame: %.1f (median of %d; min %.1f)", Benchmark.median(times) * 1000,
                     runs, (times.min() ?? 0) * 1000))
        print("runs ms: " + times.map { String(format: "%.2f", $0 * 1000) }.joined(separator: " "))
    }
}
