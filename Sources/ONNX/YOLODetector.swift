import FPNCore
import Tensor

/// Runs an Ultralytics YOLO detect/segment export on the frames of one stream: RGB frame → letterbox (bilinear
/// resize keeping the aspect ratio, grey 114 padding, values / 255) → ONNX session → `YOLO.decode` → detections
/// in source pixels. Owns per-stream buffers; one per stream.
public final class YOLODetector {
    public let network: ONNXNetwork
    public let layout: YOLO.Layout
    public var options: YOLO.Options
    private let session: ONNXSession
    /// Optional per-stream convolution runner (a `TemporalCache` in delta mode); nil = dense.
    public var runner: ConvolutionRunner? {
        get { session.runner }
        set { session.runner = newValue }
    }
    private var frameTensor: Tensor?
    private var resized: Tensor?
    private let input: Tensor

    /// - Throws: `ONNXError` naming the file and the expected layouts when the outputs are not a YOLO head.
    public init(network: ONNXNetwork, options: YOLO.Options = .init()) throws {
        self.network = network
        self.layout = try YOLO.layout(of: network)
        self.options = options
        self.session = ONNXSession(network)
        self.input = Tensor(shape: network.inputShape(height: layout.inputHeight, width: layout.inputWidth))
    }

    /// Detections in `image`'s pixels.
    public func detect(_ image: RGBImage) throws -> [Detection] {
        let (w, h) = (image.width, image.height)
        let lb = YOLO.Letterbox(sourceWidth: w, sourceHeight: h, inputWidth: layout.inputWidth, inputHeight: layout.inputHeight)
        if frameTensor?.shape != [1, 3, h, w] { frameTensor = Tensor(shape: [1, 3, h, w]) }
        if resized?.shape != [1, 3, lb.resizedHeight, lb.resizedWidth] {
            resized = Tensor(shape: [1, 3, lb.resizedHeight, lb.resizedWidth])
        }
        let frame = frameTensor!, small = resized!
        CenterFaceDetector.fillPlanar(frame, from: image)
        if lb.resizedWidth == w && lb.resizedHeight == h { small.copy(from: frame) } else { Ops.resizeBilinear(frame, into: small) }
        Self.place(small, into: input, left: lb.left, top: lb.top)
        let outs = try session.run(input)
        return YOLO.decode(outs, layout: layout, sourceWidth: w, sourceHeight: h, options: options)
    }

    /// Writes `small` (values 0...255, rounded to whole values as the uint8 image Ultralytics resizes) at (left, top)
    /// of `input` scaled to 0...1, grey 114/255 elsewhere.
    static func place(_ small: Tensor, into input: Tensor, left: Int, top: Int) {
        input.fill(114 / 255)
        let (sh, sw, ih, iw) = (small.shape[2], small.shape[3], input.shape[2], input.shape[3])
        small.withUnsafeBufferPointer { s in
            input.withUnsafeMutableBufferPointer { d in
                for c in 0..<3 {
                    for y in 0..<min(sh, ih - top) {
                        let src = (c * sh + y) * sw, dst = (c * ih + top + y) * iw + left
                        for x in 0..<min(sw, iw - left) { d[dst + x] = s[src + x].rounded() / 255 }
                    }
                }
            }
        }
    }
}
