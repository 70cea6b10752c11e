import Foundation
import TemporalReuse

/// The greedy search of `fpnstream calibrate`: per-layer delta thresholds tuned group by group in forward order, each
/// group raised through `candidates` while the fidelity of a delta run (a `FidelityEvaluator` run with a fresh cache)
/// stays at or above `targetFidelity`; the last value that passed is kept.
public struct ThresholdCalibration {
    /// What fidelity means: detection agreement F1 with the dense run, or 1 − the worst per-level pyramid error.
    public enum Metric: String, Sendable, CaseIterable { case f1, feature }

    public var targetFidelity: Double
    public var metric: Metric
    /// Candidate thresholds, ascending.
    public var candidates: [Float]
    /// Threshold of every layer before tuning.
    public var baseThreshold: Float
    /// Dense refresh interval of the runs (and the settings returned).
    public var refresh: Int
    public var denseFallback: Double
    public var tile: Int
    /// Stop after this many delta runs (0 = no limit).
    public var maxRuns: Int

    public init(targetFidelity: Double, metric: Metric, candidates: [Float], baseThreshold: Float, refresh: Int,
                denseFallback: Double, tile: Int, maxRuns: Int) {
        self.targetFidelity = targetFidelity
        self.metric = metric
        self.candidates = candidates
        self.baseThreshold = baseThreshold
        self.refresh = refresh
        self.denseFallback = denseFallback
        self.tile = tile
        self.maxRuns = maxRuns
    }

    /// How the search ended.
    public struct Outcome {
        /// Delta settings with the chosen per-layer thresholds.
        public var settings: TemporalSettings
        /// Each group's chosen threshold, in search order.
        public var groups: [(name: String, threshold: Float)]
        /// The run of the accepted configuration.
        public var best: FidelityEvaluator.Result
        /// Delta runs made.
        public var runs: Int
    }

    /// The fidelity of `result` under `metric`.
    public func fidelity(_ result: FidelityEvaluator.Result) -> Double {
        metric == .f1 ? result.f1 : result.featureFidelity
    }

    /// Runs the search over `groups` (from `groups(_:by:)`) of the conv layers `layers`; `log` gets one line per run.
    /// Throws `CalibrationError` when even the base threshold misses the target.
    public func run(_ evaluator: FidelityEvaluator, layers: [String], groups: [(String, [String])],
                    log: (String) -> Void) throws -> Outcome {
        var thresholds = Dictionary(uniqueKeysWithValues: layers.map { ($0, baseThreshold) })
        func settings() -> TemporalSettings {
            TemporalSettings(mode: .delta, threshold: baseThreshold, layerThresholds: thresholds, refreshInterval: refresh,
                             denseFallback: denseFallback, tile: tile)
        }
        var runs = 0
        func measure() -> FidelityEvaluator.Result {
            runs += 1
            return evaluator.run(settings())
        }
        var best = measure()
        log(String(format: "base threshold %g: fidelity %.4f, recomputed %.3f", baseThreshold, fidelity(best), best.recomputed))
        guard fidelity(best) >= targetFidelity else {
            throw CalibrationError(description: String(format: "even the base threshold %g reaches only fidelity %.4f < "
                                                       + "target %.4f (lower --base-threshold or the target)",
                                                       baseThreshold, fidelity(best), targetFidelity))
        }
        var chosen: [(name: String, threshold: Float)] = []
        groupLoop: for (name, keys) in groups {
            var value = baseThreshold
            for c in candidates where c > value {
                if maxRuns > 0 && runs >= maxRuns {
                    log("--max-runs \(maxRuns) reached")
                    chosen.append((name, value))
                    break groupLoop
                }
                for k in keys { thresholds[k] = c }
                let r = measure()
                log(String(format: "  %@ = %g: fidelity %.4f, recomputed %.3f, %.0f ms/frame", name, c, fidelity(r),
                           r.recomputed, r.deltaMs))
                if fidelity(r) >= targetFidelity {
                    value = c
                    best = r
                } else {
                    break
                }
            }
            for k in keys { thresholds[k] = value }
            chosen.append((name, value))
        }
        return Outcome(settings: settings(), groups: chosen, best: best, runs: runs)
    }

    /// Layer keys grouped in forward order: by stage (`stem`, `layer1`…`layer4`, `fpn`, then any other prefix), by
    /// depth (`stem`, then `deep`: every other conv) or one group per layer (`layer`).
    public static func groups(_ keys: [String], by mode: String) -> [(String, [String])] {
        if mode == "layer" { return keys.map { ($0, [$0]) } }
        if mode == "depth" {
            // One deep threshold for everything after the stem: the stem filters the input's noise (its own box
            // metric), the deeper convs see feature changes, and one value for them all avoids a greedy search that
            // spends the fidelity budget on the first stages (docs/design/temporal.md, "Calibration").
            let stage = groups(keys, by: "stage")
            let stem = stage.first { $0.0 == "stem" }?.1 ?? []
            let deep = keys.filter { !stem.contains($0) }
            return (stem.isEmpty ? [] : [("stem", stem)]) + (deep.isEmpty ? [] : [("deep", deep)])
        }
        var out: [(String, [String])] = []
        for k in keys {
            let parts = k.split(separator: ".").map(String.init)
            let name: String
            if let i = parts.firstIndex(of: "body"), i + 1 < parts.count {
                name = parts[i + 1].hasPrefix("layer") ? parts[i + 1] : "stem"
            } else if parts.contains("fpn") {
                name = "fpn"
            } else {
                name = parts.dropLast().joined(separator: ".")
            }
            if let j = out.firstIndex(where: { $0.0 == name }) { out[j].1.append(k) } else { out.append((name, [k])) }
        }
        return out
    }

    /// The pipeline file `calibrate` writes: the model and the delta settings with every layer's threshold (in
    /// `order`), headed by comments saying how they were found.
    public func pipelineYAML(_ outcome: Outcome, order: [String], model: String, clip: String, group: String,
                             frames: Int) -> String {
        func q(_ v: String) -> String { "'" + v.replacingOccurrences(of: "'", with: "''") + "'" }
        let s = outcome.settings
        var y = "# Written by `fpnstream calibrate` on \(frames) frames of \(clip)\n"
        y += String(format: "# metric %@: fidelity %.4f (target %.4f); recomputed %.3f of dense conv FLOPs\n",
                    metric.rawValue, fidelity(outcome.best), targetFidelity, outcome.best.recomputed)
        y += "# groups (\(group)): " + outcome.groups.map { "\($0.name)=\(Self.format($0.threshold))" }
            .joined(separator: ", ") + "\n"
        y += "model:\n  path: \(q(model))\n"
        y += "temporal:\n  mode: delta\n  threshold: \(Self.format(s.threshold))\n"
        y += "  refresh_interval: \(s.refreshInterval)\n  dense_fallback: \(s.denseFallback)\n  tile: \(s.tile)\n"
        y += "  layer_thresholds:\n"
        for l in order { y += "    \(l): \(Self.format(s.layerThresholds[l]!))\n" }
        return y
    }

    static func format(_ v: Float) -> String { String(format: "%g", v) }
}

/// The calibration cannot meet its target; `description` is the one line for the user.
public struct CalibrationError: Error, CustomStringConvertible {
    public let description: String
}
