import Foundation
import MediaIO
import StagePipeline

/// Decode + RGB24 conversion throughput of MediaIO against the ffmpeg CLI's plain decode
/// (`ffmpeg -i FILE -f null -`) and its decode + RGB24 (`-pix_fmt rgb24`), measured alternately in the same run so
/// machine load affects all alike.
public enum DecodeBenchmark {
    /// One side's measurements.
    public struct Side: Sendable {
        /// Frames per second (wall clock) of each run.
        public var fps: [Double]
        /// CPU milliseconds (user + system, all threads) per frame of each run.
        public var cpuMsPerFrame: [Double]
        /// Median of `fps`.
        public var median: Double { Self.median(fps) }
        /// Median of `cpuMsPerFrame`.
        public var medianCPU: Double { Self.median(cpuMsPerFrame) }
        static func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
    }

    /// What `run` measured.
    public struct Result: Sendable {
        public var frames: Int
        /// fpnstream: decode + RGB24.
        public var ours: Side
        /// `ffmpeg -i FILE -f null -`: decode only (the target's reference).
        public var ffmpeg: Side
        /// `ffmpeg -i FILE -pix_fmt rgb24 -f null -`: decode + the same conversion (like for like).
        public var ffmpegRGB: Side
        /// Throughput ratio against plain decode: `ours.median / ffmpeg.median`.
        public var ratio: Double { ours.median / ffmpeg.median }
        /// Throughput ratio against ffmpeg doing the same conversion.
        public var ratioRGB: Double { ours.median / ffmpegRGB.median }
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

    /// Runs a warm-up (fills the page cache), then `runs` alternating measurements of the three sides.
    /// - Ours: demux+decode on the calling thread, swscale to RGB24 on a second thread (as the pipeline's source and
    ///   preprocess stages do), timed by the pipeline from start to the last converted frame.
    /// - ffmpeg: `ffmpeg -benchmark -i FILE -f null -` (and with `-pix_fmt rgb24`), its `rtime` (the transcode loop,
    ///   without process start-up and probing), with the same automatic decoder threading.
    /// CPU time per frame is reported too: unlike throughput it does not depend on whether a second core is free.
    public static func run(path: String, runs: Int, outputSize: PixelSize? = nil,
                           progress: (String) -> Void = { _ in }) throws -> Result {
        guard let ffmpeg = ExecutableSearch.which("ffmpeg") else { throw Failure.ffmpegMissing }
        _ = try measureOurs(path: path, outputSize: outputSize)
        _ = try measureFFmpeg(ffmpeg, path: path, rgb: false)
        var ours = Side(fps: [], cpuMsPerFrame: []), plain = ours, rgb = ours
        var frames = 0
        for i in 0..<max(1, runs) {
            let o = try measureOurs(path: path, outputSize: outputSize)
            let f = try measureFFmpeg(ffmpeg, path: path, rgb: false)
            let r = try measureFFmpeg(ffmpeg, path: path, rgb: true)
            frames = o.frames
            let n = Double(max(1, o.frames))
            ours.fps.append(n / o.seconds); ours.cpuMsPerFrame.append(o.cpu * 1000 / n)
            plain.fps.append(n / f.seconds); plain.cpuMsPerFrame.append(f.cpu * 1000 / n)
            rgb.fps.append(n / r.seconds); rgb.cpuMsPerFrame.append(r.cpu * 1000 / n)
            progress(String(format: "run %d/%d: fpnstream %.0f fps, ffmpeg %.0f fps, ffmpeg+rgb24 %.0f fps", i + 1, runs,
                            ours.fps.last!, plain.fps.last!, rgb.fps.last!))
        }
        return Result(frames: frames, ours: ours, ffmpeg: plain, ffmpegRGB: rgb)
    }

    /// Decodes the whole file through the runner's own source and convert stages (two queues, so decoding and
    /// conversion overlap as in `fpnstream process`). Returns frames, wall seconds and CPU seconds.
    static func measureOurs(path: String, outputSize: PixelSize?) throws -> (frames: Int, seconds: Double, cpu: Double) {
        let cpuBefore = processCPUSeconds()
        let decoder = try VideoDecoder(location: path)
        final class Checksum: @unchecked Sendable { var value = 0 }  // written on the convert queue only
        let checksum = Checksum()
        let pipeline = Pipeline.from(DecodeSource(decoder: decoder))
            .then(ConvertStage(converter: RGBConverter(outputSize: outputSize)))
            .build { frame in checksum.value &+= Int(frame.image.pixels[frame.image.pixels.count / 2]) }
        let report = try pipeline.run()
        return (report.stages.last?.count ?? 0, report.wallSeconds, processCPUSeconds() - cpuBefore)
    }

    /// User + system CPU seconds of this process so far (all threads).
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    /// ffmpeg's own decode loop: `rtime` and `utime + stime` of `-benchmark`.
    static func measureFFmpeg(_ ffmpeg: String, path: String, rgb: Bool) throws -> (seconds: Double, cpu: Double) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ffmpeg)
        process.arguments = ["-hide_banner", "-nostdin", "-benchmark", "-i", path]
            + (rgb ? ["-pix_fmt", "rgb24"] : []) + ["-f", "null", "-"]
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
        func value(_ key: String) -> Double? {
            guard let r = text.range(of: key + "=") else { return nil }
            return Double(text[r.upperBound...].prefix(while: { $0.isNumber || $0 == "." }))
        }
        guard let rtime = value("rtime"), let utime = value("utime"), let stime = value("stime") else {
            throw Failure.ffmpegFailed("no rtime/utime/stime in its -benchmark output")
        }
        return (rtime, utime + stime)
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
