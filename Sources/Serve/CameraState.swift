import FPNStream
import Foundation

/// Camera changes made over the HTTP API, laid over the camera file: cameras added or replaced (`PUT`/`POST`) and
/// file cameras deleted (`DELETE`). The file stays as the user wrote it (comments, `${…}` references); the API's
/// changes win over it for the ids they name.
struct CameraOverlay: Equatable, Sendable {
    /// Cameras put over the API, in the order they were first put.
    var cameras: [CameraSpec] = []
    /// Ids of file cameras deleted over the API, sorted.
    var removed: [String] = []

    /// The camera list to run: `file` without the removed ids, each put camera replacing the file's or appended.
    func applied(to file: [CameraSpec]) -> [CameraSpec] {
        var out = file.filter { !removed.contains($0.id) }
        for c in cameras {
            if let i = out.firstIndex(where: { $0.id == c.id }) { out[i] = c } else { out.append(c) }
        }
        return out
    }

    mutating func put(_ spec: CameraSpec) {
        removed.removeAll { $0 == spec.id }
        if let i = cameras.firstIndex(where: { $0.id == spec.id }) { cameras[i] = spec } else { cameras.append(spec) }
    }

    /// `fileNamesIt`: the camera file has this id (then the deletion is remembered, else just forgotten).
    mutating func delete(_ id: String, fileNamesIt: Bool) {
        cameras.removeAll { $0.id == id }
        if fileNamesIt && !removed.contains(id) { removed = (removed + [id]).sorted() }
    }
}

/// The overlay kept in a JSON file (`serve --state FILE`), rewritten atomically (temporary file, then rename) after
/// every change, read at start and on SIGHUP. Thread-safe.
///
/// ```json
/// {"cameras": [{"id": "yard", "url": "rtsp://…", "max_fps": 2, "outputs": {"jsonl": "out/yard.jsonl"}}],
///  "removed": ["lobby"]}
/// ```
/// Each camera has the keys of an API request body (docs/api/openapi.yaml) plus its `id`.
final class CameraStateFile: @unchecked Sendable {
    /// A state file that cannot be read or is not a valid overlay.
    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    private let lock = NSLock()
    private var _overlay = CameraOverlay()
    /// Ids the camera file names now (a deleted one is remembered as removed).
    private var fileIDs: Set<String> = []

    /// Reads `path` if it exists (a missing file is an empty overlay, created by the first change).
    init(path: String) throws {
        self.path = path
        try reload()
    }

    var overlay: CameraOverlay { lock.lock(); defer { lock.unlock() }; return _overlay }

    /// Re-reads the file; on an error the overlay is left as it was.
    func reload() throws {
        let o = try Self.read(path)
        lock.lock(); _overlay = o; lock.unlock()
    }

    /// The cameras to run for the camera file's `cameras`.
    func applied(to file: [CameraSpec]) -> [CameraSpec] {
        lock.lock(); defer { lock.unlock() }
        fileIDs = Set(file.map(\.id))
        return _overlay.applied(to: file)
    }

    /// Records a camera put over the API and saves.
    func put(_ spec: CameraSpec) throws { try change { o, _ in o.put(spec) } }

    /// Records a camera deleted over the API and saves.
    func delete(_ id: String) throws { try change { o, fileIDs in o.delete(id, fileNamesIt: fileIDs.contains(id)) } }

    private func change(_ body: (inout CameraOverlay, Set<String>) -> Void) throws {
        lock.lock(); defer { lock.unlock() }
        var o = _overlay
        body(&o, fileIDs)
        try Self.write(o, to: path)
        _overlay = o
    }

    static func read(_ path: String) throws -> CameraOverlay {
        guard FileManager.default.fileExists(atPath: path) else { return CameraOverlay() }
        func fail(_ m: String) -> Invalid { Invalid(description: "\(path): \(m)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object (expected {\"cameras\": [...], \"removed\": [...]})")
        }
        for k in root.keys.sorted() where k != "cameras" && k != "removed" { throw fail("unknown key '\(k)'") }
        var o = CameraOverlay()
        guard let cams = (root["cameras"] ?? [Any]()) as? [[String: Any]] else { throw fail("cameras: expected a list of objects") }
        for (i, c) in cams.enumerated() {
            guard let id = c["id"] as? String else { throw fail("cameras[\(i)]: missing 'id'") }
            var body = c
            body["id"] = nil
            let spec: CameraSpec
            do { spec = try CameraJSON.spec(id: id, body: Array(try JSONSerialization.data(withJSONObject: body))) } catch {
                throw fail("cameras[\(i)] ('\(id)'): \(error)")
            }
            guard !o.cameras.contains(where: { $0.id == id }) else { throw fail("cameras[\(i)]: duplicate id '\(id)'") }
            o.cameras.append(spec)
        }
        guard let removed = (root["removed"] ?? [String]()) as? [String] else { throw fail("removed: expected a list of ids") }
        o.removed = Array(Set(removed)).sorted()
        return o
    }

    static func write(_ o: CameraOverlay, to path: String) throws {
        let root: [String: Any] = ["cameras": o.cameras.map { c -> [String: Any] in
            var b = CameraJSON.body(of: c)
            b["id"] = c.id
            return b
        }, "removed": o.removed]
        let data = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data + Data("\n".utf8)) else {
            throw Invalid(description: "\(path): cannot write \(tmp)")
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw Invalid(description: "\(path): cannot replace: \(reason)")
        }
    }
}
