import FPNCore
import Foundation
import MediaIO
import Vision

/// Frame numbers of a clip (0-based, decode order) as written on a command line: `100`, `0-99`, `10,20,30-40`.
public struct FrameList: Sendable, Equatable, CustomStringConvertible {
    /// Inclusive ranges in the order given.
    public let ranges: [ClosedRange<Int>]

    /// Parses `text`. - Throws: `FrameListError` naming the bad part.
    public init(parsing text: String) throws {
        var ranges: [ClosedRange<Int>] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(ends.count),
                  let a = Int(ends[0].trimmingCharacters(in: .whitespaces)), a >= 0,
                  let b = ends.count == 1 ? a : Int(ends[1].trimmingCharacters(in: .whitespaces)), b >= a
            else {
                throw FrameListError(message: "--frames: '\(part)' in '\(text)' is not a frame number N >= 0 or a "
                                     + "range A-B with A <= B (e.g. 100 or 0-99,150)")
            }
            ranges.append(a...b)
        }
        self.ranges = ranges
    }

    public func contains(_ frame: Int) -> Bool { ranges.contains { $0.contains(frame) } }
    /// The largest frame number listed.
    public var last: Int { ranges.map(\.upperBound).max()! }
    /// How many distinct frames are listed.
    public var count: Int { Set(ranges.flatMap { Array($0) }).count }
    public var description: String {
        ranges.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ",")
    }
}

/// A `--frames` value that cannot be parsed.
public struct FrameListError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// `fpnstream features INPUT --model M --visualize OUT`: runs a `.safetensors` FPN detector on the chosen frames of
/// a clip and writes each frame beside its pyramid levels (`PyramidVisualizer`): one PNG per frame (OUT when one
/// frame is chosen, else OUT with `-NNNNNN` before `.png`), or a video of the chosen frames at the clip's frame rate.
/// A run that fails removes what it wrote.
public struct PyramidVisualization {
    public var input: String
    public var model: ModelSpec
    public var output: String
    /// nil = every frame (video outputs only).
    public var frames: FrameList?
    public var normalization = HeatmapNormalization.level
    /// The frame is shrunk by this factor before drawing (0 < scale <= 1); the levels get half its size.
    public var scale = 1.0
    public var encoder = EncoderOptions()

    public init(input: String, model: ModelSpec, output: String) {
        self.input = input
        self.model = model
        self.output = output
    }

    /// Whether the output is PNG pictures (else a video).
    public var writesPNG: Bool { output.lowercased().hasSuffix(".png") }

    /// The PNG file of `frame` when several frames are written.
    func pngPath(frame: Int) -> String {
        guard let frames, frames.count > 1 else { return output }
        return String(output.dropLast(4)) + String(format: "-%06d", frame) + String(output.suffix(4))
    }

    /// Checks the options; the messages name the flag.
    public func validate() throws {
        if writesPNG && frames == nil {
            throw FrameListError(message: "--visualize \(output): PNG output needs --frames (e.g. --frames 100); "
                                 + "write a video (.mp4) for a whole clip")
        }
        if !(scale > 0 && scale <= 1) { throw FrameListError(message: "--scale must be in (0, 1], got \(scale)") }
        if model.path.lowercased().hasSuffix(".onnx") {
            throw ModelDetectorError(message: "model '\(model.path)': --visualize needs a .safetensors FPN detector "
                                     + "(scripts/convert-torchvision); an ONNX graph does not name its pyramid levels")
        }
    }

    /// Runs; `progress(frame, detections)` after each written frame. Returns the files written.
    public func run(progress: (Int, Int) -> Void = { _, _ in }) throws -> [String] {
        try validate()
        let detector = try ModelDetector(spec: model)
        let assignment = LevelAssignment(detector: detector.detector)
        let captured = CapturedPyramid()
        detector.state.pyramidObserver = { pyramid, g in
            captured.heatmaps = pyramid.levels.map { LevelHeatmap(level: $0, geometry: g) }
            captured.geometry = g
        }
        let decoder = try VideoDecoder(location: input)
        defer { decoder.close() }
        var written: [String] = []
        var seen = Set<Int>()
        do {
            var sink = try Sink(self, metadata: decoder.metadata)
            var md = detector
            while let frame = decoder.nextFrame() {
                let i = frame.info.index
                if let frames, i > frames.last { break }
                guard frames?.contains(i) ?? true else { continue }
                var result = FrameResult(info: frame.info)
                try md.detect(frame, into: &result)
                guard let g = captured.geometry else { continue }
                var dets = result.detections.map { ($0, assignment.level(ofSourceBox: $0.box, geometry: g)) }
                var image = frame.image
                if scale < 1 {
                    // Shrink the frame, not the picture: labels and legend stay sharp.
                    image = image.areaDownscaled(width: max(2, Int(Double(image.width) * scale)),
                                                 height: max(2, Int(Double(image.height) * scale)))
                    let sx = Float(image.width) / Float(frame.image.width), sy = Float(image.height) / Float(frame.image.height)
                    for i in dets.indices {
                        let b = dets[i].0.box
                        dets[i].0.box = Box(x1: b.x1 * sx, y1: b.y1 * sy, x2: b.x2 * sx, y2: b.y2 * sy)
                    }
                }
                let content = PyramidVisualizer.Content(
                    frame: image, heatmaps: captured.heatmaps, detections: dets, inputWidth: g.resizedWidth,
                    inputHeight: g.resizedHeight,
                    caption: "frame \(i)  \(detector.name)  \(dets.count) detections  input \(g.resizedWidth)x\(g.resizedHeight)",
                    assignment: "box = level k = floor(4 + log2(sqrt(wh)/224)), P\(assignment.levels.lowerBound)-P\(assignment.levels.upperBound)")
                let picture = PyramidVisualizer(normalization: normalization).render(content)
                try sink.write(picture, frame: i, written: &written)
                seen.insert(i)
                progress(i, dets.count)
            }
            try sink.finish()
            if let frames {
                let missing = frames.ranges.flatMap { Array($0) }.filter { !seen.contains($0) }
                if !missing.isEmpty {
                    throw FrameListError(message: "\(redactCredentials(input)): no frame \(missing.prefix(5).map(String.init).joined(separator: ", "))"
                                         + (missing.count > 5 ? " ... (\(missing.count) missing)" : "")
                                         + " (the input has \(decoder.stats.framesDelivered) frames, numbered from 0)")
                }
            } else if seen.isEmpty {
                throw FrameListError(message: "\(redactCredentials(input)): no frame decoded")
            }
        } catch {
            for f in written { try? FileManager.default.removeItem(atPath: f) }
            throw error
        }
        return written
    }

    /// The heatmaps of the last forward pass (filled by the detector state's pyramid observer).
    private final class CapturedPyramid {
        var heatmaps: [LevelHeatmap] = []
        var geometry: TransformGeometry?
    }

    /// PNG files or one video.
    private struct Sink {
        let run: PyramidVisualization
        let metadata: SourceMetadata
        var png: PNGEncoder?
        var video: VideoWriter?

        init(_ run: PyramidVisualization, metadata: SourceMetadata) throws {
            self.run = run
            self.metadata = metadata
            if run.writesPNG { png = PNGEncoder(output: run.output) }
        }

        mutating func write(_ picture: RGBImage, frame: Int, written: inout [String]) throws {
            if let png {
                let path = run.pngPath(frame: frame)
                let dir = (path as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                written.append(path)
                try Data(png.encode(picture)).write(to: URL(fileURLWithPath: path))
                return
            }
            if video == nil {
                written.append(run.output)
                video = try VideoWriter(location: run.output, size: PixelSize(width: picture.width, height: picture.height),
                                        frameRate: metadata.frameRate ?? Rational(25, 1), options: run.encoder)
            }
            try video!.write(picture, pts: nil)
        }

        func finish() throws { try video?.finish() }
    }
}
