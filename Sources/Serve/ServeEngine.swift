import FPNCore
import FPNStream
import Foundation
import MQTT
import Tensor

/// The cameras of one `serve` process and what they share:
///
/// ```
///  cameras.yaml / HTTP ──▶ ServeEngine ──▶ Camera (LiveRunner: source ─▶ convert ─▶ detect ─▶ track ─▶ outputs)
///                            │  shard filter   │                            │
///                            │                 │                    InferenceScheduler (one fair queue, N slots)
///                            ├─ ModelCache ────┘ (each model loaded once, per-camera state)
///                            ├─ ServeMetrics (/metrics)
///                            └─ EventPublisher (MQTT: frames, events, status)
/// ```
/// Cameras are added, changed and removed while the others run: a change stops the old camera (outputs
/// finalized) and starts the new one; nothing else is touched. Thread-safe.
public final class ServeEngine: @unchecked Sendable {
    /// This instance's share of the camera list.
    public let shard: Shard
    /// Name in MQTT status topics.
    public let instance: String
    let models: ModelCache
    let scheduler: InferenceScheduler
    let metrics = ServeMetrics()
    private let publisher: EventPublisher?
    /// Changes made over the API, kept across restarts (`serve --state FILE`); nil = they last until exit.
    let state: CameraStateFile?
    private let lock = NSLock()
    /// Serializes changes (file reloads and HTTP requests), so two changes of one camera never interleave.
    private let changing = NSRecursiveLock()
    private var cameras: [String: Camera] = [:]
    /// Ids that came from the file (a reload manages these; cameras added over HTTP stay).
    private var fromFile: Set<String> = []
    private var ready = false
    private var shuttingDown = false

    /// What happened to each camera id in `apply`.
    public struct Changes: Equatable, Sendable {
        public var added: [String] = []
        public var changed: [String] = []
        public var removed: [String] = []
        public var unchanged: [String] = []
        /// Cameras another shard runs.
        public var skipped: [String] = []
        /// Cameras whose pipeline could not be built (id and error); the previous version, if any, keeps running.
        public var failed: [(String, String)] = []

        public static func == (a: Changes, b: Changes) -> Bool {
            a.added == b.added && a.changed == b.changed && a.removed == b.removed && a.unchanged == b.unchanged
                && a.skipped == b.skipped && a.failed.map(\.0) == b.failed.map(\.0)
        }
    }

    public convenience init(config: ServeConfig, shard: Shard = .all, publisher: EventPublisher? = nil) {
        self.init(config: config, shard: shard, publisher: publisher, state: nil)
    }

    init(config: ServeConfig, shard: Shard, publisher: EventPublisher?, state: CameraStateFile?) {
        self.shard = shard
        instance = config.instance ?? ProcessInfo.processInfo.hostName
        scheduler = InferenceScheduler(slots: config.inferenceSlots)
        // One inference at a time: the cameras' forward passes can share one arena.
        models = ModelCache(sharedWorkspace: config.inferenceSlots == 1 ? Workspace() : nil)
        self.publisher = publisher
        self.state = state
    }

    /// Brings the file's cameras (of this shard) to `specs`: new ids start, changed ones restart, ids gone from the
    /// file stop. With a state file, the API's saved changes are laid over `specs` first (they win for the ids they
    /// name). Without one, cameras added over HTTP are left alone unless the file now names them.
    @discardableResult
    public func apply(fileCameras file: [CameraSpec]) -> Changes {
        changing.lock()
        defer { changing.unlock() }
        var ch = Changes()
        let specs = state?.applied(to: file) ?? file
        let owned = specs.filter { s in
            if shard.owns(s.id) { return true }
            ch.skipped.append(s.id)
            return false
        }
        lock.lock()
        let gone = fromFile.subtracting(owned.map(\.id)).sorted()
        lock.unlock()
        for id in gone where remove(id) { ch.removed.append(id) }
        for s in owned {
            switch upsert(s) {
            case .success(let r):
                switch r {
                case .added: ch.added.append(s.id)
                case .changed: ch.changed.append(s.id)
                case .unchanged: ch.unchanged.append(s.id)
                }
                lock.lock(); fromFile.insert(s.id); lock.unlock()
            case .failure(let e): ch.failed.append((s.id, "\(e)"))
            }
        }
        models.retain(only: currentModels())
        lock.lock(); ready = true; lock.unlock()
        return ch
    }

    public enum Upsert: Equatable, Sendable { case added, changed, unchanged }

    /// Adds or replaces one camera. Fails (nothing changed) when its pipeline cannot be built or another shard
    /// owns it.
    public func upsert(_ spec: CameraSpec) -> Result<Upsert, Error> {
        guard shard.owns(spec.id) else {
            return .failure(ServeError.otherShard(id: spec.id, owner: Shard.owner(of: spec.id, count: shard.count), shard: shard))
        }
        changing.lock()
        defer { changing.unlock() }
        lock.lock()
        let old = cameras[spec.id]
        let stopping = shuttingDown
        lock.unlock()
        if stopping { return .failure(ServeError.shuttingDown) }
        if let old, old.spec == spec { return .success(.unchanged) }
        let m = metrics.camera(spec.id)
        let camera: Camera
        do {
            camera = try Camera(spec: spec, models: models, scheduler: scheduler, metrics: m,
                                publish: publisher.map { p in { @Sendable in p.camera($0, $1, $2) } })
        } catch {
            metrics.remove(m)
            return .failure(error)
        }
        if let old {
            old.stop()
            metrics.remove(old.metrics)
        }
        lock.lock()
        cameras[spec.id] = camera
        lock.unlock()
        camera.start()
        return .success(old == nil ? .added : .changed)
    }

    /// `POST`/`PUT` over the API: `upsert`, then saved to the state file (if any). A change that ran but could not
    /// be saved fails with `ServeError.notSaved`.
    func put(fromAPI spec: CameraSpec) -> Result<Upsert, Error> {
        changing.lock()
        defer { changing.unlock() }
        let r = upsert(spec)
        if case .success = r, let state {
            do { try state.put(spec) } catch { return .failure(ServeError.notSaved(id: spec.id, reason: "\(error)")) }
        }
        return r
    }

    /// `DELETE` over the API: `remove`, then saved to the state file (if any). False: no such camera.
    func delete(fromAPI id: String) throws -> Bool {
        changing.lock()
        defer { changing.unlock() }
        guard remove(id) else { return false }
        if let state {
            do { try state.delete(id) } catch { throw ServeError.notSaved(id: id, reason: "\(error)") }
        }
        return true
    }

    /// Stops and forgets a camera; false when there is none with that id.
    @discardableResult
    public func remove(_ id: String) -> Bool {
        changing.lock()
        defer { changing.unlock() }
        lock.lock()
        let c = cameras.removeValue(forKey: id)
        fromFile.remove(id)
        lock.unlock()
        guard let c else { return false }
        c.stop()
        metrics.remove(c.metrics)
        models.retain(only: currentModels())
        return true
    }

    private func currentModels() -> [ModelSpec] {
        lock.lock(); defer { lock.unlock() }
        return cameras.values.compactMap { $0.modelSpec }
    }

    /// True once the first camera list was applied (models loaded, cameras started).
    public var isReady: Bool { lock.lock(); defer { lock.unlock() }; return ready && !shuttingDown }

    /// Sorted by id.
    func allCameras() -> [Camera] {
        lock.lock(); defer { lock.unlock() }
        return cameras.values.sorted { $0.spec.id < $1.spec.id }
    }

    func camera(_ id: String) -> Camera? { lock.lock(); defer { lock.unlock() }; return cameras[id] }

    /// The Prometheus exposition of every camera and the process.
    public func metricsText() -> [UInt8] {
        let all = allCameras()
        return metrics.render(statuses: all.map { $0.status() }, metrics: all.map(\.metrics),
                              waitingCameras: scheduler.waiting, modelsLoaded: models.count, mqtt: publisher?.stats)
    }

    /// Stops every camera at once (inputs interrupted, frames in flight drained, outputs finalized) and waits.
    public func shutdown() {
        lock.lock()
        shuttingDown = true
        let all = Array(cameras.values)
        cameras.removeAll()
        lock.unlock()
        for c in all { c.requestStop() }
        for c in all { c.stop() }
    }
}

/// Errors of run-time camera changes.
public enum ServeError: Error, CustomStringConvertible {
    case otherShard(id: String, owner: Int, shard: Shard)
    case shuttingDown
    /// The change was made but the state file could not be written.
    case notSaved(id: String, reason: String)

    public var description: String {
        switch self {
        case .otherShard(let id, let owner, let shard):
            return "camera '\(id)' belongs to shard \(owner)/\(shard.count), not to this instance (\(shard))"
        case .shuttingDown: return "shutting down"
        case .notSaved(let id, let reason):
            return "camera '\(id)' changed, but the change was not saved and will not survive a restart: \(reason)"
        }
    }
}
