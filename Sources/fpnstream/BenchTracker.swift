import ArgumentParser
import FPNCore
import FPNStream
import Tracking
#if canImport(Glibc)
import Glibc
#endif

/// `fpnstream bench tracker`: ByteTrack cost per frame on a synthetic scene with a fixed number of detections
/// (moving objects with jitter and misses, false positives, low-score clutter). Prints ms/frame.
struct BenchTracker: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracker",
        abstract: "Time the tracker per frame on synthetic detections (default 100 per frame)."
    )

    @Option(help: "Detections per frame.")
    var detections = 100
    @Option(help: "Timed frames (after 200 warm-up frames).")
    var frames = 3000
    @Option(help: "Random seed of the synthetic scene.")
    var seed: UInt64 = 1
    @Option(help: "Scene size WIDTHxHEIGHT in pixels; a small scene packs the boxes into overlapping crowds.")
    var scene = "1920x1080"

    func validate() throws {
        guard detections >= 1 else { throw ValidationError("--detections must be ≥ 1") }
        guard frames >= 1 else { throw ValidationError("--frames must be ≥ 1") }
        guard sceneSize != nil else { throw ValidationError("--scene \(scene): expected WIDTHxHEIGHT, at least 300x300") }
    }

    private var sceneSize: (Float, Float)? {
        let p = scene.lowercased().split(separator: "x").compactMap { Float($0) }
        guard p.count == 2, p[0] >= 300, p[1] >= 300, p[0].isFinite, p[1].isFinite else { return nil }
        return (p[0], p[1])
    }

    func run() throws {
        let (w, h) = sceneSize!
        var generator = SyntheticScene(detectionsPerFrame: detections, seed: seed, width: w, height: h)
        let warmup = 200
        let input = (0..<(warmup + frames)).map { _ in generator.next() }
        let tracker = try ByteTracker(config: ByteTrackConfig(frameRate: 30))
        let clock = ContinuousClock()
        var perFrame: [Double] = []
        perFrame.reserveCapacity(frames)
        var tracked = 0, tracks = 0
        var cpuStart = 0.0
        for (i, dets) in input.enumerated() {
            if i == warmup { cpuStart = threadCPUSeconds() }
            let start = clock.now
            let out = tracker.update(detections: dets, frameIndex: i)
            let elapsed = clock.now - start
            if i >= warmup {
                let c = elapsed.components
                perFrame.append(Double(c.seconds) * 1e3 + Double(c.attoseconds) * 1e-15)
                tracked += out.count
                tracks += tracker.trackedCount + tracker.lostCount
            }
        }
        let cpuMs = (threadCPUSeconds() - cpuStart) * 1e3 / Double(frames)
        let sorted = perFrame.sorted()
        let mean = perFrame.reduce(0, +) / Double(frames)
        func q(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))] }
        let n = Double(frames)
        print("bench tracker: \(detections) detections/frame in \(scene), \(frames) frames, "
              + "\(fmt(Double(tracks) / n, 1)) live tracks/frame, \(fmt(Double(tracked) / n, 1)) tracked boxes/frame")
        print("  ms/frame: mean \(fmt(mean, 4))  median \(fmt(q(0.5), 4))  p90 \(fmt(q(0.9), 4))  p99 \(fmt(q(0.99), 4))")
        print("  thread CPU ms/frame: \(fmt(cpuMs, 4)) (wall-clock outliers are the thread being descheduled on a busy machine)")
        print("  budget 1 ms/frame: \(q(0.5) < 1 ? "met" : "NOT met") (median)")
    }

    /// CPU time of the calling thread (excludes time spent descheduled), seconds.
    private func threadCPUSeconds() -> Double {
        #if canImport(Glibc)
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        #else
        return 0
        #endif
    }

    private func fmt(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let r = (v * scale).rounded() / scale
        return "\(r)"
    }
}
