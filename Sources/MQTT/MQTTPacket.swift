/// MQTT 3.1.1 control packets (OASIS standard, 2014): the subset a publisher needs, encoded to and decoded from
/// bytes. No I/O here, so every encoding is unit-tested byte for byte.
public enum MQTTPacket: Equatable, Sendable {
    /// CONNECT (§3.1). `cleanSession` is always set: a publisher keeps no session on the broker.
    case connect(Connect)
    /// CONNACK (§3.2): `returnCode` 0 = accepted.
    case connack(sessionPresent: Bool, returnCode: UInt8)
    /// PUBLISH (§3.3); `packetID` only for QoS > 0.
    case publish(Publish)
    /// PUBACK (§3.4): the broker has a QoS 1 message.
    case puback(packetID: UInt16)
    /// SUBSCRIBE (§3.8) of topic filters at the given QoS.
    case subscribe(packetID: UInt16, filters: [(String, UInt8)])
    /// SUBACK (§3.9): granted QoS per filter (0x80 = failure).
    case suback(packetID: UInt16, codes: [UInt8])
    case pingreq, pingresp, disconnect

    public struct Connect: Equatable, Sendable {
        public var clientID: String
        public var keepAlive: UInt16
        public var username: String?
        public var password: String?
        /// Last will: published by the broker when the connection ends without DISCONNECT.
        public var will: Publish?

        public init(clientID: String, keepAlive: UInt16, username: String? = nil, password: String? = nil,
                    will: Publish? = nil) {
            self.clientID = clientID
            self.keepAlive = keepAlive
            self.username = username
            self.password = password
            self.will = will
        }
    }

    public struct Publish: Equatable, Sendable {
        public var topic: String
        public var payload: [UInt8]
        /// 0 or 1 (QoS 2 is not used).
        public var qos: UInt8
        public var retain: Bool
        public var dup: Bool
        public var packetID: UInt16?

        public init(topic: String, payload: [UInt8], qos: UInt8 = 1, retain: Bool = false, dup: Bool = false,
                    packetID: UInt16? = nil) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.dup = dup
            self.packetID = packetID
        }
    }

    public static func == (a: MQTTPacket, b: MQTTPacket) -> Bool { a.encoded() == b.encoded() }

    /// A packet that is not valid MQTT 3.1.1 (or not one this client understands).
    public struct DecodeError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    // MARK: - Encoding

    /// The packet's bytes: fixed header (type, flags, remaining length) and body.
    public func encoded() -> [UInt8] {
        var body: [UInt8] = []
        let first: UInt8
        switch self {
        case .connect(let c):
            first = 0x10
            body += Self.string("MQTT") + [4]  // protocol name and level 4 (3.1.1)
            var flags: UInt8 = 0x02            // clean session
            if let w = c.will { flags |= 0x04 | (w.qos << 3) | (w.retain ? 0x20 : 0) }
            if c.password != nil { flags |= 0x40 }
            if c.username != nil { flags |= 0x80 }
            body += [flags, UInt8(c.keepAlive >> 8), UInt8(c.keepAlive & 0xFF)]
            body += Self.string(c.clientID)
            if let w = c.will { body += Self.string(w.topic) + Self.u16(UInt16(w.payload.count)) + w.payload }
            if let u = c.username { body += Self.string(u) }
            if let p = c.password { body += Self.string(p) }
        case .connack(let present, let code):
            first = 0x20
            body = [present ? 1 : 0, code]
        case .publish(let p):
            first = 0x30 | (p.dup ? 0x08 : 0) | (p.qos << 1) | (p.retain ? 0x01 : 0)
            body = Self.string(p.topic)
            if p.qos > 0 { body += Self.u16(p.packetID ?? 0) }
            body += p.payload
        case .puback(let id):
            first = 0x40
            body = Self.u16(id)
        case .subscribe(let id, let filters):
            first = 0x82
            body = Self.u16(id)
            for (f, q) in filters { body += Self.string(f) + [q] }
        case .suback(let id, let codes):
            first = 0x90
            body = Self.u16(id) + codes
        case .pingreq: first = 0xC0
        case .pingresp: first = 0xD0
        case .disconnect: first = 0xE0
        }
        return [first] + Self.remainingLength(body.count) + body
    }

    /// The variable-length "remaining length" (§2.2.3): 7 bits a byte, high bit = more; at most 4 bytes.
    public static func remainingLength(_ n: Int) -> [UInt8] {
        precondition(n >= 0 && n <= 268_435_455, "MQTT packet too large")
        var out: [UInt8] = []
        var x = n
        repeat {
            var b = UInt8(x % 128)
            x /= 128
            if x > 0 { b |= 0x80 }
            out.append(b)
        } while x > 0
        return out
    }

    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }

    /// A UTF-8 string with its 2-byte length (§1.5.3).
    static func string(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        precondition(b.count <= 65535, "MQTT string too long")
        return u16(UInt16(b.count)) + b
    }

    // MARK: - Decoding

    /// Decodes the first whole packet in `bytes`: the packet and the bytes it used, nil when more bytes are
    /// needed, or `DecodeError` for malformed input.
    public static func decode(_ bytes: ArraySlice<UInt8>) throws -> (MQTTPacket, Int)? {
        guard let first = bytes.first else { return nil }
        var length = 0, multiplier = 1, i = bytes.startIndex + 1
        while true {
            guard i < bytes.endIndex else { return nil }
            let b = bytes[i]
            length += Int(b & 0x7F) * multiplier
            i += 1
            if b & 0x80 == 0 { break }
            multiplier *= 128
            if multiplier > 128 * 128 * 128 { throw DecodeError(description: "remaining length longer than 4 bytes") }
        }
        guard bytes.endIndex - i >= length else { return nil }
        let body = Array(bytes[i..<(i + length)])
        let used = i + length - bytes.startIndex
        return (try packet(type: first >> 4, flags: first & 0x0F, body: body), used)
    }

    private static func packet(type: UInt8, flags: UInt8, body: [UInt8]) throws -> MQTTPacket {
        var r = Reader(bytes: body)
        switch type {
        case 2:
            guard body.count == 2 else { throw DecodeError(description: "CONNACK of \(body.count) bytes") }
            return .connack(sessionPresent: body[0] & 1 == 1, returnCode: body[1])
        case 3:
            let qos = (flags >> 1) & 0x03
            guard qos < 3 else { throw DecodeError(description: "PUBLISH with QoS 3") }
            let topic = try r.string()
            let id = qos > 0 ? try r.u16() : nil
            return .publish(Publish(topic: topic, payload: r.rest(), qos: qos, retain: flags & 1 == 1,
                                    dup: flags & 0x08 != 0, packetID: id))
        case 4:
            guard body.count == 2 else { throw DecodeError(description: "PUBACK of \(body.count) bytes") }
            return .puback(packetID: try r.u16())
        case 9:
            let id = try r.u16()
            return .suback(packetID: id, codes: r.rest())
        case 13: return .pingresp
        case 12: return .pingreq
        case 14: return .disconnect
        default: throw DecodeError(description: "unexpected packet type \(type)")
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var at = 0
        mutating func u16() throws -> UInt16 {
            guard at + 2 <= bytes.count else { throw DecodeError(description: "packet ends inside a 2-byte field") }
            defer { at += 2 }
            return UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1])
        }
        mutating func string() throws -> String {
            let n = Int(try u16())
            guard at + n <= bytes.count else { throw DecodeError(description: "packet ends inside a string") }
            defer { at += n }
            guard let s = String(validating: bytes[at..<(at + n)], as: UTF8.self) else {
                throw DecodeError(description: "string is not UTF-8")
            }
            return s
        }
        func rest() -> [UInt8] { Array(bytes[at...]) }
    }
}
