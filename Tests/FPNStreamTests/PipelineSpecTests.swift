import TemporalReuse
import FPNStream
import Outputs
import StagePipeline
import TestSupport
import Tracking
import Vision
import XCTest

final class PipelineSpecTests: XCTestCase {
    private func parse(_ yaml: String) throws -> PipelineSpec { try PipelineSpec.parse(yaml: yaml, file: "x.yaml") }

    private func assertError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(yaml), file: file, line: line) { error in
            XCTAssertEqual("\(error)", expected, file: file, line: line)
        }
    }

    func testCommittedPipelinesParse() throws {
        let d = try PipelineSpec.load(path: TestPaths.root.appendingPathComponent("pipelines/default.yaml").path)
        var expected = PipelineSpec()
        expected.name = "default"
        XCTAssertEqual(d, expected, "default.yaml spells out exactly the built-in defaults")

        let demo = try PipelineSpec.load(path: TestPaths.root.appendingPathComponent("pipelines/demo.yaml").path)
        XCTAssertEqual(demo.name, "demo")
        XCTAssertEqual(demo.tracker, ByteTrackConfig())
        XCTAssertEqual(demo.outputs.annotate.trails, 30)
    }

    func testEveryKeyParses() throws {
        let s = try parse("""
            name: cam1
            input:
              stride: 2
              max_fps: 12.5
              max_frames: 100
              live:
                drop_policy: drop-newest
                queue_size: 3
                reconnect: { enabled: false, initial_delay: 1, max_delay: 4, max_attempts: 5, io_timeout: 2.5 }
            model:
              path: models/m.safetensors
              score: 0.3
              nms: 0.6
              max_detections: 50
              mask_threshold: 0.4
              min_size: 512
              max_size: 900
              classes: [person, car]
            temporal:
              mode: delta
              refresh_interval: 10
              threshold: 0.25
              dense_fallback: 0.5
              keyframe_interval: 7
              tile: 8
              layer_thresholds: { backbone.body.conv1: 0.5, 'backbone.fpn.layer_blocks.0': 0 }
              input_threshold: 0.1
              input_block: 2
              frame_fallback: 0.75
              deep_tile: 8
              gate_outputs: false
              guard: false
              guard_target: 0.9
              guard_score: 0.3
              guard_interval: 12
            tracker:
              track_high_thresh: 0.6
              track_low_thresh: 0.2
              match_thresh: 0.9
              track_buffer: 60
              min_box_area: 0
              class_aware: true
            outputs:
              video: out/a.mp4
              jsonl: '-'
              mot: out/a.txt
              coco: out/a.json
              panoptic: out/pan
              jsonl_masks: false
              annotate: { boxes: false, labels: false, masks: false, mask_alpha: 0.3, trails: true, stuff: false,
                          anonymize: pixelate, anonymize_classes: [face], font_scale: 2 }
            """)
        XCTAssertEqual(s.name, "cam1")
        XCTAssertEqual(s.input.stride, 2)
        XCTAssertEqual(s.input.maxFPS, 12.5)
        XCTAssertEqual(s.input.maxFrames, 100)
        XCTAssertEqual(s.input.live.dropPolicy, .dropNewest)
        XCTAssertEqual(s.input.live.queueSize, 3)
        XCTAssertEqual(s.input.live.reconnect.enabled, false)
        XCTAssertEqual(s.input.live.reconnect.maxAttempts, 5)
        XCTAssertEqual(s.input.live.reconnect.ioTimeout, 2.5)
        XCTAssertEqual(s.model?.path, "models/m.safetensors")
        XCTAssertEqual(s.model?.score, 0.3)
        XCTAssertEqual(s.model?.nms, 0.6)
        XCTAssertEqual(s.model?.maxDetections, 50)
        XCTAssertEqual(s.model?.maskThreshold, 0.4)
        XCTAssertEqual(s.model?.minSize, 512)
        XCTAssertEqual(s.model?.maxSize, 900)
        XCTAssertEqual(s.model?.classes, ["person", "car"])
        XCTAssertEqual(s.temporal.mode, .delta)
        XCTAssertEqual(s.temporal.refreshInterval, 10)
        XCTAssertEqual(s.temporal.threshold, 0.25)
        XCTAssertEqual(s.temporal.denseFallback, 0.5)
        XCTAssertEqual(s.temporal.keyframeInterval, 7)
        XCTAssertEqual(s.temporal.gateOutputs, false)
        XCTAssertEqual(s.temporal.tile, 8)
        XCTAssertEqual(s.temporal.inputThreshold, 0.1)
        XCTAssertEqual(s.temporal.inputBlock, 2)
        XCTAssertEqual(s.temporal.frameFallback, 0.75)
        XCTAssertEqual(s.temporal.deepTile, 8)
        XCTAssertEqual(s.temporal.accuracyGuard, TemporalGuardSettings(enabled: false, targetF1: 0.9, minScore: 0.3, interval: 12))
        XCTAssertEqual(s.temporal.layerThresholds, ["backbone.body.conv1": 0.5, "backbone.fpn.layer_blocks.0": 0])
        let t = try XCTUnwrap(s.tracker)
        XCTAssertEqual(t.trackThresh, 0.6)
        XCTAssertEqual(t.newTrackThresh, 0.7, accuracy: 1e-6, "derived from track_thresh as ByteTrack does")
        XCTAssertEqual(t.trackLowThresh, 0.2)
        XCTAssertEqual(t.matchThresh, 0.9)
        XCTAssertEqual(t.trackBuffer, 60)
        XCTAssertEqual(t.minBoxArea, 0)
        XCTAssertTrue(t.classAware)
        XCTAssertFalse(t.frameRateIsExplicit, "the stream's frame rate still applies")
        XCTAssertEqual(s.outputs.video, "out/a.mp4")
        XCTAssertEqual(s.outputs.jsonl, "-")
        XCTAssertEqual(s.outputs.mot, "out/a.txt")
        XCTAssertEqual(s.outputs.coco, "out/a.json")
        XCTAssertEqual(s.outputs.panoptic, "out/pan")
        XCTAssertFalse(s.outputs.jsonlMasks)
        let a = s.outputs.annotate
        XCTAssertEqual([a.boxes, a.labels, a.masks, a.stuff], [false, false, false, false])
        XCTAssertEqual(a.maskAlpha, 0.3)
        XCTAssertEqual(a.trails, 30)
        XCTAssertEqual(a.anonymize, .pixelate)
        XCTAssertEqual(a.anonymizeClasses, ["face"])
        XCTAssertEqual(a.fontScale, 2)
        let style = a.style
        XCTAssertEqual([style.boxes, style.labels, style.masks, style.stuff], [false, false, false, false])
        XCTAssertEqual(style.maskAlpha, 0.3)
        XCTAssertEqual(style.anonymize, .pixelate)
        XCTAssertEqual(style.anonymizeClasses, ["face"])
        XCTAssertEqual(style.fontScale, 2)
        XCTAssertEqual(AnnotateSpec().style, AnnotationStyle(), "the defaults agree")
    }

    func testShorthands() throws {
        XCTAssertEqual(try parse("").tracker, nil)
        XCTAssertEqual(try parse("tracker:").tracker, ByteTrackConfig(), "`tracker:` alone = ByteTrack defaults")
        XCTAssertNil(try parse("tracker: off").tracker)
        XCTAssertEqual(try parse("model: m.safetensors").model, ModelSpec(path: "m.safetensors"))
        XCTAssertEqual(try parse("temporal: {mode: off}").temporal.mode, .off, "YAML 1.1 'off' is a word here")
        XCTAssertEqual(try parse("temporal: delta").temporal, TemporalSettings(mode: .delta), "mode alone, defaults otherwise")
        XCTAssertEqual(try parse("temporal:").temporal, TemporalSettings())
        XCTAssertEqual(try parse("input: {live: {reconnect: false}}").input.live.reconnect.enabled, false)
    }

    func testErrorsNameFileLineAndKey() {
        assertError("tracker:\n  match_thresh: abc\n", #"x.yaml:2: tracker.match_thresh: expected a number, got "abc""#)
        assertError("input: {}\ntrackr:\n  match_thresh: 1\n", "x.yaml:2: unknown key 'trackr' (did you mean 'tracker'?)")
        assertError("model:\n  path: m\n  scor: 0.5\n", "x.yaml:3: model: unknown key 'scor' (did you mean 'score'?)")
        assertError("temporal:\n  zzz: 1\n",
                    "x.yaml:2: temporal: unknown key 'zzz' (known keys: mode, threshold, layer_thresholds, refresh_interval, "
                    + "keyframe_interval, dense_fallback, tile, input_threshold, input_block, frame_fallback, deep_tile, "
                    + "gate_outputs, guard, guard_target, guard_score, guard_interval)")
        assertError("temporal:\n  threshold: -1\n", "x.yaml:2: temporal.threshold: must be ≥ 0, got -1")
        assertError("temporal:\n  keyframe_interval: 0\n", "x.yaml:2: temporal.keyframe_interval: must be ≥ 1, got 0")
        assertError("temporal:\n  refresh_interval: -25\n", "x.yaml:2: temporal.refresh_interval: must be ≥ 0, got -25")
        assertError("temporal:\n  layer_thresholds: {a: x}\n",
                    #"x.yaml:2: temporal.layer_thresholds.a: expected a number, got "x""#)
        assertError("model: {path: m, score: 1.5}", "x.yaml:1: model.score: must be in [0, 1], got 1.5")
        assertError("temporal:\n  mode: fast\n",
                    #"x.yaml:2: temporal.mode: expected one of off, keyframe, delta, auto, got "fast""#)
        assertError("temporal: {mode: delt}",
                    #"x.yaml:1: temporal.mode: expected one of off, keyframe, delta, auto, got "delt" (did you mean 'delta'?)"#)
        assertError("input:\n  stride: 0\n", "x.yaml:2: input.stride: must be ≥ 1, got 0")
        assertError("input:\n  stride: 1.5\n", "x.yaml:2: input.stride: expected a whole number, got 1.5")
        assertError("input:\n  live:\n    drop_policy: latest\n",
                    #"x.yaml:3: input.live.drop_policy: expected one of keep-latest, drop-oldest, drop-newest, block, got "latest""#)
        assertError("outputs:\n  annotate:\n    masks: maybe\n",
                    #"x.yaml:3: outputs.annotate.masks: expected true or false, got "maybe""#)
        assertError("outputs:\n  annotate: yes\n", "x.yaml:2: outputs.annotate: expected a mapping (key: value lines), got yes")
        assertError("tracker:\n  track_low_thresh: 0.7\n",
                    "x.yaml:2: tracker.track_low_thresh: must not exceed track_thresh (0.5)")
        assertError("tracker:\n  match_thresh: 2\n", "x.yaml:2: tracker.match_thresh: must be in [0, 1], got 2.0")
        assertError("model:\n  score: 0.5\n", "x.yaml:2: model: missing key 'path' (the model file)")
        assertError("model: {path: m, classes: person}",
                    #"x.yaml:1: model.classes: expected a list like [a, b], got "person""#)
        assertError("input: {stride: 2}\ninput: {stride: 3}\n", "x.yaml:2: duplicate key 'input'")
        assertError("- a\n- b\n", "x.yaml:1: expected a mapping (key: value lines), got a list")
    }

    func testInvalidYAMLNamesTheLine() {
        XCTAssertThrowsError(try parse("input:\n  stride: [1, 2\nmodel: x\n")) { error in
            let e = error as? PipelineSpecError
            XCTAssertEqual(e?.file, "x.yaml")
            XCTAssertNotNil(e?.line)
            XCTAssertTrue("\(error)".hasPrefix("x.yaml:"), "\(error)")
            XCTAssertTrue("\(error)".contains("invalid YAML: "), "\(error)")
        }
        XCTAssertThrowsError(try parse("a: b: c")) { error in
            XCTAssertTrue("\(error)".hasPrefix("x.yaml:1: invalid YAML: "), "\(error)")
        }
    }

    func testUnreadableFiles() throws {
        XCTAssertThrowsError(try PipelineSpec.load(path: "pipelines/nope.yaml")) { error in
            XCTAssertEqual("\(error)", "pipelines/nope.yaml: no such file")
        }
        let dir = TestPaths.temporaryDirectory("spec")
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertThrowsError(try PipelineSpec.load(path: dir.path)) { error in
            XCTAssertEqual("\(error)", "\(dir.path): is a directory, not a pipeline file")
        }
        let binary = dir.appendingPathComponent("b.yaml")
        try Data([0xff, 0xfe, 0x00, 0x41]).write(to: binary)
        XCTAssertThrowsError(try PipelineSpec.load(path: binary.path)) { error in
            XCTAssertEqual("\(error)", "\(binary.path): not UTF-8 text")
        }
    }
}
