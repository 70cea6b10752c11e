import FPNCore
import Foundation
import MediaIO
import Outputs
import StagePipeline

/// A frame on its way to the sinks: its pixels (annotated in place by the annotate stage) and what the pipeline
/// found in it.
public struct AnalyzedFrame: Sendable, IndexedItem {
    /// RGB24 pixels at source size.
    public var image: RGBImage
    /// Metadata and detections (source pixels).
    public var result: FrameResult
    public var itemIndex: Int { result.info.index }
}

extension DecodedPicture: IndexedItem {
    public var itemIndex: Int { info.index }
}

extension Frame: IndexedItem {
    public var itemIndex: Int { info.index }
}

/// Source stage: demux + decode (no pixel conversion, so conversion overlaps decoding on the next queue).
final class DecodeSource: Source {
    let decoder: VideoDecoder
    let maxFrames: Int?
    private var produced = 0

    init(decoder: VideoDecoder, maxFrames: Int?) {
        self.decoder = decoder
        self.maxFrames = maxFrames
    }

    var name: String { "decode" }

    func next() throws -> DecodedPicture? {
        if let maxFrames, produced >= maxFrames { return nil }
        guard let picture = decoder.nextPicture() else { return nil }
        produced += 1
        return picture
    }

    /// Called on cancellation (SIGINT): a blocked read returns and the stream ends.
    func interrupt() { decoder.requestStop() }
}

/// Preprocess stage: swscale to RGB24 at source size (one context per stream, negotiated on the first frame).
struct ConvertStage: Stage {
    var converter = RGBConverter()
    var name: String { "convert" }
    func process(_ input: DecodedPicture) throws -> Frame? { converter.convert(input) }
}

/// Inference stage: the detector slot (`NoDetector` until a model is configured).
struct DetectStage: Stage {
    var detector: any FrameDetector
    var name: String { "detect" }

    mutating func process(_ frame: Frame) throws -> AnalyzedFrame? {
        var result = FrameResult(info: frame.info)
        let start = DispatchTime.now().uptimeNanoseconds
        try detector.detect(frame, into: &result)
        result.timingsMs["detect"] = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        return AnalyzedFrame(image: frame.image, result: result)
    }
}

/// Video sink: encodes the (annotated) frames; finalizes the container however the pipeline ends.
struct VideoSink: Sink {
    let writer: VideoWriter
    var name: String { "encode" }

    func consume(_ input: AnalyzedFrame) throws {
        try writer.write(input.image, pts: input.result.info.pts)
    }

    func close(_ reason: CloseReason) throws {
        try writer.finish()
    }
}

/// JSONL sink: one `"type":"frame"` line per frame, each a single write (whole lines only, even when killed).
/// The file stays open after the pipeline so the runner can append the summary line.
struct JSONLFrameSink: Sink {
    let writer: JSONLWriter
    var name: String { "jsonl" }
    func consume(_ input: AnalyzedFrame) throws { try writer.writeFrame(input.result) }
}

/// Calls `body` for every frame that went through all stages (progress reporting), in order.
struct ProgressTap: Sink {
    let body: (FrameInfo) -> Void
    var name: String { "progress" }
    func consume(_ input: AnalyzedFrame) throws { body(input.result.info) }
}
