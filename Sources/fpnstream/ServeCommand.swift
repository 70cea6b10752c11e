import ArgumentParser
import Foundation
import MediaIO
import Serve

/// `fpnstream serve --config cameras.yaml`: many cameras in one process (the logic lives in the Serve target).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run many cameras in one process: shared models, HTTP API with Prometheus metrics, MQTT events.",
        discussion: """
            The camera file lists cameras (id, url, pipeline or overrides: model, temporal, max_fps, outputs); \
            ${NAME} and ${file:PATH} in URLs and credentials are resolved at start, so secrets stay out of files and \
            ps. Each model is loaded once and shared; every camera has its own decoder, temporal cache, tracker and \
            outputs; one fair queue shares the cores. A camera that fails never affects the others. SIGHUP re-reads \
            the file (added, changed and removed cameras only); the HTTP API adds, replaces and removes cameras too. \
            SIGINT/SIGTERM stop every camera, finalize outputs and exit 0. See docs/serve.md.

            Examples:
              fpnstream serve --config cameras.yaml
              fpnstream serve --config cameras.yaml --listen 0.0.0.0:8080 --shard 1/3
              curl -s localhost:8080/metrics; curl -s localhost:8080/api/cameras

            Exit status: 0 stopped by SIGINT/SIGTERM or --duration; 1 the broker or the HTTP port is unusable; \
            2 usage error (a bad camera file, named with its line).
            """
    )

    @Option(help: ArgumentHelp("Camera file (YAML; docs/serve.md).", valueName: "file"))
    var config: String

    @Option(help: ArgumentHelp("Run shard I of N (0-based): cameras are split by rendezvous hashing of their ids.",
                               valueName: "I/N"))
    var shard: String = "0/1"

    @Option(help: ArgumentHelp("HTTP address, overriding the file's http.listen (default 127.0.0.1:8080).",
                               valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp("Instance name in MQTT status topics (default: the file's, else the host name).",
                               valueName: "name"))
    var instance: String?

    @Option(help: ArgumentHelp("Stop after this many seconds.", valueName: "s"))
    var duration: Double?

    @Option(help: ArgumentHelp("Keep cameras added, changed and removed over the HTTP API in this JSON file, so they "
                               + "survive a restart (laid over the camera file; see docs/serve.md).", valueName: "file"))
    var state: String?

    func validate() throws {
        guard Shard(parsing: shard) != nil else { throw ValidationError("--shard \(shard): expected I/N with 0 <= I < N") }
        if let d = duration, !(d > 0) { throw ValidationError("--duration must be > 0") }
    }

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        FFmpegLogLevel.set(.quiet)  // camera problems are reported per camera (status, events), not as FFmpeg lines
        var o = ServeOptions(configPath: config)
        o.shard = Shard(parsing: shard) ?? .all
        o.listen = listen
        o.instance = instance
        o.duration = duration
        o.statePath = state
        let runner = ServeRunner(options: o) { FileHandle.standardError.write(Data(("fpnstream: " + $0 + "\n").utf8)) }
        do { try runner.run() } catch let f as ServeRunner.Failure {
            throw CLIFailure(message: f.description, status: f.status)
        }
    }
}
