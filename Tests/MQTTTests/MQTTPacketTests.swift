import MQTT
import XCTest

/// Byte-exact encodings from the MQTT 3.1.1 standard's layouts, and decoding of what a broker sends.
final class MQTTPacketTests: XCTestCase {
    func testRemainingLengthBoundaries() {
        // §2.2.3 table: 1 to 4 bytes.
        XCTAssertEqual(MQTTPacket.remainingLength(0), [0x00])
        XCTAssertEqual(MQTTPacket.remainingLength(127), [0x7F])
        XCTAssertEqual(MQTTPacket.remainingLength(128), [0x80, 0x01])
        XCTAssertEqual(MQTTPacket.remainingLength(16_383), [0xFF, 0x7F])
        XCTAssertEqual(MQTTPacket.remainingLength(16_384), [0x80, 0x80, 0x01])
        XCTAssertEqual(MQTTPacket.remainingLength(2_097_152), [0x80, 0x80, 0x80, 0x01])
        XCTAssertEqual(MQTTPacket.remainingLength(268_435_455), [0xFF, 0xFF, 0xFF, 0x7F])
    }

    func testConnectWithWillAndCredentials() {
        let will = MQTTPacket.Publish(topic: "t/s", payload: Array("off".utf8), qos: 1, retain: true)
        let bytes = MQTTPacket.connect(.init(clientID: "c1", keepAlive: 30, username: "u", password: "pw", will: will)).encoded()
        let body: [UInt8] = [0, 4] + Array("MQTT".utf8) + [4,
            0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02,   // user, password, will retain, will QoS 1, will, clean session
            0, 30,
            0, 2] + Array("c1".utf8) + [0, 3] + Array("t/s".utf8) + [0, 3] + Array("off".utf8)
            + [0, 1] + Array("u".utf8) + [0, 2] + Array("pw".utf8)
        XCTAssertEqual(bytes, [0x10, UInt8(body.count)] + body)
    }

    func testConnectMinimal() {
        let bytes = MQTTPacket.connect(.init(clientID: "", keepAlive: 60)).encoded()
        XCTAssertEqual(bytes, [0x10, 12, 0, 4, 0x4D, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, 0, 0])
    }

    func testPublishQoS0AndQoS1() {
        XCTAssertEqual(MQTTPacket.publish(.init(topic: "a/b", payload: [1, 2], qos: 0)).encoded(),
                       [0x30, 7, 0, 3, 0x61, 0x2F, 0x62, 1, 2])
        XCTAssertEqual(MQTTPacket.publish(.init(topic: "a", payload: [9], qos: 1, retain: true, dup: true, packetID: 0x0102)).encoded(),
                       [0x3B, 6, 0, 1, 0x61, 0x01, 0x02, 9])
        // A payload past 127 bytes takes a 2-byte length.
        let big = MQTTPacket.publish(.init(topic: "t", payload: [UInt8](repeating: 7, count: 200), qos: 1, packetID: 5)).encoded()
        XCTAssertEqual(Array(big[0..<3]), [0x32, 0xCD, 0x01])  // 2 + 1 + 2 + 200 = 205 = 77 + 128 × 1
        XCTAssertEqual(big.count, 3 + 205)
    }

    func testSmallPackets() {
        XCTAssertEqual(MQTTPacket.puback(packetID: 0xABCD).encoded(), [0x40, 2, 0xAB, 0xCD])
        XCTAssertEqual(MQTTPacket.pingreq.encoded(), [0xC0, 0])
        XCTAssertEqual(MQTTPacket.disconnect.encoded(), [0xE0, 0])
        XCTAssertEqual(MQTTPacket.subscribe(packetID: 1, filters: [("x/#", 1)]).encoded(),
                       [0x82, 8, 0, 1, 0, 3, 0x78, 0x2F, 0x23, 1])
    }

    func testDecodesBrokerPacketsAndWaitsForWholeOnes() throws {
        let stream: [UInt8] = [0x20, 2, 0, 0, 0x40, 2, 0, 7, 0xD0, 0, 0x33, 5, 0, 1, 0x7A, 0, 9]
        var at = 0
        var got: [MQTTPacket] = []
        while let (p, used) = try MQTTPacket.decode(stream[at...]) { got.append(p); at += used }
        XCTAssertEqual(at, stream.count)
        XCTAssertEqual(got, [.connack(sessionPresent: false, returnCode: 0), .puback(packetID: 7), .pingresp,
                             .publish(.init(topic: "z", payload: [], qos: 1, retain: true, packetID: 9))])
        // Cut anywhere inside a packet: nothing yet.
        for cut in 1..<4 { XCTAssertNil(try MQTTPacket.decode(stream[0..<cut])) }
        XCTAssertNil(try MQTTPacket.decode(stream[0..<0]))
    }

    func testRoundTripsPublish() throws {
        let p = MQTTPacket.publish(.init(topic: "fpnstream/cam-1/frame", payload: Array("{\"frame\":1}".utf8), qos: 1, packetID: 42))
        let (back, used) = try XCTUnwrap(MQTTPacket.decode(p.encoded()[...]))
        XCTAssertEqual(back, p)
        XCTAssertEqual(used, p.encoded().count)
    }

    func testMalformedInputIsAnError() {
        XCTAssertThrowsError(try MQTTPacket.decode([0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][...]), "5-byte length")
        XCTAssertThrowsError(try MQTTPacket.decode([0x20, 3, 0, 0, 0][...]), "CONNACK of 3 bytes")
        XCTAssertThrowsError(try MQTTPacket.decode([0x30, 3, 0, 5, 0x61][...]), "string past the end")
        XCTAssertThrowsError(try MQTTPacket.decode([0x00, 0][...]), "reserved type 0")
    }
}
