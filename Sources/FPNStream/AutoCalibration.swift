import FPNCore
import TemporalReuse

/// `temporal: auto` of one stream: its first `frames` frames run densely (their results are the dense ones) and are
/// kept; after the last of them `calibrate` picks the per-layer thresholds on them, the cache uses those from the
/// next frame on (with the accuracy guard), and the choice is reported once (`TemporalGuardRecord`, action
/// `calibrated`). A search that cannot reach the target keeps the configured thresholds (the guard then adapts
/// them).
final class AutoCalibration {
    let frames: Int
    /// The search: layer thresholds and a one-line description, or nil when no setting reached the target.
    let search: ([RGBImage]) -> (thresholds: [String: Float], description: String)?
    private(set) var images: [RGBImage] = []
    private(set) var done = false

    init(frames: Int, search: @escaping ([RGBImage]) -> (thresholds: [String: Float], description: String)?) {
        self.frames = max(1, frames)
        self.search = search
    }

    /// Keeps `image`; after the last calibration frame runs the search and applies its thresholds to `cache`.
    /// Returns the record of the choice on that frame.
    func add(_ image: RGBImage, cache: TemporalCache) -> TemporalGuardRecord? {
        images.append(image)
        guard images.count >= frames else { return nil }
        done = true
        defer { images = [] }
        guard let chosen = search(images) else {
            return TemporalGuardRecord(action: "calibrated", note: "no threshold reached the target; configured thresholds kept")
        }
        cache.settings.layerThresholds = chosen.thresholds
        return TemporalGuardRecord(action: "calibrated", note: chosen.description)
    }
}
