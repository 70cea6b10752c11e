import Foundation

/// Locations of committed and fetched test inputs.
public enum TestPaths {
    /// The package root (found from this source file's location).
    public static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    /// `samples/` in the package.
    public static var samples: URL { root.appendingPathComponent("samples") }

    /// Real footage fetched by `scripts/fetch-samples` (git-ignored), e.g. `vtest.avi`.
    /// Returns nil when the file is absent, so callers can `XCTSkip` with a reason.
    public static func external(_ name: String) -> URL? {
        let url = samples.appendingPathComponent("external").appendingPathComponent(name)
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// `Tests/Fixtures/` (committed small fixtures).
    public static var fixtures: URL { root.appendingPathComponent("Tests/Fixtures") }

    /// A fresh temporary directory for one test; removed when the test process exits, if the test left it.
    public static func temporaryDirectory(_ tag: String = "test") -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("fpnstream-\(tag)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        ScratchDirectories.register(url)
        return url
    }
}

/// The directories `TestPaths.temporaryDirectory` made, removed at exit: a test (or a fixture cached for the whole
/// run) that does not remove its own leaves nothing in the temporary directory.
private enum ScratchDirectories {
    static let lock = NSLock()
    nonisolated(unsafe) static var urls: [URL] = []
    static let removeAtExit: Void = { atexit { ScratchDirectories.removeAll() } }()

    static func register(_ url: URL) {
        _ = removeAtExit
        lock.lock(); urls.append(url); lock.unlock()
    }

    static func removeAll() {
        lock.lock(); let all = urls; urls.removeAll(); lock.unlock()
        for url in all { try? FileManager.default.removeItem(at: url) }
    }
}
