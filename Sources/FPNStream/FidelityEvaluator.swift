import FPNCore
import Tensor
import TemporalReuse
import Vision

/// Runs a detector densely once on a set of frames (the reference) and then, per candidate setting, with a fresh
/// temporal cache over the same frames, measuring agreement and pyramid error.
public final class FidelityEvaluator {
    /// The figures of one candidate run.
    public struct Result {
        public var agreement: DetectionAgreement
        /// 1 − the largest per-level mean relative L2 error (1 when features were not kept).
        public var featureFidelity: Double
        /// Mean fraction of dense conv FLOPs recomputed per frame.
        public var recomputed: Double
        /// Mean backbone+FPN ms/frame of the delta run.
        public var deltaMs: Double
        public var f1: Double { agreement.f1 }
    }

    public let detector: any Detector
    public let images: [RGBImage]
    /// Detections below this score are left out of the agreement.
    public let score: Float
    private var reference: [[Detection]] = []
    private var referenceLevels: [[String: Tensor]] = []
    /// Mean backbone+FPN ms/frame of the dense reference run (frames 1+).
    public private(set) var referenceMs = 0.0
    /// Reference detections at or above `score`, over all frames.
    public var referenceDetections: Int { reference.reduce(0) { $0 + $1.filter { $0.score >= score }.count } }

    /// Runs the dense reference now; `features` keeps its pyramid levels for `Result.featureFidelity`.
    public init(detector: any Detector, images: [RGBImage], score: Float, features: Bool) {
        self.detector = detector
        self.images = images
        self.score = score
        let capture = PyramidCapture(inner: nil)
        let state = DetectorState(runner: capture)
        for (i, image) in images.enumerated() {
            reference.append(detector.detect(image, state: state))
            // Frame 0 also allocates every buffer: timings count from frame 1 (as in `run`).
            if i > 0 { referenceMs += state.timingsMs["backbone"] ?? 0 }
            if features {
                var kept: [String: Tensor] = [:]
                for (k, t) in capture.outputs { let c = Tensor(shape: t.shape); c.copy(from: t); kept[k] = c }
                referenceLevels.append(kept)
            }
        }
        referenceMs /= Double(max(images.count - 1, 1))
    }

    /// One candidate run over the same frames with a fresh temporal cache of `settings`.
    public func run(_ settings: TemporalSettings) -> Result {
        let cache = TemporalCache(settings: settings)
        let capture = PyramidCapture(inner: cache)
        let state = DetectorState(runner: capture)
        var agreement = DetectionAgreement()
        var errorSums: [String: Double] = [:]
        var recomputed = 0.0, ms = 0.0
        for (i, image) in images.enumerated() {
            let dets = detector.detect(image, state: state)
            if i > 0 { ms += state.timingsMs["backbone"] ?? 0 }
            recomputed += cache.lastStats.recomputedFraction
            agreement = agreement + DetectionAgreement(reference: reference[i], candidate: dets, minScore: score)
            if i < referenceLevels.count {
                for (k, t) in referenceLevels[i] { errorSums[k, default: 0] += PyramidCapture.relativeL2(capture.outputs[k]!, t) }
            }
        }
        let n = Double(images.count)
        let worst = errorSums.values.map { $0 / n }.max() ?? 0
        return Result(agreement: agreement, featureFidelity: 1 - worst, recomputed: recomputed / n, deltaMs: ms / max(n - 1, 1))
    }
}
