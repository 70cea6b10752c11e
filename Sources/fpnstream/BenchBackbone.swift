import ArgumentParser
import FPNStream
import Foundation
import Tensor
import Vision

/// `fpnstream bench backbone`: ms/frame, GFLOP/s and % of the FMA-loop limit (measured in the same run) of a
/// ResNet-FPN backbone on one input size, plus RSS after 20 and after N frames (the per-stream arena must keep memory
/// flat).
struct BenchBackbone: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backbone",
        abstract: "Benchmark a ResNet-FPN backbone (seeded synthetic weights unless --weights).",
        discussion: """
            Prints the median ms/frame, achieved GFLOP/s of the whole frame and of the conv layers alone (timed per \
            layer on separate profiled frames), both as % of the register-only FMA-loop limit measured in this run \
            (and of OpenBLAS's sgemm), and RSS after \
            20 frames and after --frames frames. Numbers from a shared machine are noisy: compare ratios. \
            --export DIR writes the weights and input used (weights.safetensors, input.safetensors) for \
            scripts/bench-peers.
            """)

    @Option(help: "Architecture (\(BackboneConfig.backboneArchitectures.joined(separator: ", "))).")
    var arch = "resnet50-fpn"

    @Option(help: "Network input WIDTHxHEIGHT (already padded; multiples of 32).")
    var size = "640x384"

    @Option(help: "Timed frames (RSS is printed after 20 and after this many).")
    var frames = 200

    @Option(help: "Frames profiled per conv layer (extra frames, interleaved with the first timed ones).")
    var profileFrames = 10

    @Option(help: "Real weights file instead of synthetic weights (its metadata sets the architecture).")
    var weights: String?

    @Option(help: "Write the weights and input used to this directory (for scripts/bench-peers).")
    var export: String?

    @Flag(help: "Print the per-layer table.")
    var layers = false

    @Flag(help: "Dense convs write an im2col matrix before the GEMM (the default gathers it while packing).")
    var explicitIm2col = false

    @Flag(help: "Also time frames with the explicit im2col matrix, interleaved frame by frame, and print the ratio.")
    var compareIm2col = false

    @Flag(help: "Stride-1 3x3 convs run the direct GEMM instead of Winograd F(4x4, 3x3).")
    var noWinograd = false

    @Flag(help: "Also time frames with the direct GEMM for stride-1 3x3 convs, interleaved frame by frame, and print the ratio.")
    var compareWinograd = false

    @OptionGroup var compute: ComputeFlags

    @Option(help: ArgumentHelp("Seconds between plain progress lines on stderr when it is not a terminal (0 = every frame).",
                               valueName: "seconds"))
    var progressInterval: Double = 5

    func validate() throws {
        guard frames >= 20 else { throw ValidationError("--frames must be at least 20") }
        guard progressInterval >= 0 else { throw ValidationError("--progress-interval must be >= 0") }
        guard (1...frames).contains(profileFrames) else { throw ValidationError("--profile-frames must be 1...--frames") }
        guard BackboneConfig(architecture: arch) != nil || weights != nil else {
            throw ValidationError("unknown --arch '\(arch)' (known: \(BackboneConfig.backboneArchitectures.joined(separator: ", ")))")
        }
    }

    func run() throws {
        let dims = size.split(separator: "x").compactMap { Int($0) }
        guard dims.count == 2, dims.allSatisfy({ $0 >= 32 }) else {
            throw ValidationError("--size must be WIDTHxHEIGHT (each >= 32), got '\(size)'")
        }
        let (width, height) = (dims[0], dims[1])
        try compute.apply()
        let backbone = try loadBackbone()
        if explicitIm2col { for l in backbone.convLayers { l.conv.implicitIm2col = false } }
        if noWinograd { for l in backbone.convLayers { l.conv.usesWinograd = false } }
        let input = SyntheticWeights.uniform(key: "bench.input", shape: [1, 3, height, width], amplitude: 2)
        if let export {
            try SafeTensorsWriter.write(["input": input], metadata: ["size": size],
                                        to: URL(fileURLWithPath: export).appendingPathComponent("input.safetensors"))
        }
        print("fpnstream bench backbone: \(arch) [\(backbone.config)] input \(input.shape)")
        print(Compute.description)
        print("OpenBLAS: \(BLASInfo.config) core \(BLASInfo.coreName), \(BLASInfo.threads) threads "
              + "(machine may be shared: compare ratios)")
        let limit = Compute.fmaPeakGFLOPS()

        let ws = Workspace()
        let profiler = ConvProfiler(count: backbone.convLayers.count)
        let peakSize = 1536
        let sgemm = Benchmark.sgemmRunner(m: peakSize, n: peakSize, k: peakSize)
        // Warm-up: the first frame plans the arena.
        for _ in 0..<3 { ws.beginFrame(); _ = backbone(input, workspace: ws); sgemm() }

        // Rounds interleave a timed frame, a timed square sgemm (the peak) and, in the first rounds, a frame whose
        // convs are timed one by one: ratios between them survive load changes on a shared machine.
        var times: [Double] = [], sgemmTimes: [Double] = []
        var rss20 = 0.0
        // Timed frames on stderr (stdout keeps the report): a bar on a terminal, a line every --progress-interval s.
        let progress = ProgressReporter(style: ProgressReporter.automaticStyle(quiet: false), total: frames,
                                        lineInterval: progressInterval)
        for i in 1...frames {
            ws.beginFrame()
            var t0 = Benchmark.now()
            _ = backbone(input, workspace: ws)
            times.append(Benchmark.now() - t0)
            t0 = Benchmark.now()
            sgemm()
            sgemmTimes.append(Benchmark.now() - t0)
            if i <= profileFrames {
                ws.beginFrame()
                _ = backbone(input, workspace: ws, runner: profiler)
                profiler.endFrame()
            }
            if i == 20 { rss20 = residentMB() }
            progress.frameDone()
        }
        progress.finish()
        let rssN = residentMB()

        let peak = 2 * pow(Double(peakSize), 3) / Benchmark.median(sgemmTimes) / 1e9
        let frame = Benchmark.median(times)
        let flops = profiler.flops.reduce(0, +)
        let convTime = Benchmark.median(profiler.frameTimes)
        let sorted = times.sorted()
        print(String(format: "OpenBLAS sgemm peak (%d^3, median of %d interleaved runs): %.1f GFLOP/s", peakSize, frames, peak))
        print(String(format: "frame: median %.1f ms (p10 %.1f, p90 %.1f) over %d frames = %.2f fps",
                     frame * 1e3, sorted[times.count / 10] * 1e3, sorted[times.count * 9 / 10] * 1e3, frames, 1 / frame))
        if backbone.mobileNet != nil {
            // Its activations run outside the conv runner, so the profiler sees no convolution.
            print("work: no per-layer profile for MobileNetV3 backbones (they do not run through the conv runner)")
        } else {
            let winogradLayers = zip(backbone.convLayers, profiler.shapes).filter { $0.conv.runsWinograd(shape: $1) }.count
            print(String(format: "work: %.2f GFLOP of convolution per frame (%d conv layers), counted as direct convolution%@",
                         flops / 1e9, backbone.convLayers.count,
                         winogradLayers == 0 ? "" : "; \(winogradLayers) stride-1 3x3 layers run Winograd with fewer multiplies, so rates can pass 100% of the limit"))
            print(String(format: "FMA-loop limit (%@, register-only, all cores): %.1f GFLOP/s", limit.isa, limit.gflops))
            print(String(format: "whole frame: %.1f GFLOP/s = %.1f%% of the FMA limit (%.1f%% of OpenBLAS's sgemm peak)",
                         flops / frame / 1e9, 100 * flops / frame / 1e9 / limit.gflops, 100 * flops / frame / 1e9 / peak))
            print(String(format: "conv layers only (median of %d profiled frames, %.1f ms = %.0f%% of the frame): %.1f GFLOP/s = %.1f%% of the FMA limit",
                         profiler.frameTimes.count, convTime * 1e3, 100 * convTime / frame, flops / convTime / 1e9,
                         100 * flops / convTime / 1e9 / limit.gflops))
        }
        // Frame by frame alternation: a load change on a shared machine hits both modes alike.
        func alternate(_ set: (Bool) -> Void) -> (Double, Double) {
            var off: [Double] = [], on: [Double] = []
            for _ in 0..<frames {
                for mode in [false, true] {
                    set(mode)
                    ws.beginFrame()
                    let t0 = Benchmark.now()
                    _ = backbone(input, workspace: ws)
                    if mode { on.append(Benchmark.now() - t0) } else { off.append(Benchmark.now() - t0) }
                }
            }
            return (Benchmark.median(off), Benchmark.median(on))
        }
        if compareIm2col {
            let (i, e) = alternate { explicit in for l in backbone.convLayers { l.conv.implicitIm2col = !explicit } }
            print(String(format: "im2col, interleaved over %d frames each: gathered while packing %.1f ms, explicit matrix %.1f ms (explicit/gathered %.3f)",
                         frames, i * 1e3, e * 1e3, e / i))
            for l in backbone.convLayers { l.conv.implicitIm2col = !explicitIm2col }
        }
        if compareWinograd {
            let (w, d) = alternate { direct in for l in backbone.convLayers { l.conv.usesWinograd = !direct } }
            print(String(format: "stride-1 3x3 convs, interleaved over %d frames each: Winograd %.1f ms, direct GEMM %.1f ms (direct/Winograd %.3f)",
                         frames, w * 1e3, d * 1e3, d / w))
            for l in backbone.convLayers { l.conv.usesWinograd = !noWinograd }
        }
        let drift = 100 * (rssN - rss20) / rss20
        print(String(format: "RSS: %.1f MB after 20 frames, %.1f MB after %d frames (%+.2f%%): %@; arena %.1f MB in %d buffers",
                     rss20, rssN, frames, drift, abs(drift) <= 2 ? "flat (within 2%)" : "NOT FLAT",
                     Double(ws.allocatedBytes) / 1e6, ws.bufferCount))
        if layers {
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
            // %limit: direct-convolution FLOPs over time, against the FMA-loop limit (Winograd rows can pass 100%).
            print(pad("layer", 40) + pad("input", 20) + "  GFLOP      ms %limit  algorithm")
            for l in backbone.convLayers {
                let t = Benchmark.median(profiler.layerTimes[l.index])
                let f = profiler.flops[l.index]
                let algorithm = l.conv.runsWinograd(shape: profiler.shapes[l.index]) ? "winograd"
                    : l.conv.runsStemKernel ? "direct" : "gemm"
                print(pad(String(l.key.dropFirst("backbone.".count)), 40) + pad("\(profiler.shapes[l.index])", 20)
                      + String(format: " %6.3f %7.2f %6.1f  %@", f / 1e9, t * 1e3, 100 * f / t / 1e9 / limit.gflops, algorithm))
            }
        }
    }

    private func loadBackbone() throws -> ResNetFPNBackbone {
        if let weights { return try ResNetFPNBackbone(contentsOf: URL(fileURLWithPath: weights)) }
        guard let export else { return try SyntheticWeights.backbone(architecture: arch) }
        // --export keeps the weights file for scripts/bench-peers.
        let config = BackboneConfig(architecture: arch)!
        let dir = URL(fileURLWithPath: export)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent("weights.safetensors")
        let expected = try SyntheticWeights.expectedKeys(config, scratch: dir.appendingPathComponent("empty-\(getpid()).safetensors"))
        try SafeTensorsWriter.write(SyntheticWeights.stateDict(expected: expected),
                                    metadata: ["architecture": arch, "bn_eps": "\(config.bnEps)",
                                               "source": "fpnstream bench backbone (SyntheticWeights)"], to: url)
        return try ResNetFPNBackbone(contentsOf: url)
    }
}
