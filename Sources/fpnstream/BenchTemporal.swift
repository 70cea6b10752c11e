import ArgumentParser
import Foundation
import MediaIO
import Tensor
import Vision

/// `fpnstream bench temporal INPUT`: backbone + FPN on the same decoded frames with `--temporal off` (dense) and
/// `delta`, interleaved frame by frame in one process; prints ms/frame of both, the speedup, the per-level relative
/// L2 error of delta against dense (mean, max, and at frames 100, 400 and the last), and the recomputed fraction.
struct BenchTemporal: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "temporal",
        abstract: "Temporal FPN (delta) vs dense backbone+FPN on a clip: speed, per-level error, recomputed fraction.",
        discussion: """
            Each frame is run densely (off) and through a per-stream TemporalCache (delta), alternating, so load
            changes on a shared machine hit both alike. Speedup = total off time / total delta time (dense refresh
            frames included); per-frame medians are printed too. Error of a level = ||delta − off||₂ / ||off||₂.
            Seeded synthetic weights (--arch) unless --weights.
            """)

    @Argument(help: "Video file (anything FFmpeg opens).")
    var input: String

    @Option(help: "Architecture with seeded weights (\(BackboneConfig.backboneArchitectures.joined(separator: ", "))).")
    var arch = "resnet50-fpn"

    @Option(help: "Real backbone weights file instead (its metadata sets the architecture).")
    var weights: String?

    @Option(help: "Network input WIDTHxHEIGHT (frames are resized to it); default: the source size padded to 32.")
    var size: String?

    @Option(help: "Frames to process (0 = whole clip).")
    var frames = 0

    @Option(help: "Delta threshold: max |change| per tile relative to the layer input's RMS (0 = exact).")
    var threshold: Float = 0.05

    @Option(help: "Dense refresh every N frames (0 = never after the first).")
    var refresh = 100

    @Option(help: "Per-layer dense fall-back above this fraction of changed output tiles.")
    var denseFallback = 0.7

    @Option(help: "Output tile side in pixels.")
    var tile = 4

    @Option(help: "Write one JSON line per frame (ms, recomputed fraction, per-level error) to this file.")
    var jsonl: String?

    func validate() throws {
        guard weights != nil || BackboneConfig(architecture: arch) != nil else {
            throw ValidationError("unknown --arch '\(arch)' (known: \(BackboneConfig.backboneArchitectures.joined(separator: ", ")))")
        }
        guard frames >= 0, refresh >= 0, tile >= 1, threshold >= 0, (0...1).contains(denseFallback) else {
            throw ValidationError("--frames, --refresh >= 0, --tile >= 1, --threshold >= 0, --dense-fallback in 0...1")
        }
    }

    func run() throws {
        var resize = InputResize.none
        if let size {
            let d = size.split(separator: "x").compactMap { Int($0) }
            guard d.count == 2, d.allSatisfy({ $0 >= 32 }) else {
                throw ValidationError("--size must be WIDTHxHEIGHT (each >= 32), got '\(size)'")
            }
            resize = .fixed(width: d[0], height: d[1])
        }
        let decoder = try VideoDecoder(location: input)
        let backbone = try weights.map { try ResNetFPNBackbone(contentsOf: URL(fileURLWithPath: $0)) }
            ?? SyntheticWeights.backbone(architecture: arch)
        let transform = DetectionTransform(TransformConfig(resize: resize))
        let out = try jsonl.map { path -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ValidationError("cannot write --jsonl file '\(path)'")
            }
            return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        }
        let settings = TemporalSettings(mode: .delta, threshold: threshold, refreshInterval: refresh,
                                        denseFallback: denseFallback, tile: tile)
        let cache = TemporalCache(settings: settings)
        let inputWS = Workspace(), denseWS = Workspace(), deltaWS = Workspace()
        print("fpnstream bench temporal: \(input), \(weights ?? arch + " (seeded weights)") [\(backbone.config)]")
        print("delta: threshold \(threshold) x layer-input RMS, refresh every \(refresh), dense fall-back > \(denseFallback), tile \(tile)")
        print("BLAS: \(BLASInfo.coreName), \(BLASInfo.threads) threads; \(ProcessInfo.processInfo.activeProcessorCount) cores "
              + "(machine may be shared: compare the ratios)")

        var offTimes: [Double] = [], deltaTimes: [Double] = []
        var errors: [[Double]] = []  // per frame, per level
        var fractions: [Double] = [], tileFractions: [Double] = []
        var names: [String] = []
        var inputShape: [Int] = []
        var count = 0
        while frames == 0 || count < frames, let frame = decoder.nextFrame() {
            inputWS.beginFrame()
            let x = transform(frame.image, workspace: inputWS).input
            inputShape = x.shape
            // Alternate which mode runs first so cache effects and load drift do not favour one.
            var off: FeaturePyramid?, delta: FeaturePyramid?
            for mode in (count % 2 == 0 ? [0, 1] : [1, 0]) {
                let t0 = Benchmark.now()
                if mode == 0 {
                    denseWS.beginFrame()
                    off = backbone(x, workspace: denseWS)
                    offTimes.append(Benchmark.now() - t0)
                } else {
                    deltaWS.beginFrame()
                    delta = cache.forward(backbone, input: x, workspace: deltaWS)
                    deltaTimes.append(Benchmark.now() - t0)
                }
            }
            if names.isEmpty { names = off!.levels.map(\.name) }
            let e = zip(off!.levels, delta!.levels).map { Self.relativeL2($1.features, $0.features) }
            errors.append(e)
            fractions.append(cache.lastStats.recomputedFraction)
            tileFractions.append(cache.lastStats.tileFraction)
            if let out {
                var line = String(format: "{\"frame\":%d,\"off_ms\":%.2f,\"delta_ms\":%.2f,\"recomputed\":%.4f,\"recomputed_tiles\":%.4f,\"refreshed\":%@,\"rel_l2\":{",
                                  count, offTimes.last! * 1e3, deltaTimes.last! * 1e3, fractions.last!, tileFractions.last!,
                                  cache.lastStats.refreshed ? "true" : "false")
                line += zip(names, e).map { String(format: "\"%@\":%.3e", $0.0, $0.1) }.joined(separator: ",") + "}}\n"
                out.write(line.data(using: .utf8)!)
            }
            count += 1
            if count % 25 == 0 {
                FileHandle.standardError.write(String(format: "  frame %d: off %.0f ms, delta %.0f ms, recomputed %.3f\n",
                                                      count, offTimes.last! * 1e3, deltaTimes.last! * 1e3, fractions.last!).data(using: .utf8)!)
            }
        }
        try out?.close()
        guard count > 0 else { throw ValidationError("no frame decoded from '\(input)'") }

        let offTotal = offTimes.reduce(0, +), deltaTotal = deltaTimes.reduce(0, +)
        print("frames: \(count), network input \(inputShape), levels \(names.joined(separator: ","))")
        print(String(format: "off:   mean %.1f ms/frame (median %.1f)", 1e3 * offTotal / Double(count), 1e3 * Benchmark.median(offTimes)))
        print(String(format: "delta: mean %.1f ms/frame (median %.1f)", 1e3 * deltaTotal / Double(count), 1e3 * Benchmark.median(deltaTimes)))
        print(String(format: "speedup (total off / total delta): %.2fx; of medians: %.2fx", offTotal / deltaTotal,
                     Benchmark.median(offTimes) / Benchmark.median(deltaTimes)))
        print(String(format: "recomputed: mean %.3f of dense conv FLOPs, %.3f of output tiles (all conv layers)",
                     fractions.reduce(0, +) / Double(count), tileFractions.reduce(0, +) / Double(count)))
        let marks = [100, 400, count].filter { $0 <= count }
        print("relative L2 error of delta vs off per level: mean, max, at frame " + marks.map(String.init).joined(separator: "/"))
        for (l, name) in names.enumerated() {
            let col = errors.map { $0[l] }
            let at = marks.map { String(format: "%.2e", col[$0 - 1]) }.joined(separator: " / ")
            print(String(format: "  %@: mean %.2e  max %.2e  at %@", name, col.reduce(0, +) / Double(count), col.max()!, at))
        }
    }

    /// ||a − b||₂ / ||b||₂ (0 when both are zero).
    static func relativeL2(_ a: Tensor, _ b: Tensor) -> Double {
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                var num = 0.0, den = 0.0
                for i in pa.indices {
                    let d = Double(pa[i]) - Double(pb[i])
                    num += d * d; den += Double(pb[i]) * Double(pb[i])
                }
                return den > 0 ? (num / den).squareRoot() : (num > 0 ? .infinity : 0)
            }
        }
    }
}
