import FPNCore
import Foundation

/// One line of a MOTChallenge file (detections `det.txt`, ground truth `gt.txt` or tracker results).
public struct MOTRecord: Sendable, Equatable {
    /// 1-based frame number.
    public var frame: Int
    /// Track / object id (`-1` in detection files).
    public var id: Int
    /// Box in source pixels (from `x, y, w, h`).
    public var box: Box
    /// Column 7: confidence for detections and results; the "consider" flag (0/1) in ground truth.
    public var score: Float
    /// Column 8 when it is a non-negative integer (the class in MOT ground truth), otherwise nil.
    public var classID: Int?

    public init(frame: Int, id: Int, box: Box, score: Float, classID: Int? = nil) {
        self.frame = frame
        self.id = id
        self.box = box
        self.score = score
        self.classID = classID
    }

    /// As a detection (class `classID ?? 0`, named by its number), track id nil for `id < 0`.
    public var detection: Detection {
        let cls = classID ?? 0
        return Detection(box: box, score: score, classID: cls, className: String(cls), trackID: id >= 0 ? id : nil)
    }
}

/// Reads MOTChallenge text: `frame,id,x,y,w,h,conf[,…]`, comma (or whitespace) separated, at least 7 columns.
/// Blank lines and `#` comments are skipped; anything else malformed is an error naming the file and line.
public enum MOTReader {
    /// Largest file read (MOT20's biggest detection file is ~60 MB).
    public static let maxFileBytes = 1 << 30
    /// Reads and parses the file at `path`.
    public static func read(path: String) throws -> [MOTRecord] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw MOTFormatError.cannotRead(path: path, reason: "no such file")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= maxFileBytes else {
            throw MOTFormatError.cannotRead(path: path, reason: "file of \(size) bytes is larger than the limit of \(maxFileBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MOTFormatError.cannotRead(path: path, reason: "unreadable")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw MOTFormatError.cannotRead(path: path, reason: "not UTF-8 text")
        }
        return try parse(text, source: path)
    }

    /// Parses MOT text; `source` names it in errors.
    public static func parse(_ text: String, source: String) throws -> [MOTRecord] {
        var records: [MOTRecord] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" })
            func bad(_ reason: String) -> MOTFormatError {
                .malformedLine(path: source, line: lineNumber, reason: reason)
            }
            guard fields.count >= 7 else { throw bad("expected at least 7 columns (frame,id,x,y,w,h,conf), got \(fields.count)") }
            var numbers: [Double] = []
            for (k, f) in fields.prefix(8).enumerated() {
                guard let v = Double(f), v.isFinite else { throw bad("column \(k + 1) is not a number: '\(f)'") }
                numbers.append(v)
            }
            guard numbers[0] >= 1, numbers[0] == numbers[0].rounded(), numbers[0] < 1e9 else {
                throw bad("frame must be an integer ≥ 1, got \(fields[0])")
            }
            guard numbers[1] == numbers[1].rounded(), abs(numbers[1]) < 1e15 else {
                throw bad("id must be an integer, got \(fields[1])")
            }
            guard numbers[4] >= 0, numbers[5] >= 0 else { throw bad("negative width or height") }
            let x = Float(numbers[2]), y = Float(numbers[3])
            let cls: Int? = numbers.count > 7 && numbers[7] >= 0 && numbers[7] == numbers[7].rounded() && numbers[7] < 1e9
                ? Int(numbers[7]) : nil
            records.append(MOTRecord(frame: Int(numbers[0]), id: Int(numbers[1]),
                                     box: Box(x1: x, y1: y, x2: x + Float(numbers[4]), y2: y + Float(numbers[5])),
                                     score: Float(numbers[6]), classID: cls))
        }
        return records
    }
}
