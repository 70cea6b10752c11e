import ArgumentParser
import FPNCore
import FPNStream
import Foundation
import MediaIO
import ONNX
import Tensor
import TemporalReuse
import Vision

/// `fpnstream bench temporal INPUT... [--model M | --arch A | --weights W]`: `--temporal off` (dense) and `delta` on
/// the same decoded frames, interleaved frame by frame in one process; prints per clip ms/frame of both and the
/// speedup, the per-level relative L2 error of delta against dense (mean, max, and at frames 100, 400 and the
/// last), the recomputed fraction, and with a detector (`--model`) the whole-detector ms/frame and the detection
/// agreement (F1, mask IoU; `DetectionAgreement`).
struct BenchTemporal: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "temporal",
        abstract: "Temporal FPN (delta) vs dense on clips: speed, per-level error, detection agreement, recomputed fraction.",
        discussion: """
            Each frame is run densely (off) and through a per-clip TemporalCache (delta), alternating which goes first, \
            so load changes on a shared machine hit both alike. Speedup = total off time / total delta time (dense \
            refresh frames included); per-frame medians are printed too. Error of a level = ||delta − off||₂ / \
            ||off||₂.

            --model M: a detector (.safetensors from scripts/convert-torchvision). Backbone+FPN time is the \
            detector's "backbone" part; "detector" is the whole detect call. Agreement: detections with score ≥ \
            --agreement-score (default: the model's score threshold) on each side; same class and box IoU ≥ 0.9 \
            match (greedy by IoU); F1 = 2·matched / (off + delta) pooled over frames; mask IoU averaged over matched \
            pairs. Drift: error and F1 at frames 100/400/last (F1 pooled over the 10 frames ending there). \
            --model M.onnx: CenterFace (ONNX, --onnx-scale input scale); its whole network goes through the cache; \
            "backbone+FPN" is then the network's time, levels are not compared (agreement only). \
            Without --model: the backbone alone, seeded synthetic weights (--arch) or --weights.

            Example:
              fpnstream bench temporal samples/external/vtest.avi \\
                  --model samples/models/demo.safetensors --frames 200
            """)

    @Argument(help: "Video files (anything FFmpeg opens); each is one clip with its own temporal state.")
    var inputs: [String]

    @Option(help: ArgumentHelp("Detector weights (.safetensors); compares detections too.", valueName: "file"))
    var model: String?

    @Option(help: "Backbone architecture with seeded weights, without --model (\(BackboneConfig.backboneArchitectures.joined(separator: ", "))).")
    var arch = "resnet50-fpn"

    @Option(help: "Real backbone weights file instead of --arch (its metadata sets the architecture).")
    var weights: String?

    @Option(help: "Backbone only: network input WIDTHxHEIGHT (frames are resized to it); default: the source size padded to 32.")
    var size: String?

    @Option(help: "Frames per clip (0 = whole clip).")
    var frames = 0

    @Option(help: "Delta threshold: max |change| per tile relative to the layer input's RMS (0 = exact).")
    var threshold: Float = 0.05

    @Option(help: ArgumentHelp("Per-layer thresholds from a pipeline file's temporal section (e.g. written by "
                               + "`fpnstream calibrate`); its threshold, refresh, fall-back and tile apply unless "
                               + "given here.", valueName: "pipeline.yaml"))
    var pipeline: String?

    @Option(help: "Dense refresh every N frames (0 = never after the first).")
    var refresh: Int?

    @Option(help: "Per-layer dense fall-back above this fraction of changed output tiles.")
    var denseFallback: Double?

    @Option(help: "Output tile side in pixels.")
    var tile: Int?

    @Option(help: "CenterFace (--model *.onnx): network input scale of the frame size.")
    var onnxScale = 1.0

    @Option(help: "Stem threshold (x image RMS, on 4x4-box means of |change|); default: the settings' (--threshold).")
    var inputThreshold: Float?

    @Option(help: "Box side in image pixels of the stem's change metric.")
    var inputBlock: Int?

    @Option(help: "Whole frame dense when more than this fraction of the stem's input tiles changed (1 = never).")
    var frameFallback: Double?

    @Option(help: "Output tile side for layers at stride >= 16 (0 = --tile).")
    var deepTile: Int?

    @Flag(help: "Print each conv layer's (backbone and heads) mean recomputed tile fraction, time and dense runs over the delta frames.")
    var layers = false

    @Flag(help: "No output gating: every conv compares its own input (the scheme before gating, for comparison).")
    var noGate = false

    @Option(help: ArgumentHelp("Score threshold of the agreement metric (default: the model's).", valueName: "s"))
    var agreementScore: Float?

    @Option(help: "Write one JSON line per frame (ms, recomputed fraction, per-level error, F1) to this file.")
    var jsonl: String?

    @Flag(help: ArgumentHelp("With --model: also run the dense detector on each frame moved by ±1 grey level per byte "
                             + "and print its agreement with dense, the detector's own noise floor for the F1 above."))
    var noiseFloor = false

    func validate() throws {
        guard weights != nil || model != nil || BackboneConfig(architecture: arch) != nil else {
            throw ValidationError("unknown --arch '\(arch)' (known: \(BackboneConfig.backboneArchitectures.joined(separator: ", ")))")
        }
        guard (inputThreshold ?? 0) >= 0, (inputBlock ?? 1) >= 1, (0...1).contains(frameFallback ?? 0), (deepTile ?? 0) >= 0 else {
            throw ValidationError("--input-threshold, --deep-tile >= 0, --input-block >= 1, --frame-fallback in 0...1")
        }
        guard frames >= 0, (refresh ?? 0) >= 0, (tile ?? 1) >= 1, threshold >= 0,
              (0...1).contains(denseFallback ?? 0), (0...1).contains(agreementScore ?? 0) else {
            throw ValidationError("--frames, --refresh >= 0, --tile >= 1, --threshold >= 0, --dense-fallback and --agreement-score in 0...1")
        }
        if model != nil && (weights != nil || size != nil) {
            throw ValidationError("--weights and --size apply without --model (the model's file sets both)")
        }
        if agreementScore != nil && model == nil { throw ValidationError("--agreement-score needs --model") }
        if noiseFloor && model == nil { throw ValidationError("--noise-floor needs --model") }
    }

    /// The delta settings: the pipeline's temporal section (if any) with the flags given on top.
    func settings() throws -> TemporalSettings {
        var s = TemporalSettings(mode: .delta, threshold: threshold)
        if let pipeline {
            do { s = try PipelineSpec.load(path: pipeline).temporal } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
            }
            s.mode = .delta
        }
        if let refresh { s.refreshInterval = refresh }
        if let denseFallback { s.denseFallback = denseFallback }
        if let tile { s.tile = tile }
        if let inputThreshold { s.inputThreshold = inputThreshold }
        if let inputBlock { s.inputBlock = inputBlock }
        if let frameFallback { s.frameFallback = frameFallback }
        if let deepTile { s.deepTile = deepTile }
        if noGate { s.gateOutputs = false }
        return s
    }

    func run() throws {
        FFmpegLogLevel.set(.quiet)
        let settings = try self.settings()
        let out = try jsonl.map { path -> FileHandle in
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw CLIFailure(message: "cannot write --jsonl file '\(path)'", status: ExitStatus.usageError)
            }
            return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        }
        defer { try? out?.close() }
        let subject: TemporalBenchSubject
        if let model, model.hasSuffix(".onnx") {
            let make = { () throws -> CenterFaceDetector in
                try CenterFaceDetector(network: try ONNXNetwork(contentsOf: URL(fileURLWithPath: model)),
                                       options: .init(inputScale: onnxScale))
            }
            let off: CenterFaceDetector, delta: CenterFaceDetector
            do { off = try make(); delta = try make() } catch {
                throw CLIFailure(message: "model '\(model)': \(error)", status: ExitStatus.usageError)
            }
            subject = .centerFace(off: off, delta: delta, score: agreementScore ?? off.options.threshold)
            print("fpnstream bench temporal: model \(model) (CenterFace ONNX, input scale \(onnxScale))")
        } else if let model {
            let detector: any Detector
            do { detector = try DetectorLoader.load(contentsOf: URL(fileURLWithPath: model)) } catch {
                throw CLIFailure(message: "model '\(model)': \(error)", status: ExitStatus.usageError)
            }
            subject = .detector(detector, score: agreementScore ?? detector.config.thresholds.score)
            print("fpnstream bench temporal: model \(model) (\(detector.config.architecture), \(detector.backbone.config))")
        } else {
            var resize = InputResize.none
            if let size {
                let d = size.split(separator: "x").compactMap { Int($0) }
                guard d.count == 2, d.allSatisfy({ $0 >= 32 }) else {
                    throw ValidationError("--size must be WIDTHxHEIGHT (each >= 32), got '\(size)'")
                }
                resize = .fixed(width: d[0], height: d[1])
            }
            let backbone: ResNetFPNBackbone
            do {
                backbone = try weights.map { try ResNetFPNBackbone(contentsOf: URL(fileURLWithPath: $0)) }
                    ?? SyntheticWeights.backbone(architecture: arch)
            } catch {
                throw CLIFailure(message: "\(weights.map { "weights '\($0)': " } ?? "")\(error)", status: ExitStatus.usageError)
            }
            subject = .backbone(backbone, DetectionTransform(TransformConfig(resize: resize)))
            print("fpnstream bench temporal: \(weights ?? arch + " (seeded weights)") [\(backbone.config)]")
        }
        print("delta: threshold \(settings.threshold) x layer-input RMS\(settings.layerThresholds.isEmpty ? "" : " (\(settings.layerThresholds.count) per-layer overrides)"), "
              + "stem \(settings.inputThreshold ?? settings.threshold) on \(settings.inputBlock)px boxes, "
              + "refresh every \(settings.refreshInterval), dense fall-back > \(settings.denseFallback) per layer, "
              + "> \(settings.frameFallback) per frame, tile \(settings.tile)"
              + (settings.deepTile > 0 ? " (\(settings.deepTile) at stride >= 16)" : "")
              + (settings.gateOutputs ? ", outputs gated" : ", no output gating"))
        print(Compute.description + " (machine may be shared: compare the ratios)")
        for input in inputs {
            let decoder: VideoDecoder
            do { decoder = try VideoDecoder(location: input) } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.runtimeError)
            }
            let clip: TemporalClipRun
            do { clip = try TemporalClipRun(subject: subject, settings: settings, jsonl: out, clip: input) } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
            }
            clip.noiseFloor = noiseFloor
            var count = 0
            while frames == 0 || count < frames, let frame = decoder.nextFrame() {
                clip.step(frame.image)
                count += 1
                if count % 25 == 0 { clip.progress() }
            }
            guard count > 0 else { throw CLIFailure(message: "\(input): no frame decoded", status: ExitStatus.runtimeError) }
            print("")
            clip.report(input)
            if layers { clip.layerReport() }
        }
    }
}
