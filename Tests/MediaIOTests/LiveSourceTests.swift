import FPNCore
import Foundation
import MediaIO
import TestSupport
import XCTest

/// Live sources against a real RTSP server (scripts/rtsp-server) on loopback.
final class LiveSourceTests: XCTestCase {
    private var server: RTSPTestServer?

    override func tearDown() {
        server?.stop()
        server = nil
        super.tearDown()
    }

    private func startServer(_ args: [String] = []) throws -> RTSPTestServer {
        let s = RTSPTestServer(arguments: args)
        do { try s.start() } catch let e as RTSPTestServer.Unavailable { throw XCTSkip(e.description) }
        server = s
        return s
    }

    /// Options with short deadlines so outages resolve in about a second.
    private func fastOptions(_ transport: RTSPTransport = .tcp) -> LiveSourceOptions {
        var o = LiveSourceOptions()
        o.rtspTransport = transport
        o.openTimeout = 3
        o.stallTimeout = 1.5
        o.reconnect = ReconnectPolicy(initialDelay: 0.2, maxDelay: 1, multiplier: 2, jitter: 0.1, maxAttempts: 40)
        return o
    }

    /// Frames from `source`, stopping it after a safety limit so a broken deadline cannot hang the test run.
    private func pull(_ source: LiveSource, _ n: Int, guardSeconds: Double = 20) -> [Frame] {
        pull(source, guardSeconds: guardSeconds) { $0.count >= n }
    }

    /// Frames until `done(frames)` holds (checked after each frame).
    private func pull(_ source: LiveSource, guardSeconds: Double = 20, until done: ([Frame]) -> Bool) -> [Frame] {
        let guardTimer = DispatchWorkItem { source.stop() }
        DispatchQueue.global().asyncAfter(deadline: .now() + guardSeconds, execute: guardTimer)
        defer { guardTimer.cancel() }
        var frames: [Frame] = []
        while !done(frames), let f = source.next() { frames.append(f) }
        return frames
    }

    private func checkContinuous(_ frames: [Frame], from first: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(frames.map(\.info.index), Array(first..<(first + frames.count)), file: file, line: line)
        for (a, b) in zip(frames, frames.dropFirst()) {
            XCTAssertGreaterThan(b.info.pts, a.info.pts, "stream time must increase", file: file, line: line)
            XCTAssertGreaterThanOrEqual(b.info.wallTime, a.info.wallTime, file: file, line: line)
        }
    }

    func testFramesArriveOverTCP() throws {
        let s = try startServer(["--protocols", "tcp"])
        let events = EventLog()
        let source = try LiveSource(location: s.url, options: fastOptions(.tcp), onEvent: { events.append($0) })
        let frames = pull(source, 12)
        XCTAssertEqual(frames.count, 12)
        checkContinuous(frames, from: 0)
        XCTAssertEqual(frames.first?.info.width, 320)
        XCTAssertEqual(frames.first?.image.pixels.count, 320 * 240 * 3)
        XCTAssertEqual(frames.first?.info.pts, 0)
        // 25 fps: 11 intervals of 40 ms from the PTS.
        XCTAssertEqual(frames.last!.info.pts, 0.44, accuracy: 0.005)
        XCTAssertEqual(events.kinds, [.connected])
        XCTAssertEqual(events.all.first?.video?.hasPrefix("h264 320x240"), true)
        source.stop()
        XCTAssertNil(source.next())
    }

    func testFramesArriveOverUDP() throws {
        // The server refuses TCP, so frames can only come over UDP.
        let s = try startServer(["--protocols", "udp"])
        let source = try LiveSource(location: s.url, options: fastOptions(.udp))
        let frames = pull(source, 12)
        XCTAssertEqual(frames.count, 12)
        checkContinuous(frames, from: 0)

        var tcp = fastOptions(.tcp)
        tcp.openTimeout = 2
        let refused = try LiveSource(location: s.url, options: tcp)
        XCTAssertNil(refused.next(), "a UDP-only server must not deliver over TCP")
        if case .connectFailed = refused.failure {} else { XCTFail("expected connectFailed, got \(String(describing: refused.failure))") }
    }

    func testReconnectsAfterServerRestartAndIndicesContinue() throws {
        let s = try startServer()
        let events = EventLog()
        let source = try LiveSource(location: s.url, options: fastOptions(), onEvent: { events.append($0) })
        let before = pull(source, 5)
        XCTAssertEqual(before.count, 5)
        try s.restart()
        // Frames read while probing are still buffered: pull until the outage is over, then 5 more.
        var afterGap: Int?
        let after = pull(source) { frames in
            if afterGap == nil, events.kinds.contains(.reconnected) { afterGap = frames.count }
            return afterGap.map { frames.count >= $0 + 5 } ?? false
        }
        XCTAssertNotNil(afterGap, "no reconnect within the guard time")
        checkContinuous(before + after, from: 0)

        let kinds = events.kinds
        XCTAssertEqual(kinds.first, .connected)
        XCTAssertTrue(kinds.contains(.disconnected), "\(kinds)")
        XCTAssertEqual(kinds.filter { $0 == .reconnected }.count, 1, "\(kinds)")
        let disconnected = try XCTUnwrap(events.all.first { $0.event == .disconnected })
        XCTAssertEqual(disconnected.reason, "end of stream")
        let reconnected = try XCTUnwrap(events.all.first { $0.event == .reconnected })
        XCTAssertGreaterThan(reconnected.gapSeconds ?? 0, 0)
        // The event names the first frame after the outage; its wall-clock gap is the event's gap, and stream time
        // jumps by the same gap (timestamp rule), so later frames keep their spacing.
        let all = before + after
        let k = reconnected.nextIndex
        XCTAssertTrue(k > 0 && k < all.count, "\(k)")
        XCTAssertEqual(all[k].info.pts - all[k - 1].info.pts, reconnected.gapSeconds!, accuracy: 0.002)
        // Capture times are estimates never later than arrival, so they are at least the gap apart.
        XCTAssertGreaterThanOrEqual(all[k].info.wallTime - all[k - 1].info.wallTime, reconnected.gapSeconds! - 0.002)
        XCTAssertEqual(all[k + 2].info.pts - all[k + 1].info.pts, 0.04, accuracy: 0.001)
        XCTAssertEqual(source.stats.reconnects, 1)
        XCTAssertEqual(source.stats.connections, 2)
    }

    func testFrozenServerIsDetectedAsStallAndRecoversAfterThaw() throws {
        let s = try startServer()
        let events = EventLog()
        var options = fastOptions()
        options.stallTimeout = 1
        let source = try LiveSource(location: s.url, options: options, onEvent: { e in
            events.append(e)
            // Thaw once the stall was reported, so the reconnect can succeed.
            if e.event == .disconnected { s.thaw() }
        })
        let before = pull(source, 5)
        XCTAssertEqual(before.count, 5)
        s.freeze()
        var afterGap: Int?
        var receivedAt: [Int: Double] = [:]  // frame index → when next() returned it
        let after = pull(source) { frames in
            if let f = frames.last { receivedAt[f.info.index] = Date().timeIntervalSince1970 }
            if afterGap == nil, events.kinds.contains(.reconnected) { afterGap = frames.count }
            return afterGap.map { frames.count >= $0 + 5 } ?? false
        }
        XCTAssertNotNil(afterGap, "frames must continue after SIGCONT")
        checkContinuous(before + after, from: 0)

        let disconnected = try XCTUnwrap(events.all.first { $0.event == .disconnected })
        XCTAssertEqual(disconnected.reason, "stalled: no frame for 1.0 s")
        XCTAssertTrue(events.kinds.contains(.reconnected), "\(events.kinds)")
        // Detected by the deadline, not by a TCP timeout minutes later: the read after the last frame (buffered
        // data drains first) is interrupted one deadline later.
        let lastFrameAt = try XCTUnwrap(receivedAt[disconnected.nextIndex - 1])
        XCTAssertGreaterThanOrEqual(disconnected.wallTime - lastFrameAt, 1.0 - 0.01)
        XCTAssertLessThan(disconnected.wallTime - lastFrameAt, 1.0 + 0.5)
    }

    func testStopInterruptsABlockedRead() throws {
        let s = try startServer()
        var options = fastOptions()
        options.stallTimeout = 60  // only stop() can end the blocked read
        let source = try LiveSource(location: s.url, options: options)
        XCTAssertEqual(pull(source, 3).count, 3)
        s.freeze()
        let done = DispatchSemaphore(value: 0)
        let box = FrameCountBox()
        Thread.detachNewThread {
            while source.next() != nil { box.increment() }
            done.signal()
        }
        source.stop()
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success, "stop() must end a read blocked on a frozen server")
        XCTAssertEqual(source.stats.disconnects, 0, "a stop is not a disconnect")
        s.thaw()
    }

    func testGivesUpAfterMaxAttemptsWhenServerStaysDown() throws {
        let s = try startServer()
        var options = fastOptions()
        options.reconnect = ReconnectPolicy(initialDelay: 0.05, maxDelay: 0.1, multiplier: 2, jitter: 0, maxAttempts: 2)
        let events = EventLog()
        let source = try LiveSource(location: s.url, options: options, onEvent: { events.append($0) })
        XCTAssertEqual(pull(source, 3).count, 3)
        s.stop()
        while source.next() != nil {}
        XCTAssertEqual(source.failure, .gaveUp(source: s.url, attempts: 2, lastReason: events.all.last!.reason!))
        XCTAssertEqual(events.kinds.filter { $0 == .reconnecting }.count, 2)
        XCTAssertEqual(events.kinds.last, .gaveUp)
        XCTAssertEqual(source.stats.failedAttempts, 2)
    }

    func testBadURLFailsOnceWithRedactedMessage() throws {
        var options = fastOptions()
        options.openTimeout = 2
        let source = try LiveSource(location: "rtsp://admin:secret@127.0.0.1:1/none", options: options)
        XCTAssertNil(source.next())
        let message = try XCTUnwrap(source.failure).description
        XCTAssertTrue(message.hasPrefix("rtsp://***@127.0.0.1:1/none"), message)
        XCTAssertFalse(message.contains("secret"), message)
        XCTAssertThrowsError(try LiveSource(location: "rtsp://x", options: { var o = options; o.stallTimeout = 0; return o }()))
    }
}

/// Events collected from the source thread.
final class EventLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [LiveEvent] = []
    func append(_ e: LiveEvent) { lock.lock(); events.append(e); lock.unlock() }
    var all: [LiveEvent] { lock.lock(); defer { lock.unlock() }; return events }
    var kinds: [LiveEvent.Kind] { all.map(\.event) }
}

final class FrameCountBox: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() { lock.lock(); n += 1; lock.unlock() }
}

/// Damaged H.264 (corrupted MPEG-TS payload) through a live source: damaged frames are counted, not delivered.
final class LiveDamagedDataTests: XCTestCase {
    private func frames(_ name: String, skipDamaged: Bool = true) throws -> (frames: [Frame], stats: LiveSourceStats) {
        let url = TestPaths.fixtures.appendingPathComponent("live/\(name)")
        var o = LiveSourceOptions()
        o.skipDamagedFrames = skipDamaged
        o.reconnect.maxAttempts = 0  // end of file ends the source
        let source = try LiveSource(location: url.path, options: o)
        var out: [Frame] = []
        while let f = source.next() { out.append(f) }
        return (out, source.stats)
    }

    /// Mean absolute pixel difference over every 7th byte (the test target is built without optimization).
    private func mad(_ a: RGBImage, _ b: RGBImage) -> Double {
        precondition(a.pixels.count == b.pixels.count)
        var sum = 0, n = 0
        a.pixels.withUnsafeBufferPointer { pa in
            b.pixels.withUnsafeBufferPointer { pb in
                var k = 0
                while k < pa.count { sum += abs(Int(pa[k]) - Int(pb[k])); n += 1; k += 7 }
            }
        }
        return Double(sum) / Double(n)
    }

    /// True when `frames` are, in order, a subsequence of `reference` up to encoding noise.
    private func isCleanSubsequence(_ frames: [Frame], of reference: [Frame]) -> Bool {
        var r = 0
        for f in frames {
            while r < reference.count && mad(f.image, reference[r].image) > 0.5 { r += 1 }
            if r == reference.count { return false }
            r += 1
        }
        return true
    }

    func testDamagedFramesAreCountedAndNeverDelivered() throws {
        let clean = try frames("testsrc-clean.ts")
        XCTAssertEqual(clean.frames.count, 100)
        XCTAssertEqual(clean.stats.decodeErrors, 0)
        XCTAssertEqual(clean.stats.damagedFramesSkipped, 0)

        let damaged = try frames("testsrc-damaged.ts")
        XCTAssertGreaterThan(damaged.stats.damagedFramesSkipped, 0)
        XCTAssertGreaterThanOrEqual(damaged.stats.decodeErrors, damaged.stats.damagedFramesSkipped)
        // Every decoded frame is either delivered or counted, and what is delivered is undamaged.
        XCTAssertEqual(damaged.frames.count + damaged.stats.damagedFramesSkipped, 100)
        XCTAssertTrue(isCleanSubsequence(damaged.frames, of: clean.frames), "a damaged frame was delivered")

        // Control: with skipping off the damaged frames come through, and the check above catches them.
        let unfiltered = try frames("testsrc-damaged.ts", skipDamaged: false)
        XCTAssertEqual(unfiltered.frames.count, 100)
        XCTAssertFalse(isCleanSubsequence(unfiltered.frames, of: clean.frames))
    }
}

/// `--stride` and `--max-fps` on a 25 fps fixture: frames are skipped before conversion and counted.
final class LiveFrameRateTests: XCTestCase {
    private func run(_ configure: (inout LiveSourceOptions) -> Void) throws -> ([Frame], LiveSourceStats) {
        var o = LiveSourceOptions()
        o.reconnect.maxAttempts = 0
        configure(&o)
        let source = try LiveSource(location: TestPaths.fixtures.appendingPathComponent("live/testsrc-clean.ts").path,
                                    options: o)
        var out: [Frame] = []
        while let f = source.next() { out.append(f) }
        return (out, source.stats)
    }

    func testStrideKeepsEveryNthFrame() throws {
        let (frames, stats) = try run { $0.frameStride = 4 }
        XCTAssertEqual(frames.count, 25)
        XCTAssertEqual(stats.skippedByRate, 75)
        XCTAssertEqual(frames.map(\.info.index), Array(0..<25), "indices count delivered frames")
        for (a, b) in zip(frames, frames.dropFirst()) { XCTAssertEqual(b.info.pts - a.info.pts, 0.16, accuracy: 1e-6) }
    }

    func testMaxFPSSpacesFramesByStreamTime() throws {
        let (frames, stats) = try run { $0.minFrameInterval = 1.0 / 5 }
        XCTAssertEqual(frames.count, 20)
        XCTAssertEqual(stats.skippedByRate, 80)
        for (a, b) in zip(frames, frames.dropFirst()) { XCTAssertEqual(b.info.pts - a.info.pts, 0.2, accuracy: 1e-6) }
        XCTAssertThrowsError(try LiveSource(location: "x", options: { var o = LiveSourceOptions(); o.frameStride = 0; return o }()))
    }
}
