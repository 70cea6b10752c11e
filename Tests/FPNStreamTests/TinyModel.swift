import Foundation
import Tensor
import TestSupport
import Vision

/// The tiny Mask R-CNN fixture (ResNet-18 FPN, 5 classes, min_size 120) as a weights file the binary loads.
enum TinyModel {
    /// Writes `tiny-maskrcnn.safetensors` into `dir` (class names person/bicycle/car/dog, score threshold 0.3) and
    /// returns its path.
    static func write(to dir: URL) throws -> String {
        let fixture = try SafeTensorsFile(url: TestPaths.fixtures.appendingPathComponent("heads/tiny-maskrcnn.safetensors"))
        var (tensors, metadata) = try SyntheticWeights.fixtureWeights(fixture)
        metadata["class_names"] = "[\"__background__\", \"person\", \"bicycle\", \"car\", \"dog\"]"
        metadata["score_thresh"] = "0.3"
        let url = dir.appendingPathComponent("tiny-maskrcnn.safetensors")
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: url)
        return url.path
    }
}
