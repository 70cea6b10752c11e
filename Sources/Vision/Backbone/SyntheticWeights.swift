import Foundation
import Tensor

/// Reproducible conv weights from a key name, identical to `generated_weight` in scripts/py/parity_backbone.py:
/// element i of `key` = (top 24 bits of splitmix64(i XOR fnv1a64(key))) - 2^23, times 2^(e - 23) with
/// e = 1 - bitLength(fanIn) / 2 (a Kaiming-like scale). Every value is exact in Float32, so Swift and numpy agree
/// bit for bit. Used by the committed parity fixtures (which then need not carry the weights) and by benchmarks.
public enum SyntheticWeights {
    /// FNV-1a 64 of the UTF-8 bytes.
    static func fnv1a64(_ s: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    @inline(__always) static func splitmix64(_ v: UInt64) -> UInt64 {
        var x = v &+ 0x9E37_79B9_7F4A_7C15
        x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
        x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
        return x ^ (x >> 31)
    }

    /// The generated tensor for `key` of `shape` (rank ≥ 2; fan-in = product of shape[1...]).
    public static func tensor(key: String, shape: [Int]) -> Tensor {
        let fanIn = shape.dropFirst().reduce(1, *)
        let e = 1 - (Int.bitWidth - fanIn.leadingZeroBitCount) / 2
        let unit = Float(sign: .plus, exponent: e - 23, significand: 1)
        let seed = fnv1a64(key)
        let t = Tensor(shape: shape)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices {
                let u = Int64(splitmix64(UInt64(i) ^ seed) >> 40) - (1 << 23)
                p[i] = Float(u) * unit
            }
        }
        return t
    }

    /// A tensor of `shape` with values uniform in [-amplitude, amplitude), reproducible from `key`
    /// (benchmark inputs).
    public static func uniform(key: String, shape: [Int], amplitude: Float) -> Tensor {
        let seed = fnv1a64(key)
        let t = Tensor(shape: shape)
        let unit = amplitude / Float(1 << 23)
        t.withUnsafeMutableBufferPointer { p in
            for i in p.indices { p[i] = Float(Int64(splitmix64(UInt64(i) ^ seed) >> 40) - (1 << 23)) * unit }
        }
        return t
    }

    /// A complete weights dictionary for the keys and shapes a model expects (`ModuleLoader.expected`): rank-4
    /// tensors generated as above; BatchNorm `weight`/`running_var` 1, `bias`/`running_mean` 0; conv biases 0.
    public static func stateDict(expected: [String: [Int]]) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (key, shape) in expected {
            if shape.count >= 2 {
                out[key] = tensor(key: key, shape: shape)
            } else {
                let one = key.hasSuffix(".running_var") || (key.hasSuffix(".weight") && shape.count == 1)
                out[key] = Tensor(shape: shape, repeating: one ? 1 : 0)
            }
        }
        return out
    }

    /// The keys and shapes the backbone of `config` expects (built once against an empty weights file).
    public static func expectedKeys(_ config: BackboneConfig, scratch: URL) throws -> [String: [Int]] {
        try SafeTensorsWriter.write([:], metadata: [:], to: scratch)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let loader = ModuleLoader(file: try SafeTensorsFile(url: scratch))
        _ = try ResNetFPNBackbone(config: config, loader: loader)
        return loader.expected
    }
}
