import ArgumentParser
import FPNCore
import FPNStream
import Foundation
import MediaIO
import Tensor
import TemporalReuse
import Vision

/// `fpnstream calibrate CLIP --model M --target-fidelity F [-o pipeline.yaml]`: per-layer delta thresholds, tuned
/// greedily front to back (CBinfer / DeltaCNN style), written as a pipeline file that `process --pipeline` runs.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Tune per-layer temporal delta thresholds on a clip for a target fidelity; write a pipeline YAML.",
        discussion: """
            Decodes the first --frames frames of CLIP and runs the model densely once (the reference). Then, for each \
            group of conv layers in forward order (--group depth, the default: the stem, then every other backbone \
            and FPN conv together; --group stage: stem, layer1..layer4, fpn; --group layer: every conv), it raises \
            the group's threshold through --grid while the fidelity of a delta run over all frames (fresh temporal \
            state each time) stays ≥ --target-fidelity, keeps the last value that passed and moves on. Every \
            accepted configuration was measured, so the final one meets the target on these frames.

            Fidelity (--metric): f1 = detection agreement F1 with the dense run (same class, box IoU ≥ 0.9, scores ≥ \
            --agreement-score, default the model's threshold; see `bench temporal`); feature = 1 − the largest \
            per-level mean relative L2 error of the pyramid. Work is bounded: at most (groups × grid) delta runs of \
            --frames frames, or --max-runs.

            Example:
              fpnstream calibrate vtest.avi --model m.safetensors --target-fidelity 0.98 \\
                  --frames 40 -o pipelines/vtest-calibrated.yaml
              fpnstream process vtest.avi --pipeline pipelines/vtest-calibrated.yaml
            """)

    @Argument(help: "Calibration clip (anything FFmpeg opens).")
    var clip: String

    @Option(help: ArgumentHelp("Detector weights (.safetensors).", valueName: "file"))
    var model: String

    @Option(help: ArgumentHelp("Smallest acceptable fidelity in (0, 1], e.g. 0.98.", valueName: "f"))
    var targetFidelity: Double

    @Option(help: "Frames of the clip used (from the start).")
    var frames = 30

    @Option(name: .shortAndLong, help: ArgumentHelp("Pipeline YAML to write (default: stdout).", valueName: "file"))
    var output: String?

    @Option(help: ArgumentHelp("f1 (detection agreement) or feature (pyramid error).", valueName: "f1|feature"))
    var metric = "f1"

    @Option(help: ArgumentHelp("Layer groups tuned together: depth (the stem, then all deeper convs as one), stage "
                               + "or layer.", valueName: "depth|stage|layer"))
    var group = "depth"

    @Option(help: ArgumentHelp("Candidate thresholds, ascending, comma-separated.", valueName: "list"))
    var grid = "0.02,0.05,0.1,0.2,0.3,0.5,0.8"

    @Option(help: ArgumentHelp("Threshold of every layer before tuning (0 would count last-bit GEMM differences as "
                               + "changes).", valueName: "t"))
    var baseThreshold: Float = 1e-4

    @Option(help: "Dense refresh interval of the runs and the pipeline written (default: TemporalSettings' \(TemporalSettings().refreshInterval)).")
    var refresh = TemporalSettings().refreshInterval

    @Option(help: "Output tile side (default: the delta default, \(TemporalSettings().tile)).")
    var tile: Int?

    @Option(help: "Per-layer dense fall-back fraction.")
    var denseFallback = 0.7

    @Option(help: ArgumentHelp("Score threshold of the agreement metric (default: the model's).", valueName: "s"))
    var agreementScore: Float?

    @Option(help: "Stop after this many delta runs (0 = no limit).")
    var maxRuns = 0

    var candidates: [Float] { grid.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        guard targetFidelity > 0 && targetFidelity <= 1 else { throw ValidationError("--target-fidelity must be in (0, 1]") }
        guard frames >= 2 else { throw ValidationError("--frames must be at least 2") }
        guard ["f1", "feature"].contains(metric) else { throw ValidationError("--metric must be f1 or feature") }
        guard ["stage", "depth", "layer"].contains(group) else {
            throw ValidationError("--group must be stage, depth or layer")
        }
        let c = candidates
        guard !c.isEmpty, c.count == grid.split(separator: ",").count, c.allSatisfy({ $0 >= 0 }), c == c.sorted() else {
            throw ValidationError("--grid must be ascending non-negative numbers separated by commas, got '\(grid)'")
        }
        guard baseThreshold >= 0, refresh >= 0, (tile ?? 1) >= 1, (0...1).contains(denseFallback), maxRuns >= 0,
              (0...1).contains(agreementScore ?? 0) else {
            throw ValidationError("--base-threshold, --refresh, --max-runs >= 0, --tile >= 1, --dense-fallback and --agreement-score in [0, 1]")
        }
    }

    func run() throws {
        FFmpegLogLevel.set(.quiet)
        let detector: any Detector
        do { detector = try DetectorLoader.load(contentsOf: URL(fileURLWithPath: model)) } catch {
            throw CLIFailure(message: "model '\(model)': \(error)", status: ExitStatus.usageError)
        }
        if let output, !FileManager.default.createFile(atPath: output, contents: nil) {
            throw CLIFailure(message: "cannot write '\(output)'", status: ExitStatus.usageError)
        }
        var images: [RGBImage] = []
        do {
            let decoder = try VideoDecoder(location: clip)
            while images.count < frames, let f = decoder.nextFrame() { images.append(f.image) }
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.runtimeError)
        }
        guard images.count >= 2 else {
            throw CLIFailure(message: "\(clip): needs at least 2 decodable frames, got \(images.count)", status: ExitStatus.runtimeError)
        }
        let score = agreementScore ?? detector.config.thresholds.score
        let evaluator = FidelityEvaluator(detector: detector, images: images, score: score, features: metric == "feature")
        info("calibrate: \(model) (\(detector.config.architecture)) on \(images.count) frames of \(clip); reference: "
             + String(format: "%.0f ms/frame backbone+FPN, %d detections with score >= %.2f", evaluator.referenceMs,
                      evaluator.referenceDetections, score))
        if metric == "f1" && evaluator.referenceDetections == 0 {
            info("warning: the dense run finds no detection with score >= \(score) on these frames, so F1 cannot tell "
                 + "thresholds apart; use --metric feature or a lower --agreement-score")
        }

        let layers = detector.backbone.convLayers.map(\.key)
        let search = ThresholdCalibration(targetFidelity: targetFidelity, metric: ThresholdCalibration.Metric(rawValue: metric) ?? .f1,
                                          candidates: candidates, baseThreshold: baseThreshold, refresh: refresh,
                                          denseFallback: denseFallback, tile: tile ?? TemporalSettings().tile,
                                          maxRuns: maxRuns)
        let outcome: ThresholdCalibration.Outcome
        do {
            outcome = try search.run(evaluator, layers: layers, groups: ThresholdCalibration.groups(layers, by: group),
                                     log: info)
        } catch let e as CalibrationError {
            throw CLIFailure(message: e.description, status: ExitStatus.runtimeError)
        }
        let yaml = search.pipelineYAML(outcome, order: layers, model: model, clip: clip, group: group, frames: images.count)
        if let output {
            do { try yaml.write(toFile: output, atomically: true, encoding: .utf8) } catch {
                throw CLIFailure(message: "cannot write '\(output)': \(error.localizedDescription)", status: ExitStatus.runtimeError)
            }
        } else {
            print(yaml, terminator: "")
        }
        let best = outcome.best
        info(String(format: "result: fidelity %.4f (target %.4f), recomputed %.3f of dense FLOPs, backbone+FPN %.0f vs %.0f "
                    + "ms/frame dense (%.2fx; frames 1+, the dense run was the process's first: use bench temporal --pipeline for speed), %d delta runs", search.fidelity(best), targetFidelity, best.recomputed, best.deltaMs,
                    evaluator.referenceMs, evaluator.referenceMs / best.deltaMs, outcome.runs)
             + (output.map { " → \($0)" } ?? ""))
    }

    private func info(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
