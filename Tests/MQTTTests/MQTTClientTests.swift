import Foundation
import MQTT
import TestSupport
import XCTest

/// `MQTTClient` against a real mosquitto on loopback, read back with mosquitto_sub.
final class MQTTClientTests: XCTestCase {
    private func broker() throws -> MQTTTestBroker {
        let b = MQTTTestBroker()
        do { try b.start() } catch let e as MQTTTestBroker.Unavailable { throw XCTSkip(e.description) }
        return b
    }

    private func options(_ b: MQTTTestBroker, id: String = "t-\(getpid())") -> MQTTOptions {
        var o = MQTTOptions(host: "127.0.0.1", port: b.port, clientID: id)
        o.reconnectDelay = 0.2
        return o
    }

    func testPublishesEveryMessageInOrderAtQoS1() throws {
        let b = try broker()
        let sub = try b.subscribe("test/#")
        usleep(300_000)  // the subscriber connects
        let c = MQTTClient(options: options(b))
        c.start()
        for i in 0..<200 { c.publish(topic: "test/n", payload: Array("\(i)".utf8)) }
        let got = sub.wait { $0.count >= 200 }
        c.stop()
        XCTAssertEqual(got.map(\.payload), (0..<200).map(String.init))
        XCTAssertEqual(Set(got.map(\.topic)), ["test/n"])
        XCTAssertEqual(c.stats.delivered, 200)
        XCTAssertEqual(c.stats.dropped, 0)
        XCTAssertEqual(c.stats.pending, 0)
    }

    func testLastWillOnlyWhenTheClientVanishes() throws {
        let b = try broker()
        let sub = try b.subscribe("status/#")
        usleep(300_000)
        var o = options(b, id: "will-1")
        o.will = MQTTPacket.Publish(topic: "status/a", payload: Array("offline".utf8), qos: 1, retain: false)
        o.keepAlive = 1
        // A clean stop sends DISCONNECT: no will.
        let clean = MQTTClient(options: o)
        clean.start()
        clean.publish(topic: "status/a", payload: Array("online".utf8))
        sub.wait { $0.count >= 1 }
        clean.stop()
        // A connection that goes away without DISCONNECT (a killed process): the broker publishes the will.
        o.clientID = "will-2"
        let vanishing = try RawConnection(options: o)
        vanishing.abort()
        sub.wait { $0.contains { $0.payload == "offline" } }
        usleep(300_000)  // a second "offline" (a will after the clean stop) would arrive by now
        XCTAssertEqual(sub.messages().map(\.payload), ["online", "offline"])
    }

    func testBrokerOutageIsBufferedThenDeliveredAndOverflowIsCounted() throws {
        let b = try broker()
        var o = options(b)
        o.bufferLimit = 50
        let c = MQTTClient(options: o)
        c.start()
        c.publish(topic: "out/x", payload: Array("before".utf8))
        let end = Date(timeIntervalSinceNow: 10)
        while c.stats.delivered < 1 && Date() < end { usleep(20_000) }
        XCTAssertEqual(c.stats.delivered, 1)

        b.stop()
        // Within the buffer: nothing lost. 70 messages into a buffer of 50: the 20 oldest are dropped, counted.
        for i in 0..<70 { c.publish(topic: "out/x", payload: Array("\(i)".utf8)) }
        XCTAssertEqual(c.stats.dropped, 20)
        XCTAssertEqual(c.stats.pending, 50)

        try b.restart()
        let sub = try b.subscribe("out/#")
        usleep(300_000)
        // The subscriber may connect after some were delivered; count deliveries instead, then what it saw.
        let end2 = Date(timeIntervalSinceNow: 20)
        while c.stats.pending > 0 && Date() < end2 { usleep(50_000) }
        XCTAssertEqual(c.stats.pending, 0)
        XCTAssertEqual(c.stats.delivered, 51)
        XCTAssertGreaterThanOrEqual(c.stats.connections, 2)
        c.publish(topic: "out/x", payload: Array("after".utf8))
        let got = sub.wait { $0.contains { $0.payload == "after" } }
        XCTAssertEqual(got.last?.payload, "after")
        c.stop()
    }

    func testCredentialsAreAcceptedAndAWrongPasswordIsRefused() throws {
        let b = MQTTTestBroker(account: ("cam-user", "p4ss w0rd!"))
        do { try b.start() } catch let e as MQTTTestBroker.Unavailable { throw XCTSkip(e.description) }
        var o = options(b)
        o.username = "cam-user"
        o.password = "p4ss w0rd!"
        XCTAssertNoThrow(try MQTTClient.probe(o))
        o.password = "wrong"
        XCTAssertThrowsError(try MQTTClient.probe(o)) { e in
            XCTAssertTrue("\(e)".contains("connection refused: "), "\(e)")
            XCTAssertFalse("\(e)".contains("wrong"))
        }
        o.username = nil
        o.password = nil
        XCTAssertThrowsError(try MQTTClient.probe(o), "anonymous access is off")
    }

    func testUnreachableBrokerAndBadCredentialsAreClearErrors() throws {
        var o = MQTTOptions(host: "127.0.0.1", port: MQTTTestBroker.freePort(), clientID: "x")
        o.password = "sekrit"
        o.username = "user"
        XCTAssertThrowsError(try MQTTClient.probe(o)) { e in
            XCTAssertTrue("\(e)".hasPrefix("127.0.0.1:\(o.port): cannot connect: "), "\(e)")
            XCTAssertFalse("\(e)".contains("sekrit"))
        }
    }
}

/// A raw MQTT connection that can vanish without DISCONNECT (for the last will).
private final class RawConnection {
    private let fd: Int32
    init(options o: MQTTOptions) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(o.port).bigEndian)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard r == 0 else { throw MQTTError(description: "connect failed") }
        let bytes = MQTTPacket.connect(.init(clientID: o.clientID, keepAlive: 60, will: o.will)).encoded()
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, bytes.count, 0) }
        var ack = [UInt8](repeating: 0, count: 4)
        guard recv(fd, &ack, 4, 0) == 4, ack[0] == 0x20, ack[3] == 0 else { throw MQTTError(description: "no CONNACK") }
    }
    /// Closes the socket without DISCONNECT: the broker publishes the will.
    func abort() { close(fd) }
}
