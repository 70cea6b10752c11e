import Foundation
import Tensor

extension SyntheticWeights {
    /// A backbone of `architecture` with seeded synthetic weights (`stateDict(expected:)`), loaded through a
    /// temporary weights file in `directory` (removed afterwards). For benchmarks and tests that need a
    /// deterministic model without downloaded weights.
    /// - Throws: `ModelLoadError` for an unknown architecture, file errors from writing the temporary file.
    public static func backbone(architecture: String, directory: URL = FileManager.default.temporaryDirectory) throws
        -> ResNetFPNBackbone {
        guard let config = BackboneConfig(architecture: architecture) else {
            throw ModelLoadError(file: URL(fileURLWithPath: architecture), reason: .unknownArchitecture(
                architecture, known: BackboneConfig.backboneArchitectures))
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let tag = "fpnstream-synthetic-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let url = directory.appendingPathComponent(tag + ".safetensors")
        let expected = try expectedKeys(config, scratch: directory.appendingPathComponent(tag + "-empty.safetensors"))
        try SafeTensorsWriter.write(stateDict(expected: expected),
                                    metadata: ["architecture": architecture, "bn_eps": "\(config.bnEps)",
                                               "source": "SyntheticWeights"], to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        return try ResNetFPNBackbone(contentsOf: url)
    }
}
