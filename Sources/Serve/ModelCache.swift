import FPNStream
import Foundation
import ONNX
import Tensor

/// Loaded models shared by the cameras of one `serve`: each model (path and settings) is read once, and every camera
/// gets its own detector on it — the weights shared read-only, the buffers and temporal cache the camera's own. A
/// safetensors model is shared as a `ModelDetector` (`forNewStream()`), an ONNX model as its compiled, immutable
/// `ONNXNetwork` (a new session per camera).
///
/// With one inference at a time (`inference_slots: 1`), the safetensors detectors of every camera also share one
/// forward-pass arena (`sharedWorkspace`): it holds nothing between inferences, so one per running inference is
/// enough, instead of one per camera (tens of MB each). The temporal caches stay per camera.
final class ModelCache: @unchecked Sendable {
    private enum Loaded {
        case safetensors(ModelDetector)
        case onnx(ONNXNetwork)
    }

    private let lock = NSLock()
    private var loaded: [(spec: ModelSpec, model: Loaded)] = []
    /// The arena every camera's forward pass uses, when inferences never overlap; nil = each camera its own.
    let sharedWorkspace: Workspace?

    /// `sharedWorkspace`: pass one only when the cameras' `detect` calls are serialized (one inference slot).
    init(sharedWorkspace: Workspace? = nil) {
        self.sharedWorkspace = sharedWorkspace
    }

    /// Models loaded so far (each counted once however many cameras use it).
    var count: Int { lock.lock(); defer { lock.unlock() }; return loaded.count }

    /// A detector for a new camera. Throws `PipelineSpecError` naming `pipelineFile` for a bad model.
    func detector(for spec: ModelSpec, pipelineFile: String) throws -> any FrameDetector {
        let model = try shared(spec, pipelineFile: pipelineFile)
        switch model {
        case .safetensors(let d): return sharedWorkspace.map { d.forNewStream(workspace: $0) } ?? d.forNewStream()
        case .onnx(let network): return try ONNXDetectors.detector(for: spec, network: network, pipelineFile: pipelineFile)
        }
    }

    private func shared(_ spec: ModelSpec, pipelineFile: String) throws -> Loaded {
        if let hit = lookup(spec) { return hit }
        // Loading takes a while: not under the lock (two cameras racing to load one model both load it, one is kept).
        let model: Loaded
        if let network = try ONNXDetectors.network(for: spec, pipelineFile: pipelineFile) {
            model = .onnx(network)
        } else {
            model = .safetensors(try ModelDetector(spec: spec, pipelineFile: pipelineFile))
        }
        lock.lock()
        defer { lock.unlock() }
        if let hit = loaded.first(where: { $0.spec == spec }) { return hit.model }
        loaded.append((spec, model))
        return model
    }

    private func lookup(_ spec: ModelSpec) -> Loaded? {
        lock.lock()
        defer { lock.unlock() }
        return loaded.first(where: { $0.spec == spec })?.model
    }

    /// Forgets models no camera in `inUse` needs (after a reload or a removal), so their memory is freed once the
    /// cameras still running them stop.
    func retain(only inUse: [ModelSpec]) {
        lock.lock()
        defer { lock.unlock() }
        loaded.removeAll { entry in !inUse.contains(entry.spec) }
    }
}
