import Foundation
import Tensor

/// Times every conv layer (dense), and counts its FLOPs, over profiled frames.
public final class ConvProfiler: ConvolutionRunner {
    /// Seconds per layer index, one entry per profiled frame.
    public var layerTimes: [[Double]]
    /// FLOPs of each layer at the profiled input.
    public var flops: [Double]
    /// Input shape of each layer.
    public var shapes: [[Int]]
    /// Summed conv seconds of each profiled frame.
    public var frameTimes: [Double] = []
    private var current = 0.0

    /// `count` = the backbone's conv layer count.
    public init(count: Int) {
        layerTimes = Array(repeating: [], count: count)
        flops = Array(repeating: 0, count: count)
        shapes = Array(repeating: [], count: count)
    }

    public func run(_ layer: ConvLayer, input: Tensor, residual: Tensor?, workspace: Workspace) -> Tensor {
        let t0 = Benchmark.now()
        let out = layer.conv(input, residual: residual, in: workspace)
        let dt = Benchmark.now() - t0
        layerTimes[layer.index].append(dt)
        flops[layer.index] = layer.conv.flops(input.shape)
        shapes[layer.index] = input.shape
        current += dt
        return out
    }

    /// Closes the current profiled frame.
    public func endFrame() { frameTimes.append(current); current = 0 }
}

/// Resident set size of this process in MB (VmRSS from /proc/self/status).
public func residentMB() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
    return kb / 1024
}
