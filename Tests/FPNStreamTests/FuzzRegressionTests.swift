import Foundation
import TestSupport
import XCTest

/// Every input a fuzzer once crashed on (Fuzz/regressions/TARGET) and every seed (Fuzz/corpus/TARGET) goes
/// through its parser again, in the `fpnstream-fuzz` replay build, without a crash.
final class FuzzRegressionTests: XCTestCase {
    func testCrashInputsAndSeedsReplayCleanly() throws {
        guard let driver = ExternalTools.builtProduct("fpnstream-fuzz") else {
            throw XCTSkip("fpnstream-fuzz is not built (swift build --build-tests builds it)")
        }
        let fuzz = TestPaths.root.appendingPathComponent("Fuzz")
        for target in ["onnx", "safetensors", "pipeline-yaml", "mot", "decoder"] {
            let dirs = ["regressions", "corpus"].map { fuzz.appendingPathComponent("\($0)/\(target)").path }
                .filter { FileManager.default.fileExists(atPath: $0) }
            let count = try dirs.reduce(0) { $0 + (try FileManager.default.contentsOfDirectory(atPath: $1).count) }
            XCTAssertGreaterThan(count, 0, "no seeds for \(target)")
            let r = try ExternalTools.run(driver, [target] + dirs)
            XCTAssertEqual(r.status, 0, "\(target): \(r.stderr.suffix(3000))")
            XCTAssertEqual(r.stdoutText, "fpnstream-fuzz \(target): replayed \(count) input(s) without a crash\n")
        }
    }
}
