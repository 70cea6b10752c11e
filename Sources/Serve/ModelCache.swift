import FPNStream
import Foundation

/// Loaded models shared by the cameras of one `serve`: each safetensors model is read once, and every camera gets
/// `forNewStream()` of it (the weights shared read-only, the buffers and temporal cache its own). ONNX models hold
/// per-session state in the network, so each camera loads its own copy (they are small).
final class ModelCache: @unchecked Sendable {
    private let lock = NSLock()
    private var loaded: [(spec: ModelSpec, detector: ModelDetector)] = []

    /// Models loaded so far (each counted once however many cameras use it).
    var count: Int { lock.lock(); defer { lock.unlock() }; return loaded.count }

    /// A detector for a new camera. Throws `PipelineSpecError` naming `pipelineFile` for a bad model.
    func detector(for spec: ModelSpec, pipelineFile: String) throws -> any FrameDetector {
        if let onnx = try ONNXDetectors.detector(for: spec, pipelineFile: pipelineFile) { return onnx }
        lock.lock()
        if let hit = loaded.first(where: { $0.spec == spec }) {
            lock.unlock()
            return hit.detector.forNewStream()
        }
        lock.unlock()
        // Loading takes a while: not under the lock (two cameras racing to load one model both load it once).
        let d = try ModelDetector(spec: spec, pipelineFile: pipelineFile)
        lock.lock()
        defer { lock.unlock() }
        if let hit = loaded.first(where: { $0.spec == spec }) { return hit.detector.forNewStream() }
        loaded.append((spec, d))
        return d.forNewStream()
    }

    /// Forgets models no camera in `inUse` needs (after a reload or a removal), so their memory is freed once the
    /// cameras still running them stop.
    func retain(only inUse: [ModelSpec]) {
        lock.lock()
        defer { lock.unlock() }
        loaded.removeAll { entry in !inUse.contains(entry.spec) }
    }
}
