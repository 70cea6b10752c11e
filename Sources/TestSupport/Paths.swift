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

    /// A fresh temporary directory for one test.
    public static func temporaryDirectory(_ tag: String = "test") -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("fpnstream-\(tag)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
