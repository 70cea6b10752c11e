import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One TCP connection to a broker, past CONNECT/CONNACK. Blocking sends, polled receives; used by one thread.
final class MQTTConnection {
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    /// Connects, sends CONNECT and waits for an accepting CONNACK, all within `options.connectTimeout`.
    /// - Throws: `MQTTError` naming the broker and the reason (never the credentials).
    init(options o: MQTTOptions) throws {
        let deadline = Date(timeIntervalSinceNow: o.connectTimeout)
        fd = try Self.connect(host: o.host, port: o.port, timeout: o.connectTimeout, broker: o.broker)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connect = MQTTPacket.connect(.init(clientID: o.clientID, keepAlive: o.keepAlive, username: o.username,
                                               password: o.password, will: o.will))
        guard send(connect.encoded()) else { close(); throw MQTTError(description: "\(o.broker): connection closed during CONNECT") }
        while true {
            let left = Int32(max(0, deadline.timeIntervalSinceNow) * 1000)
            guard left > 0, let packets = receive(wakeFD: -1, timeoutMs: left) else {
                close()
                throw MQTTError(description: "\(o.broker): no CONNACK within \(o.connectTimeout) s")
            }
            guard let first = packets.first else { continue }
            guard case .connack(_, let code) = first else {
                close()
                throw MQTTError(description: "\(o.broker): expected CONNACK")
            }
            guard code == 0 else {
                close()
                throw MQTTError(description: "\(o.broker): connection refused: \(Self.reason(code))")
            }
            return
        }
    }

    deinit { close() }

    static func reason(_ code: UInt8) -> String {
        switch code {
        case 1: return "unacceptable protocol version"
        case 2: return "client id rejected"
        case 3: return "server unavailable"
        case 4: return "bad user name or password"
        case 5: return "not authorized"
        default: return "return code \(code)"
        }
    }

    /// A connected, blocking TCP socket (IPv4 or IPv6, the first address that answers).
    private static func connect(host: String, port: Int, timeout: Double, broker: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let r = getaddrinfo(host, String(port), &hints, &list)
        guard r == 0, let first = list else {
            throw MQTTError(description: "\(broker): cannot resolve host: \(String(cString: gai_strerror(r)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if s < 0 { continue }
            // Non-blocking connect bounded by poll, then back to blocking.
            let flags = fcntl(s, F_GETFL)
            _ = fcntl(s, F_SETFL, flags | O_NONBLOCK)
            var rc = Glibc.connect(s, a.pointee.ai_addr, a.pointee.ai_addrlen)
            if rc < 0 && errno == EINPROGRESS {
                var p = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
                if poll(&p, 1, Int32(timeout * 1000)) == 1 {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len)
                    rc = err == 0 ? 0 : -1
                    errno = err
                } else {
                    errno = ETIMEDOUT
                }
            }
            if rc == 0 {
                _ = fcntl(s, F_SETFL, flags)
                return s
            }
            lastError = String(cString: strerror(errno))
            Glibc.close(s)
        }
        throw MQTTError(description: "\(broker): cannot connect: \(lastError)")
    }

    /// Writes all of `bytes`; false when the connection is gone.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard fd >= 0 else { return false }
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            sent += n
        }
        return true
    }

    /// Waits up to `timeoutMs` for data (or a byte on `wakeFD`, which is drained), then returns the whole packets
    /// read so far (possibly none); nil when the connection closed or sent something malformed.
    func receive(wakeFD: Int32, timeoutMs: Int32) -> [MQTTPacket]? {
        guard fd >= 0 else { return nil }
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        if wakeFD >= 0 { fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)) }
        let r = poll(&fds, nfds_t(fds.count), timeoutMs)
        if r < 0 && errno != EINTR { return nil }
        if fds.count > 1 && fds[1].revents & Int16(POLLIN) != 0 {
            var sink = [UInt8](repeating: 0, count: 64)
            while read(wakeFD, &sink, sink.count) > 0 {}
        }
        if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
        var out: [MQTTPacket] = []
        var at = 0
        do {
            while let (p, used) = try MQTTPacket.decode(buffer[at...]) {
                out.append(p)
                at += used
            }
        } catch {
            return nil
        }
        buffer.removeFirst(at)
        return out
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
