import Foundation

/// A fixed-memory latency histogram: logarithmic buckets 2 % wide from 1 µs to about an hour, so percentiles of an
/// endless live stream cost the same few KB as those of a short file (exact count, mean, min and max are kept too).
public struct LatencyHistogram: Sendable, Equatable {
    /// Relative bucket width: a percentile is exact to within this factor.
    public static let growth = 1.02
    static let minMs = 0.001
    static let bucketCount = Int((log(3_600_000.0 / minMs) / log(growth)).rounded(.up)) + 2

    private var buckets: [UInt32]
    /// Number of recorded samples.
    public private(set) var count = 0
    /// Sum of all samples in milliseconds.
    public private(set) var sumMs = 0.0
    /// Smallest sample (ms), 0 when empty.
    public private(set) var minMs = 0.0
    /// Largest sample (ms), 0 when empty.
    public private(set) var maxMs = 0.0

    public init() { buckets = Array(repeating: 0, count: Self.bucketCount) }

    /// Records one duration in milliseconds (negative and non-finite values count as 0).
    public mutating func record(ms: Double) {
        let v = ms.isFinite ? max(0, ms) : 0
        buckets[Self.bucket(for: v)] &+= 1
        if count == 0 { minMs = v; maxMs = v } else { minMs = min(minMs, v); maxMs = max(maxMs, v) }
        count += 1
        sumMs += v
    }

    /// Mean in ms, 0 when empty.
    public var meanMs: Double { count == 0 ? 0 : sumMs / Double(count) }

    /// The `p`-quantile (`p` in 0...1) in ms, within `growth` of the exact nearest-rank value and clamped to the
    /// observed min/max; 0 when empty.
    public func percentile(_ p: Double) -> Double {
        guard count > 0 else { return 0 }
        let rank = max(1, Int((p * Double(count)).rounded(.up)))  // nearest-rank definition
        var seen = 0
        for (i, n) in buckets.enumerated() where n > 0 {
            seen += Int(n)
            if seen >= rank {
                if i == Self.bucketCount - 1 { return maxMs }  // overflow bucket: no representative value
                return min(max(Self.representative(of: i), minMs), maxMs)
            }
        }
        return maxMs
    }

    static func bucket(for ms: Double) -> Int {
        if ms < minMs { return 0 }
        let i = Int(log(ms / minMs) / log(growth)) + 1
        return min(i, bucketCount - 1)
    }

    /// Geometric middle of bucket `i` (bucket 0 holds everything below 1 µs).
    static func representative(of i: Int) -> Double {
        if i == 0 { return 0 }
        return minMs * pow(growth, Double(i - 1) + 0.5)
    }
}

/// Counters and latency of one stage (or the source), as printed in the end-of-run summary.
public struct StageMetrics: Sendable, Equatable {
    /// Stage name.
    public var name: String
    /// Items that entered `process` (for the source: items produced).
    public var count: Int
    /// Items consumed without forwarding (the stage returned nil).
    public var filtered: Int
    /// Items discarded by the drop policy of this stage's input queue.
    public var drops: Int
    /// Capacity of this stage's input queue (0 for the source).
    public var queueCapacity: Int
    /// Largest number of items ever waiting in this stage's input queue.
    public var maxQueueDepth: Int
    /// Time spent in `process` (for the source: in `next()`), per item.
    public var latency: LatencyHistogram

    public init(name: String, count: Int = 0, filtered: Int = 0, drops: Int = 0, queueCapacity: Int = 0,
                maxQueueDepth: Int = 0, latency: LatencyHistogram = LatencyHistogram()) {
        self.name = name
        self.count = count
        self.filtered = filtered
        self.drops = drops
        self.queueCapacity = queueCapacity
        self.maxQueueDepth = maxQueueDepth
        self.latency = latency
    }

    /// Mean latency in ms.
    public var meanMs: Double { latency.meanMs }
    /// Median latency in ms.
    public var p50Ms: Double { latency.percentile(0.5) }
    /// 95th-percentile latency in ms.
    public var p95Ms: Double { latency.percentile(0.95) }
}

/// How a pipeline run ended.
public enum PipelineCompletion: Sendable, CustomStringConvertible {
    /// The source reached end of stream and every item went through.
    case finished
    /// `cancel(.drain)`: the source was stopped; items already in flight went through.
    case drained
    /// `cancel(.abort)`: the source was stopped and in-flight items were discarded.
    case aborted
    /// A stage threw; the pipeline stopped and discarded in-flight items.
    case failed(PipelineError)

    public var description: String {
        switch self {
        case .finished: return "finished"
        case .drained: return "cancelled (drained)"
        case .aborted: return "cancelled (aborted)"
        case .failed(let e): return "failed: \(e)"
        }
    }

    /// The error, when the run failed.
    public var error: PipelineError? { if case .failed(let e) = self { return e }; return nil }
}

/// The result of a pipeline run: how it ended, per-stage metrics and wall time.
public struct PipelineReport: Sendable {
    /// How the run ended.
    public var completion: PipelineCompletion
    /// Source first, then stages in chain order.
    public var stages: [StageMetrics]
    /// Wall time from `start()` to the last stage closing, in seconds.
    public var wallSeconds: Double

    public init(completion: PipelineCompletion, stages: [StageMetrics], wallSeconds: Double) {
        self.completion = completion
        self.stages = stages
        self.wallSeconds = wallSeconds
    }

    /// A plain-text table, one line per stage:
    /// ```
    /// stage        count  drops  mean ms   p50 ms   p95 ms  queue
    /// decode         795      0     3.10     2.95     4.80    -
    /// detect         795      0    81.20    80.00    90.10   4/4
    /// ```
    public func formattedSummary() -> String { MetricsFormatter.table(stages, wallSeconds: wallSeconds) }
}

/// Formats stage metrics as an aligned text table.
public enum MetricsFormatter {
    /// One header line, one line per stage, and a total line with wall time and throughput of the source.
    public static func table(_ stages: [StageMetrics], wallSeconds: Double? = nil) -> String {
        let nameWidth = max(5, stages.map { $0.name.count }.max() ?? 0)
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let n = max(0, w - s.count)
            return left ? s + String(repeating: " ", count: n) : String(repeating: " ", count: n) + s
        }
        func ms(_ v: Double) -> String { String(format: "%.2f", v) }
        var lines = [pad("stage", nameWidth, left: true) + "  " + pad("count", 8) + "  " + pad("filtered", 8) + "  "
                     + pad("drops", 7) + "  " + pad("mean ms", 9) + "  " + pad("p50 ms", 9) + "  " + pad("p95 ms", 9)
                     + "  " + pad("max q", 7)]
        for s in stages {
            let q = s.queueCapacity > 0 ? "\(s.maxQueueDepth)/\(s.queueCapacity)" : "-"
            lines.append(pad(s.name, nameWidth, left: true) + "  " + pad(String(s.count), 8) + "  "
                         + pad(String(s.filtered), 8) + "  " + pad(String(s.drops), 7) + "  " + pad(ms(s.meanMs), 9)
                         + "  " + pad(ms(s.p50Ms), 9) + "  " + pad(ms(s.p95Ms), 9) + "  " + pad(q, 7))
        }
        if let wall = wallSeconds, let first = stages.first {
            let fps = wall > 0 ? Double(first.count) / wall : 0
            lines.append(String(format: "total: %d items in %.2f s (%.1f items/s)", first.count, wall, fps))
        }
        return lines.joined(separator: "\n")
    }
}
