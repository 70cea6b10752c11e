import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TestSupport
import XCTest

/// A blocking HTTP client for the tests (URLSession on a semaphore).
struct HTTPClient {
    let base: String
    var token: String?

    struct Reply {
        var status: Int
        var body: Data
        var contentType: String?
        var text: String { String(decoding: body, as: UTF8.self) }
        func json() -> Any? { try? JSONSerialization.jsonObject(with: body) }
    }

    func request(_ method: String, _ path: String, body: Data? = nil, token override: String?? = nil) throws -> Reply {
        var r = URLRequest(url: URL(string: base + path)!)
        r.httpMethod = method
        r.httpBody = body
        r.timeoutInterval = 30
        if let t = override ?? token { r.setValue("Bearer \(t)", forHTTPHeaderField: "Authorization") }
        if body != nil { r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<Reply, Error> = .failure(URLError(.timedOut))
        URLSession.shared.dataTask(with: r) { data, response, error in
            if let error { result = .failure(error) } else {
                let h = response as? HTTPURLResponse
                result = .success(Reply(status: h?.statusCode ?? 0, body: data ?? Data(),
                                        contentType: h?.value(forHTTPHeaderField: "Content-Type")))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }

    func get(_ path: String) throws -> Reply { try request("GET", path) }
}

/// Polls `condition` every 50 ms for at most `timeout` seconds; returns whether it held.
@discardableResult
func eventually(timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let end = Date(timeIntervalSinceNow: timeout)
    while Date() < end {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

/// The demo clip, looped as a camera.
var demoClip: String { TestPaths.samples.appendingPathComponent("demo.mp4").path }

/// The demo model's pipeline, or skip when the model was not fetched.
func demoPipeline() throws -> String {
    let model = TestPaths.samples.appendingPathComponent("models/demo.safetensors").path
    guard FileManager.default.fileExists(atPath: model) else { throw XCTSkip("demo model missing (make models)") }
    return TestPaths.root.appendingPathComponent("pipelines/demo.yaml").path
}
