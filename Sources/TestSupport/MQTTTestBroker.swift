import Foundation

/// Debian's `mosquitto` run by a test on a free loopback port (anonymous access, no persistence), and
/// `mosquitto_sub` subscribers that collect what it delivers. `stop()` (also called by deinit) ends the process;
/// `restart()` brings it back on the same port (a broker outage).
public final class MQTTTestBroker: @unchecked Sendable {
    /// Why a broker could not be started (tests turn it into XCTSkip when the tools are missing).
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    public private(set) var port: Int
    private var process: Process?
    private let dir: URL
    /// The only account when set (anonymous access off).
    private let account: (user: String, password: String)?
    /// Keep sessions (subscriptions and their queued messages) across `restart()`.
    private let persistent: Bool

    /// `persistent`: the broker saves its sessions when stopped and restores them at the next start, so a
    /// subscriber with a session (`subscribe(_:session:)`) gets what was published while it was away.
    public init(port: Int = 0, account: (user: String, password: String)? = nil, persistent: Bool = false) {
        self.port = port
        self.account = account
        self.persistent = persistent
        dir = TestPaths.temporaryDirectory("mosquitto")
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }

    /// A TCP port that was free a moment ago on 127.0.0.1.
    public static func freePort() -> Int {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Starts mosquitto and waits (at most `timeout` s) until it accepts connections.
    public func start(timeout: Double = 10) throws {
        stop()
        guard let exe = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].first(where: FileManager.default.isExecutableFile)
        else { throw Unavailable(description: "mosquitto missing (run scripts/setup)") }
        if port == 0 { port = Self.freePort() }
        let conf = dir.appendingPathComponent("mosquitto.conf")
        var text = "listener \(port) 127.0.0.1\nmax_queued_messages 100000\n"
        if persistent {
            text += "persistence true\npersistence_location \(dir.path)/\n"
            // Started as root, mosquitto writes its database as its own user.
            _ = try? ExternalTools.run("/bin/chown", ["-R", "mosquitto", dir.path])
        } else {
            text += "persistence false\n"
        }
        if let account {
            let passwd = dir.appendingPathComponent("passwd")
            try "\(account.user):\(account.password)\n".write(to: passwd, atomically: true, encoding: .utf8)
            let hashed = try ExternalTools.run("/usr/bin/mosquitto_passwd", ["-U", passwd.path])
            guard hashed.status == 0 else { throw Unavailable(description: "mosquitto_passwd failed: \(hashed.stderr)") }
            // Started as root, mosquitto reads the password file as its own user.
            _ = try? ExternalTools.run("/bin/chown", ["-R", "mosquitto", dir.path])
            text += "allow_anonymous false\npassword_file \(passwd.path)\n"
        } else {
            text += "allow_anonymous true\n"
        }
        try text.write(to: conf, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-c", conf.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let end = Date(timeIntervalSinceNow: timeout)
        while Date() < end {
            if Self.accepts(port: port) { return }
            if !p.isRunning { break }
            usleep(20_000)
        }
        stop()
        throw Unavailable(description: "mosquitto did not start on port \(port)")
    }

    /// SIGTERM and wait until the process is gone. Safe to call repeatedly.
    public func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
    }

    public func restart() throws { try start() }

    static func accepts(port: Int) -> Bool {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    /// Starts `mosquitto_sub -v -q 1 -t TOPIC` writing "topic payload" lines to a file; `lines()` reads them.
    /// `session`: a client id with a persistent session (`-c`): with a `persistent` broker, messages published while
    /// the broker was restarting and mosquitto_sub reconnecting are kept for it and delivered.
    public func subscribe(_ topic: String, session: String? = nil) throws -> Subscriber {
        guard let exe = ExternalTools.which("mosquitto_sub") else {
            throw Unavailable(description: "mosquitto_sub missing (run scripts/setup)")
        }
        let out = dir.appendingPathComponent("sub-\(UUID().uuidString).txt")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["-h", "127.0.0.1", "-p", String(port), "-q", "1", "-v", "-t", topic]
            + (session.map { ["-c", "-i", $0] } ?? [])
        p.standardOutput = try FileHandle(forWritingTo: out)
        p.standardError = FileHandle.nullDevice
        try p.run()
        return Subscriber(process: p, file: out)
    }

    /// A running `mosquitto_sub`.
    public final class Subscriber: @unchecked Sendable {
        let process: Process
        let file: URL
        init(process: Process, file: URL) { self.process = process; self.file = file }
        deinit { stop() }

        /// Received messages as (topic, payload), in order.
        public func messages() -> [(topic: String, payload: String)] {
            let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").map { line in
                let parts = line.split(separator: " ", maxSplits: 1)
                return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
            }
        }

        /// Polls (every 50 ms, at most `timeout` s) until `condition` holds; returns the messages then.
        @discardableResult
        public func wait(timeout: Double = 20, _ condition: ([(topic: String, payload: String)]) -> Bool)
            -> [(topic: String, payload: String)] {
            let end = Date(timeIntervalSinceNow: timeout)
            var m = messages()
            while !condition(m) && Date() < end { usleep(50_000); m = messages() }
            return m
        }

        public func stop() {
            if process.isRunning { process.terminate(); process.waitUntilExit() }
        }
    }
}
