import FPNCore
import FPNStream
import Foundation
import TemporalReuse
import TestSupport
import Vision
import XCTest

/// A detector that returns hand-made detections: `reference` for the first `images` calls (the evaluator's dense
/// run), then `candidate` (its delta runs). Config and backbone come from the tiny model; they are not run.
private final class ScriptedDetector: Detector, @unchecked Sendable {
    let inner: any Detector
    let frames: Int
    let reference: [[Detection]], candidate: [[Detection]]
    private var calls = 0
    init(inner: any Detector, reference: [[Detection]], candidate: [[Detection]]) {
        self.inner = inner
        self.frames = reference.count
        self.reference = reference
        self.candidate = candidate
    }
    var config: DetectorConfig { inner.config }
    var backbone: ResNetFPNBackbone { inner.backbone }
    func detect(_ image: RGBImage, state: DetectorState, thresholds: DetectionThresholds?) -> [Detection] {
        defer { calls += 1 }
        return calls < frames ? reference[calls] : candidate[(calls - frames) % frames]
    }
}

final class FidelityEvaluatorTests: XCTestCase {
    func det(_ x: Float, _ cls: Int = 1, score: Float = 0.9) -> Detection {
        Detection(box: Box(x1: x, y1: 10, x2: x + 40, y2: 50), score: score, classID: cls, className: "c\(cls)")
    }

    func testAgreementOfHandMadeDetections() throws {
        let dir = TestPaths.temporaryDirectory("fidelity")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try ModelDetector(spec: ModelSpec(path: try TinyModel.write(to: dir)))
        let image = RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 0, count: 64 * 64 * 3))
        // Frame 0: both boxes kept. Frame 1: one box moved away (IoU < 0.9), one below the score threshold.
        let reference = [[det(0), det(100)], [det(0), det(100)]]
        let candidate = [[det(0), det(100)], [det(20), det(100, score: 0.1)]]
        let scripted = ScriptedDetector(inner: model.detector, reference: reference, candidate: candidate)
        let evaluator = FidelityEvaluator(detector: scripted, images: [image, image], score: 0.5, features: false)
        XCTAssertEqual(evaluator.referenceDetections, 4)
        var settings = TemporalSettings()
        settings.mode = .delta
        let r = evaluator.run(settings)
        XCTAssertEqual(r.agreement.matched, 2)
        XCTAssertEqual(r.agreement.reference, 4)
        XCTAssertEqual(r.agreement.candidate, 3)
        XCTAssertEqual(r.f1, 2.0 * 2 / 7, accuracy: 1e-9)
        XCTAssertEqual(r.agreement.scoreFlips, 1)  // the box at x=100 is there, scored 0.1
        XCTAssertEqual(r.featureFidelity, 1)       // features were not kept
    }

    func testSyntheticSceneIsSeededAndSized() {
        var a = SyntheticScene(detectionsPerFrame: 30, seed: 7, width: 640, height: 480)
        var b = SyntheticScene(detectionsPerFrame: 30, seed: 7, width: 640, height: 480)
        for _ in 0..<5 {
            let x = a.next(), y = b.next()
            XCTAssertEqual(x.count, 30)
            XCTAssertEqual(x.map(\.box), y.map(\.box))
        }
    }
}

/// The greedy threshold search of `calibrate` on hand-made detections.
final class ThresholdCalibrationTests: XCTestCase {
    let layers = ["backbone.body.conv1", "backbone.body.layer1.0.conv1", "backbone.body.layer2.0.conv1",
                  "backbone.fpn.inner_blocks.0"]

    func det(_ x: Float) -> Detection {
        Detection(box: Box(x1: x, y1: 10, x2: x + 40, y2: 50), score: 0.9, classID: 1, className: "c1")
    }

    func evaluator(candidate: [[Detection]]) throws -> FidelityEvaluator {
        let dir = TestPaths.temporaryDirectory("calibration")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try ModelDetector(spec: ModelSpec(path: try TinyModel.write(to: dir)))
        let image = RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 0, count: 64 * 64 * 3))
        let scripted = ScriptedDetector(inner: model.detector, reference: [[det(0)], [det(100)]], candidate: candidate)
        return FidelityEvaluator(detector: scripted, images: [image, image], score: 0.5, features: false)
    }

    func search(maxRuns: Int = 0) -> ThresholdCalibration {
        ThresholdCalibration(targetFidelity: 0.98, metric: .f1, candidates: [0.1, 0.2], baseThreshold: 1e-4, refresh: 25,
                             denseFallback: 0.7, tile: 2, maxRuns: maxRuns)
    }

    func testGroups() {
        XCTAssertEqual(ThresholdCalibration.groups(layers, by: "depth").map(\.0), ["stem", "deep"])
        XCTAssertEqual(ThresholdCalibration.groups(layers, by: "depth")[1].1.count, 3)
        XCTAssertEqual(ThresholdCalibration.groups(layers, by: "stage").map(\.0), ["stem", "layer1", "layer2", "fpn"])
        XCTAssertEqual(ThresholdCalibration.groups(layers, by: "layer").count, 4)
    }

    /// Full agreement: every group climbs to the top candidate; the YAML written parses back to those thresholds.
    func testAgreeingRunsRaiseEveryGroupAndWriteAPipeline() throws {
        let e = try evaluator(candidate: [[det(0)], [det(100)]])
        var lines: [String] = []
        let s = search()
        let outcome = try s.run(e, layers: layers, groups: ThresholdCalibration.groups(layers, by: "depth")) { lines.append($0) }
        XCTAssertEqual(outcome.groups.map(\.threshold), [0.2, 0.2])
        XCTAssertEqual(outcome.runs, 5)  // base, then two candidates per group
        XCTAssertEqual(lines.count, 5)
        let yaml = s.pipelineYAML(outcome, order: layers, model: "m.safetensors", clip: "c.mp4", group: "depth", frames: 2)
        let spec = try PipelineSpec.parse(yaml: yaml, file: "calibrated.yaml")
        XCTAssertEqual(spec.temporal.mode, .delta)
        XCTAssertEqual(spec.temporal.layerThresholds, Dictionary(uniqueKeysWithValues: layers.map { ($0, Float(0.2)) }))
        XCTAssertEqual(spec.model?.path, "m.safetensors")
    }

    func testMaxRunsStopsTheSearch() throws {
        let e = try evaluator(candidate: [[det(0)], [det(100)]])
        var lines: [String] = []
        let outcome = try search(maxRuns: 2).run(e, layers: layers, groups: ThresholdCalibration.groups(layers, by: "depth")) {
            lines.append($0)
        }
        XCTAssertEqual(outcome.runs, 2)
        XCTAssertEqual(outcome.groups.map(\.name), ["stem"])
        XCTAssertEqual(outcome.settings.layerThresholds["backbone.body.conv1"], 0.1)
        XCTAssertEqual(outcome.settings.layerThresholds["backbone.fpn.inner_blocks.0"], 1e-4)
        XCTAssertEqual(lines.last, "--max-runs 2 reached")
    }

    /// A candidate that loses one of the two boxes at every setting (F1 2/3): even the base threshold misses the target.
    func testBaseBelowTargetIsAnError() throws {
        let e = try evaluator(candidate: [[det(0)], []])
        XCTAssertThrowsError(try search().run(e, layers: layers, groups: [("stem", [layers[0]])]) { _ in }) { error in
            XCTAssertTrue("\(error)".hasPrefix("even the base threshold 0.0001 reaches only fidelity 0.6667 < target"),
                          "\(error)")
        }
    }
}
