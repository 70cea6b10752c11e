import Foundation
import TestSupport
import XCTest

/// `fpnstream bench …` through the built binary: what goes to stdout (the report) and stderr (progress).
final class BenchCommandTests: XCTestCase {
    /// Progress of the timed frames goes to stderr (a line per frame with --progress-interval 0 when stderr is not a
    /// terminal); the report on stdout is unchanged.
    func testBenchBackboneReportsProgress() throws {
        let binary = try XCTUnwrap(ExternalTools.builtProduct("fpnstream"), "run `swift build --build-tests` first")
        let r = try ExternalTools.run(binary, ["bench", "backbone", "--arch", "resnet18-fpn", "--size", "64x64",
                                               "--frames", "20", "--profile-frames", "1", "--progress-interval", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let progress = r.stderr.split(separator: "\n").filter { $0.hasPrefix("progress: ") }
        XCTAssertEqual(progress.count, 20, r.stderr)
        XCTAssertTrue(progress.last?.hasPrefix("progress: 20/20 frames (100%)") ?? false, r.stderr)
        XCTAssertTrue(r.stdoutText.contains("frame: median "), r.stdoutText)
        XCTAssertFalse(r.stdoutText.contains("progress:"))
    }
}
