import ArgumentParser
import FPNCore
import FPNStream
import Foundation
import Tensor
import Vision

/// `fpnstream features`: a picture of every pyramid level of a detector on chosen frames of a clip
/// (`INPUT --model M --visualize OUT`), or, for parity checks against torchvision (`scripts/parity`), the input
/// transform and the FPN levels of a backbone on tensors from a safetensors file (`--weights --input --out`).
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what each FPN level of a detector responds to (or write a backbone's levels for parity checks).",
        discussion: """
            Visualize (docs/features.md): runs the detector on the chosen frames of INPUT and writes each frame \
            beside its pyramid levels P2...P7 as heatmaps (channel RMS per feature cell, viridis), every detection \
            boxed in the colour of the level k = floor(4 + log2(sqrt(wh)/224)) it is assigned to (R-CNN: the level \
            RoIAlign pools it from). OUT ending in .png: one PNG per frame (--frames required; several frames get \
            -NNNNNN before .png); anything else: a video of the chosen frames (all by default).

              fpnstream features vtest.avi --model r50.safetensors --frames 100 \\
                  --visualize levels.png
              fpnstream features clip.mp4 --model r50.safetensors --frames 0-299 \\
                  --visualize levels.mp4

            Parity (developer tool): --input holds `image` ([H, W, 3] RGB values 0...255, any float dtype) and/or \
            `input` ([1, 3, H, W], already normalised). `image` is run through the detector transform and written as \
            `input`; the backbone runs on the file's `input` when present (so its levels can be compared \
            independently of the transform), else on the transformed image. Levels are written as p2...p7.
            """)

    @Argument(help: ArgumentHelp("Input video (path or URL) for --visualize.", valueName: "input"))
    var source: String?

    @Option(help: ArgumentHelp("Detector weights (.safetensors from scripts/convert-torchvision) for --visualize.",
                               valueName: "file"))
    var model: String?

    @Option(help: ArgumentHelp("Write the levels picture: .png (one per frame) or a video (.mp4, .mkv, ...).",
                               valueName: "out"))
    var visualize: String?

    @Option(help: ArgumentHelp("Frames to show, 0-based: 100, 0-99, 10,20,30-40 (default: every frame).",
                               valueName: "list"))
    var frames: String?

    @Option(help: ArgumentHelp("Heatmap scale: level (each level min to max) or global (0 to the frame's largest).",
                               valueName: "level|global"))
    var normalize: String = "level"

    @Option(help: ArgumentHelp("Shrink the picture by this factor (0 < s <= 1), e.g. 0.5 for 1080p input.",
                               valueName: "s"))
    var scale: Double = 1

    @Option(help: ArgumentHelp("Minimum detection score (default: the model's).", valueName: "t"))
    var score: Float?

    @OptionGroup var encoding: EncoderFlags

    @Option(help: ArgumentHelp("Parity: backbone weights (.safetensors with __metadata__ architecture).", valueName: "file"))
    var weights: String?

    @Option(help: ArgumentHelp("Parity: safetensors file with `image` and/or `input`.", valueName: "file"))
    var input: String?

    @Option(help: ArgumentHelp("Parity: output safetensors file.", valueName: "file"))
    var out: String?

    @Option(help: "Parity: transform shorter side target.")
    var minSize = 800

    @Option(help: "Parity: transform longer side limit.")
    var maxSize = 1333

    @Option(help: "Parity: fixed WIDTHxHEIGHT instead of the 800/1333 rule.")
    var fixedSize: String?

    func validate() throws {
        let parity = [("--weights", weights), ("--input", input), ("--out", out)]
        if visualize != nil {
            guard source != nil else { throw ValidationError("--visualize needs an INPUT video") }
            guard model != nil else { throw ValidationError("--visualize needs --model") }
            if let flag = parity.first(where: { $0.1 != nil }) {
                throw ValidationError("\(flag.0) is a parity option; it cannot be combined with --visualize")
            }
            guard HeatmapNormalization(rawValue: normalize) != nil else {
                throw ValidationError("--normalize must be level or global, got '\(normalize)'")
            }
        } else {
            if source != nil || model != nil {
                throw ValidationError("INPUT and --model need --visualize OUT (e.g. --visualize levels.png --frames 100)")
            }
            if let missing = parity.first(where: { $0.1 == nil }) {
                throw ValidationError("missing \(missing.0): use INPUT --model M --visualize OUT, or --weights, "
                                      + "--input and --out for parity")
            }
        }
    }

    func run() throws {
        if let visualize, let source, let model {
            try runVisualization(source: source, model: model, output: visualize)
        } else {
            try runParity(weights: weights!, input: input!, out: out!)
        }
    }

    private func runVisualization(source: String, model: String, output: String) throws {
        var spec = ModelSpec(path: model)
        spec.score = score
        var run = PyramidVisualization(input: source, model: spec, output: output)
        run.normalization = HeatmapNormalization(rawValue: normalize)!
        run.scale = scale
        run.encoder = encoding.options
        do {
            run.frames = try frames.map { try FrameList(parsing: $0) }
            try run.validate()
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
        }
        let written: [String]
        do {
            written = try run.run { frame, n in
                FileHandle.standardError.write(Data("features: frame \(frame): \(n) detections\n".utf8))
            }
        } catch let e as ModelDetectorError {
            throw CLIFailure(message: e.message, status: ExitStatus.usageError)
        } catch {
            throw CLIFailure(message: redactCredentials("\(error)"), status: ExitStatus.runtimeError)
        }
        let shown = written.count > 3 ? "\(written[0]) ... \(written.last!) (\(written.count) files)"
                                      : written.joined(separator: ", ")
        FileHandle.standardError.write(Data("features: wrote \(shown)\n".utf8))
    }

    private func runParity(weights: String, input: String, out: String) throws {
        let backbone = try ResNetFPNBackbone(contentsOf: URL(fileURLWithPath: weights))
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: input))
        guard file.contains("image") || file.contains("input") else {
            throw ValidationError("'\(input)' has neither an `image` nor an `input` tensor")
        }
        var resize = InputResize.shorterSide(min: minSize, max: maxSize)
        if let fixedSize {
            let parts = fixedSize.split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--fixed-size must be WIDTHxHEIGHT, got '\(fixedSize)'")
            }
            resize = .fixed(width: parts[0], height: parts[1])
        }
        let ws = Workspace()
        ws.beginFrame()
        var outputs: [String: Tensor] = [:]
        var networkInput: Tensor?
        if file.contains("image") {
            let t = try file.tensor("image")
            guard t.rank == 3, t.shape[2] == 3 else {
                throw ValidationError("`image` in '\(input)' must be [H, W, 3], got \(t.shape)")
            }
            let pixels = t.array.map { UInt8(clamping: Int($0.rounded())) }
            let image = RGBImage(width: t.shape[1], height: t.shape[0], pixels: pixels)
            let (x, g) = DetectionTransform(TransformConfig(resize: resize))(image, workspace: ws)
            outputs["input"] = copy(x)
            networkInput = x
            print("features: image \(g.sourceWidth)x\(g.sourceHeight) -> resized \(g.resizedWidth)x\(g.resizedHeight) "
                  + "-> input \(g.paddedWidth)x\(g.paddedHeight)")
        }
        if file.contains("input") {
            let x = try file.tensor("input")
            guard x.rank == 4, x.shape[1] == 3 else {
                throw ValidationError("`input` in '\(input)' must be [n, 3, H, W], got \(x.shape)")
            }
            networkInput = x
        }
        let t0 = Benchmark.now()
        let pyramid = backbone(networkInput!, workspace: ws)
        let dt = Benchmark.now() - t0
        for level in pyramid.levels { outputs[level.name] = copy(level.features) }
        try SafeTensorsWriter.write(outputs, metadata: ["backbone": backbone.config.description],
                                    to: URL(fileURLWithPath: out))
        print("features: \(pyramid.levels.map { "\($0.name) \($0.features.shape)" }.joined(separator: ", ")) "
              + String(format: "(backbone %.0f ms)", dt * 1000))
    }

    private func copy(_ t: Tensor) -> Tensor {
        let c = Tensor(shape: t.shape)
        c.copy(from: t)
        return c
    }
}
