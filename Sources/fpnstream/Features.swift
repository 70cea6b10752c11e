import ArgumentParser
import FPNCore
import Foundation
import Tensor
import Vision

/// `fpnstream features`: runs the input transform and the backbone on tensors from a safetensors file and writes
/// every pyramid level, for parity checks against torchvision (`scripts/parity`). Hidden: a developer tool.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the input transform and FPN levels of a backbone for tensors in a safetensors file.",
        discussion: """
            --input holds `image` ([H, W, 3] RGB values 0...255, any float dtype) and/or `input` ([1, 3, H, W], \
            already normalised). `image` is run through the detector transform and written as `input`; the backbone \
            runs on the file's `input` when present (so its levels can be compared independently of the transform), \
            else on the transformed image. Levels are written as p2...p7.
            """,
        shouldDisplay: false)

    @Option(help: "Backbone weights (.safetensors with __metadata__ architecture).")
    var weights: String

    @Option(help: "Safetensors file with `image` and/or `input`.")
    var input: String

    @Option(help: "Output safetensors file.")
    var out: String

    @Option(help: "Transform: shorter side target.")
    var minSize = 800

    @Option(help: "Transform: longer side limit.")
    var maxSize = 1333

    @Option(help: "Transform: fixed WIDTHxHEIGHT instead of the 800/1333 rule.")
    var fixedSize: String?

    func run() throws {
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
