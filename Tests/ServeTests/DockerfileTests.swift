import Foundation
import TestSupport
import XCTest
import Yams

/// What can be checked of the Dockerfile without Docker: its instructions parse, everything it copies from the
/// repository exists and is not ignored, it builds with the project's scripts, its runtime packages provide the
/// libraries the built binary links, and deploy/kubernetes runs the image it tags.
final class DockerfileTests: XCTestCase {
    private let root = TestPaths.root

    /// Instructions as (KEYWORD, arguments): comments dropped, `\` continuations joined.
    private func instructions() throws -> [(String, String)] {
        let text = try String(contentsOf: root.appendingPathComponent("Dockerfile"), encoding: .utf8)
        var out: [(String, String)] = []
        var pending = ""
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if pending.isEmpty && (line.isEmpty || line.hasPrefix("#")) { continue }
            if line.hasSuffix("\\") { pending += line.dropLast() + " "; continue }
            let whole = pending + line
            pending = ""
            let parts = whole.split(separator: " ", maxSplits: 1)
            out.append((String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        XCTAssertTrue(pending.isEmpty, "a continuation at the end of the file")
        return out
    }

    func testInstructionsParseAndCopyOnlyWhatExists() throws {
        let all = try instructions()
        let known: Set = ["ARG", "FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "ENV"]
        for (k, _) in all { XCTAssertTrue(known.contains(k), "unexpected instruction \(k)") }
        let froms = all.filter { $0.0 == "FROM" }.map(\.1)
        XCTAssertEqual(froms.count, 2, "build stage, runtime stage")
        XCTAssertEqual(froms.first, "${SWIFT_IMAGE} AS build")
        let swiftImage = all.first { $0.0 == "ARG" && $0.1.hasPrefix("SWIFT_IMAGE=") }?.1 ?? ""
        XCTAssertTrue(swiftImage.hasSuffix("-bookworm"), "a Debian 12 build image: \(swiftImage)")
        XCTAssertEqual(froms.last, "debian:bookworm-slim")

        let ignored = try String(contentsOf: root.appendingPathComponent(".dockerignore"), encoding: .utf8)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
        for (k, args) in all where k == "COPY" && !args.hasPrefix("--from") {
            let words = args.split(separator: " ").map(String.init)
            for source in words.dropLast() {
                XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent(source).path), "COPY \(source)")
                XCTAssertFalse(ignored.contains { source == $0 || source.hasPrefix($0 + "/") }, "\(source) is in .dockerignore")
            }
        }
        // Everything Package.swift needs to load is copied (every target directory lives under these).
        let copied = Set(all.filter { $0.0 == "COPY" && !$0.1.hasPrefix("--from") }.flatMap { $0.1.split(separator: " ").dropLast().map(String.init) })
        XCTAssertTrue(copied.isSuperset(of: ["Package.swift", "Makefile", "Sources", "Tests", "Fuzz"]), "\(copied)")

        // Built with the project's scripts: scripts/setup, then the Makefile's release target, whose product the
        // runtime stage copies onto the PATH.
        let runs = all.filter { $0.0 == "RUN" }.map(\.1)
        XCTAssertEqual(runs.first, "scripts/setup")
        XCTAssertTrue(runs.contains { $0.hasPrefix("make release SWIFT_BUILD_FLAGS=") && $0.contains("/out/fpnstream") })
        let makefile = try String(contentsOf: root.appendingPathComponent("Makefile"), encoding: .utf8)
        XCTAssertTrue(makefile.contains("release: setup\n\tswift build -c release $(SWIFT_BUILD_FLAGS)\n"))
        XCTAssertTrue(all.contains { $0.0 == "COPY" && $0.1 == "--from=build /out/fpnstream /usr/local/bin/fpnstream" })
        XCTAssertEqual(all.last { $0.0 == "ENTRYPOINT" }?.1, "[\"fpnstream\"]")
    }

    /// The runtime packages are the ones providing the libraries the built binary links (by soname).
    func testRuntimePackagesProvideTheLinkedLibraries() throws {
        guard let binary = ExternalTools.builtProduct("fpnstream") else { throw XCTSkip("fpnstream not built") }
        let ldd = try ExternalTools.run("/usr/bin/ldd", [binary]).stdoutText
        let runtime = try instructions().filter { $0.0 == "RUN" }.last?.1 ?? ""
        let wanted = ["libavformat", "libavcodec", "libswscale", "libavutil", "libopenblas"]
        for line in ldd.split(separator: "\n") {
            let name = line.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
            guard let lib = wanted.first(where: { name.hasPrefix($0 + ".so.") }) else { continue }
            let package = lib + name.dropFirst(lib.count + 4)  // libavformat.so.59 → libavformat59
            XCTAssertTrue(runtime.contains(" \(package) "), "\(name) needs \(package) in the runtime stage")
        }
        XCTAssertEqual(wanted.filter { w in ldd.contains(w + ".so.") }.count, wanted.count, ldd)
    }

    /// deploy/kubernetes runs the image the Dockerfile's header tags, with the binary it installs, on the port it
    /// exposes; docs/deploy.md points at the Dockerfile.
    func testKubernetesRunsTheImageTheDockerfileBuilds() throws {
        let text = try String(contentsOf: root.appendingPathComponent("Dockerfile"), encoding: .utf8)
        let tag = try XCTUnwrap(text.components(separatedBy: "docker build -t ").dropFirst().first?.split(separator: " ").first)
        let sts = try String(contentsOf: root.appendingPathComponent("deploy/kubernetes/statefulset.yaml"), encoding: .utf8)
        let doc = try XCTUnwrap(try Yams.load(yaml: sts) as? [String: Any])
        let container = try XCTUnwrap(((((doc["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"]
                                        as? [String: Any])?["containers"] as? [[String: Any]])?.first)
        XCTAssertEqual(container["image"] as? String, String(tag))
        XCTAssertTrue(((container["args"] as? [String])?.first ?? "").hasPrefix("exec fpnstream serve "))
        let port = (container["ports"] as? [[String: Any]])?.first?["containerPort"] as? Int
        XCTAssertTrue(try instructions().contains { $0.0 == "EXPOSE" && $0.1 == String(port ?? -1) })
        let deploy = try String(contentsOf: root.appendingPathComponent("docs/deploy.md"), encoding: .utf8)
        XCTAssertTrue(deploy.contains("docker build -t \(tag) ."), "docs/deploy.md names the build command")
    }
}
