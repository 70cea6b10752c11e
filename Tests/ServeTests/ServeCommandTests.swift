import Foundation
import TestSupport
import XCTest

/// `fpnstream serve` end to end: the built binary, looped local files and RTSP test servers as cameras, a real
/// mosquitto read back with mosquitto_sub.
final class ServeCommandTests: XCTestCase {
    var dir: URL!
    var processes: [Process] = []

    override func setUpWithError() throws {
        dir = TestPaths.temporaryDirectory("serve-cmd")
    }

    override func tearDown() {
        for p in processes where p.isRunning { p.terminate(); p.waitUntilExit() }
        try? FileManager.default.removeItem(at: dir)
        super.tearDown()
    }

    func binary() throws -> String {
        guard let b = ExternalTools.builtProduct("fpnstream") else { throw XCTSkip("fpnstream not built (swift build)") }
        return b
    }

    func broker() throws -> MQTTTestBroker {
        let b = MQTTTestBroker()
        do { try b.start() } catch let e as MQTTTestBroker.Unavailable { throw XCTSkip(e.description) }
        return b
    }

    /// Writes a camera file and starts `fpnstream serve --config FILE ARGS` (stderr to `dir/NAME.err`).
    func serve(_ name: String, yaml: String, _ args: [String] = [], env: [String: String] = [:]) throws -> Process {
        let config = dir.appendingPathComponent("\(name).yaml")
        try yaml.write(to: config, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try binary())
        p.arguments = ["serve", "--config", config.path] + args
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        let err = dir.appendingPathComponent("\(name).err")
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        p.standardError = try FileHandle(forWritingTo: err)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        processes.append(p)
        return p
    }

    func stderr(_ name: String) -> String {
        (try? String(contentsOf: dir.appendingPathComponent("\(name).err"), encoding: .utf8)) ?? ""
    }

    func waitExit(_ p: Process, timeout: Double = 30) -> Bool {
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { p.waitUntilExit(); done.signal() }
        return done.wait(timeout: .now() + timeout) == .success
    }

    /// The port serve printed in its start line.
    func port(_ name: String) -> Int? {
        var port: Int?
        eventually { port = stderr(name).components(separatedBy: "http://127.0.0.1:").dropFirst().first
            .flatMap { Int($0.prefix { $0.isNumber }) }; return port != nil }
        return port
    }

    func jsonl(_ file: String) -> [[String: Any]] {
        let text = (try? String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    func cameraLines(_ ids: [String], maxFPS: Int = 5, extra: String = "") -> String {
        ids.map { "  - {id: \($0), url: \"\(demoClip)\", loop: true, max_fps: \(maxFPS)\(extra), outputs: {jsonl: \"\(dir.path)/\($0).jsonl\"}}" }
            .joined(separator: "\n")
    }

    func testBadInputIsOneClearErrorAndAUsageStatus() throws {
        let dup = try serve("dup", yaml: "http: {listen: \"127.0.0.1:0\"}\ncameras:\n  - {id: a, url: x}\n  - {id: a, url: y}\n")
        XCTAssertTrue(waitExit(dup))
        XCTAssertEqual(dup.terminationStatus, 2)
        XCTAssertEqual(stderr("dup"), "fpnstream: \(dir.path)/dup.yaml:4: cameras[1].id: duplicate id 'a' (first on line 3)\n")

        let key = try serve("key", yaml: "cameras:\n  - {id: a, url: x, max_fsp: 3}\n")
        XCTAssertTrue(waitExit(key))
        XCTAssertEqual(key.terminationStatus, 2)
        XCTAssertTrue(stderr("key").contains("key.yaml:2: cameras[0]: unknown key 'max_fsp' (did you mean 'max_fps'?)"), stderr("key"))

        let port = MQTTTestBroker.freePort()
        let noBroker = try serve("nobroker", yaml: "mqtt: {broker: \"127.0.0.1:\(port)\", password: \"${MQ_PW}\"}\ncameras: []\n",
                                 env: ["MQ_PW": "hunter2"])
        XCTAssertTrue(waitExit(noBroker))
        XCTAssertEqual(noBroker.terminationStatus, 1)
        XCTAssertTrue(stderr("nobroker").hasPrefix("fpnstream: mqtt: 127.0.0.1:\(port): cannot connect: "), stderr("nobroker"))
        XCTAssertFalse(stderr("nobroker").contains("hunter2"))

        let shard = try serve("shard", yaml: "cameras: []\n", ["--shard", "3/3"])
        XCTAssertTrue(waitExit(shard))
        XCTAssertEqual(shard.terminationStatus, 2)
    }

    /// Frames and events over MQTT match the JSONL; SIGHUP adds and removes cameras; SIGTERM finalizes and exits 0.
    func testMQTTFramesMatchTheJSONLAndSignalsReloadAndStop() throws {
        let b = try broker()
        let sub = try b.subscribe("fpnstream/#")
        usleep(300_000)
        let head = "instance: t1\nhttp: {listen: \"127.0.0.1:0\"}\nmqtt: {broker: \"127.0.0.1:\(b.port)\"}\ncameras:\n"
        let p = try serve("cams", yaml: head + cameraLines(["a", "b"]) + "\n")
        let client = HTTPClient(base: "http://127.0.0.1:\(try XCTUnwrap(port("cams"), stderr("cams")))")
        XCTAssertTrue(sub.wait { m in m.filter { $0.topic == "fpnstream/b/frame" }.count >= 3 }.count > 0)
        let metrics = try client.get("/metrics").text
        XCTAssertTrue(metrics.contains("fpnstream_mqtt_connected 1"), metrics)
        XCTAssertTrue(metrics.contains("fpnstream_mqtt_dropped_total 0"), metrics)
        let delivered = metrics.split(separator: "\n").first { $0.hasPrefix("fpnstream_mqtt_delivered_total ") }
        XCTAssertGreaterThanOrEqual(Double(delivered?.split(separator: " ").last ?? "") ?? 0, 3)

        // SIGHUP: the file now has b and c (a removed).
        try (head + cameraLines(["b", "c"]) + "\n").write(to: dir.appendingPathComponent("cams.yaml"), atomically: true, encoding: .utf8)
        kill(p.processIdentifier, SIGHUP)
        sub.wait { m in m.filter { $0.topic == "fpnstream/c/frame" }.count >= 3 }
        XCTAssertTrue(stderr("cams").contains("reload: 1 added, 0 changed, 1 removed, 1 unchanged"), stderr("cams"))

        p.terminate()
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderr("cams"))
        let got = sub.wait { m in m.last?.payload.contains("\"offline\"") == true }
        for id in ["a", "b", "c"] {
            let lines = jsonl("\(id).jsonl")
            let frames = lines.filter { $0["type"] as? String == "frame" }
            XCTAssertGreaterThan(frames.count, 0, id)
            XCTAssertEqual(lines.filter { $0["type"] as? String == "summary" }.count, 1, "\(id): finalized")
            XCTAssertTrue(frames.allSatisfy { $0["camera"] as? String == id })
            // One frame message per frame line, the same frames.
            let messages = got.filter { $0.topic == "fpnstream/\(id)/frame" }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.payload.utf8)) as? [String: Any] }
            XCTAssertEqual(messages.compactMap { $0["frame"] as? Int }, frames.compactMap { $0["frame"] as? Int }, id)
            let events = got.filter { $0.topic == "fpnstream/\(id)/events" }.map(\.payload)
            XCTAssertTrue(events.contains { $0.contains("\"event\":\"connected\"") }, "\(id): \(events)")
        }
        let status = got.filter { $0.topic == "fpnstream/t1/status" }.map(\.payload)
        XCTAssertTrue(status.first?.contains("\"status\":\"online\"") == true, "\(status)")
        XCTAssertTrue(status.last?.contains("\"status\":\"offline\"") == true, "\(status)")
    }

    /// Three instances split nine cameras: each camera's frames come from exactly one of them, and killing one stops
    /// only its own cameras (its last will says so).
    func testThreeShardsSplitNineCamerasAndAKilledOneStopsOnlyItsOwn() throws {
        let b = try broker()
        let sub = try b.subscribe("fpnstream/#")
        usleep(300_000)
        let ids = (0..<9).map { "cam\($0)" }
        let cams = ids.map { "  - {id: \($0), url: \"\(demoClip)\", loop: true, max_fps: 4}" }.joined(separator: "\n")
        var ports: [Int] = []
        for i in 0..<3 {
            let yaml = "instance: node\(i)\nhttp: {listen: \"127.0.0.1:0\"}\nmqtt: {broker: \"127.0.0.1:\(b.port)\"}\ncameras:\n" + cams + "\n"
            _ = try serve("node\(i)", yaml: yaml, ["--shard", "\(i)/3"])
            ports.append(try XCTUnwrap(port("node\(i)"), stderr("node\(i)")))
        }
        // Each instance lists its own cameras; together all nine, no overlap.
        var owner: [String: Int] = [:]
        for (i, port) in ports.enumerated() {
            let list = try XCTUnwrap(HTTPClient(base: "http://127.0.0.1:\(port)").get("/api/cameras").json() as? [[String: Any]])
            for c in list { let id = c["id"] as! String; XCTAssertNil(owner[id], "\(id) on two shards"); owner[id] = i }
        }
        XCTAssertEqual(owner.keys.sorted(), ids)
        XCTAssertEqual(ids.map { owner[$0]! }, [1, 2, 0, 0, 0, 2, 1, 0, 1], "rendezvous hashing of the ids")
        let frames = { (id: String) in sub.messages().filter { $0.topic == "fpnstream/\(id)/frame" }.count }
        XCTAssertTrue(eventually { ids.allSatisfy { frames($0) >= 2 } }, "every camera progresses")

        // Kill shard 2 (cam1, cam5) without a chance to say goodbye.
        kill(processes[2].processIdentifier, SIGKILL)
        XCTAssertTrue(waitExit(processes[2]))
        sub.wait { m in m.contains { $0.topic == "fpnstream/node2/status" && $0.payload.contains("offline") } }
        let killed = ["cam1", "cam5"].map(frames)
        let others = ids.filter { owner[$0] != 2 }
        let before = others.map(frames)
        XCTAssertTrue(eventually { zip(others, before).allSatisfy { frames($0) >= $1 + 3 } }, "the others go on")
        XCTAssertEqual(["cam1", "cam5"].map(frames), killed, "the killed instance's cameras stopped")
        let will = sub.messages().filter { $0.topic == "fpnstream/node2/status" }.last?.payload ?? ""
        XCTAssertTrue(will.contains("\"status\":\"offline\""), will)
    }

    /// Two cameras on the demo model: it is loaded once; both progress; temporal delta reports its recomputed work;
    /// the pipeline's tracker gives track events on MQTT.
    func testCamerasShareOneLoadedModel() throws {
        let pipeline = try demoPipeline()
        let b = try broker()
        let sub = try b.subscribe("fpnstream/+/events")
        usleep(300_000)
        let yaml = "http: {listen: \"127.0.0.1:0\"}\nmqtt: {broker: \"127.0.0.1:\(b.port)\"}\n"
            + "defaults: {pipeline: \"\(pipeline)\"}\ncameras:\n"
            + cameraLines(["a", "b"], maxFPS: 2, extra: ", temporal: delta") + "\n"
        let p = try serve("model", yaml: yaml)
        let client = HTTPClient(base: "http://127.0.0.1:\(try XCTUnwrap(port("model"), stderr("model")))")
        XCTAssertTrue(try eventually(timeout: 60) {
            let list = try client.get("/api/cameras").json() as? [[String: Any]] ?? []
            return list.count == 2 && list.allSatisfy { ($0["processed"] as? Int ?? 0) >= 2 }
        })
        let cameras = try client.get("/api/cameras").json() as? [[String: Any]] ?? []
        XCTAssertTrue(cameras.allSatisfy { $0["repeated_frames"] is Int }, "temporal delta: repeated_frames in the status")
        XCTAssertTrue(cameras.allSatisfy { c in
            let box = (c["region_reuse"] as? [String: [String: Any]])?["box"]
            return (box?["total"] as? Int ?? 0) > 0 && (box?["reused"] as? Int).map { $0 >= 0 } == true
        }, "temporal delta: the RoI heads' regions in the status: \(cameras)")
        let metrics = try client.get("/metrics").text
        XCTAssertTrue(metrics.contains("fpnstream_models_loaded 1.0") || metrics.contains("fpnstream_models_loaded 1\n"), metrics)
        XCTAssertTrue(metrics.contains("fpnstream_camera_recomputed_fraction{camera=\"a\"}"))
        XCTAssertTrue(metrics.contains("fpnstream_camera_frames_repeated_total{camera=\"a\"}"), metrics)
        p.terminate()
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0)
        let frames = jsonl("a.jsonl").filter { $0["type"] as? String == "frame" }
        XCTAssertTrue(frames.contains { ($0["detections"] as? [Any])?.isEmpty == false }, "the model found objects")
        XCTAssertTrue(frames.allSatisfy { $0["recomputed"] != nil }, "delta mode on every frame")
        // Every track id of a frame line was announced by a track_started event of that camera, with its class.
        let tracked = Set(frames.flatMap { ($0["detections"] as? [[String: Any]] ?? []).compactMap { $0["track_id"] as? Int } })
        XCTAssertFalse(tracked.isEmpty)
        func startedEvents() -> [[String: Any]] {
            sub.messages().filter { $0.topic == "fpnstream/a/events" && $0.payload.contains("\"track_started\"") }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.payload.utf8)) as? [String: Any] }
        }
        eventually { Set(startedEvents().compactMap { $0["track_id"] as? Int }) == tracked }
        let started = startedEvents()
        let announced = Set(started.compactMap { $0["track_id"] as? Int })
        XCTAssertEqual(announced, tracked)
        XCTAssertTrue(started.allSatisfy { $0["camera"] as? String == "a" && $0["class"] is String }, "\(started)")
    }

    /// `--state`: cameras added, changed and removed over HTTP are saved and come back after a restart, laid over the
    /// camera file (also after a SIGHUP); a bad state file is a usage error naming it.
    func testAPIChangesSurviveARestartWithAStateFile() throws {
        let state = dir.appendingPathComponent("state.json").path
        let yaml = "http: {listen: \"127.0.0.1:0\"}\ncameras:\n" + cameraLines(["a", "b"], maxFPS: 2) + "\n"
        func ids(_ c: HTTPClient) throws -> [String] {
            (try c.get("/api/cameras").json() as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
        }
        func body(_ fps: Int) -> Data { Data("{\"url\": \"\(demoClip)\", \"loop\": true, \"max_fps\": \(fps)}".utf8) }
        let first = try serve("st1", yaml: yaml, ["--state", state])
        let c1 = HTTPClient(base: "http://127.0.0.1:\(try XCTUnwrap(port("st1"), stderr("st1")))")
        XCTAssertTrue(eventually { (try? ids(c1)) == ["a", "b"] })
        XCTAssertFalse(FileManager.default.fileExists(atPath: state), "created by the first change")
        XCTAssertEqual(try c1.request("POST", "/api/cameras/c", body: body(3)).status, 201)
        let put = try c1.request("PUT", "/api/cameras/a", body: body(1))
        XCTAssertEqual(put.status, 200, put.text)
        XCTAssertEqual(try c1.request("DELETE", "/api/cameras/b").status, 204)
        let saved = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state))) as? [String: Any])
        XCTAssertEqual((saved["cameras"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, ["c", "a"])
        XCTAssertEqual(saved["removed"] as? [String], ["b"])
        first.terminate()
        XCTAssertTrue(waitExit(first))
        XCTAssertEqual(first.terminationStatus, 0, stderr("st1"))

        // Restart on the same two files: a changed, b removed, c added.
        let second = try serve("st2", yaml: yaml, ["--state", state])
        let c2 = HTTPClient(base: "http://127.0.0.1:\(try XCTUnwrap(port("st2"), stderr("st2")))")
        XCTAssertTrue(eventually { (try? ids(c2)) == ["a", "c"] }, "\((try? ids(c2)) ?? [])")
        let a = try XCTUnwrap(try c2.get("/api/cameras/a").json() as? [String: Any])
        XCTAssertEqual(a["max_fps"] as? Double, 1)
        XCTAssertTrue(try eventually { (try c2.get("/api/cameras/c").json() as? [String: Any])?["processed"] as? Int ?? 0 >= 1 })
        // SIGHUP with a new file camera d: the API's changes still win for a and b.
        try ("http: {listen: \"127.0.0.1:0\"}\ncameras:\n" + cameraLines(["a", "b", "d"], maxFPS: 2) + "\n")
            .write(to: dir.appendingPathComponent("st2.yaml"), atomically: true, encoding: .utf8)
        kill(second.processIdentifier, SIGHUP)
        XCTAssertTrue(eventually { (try? ids(c2)) == ["a", "c", "d"] }, "\((try? ids(c2)) ?? [])")
        XCTAssertEqual((try c2.get("/api/cameras/a").json() as? [String: Any])?["max_fps"] as? Double, 1)
        // Deleting a camera the file does not name forgets it (no tombstone).
        XCTAssertEqual(try c2.request("DELETE", "/api/cameras/c").status, 204)
        let after = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: state))) as? [String: Any])
        XCTAssertEqual((after["cameras"] as? [[String: Any]])?.compactMap { $0["id"] as? String }, ["a"])
        XCTAssertEqual(after["removed"] as? [String], ["b"])
        second.terminate()
        XCTAssertTrue(waitExit(second))

        try "{\"cameras\": [{\"id\": \"x\"}]}".write(toFile: state, atomically: true, encoding: .utf8)
        let bad = try serve("st3", yaml: yaml, ["--state", state])
        XCTAssertTrue(waitExit(bad))
        XCTAssertEqual(bad.terminationStatus, 2)
        XCTAssertEqual(stderr("st3"), "fpnstream: --state \(state): cameras[0] ('x'): 'url' (a string) is required\n")
    }
}
