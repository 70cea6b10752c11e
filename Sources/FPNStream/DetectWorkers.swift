import Dispatch
import FPNCore
import Tensor

/// Several frames of one stream in inference at once: one detector per worker (replicas sharing the loaded model),
/// each running its frame on one core, results handed on in input order.
///
/// On small frames a single frame cannot keep every core busy (per-RoI heads, NMS, thin GEMMs and the waits between
/// split ops leave cores idle), so a file or camera is processed faster as several single-core frames side by side,
/// as batching engines do. Without temporal reuse each frame's result is exactly what one detector would return: a
/// replica has the same weights, thresholds and settings. In delta mode each worker keeps its own temporal cache,
/// so worker w reuses the features of frame t - N for frame t (keyframes and `temporal: auto` need one detector).
/// The price is latency: each frame takes longer, though more frames finish per second.
public final class DetectWorkers: @unchecked Sendable {
    /// One frame in flight.
    private final class Job: @unchecked Sendable {
        let frame: Frame
        let done = DispatchSemaphore(value: 0)
        var outcome: Result<FrameResult, Error>?
        init(frame: Frame) { self.frame = frame }
    }

    private final class Worker: @unchecked Sendable {
        var detector: any FrameDetector
        let queue: DispatchQueue
        init(detector: any FrameDetector, label: String) {
            self.detector = detector
            queue = DispatchQueue(label: label, qos: .userInitiated)
        }
    }

    private let workers: [Worker]
    private var pending: [Job] = []
    private var submitted = 0

    /// `count` workers running `detector` and its replicas, or nil when `count` < 2 or the detector has no replica
    /// (then one frame at a time is the only correct schedule).
    init?(detector: any FrameDetector, count: Int) {
        guard count >= 2 else { return nil }
        var all = [Worker(detector: detector, label: "fpnstream.detect.0")]
        for i in 1..<count {
            guard let r = detector.replica() else { return nil }
            all.append(Worker(detector: r, label: "fpnstream.detect.\(i)"))
        }
        workers = all
    }

    var count: Int { workers.count }

    /// The default worker count per stream: the cores shared out over `streams` streams, on the own kernels (where
    /// one frame can be held to one core); 1 on OpenBLAS, whose threads cannot be limited per call.
    public static func automatic(streams: Int) -> Int {
        Compute.path == .openblas ? 1 : max(1, Parallel.cores / max(streams, 1))
    }

    /// True when every worker has a frame: take the oldest before submitting more.
    var isFull: Bool { pending.count >= workers.count }

    /// Starts `frame` on the next worker (round robin; it is free, because at most `count` frames are in flight).
    func submit(_ frame: Frame) {
        precondition(!isFull, "DetectWorkers.submit with every worker busy")
        let worker = workers[submitted % workers.count]
        submitted += 1
        let job = Job(frame: frame)
        pending.append(job)
        worker.queue.async {
            job.outcome = Parallel.withWidth(1) {
                var result = FrameResult(info: frame.info)
                let start = DispatchTime.now().uptimeNanoseconds
                do {
                    try worker.detector.detect(frame, into: &result)
                } catch {
                    return .failure(FrameDetectError(frameIndex: frame.info.index, underlying: error))
                }
                result.timingsMs["detect"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                return .success(result)
            }
            job.done.signal()
        }
    }

    /// Waits for the oldest frame in flight; nil when none is. Rethrows its detector's error.
    func takeOldest() throws -> AnalyzedFrame? {
        guard !pending.isEmpty else { return nil }
        let job = pending.removeFirst()
        job.done.wait()
        return AnalyzedFrame(image: job.frame.image, result: try job.outcome!.get())
    }

    /// Waits for every frame in flight and discards the results (an aborted pipeline).
    func cancelAll() {
        for job in pending { job.done.wait() }
        pending.removeAll()
    }
}

/// A detector error on a frame run by `DetectWorkers`: the pipeline reports it at a later frame (the one being
/// submitted when the result was taken), so the message names the frame that failed.
struct FrameDetectError: Error, CustomStringConvertible {
    let frameIndex: Int
    let underlying: Error
    var description: String { "frame \(frameIndex): \(underlying)" }
}
