import ArgumentParser
import Foundation
import Tensor
import FPNCore
import Vision

/// `fpnstream bench ops`: per-op speed of the Tensor engine against the sgemm peak measured in the same run.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "Per-op GFLOP/s (convs on ResNet-50 layer shapes) as % of the sgemm peak measured in the same run.")

    @Option(help: "Network input size WxH whose ResNet-50 layer shapes are measured.")
    var size: String = "640x384"

    @Option(help: "Timed runs per op (median reported).")
    var runs: Int = 7

    @Option(help: "Square sgemm size for the peak measurement.")
    var peakSize: Int = 1536

    @Flag(inversion: .prefixedNo, help: "Time the convolutions (--no-convs: only the memory-bound ops).")
    var convs = true

    @Flag(help: "Also time the tile-restricted conv path (all 16x16 tiles, 25% of them, 1-pixel tiles in blobs; 2x2 tiles at random on the demo model's shapes).")
    var tiles = false

    @Option(help: "Cores each op and the reference sgemm may use (default: all; 1 = what each frame gets when `process` runs one frame per core).")
    var threads: Int?

    func validate() throws {
        guard parseSize(size) != nil else { throw ValidationError("--size must be WxH with positive integers, got '\(size)'") }
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard peakSize >= 64 else { throw ValidationError("--peak-size must be at least 64") }
        if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1, got \(t)") }
    }

    private func parseSize(_ s: String) -> (w: Int, h: Int)? {
        let p = s.lowercased().split(separator: "x").compactMap { Int($0) }
        return p.count == 2 && p[0] > 0 && p[1] > 0 ? (p[0], p[1]) : nil
    }

    /// Runs `body` with the buffers of `levels` (`(tensor, height, width)`) open at once.
    private func withBuffers(_ levels: [(Tensor, Int, Int)],
                             _ body: ([(data: UnsafeBufferPointer<Float>, height: Int, width: Int)]) -> Void) {
        func go(_ i: Int, _ acc: [(data: UnsafeBufferPointer<Float>, height: Int, width: Int)]) {
            if i == levels.count { return body(acc) }
            levels[i].0.withUnsafeBufferPointer { go(i + 1, acc + [($0, levels[i].1, levels[i].2)]) }
        }
        go(0, [])
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

    /// A conv shape of ResNet-50 (+FPN) at the chosen input, and how often it occurs in one forward pass.
    struct ConvCase {
        let name: String, cin: Int, cout: Int, k: Int, stride: Int, h: Int, w: Int, count: Int
    }

    func run() throws {
        guard let t = threads else { return try measure() }
        BLASInfo.setThreads(t)
        try Parallel.withWidth(t) { try measure() }
    }

    private func measure() throws {
        let (w, h) = parseSize(size)!
        print("fpnstream bench ops — \(BLASInfo.config); OpenBLAS threads \(BLASInfo.threads), cores \(ProcessInfo.processInfo.activeProcessorCount)")
        print(Compute.description)
        print("machine may be shared: figures are medians of \(runs) runs; ratios are within this run")
        let s4 = (h / 4, w / 4), s8 = (h / 8, w / 8), s16 = (h / 16, w / 16), s32 = (h / 32, w / 32)
        let cases: [ConvCase] = [
            .init(name: "stem 7x7/2 3→64", cin: 3, cout: 64, k: 7, stride: 2, h: h, w: w, count: 1),
            .init(name: "l1 1x1 64→64", cin: 64, cout: 64, k: 1, stride: 1, h: s4.0, w: s4.1, count: 1),
            .init(name: "l1 1x1 256→64", cin: 256, cout: 64, k: 1, stride: 1, h: s4.0, w: s4.1, count: 2),
            .init(name: "l1 3x3 64→64", cin: 64, cout: 64, k: 3, stride: 1, h: s4.0, w: s4.1, count: 3),
            .init(name: "l1 1x1 64→256", cin: 64, cout: 256, k: 1, stride: 1, h: s4.0, w: s4.1, count: 4),
            .init(name: "l2 1x1 256→128", cin: 256, cout: 128, k: 1, stride: 1, h: s4.0, w: s4.1, count: 1),
            .init(name: "l2 3x3/2 128→128", cin: 128, cout: 128, k: 3, stride: 2, h: s4.0, w: s4.1, count: 1),
            .init(name: "l2 1x1/2 256→512", cin: 256, cout: 512, k: 1, stride: 2, h: s4.0, w: s4.1, count: 1),
            .init(name: "l2 1x1 512→128", cin: 512, cout: 128, k: 1, stride: 1, h: s8.0, w: s8.1, count: 3),
            .init(name: "l2 3x3 128→128", cin: 128, cout: 128, k: 3, stride: 1, h: s8.0, w: s8.1, count: 3),
            .init(name: "l2 1x1 128→512", cin: 128, cout: 512, k: 1, stride: 1, h: s8.0, w: s8.1, count: 4),
            .init(name: "l3 1x1 512→256", cin: 512, cout: 256, k: 1, stride: 1, h: s8.0, w: s8.1, count: 1),
            .init(name: "l3 3x3/2 256→256", cin: 256, cout: 256, k: 3, stride: 2, h: s8.0, w: s8.1, count: 1),
            .init(name: "l3 1x1/2 512→1024", cin: 512, cout: 1024, k: 1, stride: 2, h: s8.0, w: s8.1, count: 1),
            .init(name: "l3 1x1 1024→256", cin: 1024, cout: 256, k: 1, stride: 1, h: s16.0, w: s16.1, count: 5),
            .init(name: "l3 3x3 256→256", cin: 256, cout: 256, k: 3, stride: 1, h: s16.0, w: s16.1, count: 5),
            .init(name: "l3 1x1 256→1024", cin: 256, cout: 1024, k: 1, stride: 1, h: s16.0, w: s16.1, count: 6),
            .init(name: "l4 1x1 1024→512", cin: 1024, cout: 512, k: 1, stride: 1, h: s16.0, w: s16.1, count: 1),
            .init(name: "l4 3x3/2 512→512", cin: 512, cout: 512, k: 3, stride: 2, h: s16.0, w: s16.1, count: 1),
            .init(name: "l4 1x1/2 1024→2048", cin: 1024, cout: 2048, k: 1, stride: 2, h: s16.0, w: s16.1, count: 1),
            .init(name: "l4 1x1 2048→512", cin: 2048, cout: 512, k: 1, stride: 1, h: s32.0, w: s32.1, count: 2),
            .init(name: "l4 3x3 512→512", cin: 512, cout: 512, k: 3, stride: 1, h: s32.0, w: s32.1, count: 2),
            .init(name: "l4 1x1 512→2048", cin: 512, cout: 2048, k: 1, stride: 1, h: s32.0, w: s32.1, count: 3),
            .init(name: "fpn 3x3 256→256 p2", cin: 256, cout: 256, k: 3, stride: 1, h: s4.0, w: s4.1, count: 1),
            .init(name: "fpn 3x3 256→256 p3", cin: 256, cout: 256, k: 3, stride: 1, h: s8.0, w: s8.1, count: 1),
        ]
        let ws = Workspace()
        let peakRun = Benchmark.sgemmRunner(m: peakSize, n: peakSize, k: peakSize)
        let peakFlops = 2 * pow(Double(peakSize), 3)
        // Per case: conv, the bare GEMM of the same shape, and the square sgemm peak, interleaved round by round,
        // so each ratio compares figures measured under the same machine load.
        var equivalentPeakSeconds = 0.0, totalSeconds = 0.0, gemmSeconds = 0.0, totalFlops = 0.0
        var peaks: [Double] = []
        print("conv (ResNet-50-FPN shapes at \(w)x\(h))    output           ms  GFLOP/s  %peak  GEMM-only %peak")
        for c in cases where convs {
            var rng: UInt32 = 7
            let x = Tensor(shape: [1, c.cin, c.h, c.w])
            x.withUnsafeMutableBufferPointer { p in for i in p.indices { rng = rng &* 1_664_525 &+ 1_013_904_223; p[i] = Float(rng >> 9) / Float(1 << 23) - 0.5 } }
            let conv = Conv2d(weight: Tensor(shape: [c.cout, c.cin, c.k, c.k], repeating: 0.01), bias: [Float](repeating: 0.1, count: c.cout),
                              stride: Size2(c.stride, c.stride), padding: Size2(c.k / 2, c.k / 2), activation: .relu)
            let os = conv.outputShape(x.shape)
            let out = Tensor(shape: os)
            let flops = conv.flops(x.shape)
            let gemm = Benchmark.sgemmRunner(m: c.cout, n: os[2] * os[3], k: c.cin * c.k * c.k)
            let m = Benchmark.interleavedMedianSeconds(rounds: runs, [peakRun, { conv.forward(x, into: out, workspace: ws) }, gemm])
            let peak = peakFlops / m[0] / 1e9
            peaks.append(peak)
            let t = m[1]
            totalFlops += flops * Double(c.count)
            totalSeconds += t * Double(c.count); gemmSeconds += m[2] * Double(c.count)
            equivalentPeakSeconds += flops / (peak * 1e9) * Double(c.count)
            print(String(format: "  %@ %@ %7.2f %8.1f %5.0f%%   %5.0f%%", pad(c.name, 36) as NSString,
                         pad("\(os[1])x\(os[2])x\(os[3])", 13) as NSString, t * 1e3, flops / t / 1e9, 100 * flops / t / 1e9 / peak,
                         100 * flops / m[2] / 1e9 / peak))
            if tiles {
                let grid = TileGrid(height: os[2], width: os[3], tile: 16)
                let all = Array(0..<grid.count), quarter = all.filter { $0 % 4 == 0 }
                // 1-pixel tiles in 6x6 blobs 13 px apart (21% of the pixels): the short runs the demo model's
                // delta frames gather (`--temporal-tile 1`, a few moving objects).
                let pixels = TileGrid(height: os[2], width: os[3], tile: 1)
                let blobs = (0..<pixels.count).filter { (($0 / os[3]) % 13) < 6 && (($0 % os[3]) % 13) < 6 }
                let tm = Benchmark.interleavedMedianSeconds(rounds: runs, [
                    { conv.forward(x, into: out, workspace: ws) },
                    { conv.forward(x, tiles: all, grid: grid, into: out, workspace: ws) },
                    { conv.forward(x, tiles: quarter, grid: grid, into: out, workspace: ws) },
                    { conv.forward(x, tiles: blobs, grid: pixels, into: out, workspace: ws) }])
                print(String(format: "      tiles 16x16: all %d tiles %.2f ms (%.2fx dense), %d tiles %.2f ms (%.2fx dense); "
                             + "1x1 tiles in 6x6 blobs, %.0f%% of pixels: %.2f ms (%.2fx dense)",
                             all.count, tm[1] * 1e3, tm[1] / tm[0], quarter.count, tm[2] * 1e3, tm[2] / tm[0],
                             100 * Double(blobs.count) / Double(pixels.count), tm[3] * 1e3, tm[3] / tm[0]))
            }
        }
        if convs { print(String(format: "sgemm peak %d³ during the run: median %.1f GFLOP/s (min %.1f, max %.1f)", peakSize,
                     Benchmark.median(peaks), peaks.min() ?? 0, peaks.max() ?? 0))
        print(String(format: "ResNet-50-FPN convs listed (weighted by count): %.2f GFLOP in %.1f ms → %.0f%% of the sgemm peak measured alongside (bare GEMMs: %.0f%%)\n",
                     totalFlops / 1e9, totalSeconds * 1e3, 100 * equivalentPeakSeconds / totalSeconds, 100 * equivalentPeakSeconds / gemmSeconds)) }

        if convs {
            // RoI-head convs: many small images batched into shared GEMMs.
            print("RoI-head convs (batched small images)       ms  GFLOP/s  %peak")
            for (name, n, side) in [("mask head 3x3 256→256, 100 RoIs 14x14", 100, 14), ("box head v2 3x3 256→256, 200 RoIs 7x7", 200, 7)] {
                let x = Tensor(shape: [n, 256, side, side], repeating: 0.2)
                let conv = Conv2d(weight: Tensor(shape: [256, 256, 3, 3], repeating: 0.01), bias: [Float](repeating: 0.1, count: 256),
                                  padding: 1, activation: .relu)
                let out = Tensor(shape: conv.outputShape(x.shape)), flops = conv.flops(x.shape)
                let m = Benchmark.interleavedMedianSeconds(rounds: runs, [peakRun, { conv.forward(x, into: out, workspace: ws) }])
                let peak = peakFlops / m[0] / 1e9
                print(String(format: "  %@ %7.2f %8.1f %5.0f%%", pad(name, 40) as NSString, m[1] * 1e3, flops / m[1] / 1e9,
                             100 * flops / m[1] / 1e9 / peak))
            }
            print("")

            // Bottleneck tail at stride 4: conv3 (1x1 64→256) + identity + ReLU, separate add vs fused residual.
            let x = Tensor(shape: [1, 64, s4.0, s4.1], repeating: 0.3), identity = Tensor(shape: [1, 256, s4.0, s4.1], repeating: -0.1)
            let w3 = Tensor(shape: [256, 64, 1, 1], repeating: 0.01), b3 = [Float](repeating: 0.1, count: 256)
            let conv3 = Conv2d(weight: w3, bias: b3), conv3Relu = Conv2d(weight: w3, bias: b3, activation: .relu)
            let m = Benchmark.interleavedMedianSeconds(rounds: runs, [
                { ws.beginFrame(); _ = conv3(x, in: ws).add(identity, activation: .relu, in: ws) },
                { ws.beginFrame(); _ = conv3Relu(x, residual: identity, in: ws) }])
            print(String(format: "bottleneck tail 1x1 64→256 + identity + ReLU at %dx%d: separate add %.2f ms, fused residual %.2f ms (%.2fx)\n",
                         s4.1, s4.0, m[0] * 1e3, m[1] * 1e3, m[0] / m[1]))
        }

        if tiles {
            // 2x2 tiles (the delta default) scattered at random over the demo model's stride-1 3x3 shapes: a
            // Winograd tile pass computes every F(4x4, 3x3) block its tiles touch, which decides its cost (and the
            // cache's per-layer dense fall-back).
            print("2x2 tiles at random, demo-model shapes     tiles  blocks   tile pass ms  dense ms  ratio")
            for (name, cin, cout, hh, ww) in [("3x3 64→64 on 80x64", 64, 64, 64, 80), ("3x3 128→128 on 80x64", 128, 128, 64, 80),
                                              ("3x3 128→128 on 40x32", 128, 128, 32, 40), ("3x3 256→256 on 20x16", 256, 256, 16, 20)] {
                let x = Tensor(shape: [1, cin, hh, ww], repeating: 0.3)
                let conv = Conv2d(weight: Tensor(shape: [cout, cin, 3, 3], repeating: 0.01), bias: [Float](repeating: 0.1, count: cout),
                                  padding: 1, activation: .relu)
                let os = conv.outputShape(x.shape), out = Tensor(shape: os)
                let grid = TileGrid(height: os[2], width: os[3], tile: 2)
                var rng: UInt64 = 12345
                let order = (0..<grid.count).map { i -> (Int, UInt64) in
                    rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    return (i, rng)
                }.sorted { $0.1 < $1.1 }.map(\.0)
                for f in [0.1, 0.2, 0.35, 0.5] {
                    let t = Array(order.prefix(max(1, Int(f * Double(grid.count))))).sorted()
                    let blocks = Double(conv.tilePassPixels(x, tiles: t, grid: grid)) / Double(os[2] * os[3])
                    let m = Benchmark.interleavedMedianSeconds(rounds: runs, [
                        { conv.forward(x, into: out, workspace: ws) },
                        { conv.forward(x, tiles: t, grid: grid, into: out, workspace: ws) }])
                    print(String(format: "  %@ %5.2f  %6.2f  %13.3f  %8.3f  %5.2f", pad(name, 38) as NSString, f, blocks,
                                 m[1] * 1e3, m[0] * 1e3, m[1] / m[0]))
                }
            }
            print("")
        }
        if tiles {
            // Narrow tile passes (a few moving objects on a stride-32 map): 1-pixel tiles, 9-48 columns per GEMM,
            // with the GEMM width rounded up to whole sgemm panels (`Conv2d.gemmColumns`) and without.
            print("narrow tile passes, 1-pixel tiles, every width 9-48 (sum)     padded ms  unpadded ms  ratio")
            for (name, cin, cout, stride, hh, ww) in [("3x3 512→512 on 10x8 (demo layer4)", 512, 512, 1, 8, 10),
                                                     ("3x3/2 256→512 from 20x16 (demo layer4)", 256, 512, 2, 16, 20),
                                                     ("3x3 256→256 on 20x16 (demo layer3)", 256, 256, 1, 16, 20),
                                                     ("3x3 512→512 on 24x18 (R50 layer4, vtest)", 512, 512, 1, 18, 24)] {
                let x = Tensor(shape: [1, cin, hh, ww], repeating: 0.3)
                let conv = Conv2d(weight: Tensor(shape: [cout, cin, 3, 3], repeating: 0.01), bias: [Float](repeating: 0.1, count: cout),
                                  stride: Size2(stride, stride), padding: 1, activation: .relu)
                let os = conv.outputShape(x.shape), out = Tensor(shape: os)
                let grid = TileGrid(height: os[2], width: os[3], tile: 1)
                // Every 5th pixel first (runs of one), then the rest: scattered changes, as deep layers see them.
                let order = (0..<grid.count).filter { $0 % 5 == 0 } + (0..<grid.count).filter { $0 % 5 != 0 }
                let sets = (9...min(48, grid.count)).map { Array(order.prefix($0)) }
                let passes = { (pad: Bool) -> () -> Void in
                    { conv.padsNarrowGEMMs = pad; for t in sets { conv.forward(x, tiles: t, grid: grid, into: out, workspace: ws) } }
                }
                let m = Benchmark.interleavedMedianSeconds(rounds: runs, [passes(true), passes(false)])
                conv.padsNarrowGEMMs = true
                print(String(format: "  %@ %9.2f %12.2f %6.2fx", pad(name, 56) as NSString, m[0] * 1e3, m[1] * 1e3, m[1] / m[0]))
            }
            print("")
        }

        // RoIAlign as the box head runs it: 1000 proposals over P2-P5 (the LevelMapper spreads them), after the
        // once-per-frame transpose to channels-last.
        do {
            let levels = [s4, s8, s16, s32].map { Tensor(shape: [256, $0.0, $0.1], repeating: 0) }
            for (i, l) in levels.enumerated() {
                l.withUnsafeMutableBufferPointer { b in for j in b.indices { b[j] = Float((j * 7 + i) % 23) / 23 } }
            }
            var rng = SystemRandomNumberGenerator()
            let boxes = (0..<1000).map { _ -> Box in
                let bw = Float.random(in: 8...Float(w) / 2, using: &rng), bh = Float.random(in: 8...Float(h) / 2, using: &rng)
                let x = Float.random(in: 0...(Float(w) - bw), using: &rng), y = Float.random(in: 0...(Float(h) - bh), using: &rng)
                return Box(x1: x, y1: y, x2: x + bw, y2: y + bh)
            }
            let last = levels.map { Tensor(shape: [$0.shape[1], $0.shape[2], 256]) }
            let pooled = Tensor(shape: [1000, 256, 7, 7]), pooler = MultiScaleRoIAlign(outputSize: 7)
            let transpose = {
                for (l, t) in zip(levels, last) {
                    l.withUnsafeBufferPointer { src in
                        t.withUnsafeMutableBufferPointer { RoIAlign.channelsLast(src, channels: 256, height: l.shape[1], width: l.shape[2], into: $0) }
                    }
                }
            }
            let pool = {
                withBuffers(last.map { ($0, $0.shape[0], $0.shape[1]) }) { feats in
                    pooled.withUnsafeMutableBufferPointer {
                        pooler.pool(channelsLast: feats, channels: 256, boxes: boxes, imageHeight: h, into: $0)
                    }
                }
            }
            let m = Benchmark.interleavedMedianSeconds(rounds: runs, [transpose, pool])
            print(String(format: "RoIAlign 7x7 (sampling 2), 1000 boxes, 256 channels on P2-P5 of %dx%d: transpose to channels-last %.2f ms, pool %.2f ms\n",
                         w, h, m[0] * 1e3, m[1] * 1e3))
        }

        // Memory-bound ops on the stride-4 map (256 channels): GB/s of bytes read + written.
        print("other ops on 1x256x\(s4.0)x\(s4.1)             ms     GB/s")
        let a = Tensor(shape: [1, 256, s4.0, s4.1], repeating: 0.5), b = Tensor(shape: a.shape, repeating: -0.25)
        let small = Tensor(shape: [1, 256, s8.0, s8.1], repeating: 1)
        let bytes = Double(a.count * 4)
        let ops: [(String, Double, () -> Void)] = [
            ("add + relu", 3 * bytes, { ws.beginFrame(); _ = a.add(b, activation: .relu, in: ws) }),
            ("max-pool 3x3/2 pad 1", 1.25 * bytes, { ws.beginFrame(); _ = a.maxPool2d(kernel: 3, stride: 2, padding: 1, in: ws) }),
            ("nearest upsample x2 (from stride 8)", 1.25 * bytes, { ws.beginFrame(); _ = small.upsampleNearest(height: s4.0, width: s4.1, in: ws) }),
            ("bilinear resize x2 (from stride 8)", 1.25 * bytes, { ws.beginFrame(); _ = small.resizeBilinear(height: s4.0, width: s4.1, in: ws) }),
            ("sigmoid", 2 * bytes, { ws.beginFrame(); _ = a.sigmoid(in: ws) }),
            ("GroupNorm(32) + relu", 3 * bytes, { ws.beginFrame(); _ = GroupNorm(groups: 32, channels: 256, activation: .relu)(a, in: ws) }),
        ]
        for (name, traffic, body) in ops {
            let t = Benchmark.medianSeconds(runs: runs, body)
            print(String(format: "  %@ %7.2f %8.1f", pad(name, 36) as NSString, t * 1e3, traffic / t / 1e9))
        }
    }
}
