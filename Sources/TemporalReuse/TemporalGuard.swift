/// Groups of conv layers whose delta thresholds the accuracy guard scales together.
public enum ThresholdGroup: String, CaseIterable, Sendable {
    /// The input conv (stem): decides where the frame changed.
    case input
    /// The convs of the closed backbone + FPN graph after the stem.
    case backbone
    /// Every other conv through the cache: the dense heads (RPN, semantic head, RetinaNet/FCOS towers), and every
    /// conv after the stem of an ONNX graph (which declares no closed graph).
    case heads
}

/// Settings of the accuracy guard of delta mode (`TemporalGuard`).
public struct TemporalGuardSettings: Equatable, Sendable {
    /// Whether delta mode verifies and adapts its thresholds (default on).
    public var enabled: Bool
    /// Agreement F1 (`DetectionAgreement`, IoU ≥ 0.9) of the delta result with the dense one on the verified frames
    /// that the guard holds, pooled over the last `window` verifications. The default sits just below the dense
    /// detectors' own one-grey-level noise floor (0.980-0.994 measured), i.e. at the floor − 0.01 bar.
    public var targetF1: Double
    /// Detections scored below this count on neither side of the agreement (those of a detector run at a low
    /// score threshold flicker by themselves; the same definition as `bench temporal --agreement-score`).
    public var minScore: Float
    /// Mean mask IoU of the matched pairs that the guard holds (pooled like `targetF1`).
    public var targetMaskIoU: Double
    /// Largest relative L2 error ||delta − dense|| / ||dense|| of any pyramid level on a verified frame; above it
    /// the guard tightens whatever the detections say (catches drift on frames without detections).
    public var maxPyramidError: Double
    /// Loosening needs every pyramid error of the window at or below this (the default thresholds keep 3-5e-2 on
    /// static clips).
    public var loosenPyramidError: Double
    /// A verification every this many frames; 0 = at each scheduled dense refresh (`refreshInterval`, or every 25
    /// frames when that is 0). A verification runs the frame in delta mode and then densely (the refresh) and
    /// compares the two; the frame's output is the dense result.
    public var interval: Int
    /// Verifications pooled for a decision, and passing verifications needed (since the last change) to loosen.
    public var window: Int
    /// Factor applied to every group's threshold scale on a failed verification, and to one group's on loosening.
    public var tightenFactor: Float, loosenFactor: Float
    /// Range of the threshold scales (× the configured thresholds).
    public var minScale: Float, maxScale: Float
    /// A failure with every scale at `minScale` runs the stream densely for this many frames before delta
    /// resumes (at `minScale`, verified again).
    public var denseFrames: Int

    public init(enabled: Bool = true, targetF1: Double = 0.975, minScore: Float = 0.5, targetMaskIoU: Double = 0.95,
                maxPyramidError: Double = 0.15, loosenPyramidError: Double = 0.05, interval: Int = 0, window: Int = 4,
                tightenFactor: Float = 0.5, loosenFactor: Float = 1.25, minScale: Float = 1.0 / 16,
                maxScale: Float = 2, denseFrames: Int = 100) {
        precondition(interval >= 0 && window >= 1 && tightenFactor > 0 && tightenFactor < 1 && loosenFactor > 1
                     && minScale > 0 && minScale <= 1 && maxScale >= 1 && denseFrames >= 1,
                     "temporal guard settings out of range")
        self.enabled = enabled; self.targetF1 = targetF1; self.minScore = minScore; self.targetMaskIoU = targetMaskIoU
        self.maxPyramidError = maxPyramidError; self.loosenPyramidError = loosenPyramidError
        self.interval = interval; self.window = window
        self.tightenFactor = tightenFactor; self.loosenFactor = loosenFactor
        self.minScale = minScale; self.maxScale = maxScale; self.denseFrames = denseFrames
    }
}

/// What one verification measured: the delta result of a frame against the dense result of the same frame.
public struct GuardMeasurement: Equatable, Sendable {
    /// Matched pairs and detections on each side (counts, pooled by adding), as in `DetectionAgreement`.
    public var matched: Int, reference: Int, candidate: Int
    /// Sum of mask IoUs over `maskPairs` matched pairs with masks.
    public var maskIoUSum: Double, maskPairs: Int
    /// Largest per-level relative L2 error of the pyramid; nil when the detector exposes no pyramid (ONNX).
    public var pyramidError: Double?

    public init(matched: Int, reference: Int, candidate: Int, maskIoUSum: Double = 0, maskPairs: Int = 0,
                pyramidError: Double? = nil) {
        self.matched = matched; self.reference = reference; self.candidate = candidate
        self.maskIoUSum = maskIoUSum; self.maskPairs = maskPairs; self.pyramidError = pyramidError
    }

    /// F1 = 2·matched / (reference + candidate); 1 when both sides are empty.
    public var f1: Double { reference + candidate == 0 ? 1 : 2 * Double(matched) / Double(reference + candidate) }
    /// Mean mask IoU of matched pairs, nil without mask pairs.
    public var maskIoU: Double? { maskPairs > 0 ? maskIoUSum / Double(maskPairs) : nil }

    static func + (a: GuardMeasurement, b: GuardMeasurement) -> GuardMeasurement {
        GuardMeasurement(matched: a.matched + b.matched, reference: a.reference + b.reference,
                         candidate: a.candidate + b.candidate, maskIoUSum: a.maskIoUSum + b.maskIoUSum,
                         maskPairs: a.maskPairs + b.maskPairs,
                         pyramidError: [a.pyramidError, b.pyramidError].compactMap { $0 }.max())
    }
}

/// One decision of the guard, reported in the frame's JSONL line and counted in the run's summary.
public struct GuardEvent: Equatable, Sendable {
    public enum Action: String, Sendable {
        /// Within target, not enough evidence (or no room) to loosen.
        case hold
        /// Every group's scale multiplied by `tightenFactor`.
        case tighten
        /// One group's scale multiplied by `loosenFactor`.
        case loosen
        /// The last loosening failed: that group goes back and stays below it for a while.
        case revert
        /// Failure at the smallest scales: the stream runs densely for `denseFrames` frames.
        case dense
        /// The delta pass fell back to dense by itself (most of the frame changed): nothing measured.
        case skip
    }
    /// The verification's own figures (nil for `skip`).
    public var measurement: GuardMeasurement?
    /// The pooled window the decision was based on.
    public var pooled: GuardMeasurement?
    public var action: Action
    /// The group loosened or reverted.
    public var group: ThresholdGroup?
    /// Threshold scales after the decision.
    public var scales: [ThresholdGroup: Float]
}

/// The accuracy guard of one stream in delta mode (explicit per-stream state, never shared): decides which frames
/// are verified, and from each verification (the delta result against the dense result on the same frame)
/// tightens or loosens the per-group threshold scales of the stream's `TemporalCache` to hold `targetF1` /
/// `targetMaskIoU` / `maxPyramidError`, falling back to dense frames when even the smallest scales fail.
///
/// Control: a failed verification (pooled window below target, or a pyramid error above the bound) tightens every
/// group, unless the last change was a loosening, which is then reverted and capped (a ceiling lasting `4·window`
/// verifications). After `window` passing verifications with small pyramid errors it loosens one group at a time,
/// round robin (input, backbone, heads), within its ceiling and `maxScale`: a coordinate search on the thresholds,
/// driven by the verified frames only, so its decisions are deterministic given the frames.
public final class TemporalGuard {
    public let settings: TemporalGuardSettings
    /// Current threshold scales (× the configured thresholds), by group.
    public private(set) var scales: [ThresholdGroup: Float]
    /// Verifications since the last change of the scales.
    public private(set) var window: [GuardMeasurement] = []
    /// Counts of decisions so far.
    public private(set) var verifications = 0, tightened = 0, loosened = 0, reverted = 0, denseFallbacks = 0
    /// Frames left in the dense fall-back (0 = delta).
    public private(set) var denseFramesLeft = 0
    private var ceilings: [ThresholdGroup: (scale: Float, verificationsLeft: Int)] = [:]
    private var lastLoosened: ThresholdGroup?
    private var nextGroup = 0
    /// Delta frames run since the last verification. Only they can drift: refreshes, the cache's frame-level
    /// fall-backs and the guard's own dense frames are dense passes. The schedule counts them, not frames, so a
    /// busy scene that runs most frames densely is checked as often per delta frame as a static one, and pays for
    /// few probes.
    private var deltaFramesSinceVerification = 0
    /// The next verification comes early (a quarter interval): at the start of a stream, and after a failure, so
    /// bad thresholds are caught and a tightening is confirmed within a few frames.
    private var recheckSoon = true
    /// Regular verifications happen every `stride` intervals (every `stride`-th scheduled refresh). The first full
    /// window of passes that changed nothing (the scales can grow no further, or the pyramid errors keep them)
    /// doubles it, and every `window` more such passes again, up to `maxStride`; a failure or a loosening sets it
    /// back to 1. A camera that holds its accuracy then pays a quarter of the probes (each a delta pass: 2-4% of
    /// the work at stride 1), and the refreshes themselves stay on their schedule.
    public private(set) var stride = 1
    public static let maxStride = 4
    private var holdsAtStride = 0

    public init(settings: TemporalGuardSettings = TemporalGuardSettings()) {
        self.settings = settings
        scales = Dictionary(uniqueKeysWithValues: ThresholdGroup.allCases.map { ($0, 1) })
    }

    /// Frames between verifications given the cache's refresh interval. With `interval` 0 the regular checks fall
    /// on the cache's scheduled refreshes; at the start and after a failure the next comes a quarter interval (at
    /// least 2 frames) later. Only delta frames count (`deltaFramesSinceVerification`): a refresh is checked once a
    /// quarter interval of them ran since the last check.
    public func verificationInterval(refreshInterval: Int) -> Int {
        settings.interval > 0 ? settings.interval : (refreshInterval > 0 ? refreshInterval : 25)
    }

    /// What the next frame should be, given the cache (called once per frame, before it runs): `.dense` during a
    /// fall-back, `.verify` on the verification schedule, `.delta` otherwise.
    public enum FramePlan: Equatable, Sendable { case delta, verify, dense }
    public func plan(for cache: TemporalCache) -> FramePlan {
        if denseFramesLeft > 0 {
            denseFramesLeft -= 1
            if denseFramesLeft == 0 { deltaFramesSinceVerification = 0 }
            return .dense
        }
        if cache.frameIndex == 0 {   // dense anyway: nothing to verify
            deltaFramesSinceVerification = 0
            recheckSoon = true
            return .delta
        }
        let last = cache.lastStats   // the frame before this one
        if !last.refreshed && !last.frameFallback { deltaFramesSinceVerification += 1 }
        // With this frame's probe, itself a delta pass.
        let drifting = deltaFramesSinceVerification + 1
        let refresh = cache.settings.refreshInterval
        let regular = verificationInterval(refreshInterval: refresh), quarter = max(2, regular / 4)
        let due: Bool
        if recheckSoon {
            due = drifting >= quarter
        } else if settings.interval == 0 && refresh > 0 {
            // On the cache's own refresh schedule, so a regular check costs only its delta probe.
            due = cache.frameIndex % (refresh * stride) == 0 && drifting >= quarter
        } else {
            due = drifting >= regular * stride
        }
        guard due else { return .delta }
        // A busy scene runs its frames densely through the cache's own fall-back: a probe would most likely fall
        // back too and measure nothing. The check waits for a frame after a delta frame.
        if cache.busyLimit != nil && last.frameFallback { return .delta }
        deltaFramesSinceVerification = 0
        return .verify
    }

    /// Records a verification and adapts the scales; `nil` when the delta pass fell back to dense by itself.
    /// Applies the new scales to `cache` (they take effect from its next frame).
    @discardableResult
    public func record(_ m: GuardMeasurement?, cache: TemporalCache) -> GuardEvent {
        defer { cache.thresholdScales = scales }
        guard let m else { return GuardEvent(measurement: nil, pooled: nil, action: .skip, scales: scales) }
        verifications += 1
        for (g, c) in ceilings {
            ceilings[g] = c.verificationsLeft > 1 ? (c.scale, c.verificationsLeft - 1) : nil
        }
        window.append(m)
        if window.count > settings.window { window.removeFirst() }
        let pooled = window.dropFirst().reduce(window[0], +)
        let fails = pooled.f1 < settings.targetF1 || (pooled.maskIoU ?? 1) < settings.targetMaskIoU
            || (m.pyramidError ?? 0) > settings.maxPyramidError
        var event = GuardEvent(measurement: m, pooled: pooled, action: .hold, scales: scales)
        if !fails && window.count >= settings.window { lastLoosened = nil }   // the last loosening held
        recheckSoon = fails
        if fails {
            stride = 1; holdsAtStride = 0
            event.action = failed(&event.group)
        } else if window.count >= settings.window,
                  window.allSatisfy({ ($0.pyramidError ?? 0) <= settings.loosenPyramidError }),
                  let g = loosenable() {
            scales[g] = min(settings.maxScale, scales[g]! * settings.loosenFactor)
            lastLoosened = g
            nextGroup = (ThresholdGroup.allCases.firstIndex(of: g)! + 1) % ThresholdGroup.allCases.count
            loosened += 1
            window.removeAll()
            event.action = .loosen
            event.group = g
            stride = 1; holdsAtStride = 0
        } else if window.count >= settings.window {
            // A full window of passes at these scales, and nothing to loosen: check less often, once per window.
            holdsAtStride += 1
            if holdsAtStride >= settings.window || stride == 1 {
                stride = min(Self.maxStride, stride * 2)
                holdsAtStride = 0
            }
        }
        event.scales = scales
        return event
    }

    /// A failed verification: revert the last loosening, else tighten every group, else fall back to dense.
    private func failed(_ group: inout ThresholdGroup?) -> GuardEvent.Action {
        window.removeAll()
        if let g = lastLoosened {
            lastLoosened = nil
            scales[g] = max(settings.minScale, scales[g]! / settings.loosenFactor)
            ceilings[g] = (scales[g]!, 4 * settings.window)
            reverted += 1
            group = g
            return .revert
        }
        if scales.values.allSatisfy({ $0 <= settings.minScale }) {
            denseFramesLeft = settings.denseFrames
            denseFallbacks += 1
            return .dense
        }
        for g in ThresholdGroup.allCases {
            // Loosening may come back to just below the scale that failed.
            ceilings[g] = (scales[g]! / settings.loosenFactor, 4 * settings.window)
            scales[g] = max(settings.minScale, scales[g]! * settings.tightenFactor)
        }
        tightened += 1
        return .tighten
    }

    /// The next group (round robin) whose scale can grow within its ceiling and `maxScale`.
    private func loosenable() -> ThresholdGroup? {
        let all = ThresholdGroup.allCases
        for k in 0..<all.count {
            let g = all[(nextGroup + k) % all.count]
            let limit = min(settings.maxScale, ceilings[g]?.scale ?? .infinity)
            if scales[g]! * settings.loosenFactor <= limit * 1.0001 { return g }
        }
        return nil
    }
}
