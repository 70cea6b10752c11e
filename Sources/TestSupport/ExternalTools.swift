import Foundation

/// The result of running an external program.
public struct ToolResult: Sendable {
    public var status: Int32
    public var stdout: Data
    public var stderr: String
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs command-line tools (ffmpeg, ffprobe, the built `fpnstream` binary) for tests: real programs as independent
/// producers and readers of media files.
public enum ExternalTools {
    public enum Failure: Error, CustomStringConvertible {
        case notFound(String)
        case failed(String, Int32, String)
        public var description: String {
            switch self {
            case .notFound(let n): return "\(n) not found on PATH (scripts/setup installs it)"
            case .failed(let n, let s, let e): return "\(n) exited with \(s): \(e.suffix(2000))"
            }
        }
    }

    /// Path of an executable product built next to the running test bundle (e.g. `.build/debug/fpnstream`), or nil
    /// when it was not built (`swift build --build-tests` builds it; `make test` runs that first).
    public static func builtProduct(_ name: String) -> String? {
        var dirs: [URL] = []
        if let exe = Bundle.main.executableURL { dirs.append(exe.deletingLastPathComponent()) }
        dirs.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for b in Bundle.allBundles where b.bundlePath.hasSuffix(".xctest") { dirs.append(b.bundleURL.deletingLastPathComponent()) }
        dirs.append(TestPaths.root.appendingPathComponent(".build/debug"))
        for d in dirs {
            let p = d.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// Full path of an executable on PATH, or nil.
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `executable` (a path, or a name looked up on PATH) with `arguments`, waits, and collects its output.
    /// `stdin` is fed from `input` when given (otherwise /dev/null).
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], input: Data? = nil,
                           environment: [String: String]? = nil) throws -> ToolResult {
        let path = executable.contains("/") ? executable : (which(executable) ?? "")
        guard FileManager.default.isExecutableFile(atPath: path) else { throw Failure.notFound(executable) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        try process.run()
        if let input {
            try? inPipe.fileHandleForWriting.write(contentsOf: input)
            try? inPipe.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a chatty child cannot fill one and block.
        final class Box: @unchecked Sendable { var data = Data() }  // written before leave(), read after wait()
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        process.waitUntilExit()
        return ToolResult(status: process.terminationStatus, stdout: outData,
                          stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs ffmpeg quietly and throws when it fails (for generating test clips).
    public static func ffmpeg(_ arguments: [String]) throws {
        let r = try run("ffmpeg", ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"] + arguments)
        if r.status != 0 { throw Failure.failed("ffmpeg", r.status, r.stderr) }
    }

    /// Number of video frames ffprobe counts by decoding `path` (`-count_frames`), or nil if ffprobe cannot read it.
    public static func ffprobeFrameCount(_ path: String) throws -> Int? {
        let r = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-count_frames",
                                    "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path])
        guard r.status == 0 else { return nil }
        // MPEG-TS lists the stream twice (under its program and alone): take the first non-empty line.
        let first = r.stdoutText.split(separator: "\n").first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        return first.flatMap { Int($0.split(separator: ",").first ?? "") }
    }

    /// One ffprobe entry for the first video stream or the format, e.g. `("stream", "codec_name")`,
    /// `("format", "duration")`; nil when ffprobe fails.
    public static func ffprobe(_ path: String, section: String, entry: String) throws -> String? {
        var args = ["-v", "error"]
        if section == "stream" { args += ["-select_streams", "v:0"] }
        args += ["-show_entries", "\(section)=\(entry)", "-of", "default=nw=1:nk=1", path]
        let r = try run("ffprobe", args)
        guard r.status == 0 else { return nil }
        let line = r.stdoutText.split(separator: "\n").first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        return line.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    /// Presentation times (seconds) of every video frame ffprobe decodes from `path`, in output order.
    public static func ffprobeFrameTimes(_ path: String) throws -> [Double] {
        let r = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time",
                                    "-of", "csv=p=0", path])
        guard r.status == 0 else { throw Failure.failed("ffprobe", r.status, r.stderr) }
        // Lines look like "0.040000" or "0.000000," (side data adds fields and blank lines).
        return r.stdoutText.split(separator: "\n").compactMap { line in
            line.split(separator: ",").first.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        }
    }
}
