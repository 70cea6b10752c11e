import FPNCore
import FPNStream
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Outputs

/// The HTTP API of `serve` (docs/api/openapi.yaml): health, readiness, Prometheus metrics, camera status and
/// snapshots, and run-time camera changes. Every route but `/healthz` and `/readyz` needs
/// `Authorization: Bearer <token>` when a token is set.
public final class ServeHTTP: @unchecked Sendable {
    let engine: ServeEngine
    let settings: HTTPSettings
    private var task: Task<Void, Error>?
    private var group: ServiceGroup?
    private let started = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var boundPort: Int?
    private var startError: Error?

    public init(engine: ServeEngine, settings: HTTPSettings) {
        self.engine = engine
        self.settings = settings
    }

    /// Starts listening; returns the bound port once the server runs (throws when it cannot bind).
    public func start() throws -> Int {
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: settings.token, open: ["/healthz", "/readyz"]))
        routes(router)
        var logger = Logger(label: "fpnstream.serve.http")
        logger.logLevel = .warning  // serve prints its own start line
        let app = Application(router: router,
                              configuration: .init(address: .hostname(settings.host, port: settings.port),
                                                   serverName: "fpnstream"),
                              onServerRunning: { [self] channel in
                                  lock.withLock { boundPort = channel.localAddress?.port }
                                  started.signal()
                              },
                              logger: logger)
        let group = ServiceGroup(services: [app], logger: logger)
        self.group = group
        task = Task {
            do { try await group.run() } catch {
                lock.withLock { startError = error }
                started.signal()
                throw error
            }
        }
        started.wait()
        lock.lock(); defer { lock.unlock() }
        if let startError {
            throw ServeHTTPError(description: "http \(settings.host):\(settings.port): cannot listen: \(startError)")
        }
        return boundPort ?? settings.port
    }

    /// Stops accepting requests (graceful: requests in progress finish) and waits until the server is down.
    public func stop() {
        guard let group, let task else { return }
        let done = DispatchSemaphore(value: 0)
        Task {
            await group.triggerGracefulShutdown()
            _ = await task.result
            done.signal()
        }
        done.wait()
    }

    private func routes(_ router: Router<BasicRequestContext>) {
        let engine = self.engine
        let maxBody = settings.maxBody
        router.get("/healthz") { _, _ in Self.text("ok\n") }
        router.get("/readyz") { _, _ in
            engine.isReady ? Self.text("ready\n") : Self.text("not ready\n", status: .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: engine.metricsText())))
        }
        router.get("/api/cameras") { _, _ in
            var j = JSONBuffer(capacity: 1024)
            j.beginArray()
            for c in engine.allCameras() { CameraJSON.write(c.status(), into: &j) }
            j.endArray()
            return Self.json(j)
        }
        router.get("/api/cameras/:id") { _, ctx in
            let c = try Self.camera(engine, ctx)
            var j = JSONBuffer(capacity: 512)
            CameraJSON.write(c.status(), into: &j)
            return Self.json(j)
        }
        router.get("/api/cameras/:id/latest.jpg") { _, ctx in
            let c = try Self.camera(engine, ctx)
            guard let jpeg = try c.snapshot() else {
                throw HTTPError(.serviceUnavailable, message: "camera '\(c.spec.id)' has no processed frame yet")
            }
            var headers = HTTPFields()
            headers[.contentType] = "image/jpeg"
            headers[.cacheControl] = "no-store"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: jpeg)))
        }
        router.post("/api/cameras/:id") { req, ctx in
            let spec = try await Self.spec(req, ctx, maxBody: maxBody)
            if engine.camera(spec.id) != nil {
                throw HTTPError(.conflict, message: "camera '\(spec.id)' exists (PUT replaces it)")
            }
            return try Self.upsert(engine, spec)
        }
        router.put("/api/cameras/:id") { req, ctx in
            try Self.upsert(engine, try await Self.spec(req, ctx, maxBody: maxBody))
        }
        router.delete("/api/cameras/:id") { _, ctx in
            let id = try ctx.parameters.require("id")
            let removed: Bool
            do { removed = try engine.delete(fromAPI: id) } catch {
                throw HTTPError(.internalServerError, message: "\(error)")
            }
            guard removed else { throw HTTPError(.notFound, message: "no camera '\(id)'") }
            return Response(status: .noContent)
        }
    }

    private static func camera(_ engine: ServeEngine, _ ctx: BasicRequestContext) throws -> Camera {
        let id = try ctx.parameters.require("id")
        guard let c = engine.camera(id) else { throw HTTPError(.notFound, message: "no camera '\(id)'") }
        return c
    }

    private static func spec(_ req: Request, _ ctx: BasicRequestContext, maxBody: Int) async throws -> CameraSpec {
        let id = try ctx.parameters.require("id")
        var request = req
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: maxBody) } catch {
            throw HTTPError(.contentTooLarge, message: "request body larger than \(maxBody) bytes")
        }
        do { return try CameraJSON.spec(id: id, body: Array(buffer: body)) } catch let e as CameraJSON.Invalid {
            throw HTTPError(.badRequest, message: e.description)
        }
    }

    private static func upsert(_ engine: ServeEngine, _ spec: CameraSpec) throws -> Response {
        switch engine.put(fromAPI: spec) {
        case .success(let r):
            var j = JSONBuffer(capacity: 512)
            if let c = engine.camera(spec.id) { CameraJSON.write(c.status(), into: &j) } else { j.beginObject(); j.endObject() }
            var res = json(j)
            res.status = r == .added ? .created : .ok
            return res
        case .failure(let e as ServeError):
            if case .shuttingDown = e { throw HTTPError(.serviceUnavailable, message: e.description) }
            if case .notSaved = e { throw HTTPError(.internalServerError, message: e.description) }
            throw HTTPError(.conflict, message: e.description)
        case .failure(let e):
            throw HTTPError(.badRequest, message: redactCredentials("\(e)"))
        }
    }

    static func text(_ s: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: s)))
    }

    static func json(_ j: JSONBuffer) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: j.bytes + [0x0A])))
    }
}

/// Why the API could not start.
public struct ServeHTTPError: Error, CustomStringConvertible {
    public var description: String
}

/// `Authorization: Bearer <token>` on every path but `open` (constant-time compare); 401 otherwise.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let open: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, !open.contains(request.uri.path) else { return try await next(request, context) }
        let given = request.headers[.authorization] ?? ""
        let expected = "Bearer " + token
        guard Self.equal(Array(given.utf8), Array(expected.utf8)) else {
            var headers = HTTPFields()
            headers[.wwwAuthenticate] = "Bearer realm=\"fpnstream\""
            headers[.contentType] = "text/plain; charset=utf-8"
            return Response(status: .unauthorized, headers: headers,
                            body: .init(byteBuffer: ByteBuffer(string: given.isEmpty ? "missing bearer token\n" : "wrong bearer token\n")))
        }
        return try await next(request, context)
    }

    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) { diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0) }
        return diff == 0
    }
}
