import FPNStream
import Foundation
import MediaIO
import ONNX
import Outputs
import Tensor
import Vision

/// One parser under fuzzing: it gets arbitrary bytes and must return (throwing inside is fine) without
/// trapping, leaking or allocating beyond its limits.
struct FuzzTarget {
    let run: (UnsafeRawBufferPointer) -> Void

    static let all: [String: FuzzTarget] = [
        "onnx": FuzzTarget(run: onnx),
        "safetensors": FuzzTarget(run: safetensors),
        "pipeline-yaml": FuzzTarget(run: pipelineYAML),
        "mot": FuzzTarget(run: mot),
        "decoder": FuzzTarget(run: decoder),
    ]

    /// The target named by FPNSTREAM_FUZZ_TARGET (the libFuzzer build's entry point has no arguments of its own).
    static let fromEnvironment: FuzzTarget = {
        let name = ProcessInfo.processInfo.environment["FPNSTREAM_FUZZ_TARGET"] ?? ""
        guard let t = all[name] else { fatalError("FPNSTREAM_FUZZ_TARGET must be one of \(all.keys.sorted())") }
        return t
    }()

    /// The ONNX reader, the planner (lowering, folding, fusion) and shape inference for a small input.
    static func onnx(_ bytes: UnsafeRawBufferPointer) {
        guard let model = try? ONNXModel(bytes: Data(bytes)),
              let network = try? ONNXNetwork(model: model, file: "fuzz.onnx") else { return }
        _ = try? ONNXSession(network).outputShapes(forInput: network.inputShape(height: 16, width: 16))
    }

    /// The safetensors reader (header, every tensor converted) and the detector loader's reading of the metadata
    /// (architecture, widths, classes). Building the whole detector is left out: at ~3 inputs/s it would starve
    /// the fuzzer. The reader maps files, so the bytes go through one scratch file per process.
    static func safetensors(_ bytes: UnsafeRawBufferPointer) {
        let url = scratchFile("safetensors")
        guard (try? Data(bytes).write(to: url)) != nil, let file = try? SafeTensorsFile(url: url) else { return }
        for key in file.keys { _ = try? file.tensor(key) }
        _ = try? DetectorConfig(metadata: file.metadata, file: url)
    }

    static func pipelineYAML(_ bytes: UnsafeRawBufferPointer) {
        _ = try? PipelineSpec.parse(yaml: String(decoding: bytes, as: UTF8.self), file: "fuzz.yaml")
    }

    static func mot(_ bytes: UnsafeRawBufferPointer) {
        _ = try? MOTReader.parse(String(decoding: bytes, as: UTF8.self), source: "fuzz.txt")
    }

    /// Demuxer probing and decoding of container bytes read from memory, a few frames converted to RGB.
    static func decoder(_ bytes: UnsafeRawBufferPointer) {
        var options = DecoderOptions(threadCount: 1)
        options.outputSize = PixelSize(width: 32, height: 32)
        guard let d = try? VideoDecoder(data: Data(bytes), name: "fuzz", options: options) else { return }
        var frames = 0
        while frames < 8, d.nextFrame() != nil { frames += 1 }
    }

    private static func scratchFile(_ ext: String) -> URL {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return URL(fileURLWithPath: dir).appendingPathComponent("fpnstream-fuzz-\(getpid()).\(ext)")
    }
}
