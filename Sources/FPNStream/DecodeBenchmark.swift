import Foundation
import MediaIO
import StagePipeline

/// Decode + RGB24 conversion throughput of MediaIO against the ffmpeg CLI's plain decode
/// (`ffmpeg -i FILE -f null -`), measured alternately in the same run so machine load affects both alike.
public enum DecodeBenchmark {
    /// One side's measurements.
    public struct Side: Sendable {
        /// Frames per second of each run.
        public var fps: [Double]
        /// Median of `fps`.
        public var median: Double { fps.sorted()[fps.count / 2] }
    }

    /// What `run` measured.
    public struct Result: Sendable {
        public var frames: Int
        public var ours: Side
        public var ffmpeg: Side
        /// `ours.median / ffmpeg.median`.
        public var ratio: Double { ours.median / ffmpeg.median }
    }

    public enum Failure: Error, CustomStringConvertible {
        case ffmpegMissing
        case ffmpegFailed(String)
        public var description: String {
            switch self {
            case .ffmpegMissing: return "bench: the ffmpeg CLI is not on PATH (scripts/setup installs it)"
            case .ffmpegFailed(let m): return "bench: ffmpeg failed: \(m)"
            }
        }
    }

    /// Runs a warm-up (fills the page cache), then `runs` alternating measurements of both sides.
    /// - Ours: demux+decode on the calling thread, swscale to RGB24 on a second thread (as the pipeline's source and
    ///   preprocess stages do), timed by the pipeline from start to the last converted frame.
    /// - ffmpeg: `ffmpeg -benchmark -i FILE -f null -`, its `rtime` (the transcode loop, without process start-up
    ///   and probing), with the same automatic decoder threading.
    public static func run(path: String, runs: Int, outputSize: PixelSize? = nil,
                           progress: (String) -> Void = { _ in }) throws -> Result {
        guard let ffmpeg = ExecutableSearch.which("ffmpeg") else { throw Failure.ffmpegMissing }
        _ = try measureOurs(path: path, outputSize: outputSize)
        _ = try measureFFmpeg(ffmpeg, path: path)
        var ours: [Double] = [], theirs: [Double] = []
        var frames = 0
        for i in 0..<max(1, runs) {
            let o = try measureOurs(path: path, outputSize: outputSize)
            let f = try measureFFmpeg(ffmpeg, path: path)
            frames = o.frames
            ours.append(Double(o.frames) / o.seconds)
            theirs.append(Double(o.frames) / f)
            progress(String(format: "run %d/%d: fpnstream %.0f fps, ffmpeg %.0f fps", i + 1, runs,
                            ours.last!, theirs.last!))
        }
        return Result(frames: frames, ours: Side(fps: ours), ffmpeg: Side(fps: theirs))
    }

    /// Decodes the whole file through the runner's own source and convert stages (two queues, so decoding and
    /// conversion overlap as in `fpnstream process`). Returns frames and seconds.
    static func measureOurs(path: String, outputSize: PixelSize?) throws -> (frames: Int, seconds: Double) {
        let decoder = try VideoDecoder(location: path)
        final class Checksum: @unchecked Sendable { var value = 0 }  // written on the convert queue only
        let checksum = Checksum()
        let pipeline = Pipeline.from(DecodeSource(decoder: decoder))
            .then(ConvertStage(converter: RGBConverter(outputSize: outputSize)))
            .build { frame in checksum.value &+= Int(frame.image.pixels[frame.image.pixels.count / 2]) }
        let report = try pipeline.run()
        return (report.stages.last?.count ?? 0, report.wallSeconds)
    }

    /// Seconds of ffmpeg's own decode loop (`rtime` of `-benchmark`).
    static func measureFFmpeg(_ ffmpeg: String, path: String) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ffmpeg)
        process.arguments = ["-hide_banner", "-nostdin", "-benchmark", "-i", path, "-f", "null", "-"]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure.ffmpegFailed(text.split(separator: "\n").last.map(String.init) ?? "exit \(process.terminationStatus)")
        }
        guard let r = text.range(of: "rtime="),
              let seconds = Double(text[r.upperBound...].prefix(while: { $0.isNumber || $0 == "." })) else {
            throw Failure.ffmpegFailed("no rtime in its -benchmark output")
        }
        return seconds
    }
}

/// Finds programs on PATH.
enum ExecutableSearch {
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}
