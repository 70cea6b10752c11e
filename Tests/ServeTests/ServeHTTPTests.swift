import Foundation
import MediaIO
import Serve
import TestSupport
import XCTest

/// `ServeEngine` + `ServeHTTP` in process, on a free loopback port, with looped local files as cameras.
final class ServeHTTPTests: XCTestCase {
    private var engine: ServeEngine!
    private var http: ServeHTTP!
    private var client: HTTPClient!
    private var dir: URL!

    override func setUpWithError() throws {
        dir = TestPaths.temporaryDirectory("serve-http")
        FFmpegLogLevel.set(.quiet)  // cameras report their errors in their status
        var config = ServeConfig()
        config.http.port = 0
        config.http.token = "t0ken"
        config.http.maxBody = 1024
        engine = ServeEngine(config: config)
        http = ServeHTTP(engine: engine, settings: config.http)
        let port = try http.start()
        client = HTTPClient(base: "http://127.0.0.1:\(port)", token: "t0ken")
    }

    override func tearDown() {
        engine?.shutdown()
        http?.stop()
        try? FileManager.default.removeItem(at: dir)
        super.tearDown()
    }

    private func camera(_ id: String, url: String = demoClip, maxFPS: Double? = 10) -> CameraSpec {
        var s = CameraSpec(id: id, url: url)
        s.loop = true
        s.maxFPS = maxFPS
        s.jsonl = dir.appendingPathComponent("\(id).jsonl").path
        return s
    }

    private func processed(_ id: String) throws -> Int {
        (try client.get("/api/cameras/\(id)").json() as? [String: Any])?["processed"] as? Int ?? -1
    }

    func testTokenIsRequiredExceptForProbes() throws {
        XCTAssertEqual(try client.request("GET", "/healthz", token: .some(nil)).status, 200)
        XCTAssertEqual(try client.request("GET", "/api/cameras", token: .some(nil)).status, 401)
        let wrong = try client.request("GET", "/metrics", token: "t0kem")
        XCTAssertEqual(wrong.status, 401)
        XCTAssertEqual(wrong.text, "wrong bearer token\n")
        XCTAssertEqual(try client.request("DELETE", "/api/cameras/x", token: .some(nil)).status, 401)
        XCTAssertEqual(try client.get("/api/cameras").text, "[]\n")
        XCTAssertEqual(try client.get("/readyz").status, 503, "not ready before the first camera list")
        engine.apply(fileCameras: [])
        XCTAssertEqual(try client.get("/readyz").status, 200)
    }

    func testCamerasAddedChangedRemovedAtRunTimeWithoutTouchingOthers() throws {
        engine.apply(fileCameras: [camera("a")])
        XCTAssertTrue(try eventually { try processed("a") >= 3 })

        let body = Data(#"{"url": "\#(demoClip)", "loop": true, "max_fps": 10}"#.utf8)
        XCTAssertEqual(try client.request("POST", "/api/cameras/b", body: body).status, 201)
        XCTAssertEqual(try client.request("POST", "/api/cameras/b", body: body).status, 409, "POST does not replace")
        XCTAssertTrue(try eventually { try processed("b") >= 3 })
        let aBefore = try processed("a")

        // PUT with a change restarts b only; a keeps counting from where it was.
        let changed = Data(#"{"url": "\#(demoClip)", "loop": true, "max_fps": 5}"#.utf8)
        XCTAssertEqual(try client.request("PUT", "/api/cameras/b", body: changed).status, 200)
        let b = try XCTUnwrap(client.get("/api/cameras/b").json() as? [String: Any])
        XCTAssertEqual(b["max_fps"] as? Double, 5)
        XCTAssertGreaterThanOrEqual(try processed("a"), aBefore, "a was not restarted")

        XCTAssertEqual(try client.request("DELETE", "/api/cameras/b").status, 204)
        XCTAssertEqual(try client.request("DELETE", "/api/cameras/b").status, 404)
        XCTAssertEqual(try client.get("/api/cameras/b").status, 404)
        let list = try XCTUnwrap(client.get("/api/cameras").json() as? [[String: Any]])
        XCTAssertEqual(list.map { $0["id"] as? String }, ["a"])
        let aNow = try processed("a")
        XCTAssertTrue(try eventually { try processed("a") > aNow }, "a still runs")
    }

    func testBadRequestsAreClearErrors() throws {
        engine.apply(fileCameras: [])
        func post(_ id: String, _ body: String) throws -> HTTPClient.Reply {
            try client.request("POST", "/api/cameras/\(id)", body: Data(body.utf8))
        }
        let malformed = try post("x", "{url:")
        XCTAssertEqual(malformed.status, 400)
        XCTAssertTrue(malformed.text.contains("not valid JSON"), malformed.text)
        let unknown = try post("x", #"{"url": "a.mp4", "max_pfs": 3}"#)
        XCTAssertEqual(unknown.status, 400)
        XCTAssertTrue(unknown.text.contains("unknown key 'max_pfs' (did you mean 'max_fps'?)"), unknown.text)
        XCTAssertEqual(try post("x", #"{"pipeline": "p.yaml"}"#).status, 400, "url missing")
        XCTAssertEqual(try post("bad%20id", #"{"url": "a.mp4"}"#).status, 400)
        let big = try post("x", #"{"url": ""# + String(repeating: "a", count: 4000) + #""}"#)
        XCTAssertEqual(big.status, 413)
        let noPipeline = try post("x", #"{"url": "a.mp4", "pipeline": "/nonexistent.yaml"}"#)
        XCTAssertEqual(noPipeline.status, 400)
        XCTAssertTrue(noPipeline.text.contains("/nonexistent.yaml"), noPipeline.text)
        XCTAssertEqual(try client.get("/api/cameras/nope").status, 404)
        XCTAssertEqual(try client.get("/api/cameras/nope/latest.jpg").status, 404)
        XCTAssertEqual(try client.get("/api/cameras").text, "[]\n", "nothing was added by a bad request")
    }

    func testAFailingCameraNeverAffectsTheOthers() throws {
        let notVideo = dir.appendingPathComponent("notes.txt")
        try "not a video\n".write(to: notVideo, atomically: true, encoding: .utf8)
        engine.apply(fileCameras: [camera("good"), camera("text", url: notVideo.path),
                                   camera("dead", url: "rtsp://user:pw@127.0.0.1:1/cam")])
        XCTAssertTrue(try eventually { try processed("good") >= 5 })
        XCTAssertTrue(try eventually {
            let t = try client.get("/api/cameras/text").json() as? [String: Any]
            return t?["last_error"] != nil
        })
        let text = try XCTUnwrap(client.get("/api/cameras/text").json() as? [String: Any])
        XCTAssertEqual(text["state"] as? String, "connecting")
        XCTAssertEqual(text["processed"] as? Int, 0)
        XCTAssertTrue((text["last_error"] as? String ?? "").contains("notes.txt"), "\(text)")
        XCTAssertTrue(try eventually { (try client.get("/api/cameras/dead").json() as? [String: Any])?["last_error"] != nil })
        let dead = try client.get("/api/cameras/dead").text
        XCTAssertTrue(dead.contains("rtsp://***@127.0.0.1:1/cam"), dead)
        XCTAssertFalse(dead.contains("pw@"))
        XCTAssertEqual(try client.get("/api/cameras/dead/latest.jpg").status, 503, "no frame yet")
    }

    func testSnapshotIsAJPEGOfTheLatestFrame() throws {
        engine.apply(fileCameras: [camera("a")])
        XCTAssertTrue(try eventually { try processed("a") >= 1 })
        let r = try client.get("/api/cameras/a/latest.jpg")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.contentType, "image/jpeg")
        let bytes = [UInt8](r.body)
        XCTAssertEqual(Array(bytes.prefix(2)), [0xFF, 0xD8], "JPEG start of image")
        XCTAssertEqual(Array(bytes.suffix(2)), [0xFF, 0xD9], "JPEG end of image")
        // An independent decoder reads it at the clip's size.
        let file = dir.appendingPathComponent("a.jpg")
        try r.body.write(to: file)
        let size = try ExternalTools.run("/usr/bin/ffprobe", ["-v", "error", "-show_entries", "stream=width,height",
                                                               "-of", "csv=p=0", file.path])
        XCTAssertEqual(size.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), "320,240")
    }

    func testMetricsPassPromtoolAndCountPerCamera() throws {
        engine.apply(fileCameras: [camera("a"), camera("b")])
        XCTAssertTrue(try eventually { try processed("a") >= 3 && processed("b") >= 3 })
        let m = try client.get("/metrics")
        XCTAssertEqual(m.status, 200)
        XCTAssertTrue(m.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
        for name in ["fpnstream_camera_frames_processed_total{camera=\"a\"}", "fpnstream_camera_frames_in_total{camera=\"b\"}",
                     "fpnstream_camera_fps{camera=\"a\"}", "fpnstream_camera_latency_p95_seconds{camera=\"b\"}",
                     "fpnstream_camera_queue_depth{camera=\"a\"}", "process_resident_memory_bytes ",
                     "process_cpu_seconds_total ", "fpnstream_cameras 2"] {
            XCTAssertTrue(m.text.contains(name), "missing \(name)")
        }
        let processedLine = m.text.split(separator: "\n").first { $0.hasPrefix("fpnstream_camera_frames_processed_total{camera=\"a\"}") }
        XCTAssertGreaterThanOrEqual(Double(processedLine?.split(separator: " ").last ?? "") ?? 0, 3)
        guard let promtool = ExternalTools.which("promtool") else { throw XCTSkip("promtool missing (run scripts/setup)") }
        let check = try ExternalTools.run(promtool, ["check", "metrics"], input: m.body)
        XCTAssertEqual(check.status, 0, check.stdoutText + check.stderr)
        // A removed camera's series are gone.
        engine.remove("b")
        XCTAssertFalse(try client.get("/metrics").text.contains("camera=\"b\""))
    }
}
