/// A decision of the temporal accuracy guard on a verified frame (delta mode): the delta result of the frame was
/// compared with the dense result of the same frame (which is the frame's output), and the threshold scales were
/// adapted. Written to the frame's JSONL line as `temporal_guard` (docs/jsonl.md).
public struct TemporalGuardRecord: Sendable, Equatable {
    /// `hold`, `tighten`, `loosen`, `revert`, `dense` (fall-back to dense frames), `skip` (the delta pass ran
    /// densely by itself: nothing measured), or `calibrated` (`temporal: auto` chose its thresholds, `note`).
    public var action: String
    /// The threshold group loosened or reverted (`input`, `backbone`, `heads`).
    public var group: String?
    /// This frame's agreement F1 and mean mask IoU (delta vs dense, IoU ≥ 0.9), and the largest per-level relative
    /// L2 error of the pyramid (nil: not measured).
    public var f1: Double?, maskIoU: Double?, pyramidError: Double?
    /// Agreement pooled over the guard's window (what the decision used).
    public var pooledF1: Double?, pooledMaskIoU: Double?
    /// Matched pairs and detections on each side of this frame (pooled by the run's summary).
    public var matched = 0, reference = 0, candidate = 0
    /// Recomputed fraction of the delta pass that was verified.
    public var probeRecomputed: Double?
    /// Threshold scales after the decision, by group, in group order.
    public var scales: [(group: String, scale: Double)]
    /// `calibrated` (`temporal: auto`): what the calibration chose.
    public var note: String?

    public init(action: String, group: String? = nil, f1: Double? = nil, maskIoU: Double? = nil,
                pyramidError: Double? = nil, pooledF1: Double? = nil, pooledMaskIoU: Double? = nil,
                probeRecomputed: Double? = nil, scales: [(group: String, scale: Double)] = [], note: String? = nil) {
        self.action = action; self.group = group; self.f1 = f1; self.maskIoU = maskIoU
        self.pyramidError = pyramidError; self.pooledF1 = pooledF1; self.pooledMaskIoU = pooledMaskIoU
        self.probeRecomputed = probeRecomputed; self.scales = scales
        self.note = note
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.action == b.action && a.group == b.group && a.f1 == b.f1 && a.maskIoU == b.maskIoU
            && a.pyramidError == b.pyramidError && a.pooledF1 == b.pooledF1 && a.pooledMaskIoU == b.pooledMaskIoU
            && a.matched == b.matched && a.reference == b.reference && a.candidate == b.candidate
            && a.probeRecomputed == b.probeRecomputed && a.note == b.note
            && a.scales.map(\.group) == b.scales.map(\.group) && a.scales.map(\.scale) == b.scales.map(\.scale)
    }
}
