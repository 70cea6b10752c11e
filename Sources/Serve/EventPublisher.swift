import FPNStream
import Foundation
import MQTT
import Outputs

/// `serve`'s MQTT topics (QoS 1):
/// - `<prefix>/<camera>/frame`: the JSONL frame object of every processed frame (with `camera`; unless
///   `mqtt.frames: false`),
/// - `<prefix>/<camera>/events`: connection events (`connected`, `disconnected`, `reconnecting`, `reconnected`,
///   ...) and `track_started` / `track_ended`,
/// - `<prefix>/<instance>/status`: retained `{"status":"online",...}` at start, `"offline"` at a clean stop, and
///   the same `"offline"` as the last will when the process dies.
public final class EventPublisher: @unchecked Sendable {
    let client: MQTTClient
    let settings: MQTTSettings
    let instance: String

    /// Checks that the broker answers (an error names the broker, never the credentials), then starts publishing.
    public init(settings: MQTTSettings, instance: String, shard: Shard) throws {
        self.settings = settings
        self.instance = instance
        var o = MQTTOptions(host: settings.host, port: settings.port,
                            clientID: "fpnstream-\(instance)-\(shard.index)-\(getpid())")
        o.username = settings.username
        o.password = settings.password
        o.keepAlive = UInt16(min(settings.keepAlive, 65535))
        o.bufferLimit = settings.buffer
        o.will = MQTTPacket.Publish(topic: "\(settings.prefix)/\(instance)/status",
                                    payload: Self.status("offline", instance: instance, shard: shard), qos: 1, retain: true)
        try MQTTClient.probe(o)
        client = MQTTClient(options: o)
        client.start()
        client.publish(topic: "\(settings.prefix)/\(instance)/status",
                       payload: Self.status("online", instance: instance, shard: shard), qos: 1, retain: true)
        shardText = shard
    }

    private let shardText: Shard

    /// A camera's message (`kind`: `frame` or `events`).
    func camera(_ id: String, _ kind: String, _ payload: [UInt8]) {
        if kind == "frame" && !settings.frames { return }
        client.publish(topic: "\(settings.prefix)/\(id)/\(kind)", payload: payload, qos: 1)
    }

    /// Counters of the MQTT client.
    public var stats: MQTTStats { client.stats }

    /// Publishes the retained "offline" status, delivers what is buffered (at most `timeout` s), disconnects.
    public func stop(timeout: Double = 1.5) {
        client.stop(timeout: timeout, finalMessages: [
            MQTTPacket.Publish(topic: "\(settings.prefix)/\(instance)/status",
                               payload: Self.status("offline", instance: instance, shard: shardText), qos: 1, retain: true),
        ])
    }

    static func status(_ s: String, instance: String, shard: Shard) -> [UInt8] {
        var j = JSONBuffer(capacity: 128)
        j.beginObject()
        j.key("status"); j.string(s)
        j.key("instance"); j.string(instance)
        j.key("shard"); j.string(shard.description)
        j.key("pid"); j.int(Int(getpid()))
        j.key("wall_time"); j.number(Date().timeIntervalSince1970, decimals: 3)
        j.endObject()
        return j.bytes
    }
}
