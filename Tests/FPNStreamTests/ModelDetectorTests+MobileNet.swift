import FPNCore
import FPNStream
import Foundation
import Tensor
import TemporalReuse
import TestSupport
import Vision
import XCTest

/// A MobileNetV3 Faster R-CNN through `ModelDetector`: temporal delta mode is refused with a message naming the
/// model (its backbone runs outside the temporal cache); keyframe mode is accepted.
extension ModelDetectorTests {
    func testMobileNetModelRefusesTemporalDelta() throws {
        let metadata = ["architecture": "fasterrcnn_mobilenet_v3_large_320_fpn",
                        "class_names": #"["__background__","a","b"]"#]
        let scratch = dir.appendingPathComponent("empty.safetensors")
        try SafeTensorsWriter.write([:], metadata: metadata, to: scratch)
        let expected = try DetectorLoader.expectedKeys(file: SafeTensorsFile(url: scratch),
                                                       config: DetectorConfig(metadata: metadata, file: scratch))
        let url = dir.appendingPathComponent("mb.safetensors")
        try SafeTensorsWriter.write(SyntheticWeights.stateDict(expected: expected), metadata: metadata, to: url)
        var d = try ModelDetector(spec: ModelSpec(path: url.path))
        XCTAssertThrowsError(try d.useTemporal(TemporalSettings(mode: .delta))) { e in
            XCTAssertTrue("\(e)".contains("delta mode needs a ResNet backbone"), "\(e)")
            XCTAssertTrue("\(e)".contains(url.path), "\(e)")
        }
        XCTAssertNoThrow(try d.useTemporal(TemporalSettings(mode: .keyframe)))
    }
}
