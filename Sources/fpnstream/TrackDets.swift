import ArgumentParser
import FPNCore
import Foundation
import Outputs
import Tracking

/// `fpnstream track-dets`: runs the tracker on MOTChallenge-format detections and writes MOT results. Hidden: it
/// exists so that scripts/eval-tracking can score the real Swift tracker against a reference on the same detections.
struct TrackDets: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "track-dets",
        abstract: "Track MOT-format detections (frame,-1,x,y,w,h,conf[,class]) and write MOT results.",
        shouldDisplay: false
    )

    @Option(help: "Detections in MOTChallenge det.txt format (1-based frames; column 8, if ≥ 0, is the class).")
    var dets: String
    @Option(help: "MOTChallenge result file to write ('-' = stdout).")
    var out: String
    @Option(help: "Last frame (1-based) to process; default: the last frame with a detection.")
    var frames: Int?
    @OptionGroup var tracker: TrackerOptions

    func validate() throws {
        if let frames, frames < 1 { throw ValidationError("--frames must be ≥ 1") }
    }

    func run() throws {
        let bt: ByteTracker
        do { bt = try ByteTracker(config: tracker.config) } catch {
            throw CLIFailure(message: "\(error)", status: ExitStatus.usageError)
        }
        do {
            try track(with: bt)
        } catch let e as MOTFormatError {
            throw CLIFailure(message: e.description, status: ExitStatus.runtimeError)
        }
    }

    private func track(with bt: ByteTracker) throws {
        let records = try MOTReader.read(path: dets)
        let last = frames ?? (records.map(\.frame).max() ?? 0)
        var byFrame = [[Detection]](repeating: [], count: last + 1)
        for r in records where r.frame <= last {
            var d = r.detection
            d.trackID = nil
            byFrame[r.frame].append(d)
        }
        let writer = try MOTWriter(path: out)
        var written = 0
        var ids = Set<Int>()
        if last >= 1 {
            for f in 1...last {
                let tracked = bt.update(detections: byFrame[f], frameIndex: f - 1)
                try writer.write(frameIndex: f - 1, detections: tracked)
                written += tracked.count
                for d in tracked { ids.insert(d.trackID!) }
            }
        }
        try writer.close()
        // On stderr: stdout may be the MOT output itself (`--out -`).
        FileHandle.standardError.write(Data(
            "track-dets: \(records.count) detections in \(last) frames → \(written) tracked boxes, \(ids.count) ids → \(out)\n".utf8))
    }
}
