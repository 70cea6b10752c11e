import Foundation
import TestSupport
import XCTest

extension ServeCommandTests {
    /// The metric's value in a Prometheus exposition (nil when absent).
    private func value(_ metrics: String, _ name: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// The broker stopped under a running `serve` (two cameras at 5 fps, a buffer of 10 messages): what fits in the
    /// buffer is delivered after the restart, the oldest messages past it are dropped and counted in /metrics, and
    /// nothing else is lost. The subscriber keeps a session in the (persistent) broker, so it sees everything the
    /// broker accepted. Outage: 3 s (30 frame messages), or FPNSTREAM_TEST_BROKER_OUTAGE seconds.
    func testBrokerStopKeepsWhatFitsTheBufferAndCountsTheRest() throws {
        let outage = Double(ProcessInfo.processInfo.environment["FPNSTREAM_TEST_BROKER_OUTAGE"] ?? "") ?? 3
        let b = MQTTTestBroker(persistent: true)
        do { try b.start() } catch let e as MQTTTestBroker.Unavailable { throw XCTSkip(e.description) }
        let sub = try b.subscribe("fpnstream/+/+", session: "outage-\(getpid())")
        usleep(300_000)
        let yaml = "instance: t\nhttp: {listen: \"127.0.0.1:0\"}\nmqtt: {broker: \"127.0.0.1:\(b.port)\", buffer: 10}\n"
            + "cameras:\n" + cameraLines(["a", "b"], maxFPS: 5) + "\n"
        let p = try serve("outage", yaml: yaml)
        let client = HTTPClient(base: "http://127.0.0.1:\(try XCTUnwrap(port("outage"), stderr("outage")))")
        let frames = { (id: String) in sub.messages().filter { $0.topic == "fpnstream/\(id)/frame" }.count }
        XCTAssertTrue(eventually { frames("a") >= 3 && frames("b") >= 3 }, "both cameras publish")

        b.stop()
        XCTAssertTrue(try eventually { value(try client.get("/metrics").text, "fpnstream_mqtt_connected") == 0 })
        Thread.sleep(forTimeInterval: outage)
        let during = try client.get("/metrics").text
        XCTAssertEqual(value(during, "fpnstream_mqtt_pending"), 10, "the buffer is full")
        XCTAssertGreaterThan(value(during, "fpnstream_mqtt_dropped_total") ?? 0, 0, "the overflow is counted")

        try b.restart()
        XCTAssertTrue(try eventually {
            let m = try client.get("/metrics").text
            return value(m, "fpnstream_mqtt_connected") == 1 && value(m, "fpnstream_mqtt_pending") == 0
        }, "the buffer drains after the restart")
        let dropped = Int(try XCTUnwrap(value(try client.get("/metrics").text, "fpnstream_mqtt_dropped_total")))
        let before = (frames("a"), frames("b"))
        XCTAssertTrue(eventually { frames("a") >= before.0 + 2 && frames("b") >= before.1 + 2 }, "publishing goes on")
        p.terminate()
        XCTAssertTrue(waitExit(p))
        XCTAssertEqual(p.terminationStatus, 0, stderr("outage"))

        // Every frame and event line of the JSONL reached the subscriber but the oldest messages of the outage
        // (for frames: one contiguous run per camera), and what did not adds up to the drops counted. Looped files
        // end and restart during a long outage, so their connection events go through the buffer too.
        func objects(_ id: String, _ kind: String) -> [[String: Any]] {
            sub.messages().filter { $0.topic == "fpnstream/\(id)/\(kind)" }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.payload.utf8)) as? [String: Any] }
        }
        func eventKey(_ o: [String: Any]) -> String { "\(o["event"] ?? "")@\(o["wall_time"] ?? "")" }
        var expected = 0, missing = 0, missingEvents = 0
        for id in ["a", "b"] {
            let lines = jsonl("\(id).jsonl")
            let written = lines.filter { $0["type"] as? String == "frame" }.compactMap { $0["frame"] as? Int }
            let events = Set(lines.filter { $0["type"] as? String == "event" }.map(eventKey))
            expected += written.count + events.count
        }
        sub.wait { _ in
            let got = ["a", "b"].map { Set(objects($0, "frame").compactMap { $0["frame"] as? Int }).count
                                        + Set(objects($0, "events").map(eventKey)).count }
            return got.reduce(0, +) >= expected - dropped
        }
        var total = 0
        for id in ["a", "b"] {
            let lines = jsonl("\(id).jsonl")
            let written = lines.filter { $0["type"] as? String == "frame" }.compactMap { $0["frame"] as? Int }
            let got = Set(objects(id, "frame").compactMap { $0["frame"] as? Int })
            XCTAssertTrue(got.isSubset(of: Set(written)), "\(id): only frames of the JSONL")
            let lost = written.indices.filter { !got.contains(written[$0]) }
            if let first = lost.first { XCTAssertEqual(lost, Array(first...lost.last!), "\(id): one run lost, \(lost)") }
            let events = Set(lines.filter { $0["type"] as? String == "event" }.map(eventKey))
            let gotEvents = Set(objects(id, "events").map(eventKey))
            XCTAssertTrue(gotEvents.isSubset(of: events), "\(id): only events of the JSONL")
            missing += lost.count
            missingEvents += events.subtracting(gotEvents).count
            total += written.count
        }
        print("broker stopped \(outage) s: \(total) frame lines, \(total - missing) delivered, \(missing) frames and "
              + "\(missingEvents) events missing, \(dropped) counted as dropped (buffer 10)")
        XCTAssertGreaterThan(dropped, 0)
        XCTAssertEqual(missing + missingEvents, dropped, "lost = counted as dropped; everything within the buffer delivered")
    }
}
