import Foundation

/// Progress on stderr while frames flow: a redrawn bar on a terminal, periodic plain lines otherwise (logs, CI).
/// `frameDone` is called from the pipeline's last queue; drawing is throttled so it costs nothing per frame.
public final class ProgressReporter: @unchecked Sendable {
    /// A redrawn bar, plain lines, or nothing.
    public enum Style: Sendable { case bar, lines, none }

    private let style: Style
    private let total: Int?
    private let lineInterval: Double
    private let lock = NSLock()
    private let start = DispatchTime.now().uptimeNanoseconds
    private var done = 0
    private var lastDraw: Double = -1
    private var lastLine: Double = 0
    private var drewBar = false

    /// `total`: expected frame count (nil when unknown, e.g. live). `lineInterval`: seconds between plain lines.
    public init(style: Style, total: Int?, lineInterval: Double = 5) {
        self.style = style
        self.total = total
        self.lineInterval = lineInterval
    }

    /// `.bar` when stderr is a terminal, `.lines` otherwise, `.none` when quiet.
    public static func automaticStyle(quiet: Bool) -> Style {
        if quiet { return .none }
        return isatty(STDERR_FILENO) == 1 ? .bar : .lines
    }

    private var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }

    /// Counts one frame; draws when the style's interval has passed.
    public func frameDone() {
        guard style != .none else { return }
        lock.lock(); defer { lock.unlock() }
        done += 1
        let t = elapsed
        switch style {
        case .bar where t - lastDraw >= 0.1:
            lastDraw = t
            write("\r" + Self.barLine(done: done, total: total, elapsed: t) + "\u{1B}[K")
            drewBar = true
        case .lines where t - lastLine >= lineInterval:
            lastLine = t
            write("progress: " + Self.plainLine(done: done, total: total, elapsed: t) + "\n")
        default:
            break
        }
    }

    /// Ends the bar line (the final summary goes below it).
    public func finish() {
        lock.lock(); defer { lock.unlock() }
        if style == .bar && drewBar {
            write("\r" + Self.barLine(done: done, total: total, elapsed: elapsed) + "\u{1B}[K\n")
        }
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    static func fps(_ done: Int, _ elapsed: Double) -> Double { elapsed > 0 ? Double(done) / elapsed : 0 }

    static func eta(done: Int, total: Int?, elapsed: Double) -> String? {
        guard let total, done > 0, total >= done else { return nil }
        let rate = fps(done, elapsed)
        guard rate > 0 else { return nil }
        return clock(Double(total - done) / rate)
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }

    /// `  312/795 [██████░░░░░░░░░░]  39%  48.2 fps  ETA 0:10`
    public static func barLine(done: Int, total: Int?, elapsed: Double) -> String {
        let rate = String(format: "%.1f fps", fps(done, elapsed))
        guard let total, total > 0 else { return "\(done) frames  \(rate)  \(clock(elapsed))" }
        let width = 24
        let fraction = min(1, Double(done) / Double(total))
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let eta = eta(done: done, total: total, elapsed: elapsed).map { "  ETA \($0)" } ?? ""
        return String(format: "%5d/%d [%@] %3d%%  %@%@", done, total, bar, Int(fraction * 100), rate, eta)
    }

    /// `312/795 frames (39%), 48.2 fps, elapsed 0:06, ETA 0:10`
    public static func plainLine(done: Int, total: Int?, elapsed: Double) -> String {
        var s = "\(done)"
        if let total, total > 0 { s += "/\(total) frames (\(Int(min(1, Double(done) / Double(total)) * 100))%)" }
        else { s += " frames" }
        s += String(format: ", %.1f fps, elapsed %@", fps(done, elapsed), clock(elapsed))
        if let eta = eta(done: done, total: total, elapsed: elapsed) { s += ", ETA \(eta)" }
        return s
    }
}
