import Foundation
import XCTest

/// How much this process's peak resident memory grows while code runs: a deterministic stand-in for "nothing large
/// was allocated" where a time bound would be a timed test.
public enum PeakMemory {
    /// Runs `body` once to warm up (code pages and one-time caches are then resident), resets the kernel's
    /// high-water mark of this process to its current RSS (`/proc/self/clear_refs`), runs `body` again, and returns
    /// the high-water mark's growth over the RSS before that second run, in bytes. Nil when /proc does not allow it.
    /// Pages allocated but never touched do not count (the kernel has not backed them): a big `malloc` that is filled
    /// shows, a big `calloc` left untouched does not.
    public static func growth(afterWarmUp body: () throws -> Void) rethrows -> Int? {
        try body()
        guard reset(), let before = status("VmRSS") else { return nil }
        try body()
        guard let peak = status("VmHWM") else { return nil }
        return peak - before
    }

    /// Resets the kernel's peak RSS (VmHWM) of this process to the current RSS.
    static func reset() -> Bool {
        guard let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? h.close() }
        return (try? h.write(contentsOf: Data("5".utf8))) != nil
    }

    /// A `kB` field of /proc/self/status, in bytes.
    static func status(_ field: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return nil
    }
}

/// Asserts that a second run of `body` (the first warms up) raises this process's peak RSS by less than `limit`
/// bytes: a call refusing an absurd size must not allocate toward it first.
public func assertSmallPeakMemoryGrowth(below limit: Int = 4 << 20, _ what: String, file: StaticString = #filePath,
                                        line: UInt = #line, _ body: () -> Void) {
    guard let growth = PeakMemory.growth(afterWarmUp: body) else {
        return XCTFail("\(what): /proc/self/clear_refs or /proc/self/status not usable", file: file, line: line)
    }
    XCTAssertLessThan(growth, limit, "\(what): peak RSS grew by \(growth / 1024) KiB", file: file, line: line)
}
