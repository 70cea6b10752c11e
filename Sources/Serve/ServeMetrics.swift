import FPNStream
import Foundation
import MQTT
import Prometheus
import StagePipeline

/// Prometheus metrics of one `serve` process (swift-prometheus registry, text exposition at `/metrics`).
///
/// Per camera (label `camera`): `fpnstream_camera_frames_in_total`, `_frames_processed_total`,
/// `_frames_dropped_total`, `_decode_errors_total`, `_reconnects_total`, `_frames_repeated_total`, `_fps`,
/// `_connected`, `_queue_depth`, `_recomputed_fraction`, `_inference_seconds` and `_latency_seconds` (histograms) with their p50/p95 as gauges.
/// Process: `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_start_time_seconds`, and
/// `fpnstream_cameras`, `fpnstream_inference_waiting`, `fpnstream_models_loaded`; with MQTT,
/// `fpnstream_mqtt_delivered_total`, `_dropped_total`, `_pending`, `_connected`.
/// Counters read from the cameras' own counters are brought up to date at each scrape (by their increase, so a
/// counter never goes down while its camera lives).
public final class ServeMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let rss: Gauge
    private let cpu: Counter
    private let cameras: Gauge
    private let waiting: Gauge
    private let models: Gauge
    private let mqttDelivered, mqttDropped: Counter
    private let mqttPending, mqttConnected: Gauge
    private let lock = NSLock()
    private var cpuSeen = 0.0
    private var mqttSeen = (delivered: 0, dropped: 0)

    init() {
        rss = registry.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        cpu = registry.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
        registry.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
            .set(to: Date().timeIntervalSince1970 - ProcessInfo.processInfo.systemUptime + Self.startSinceBoot())
        cameras = registry.gauge("fpnstream_cameras", "Cameras this instance runs.")
        waiting = registry.gauge("fpnstream_inference_waiting", "Cameras waiting for an inference slot.")
        models = registry.gauge("fpnstream_models_loaded", "Distinct models loaded (shared by cameras).")
        mqttDelivered = registry.counter("fpnstream_mqtt_delivered_total",
                                         "MQTT messages the broker acknowledged (QoS 1).")
        mqttDropped = registry.counter("fpnstream_mqtt_dropped_total",
                                       "MQTT messages dropped because the outage buffer was full.")
        mqttPending = registry.gauge("fpnstream_mqtt_pending", "MQTT messages buffered or unacknowledged.")
        mqttConnected = registry.gauge("fpnstream_mqtt_connected", "1 while connected to the broker.")
    }

    /// Metrics of a new camera, registered until `remove`.
    func camera(_ id: String) -> CameraMetrics { CameraMetrics(id: id, registry: registry) }

    func remove(_ m: CameraMetrics) { m.unregister(from: registry) }

    /// The exposition text, after bringing every gauge and counter up to date.
    func render(statuses: [CameraStatus], metrics: [CameraMetrics], waitingCameras: Int, modelsLoaded: Int,
                mqtt: MQTTStats?) -> [UInt8] {
        let p = ProcessFigures.read()
        lock.lock()
        rss.set(to: Double(p.residentBytes))
        if p.cpuSeconds > cpuSeen { cpu.increment(by: p.cpuSeconds - cpuSeen); cpuSeen = p.cpuSeconds }
        if let mqtt {
            if mqtt.delivered > mqttSeen.delivered { mqttDelivered.increment(by: Int64(mqtt.delivered - mqttSeen.delivered)) }
            if mqtt.dropped > mqttSeen.dropped { mqttDropped.increment(by: Int64(mqtt.dropped - mqttSeen.dropped)) }
            mqttSeen = (max(mqttSeen.delivered, mqtt.delivered), max(mqttSeen.dropped, mqtt.dropped))
            mqttPending.set(to: Double(mqtt.pending))
            mqttConnected.set(to: mqtt.connected ? 1 : 0)
        }
        lock.unlock()
        cameras.set(to: Double(statuses.count))
        waiting.set(to: Double(waitingCameras))
        models.set(to: Double(modelsLoaded))
        for (s, m) in zip(statuses, metrics) { m.sync(s) }
        return registry.emitToBuffer()
    }

    /// Seconds from boot to this process's start (from /proc/self/stat).
    private static func startSinceBoot() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Field 22 (starttime, clock ticks since boot) is the 20th after the command name.
        guard fields.count > 19, let ticks = Double(fields[19]) else { return 0 }
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Resident memory and CPU time of this process, from /proc.
struct ProcessFigures {
    var residentBytes: Int
    var cpuSeconds: Double

    static func read() -> ProcessFigures {
        var f = ProcessFigures(residentBytes: 0, cpuSeconds: 0)
        if let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let pages = statm.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
            f.residentBytes = pages * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // utime and stime are fields 14 and 15: the 12th and 13th after the command name.
            if fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) {
                f.cpuSeconds = (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        return f
    }
}

/// One camera's metrics.
final class CameraMetrics: @unchecked Sendable {
    let id: String
    private let framesIn, processed, dropped, decodeErrors, reconnects, repeated: Counter
    private let fps, connected, queueDepth, recomputed: Gauge
    private let latencyP50, latencyP95, inferenceP50, inferenceP95: Gauge
    private let inferenceSeconds, latencySeconds: ValueHistogram
    private let lock = NSLock()
    private var inferenceMs = LatencyHistogram()
    private var seen: [String: Int] = [:]

    static let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    init(id: String, registry r: PrometheusCollectorRegistry) {
        self.id = id
        let l = [("camera", id)]
        framesIn = r.counter("fpnstream_camera_frames_in_total", "Frames delivered by the source.", labels: l)
        processed = r.counter("fpnstream_camera_frames_processed_total",
                              "Frames through every stage and output.", labels: l)
        dropped = r.counter("fpnstream_camera_frames_dropped_total",
                            "Frames dropped by the drop policy (inference slower than the camera).", labels: l)
        decodeErrors = r.counter("fpnstream_camera_decode_errors_total",
                                 "Packets or frames the decoder rejected, and damaged frames skipped.", labels: l)
        reconnects = r.counter("fpnstream_camera_reconnects_total", "Outages that ended with a frame.", labels: l)
        repeated = r.counter("fpnstream_camera_frames_repeated_total",
                             "Frames that repeated the last result: no change reached the pyramid (temporal delta).",
                             labels: l)
        fps = r.gauge("fpnstream_camera_fps", "Processed frames per second over the last 10 s.", labels: l)
        connected = r.gauge("fpnstream_camera_connected", "1 while the source is connected.", labels: l)
        queueDepth = r.gauge("fpnstream_camera_queue_depth",
                             "Frames delivered but not yet processed or dropped.", labels: l)
        recomputed = r.gauge("fpnstream_camera_recomputed_fraction",
                             "Mean fraction of backbone/FPN work recomputed per frame (temporal delta).", labels: l)
        latencyP50 = r.gauge("fpnstream_camera_latency_p50_seconds", "Median end-to-end latency.", labels: l)
        latencyP95 = r.gauge("fpnstream_camera_latency_p95_seconds", "95th percentile end-to-end latency.", labels: l)
        inferenceP50 = r.gauge("fpnstream_camera_inference_p50_seconds", "Median inference time.", labels: l)
        inferenceP95 = r.gauge("fpnstream_camera_inference_p95_seconds", "95th percentile inference time.", labels: l)
        inferenceSeconds = r.histogram("fpnstream_camera_inference_seconds",
                                       "Inference time per frame (model only).", labels: l, buckets: Self.buckets)
        latencySeconds = r.histogram("fpnstream_camera_latency_seconds",
                                     "End-to-end latency per frame (capture to output).", labels: l, buckets: Self.buckets)
    }

    func unregister(from r: PrometheusCollectorRegistry) {
        for c in [framesIn, processed, dropped, decodeErrors, reconnects, repeated] { r.unregisterCounter(c) }
        for g in [fps, connected, queueDepth, recomputed, latencyP50, latencyP95, inferenceP50, inferenceP95] {
            r.unregisterGauge(g)
        }
        r.unregisterValueHistogram(inferenceSeconds)
        r.unregisterValueHistogram(latencySeconds)
    }

    func inference(ms: Double) {
        inferenceSeconds.record(ms / 1000)
        lock.lock(); inferenceMs.record(ms: ms); lock.unlock()
    }

    func frame(latencyMs: Double) { latencySeconds.record(latencyMs / 1000) }

    func inferenceHistogram() -> LatencyHistogram { lock.lock(); defer { lock.unlock() }; return inferenceMs }

    /// Brings the metrics up to `s`.
    func sync(_ s: CameraStatus) {
        let live = s.live
        advance(framesIn, "in", live?.live.frames ?? 0)
        advance(processed, "processed", live?.processed ?? 0)
        advance(dropped, "dropped", live?.dropped ?? 0)
        advance(decodeErrors, "decode", live?.live.decodeErrors ?? 0)
        advance(reconnects, "reconnects", live?.live.reconnects ?? 0)
        advance(repeated, "repeated", live?.repeatedFrames ?? 0)
        fps.set(to: s.fps)
        connected.set(to: live?.connected == true ? 1 : 0)
        queueDepth.set(to: Double(s.inFlight))
        recomputed.set(to: live?.recomputedMean ?? 0)
        latencyP50.set(to: (live?.latency.percentile(0.5) ?? 0) / 1000)
        latencyP95.set(to: (live?.latency.percentile(0.95) ?? 0) / 1000)
        inferenceP50.set(to: s.inference.percentile(0.5) / 1000)
        inferenceP95.set(to: s.inference.percentile(0.95) / 1000)
    }

    private func advance(_ c: Counter, _ key: String, _ value: Int) {
        lock.lock()
        let delta = value - seen[key, default: 0]
        if delta > 0 { seen[key] = value }
        lock.unlock()
        if delta > 0 { c.increment(by: Int64(delta)) }
    }
}

extension PrometheusCollectorRegistry {
    // Plain metric names (no namespace or unit parts), as the exposition shows them.
    func counter(_ name: String, _ help: String, labels: [(String, String)] = []) -> Counter {
        makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func gauge(_ name: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
        makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    func histogram(_ name: String, _ help: String, labels: [(String, String)], buckets: [Double]) -> ValueHistogram {
        makeValueHistogram(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels,
                           buckets: buckets)
    }
}
