import FPNCore
import Tensor
import TemporalReuse

/// Delta-mode state of one stream of a detector: its `TemporalCache`, reset when the frame size changes (a new
/// stream, or a reconnect at another resolution; a fixed-size transform can hide that from the cache), and its
/// accuracy guard (`TemporalGuard`, on by default).
public final class TemporalStreamState: @unchecked Sendable {
    /// The delta cache (the detector's conv runner).
    public let cache: TemporalCache
    /// The stream's accuracy guard (nil: off).
    public let accuracyGuard: TemporalGuard?
    /// Captures the pyramid levels on verified frames (nil: the detector exposes none, e.g. ONNX graphs).
    public let capture: PyramidCapture?
    /// `temporal: auto` until its calibration ran (nil: thresholds as configured).
    var autoCalibration: AutoCalibration?
    /// Resets so far (frame size changes).
    public private(set) var resets = 0
    private var size: (Int, Int)?

    /// `capture`: a `PyramidCapture` around `cache`, installed as the detector's runner, for the pyramid error.
    init(cache: TemporalCache, guard settings: TemporalGuardSettings, capture: PyramidCapture? = nil) {
        self.cache = cache
        accuracyGuard = settings.enabled ? TemporalGuard(settings: settings) : nil
        self.capture = capture
        capture?.capturing = false
    }

    /// The runner a detector installs: the capture around the cache when there is one.
    var runner: ConvolutionRunner { capture ?? cache }

    func startFrame(width: Int, height: Int) {
        if let size, size != (width, height) {
            cache.reset()
            resets += 1
        }
        size = (width, height)
    }

    /// One frame in delta mode: `run` fills `result` through the cache (the detector's forward pass). On the
    /// guard's verified frames it runs twice, as a delta probe and then densely (a refresh, whose result is the
    /// frame's output), compares the two and lets the guard adapt the thresholds; during the guard's dense
    /// fall-back every frame is a dense pass.
    func detect(_ frame: Frame, into result: inout FrameResult, run: (inout FrameResult) throws -> Void) rethrows {
        startFrame(width: frame.info.width, height: frame.info.height)
        if let a = autoCalibration, !a.done {
            // The calibration frames run densely; the last of them runs the search.
            cache.nextFrame = .dense
            try run(&result)
            result.temporalGuard = a.add(frame.image, cache: cache)
            result.recomputedFraction = cache.lastStats.recomputedFraction
            return
        }
        guard let g = accuracyGuard else {
            try run(&result)
            result.recomputedFraction = cache.lastStats.recomputedFraction
            return
        }
        switch g.plan(for: cache) {
        case .delta:
            try run(&result)
        case .dense:
            cache.nextFrame = .dense
            try run(&result)
        case .verify:
            cache.nextFrame = .probe
            capture?.capturing = true
            defer { capture?.capturing = false }
            var probe = result
            try run(&probe)
            let probeStats = cache.lastStats
            if probeStats.frameFallback {
                // Most of the frame changed: the probe ran densely by itself, it is the frame's dense result.
                result = probe
                result.temporalGuard = Self.record(g.record(nil, cache: cache), probeRecomputed: 1)
                result.recomputedFraction = 1
                return
            }
            let probeLevels = capture?.copiedOutputs()
            cache.nextFrame = .dense
            try run(&result)
            let measured = Self.measure(probe.detections, against: result.detections, minScore: g.settings.minScore,
                                        levels: probeLevels, capture: capture)
            let event = g.record(measured, cache: cache)
            result.temporalGuard = Self.record(event, probeRecomputed: probeStats.recomputedFraction)
        }
        result.recomputedFraction = cache.lastStats.recomputedFraction
    }

    /// The delta probe's detections and pyramid levels against the dense ones of the same frame.
    static func measure(_ delta: [Detection], against dense: [Detection], minScore: Float, levels: [String: Tensor]?,
                        capture: PyramidCapture?) -> GuardMeasurement {
        let a = DetectionAgreement(reference: dense, candidate: delta, minScore: minScore)
        var error: Double?
        if let levels, let capture {
            for (key, t) in levels {
                guard let d = capture.outputs[key], d.shape == t.shape else { continue }
                error = max(error ?? 0, PyramidCapture.relativeL2(t, d))
            }
        }
        return GuardMeasurement(matched: a.matched, reference: a.reference, candidate: a.candidate,
                                maskIoUSum: a.maskIoUSum, maskPairs: a.maskPairs, pyramidError: error)
    }

    /// The frame's JSONL record of a guard decision.
    static func record(_ e: GuardEvent, probeRecomputed: Double) -> TemporalGuardRecord {
        var r = TemporalGuardRecord(action: e.action.rawValue, group: e.group?.rawValue, f1: e.measurement?.f1,
                                    maskIoU: e.measurement?.maskIoU, pyramidError: e.measurement?.pyramidError,
                                    pooledF1: e.pooled?.f1, pooledMaskIoU: e.pooled?.maskIoU,
                                    probeRecomputed: probeRecomputed,
                                    scales: ThresholdGroup.allCases.map { ($0.rawValue, Double(e.scales[$0] ?? 1)) })
        if let m = e.measurement { r.matched = m.matched; r.reference = m.reference; r.candidate = m.candidate }
        return r
    }
}
