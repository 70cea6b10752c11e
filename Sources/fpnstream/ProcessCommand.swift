import ArgumentParser
import FPNCore
import FPNStream
import Foundation
import MediaIO
import StagePipeline
import Tracking

/// `fpnstream process INPUT [-o OUT] [--jsonl FILE] [--pipeline FILE]`
struct ProcessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "process",
        abstract: "Run a video file or stream through the pipeline: annotated video and/or per-frame JSONL.",
        discussion: """
            INPUT is anything FFmpeg opens: a file path or a URL (rtsp://, http://, udp://, ...). Credentials in URLs \
            are redacted in everything printed. Progress goes to stderr: a bar on a terminal, a line every 5 s \
            otherwise. Ctrl-C (SIGINT) or SIGTERM stops reading, drops frames the detector has not started, lets \
            the ones it has finish and finalizes the video and JSONL outputs (exit 130 / 143); a second signal \
            exits at once.

            Examples:
              fpnstream process samples/demo.mp4 -o out/demo.mp4 --jsonl out/demo.jsonl
              fpnstream process vtest.avi --jsonl - --quiet | jq -c '.detections | length'
              fpnstream process in.mkv -o - | ffplay -
              fpnstream process in.mp4 -o udp://127.0.0.1:5000 --max-frames 300
              fpnstream process 'rtsp://user:pass@cam/s' -o cam.mkv \\
                  --input-option rtsp_transport=tcp
              fpnstream process samples/demo.mp4 --model samples/models/demo.safetensors \\
                  --panoptic out/panoptic
              fpnstream process in.mp4 --model m.safetensors --temporal delta --jsonl -

            \(ExitStatus.helpText)
            """
    )

    @Argument(help: "Input video: path or URL.")
    var input: String

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Annotated video output: .mp4/.mkv/... path, '-' for MPEG-TS on stdout, or a URL (udp://...).",
        valueName: "out"))
    var output: String?

    @Option(help: ArgumentHelp("Per-frame JSONL output ('-' = stdout).", valueName: "file"))
    var jsonl: String?

    @Option(help: ArgumentHelp("Pipeline spec (YAML), e.g. pipelines/demo.yaml.", valueName: "file"))
    var pipeline: String?

    @OptionGroup var selection: FrameSelectionFlags

    @Option(help: ArgumentHelp("Detector weights (.safetensors from scripts/convert-torchvision); the architecture "
                               + "comes from the file. Wins over the pipeline's model section.", valueName: "file"))
    var model: String?

    @Option(help: ArgumentHelp("Minimum detection score (default: the model's).", valueName: "t"))
    var score: Float?

    @Option(help: ArgumentHelp("COCO results JSON (bbox + segmentation) for the whole run.", valueName: "file"))
    var coco: String?

    @Option(help: ArgumentHelp("COCO panoptic output directory: NNNNNN.png per frame (segment id = R + 256 G + "
                               + "65536 B) and panoptic.json (needs a panoptic model).", valueName: "dir"))
    var panoptic: String?

    @Option(help: ArgumentHelp("MOTChallenge tracks (frame,id,x,y,w,h,conf,-1,-1,-1; 1-based frames). Turns on "
                               + "ByteTrack with its defaults unless the pipeline configures a tracker.",
                               valueName: "file"))
    var mot: String?

    @Flag(help: "Track detections with ByteTrack (defaults) even without --mot or a pipeline tracker.")
    var track = false

    @OptionGroup var temporalFlags: TemporalFlags

    @OptionGroup var encoding: EncoderFlags

    @OptionGroup var ffmpeg: FFmpegInputFlags

    @OptionGroup var compute: ComputeFlags

    @Option(help: ArgumentHelp("Seconds between plain progress lines when stderr is not a terminal (0 = every frame).",
                               valueName: "seconds"))
    var progressInterval: Double = 5

    @Flag(name: .shortAndLong, help: "No progress and no summary; errors and warnings only.")
    var quiet = false

    @Flag(help: "Print per-stage metrics (count, mean, p50, p95 ms) at the end.")
    var stats = false

    func validate() throws {
        if let score, !(0...1).contains(score) { throw ValidationError("--score must be in [0, 1]") }
        if progressInterval < 0 { throw ValidationError("--progress-interval must be >= 0") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)  // a closed stdout (`| head`, ffplay quit) becomes EPIPE: the run ends, outputs finalized
        ffmpeg.applyLogLevel()
        try compute.apply()

        var options = RunOptions(input: input, output: output, jsonl: jsonl)
        options.maxFrames = selection.maxFrames
        options.encoder = encoding.options
        options.decoder.formatOptions.merge(ffmpeg.formatOptions) { _, new in new }

        if let pipeline {
            do {
                let spec = try PipelineSpec.load(path: pipeline)
                try options.apply(spec, file: pipeline)
            } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
            }
        }
        if let n = selection.stride { options.stride = n }
        if let f = selection.maxFps { options.maxFPS = f }
        do {
            options.temporal = try temporalFlags.applied(to: options.temporal)
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
        }
        options.detectWorkers = try compute.workers()
        if let coco { options.coco = coco }
        if let mot { options.mot = mot }
        if let panoptic { options.panoptic = panoptic }
        if (mot != nil || track) && options.tracker == nil { options.tracker = ByteTrackConfig() }
        if let model {
            var spec = ModelSpec(path: model)
            spec.score = score
            do {
                options.detector = try ONNXDetectors.detector(for: spec, pipelineFile: "--model") ?? ModelDetector(spec: spec)
            } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
            }
        } else if score != nil {
            throw CLIFailure(message: "--score needs --model", status: ExitStatus.usageError)
        }
        let onStdout = [("video", options.output), ("JSONL", options.jsonl), ("MOT", options.mot)].filter { $0.1 == "-" }
        if onStdout.count > 1 {
            throw CLIFailure(message: "only one output can go to stdout ('-'), got \(onStdout.map(\.0).joined(separator: " and "))",
                             status: ExitStatus.usageError)
        }

        let runner: StreamRunner
        do {
            runner = try StreamRunner(options: options)
        } catch let e as RunnerError {
            throw CLIFailure(message: e.description, status: ExitStatus.usageError)
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.runtimeError)
        }
        for note in runner.notes { warn(note) }
        if options.output == nil && options.jsonl == nil && options.mot == nil && options.coco == nil
            && options.panoptic == nil {
            // Still runs: a run without outputs measures speed (--stats) or checks that an input decodes.
            warn("no output requested (-o, --jsonl, --mot, --coco, --panoptic or the pipeline's outputs): "
                 + "nothing will be written")
        }

        let trap = SignalTrap { _ in
            let inFlight = runner.stop()
            let line = "stopping: finishing \(inFlight) frames in flight, Ctrl-C again to abort\n"
            FileHandle.standardError.write(Data(((isatty(STDERR_FILENO) == 1 ? "\n" : "") + line).utf8))  // below a bar
        }
        let style = ProgressReporter.automaticStyle(quiet: quiet)
        let total = runner.expectedFrames
        let progress = ProgressReporter(style: style, total: total, lineInterval: progressInterval)
        if !quiet {
            let m = runner.metadata
            var line = "input: \(m.source) (\(m.codecName) \(m.size), "
            line += m.frameRate.map { String(format: "%.3g fps", $0.value ?? 0) } ?? "unknown fps"
            if let d = m.duration { line += String(format: ", %.1f s", d) }
            if let n = m.frameCountEstimate { line += ", ~\(n) frames" }
            if m.isLive { line += ", live" }
            info(line + ")")
        }

        let summary: RunSummary
        do {
            summary = try runner.run { _ in progress.frameDone() }
        } catch {
            progress.finish()
            throw CLIFailure(message: redactCredentials("\(error)"), status: ExitStatus.runtimeError)
        }
        progress.finish()

        let d = summary.decodeStats
        if d.decodeErrors > 0 || d.corruptFrames > 0 {
            warn("\(summary.metadata.source): \(d.decodeErrors) decode errors skipped, \(d.corruptFrames) damaged frames"
                 + (d.lastDecodeError.map { " (last: \($0))" } ?? ""))
        }
        if let r = d.readError { warn("\(summary.metadata.source): input ended on a read error: \(r)") }
        if !quiet {
            var outs: [String] = []
            if let w = runner.videoWriter { outs.append("\(w.output) (\(w.encoderName), \(w.framesWritten) frames)") }
            if let jsonl = options.jsonl { outs.append(jsonl == "-" ? "JSONL on stdout" : jsonl) }
            if let mot = options.mot { outs.append(mot) }
            if let coco = options.coco { outs.append(coco) }
            if let w = runner.panopticWriter { outs.append("\(w.directory)/ (\(w.count) panoptic PNGs + panoptic.json)") }
            let wall = summary.report.wallSeconds
            var temporal = ""
            if summary.temporal != .off {
                temporal = ", temporal \(summary.temporal.rawValue)"
                if let r = summary.meanRecomputedFraction {
                    temporal += String(format: " (recomputed %.3f", r)
                        + (summary.repeatedFrames > 0 ? ", \(summary.repeatedFrames) frames repeated" : "")
                    if let box = summary.regionReuse["box"], box.total > 0 {
                        temporal += String(format: ", RoI regions reused %.3f", Double(box.reused) / Double(box.total))
                    }
                    temporal += ")"
                }
            }
            let fps = wall > 0 ? Double(summary.framesProcessed) / wall : 0
            // Two decimals below 10 fps: a heavy model on a CPU runs at 0.1-1 fps and "0.1" would hide a 2x change.
            info(String(format: fps < 10 ? "processed %d frames in %.1f s (%.2f fps)" : "processed %d frames in %.1f s (%.1f fps)",
                        summary.framesProcessed, wall, fps) + temporal
                 + (outs.isEmpty ? "" : " → " + outs.joined(separator: ", ")))
        }
        if !quiet, let c = summary.temporalGuard?.calibrated { info("temporal auto: calibrated thresholds: \(c)") }
        if stats {
            info(summary.report.formattedSummary())
            if !summary.detectParts.isEmpty { info(Self.partsTable(summary.detectParts, workers: summary.detectWorkers)) }
            if let g = summary.temporalGuard { info(g.formatted) }
        }

        if summary.closedOutput != nil && trap.signal == nil {
            return  // the reader of a pipe went away (`| head`): a normal end, as for ripgrep
        }
        if let sig = trap.signal {
            info("stopped by \(sig == SIGINT ? "SIGINT" : "SIGTERM"); outputs finalized")
            throw ExitCode(sig == SIGINT ? ExitStatus.interrupted : ExitStatus.terminated)
        }
        withExtendedLifetime(trap) {}
    }

    private func info(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
    private func warn(_ s: String) { FileHandle.standardError.write(Data(("warning: " + s + "\n").utf8)) }

    /// `--stats`' split of inference time: one line per detector part, ms per frame and share of their sum.
    static func partsTable(_ parts: [StageMetrics], workers: Int) -> String {
        let total = parts.reduce(0) { $0 + $1.meanMs }
        let width = max(8, parts.map(\.name.count).max() ?? 0)
        func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        var lines = ["detect parts, ms per frame (" + (workers == 1 ? "one frame at a time on all cores"
                                                        : "\(workers) frames at once, one core each") + "):",
                     "part" + String(repeating: " ", count: width - 4) + pad("mean", 10) + pad("p50", 10)
                        + pad("p95", 10) + pad("share", 8)]
        for p in parts {
            lines.append(p.name + String(repeating: " ", count: width - p.name.count)
                         + pad(String(format: "%.2f", p.meanMs), 10) + pad(String(format: "%.2f", p.p50Ms), 10)
                         + pad(String(format: "%.2f", p.p95Ms), 10)
                         + pad(String(format: "%.1f%%", total > 0 ? 100 * p.meanMs / total : 0), 8))
        }
        return lines.joined(separator: "\n")
    }
}
