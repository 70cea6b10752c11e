/// A pair of sizes (height, width) for kernels, strides, paddings, dilations. `2` means `(2, 2)`.
public struct Size2: Hashable, Sendable, ExpressibleByIntegerLiteral, CustomStringConvertible {
    /// Vertical component.
    public var h: Int
    /// Horizontal component.
    public var w: Int
    /// `(h, w)`.
    public init(_ h: Int, _ w: Int) { self.h = h; self.w = w }
    /// The same value for both axes.
    public init(integerLiteral value: Int) { h = value; w = value }
    /// `3x3`.
    public var description: String { "\(h)x\(w)" }
}

/// The activation fused into an op's epilogue.
public enum Activation: Sendable, Hashable {
    /// Identity.
    case none
    /// max(x, 0).
    case relu
}

/// BatchNorm (or torchvision FrozenBatchNorm2d) parameters, per channel, to fold into a conv at load.
/// y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias.
public struct BatchNormParameters: Sendable {
    /// Gamma, `[channels]`.
    public var weight: [Float]
    /// Beta, `[channels]`.
    public var bias: [Float]
    /// `[channels]`.
    public var runningMean: [Float]
    /// `[channels]`.
    public var runningVar: [Float]
    /// Epsilon inside the square root (torchvision FrozenBN in v1 detection checkpoints: 0.0; BatchNorm2d: 1e-5).
    public var eps: Double

    /// Parameters for `channels` channels; all arrays must have that length.
    public init(weight: [Float], bias: [Float], runningMean: [Float], runningVar: [Float], eps: Double) {
        precondition(bias.count == weight.count && runningMean.count == weight.count && runningVar.count == weight.count,
                     "BatchNorm parameter lengths differ")
        self.weight = weight; self.bias = bias; self.runningMean = runningMean; self.runningVar = runningVar; self.eps = eps
    }

    /// Per-channel scale and shift: y = x * scale + shift (computed in Double, rounded once).
    public var scaleAndShift: (scale: [Double], shift: [Double]) {
        var scale = [Double](repeating: 0, count: weight.count), shift = scale
        for i in weight.indices {
            scale[i] = Double(weight[i]) / (Double(runningVar[i]) + eps).squareRoot()
            shift[i] = Double(bias[i]) - Double(runningMean[i]) * scale[i]
        }
        return (scale, shift)
    }
}
