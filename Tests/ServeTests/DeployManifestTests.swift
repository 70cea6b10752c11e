import FPNStream
import Foundation
import Serve
import TestSupport
import XCTest
import Yams

/// What can be checked of deploy/kubernetes without a cluster: every manifest parses, the pieces refer to each
/// other correctly, the embedded camera file and pipeline are valid for this build, and docs/api/openapi.yaml
/// names exactly the routes the server has.
final class DeployManifestTests: XCTestCase {
    let root = TestPaths.root.appendingPathComponent("deploy/kubernetes")

    func manifest(_ name: String) throws -> [String: Any] {
        let text = try String(contentsOf: root.appendingPathComponent(name), encoding: .utf8)
        return try XCTUnwrap(try Yams.load(yaml: text) as? [String: Any], name)
    }

    func testManifestsParseAndFitTogether() throws {
        let kustomize = try manifest("kustomization.yaml")
        let files = try XCTUnwrap(kustomize["resources"] as? [String])
        XCTAssertEqual(Set(files), ["configmap.yaml", "secret.yaml", "service.yaml", "statefulset.yaml"])
        var kinds: [String: [String: Any]] = [:]
        for f in files {
            let m = try manifest(f)
            XCTAssertNotNil(m["apiVersion"], f)
            kinds[try XCTUnwrap(m["kind"] as? String, f)] = m
        }
        XCTAssertEqual(Set(kinds.keys), ["ConfigMap", "Secret", "Service", "StatefulSet"])

        let sts = try XCTUnwrap(kinds["StatefulSet"])
        let spec = try XCTUnwrap(sts["spec"] as? [String: Any])
        let template = try XCTUnwrap(spec["template"] as? [String: Any])
        let meta = try XCTUnwrap(template["metadata"] as? [String: Any])
        let annotations = try XCTUnwrap(meta["annotations"] as? [String: String])
        XCTAssertEqual(annotations["prometheus.io/scrape"], "true")
        XCTAssertEqual(annotations["prometheus.io/path"], "/metrics")
        let container = try XCTUnwrap(((template["spec"] as? [String: Any])?["containers"] as? [[String: Any]])?.first)
        let probe = { (k: String) in ((container[k] as? [String: Any])?["httpGet"] as? [String: Any])?["path"] as? String }
        XCTAssertEqual(probe("livenessProbe"), "/healthz")
        XCTAssertEqual(probe("readinessProbe"), "/readyz")
        // SHARDS equals the replica count, and the shard comes from the pod ordinal.
        let replicas = try XCTUnwrap(spec["replicas"] as? Int)
        let env = try XCTUnwrap(container["env"] as? [[String: Any]])
        XCTAssertEqual(env.first { $0["name"] as? String == "SHARDS" }?["value"] as? String, String(replicas))
        let args = (container["args"] as? [String])?.joined() ?? ""
        XCTAssertTrue(args.contains("--shard \"${HOSTNAME##*-}/$SHARDS\""), args)
        XCTAssertEqual(spec["serviceName"] as? String, (kinds["Service"]?["metadata"] as? [String: Any])?["name"] as? String)
        let secretName = (kinds["Secret"]?["metadata"] as? [String: Any])?["name"] as? String
        let envFrom = (container["envFrom"] as? [[String: Any]])?.first?["secretRef"] as? [String: Any]
        XCTAssertEqual(envFrom?["name"] as? String, secretName)

        // The camera file in the ConfigMap is valid with the Secret's variables set, and names every one of them.
        let data = try XCTUnwrap(kinds["ConfigMap"]?["data"] as? [String: String])
        let secrets = try XCTUnwrap(kinds["Secret"]?["stringData"] as? [String: String])
        let config = try ServeConfig.parse(yaml: try XCTUnwrap(data["cameras.yaml"]), file: "configmap cameras.yaml",
                                           environment: secrets)
        XCTAssertGreaterThan(config.cameras.count, replicas, "enough cameras to split")
        XCTAssertEqual(config.http.host, "0.0.0.0")
        XCTAssertThrowsError(try ServeConfig.parse(yaml: data["cameras.yaml"]!, file: "c", environment: [:]),
                             "the file needs the Secret")
        XCTAssertNoThrow(try PipelineSpec.parse(yaml: try XCTUnwrap(data["pipeline.yaml"]), file: "configmap pipeline.yaml"))
    }

    func testOpenAPINamesTheServedRoutes() throws {
        let text = try String(contentsOf: TestPaths.root.appendingPathComponent("docs/api/openapi.yaml"), encoding: .utf8)
        let doc = try XCTUnwrap(try Yams.load(yaml: text) as? [String: Any])
        let paths = try XCTUnwrap(doc["paths"] as? [String: [String: Any]])
        var routes = Set<String>()
        for (path, ops) in paths {
            for method in ["get", "post", "put", "delete"] where ops[method] != nil { routes.insert("\(method.uppercased()) \(path)") }
        }
        XCTAssertEqual(routes, ["GET /healthz", "GET /readyz", "GET /metrics", "GET /api/cameras", "GET /api/cameras/{id}",
                                "POST /api/cameras/{id}", "PUT /api/cameras/{id}", "DELETE /api/cameras/{id}",
                                "GET /api/cameras/{id}/latest.jpg"])
        // The body keys the server accepts are the schema's.
        let schemas = try XCTUnwrap((doc["components"] as? [String: Any])?["schemas"] as? [String: Any])
        let spec = try XCTUnwrap((schemas["CameraSpec"] as? [String: Any])?["properties"] as? [String: Any])
        XCTAssertEqual(Set(spec.keys), ["url", "pipeline", "model", "temporal", "max_fps", "loop", "outputs"])
    }
}
