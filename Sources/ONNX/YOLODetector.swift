import FPNCore
import Tensor

/// Runs an Ultralytics YOLO detect/segment export on the frames of one stream: RGB frame → letterbox (OpenCV's
/// uint8 bilinear resize keeping the aspect ratio, grey 114 padding, values / 255) → ONNX session →
/// `YOLO.decode` → detections in source pixels. Owns per-stream buffers; one per stream.
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
        let small = OpenCVLinearResize.resize(image, width: lb.resizedWidth, height: lb.resizedHeight)
        Self.place(small, width: lb.resizedWidth, height: lb.resizedHeight, into: input, left: lb.left, top: lb.top)
        let outs = try session.run(input)
        return YOLO.decode(outs, layout: layout, sourceWidth: w, sourceHeight: h, options: options)
    }

    /// Writes the interleaved RGB bytes `small` at (left, top) of the planar `input`, divided by 255; grey 114/255
    /// elsewhere.
    static func place(_ small: [UInt8], width sw: Int, height sh: Int, into input: Tensor, left: Int, top: Int) {
        input.fill(114 / 255)
        let (ih, iw) = (input.shape[2], input.shape[3])
        input.withUnsafeMutableBufferPointer { d in
            for c in 0..<3 {
                for y in 0..<min(sh, ih - top) {
                    let src = y * sw * 3 + c, dst = (c * ih + top + y) * iw + left
                    for x in 0..<min(sw, iw - left) { d[dst + x] = Float(small[src + 3 * x]) / 255 }
                }
            }
        }
    }
}
