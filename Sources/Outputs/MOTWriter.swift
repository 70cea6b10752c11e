import FPNCore
import Foundation

/// Writes tracks in the MOTChallenge result format, one line per tracked detection:
///
///     frame,id,x,y,w,h,conf,-1,-1,-1
///
/// `frame` is 1-based (`FrameInfo.index + 1`), `id` the track id, `x,y` the top-left corner and `w,h` the size in
/// source pixels (2 decimals, as ByteTrack writes them), `conf` the detection score (4 decimals); the three `-1` are the
/// unused world coordinates. Detections without a track id are skipped. TrackEval and py-motmetrics read it as is.
///
/// Each `write` call emits whole lines in one unbuffered write, so a reader tailing the file (or a crash) never sees a
/// half line. One writer per stream; not thread-safe.
public final class MOTWriter {
    /// The file being written (`-` = standard output).
    public let path: String
    private var handle: FileHandle?

    /// Creates (or truncates) the file at `path`; `-` writes to standard output (never closed by the writer).
    public init(path: String) throws {
        self.path = path
        if path == "-" {
            handle = FileHandle.standardOutput
            return
        }
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw MOTFormatError.cannotCreate(path: path, reason: Self.reasonForCreate(path))
        }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw MOTFormatError.cannotCreate(path: path, reason: "cannot open for writing")
        }
        handle = h
    }

    deinit { if path != "-" { try? handle?.close() } }

    /// Appends the tracked detections of frame `frameIndex` (0-based; written as `frameIndex + 1`).
    public func write(frameIndex: Int, detections: [Detection]) throws {
        guard let handle else { throw MOTFormatError.writeFailed(path: path, reason: "writer is closed") }
        var text = ""
        for d in detections {
            guard let line = Self.line(frame: frameIndex + 1, detection: d) else { continue }
            text += line
            text += "\n"
        }
        guard !text.isEmpty else { return }
        do {
            try handle.write(contentsOf: Data(text.utf8))
        } catch {
            throw MOTFormatError.writeFailed(path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// Flushes to disk and closes; further writes fail. Idempotent.
    public func close() throws {
        guard let h = handle else { return }
        handle = nil
        guard path != "-" else { return }
        do {
            try h.synchronize()
            try h.close()
        } catch {
            throw MOTFormatError.writeFailed(path: path, reason: "\(error.localizedDescription)")
        }
    }

    /// The MOT line (without newline) of a detection on 1-based `frame`, nil if it has no track id.
    public static func line(frame: Int, detection d: Detection) -> String? {
        guard let id = d.trackID else { return nil }
        let b = d.box
        return "\(frame),\(id),\(fixed(b.x1, 2)),\(fixed(b.y1, 2)),\(fixed(b.x2 - b.x1, 2)),\(fixed(b.y2 - b.y1, 2)),"
            + "\(fixed(d.score, 4)),-1,-1,-1"
    }

    /// `v` with exactly `digits` decimals (`%.2f` without Foundation's formatter), e.g. `-3.50`.
    static func fixed(_ v: Float, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (Double(v) * scale).rounded()
        guard scaled.isFinite, abs(scaled) < 1e15 else { return "\(v)" }
        let n = Int64(scaled), a = n.magnitude, s = UInt64(scale)
        var frac = String(a % s)
        while frac.count < digits { frac = "0" + frac }
        return (n < 0 ? "-" : "") + "\(a / s)" + (digits > 0 ? "." + frac : "")
    }

    private static func reasonForCreate(_ path: String) -> String {
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !dir.isEmpty && !(FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) {
            return "directory \(dir) does not exist"
        }
        return "cannot create file (permissions?)"
    }
}

/// Errors reading or writing MOTChallenge files, each naming the file (and line).
public enum MOTFormatError: Error, Equatable, CustomStringConvertible {
    case cannotCreate(path: String, reason: String)
    case writeFailed(path: String, reason: String)
    case cannotRead(path: String, reason: String)
    case malformedLine(path: String, line: Int, reason: String)

    public var description: String {
        switch self {
        case let .cannotCreate(path, reason): return "\(path): cannot create MOT file: \(reason)"
        case let .writeFailed(path, reason): return "\(path): writing MOT file failed: \(reason)"
        case let .cannotRead(path, reason): return "\(path): cannot read MOT file: \(reason)"
        case let .malformedLine(path, line, reason): return "\(path):\(line): malformed MOT line: \(reason)"
        }
    }
}
