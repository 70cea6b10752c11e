import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Connection settings of an `MQTTClient`.
public struct MQTTOptions: Sendable {
    public var host: String
    public var port: Int
    public var clientID: String
    public var username: String?
    /// Never printed: errors and `description` name the broker only.
    public var password: String?
    /// Seconds between PINGREQs when idle (the broker drops the client after 1.5×).
    public var keepAlive: UInt16 = 30
    /// Published by the broker if this client vanishes without DISCONNECT.
    public var will: MQTTPacket.Publish?
    /// Messages held (queued and unacknowledged) while the broker is slow or away; past it the oldest queued
    /// message is dropped and counted.
    public var bufferLimit = 10_000
    /// Seconds to connect and get CONNACK.
    public var connectTimeout: Double = 5
    /// Wait between reconnect attempts, seconds (fixed: a broker that comes back is used within this).
    public var reconnectDelay: Double = 1
    /// QoS 1 messages sent and not yet acknowledged at most.
    public var maxInFlight = 64

    public init(host: String, port: Int, clientID: String) {
        self.host = host
        self.port = port
        self.clientID = clientID
    }

    /// `host:port`, for messages.
    public var broker: String { "\(host):\(port)" }
}

/// Counters of an `MQTTClient`.
public struct MQTTStats: Sendable, Equatable {
    /// Messages handed to the broker (QoS 1: acknowledged by PUBACK; QoS 0: written).
    public var delivered = 0
    /// Messages dropped because the buffer was full.
    public var dropped = 0
    /// Messages waiting (queued or unacknowledged).
    public var pending = 0
    /// Successful connections.
    public var connections = 0
    /// True while connected.
    public var connected = false
}

/// Why the client could not talk to the broker (names the broker, never credentials).
public struct MQTTError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A small MQTT 3.1.1 publisher over a POSIX TCP socket, with one I/O thread.
///
/// `publish` never blocks: messages go to a bounded queue. The I/O thread connects (and reconnects every
/// `reconnectDelay` while the broker is away), sends queued messages (QoS 1 up to `maxInFlight` unacknowledged),
/// removes them on PUBACK, and pings when idle. On reconnect, unacknowledged messages are sent again with DUP set
/// (at-least-once). `stop()` waits (bounded) for the queue to drain, then sends DISCONNECT, so the last will is
/// not published on a clean stop.
public final class MQTTClient: @unchecked Sendable {
    public let options: MQTTOptions
    private let cond = NSCondition()
    private var queue: [MQTTPacket.Publish] = []       // not yet sent, oldest first
    private var inFlight: [UInt16: MQTTPacket.Publish] = [:]
    private var inFlightOrder: [UInt16] = []
    private var nextID: UInt16 = 1
    private var counters = MQTTStats()
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private var wakeFDs: [Int32] = [-1, -1]

    public init(options: MQTTOptions) {
        self.options = options
        var fds: [Int32] = [0, 0]
        if pipe(&fds) == 0 {
            wakeFDs = fds
            for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        }
    }

    deinit { for fd in wakeFDs where fd >= 0 { close(fd) } }

    public var stats: MQTTStats {
        cond.lock(); defer { cond.unlock() }
        var s = counters
        s.pending = queue.count + inFlight.count
        return s
    }

    /// Connects once, waiting for CONNACK, to check that the broker is there (then closes without a will).
    public static func probe(_ options: MQTTOptions) throws {
        var o = options
        o.will = nil
        let c = try MQTTConnection(options: o)
        c.send(MQTTPacket.disconnect.encoded())
        c.close()
    }

    /// Starts the I/O thread.
    public func start() {
        let t = Thread { [self] in run(); finished.signal() }
        t.name = "fpnstream.mqtt"
        thread = t
        t.start()
    }

    /// Queues a message; drops the oldest queued one (counted) when the buffer is full.
    public func publish(topic: String, payload: [UInt8], qos: UInt8 = 1, retain: Bool = false) {
        cond.lock()
        if queue.count + inFlight.count >= options.bufferLimit {
            if queue.isEmpty { counters.dropped += 1; cond.unlock(); return }
            queue.removeFirst()
            counters.dropped += 1
        }
        queue.append(MQTTPacket.Publish(topic: topic, payload: payload, qos: qos, retain: retain))
        cond.unlock()
        wake()
    }

    /// Publishes `finalMessages` (e.g. a retained "offline" status), waits at most `timeout` seconds for everything
    /// to be delivered, then disconnects cleanly and ends the thread.
    public func stop(timeout: Double = 2, finalMessages: [MQTTPacket.Publish] = []) {
        for m in finalMessages { publish(topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain) }
        let until = Date(timeIntervalSinceNow: timeout)
        cond.lock()
        while !(queue.isEmpty && inFlight.isEmpty) && counters.connected && Date() < until { _ = cond.wait(until: until) }
        stopping = true
        cond.broadcast()
        cond.unlock()
        wake()
        if thread != nil { finished.wait() }
    }

    private func wake() {
        var b: UInt8 = 1
        if wakeFDs[1] >= 0 { _ = write(wakeFDs[1], &b, 1) }
    }

    private var isStopping: Bool { cond.lock(); defer { cond.unlock() }; return stopping }

    // MARK: - I/O thread

    private func run() {
        while !isStopping {
            guard let c = try? MQTTConnection(options: options) else {
                sleepInterruptibly(options.reconnectDelay)
                continue
            }
            cond.lock()
            counters.connections += 1
            counters.connected = true
            // Unacknowledged messages go first again, marked as duplicates.
            let again = inFlightOrder.compactMap { inFlight[$0] }.map { m -> MQTTPacket.Publish in var m = m; m.dup = true; m.packetID = nil; return m }
            queue.insert(contentsOf: again, at: 0)
            inFlight.removeAll()
            inFlightOrder.removeAll()
            cond.broadcast()
            cond.unlock()
            serve(c)
            cond.lock()
            counters.connected = false
            cond.broadcast()
            cond.unlock()
            if isStopping { c.send(MQTTPacket.disconnect.encoded()) }
            c.close()
        }
    }

    /// Runs one connection until it fails or the client stops.
    private func serve(_ c: MQTTConnection) {
        var lastSend = Date()
        var awaitingPong = false
        while !isStopping {
            for packet in nextPackets() {
                guard c.send(packet) else { return }
                lastSend = Date()
            }
            let idle = Date().timeIntervalSince(lastSend)
            if idle >= Double(options.keepAlive) {
                if awaitingPong { return }  // no PINGRESP within a keep-alive period: the broker is gone
                guard c.send(MQTTPacket.pingreq.encoded()) else { return }
                awaitingPong = true
                lastSend = Date()
            }
            guard let packets = c.receive(wakeFD: wakeFDs[0], timeoutMs: 500) else { return }
            for p in packets {
                switch p {
                case .puback(let id): acknowledge(id)
                case .pingresp: awaitingPong = false
                default: break
                }
            }
        }
    }

    /// Queued messages that may go now (QoS 1 bounded by `maxInFlight`), encoded, with packet ids assigned.
    private func nextPackets() -> [[UInt8]] {
        cond.lock()
        defer { cond.unlock() }
        var out: [[UInt8]] = []
        while let m = queue.first, m.qos == 0 || inFlight.count < options.maxInFlight {
            queue.removeFirst()
            var p = m
            if p.qos > 0 {
                repeat { nextID = nextID == UInt16.max ? 1 : nextID + 1 } while inFlight[nextID] != nil
                p.packetID = nextID
                inFlight[nextID] = p
                inFlightOrder.append(nextID)
            } else {
                counters.delivered += 1
            }
            out.append(MQTTPacket.publish(p).encoded())
        }
        return out
    }

    private func acknowledge(_ id: UInt16) {
        cond.lock()
        if inFlight.removeValue(forKey: id) != nil {
            counters.delivered += 1
            inFlightOrder.removeAll { $0 == id }
        }
        cond.broadcast()
        cond.unlock()
    }

    private func sleepInterruptibly(_ seconds: Double) {
        let until = Date(timeIntervalSinceNow: seconds)
        cond.lock()
        while !stopping && Date() < until { _ = cond.wait(until: until) }
        cond.unlock()
    }
}
