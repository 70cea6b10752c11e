import Tensor

/// Builds modules from a weights file: reads tensors by torchvision key, records every key and shape the model
/// asks for (so `verify()` can list every missing, unexpected and mis-shaped key at once) and numbers the convs.
public final class ModuleLoader {
    /// The weights.
    public let file: SafeTensorsFile
    /// Every key the modules built so far expect, with its shape.
    public private(set) var expected: [String: [Int]] = [:]
    /// Keys that may be present or absent (BatchNorm2d's `num_batches_tracked`).
    public private(set) var optional: Set<String> = []
    /// Convolutions in the order they were built.
    public private(set) var convLayers: [ConvLayer] = []

    public init(file: SafeTensorsFile) { self.file = file }

    /// `key` as a tensor of `shape`; zeros when the file lacks it or has another shape (`verify()` reports it).
    public func tensor(_ key: String, shape: [Int]) throws -> Tensor {
        expected[key] = shape
        guard file.shape(key) == shape else { return Tensor(shape: shape) }
        return try file.tensor(key)
    }

    /// `key` as `count` floats (biases, norm parameters).
    public func floats(_ key: String, count: Int) throws -> [Float] {
        try tensor(key, shape: [count]).array
    }

    /// BatchNorm2d / FrozenBatchNorm2d parameters under `prefix` (`weight`, `bias`, `running_mean`, `running_var`;
    /// `num_batches_tracked` allowed but unused).
    public func batchNorm(_ prefix: String, channels: Int, eps: Double) throws -> BatchNormParameters {
        optional.insert(prefix + ".num_batches_tracked")
        return BatchNormParameters(
            weight: try floats(prefix + ".weight", count: channels), bias: try floats(prefix + ".bias", count: channels),
            runningMean: try floats(prefix + ".running_mean", count: channels),
            runningVar: try floats(prefix + ".running_var", count: channels), eps: eps)
    }

    /// A conv `key` (`key.weight` [out, in, k, k], `key.bias` when `bias`), with the BatchNorm `batchNorm` (a key
    /// prefix) folded in when given. Registered as the next `ConvLayer`.
    /// `groups` > 1: a grouped conv, weight `[out, in / groups, k, k]` (depthwise when groups == in).
    public func conv(_ key: String, in cin: Int, out cout: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                     groups: Int = 1, bias: Bool = false, batchNorm: String? = nil, bnEps: Double = 0,
                     activation: Activation = .none) throws -> ConvLayer {
        let w = try tensor(key + ".weight", shape: [cout, cin / groups, kernel, kernel])
        let b = bias ? try floats(key + ".bias", count: cout) : nil
        let bn = try batchNorm.map { try self.batchNorm($0, channels: cout, eps: bnEps) }
        let conv = Conv2d(weight: w, bias: b, stride: Size2(stride, stride), padding: Size2(padding, padding),
                          groups: groups, activation: activation, batchNorm: bn)
        let layer = ConvLayer(key: key, index: convLayers.count, conv: conv)
        convLayers.append(layer)
        return layer
    }

    /// Strict check of the whole file against everything built: throws `WeightMismatchError` listing every
    /// missing, unexpected and mis-shaped key. Call once all modules stored in the file are built.
    public func verify() throws {
        let optional = self.optional
        try file.verify(expected: expected, ignoring: { optional.contains($0) })
    }
}
