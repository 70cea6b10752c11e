import Foundation

/// The live status on stderr: redrawn every half second on a terminal, a plain line every `interval` s otherwise.
/// `cam0 ● 25.0 fps  lat 41/63 ms  drop 12  err 0  reconn 1`
public final class LiveStatusLine: @unchecked Sendable {
    private var timer: DispatchSourceTimer?
    private let tty: Bool
    private var last: [Int: Int] = [:]
    private var lastTime = Date().timeIntervalSince1970
    private var drew = false

    /// Starts drawing `runner`'s status (nothing when stderr is not a terminal and `interval` is 0).
    public init(runner: LiveRunner, interval: Double) {
        tty = isatty(STDERR_FILENO) == 1
        guard tty || interval > 0 else { return }
        let period = tty ? 0.5 : max(interval, 1)
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "fpnstream.live.status"))
        t.schedule(deadline: .now() + period, repeating: period)
        t.setEventHandler { [weak self, weak runner] in
            guard let self, let runner else { return }
            self.draw(runner.status())
        }
        t.resume()
        timer = t
    }

    private func draw(_ all: [LiveStreamStatus]) {
        let now = Date().timeIntervalSince1970
        let dt = max(1e-3, now - lastTime)
        lastTime = now
        let parts = all.map { s -> String in
            let fps = Double(s.processed - (last[s.stream] ?? 0)) / dt
            last[s.stream] = s.processed
            return String(format: "#%d %@ %.1f fps  lat p50 %.0f p95 %.0f ms  drop %d  err %d  reconn %d",
                          s.stream, s.connected ? "●" : "○", fps, s.latency.percentile(0.5), s.latency.percentile(0.95),
                          s.dropped, s.live.decodeErrors, s.live.reconnects)
        }
        let line = parts.joined(separator: " | ")
        if tty {
            FileHandle.standardError.write(Data(("\r" + line + "\u{1B}[K").utf8))
            drew = true
        } else {
            FileHandle.standardError.write(Data(("status: " + line + "\n").utf8))
        }
    }

    /// Stops drawing and ends the terminal line.
    public func finish() {
        timer?.cancel()
        if tty && drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
