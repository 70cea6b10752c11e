import ArgumentParser
import FPNStream
import Foundation
import MediaIO

/// `fpnstream bench decode FILE`: decode + RGB24 throughput against ffmpeg (`DecodeBenchmark`).
struct BenchDecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode + RGB24 conversion throughput vs `ffmpeg -i FILE -f null -` (median of several runs each).",
        discussion: """
            Runs fpnstream, `ffmpeg -f null` and `ffmpeg -pix_fmt rgb24 -f null` alternately after a warm-up and \
            prints frames per second (median) and CPU time per frame for each, and the throughput ratios. \
            fpnstream decodes on one thread and converts to RGB24 on another (as the pipeline does); ffmpeg's time is \
            the `rtime` of its -benchmark report (its decode loop, without process start-up). On a loaded machine the \
            throughput ratio falls towards the CPU-time ratio (the conversion needs a free core to overlap).

            Example:
              fpnstream bench decode samples/external/vtest.avi --runs 7
            """
    )

    @Argument(help: "Video file to decode.")
    var file: String

    @Option(help: "Measured runs per side (the median is reported).")
    var runs = 5

    @Option(help: "Convert straight to WIDTHxHEIGHT instead of the native size, e.g. 640x384.")
    var size: String?

    func run() throws {
        FFmpegLogLevel.set(.quiet)
        var target: PixelSize?
        if let size {
            let parts = size.lowercased().split(separator: "x").compactMap { Int($0) }
            guard parts.count == 2, parts[0] > 0, parts[1] > 0 else {
                throw CLIFailure(message: "--size \(size): expected WIDTHxHEIGHT, e.g. 640x384", status: ExitStatus.usageError)
            }
            target = PixelSize(width: parts[0], height: parts[1])
        }
        do {
            let r = try DecodeBenchmark.run(path: file, runs: runs, outputSize: target) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
            print("file: \(file) (\(r.frames) frames), medians of \(r.ours.fps.count) runs")
            func row(_ name: String, _ side: DecodeBenchmark.Side) -> String {
                String(format: "%@ %6.0f fps  %5.3f ms CPU/frame", name, side.median, side.medianCPU)
            }
            print(row("fpnstream decode+rgb24       ", r.ours))
            print(row("ffmpeg -f null (decode)      ", r.ffmpeg))
            print(row("ffmpeg -pix_fmt rgb24 -f null", r.ffmpegRGB))
            print(String(format: "ratio vs ffmpeg decode: %.2fx   vs ffmpeg decode+rgb24: %.2fx", r.ratio, r.ratioRGB))
        } catch let e as MediaIOError {
            throw CLIFailure(message: e.description, status: ExitStatus.runtimeError)
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.runtimeError)
        }
    }
}
