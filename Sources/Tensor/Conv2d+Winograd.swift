import CKernels
import Dispatch
import Foundation

/// A stride-1 3x3 convolution's weights in Winograd form: U = G g Gᵀ for F(m x m, 3 x 3), as α² = (m + 2)² GEMM
/// operands `[outChannels, inChannels]` on the compute path. The dense pass then multiplies α² times per output
/// tile instead of 9m² times (2.25x fewer products for m = 2, 4x for m = 4). Immutable, shared by streams.
final class WinogradWeights: @unchecked Sendable {
    /// Output tile size, 2 or 4.
    let m: Int
    /// `U[ξ]`, ξ = i · α + k.
    let packed: [PackedMatrix]

    /// The output tile size for `precision`: `FPNSTREAM_WINOGRAD=2|4` if set, else 4. bf16 keeps 4 as well: its
    /// measured accuracy cost with F(4x4, 3x3) stays within the one of the direct bf16 GEMM (docs/measurements).
    static func tile(for precision: Precision) -> Int {
        Conv2d.winogradTileOverride ?? 4
    }

    /// - Parameter weight: `[outChannels, inChannels, 3, 3]`, row-major.
    init(weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, precision: Precision, m: Int? = nil) {
        self.m = m ?? WinogradWeights.tile(for: precision)
        precondition(self.m == 2 || self.m == 4, "Winograd tile must be 2 or 4, got \(self.m)")
        let a2 = (self.m + 2) * (self.m + 2), plane = outChannels * inChannels
        let u = UnsafeMutablePointer<Float>.allocate(capacity: a2 * plane)
        defer { u.deallocate() }
        fpn_winograd_transform_weights(Int32(self.m), Int32(outChannels), Int32(inChannels), weight, u)
        packed = (0..<a2).map { PackedMatrix(u + $0 * plane, rows: outChannels, columns: inChannels, precision: precision) }
    }
}

extension Conv2d {
    /// The process's default for stride-1 3x3 convolutions: Winograd unless `FPNSTREAM_WINOGRAD` is `off` (for
    /// measuring against the direct GEMM; the results agree to float rounding).
    /// Whether this process runs Winograd by default (`winogradDecision` on the environment and the self-check);
    /// the warning, if any, went to stderr once.
    public static let winogradByDefault: Bool = {
        let d = winogradDecision(environment: ProcessInfo.processInfo.environment, ownKernels: Compute.path.isa != nil,
                                 check: winogradSelfCheckError)
        if let w = d.warning { FileHandle.standardError.write(Data(("fpnstream: " + w + "\n").utf8)) }
        return d.enabled
    }()

    /// Off when `FPNSTREAM_WINOGRAD=off`; a value that is not a setting warns and keeps the default; else on, unless the own kernels' transforms fail the self-check (`check`
    /// returns an error relative to the output's scale above 1e-4), which turns it off with a warning. On the
    /// OpenBLAS path no conv has a Winograd form, so nothing is checked.
    static func winogradDecision(environment: [String: String], ownKernels: Bool,
                                 check: () -> Double) -> (enabled: Bool, warning: String?) {
        let value = environment["FPNSTREAM_WINOGRAD"]?.lowercased() ?? ""
        guard value != "off" else { return (false, nil) }
        let unknown = ["", "on", "2", "4"].contains(value) ? nil
            : "FPNSTREAM_WINOGRAD=\(value) is not a setting (off, on, 2, 4); using Winograd F(4x4, 3x3)"
        guard ownKernels else { return (true, unknown) }
        let error = check()
        guard error.isFinite && error <= 1e-4 else {
            return (false, "the Winograd transforms computed wrong results (relative error \(error)); "
                           + "3x3 convolutions use the direct GEMM")
        }
        return (true, unknown)
    }

    /// Largest error (relative to the output's scale) of both Winograd tile sizes on the process's compute path
    /// against a float64 direct convolution: a 16-channel 13x11 image with padding 1, every tile at an edge or next
    /// to one. Well under a millisecond.
    static func winogradSelfCheckError() -> Double {
        let c = 16, h = 13, w = 11
        var seed: UInt32 = 11
        func next() -> Float { seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 9) / Float(1 << 23) - 0.5 }
        let x = (0..<(c * h * w)).map { _ in next() }, weight = (0..<(c * c * 9)).map { _ in next() }
        var reference = [Double](repeating: 0, count: c * h * w)
        for o in 0..<c { for y in 0..<h { for xx in 0..<w {
            var s = 0.0
            for i in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                let iy = y + ky - 1, ix = xx + kx - 1
                if iy >= 0 && iy < h && ix >= 0 && ix < w { s += Double(weight[((o * c + i) * 3 + ky) * 3 + kx]) * Double(x[(i * h + iy) * w + ix]) }
            } } }
            reference[(o * h + y) * w + xx] = s
        } } }
        let scale = max(1, reference.map(abs).max() ?? 0)
        var worst = 0.0
        let input = Tensor(shape: [1, c, h, w], data: x)
        for m in [2, 4] {
            let conv = Conv2d(weight: Tensor(shape: [c, c, 3, 3], data: weight), padding: 1)
            conv.winograd = WinogradWeights(weight: conv.weight.ptr, outChannels: c, inChannels: c, precision: .f32, m: m)
            let out = Tensor(shape: [1, c, h, w])
            conv.winogradForward(input, items: 0..<1, out: out.ptr, ho: h, wo: w, residual: nil)
            for (a, r) in zip(out.array, reference) { worst = max(worst, abs(Double(a) - r) / scale); if a.isNaN { return .infinity } }
        }
        return worst
    }

    /// `FPNSTREAM_WINOGRAD=2` or `4` forces that output tile size for both precisions (for measuring accuracy and
    /// speed); otherwise 4 in f32 and 2 in bf16.
    static let winogradTileOverride: Int? = {
        guard let v = ProcessInfo.processInfo.environment["FPNSTREAM_WINOGRAD"], v == "2" || v == "4" else { return nil }
        return Int(v)
    }()

    /// Tiles per block (at most; a map with fewer tiles than the cores can take gets narrower blocks, at least 16):
    /// a block's transformed input and products (α² · (in + out channels) · block floats) take at most half the
    /// core's L2 (`l2Kilobytes`, 512 when unknown) while the α² GEMMs stream through them. Wider blocks reuse each
    /// plane's weights over more tiles but spill the block to L3: 16 tiles beat 64 by 5% of the demo pipeline's CPU
    /// with 128 channels, and by 2% on ResNet-50-FPN, on a 1 MB L2.
    static func winogradBlock(alphaSquared a2: Int, channels: Int, l2Kilobytes: Int) -> Int {
        let budget = (l2Kilobytes > 0 ? l2Kilobytes : 512) * 1024 / 2
        return min(64, max(16, budget / max(1, a2 * channels * 4) / 16 * 16))
    }

    /// Floats between consecutive α² matrices of a block's operands (`rows` x `ld` each): a transform reads or
    /// writes the same position of all α² matrices at once, and at a multiple of 4 KB apart (any power-of-two channel
    /// count) those α² lines share one L1 set and evict each other. The stride is one cache line past a multiple of
    /// 4 KB, so they fall on α² different sets.
    static func winogradMatrixStride(rows: Int, ld: Int) -> Int {
        (rows * ld + 1023) / 1024 * 1024 + 16
    }

    /// Below this many output tiles (over a batch's images) the GEMMs are too narrow to gain from the transform.
    /// At 16-31 tiles (a 16x20 map at stride 16) Winograd still wins: 5% of the demo pipeline's CPU.
    static let winogradMinTiles = 16

    /// Dense passes of a stride-1 3x3 conv with a Winograd form (`WinogradWeights`) use it when the image has
    /// enough tiles (default: `Conv2d.winogradByDefault`). Off only to measure or test the direct path; not to be
    /// changed while the conv runs.
    public var usesWinograd: Bool {
        get { winogradChoice ?? Conv2d.winogradByDefault }
        set { winogradChoice = newValue }
    }

    /// The Winograd form, built on first use (the transformed weights take 4x the 3x3 weights' memory, so models
    /// whose maps stay small never pay for it), or nil when the geometry has none. Tests replace it to check the
    /// other tile size.
    var winograd: WinogradWeights? {
        get {
            guard winogradEligible else { return nil }
            winogradLock.lock(); defer { winogradLock.unlock() }
            if winogradStorage == nil {
                winogradStorage = WinogradWeights(weight: weight.ptr, outChannels: outChannels, inChannels: inChannels,
                                                  precision: packed[0].precision)
            }
            return winogradStorage
        }
        set {
            winogradLock.lock(); defer { winogradLock.unlock() }
            winogradStorage = newValue
        }
    }

    /// Output tile size of the Winograd form (built or not).
    private var winogradTile: Int {
        winogradLock.lock(); defer { winogradLock.unlock() }
        return winogradStorage?.m ?? WinogradWeights.tile(for: packed[0].precision)
    }

    /// Whether this convolution's Winograd form computes a dense pass on input `x`.
    func runsWinograd(_ x: Tensor) -> Bool { runsWinograd(shape: x.shape) }

    /// Output pixels per image that a tile-restricted pass over `tiles` of `grid` (the output grid) computes on
    /// input `x`: the tiles' pixels, or with the Winograd form every F(m x m) output block they touch (clipped to
    /// the output), which is what its GEMMs run on.
    public func tilePassPixels(_ x: Tensor, tiles: [Int], grid: TileGrid) -> Int {
        guard runsWinograd(x), let m = winograd?.m else {
            return tiles.reduce(0) { n, t in let r = grid.rect(t); return n + r.rows.count * r.cols.count }
        }
        let bw = (grid.width + m - 1) / m, bh = (grid.height + m - 1) / m
        var covered = [Bool](repeating: false, count: bw * bh)
        var pixels = 0
        for t in tiles {
            let r = grid.rect(t)
            for by in (r.rows.lowerBound / m)...((r.rows.upperBound - 1) / m) {
                for bx in (r.cols.lowerBound / m)...((r.cols.upperBound - 1) / m) where !covered[by * bw + bx] {
                    covered[by * bw + bx] = true
                    pixels += (min(grid.height, (by + 1) * m) - by * m) * (min(grid.width, (bx + 1) * m) - bx * m)
                }
            }
        }
        return pixels
    }

    /// Whether this convolution's Winograd form computes a dense pass on an input of shape `[n, c, h, w]`.
    public func runsWinograd(shape: [Int]) -> Bool {
        guard usesWinograd, winogradEligible, shape.count == 4 else { return false }
        let m = winogradTile
        let ho = shape[2] + 2 * padding.h - 2, wo = shape[3] + 2 * padding.w - 2
        return shape[0] * ((ho + m - 1) / m) * ((wo + m - 1) / m) >= Conv2d.winogradMinTiles
    }

    /// Whether a convolution of this geometry gets a Winograd form: 3x3, stride 1, no dilation, one group, on the
    /// own kernels, with enough channels for the GEMMs between the transforms to be worth it.
    static func winogradApplies(kernel: Size2, stride: Size2, dilation: Size2, groups: Int, inChannels: Int,
                                outChannels: Int, path: ComputePath) -> Bool {
        kernel == Size2(3, 3) && stride == 1 && dilation == 1 && groups == 1 && path.isa != nil
            && inChannels >= 16 && outChannels >= 16
    }

    /// Winograd pass of batch items `items` over the output tiles `tiles` (one item only: ascending tile numbers of
    /// its m x m grid; nil: every tile of every item) into `out` (the first item's planes `[outChannels, ho, wo]`,
    /// the next items' following): act(conv + bias + residual) with `residual` (same layout, may be `out`) optional,
    /// or the bare convolution when `epilogue` is false. Only those tiles' pixels are written. The items' tiles,
    /// image after image, are cut into blocks split over the cores; each block is transformed, multiplied α² times
    /// and transformed back by one thread with its own scratch, so small images (RoIs) share wide GEMMs.
    func winogradForward(_ x: Tensor, items: Range<Int>, tiles list: [Int32]? = nil, out: UnsafeMutablePointer<Float>,
                         ho: Int, wo: Int, residual: UnsafePointer<Float>?, epilogue: Bool = true) {
        guard let w = winograd, let isa = packed[0].path.isa else { preconditionFailure("no Winograd form") }
        precondition(list == nil || items.count == 1, "a tile list covers one image")
        var g = fpn_winograd(m: Int32(w.m), cin: Int32(inChannels), cout: Int32(outChannels), h: Int32(x.h),
                             w: Int32(x.w), ph: Int32(padding.h), pw: Int32(padding.w), ho: Int32(ho), wo: Int32(wo))
        let perImage = list?.count ?? Int(fpn_winograd_tiles(&g))
        let tiles = perImage * items.count
        guard tiles > 0 else { return }
        let a2 = (w.m + 2) * (w.m + 2)
        // Narrower blocks when there are too few to give every core one (small maps, single RoIs).
        let width = Parallel.width
        let widest = Conv2d.winogradBlock(alphaSquared: a2, channels: inChannels + outChannels,
                                          l2Kilobytes: CPUFeatures.host.l2Kilobytes)
        let block = min(widest, max(16, (tiles + width - 1) / width + 15) / 16 * 16)
        let blocks = (tiles + block - 1) / block
        let workers = max(1, min(width, blocks))
        let ld = (block + 15) / 16 * 16
        let inPlane = inChannels * x.h * x.w, outPlane = outChannels * ho * wo
        let relu: Int32 = epilogue && activation == .relu ? 1 : 0
        let res = epilogue ? residual : nil
        withBias { bias in
            let biasPointer = epilogue ? bias?.baseAddress : nil
            // Calls `body(item offset, first local tile, count, block column)` for each image's part of a block.
            func parts(_ t0: Int, _ n: Int, _ body: (Int, Int, Int, Int) -> Void) {
                var t = t0
                while t < t0 + n {
                    let i = t / perImage, local = t % perImage, count = min(perImage - local, t0 + n - t)
                    body(i, local, count, t - t0)
                    t += count
                }
            }
            let inStride = Conv2d.winogradMatrixStride(rows: inChannels, ld: ld)
            let outStride = Conv2d.winogradMatrixStride(rows: outChannels, ld: ld)
            let worker = { (wi: Int) in
                let v = Scratch.take(a2 * (inStride + outStride))
                let ws = Scratch.take(Gemm.serialWorkspace(w.packed[0], columns: ld))
                defer { Scratch.give(v); Scratch.give(ws) }
                let products = v.base + a2 * inStride
                for blk in (blocks * wi / workers)..<(blocks * (wi + 1) / workers) {
                    let t0 = blk * block, n = min(block, tiles - t0)
                    parts(t0, n) { i, local, count, column in
                        let xin = UnsafePointer(x.ptr + (items.lowerBound + i) * inPlane)
                        list.withOptionalPointer(offset: local) { tp in
                            fpn_winograd_input(isa, &g, xin, tp, Int32(local), Int32(count), v.base + column, Int32(ld),
                                               inStride)
                        }
                    }
                    for xi in 0..<a2 {
                        Gemm.multiplySerial(w.packed[xi], b: v.base + xi * inStride, ldb: ld, columns: n,
                                            c: products + xi * outStride, ldc: ld, workspace: ws.base)
                    }
                    parts(t0, n) { i, local, count, column in
                        list.withOptionalPointer(offset: local) { tp in
                            fpn_winograd_output(isa, &g, products + column, Int32(ld), outStride, tp, Int32(local), Int32(count),
                                                biasPointer, res.map { $0 + i * outPlane }, relu, out + i * outPlane)
                        }
                    }
                }
            }
            if workers == 1 {
                worker(0)
            } else {
                withoutActuallyEscaping(worker) { body in DispatchQueue.concurrentPerform(iterations: workers) { body($0) } }
            }
        }
    }

    /// A tile-restricted pass through the Winograd form: the bare convolution of the Winograd tiles covering the
    /// segments' pixels (quadruples oy, ox0, length, column) of batch item `b` (bias, residual and activation not
    /// yet applied), left in output planes `[outChannels, ho, wo]` that serve as the stage: each segment's column
    /// becomes its first pixel's offset in a plane (oy·wo + ox0), and the returned column count is ho·wo (no copy
    /// into packed columns: the segments of scattered 2x2 tiles are 2 pixels long, and the gate reads the planes
    /// a vector of pixels at a time). Every tile is computed as in the dense pass, so the staged values equal the
    /// dense pass's.
    func winogradStage(_ x: Tensor, batch b: Int, segments seg: UnsafeMutablePointer<Int>, segmentCount: Int,
                       ho: Int, wo: Int, workspace: Workspace) -> (stage: UnsafeMutablePointer<Float>, columns: Int) {
        guard let m = winograd?.m else { preconditionFailure("no Winograd form") }
        let tw = (wo + m - 1) / m, th = (ho + m - 1) / m
        var covered = [Bool](repeating: false, count: tw * th)
        for s in 0..<segmentCount where seg[4 * s + 2] > 0 {
            let wy = seg[4 * s] / m
            for wx in (seg[4 * s + 1] / m)...((seg[4 * s + 1] + seg[4 * s + 2] - 1) / m) { covered[wy * tw + wx] = true }
            seg[4 * s + 3] = seg[4 * s] * wo + seg[4 * s + 1]
        }
        let list = covered.indices.filter { covered[$0] }.map(Int32.init)
        let planes = workspace.scratch(outChannels * ho * wo)
        winogradForward(x, items: b..<(b + 1), tiles: list, out: planes, ho: ho, wo: wo, residual: nil, epilogue: false)
        return (planes, ho * wo)
    }
}

private extension Optional where Wrapped == [Int32] {
    /// `body` with a pointer to element `offset`, or nil for nil.
    func withOptionalPointer<R>(offset: Int, _ body: (UnsafePointer<Int32>?) -> R) -> R {
        guard let a = self else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress! + offset) }
    }
}
