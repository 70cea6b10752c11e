import FPNStream
import Serve
import TemporalReuse
import XCTest

final class ServeConfigTests: XCTestCase {
    let env = ["CAM_PASS": "s3cret", "TOKEN": "tok", "MQ_PW": "mqpw"]

    func parse(_ yaml: String) throws -> ServeConfig { try ServeConfig.parse(yaml: yaml, file: "cams.yaml", environment: env) }

    func error(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try parse(yaml) } catch { return "\(error)" }
        XCTFail("no error", file: file, line: line)
        return ""
    }

    func testFullFileWithDefaultsAndOverrides() throws {
        let c = try parse("""
            instance: edge-1
            inference_slots: 2
            http: {listen: "0.0.0.0:9090", token: "${TOKEN}", max_body: 4096}
            mqtt: {broker: "mqtt://broker:1884", username: u, password: "${MQ_PW}", prefix: site, buffer: 500, frames: false}
            defaults:
              pipeline: pipelines/demo.yaml
              max_fps: 5
              outputs: {jsonl: "out/{camera}.jsonl"}
            cameras:
              - id: door
                url: "rtsp://admin:${CAM_PASS}@10.0.0.5/s"
              - id: yard_2
                url: samples/demo.mp4
                loop: true
                temporal: delta
                max_fps: 0
                model: other.safetensors
                outputs: {video: "out/yard.mp4", jsonl: null}
            """)
        XCTAssertEqual(c.instance, "edge-1")
        XCTAssertEqual(c.inferenceSlots, 2)
        XCTAssertEqual(c.http.host, "0.0.0.0")
        XCTAssertEqual(c.http.port, 9090)
        XCTAssertEqual(c.http.token, "tok")
        XCTAssertEqual(c.http.maxBody, 4096)
        XCTAssertEqual(c.mqtt?.host, "broker")
        XCTAssertEqual(c.mqtt?.port, 1884)
        XCTAssertEqual(c.mqtt?.password, "mqpw")
        XCTAssertEqual(c.mqtt?.prefix, "site")
        XCTAssertEqual(c.mqtt?.buffer, 500)
        XCTAssertEqual(c.mqtt?.frames, false)
        XCTAssertEqual(c.cameras.map(\.id), ["door", "yard_2"])
        let door = c.cameras[0], yard = c.cameras[1]
        XCTAssertEqual(door.url, "rtsp://admin:${CAM_PASS}@10.0.0.5/s", "references stay unresolved until start")
        XCTAssertEqual(door.pipeline, "pipelines/demo.yaml")
        XCTAssertEqual(door.maxFPS, 5)
        XCTAssertEqual(door.jsonl, "out/{camera}.jsonl")
        XCTAssertNil(door.temporal)
        XCTAssertFalse(door.loop)
        XCTAssertEqual(yard.temporal?.mode, .delta)
        XCTAssertNil(yard.maxFPS, "max_fps: 0 = no cap")
        XCTAssertEqual(yard.model, "other.safetensors")
        XCTAssertEqual(yard.video, "out/yard.mp4")
        XCTAssertNil(yard.jsonl)
        XCTAssertTrue(yard.loop)
    }

    func testDefaultsWithoutOptionalSections() throws {
        let c = try parse("cameras:\n  - {id: a, url: rtsp://x/y}\n")
        XCTAssertEqual(c.http.host, "127.0.0.1", "loopback unless told otherwise")
        XCTAssertEqual(c.http.port, 8080)
        XCTAssertNil(c.http.token)
        XCTAssertNil(c.mqtt)
        XCTAssertEqual(c.inferenceSlots, 1)
        XCTAssertEqual(try parse("cameras:\n").cameras.count, 0)
    }

    func testBadKeysAndValuesNameFileLineAndKey() {
        XCTAssertEqual(error("cameras: []\nhttp: {lisen: 1}\n"),
                       "cams.yaml:2: http: unknown key 'lisen' (did you mean 'listen'?)")
        XCTAssertEqual(error("cameras:\n  - id: a\n    url: x\n    max_fps: fast\n"),
                       "cams.yaml:4: cameras[0].max_fps: expected a number, got \"fast\"")
        XCTAssertEqual(error("cameras:\n  - id: a\n    url: x\n    temporal: dleta\n"),
                       "cams.yaml:4: temporal: expected one of off, keyframe, delta, auto, got \"dleta\" (did you mean 'delta'?)")
        XCTAssertEqual(error("cameras:\n  - id: a\n"), "cams.yaml:2: cameras[0]: missing key 'url'")
        XCTAssertEqual(error("cameras:\n  - id: a b\n    url: x\n"),
                       "cams.yaml:2: cameras[0].id: 'a b': use letters, digits, - and _ (at most 64)")
        XCTAssertEqual(error("http: {listen: nowhere}\ncameras: []\n"),
                       "cams.yaml:1: http.listen: expected HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8080), got \"nowhere\"")
        XCTAssertEqual(error("cameras: 3\n"), "cams.yaml:1: cameras: expected a list of cameras (- id: …), got 3")
        XCTAssertEqual(error("instance: x\n"), "cams.yaml:1: missing key 'cameras' (the camera list)")
        XCTAssertEqual(error("cameras:\n  - id: a\n   url: x\n").prefix(21), "cams.yaml:3: invalid ")
        XCTAssertEqual(error(""), "cams.yaml: empty file: expected a 'cameras:' list")
        XCTAssertEqual(error("mqtt: {buffer: 0}\ncameras: []\n"), "cams.yaml:1: mqtt.buffer: must be ≥ 1, got 0")
    }

    func testDuplicateIdsNameBothLines() {
        XCTAssertEqual(error("cameras:\n  - id: a\n    url: x\n  - id: b\n    url: y\n  - id: a\n    url: z\n"),
                       "cams.yaml:6: cameras[2].id: duplicate id 'a' (first on line 2)")
    }

    func testUnresolvableReferencesNameTheVariableNotAValue() {
        XCTAssertEqual(error("cameras:\n  - id: a\n    url: \"rtsp://u:${NOPE}@h/s\"\n"),
                       "cams.yaml:3: cameras[0].url: ${NOPE}: environment variable not set")
        XCTAssertEqual(error("http: {token: \"${MISSING_TOKEN}\"}\ncameras: []\n"),
                       "cams.yaml:1: http.token: ${MISSING_TOKEN}: environment variable not set")
    }

    func testLoadNamesAMissingFile() {
        XCTAssertThrowsError(try ServeConfig.load(path: "/nonexistent/cams.yaml")) {
            XCTAssertEqual("\($0)", "/nonexistent/cams.yaml: cannot read: no such file or not UTF-8 text")
        }
    }
}
