import FPNCore
import Foundation

/// A category of a panoptic model, as listed in COCO panoptic's `categories`.
public struct PanopticCategory: Sendable, Equatable {
    /// Category id (things 1...K, stuff after them).
    public var id: Int
    public var name: String
    public var isThing: Bool

    public init(id: Int, name: String, isThing: Bool) { self.id = id; self.name = name; self.isThing = isThing }
}

/// Writes COCO panoptic results (the format panopticapi's `pq_compute` reads) into a directory:
/// one PNG per frame, `NNNNNN.png` (frame index, 6 digits), whose pixel (R, G, B) encodes the segment id
/// `R + 256 G + 256² B` (0 = void), and `panoptic.json` = `{"images", "annotations", "categories"}` where each
/// annotation is `{"image_id", "file_name", "segments_info": [{"id", "category_id", "iscrowd": 0, "area",
/// "bbox": [x, y, w, h], "isthing", "score" (things)}]}`. Image ids are frame indices (as the COCO results writer).
///
/// PNGs appear as frames arrive; `panoptic.json` is written to `panoptic.json.partial` and renamed by `close()`
/// (called when the pipeline ends, also on SIGINT/SIGTERM), so it only ever holds a complete file.
public final class COCOPanopticWriter: @unchecked Sendable {
    /// The output directory.
    public let directory: String
    /// Categories listed in `panoptic.json`.
    public let categories: [PanopticCategory]
    private let encodePNG: ([UInt8], Int, Int) throws -> [UInt8]
    private let lock = NSLock()
    /// `images` and `annotations` entries so far, comma-separated JSON objects.
    private var imageEntries: [UInt8] = []
    private var annotationEntries: [UInt8] = []
    private var frames = 0
    private var closed = false
    private var rgb: [UInt8] = []

    /// Creates `directory` (and missing parents) unless it exists. `encodePNG(rgb24, width, height)` returns PNG
    /// file bytes (lossless; the CLI uses FFmpeg's png encoder).
    /// - Throws: `OutputError.cannotOpen` naming the directory when it is a file or cannot be created/written.
    public init(directory: String, categories: [PanopticCategory],
                encodePNG: @escaping ([UInt8], Int, Int) throws -> [UInt8]) throws {
        self.directory = directory
        self.categories = categories
        self.encodePNG = encodePNG
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw OutputError.cannotOpen(path: directory, reason: "exists and is not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw OutputError.cannotOpen(path: directory, reason: "cannot create the directory: \(Self.reason(error))")
            }
        }
        guard FileManager.default.isWritableFile(atPath: directory) else {
            throw OutputError.cannotOpen(path: directory, reason: "directory is not writable")
        }
    }

    /// Path of frame `index`'s PNG.
    public func pngPath(frame index: Int) -> String { (directory as NSString).appendingPathComponent(Self.fileName(index)) }

    static func fileName(_ index: Int) -> String {
        let s = String(index)
        return String(repeating: "0", count: max(0, 6 - s.count)) + s + ".png"
    }

    /// Number of frames written.
    public var count: Int { lock.lock(); defer { lock.unlock() }; return frames }

    /// Writes the PNG of `result.panoptic` (all void when nil) and records its annotation.
    public func write(_ result: FrameResult) throws {
        lock.lock()
        defer { lock.unlock() }
        let w = result.info.width, h = result.info.height
        let segments = result.panoptic ?? []
        rgb = [UInt8](repeating: 0, count: w * h * 3)
        var boxes: [(x0: Int, y0: Int, x1: Int, y1: Int)] = []
        for s in segments {
            precondition(s.mask.width == w && s.mask.height == h, "panoptic mask size differs from the frame")
            var box = (x0: Int.max, y0: Int.max, x1: -1, y1: -1)
            let id = s.id
            let r = UInt8(id & 255), g = UInt8((id >> 8) & 255), b = UInt8((id >> 16) & 255)
            // RLE runs are column-major (COCO): run start p -> (x = p / h, y = p % h).
            var p = 0, on = false
            for c in s.mask.counts {
                let n = Int(c)
                if on && n > 0 {
                    for q in p..<(p + n) {
                        let x = q / h, y = q % h
                        let o = (y * w + x) * 3
                        rgb[o] = r; rgb[o + 1] = g; rgb[o + 2] = b
                        box.x0 = min(box.x0, x); box.x1 = max(box.x1, x)
                        box.y0 = min(box.y0, y); box.y1 = max(box.y1, y)
                    }
                }
                p += n
                on.toggle()
            }
            boxes.append(box)
        }
        let png: [UInt8]
        do { png = try encodePNG(rgb, w, h) } catch {
            throw OutputError.writeFailed(path: pngPath(frame: result.info.index), reason: "\(error)")
        }
        let path = pngPath(frame: result.info.index)
        guard FileManager.default.createFile(atPath: path, contents: Data(png)) else {
            throw OutputError.writeFailed(path: path, reason: "cannot create the file")
        }
        let name = Self.fileName(result.info.index)
        var images = JSONBuffer()
        images.beginObject()
        images.key("id"); images.int(result.info.index)
        images.key("file_name"); images.string(name)
        images.key("width"); images.int(w)
        images.key("height"); images.int(h)
        images.key("pts"); images.number(result.info.pts, decimals: 6)
        images.endObject()
        var annotations = JSONBuffer(capacity: 256 + 128 * segments.count)
        annotations.beginObject()
        annotations.key("image_id"); annotations.int(result.info.index)
        annotations.key("file_name"); annotations.string(name)
        annotations.key("segments_info"); annotations.beginArray()
        for (s, b) in zip(segments, boxes) {
            annotations.beginObject()
            annotations.key("id"); annotations.int(s.id)
            annotations.key("category_id"); annotations.int(s.categoryID)
            annotations.key("iscrowd"); annotations.int(0)
            annotations.key("area"); annotations.int(s.area)
            annotations.key("bbox"); annotations.beginArray()
            for v in b.x1 >= 0 ? [b.x0, b.y0, b.x1 - b.x0 + 1, b.y1 - b.y0 + 1] : [0, 0, 0, 0] { annotations.int(v) }
            annotations.endArray()
            annotations.key("isthing"); annotations.int(s.isThing ? 1 : 0)
            if let score = s.score { annotations.key("score"); annotations.number(score, decimals: 4) }
            annotations.endObject()
        }
        annotations.endArray()
        annotations.endObject()
        let separator = Array((frames == 0 ? "\n" : ",\n").utf8)
        imageEntries += separator + images.bytes
        annotationEntries += separator + annotations.bytes
        frames += 1
    }

    /// Writes `panoptic.json` (via `.partial` + rename). Idempotent.
    public func close() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        var out = Array("{\"images\": [".utf8) + imageEntries + Array("\n],\n\"annotations\": [".utf8) + annotationEntries
        out += Array("\n],\n\"categories\": [".utf8)
        for (i, c) in categories.enumerated() {
            var j = JSONBuffer()
            j.beginObject()
            j.key("id"); j.int(c.id)
            j.key("name"); j.string(c.name)
            j.key("supercategory"); j.string(c.isThing ? "thing" : "stuff")
            j.key("isthing"); j.int(c.isThing ? 1 : 0)
            j.endObject()
            out += Array((i == 0 ? "\n" : ",\n").utf8) + j.bytes
        }
        out += Array("\n]}\n".utf8)
        let path = (directory as NSString).appendingPathComponent("panoptic.json")
        let partial = path + ".partial"
        guard FileManager.default.createFile(atPath: partial, contents: Data(out)) else {
            throw OutputError.cannotFinalize(path: path, reason: "cannot create \(partial)")
        }
        if rename(partial, path) != 0 {
            throw OutputError.cannotFinalize(path: path, reason: String(cString: strerror(errno)))
        }
    }

    private static func reason(_ error: Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}
