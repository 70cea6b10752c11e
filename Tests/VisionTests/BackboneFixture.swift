import Foundation
import Tensor
import TestSupport
import Vision
import XCTest

/// A committed backbone parity fixture (Tests/Fixtures/backbone/NAME.safetensors, written by `scripts/parity
/// fixtures`): torch's transform output and pyramid levels for a small crop of a vtest.avi frame, plus every
/// backbone tensor except the conv weights, which `SyntheticWeights` regenerates bit for bit.
struct BackboneFixture {
    let file: SafeTensorsFile
    let name: String

    init(_ name: String) throws {
        self.name = name
        let url = TestPaths.fixtures.appendingPathComponent("backbone/\(name).safetensors")
        file = try SafeTensorsFile(url: url)
    }

    var metadata: [String: String] { file.metadata }

    func tensor(_ key: String) throws -> Tensor { try file.tensor(key) }

    /// Names of the levels stored under `prefix` (`fixture.ref.` or `fixture.odd.`), lowest stride first.
    func levels(_ prefix: String) -> [String] {
        file.keys.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
            .sorted { Int($0.dropFirst())! < Int($1.dropFirst())! }
    }

    /// Generated state dicts and default weight files, per fixture (tests in a class run one at a time).
    private static var cachedStateDicts: [String: [String: Tensor]] = [:]
    private static var cachedWeights: [String: URL] = [:]
    /// Weight files are ~47 MB each (ResNet-18): one directory, removed by `cleanUp()` in the classes' tearDown.
    private static var scratch = TestPaths.temporaryDirectory("backbone")

    /// Deletes every weights file written so far (call from `override class func tearDown()`).
    static func cleanUp() {
        try? FileManager.default.removeItem(at: scratch)
        cachedWeights = [:]
        scratch = TestPaths.temporaryDirectory("backbone")
    }

    /// The full backbone state dict: fixture tensors (BN, biases) + generated conv weights.
    func stateDict() throws -> [String: Tensor] {
        if let cached = Self.cachedStateDicts[name] { return cached }
        var out: [String: Tensor] = [:]
        // num_batches_tracked (I64, v2 BatchNorm) is optional for the loader and not a float tensor: left out.
        for key in file.keys where !key.hasPrefix("fixture.") && !key.hasSuffix("num_batches_tracked") {
            out[key] = try file.tensor(key)
        }
        let generated = metadata["generated_keys"]!.split(separator: ",").map(String.init)
        let sums = try file.tensor("fixture.weight_sums").array
        XCTAssertEqual(generated.count, sums.count)
        let config = try XCTUnwrap(BackboneConfig(architecture: metadata["architecture"]!))
        let shapes = try SyntheticWeights.expectedKeys(
            config, scratch: TestPaths.temporaryDirectory("keys").appendingPathComponent("empty.safetensors"))
        for (key, expectedSum) in zip(generated, sums) {
            let shape = try XCTUnwrap(shapes[key], "fixture key \(key) unknown to the Swift model")
            let t = SyntheticWeights.tensor(key: key, shape: shape)
            let sum = t.array.reduce(0.0) { $0 + Double($1) }
            // numpy's float64 sum of the same values, stored as F64 and read back as Float.
            XCTAssertEqual(sum, Double(expectedSum), accuracy: 1e-6 * max(1, abs(sum)), "generator drift for \(key)")
            out[key] = t
        }
        Self.cachedStateDicts[name] = out
        return out
    }

    /// Writes the state dict with the fixture's metadata (architecture, bn_eps) to a temporary weights file.
    func writeWeights(metadata overrides: [String: String] = [:], drop: [String] = [],
                      extra: [String: Tensor] = [:]) throws -> URL {
        let plain = overrides.isEmpty && drop.isEmpty && extra.isEmpty
        if plain, let url = Self.cachedWeights[name], FileManager.default.fileExists(atPath: url.path) { return url }
        var dict = try stateDict()
        for k in drop { dict[k] = nil }
        dict.merge(extra) { $1 }
        // Everything the Python side wrote about the model (architecture, bn_eps and the descriptive fields).
        var meta = metadata.filter { ["architecture", "bn_eps", "backbone", "returned_layers", "fpn_norm",
                                      "extra_blocks", "fpn_channels", "frozen_bn", "format"].contains($0.key) }
        meta.merge(overrides) { $1 }
        let url = Self.scratch.appendingPathComponent("weights-\(UUID().uuidString).safetensors")
        try SafeTensorsWriter.write(dict, metadata: meta, to: url)
        if plain { Self.cachedWeights[name] = url }
        return url
    }
}

/// Relative L2 error and max abs error / max |reference| of `got` against `reference`.
func parityErrors(_ got: Tensor, _ reference: Tensor) -> (relL2: Double, maxAbsRel: Double) {
    let g = got.array, r = reference.array
    var num = 0.0, den = 0.0, maxAbs = 0.0, maxRef = 0.0
    for i in r.indices {
        let d = Double(g[i]) - Double(r[i])
        num += d * d; den += Double(r[i]) * Double(r[i])
        maxAbs = max(maxAbs, abs(d)); maxRef = max(maxRef, abs(Double(r[i])))
    }
    return ((num / max(den, 1e-300)).squareRoot(), maxAbs / max(maxRef, 1e-300))
}

/// The tolerance: relative L2 ≤ 1e-5 and max abs ≤ 1e-4 · max|reference|.
func assertParity(_ got: Tensor, _ reference: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.shape, reference.shape, "\(what) shape", file: file, line: line)
    guard got.shape == reference.shape else { return }
    let e = parityErrors(got, reference)
    XCTAssertLessThanOrEqual(e.relL2, 1e-5, "\(what): relative L2 error", file: file, line: line)
    XCTAssertLessThanOrEqual(e.maxAbsRel, 1e-4, "\(what): max abs error / max|ref|", file: file, line: line)
}
