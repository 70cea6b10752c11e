import Foundation

/// `scripts/rtsp-server` (GStreamer's RTSP server through Debian's python3) run by a test on a free loopback port.
///
/// `start()` waits for the server's `READY rtsp://127.0.0.1:PORT/MOUNT` line; `restart()` brings it back on the same
/// port; `freeze()`/`thaw()` send SIGSTOP/SIGCONT; `stop()` (also called by deinit) always ends the process.
public final class RTSPTestServer: @unchecked Sendable {
    /// Why a server could not be started (tests turn it into XCTSkip when the tools are missing).
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// `rtsp://127.0.0.1:PORT/MOUNT` once started.
    public private(set) var url = ""
    /// The TCP port (fixed after the first start so restarts reuse it).
    public private(set) var port: Int
    private let arguments: [String]
    private var process: Process?

    /// A server with extra `scripts/rtsp-server` arguments, e.g. `["--protocols", "udp"]`. `port` 0 = any free port.
    public init(port: Int = 0, arguments: [String] = []) {
        self.port = port
        self.arguments = arguments
    }

    deinit { stop() }

    /// The script path, or `Unavailable` when Debian's python3 or the GStreamer bindings are missing.
    public static func script() throws -> URL {
        let script = TestPaths.root.appendingPathComponent("scripts/rtsp-server")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw Unavailable(description: "/usr/bin/python3 missing (run scripts/setup)")
        }
        return script
    }

    /// Starts the server and waits (at most `timeout` s) for its READY line.
    public func start(timeout: Double = 15) throws {
        stop()
        let p = Process()
        p.executableURL = try Self.script()
        p.arguments = ["--port", String(port)] + arguments
        let out = Pipe()
        // stderr to a file: an unread pipe would fill up and block the server.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("rtsp-server-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        p.standardOutput = out
        p.standardError = try FileHandle(forWritingTo: errURL)
        try p.run()
        process = p

        // Read stdout on a helper thread so the wait can time out.
        let ready = DispatchSemaphore(value: 0)
        let box = LineBox()
        Thread.detachNewThread {
            var buffer = Data()
            while true {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                if let text = String(data: buffer, encoding: .utf8), let line = text.split(separator: "\n").first(where: { $0.hasPrefix("READY ") }) {
                    box.set(String(line.dropFirst(6)))
                    break
                }
            }
            ready.signal()
        }
        if ready.wait(timeout: .now() + timeout) == .timedOut || box.value == nil {
            stop()
            let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
            throw Unavailable(description: "rtsp-server did not start: \(stderr.prefix(500))")
        }
        url = box.value!
        if let p = URL(string: url)?.port { port = p }
    }

    /// SIGTERM and wait until the process is gone. Safe to call repeatedly.
    public func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning {
            kill(p.processIdentifier, SIGCONT)  // a frozen process cannot handle SIGTERM
            p.terminate()
            p.waitUntilExit()
        }
    }

    /// Stops the server and starts it again on the same port.
    public func restart() throws {
        stop()
        try start()
    }

    /// SIGSTOP: the server keeps its sockets open but sends nothing (a hung camera).
    public func freeze() { if let p = process { kill(p.processIdentifier, SIGSTOP) } }

    /// SIGCONT after `freeze()`.
    public func thaw() { if let p = process { kill(p.processIdentifier, SIGCONT) } }

    /// The process id while running (for tests that signal it themselves).
    public var processIdentifier: Int32? { process?.processIdentifier }
}

private final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var line: String?
    func set(_ s: String) { lock.lock(); line = s; lock.unlock() }
    var value: String? { lock.lock(); defer { lock.unlock() }; return line }
}
