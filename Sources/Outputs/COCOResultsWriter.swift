import FPNCore
import Foundation
import StagePipeline

/// Writes detections in the COCO results format that `pycocotools`' `COCO.loadRes` reads: one JSON array of
/// `{"image_id", "category_id", "bbox": [x, y, w, h], "score", "segmentation": {"size": [h, w], "counts"}}`
/// (`segmentation` only for detections with a mask; `keypoints` `[x1, y1, v1, ...]` for Keypoint R-CNN detections, the
/// COCO keypoint results format).
///
/// The array is written to `PATH.partial` as frames arrive and renamed to `PATH` by `close()`, so `PATH` only ever
/// holds a complete, valid JSON file (a killed run leaves the `.partial` file, never a truncated `PATH`).
public final class COCOResultsWriter: @unchecked Sendable {
    /// The final path.
    public let path: String
    /// Maps a frame to its COCO `image_id` (default: the frame index).
    public let imageID: @Sendable (FrameInfo) -> Int
    private let partialPath: String
    private let file: LineFile
    private let lock = NSLock()
    private var entries = 0
    private var closed = false

    /// Creates `PATH.partial`; the directory must exist.
    public init(path: String, imageID: @escaping @Sendable (FrameInfo) -> Int = { $0.index }) throws {
        self.path = path
        self.imageID = imageID
        partialPath = path + ".partial"
        do { file = try LineFile(path: partialPath) } catch {
            throw OutputError.cannotOpen(path: path, reason: (error as? OutputError).map(Self.reason) ?? "\(error)")
        }
        try file.write(Array("[".utf8))
    }

    /// Number of detections written so far.
    public var count: Int { lock.lock(); defer { lock.unlock() }; return entries }

    /// Appends the detections of one frame (one write).
    public func write(_ result: FrameResult) throws {
        guard !result.detections.isEmpty else { return }
        lock.lock()
        defer { lock.unlock() }
        var j = JSONBuffer(capacity: 128 * result.detections.count)
        let image = imageID(result.info)
        for (i, d) in result.detections.enumerated() {
            j.raw(entries + i == 0 ? "\n" : ",\n")
            j.beginObject()
            j.key("image_id"); j.int(image)
            j.key("category_id"); j.int(d.classID)
            j.key("bbox"); j.beginArray()
            j.number(d.box.x1, decimals: 2); j.number(d.box.y1, decimals: 2)
            j.number(d.box.width, decimals: 2); j.number(d.box.height, decimals: 2)
            j.endArray()
            j.key("score"); j.number(d.score, decimals: 5)
            if let m = d.mask { j.key("segmentation"); JSONLRecord.mask(&j, m) }
            if let kps = d.keypoints {
                // COCO keypoint results: flat [x1, y1, v1, ...] (COCOeval's keypoints task reads these and `score`).
                j.key("keypoints"); j.beginArray()
                for k in kps { j.number(k.x, decimals: 2); j.number(k.y, decimals: 2); j.int(k.visibility) }
                j.endArray()
            }
            j.endObject()
        }
        try file.write(j.bytes)
        entries += result.detections.count
    }

    /// Ends the array and moves the file into place. Idempotent.
    public func close() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        try file.write(Array((entries == 0 ? "]\n" : "\n]\n").utf8))
        try file.close()
        if rename(partialPath, path) != 0 {
            throw OutputError.cannotFinalize(path: path, reason: String(cString: strerror(errno)))
        }
    }

    private static func reason(_ e: OutputError) -> String {
        switch e {
        case .cannotOpen(_, let r), .writeFailed(_, let r), .cannotFinalize(_, let r): return r
        }
    }
}

/// `COCOResultsWriter` as a pipeline sink; finalizes the file when the pipeline ends (also when aborted, so the
/// frames processed so far are kept in a valid file).
public struct COCOSink: Sink {
    public let writer: COCOResultsWriter
    public var name: String { "coco" }
    public init(_ writer: COCOResultsWriter) { self.writer = writer }
    public func consume(_ input: FrameResult) throws { try writer.write(input) }
    public func close(_ reason: CloseReason) throws { try writer.close() }
}
