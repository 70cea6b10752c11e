import ArgumentParser
import FPNCore
import FPNStream
import Foundation
import MediaIO
import StagePipeline

/// `fpnstream tail URL… [-o OUT] [--jsonl FILE]`: live streams with reconnect, bounded latency and clean shutdown.
struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Follow live streams (RTSP, RTMP, HTTP/HLS, UDP/MPEG-TS, V4L2): reconnect, bounded latency, JSONL.",
        discussion: """
            Each URL is an independent stream (its own reconnects, counters and detector state). Stalls are detected \
            with a deadline on every FFmpeg call (--stall-timeout); a server that closes the connection counts as a \
            disconnect; reconnects back off exponentially with jitter, forever unless --reconnect-attempts. When \
            inference is slower than the camera, old frames are dropped (keep-latest) so results stay current. \
            JSONL gets frame lines (with wall_time and latency_ms), event lines (connected, disconnected, \
            reconnecting, reconnected, gave_up) and periodic stats lines; see docs/live.md and docs/jsonl.md. \
            SIGINT/SIGTERM: inputs stop at once, frames in flight are drained, JSONL flushed, videos finalized, exit 0.

            Examples:
              fpnstream tail rtsp://127.0.0.1:8554/test --jsonl - --quiet
              fpnstream tail 'rtsp://user:pass@cam/s' --rtsp-transport udp -o cam.mkv \\
                  --jsonl cam.jsonl
              fpnstream tail rtsp://cam1/s rtsp://cam2/s -o 'out/cam{stream}.mp4' \\
                  --jsonl out/cams.jsonl
              CAM_PASS=secret fpnstream tail 'rtsp://user:${CAM_PASS}@cam/s' --jsonl -
              fpnstream tail 'rtsp://user:${file:/run/secrets/cam}@cam/s' --jsonl -
              fpnstream tail udp://@:5000 --max-fps 5 --jsonl -
              fpnstream tail /dev/video0 --input-option video_size=640x480

            Exit status: 0 stopped by SIGINT/SIGTERM, --duration or --max-frames, outputs finalized; 1 a stream could \
            not connect or gave up reconnecting, or an output failed; 2 usage error.
            """
    )

    @Argument(help: ArgumentHelp("Live inputs: rtsp://, rtmp://, http(s)://…(.m3u8), udp://, srt://, /dev/videoN. "
                                 + "${NAME} (environment) and ${file:PATH} are replaced, so a password stays out of "
                                 + "the command line."))
    var urls: [String]

    @Option(name: .shortAndLong, help: ArgumentHelp(
        "Annotated video output (path or URL); with several URLs it must contain {stream}.", valueName: "out"))
    var output: String?

    @Option(help: ArgumentHelp("JSONL output for frame, event and stats lines ('-' = stdout).", valueName: "file"))
    var jsonl: String?

    @Option(help: ArgumentHelp("Pipeline spec (YAML, as for process): its input.live section sets drop policy, queue "
                               + "size and reconnect; input.stride/max_fps/max_frames and outputs apply too. Flags "
                               + "given on the command line win.", valueName: "file"))
    var pipeline: String?

    @Option(help: ArgumentHelp("RTSP transport: tcp or udp.", valueName: "tcp|udp"))
    var rtspTransport: String = "tcp"

    @Option(help: ArgumentHelp("Seconds to connect and probe a stream.", valueName: "s"))
    var openTimeout: Double = 10

    @Option(help: ArgumentHelp("Watchdog: no frame for this many seconds → reconnect (default 5).", valueName: "s"))
    var stallTimeout: Double?

    @Option(help: ArgumentHelp("First reconnect delay (default 0.5).", valueName: "s"))
    var reconnectDelay: Double?

    @Option(help: ArgumentHelp("Largest reconnect delay (default \(Int(ReconnectPolicy.defaultMaxDelay))).", valueName: "s"))
    var reconnectMaxDelay: Double?

    @Option(help: ArgumentHelp("Reconnect delay growth per failed attempt.", valueName: "x"))
    var reconnectMultiplier: Double = 2

    @Option(help: ArgumentHelp("Relative jitter of reconnect delays (0.2 = ±20 %).", valueName: "f"))
    var reconnectJitter: Double = 0.2

    @Option(help: ArgumentHelp("Give up after this many failed reconnect attempts in a row (default: never).",
                               valueName: "n"))
    var reconnectAttempts: Int?

    @Flag(help: "Keep retrying when a stream cannot connect at start (default: that is an error).")
    var waitForSource = false

    @Option(help: ArgumentHelp("When inference falls behind: "
                               + LiveDropPolicy.allCases.map(\.rawValue).joined(separator: ", ")
                               + " (default \(LiveSpec.defaultDropPolicy.rawValue)).", valueName: "policy"))
    var dropPolicy: LiveDropPolicy?

    @Option(help: ArgumentHelp("Frames that may wait in front of conversion and inference (default: 1 for keep-latest, "
                               + "2 for the others).", valueName: "n"))
    var queueSize: Int?

    @Option(help: ArgumentHelp("Seconds between stats lines in the JSONL (and plain status lines when stderr is not a terminal); 0 = none.",
                               valueName: "s"))
    var statsInterval: Double = 5

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "s"))
    var duration: Double?

    @OptionGroup var selection: FrameSelectionFlags

    @OptionGroup var ffmpeg: FFmpegInputFlags

    @OptionGroup var compute: ComputeFlags

    @OptionGroup var encoding: EncoderFlags

    @OptionGroup var temporalFlags: TemporalFlags

    @Flag(name: .shortAndLong, help: "No status line and no summary; errors only.")
    var quiet = false

    @Option(help: .hidden)
    var debugStageDelayMs: Double = 0

    func validate() throws {
        guard RTSPTransport(rawValue: rtspTransport) != nil else {
            throw ValidationError("--rtsp-transport \(rtspTransport): expected tcp or udp")
        }
        if let q = queueSize, q < 1 { throw ValidationError("--queue-size must be at least 1") }
        if dropPolicy == .keepLatest, let q = queueSize, q != 1 {
            throw ValidationError("--drop-policy keep-latest keeps exactly one frame; use drop-oldest with --queue-size \(q)")
        }
        if let d = duration, !(d > 0) { throw ValidationError("--duration must be > 0") }
        if let n = reconnectAttempts, n < 0 { throw ValidationError("--reconnect-attempts must be >= 0") }
        if statsInterval < 0 { throw ValidationError("--stats-interval must be >= 0") }
        if output == "-" && jsonl == "-" { throw ValidationError("-o - and --jsonl - cannot both use stdout") }
        if urls.count > 1, let o = output, !o.contains("{stream}") {
            throw ValidationError("-o \(o): with several URLs the output must contain {stream} (e.g. cam{stream}.mp4)")
        }
        var o = LiveSourceOptions()
        o.openTimeout = openTimeout
        o.stallTimeout = stallTimeout ?? 5
        o.reconnect = reconnectPolicy(PipelineSpec().input.live.reconnect)
        do { try o.validate() } catch { throw ValidationError("\(error)") }
    }

    /// Flags over the YAML's `input.live.reconnect` (whose defaults equal ours).
    func reconnectPolicy(_ yaml: ReconnectSpec) -> ReconnectPolicy {
        let yamlAttempts: Int? = !yaml.enabled ? 0 : (yaml.maxAttempts > 0 ? yaml.maxAttempts : nil)
        return ReconnectPolicy(initialDelay: reconnectDelay ?? yaml.initialDelay,
                               maxDelay: reconnectMaxDelay ?? yaml.maxDelay, multiplier: reconnectMultiplier,
                               jitter: reconnectJitter, maxAttempts: reconnectAttempts ?? yamlAttempts)
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        ffmpeg.applyLogLevel()
        try compute.apply()

        var spec = PipelineSpec()
        var fromYAML = RunOptions(input: "")  // what `process` takes from the same file (tracker, JSONL options)
        if let pipeline {
            do {
                spec = try PipelineSpec.load(path: pipeline)
                try fromYAML.apply(spec, file: pipeline)
            } catch {
                throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
            }
            for (key, set) in [("mot", spec.outputs.mot != nil), ("coco", spec.outputs.coco != nil)] where set {
                throw CLIFailure(message: "\(pipeline): outputs.\(key): not available for live streams (use process)",
                                 status: ExitStatus.usageError)
            }
        }
        let yamlLive = pipeline == nil ? nil : spec.input.live
        let inputs: [String]
        do { inputs = try urls.map { try SecretExpansion.expand($0) } } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
        }
        var options = LiveRunOptions(inputs: inputs)
        options.tracker = fromYAML.tracker
        options.detectWorkers = try compute.workers() ?? DetectWorkers.automatic(streams: inputs.count)
        options.jsonlOptions = fromYAML.jsonlOptions
        options.annotation = fromYAML.annotation
        options.trails = fromYAML.trails
        do {
            options.temporal = try temporalFlags.applied(to: fromYAML.temporal)
            // The same check each stream's detector makes, before connecting.
            _ = try withTemporal(fromYAML.detector, options.temporal)
        } catch let e as TemporalConfigError {
            throw CLIFailure(message: "temporal: \(e)", status: ExitStatus.usageError)
        } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
        }
        if let model = spec.model, let pipeline {
            // Stream 0 gets the detector `apply` built (and validated); each further stream loads its own, since a
            // detector is per-stream state.
            let first = DetectorHandOff(fromYAML.detector)
            let loaded = fromYAML.detector as? ModelDetector
            options.makeDetector = {
                // A loaded safetensors model is shared; each stream gets its own state (buffers, temporal cache).
                first.take() ?? loaded?.forNewStream()
                    ?? ((try? ONNXDetectors.detector(for: model, pipelineFile: pipeline)) ?? nil) ?? NoDetector()
            }
        }
        options.output = output ?? spec.outputs.video
        options.jsonl = jsonl ?? spec.outputs.jsonl
        options.source.rtspTransport = RTSPTransport(rawValue: rtspTransport) ?? .tcp
        options.source.openTimeout = openTimeout
        options.source.stallTimeout = stallTimeout ?? spec.input.live.reconnect.ioTimeout
        options.source.reconnect = reconnectPolicy(spec.input.live.reconnect)
        options.source.retryInitialConnect = waitForSource
        options.source.minFrameInterval = (selection.maxFps ?? (spec.input.maxFPS > 0 ? spec.input.maxFPS : nil)).map { 1 / $0 }
        options.source.frameStride = selection.stride ?? spec.input.stride
        options.source.formatOptions = ffmpeg.formatOptions
        // The flag's policy, else the YAML's live section (whose defaults are the same as without a file).
        let live = yamlLive ?? LiveSpec()
        let policy = dropPolicy ?? live.dropPolicy
        options.dropPolicy = policy.queuePolicy
        options.queueCapacity = queueSize ?? (dropPolicy != nil ? policy.defaultQueueSize : live.effectiveQueueSize)
        options.statsInterval = statsInterval
        options.duration = duration
        options.maxFrames = selection.maxFrames ?? (spec.input.maxFrames > 0 ? spec.input.maxFrames : nil)
        options.debugStageDelayMs = debugStageDelayMs
        options.encoder = encoding.options

        let runner: LiveRunner
        do { runner = try LiveRunner(options: options) } catch {
            throw CLIFailure(message: redactCredentials("\(error)"), status: ExitStatus.runtimeError)
        }
        let trap = SignalTrap { _ in runner.stop() }
        do { try runner.start() } catch {
            runner.stop()
            _ = runner.wait()
            throw CLIFailure(message: redactCredentials("\(error)"), status: ExitStatus.runtimeError)
        }
        for note in runner.notes { info("note: \(note)") }
        let status = quiet ? nil : LiveStatusLine(runner: runner, interval: statsInterval)
        let results = runner.wait()
        status?.finish()

        var failed = false
        for r in results {
            let s = r.status
            if !quiet {
                info("\(s.source): \(s.processed) frames processed, \(s.dropped) dropped, \(s.live.decodeErrors) decode errors, "
                     + "\(s.live.reconnects) reconnects" + String(format: ", latency p50 %.0f ms p95 %.0f ms max %.0f ms",
                       s.latency.percentile(0.5), s.latency.percentile(0.95), s.latency.maxMs))
            }
            if let f = r.failure {
                failed = true
                FileHandle.standardError.write(Data("fpnstream: \(redactCredentials("\(f)"))\n".utf8))
            }
        }
        withExtendedLifetime(trap) {}
        if failed { throw ExitCode(ExitStatus.runtimeError) }
    }

    private func info(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
