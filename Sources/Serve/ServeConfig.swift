import FPNStream
import Foundation
import TemporalReuse
import Yams

/// One camera of `serve`: where it comes from and how it differs from the file's defaults. Values are as written
/// (`url` may hold `${NAME}` / `${file:PATH}` references, resolved only when the camera starts, so status output
/// and logs never see a secret).
public struct CameraSpec: Sendable, Equatable {
    /// Unique id: letters, digits, `-` and `_` (it is an MQTT topic level, a URL path part and a metric label).
    public var id: String
    /// Input URL or path, with references unresolved.
    public var url: String
    /// Pipeline file (model, temporal, tracker, input.live, outputs.annotate); nil = none (no model: frames only).
    public var pipeline: String?
    /// Overrides the pipeline's `model.path` (same model options otherwise).
    public var model: String?
    /// Overrides the pipeline's `temporal:` section.
    public var temporal: TemporalSettings?
    /// At most this many frames per second of stream time go to inference (nil = the pipeline's `input.max_fps`).
    public var maxFPS: Double?
    /// JSONL output (`{camera}` is replaced by the id); nil = none.
    public var jsonl: String?
    /// Annotated video output (`{camera}` is replaced by the id); nil = none.
    public var video: String?
    /// Loop a file input forever (test streams made of local files); live URLs ignore it.
    public var loop = false

    public init(id: String, url: String) {
        self.id = id
        self.url = url
    }

    /// The characters an id may use.
    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.count <= 64 && id.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) && $0.isASCII || $0 == "-" || $0 == "_"
        }
    }
}

/// The HTTP API's settings (`http:`).
public struct HTTPSettings: Sendable, Equatable {
    /// Address to listen on; loopback unless set otherwise (the API can add and remove cameras).
    public var host = "127.0.0.1"
    /// TCP port (0 = any free port, printed at start).
    public var port = 8080
    /// Bearer token every request but `/healthz` and `/readyz` must carry (references resolved); nil = none.
    public var token: String?
    /// Largest accepted request body, bytes.
    public var maxBody = 64 * 1024
    public init() {}
}

/// The MQTT publisher's settings (`mqtt:`).
public struct MQTTSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 1883
    /// Credentials (references resolved at start; never logged).
    public var username: String?
    public var password: String?
    /// Topic prefix: `<prefix>/<camera>/frame`, `<prefix>/<camera>/events`, `<prefix>/<instance>/status`.
    public var prefix = "fpnstream"
    /// Messages kept while the broker is unreachable; past it the oldest are dropped and counted.
    public var buffer = 10_000
    /// Publish a `frame` message per processed frame (events and status are always published).
    public var frames = true
    /// Seconds between keep-alive pings.
    public var keepAlive = 30
    public init() {}
}

/// The whole `serve` file.
public struct ServeConfig: Sendable, Equatable {
    /// Name of this process in MQTT status topics and metrics (default: the host name).
    public var instance: String?
    /// Cameras inferring at the same time (each inference already uses every core; more only adds contention).
    public var inferenceSlots = 1
    public var http = HTTPSettings()
    public var mqtt: MQTTSettings?
    public var cameras: [CameraSpec] = []

    public init() {}
}

extension ServeConfig {
    /// Reads and checks a camera file. Errors name the file and line: `cams.yaml:12: cameras[1].id: duplicate id
    /// 'door' (first on line 7)`; unresolvable `${…}` references are errors too (naming the variable, not a value).
    public static func load(path: String) throws -> ServeConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw PipelineSpecError(file: path, line: nil, keyPath: "", message: "cannot read: no such file or not UTF-8 text")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses a camera file's text. Relative paths (pipelines, models, outputs) are relative to the working
    /// directory, as everywhere else in fpnstream.
    public static func parse(yaml: String, file: String = "<serve>",
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ServeConfig {
        let r = SpecReader(file: file)
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch let e as YamlError { throw r.yamlError(e) }
        guard let root, !root.isNull else { throw r.fail(nil, "", "empty file: expected a 'cameras:' list") }
        let top = try r.map(root, "")
        try top.check(["instance", "inference_slots", "http", "mqtt", "defaults", "cameras"])
        var c = ServeConfig()
        if let n = top["instance"] { c.instance = try r.nonEmptyString(n, "instance") }
        if let n = top["inference_slots"] { c.inferenceSlots = try r.int(n, "inference_slots", min: 1) }
        if let n = top["http"], !n.isNull { c.http = try http(r, n, environment) }
        if let n = top["mqtt"], !n.isNull { c.mqtt = try mqtt(r, n, environment) }
        var defaults = CameraSpec(id: "", url: "")
        if let n = top["defaults"], !n.isNull { defaults = try camera(r, n, "defaults", template: defaults, isDefaults: true) }
        guard let list = top["cameras"] else { throw r.fail(root, "", "missing key 'cameras' (the camera list)") }
        guard let seq = list.sequence else {
            if list.isNull { return c }  // `cameras:` with nothing: a valid, empty server
            throw r.fail(list, "cameras", "expected a list of cameras (- id: …), got \(r.describe(list))")
        }
        var firstLine: [String: Int] = [:]
        for (i, n) in seq.enumerated() {
            let cam = try camera(r, n, "cameras[\(i)]", template: defaults, isDefaults: false)
            if let line = firstLine[cam.id] {
                throw r.fail(try r.map(n, "")["id"], "cameras[\(i)].id", "duplicate id '\(cam.id)' (first on line \(line))")
            }
            firstLine[cam.id] = (n.mark?.line ?? 0)
            do { _ = try SecretExpansion.expand(cam.url, environment: environment) } catch {
                throw r.fail(try r.map(n, "")["url"], "cameras[\(i)].url", "\(error)")
            }
            c.cameras.append(cam)
        }
        return c
    }

    /// One camera (or the `defaults:` section, which has no id and url).
    static func camera(_ r: SpecReader, _ node: Node, _ path: String, template: CameraSpec,
                       isDefaults: Bool) throws -> CameraSpec {
        let m = try r.map(node, path)
        let common = ["pipeline", "model", "temporal", "max_fps", "outputs", "loop"]
        try m.check(isDefaults ? common : ["id", "url"] + common)
        var c = template
        if !isDefaults {
            guard let idNode = m["id"] else { throw r.fail(node, path, "missing key 'id'") }
            c.id = try r.nonEmptyString(idNode, "\(path).id")
            guard CameraSpec.isValidID(c.id) else {
                throw r.fail(idNode, "\(path).id", "'\(c.id)': use letters, digits, - and _ (at most 64)")
            }
            guard let urlNode = m["url"] else { throw r.fail(node, path, "missing key 'url'") }
            c.url = try r.nonEmptyString(urlNode, "\(path).url")
        }
        if let n = m["pipeline"] {
            c.pipeline = n.isNull ? nil : try r.nonEmptyString(n, "\(path).pipeline")
        }
        if let n = m["model"] { c.model = n.isNull ? nil : try r.nonEmptyString(n, "\(path).model") }
        if let n = m["temporal"], !n.isNull { c.temporal = try r.temporal(n) }
        if let n = m["max_fps"] {
            let v = try r.double(n, "\(path).max_fps", min: 0)
            c.maxFPS = v > 0 ? v : nil
        }
        if let n = m["loop"] { c.loop = try r.bool(n, "\(path).loop") }
        if let n = m["outputs"], !n.isNull {
            let o = try r.map(n, "\(path).outputs")
            try o.check(["jsonl", "video"])
            if let v = o["jsonl"] { c.jsonl = v.isNull ? nil : try r.nonEmptyString(v, "\(path).outputs.jsonl") }
            if let v = o["video"] { c.video = v.isNull ? nil : try r.nonEmptyString(v, "\(path).outputs.video") }
        }
        return c
    }

    static func http(_ r: SpecReader, _ node: Node, _ env: [String: String]) throws -> HTTPSettings {
        let m = try r.map(node, "http")
        try m.check(["listen", "token", "max_body"])
        var h = HTTPSettings()
        if let n = m["listen"] {
            let s = try r.nonEmptyString(n, "http.listen")
            guard let (host, port) = hostPort(s) else {
                throw r.fail(n, "http.listen", "expected HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8080), got \"\(s)\"")
            }
            h.host = host
            h.port = port
        }
        if let n = m["token"], !n.isNull { h.token = try secret(r, n, "http.token", env) }
        if let n = m["max_body"] { h.maxBody = try r.int(n, "http.max_body", min: 256) }
        return h
    }

    static func mqtt(_ r: SpecReader, _ node: Node, _ env: [String: String]) throws -> MQTTSettings {
        let m = try r.map(node, "mqtt")
        try m.check(["broker", "username", "password", "prefix", "buffer", "frames", "keep_alive"])
        var s = MQTTSettings()
        if let n = m["broker"] {
            let text = try r.nonEmptyString(n, "mqtt.broker")
            let bare = text.hasPrefix("mqtt://") ? String(text.dropFirst(7)) : text
            guard let (host, port) = hostPort(bare.contains(":") ? bare : bare + ":1883") else {
                throw r.fail(n, "mqtt.broker", "expected HOST[:PORT] or mqtt://HOST[:PORT], got \"\(text)\"")
            }
            s.host = host
            s.port = port
        }
        if let n = m["username"], !n.isNull { s.username = try secret(r, n, "mqtt.username", env) }
        if let n = m["password"], !n.isNull { s.password = try secret(r, n, "mqtt.password", env) }
        if let n = m["prefix"] {
            s.prefix = try r.nonEmptyString(n, "mqtt.prefix")
            guard !s.prefix.contains(where: { "#+".contains($0) }) else { throw r.fail(n, "mqtt.prefix", "must not contain # or +") }
        }
        if let n = m["buffer"] { s.buffer = try r.int(n, "mqtt.buffer", min: 1) }
        if let n = m["frames"] { s.frames = try r.bool(n, "mqtt.frames") }
        if let n = m["keep_alive"] { s.keepAlive = try r.int(n, "mqtt.keep_alive", min: 1) }
        return s
    }

    static func secret(_ r: SpecReader, _ node: Node, _ path: String, _ env: [String: String]) throws -> String {
        let raw = try r.string(node, path)
        do { return try SecretExpansion.expand(raw, environment: env) } catch { throw r.fail(node, path, "\(error)") }
    }

    /// `HOST:PORT` with a port in 0...65535 (`[::1]:80` for IPv6).
    static func hostPort(_ s: String) -> (String, Int)? {
        guard let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }
}
