import FPNCore
import FPNStream
import Foundation

/// What `fpnstream serve` was asked to do.
public struct ServeOptions: Sendable {
    /// The camera file.
    public var configPath: String
    public var shard = Shard.all
    /// Overrides `http.listen` (`HOST:PORT`).
    public var listen: String?
    /// Overrides `instance`.
    public var instance: String?
    /// Stop after this many seconds (nil = until SIGINT/SIGTERM).
    public var duration: Double?
    /// JSON file keeping the cameras added, changed and removed over the HTTP API across restarts (created by the
    /// first change; read at start and on SIGHUP). nil = API changes last until the process exits.
    public var statePath: String?

    public init(configPath: String) { self.configPath = configPath }
}

/// `fpnstream serve`: loads the camera file, connects the MQTT broker (if any), starts the cameras of this shard
/// and the HTTP API, then runs until SIGINT/SIGTERM (cameras stopped and outputs finalized, status "offline"
/// published). SIGHUP re-reads the camera file and applies the differences.
public final class ServeRunner: @unchecked Sendable {
    /// Problems worth a line on stderr (`log`), and the final exit.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// 2: the configuration is wrong; 1: something outside failed (broker, port).
        public var status: Int32
    }

    let options: ServeOptions
    let log: @Sendable (String) -> Void
    private let stopped = DispatchSemaphore(value: 0)
    private var engine: ServeEngine?

    public init(options: ServeOptions, log: @escaping @Sendable (String) -> Void) {
        self.options = options
        self.log = log
    }

    /// Runs until stopped. Throws `Failure` for a bad camera file, an unreachable broker or an unusable port.
    public func run() throws {
        var config: ServeConfig
        do { config = try ServeConfig.load(path: options.configPath) } catch {
            throw Failure(description: "\(error)", status: 2)
        }
        if let i = options.instance { config.instance = i }
        if let l = options.listen {
            guard let (h, p) = ServeConfig.hostPort(l) else {
                throw Failure(description: "--listen \(l): expected HOST:PORT", status: 2)
            }
            config.http.host = h
            config.http.port = p
        }
        var state: CameraStateFile?
        if let path = options.statePath {
            do { state = try CameraStateFile(path: path) } catch { throw Failure(description: "--state \(error)", status: 2) }
        }
        let instance = config.instance ?? ProcessInfo.processInfo.hostName
        var publisher: EventPublisher?
        if let m = config.mqtt {
            do { publisher = try EventPublisher(settings: m, instance: instance, shard: options.shard) } catch {
                throw Failure(description: "mqtt: \(error)", status: 1)
            }
        }
        let engine = ServeEngine(config: config, shard: options.shard, publisher: publisher, state: state)
        self.engine = engine
        // Stop on a signal from here on, even while the first cameras start.
        let trap = SignalTrap { [self] _ in stopped.signal() }
        let hup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "fpnstream.serve.hup"))
        signal(SIGHUP, SIG_IGN)
        hup.setEventHandler { [self] in reload(engine) }
        hup.resume()

        let http = ServeHTTP(engine: engine, settings: config.http)
        let port: Int
        do { port = try http.start() } catch {
            publisher?.stop(timeout: 0.5)
            throw Failure(description: "\(error)", status: 1)
        }
        let changes = engine.apply(fileCameras: config.cameras)
        for (id, e) in changes.failed { log("camera \(id): \(redactCredentials(e))") }
        log("serve: \(instance) shard \(options.shard): \(changes.added.count) camera\(changes.added.count == 1 ? "" : "s") "
            + "(\(changes.skipped.count) on other shards), http://\(config.http.host):\(port)"
            + (config.mqtt.map { ", mqtt \($0.host):\($0.port)" } ?? ""))
        if let d = options.duration {
            DispatchQueue.global().asyncAfter(deadline: .now() + d) { [self] in stopped.signal() }
        }
        stopped.wait()
        hup.cancel()
        engine.shutdown()
        http.stop()
        publisher?.stop()
        withExtendedLifetime(trap) {}
    }

    /// Stops `run()` (as SIGTERM does).
    public func stop() { stopped.signal() }

    private func reload(_ engine: ServeEngine) {
        let config: ServeConfig
        do { config = try ServeConfig.load(path: options.configPath) } catch {
            log("reload: \(error) (cameras left as they were)")
            return
        }
        do { try engine.state?.reload() } catch {
            log("reload: --state \(error) (cameras left as they were)")
            return
        }
        let c = engine.apply(fileCameras: config.cameras)
        for (id, e) in c.failed { log("reload: camera \(id): \(redactCredentials(e)) (previous version kept)") }
        log("reload: \(c.added.count) added, \(c.changed.count) changed, \(c.removed.count) removed, "
            + "\(c.unchanged.count) unchanged")
    }
}
