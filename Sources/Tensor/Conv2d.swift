import CKernels
import Foundation

/// A 2-D convolution with torch semantics (`nn.Conv2d`): any kernel, stride, padding, dilation and groups.
///
/// Input `[n, inChannels, h, w]` → output `[n, outChannels, (h + 2p - d(k-1) - 1)/s + 1, ...]`.
/// Computed as im2col + GEMM on the process's compute path (`Gemm`, weights packed once at construction; a 1x1
/// stride-1 unpadded conv multiplies the input directly; depthwise convs, one input channel per group, use a
/// direct loop). Bias and the activation run in the GEMM's epilogue. BatchNorm is folded into `weight`/`bias` at
/// construction. Immutable: one instance is shared by all streams.
public final class Conv2d: @unchecked Sendable {
    /// `[outChannels, inChannels / groups, kernel.h, kernel.w]` (BatchNorm already folded in).
    public let weight: Tensor
    /// `[outChannels]`, or nil (no bias).
    public let bias: [Float]?
    /// Input channels.
    public let inChannels: Int
    /// Output channels.
    public let outChannels: Int
    /// Kernel size.
    public let kernel: Size2
    /// Stride.
    public let stride: Size2
    /// Zero padding on each side.
    public let padding: Size2
    /// Dilation.
    public let dilation: Size2
    /// Groups (`inChannels` for depthwise).
    public let groups: Int
    /// Activation applied after the bias.
    public let activation: Activation
    /// `weight` per group as GEMM operands `[outChannels / groups, inChannels / groups · kh · kw]` (none for
    /// depthwise convs).
    let packed: [PackedMatrix]
    /// Whether this conv's geometry has a Winograd form (`Conv2d.winogradApplies`).
    let winogradEligible: Bool
    /// The Winograd form, built by the first pass that needs it (`winograd`), under `winogradLock`.
    var winogradStorage: WinogradWeights?
    let winogradLock = NSLock()

    /// - Parameters:
    ///   - weight: `[outChannels, inChannels / groups, kh, kw]` (torch layout).
    ///   - bias: `[outChannels]` or nil.
    ///   - batchNorm: when given, folded in: weight *= scale per output channel, bias = (bias - mean) * scale + beta.
    ///   - precision: of the GEMMs (weights packed for it once); the process default unless given.
    public init(weight: Tensor, bias: [Float]? = nil, stride: Size2 = 1, padding: Size2 = 0, dilation: Size2 = 1,
                groups: Int = 1, activation: Activation = .none, batchNorm: BatchNormParameters? = nil,
                precision: Precision = Compute.precision) {
        precondition(weight.rank == 4, "conv weight must be [out, in/groups, kh, kw], got \(weight.shape)")
        let oc = weight.shape[0]
        precondition(groups >= 1 && oc % groups == 0, "outChannels \(oc) not divisible by groups \(groups)")
        precondition(stride.h >= 1 && stride.w >= 1 && dilation.h >= 1 && dilation.w >= 1 && padding.h >= 0 && padding.w >= 0,
                     "bad conv geometry stride \(stride) padding \(padding) dilation \(dilation)")
        if let bias { precondition(bias.count == oc, "conv bias has \(bias.count) elements, expected \(oc)") }
        self.outChannels = oc
        self.inChannels = weight.shape[1] * groups
        self.kernel = Size2(weight.shape[2], weight.shape[3])
        self.stride = stride; self.padding = padding; self.dilation = dilation
        self.groups = groups; self.activation = activation
        let w = Tensor(shape: weight.shape)
        w.copy(from: weight)
        if let bn = batchNorm {
            precondition(bn.weight.count == oc, "BatchNorm has \(bn.weight.count) channels, conv has \(oc)")
            let (scale, shift) = bn.scaleAndShift
            let per = w.count / oc
            w.withUnsafeMutableBufferPointer { p in
                for o in 0..<oc { for i in 0..<per { p[o * per + i] = Float(Double(p[o * per + i]) * scale[o]) } }
            }
            self.bias = (0..<oc).map { o in Float(Double(bias?[o] ?? 0) * scale[o] + shift[o]) }
        } else {
            self.bias = bias
        }
        self.weight = w
        let mg = oc / groups, kg = weight.shape[1] * kernel.h * kernel.w
        packed = groups > 1 && groups == inChannels ? []
            : (0..<groups).map { g in PackedMatrix(w.ptr + g * mg * kg, rows: mg, columns: kg, precision: precision) }
        winogradEligible = Conv2d.winogradApplies(kernel: kernel, stride: stride, dilation: dilation, groups: groups,
                                                  inChannels: inChannels, outChannels: oc,
                                                  path: packed.first?.path ?? .openblas)
    }

    /// Output shape for an input shape `[n, inChannels, h, w]`.
    public func outputShape(_ input: [Int]) -> [Int] {
        precondition(input.count == 4 && input[1] == inChannels, "conv expects [n, \(inChannels), h, w], got \(input)")
        let ho = (input[2] + 2 * padding.h - dilation.h * (kernel.h - 1) - 1) / stride.h + 1
        let wo = (input[3] + 2 * padding.w - dilation.w * (kernel.w - 1) - 1) / stride.w + 1
        precondition(ho > 0 && wo > 0, "conv \(kernel) stride \(stride) gives an empty output for input \(input)")
        return [input[0], outChannels, ho, wo]
    }

    /// Multiply-adds × 2 of one dense forward pass on `input` (shape), for GFLOP/s figures.
    public func flops(_ input: [Int]) -> Double {
        let o = outputShape(input)
        return 2 * Double(o[0] * o[1] * o[2] * o[3]) * Double(inChannels / groups * kernel.h * kernel.w)
    }

    /// Dense forward: a new output from `ws`, shape `outputShape(x.shape)`.
    /// With `residual` (same shape as the output): act(conv(x) + bias + residual), the ResNet block tail and the
    /// FPN top-down sum fused into the GEMM (accumulated with beta = 1) and its epilogue.
    public func callAsFunction(_ x: Tensor, residual: Tensor? = nil, in ws: Workspace) -> Tensor {
        let out = ws.tensor(outputShape(x.shape))
        forward(x, residual: residual, into: out, workspace: ws)
        return out
    }

    /// Dense forward into `out` (shape `outputShape(x.shape)`), scratch from `workspace`; optionally
    /// act(conv(x) + bias + residual). `residual` may be `out` itself (accumulate in place).
    public func forward(_ x: Tensor, residual: Tensor? = nil, into out: Tensor, workspace: Workspace) {
        let os = outputShape(x.shape)
        precondition(out.shape == os, "conv output must be \(os), got \(out.shape)")
        x.checkValid(); out.checkValid()
        if let residual {
            precondition(residual.shape == os, "conv residual must be \(os), got \(residual.shape)")
            residual.checkValid()
            if !(residual.storage === out.storage && residual.offset == out.offset) {
                let src = residual.ptr, dst = out.ptr, plane = os[2] * os[3]
                Parallel.forEach(os[0] * os[1], cost: out.count) { r in
                    (dst + r.lowerBound * plane).update(from: src + r.lowerBound * plane, count: r.count * plane)
                }
            }
        }
        let ho = os[2], wo = os[3]
        // One segment per output row, columns in output order: the GEMM writes straight into `out`.
        let seg = workspace.ints(4 * ho)
        for y in 0..<ho { seg[4 * y] = y; seg[4 * y + 1] = 0; seg[4 * y + 2] = wo; seg[4 * y + 3] = y * wo }
        let p = ho * wo
        let depthwiseConv = inChannels == groups && groups > 1
        if runsWinograd(x) {
            // Every image's tiles in one run of blocks (a batch of small RoIs shares the GEMMs).
            winogradForward(x, items: 0..<x.n, out: out.ptr, ho: ho, wo: wo,
                            residual: residual == nil ? nil : UnsafePointer(out.ptr))
            return
        }
        if x.n > 1 && p < Conv2d.batchedColumns && !depthwiseConv {
            // Many small images (RoI heads: 100-1000 RoIs of 7x7 or 14x14): one GEMM per ~batchedColumns columns
            // instead of one skinny GEMM per image.
            let per = max(1, Conv2d.batchedColumns / p)
            for start in Swift.stride(from: 0, to: x.n, by: per) {
                runBatched(x, items: start..<min(x.n, start + per), segments: seg, segmentCount: ho, out: out,
                           residual: residual != nil, workspace: workspace)
            }
            return
        }
        for b in 0..<x.n {
            run(x, batch: b, segments: seg, segmentCount: ho, columns: p, dense: out, kept: nil,
                residual: residual == nil ? nil : out, workspace: workspace)
        }
    }

    /// Column count from which one image's GEMM is wide enough on its own; smaller images are batched up to it.
    static let batchedColumns = 4096

    /// Dense forward of batch items `items` through one GEMM per group: their im2col columns side by side,
    /// results staged and copied out per item with the epilogue. `residual`: `out` already holds it.
    private func runBatched(_ x: Tensor, items: Range<Int>, segments seg: UnsafeMutablePointer<Int>, segmentCount: Int,
                            out: Tensor, residual: Bool, workspace: Workspace) {
        let h = x.h, wi = x.w, ho = out.h, wo = out.w, p = ho * wo
        let cg = inChannels / groups, mg = outChannels / groups, kg = cg * kernel.h * kernel.w
        let total = items.count * p
        let scratch = workspace.scratch(kg * total + outChannels * total)
        let stage = scratch + kg * total
        for g in 0..<groups {
            for (j, b) in items.enumerated() {
                im2col(x.ptr + (b * inChannels + g * cg) * h * wi, channels: cg, h: h, w: wi, segments: seg,
                       segmentCount: segmentCount, columns: total, into: scratch + j * p)
            }
            Gemm.multiply(packed[g], b: scratch, ldb: total, columns: total, beta: 0, c: stage + g * mg * total,
                          ldc: total)
        }
        let relu = activation == .relu
        let base = out.ptr + items.lowerBound * outChannels * p
        withBias { bias in
            Parallel.forEach(items.count * outChannels, cost: total * outChannels) { range in
                for jo in range {
                    let j = jo / outChannels, oc = jo % outChannels
                    let b = bias?[oc] ?? 0
                    let src = stage + oc * total + j * p, d = base + jo * p
                    if residual {
                        for i in 0..<p { let v = src[i] + b + d[i]; d[i] = relu && v < 0 ? 0 : v }
                    } else {
                        for i in 0..<p { let v = src[i] + b; d[i] = relu && v < 0 ? 0 : v }
                    }
                }
            }
        }
    }

    /// Tile-restricted forward: computes only the output tiles `tiles` (indices into `grid`, row-major tile order)
    /// and writes them into `kept` (shape `outputShape(x.shape)`); every other element of `kept` is left untouched.
    /// The chosen tiles' im2col columns are gathered into one matrix, multiplied by one GEMM, and scattered.
    /// Computing every tile gives the dense result. With `residual` (output shape; may be `kept`), the tiles get
    /// act(conv(x) + bias + residual) like the dense path.
    public func forward(_ x: Tensor, tiles: [Int], grid: TileGrid, residual: Tensor? = nil, into kept: Tensor,
                        workspace: Workspace) {
        checkTiled(x, grid: grid, residual: residual, kept: kept)
        guard !tiles.isEmpty else { return }
        // Neighbouring tiles of a tile row become one segment per pixel row (longer im2col copies, fewer scatters).
        var runs = grid.runs(tiles.sorted())
        if groups > 1 && groups == inChannels {
            // Depthwise: memory access, not arithmetic, is the cost, so runs of a tile row less than
            // `depthwiseGap` pixels apart are computed as one (the tiles between get the value they already hold:
            // their input did not change, and the kernel is deterministic).
            var merged: [(row: Int, column: Int, count: Int)] = []
            let gap = max(1, Conv2d.depthwiseGap / grid.tile.w)
            for r in runs {
                if let last = merged.last, last.row == r.row, r.column - (last.column + last.count) <= gap {
                    merged[merged.count - 1].count = r.column + r.count - last.column
                } else {
                    merged.append(r)
                }
            }
            runs = merged
        }
        let (seg, segmentCount, col) = segments(of: runs, grid: grid, workspace: workspace)
        if runsWinograd(x) {
            // The same arithmetic as the dense pass, tile for tile: recomputed pixels equal a dense pass's. The
            // results stay in output planes and are written a vector of pixels at a time (`Ops.gatePlanes`).
            let plane = outChannels * kept.h * kept.w
            let spans = Ops.planarSpans(seg, count: segmentCount, ho: kept.h, wo: kept.w)
            for b in 0..<x.n {
                let (stage, columns) = winogradStage(x, batch: b, segments: seg, segmentCount: segmentCount,
                                                     ho: kept.h, wo: kept.w, workspace: workspace)
                let staged = StagedResults(conv: self, stage: stage, columns: columns, stride: columns, segments: seg,
                                           segmentCount: segmentCount, out: kept.ptr + b * plane,
                                           residual: residual.map { $0.ptr + b * plane }, ho: kept.h, wo: kept.w,
                                           planar: true)
                Ops.gatePlanes(staged, rows: spans.rows, x0: spans.x0, x1: spans.x1, mask: spans.mask, pixelMax: nil)
            }
            return
        }
        for b in 0..<x.n {
            run(x, batch: b, segments: seg, segmentCount: segmentCount, columns: col, dense: nil, kept: kept,
                residual: residual, workspace: workspace)
        }
    }

    /// Tile-restricted forward whose results `commit` writes: the tiles `tiles` are computed like
    /// `forward(_:tiles:grid:residual:into:workspace:)` and staged side by side (`[outChannels, columns]`, the
    /// segments' pixels in column order), then handed to `commit` instead of being scattered into `kept`. One
    /// image, not depthwise. The hook of output gating (the temporal cache).
    package func forward(_ x: Tensor, tiles sorted: [Int], grid: TileGrid, residual: Tensor?, into kept: Tensor,
                         commit: StagedCommit, workspace: Workspace) {
        precondition(x.n == 1 && !(groups > 1 && groups == inChannels), "staged conv forward takes one image, not depthwise")
        checkTiled(x, grid: grid, residual: residual, kept: kept)
        guard !sorted.isEmpty else { return }
        let (seg, segmentCount, col) = segments(of: grid.runs(sorted), grid: grid, workspace: workspace)
        if runsWinograd(x) {
            let (stage, columns) = winogradStage(x, batch: 0, segments: seg, segmentCount: segmentCount,
                                                 ho: kept.h, wo: kept.w, workspace: workspace)
            commit.commit(StagedResults(conv: self, stage: stage, columns: columns, stride: columns, segments: seg,
                                        segmentCount: segmentCount, out: kept.ptr, residual: residual?.ptr,
                                        ho: kept.h, wo: kept.w, planar: true))
            return
        }
        var hook: StagedCommit? = commit
        run(x, batch: 0, segments: seg, segmentCount: segmentCount, columns: col, dense: nil, kept: kept,
            residual: residual, commit: &hook, workspace: workspace)
    }

    /// The shapes a tile-restricted pass needs: `kept` (and `residual`) of the output shape, `grid` over it.
    package func checkTiled(_ x: Tensor, grid: TileGrid, residual: Tensor?, kept: Tensor) {
        let os = outputShape(x.shape)
        precondition(kept.shape == os, "conv kept output must be \(os), got \(kept.shape)")
        if let residual { precondition(residual.shape == os, "conv residual must be \(os), got \(residual.shape)"); residual.checkValid() }
        precondition(grid.height == os[2] && grid.width == os[3], "tile grid \(grid) does not cover output \(os)")
        x.checkValid(); kept.checkValid()
    }

    /// One segment per pixel row of each run of tiles (quadruples oy, ox0, length, column), columns in run order.
    private func segments(of runs: [(row: Int, column: Int, count: Int)], grid: TileGrid, workspace: Workspace)
        -> (UnsafeMutablePointer<Int>, Int, Int) {
        var segmentCount = 0
        for r in runs { segmentCount += min(grid.height, (r.row + 1) * grid.tile.h) - r.row * grid.tile.h }
        let seg = workspace.ints(4 * segmentCount)
        var s = 0, col = 0
        for r in runs {
            let x0 = r.column * grid.tile.w, n = min(grid.width, x0 + r.count * grid.tile.w) - x0
            for y in (r.row * grid.tile.h)..<min(grid.height, (r.row + 1) * grid.tile.h) {
                seg[4 * s] = y; seg[4 * s + 1] = x0; seg[4 * s + 2] = n; seg[4 * s + 3] = col
                col += n; s += 1
            }
        }
        return (seg, segmentCount, col)
    }

    // MARK: - Kernel

    /// Computes the output pixels listed in `segments` (quadruples oy, ox0, length, column) for batch item `b`.
    /// `dense`: segments cover the whole output in order; results go straight to it. `kept`: results are staged
    /// in scratch `[outChannels, columns]` and scattered. `residual` is added before the activation; for `dense`
    /// it must already be in the output (the GEMM accumulates onto it).
    private func run(_ x: Tensor, batch b: Int, segments seg: UnsafeMutablePointer<Int>, segmentCount: Int,
                     columns p: Int, dense: Tensor?, kept: Tensor?, residual: Tensor?, workspace: Workspace) {
        var none: StagedCommit? = nil
        run(x, batch: b, segments: seg, segmentCount: segmentCount, columns: p, dense: dense, kept: kept,
            residual: residual, commit: &none, workspace: workspace)
    }

    /// `run` with an optional commit hook (kept path only): every chunk's results are staged side by side and,
    /// after the last one, handed to `commit` (which writes what it chooses into `kept`).
    private func run(_ x: Tensor, batch b: Int, segments seg: UnsafeMutablePointer<Int>, segmentCount: Int,
                     columns p: Int, dense: Tensor?, kept: Tensor?, residual: Tensor?, commit: inout StagedCommit?,
                     workspace: Workspace) {
        let cin = x.c, h = x.h, wi = x.w
        let target = dense ?? kept!
        let ho = target.h, wo = target.w
        let xin = x.ptr + b * cin * h * wi
        let outBase = target.ptr + b * outChannels * ho * wo
        let cg = inChannels / groups, mg = outChannels / groups
        let kk = kernel.h * kernel.w
        let kg = cg * kk
        let res = residual.map { $0.ptr + b * outChannels * ho * wo }

        if cg == 1 && groups > 1 {
            depthwise(xin, h: h, w: wi, segments: seg, segmentCount: segmentCount, out: outBase, residual: res, ho: ho, wo: wo)
            return
        }
        if commit == nil, let isa = packed[0].path.isa, runsStemKernel(isa) {
            stem(isa, xin, h: h, w: wi, segments: seg, segmentCount: segmentCount, out: outBase, residual: res,
                 ho: ho, wo: wo, workspace: workspace)
            return
        }
        let direct = kk == 1 && stride == 1 && padding == 0 && dense != nil
        let beta: Float = dense != nil && res != nil ? 1 : 0
        let relu = activation == .relu
        if direct {
            withBias { bias in
                for g in 0..<groups {
                    Gemm.multiply(packed[g], b: xin + g * cg * h * wi, ldb: p, columns: p, beta: beta,
                                  c: outBase + g * mg * p, ldc: p, bias: bias.map { $0.baseAddress! + g * mg }, relu: relu)
                }
            }
            return
        }
        if let d = dense, packed[0].path.isa != nil, implicitIm2col {
            // One product per group, B gathered from the input while packing: no im2col matrix.
            withBias { bias in
                for g in 0..<groups {
                    Gemm.convolve(packed[g], image: xin + g * cg * h * wi, height: h, width: wi, kernel: kernel,
                                  stride: stride, padding: padding, dilation: dilation, outputWidth: d.w, columns: p,
                                  beta: beta, c: outBase + g * mg * p, ldc: p,
                                  bias: bias.map { $0.baseAddress! + g * mg }, relu: relu)
                }
            }
            return
        }
        // Column chunks of whole segments bound the im2col scratch (about `scratchBudget` floats) while keeping
        // each GEMM wide; the epilogue runs per chunk while its columns are still in cache.
        let maxColumns = chunkColumnsForTesting ?? max(Conv2d.minChunkColumns, Conv2d.scratchBudget / kg)
        var widest = 0
        for s in 0..<segmentCount { widest = max(widest, seg[4 * s + 2]) }
        let cap = min(p, max(maxColumns, widest))
        let gated = commit != nil && dense == nil
        // Staged (kept) passes multiply `Conv2d.gemmColumns(nc)` columns, the extra ones zero and discarded.
        // Gated: all columns staged (row stride p + quantum: a padded last chunk stays inside its row), compared
        // and committed once the last chunk is in; a padded earlier chunk's extra columns are overwritten by the next.
        let padded = dense == nil && padsNarrowGEMMs && packed[0].path == .openblas
        let pad = padded ? Conv2d.gemmColumnQuantum : 0
        let stageStride = gated ? p + pad : cap + pad
        let scratch = workspace.scratch(kg * (cap + pad) + (dense == nil ? outChannels * stageStride : 0))
        let stage = scratch + kg * (cap + pad)
        var s0 = 0
        while s0 < segmentCount {
            var s1 = s0, nc = 0
            while s1 < segmentCount && (s1 == s0 || nc + seg[4 * s1 + 2] <= maxColumns) { nc += seg[4 * s1 + 2]; s1 += 1 }
            let col0 = seg[4 * s0 + 3]
            let ng = padded ? Conv2d.gemmColumns(nc) : nc
            for g in 0..<groups {
                im2col(xin + g * cg * h * wi, channels: cg, h: h, w: wi, segments: seg + 4 * s0, segmentCount: s1 - s0,
                       columns: ng, columnBase: col0, into: scratch)
                if ng > nc {
                    for r in 0..<kg { (scratch + r * ng + nc).update(repeating: 0, count: ng - nc) }
                }
                if dense != nil {
                    withBias { bias in
                        Gemm.multiply(packed[g], b: scratch, ldb: nc, columns: nc, beta: beta,
                                      c: outBase + g * mg * p + col0, ldc: p, bias: bias.map { $0.baseAddress! + g * mg },
                                      relu: relu)
                    }
                } else if gated {
                    Gemm.multiply(packed[g], b: scratch, ldb: ng, columns: ng, beta: 0,
                                  c: stage + g * mg * stageStride + col0, ldc: stageStride)
                } else {
                    Gemm.multiply(packed[g], b: scratch, ldb: ng, columns: ng, beta: 0, c: stage + g * mg * ng, ldc: ng)
                }
            }
            if dense == nil && !gated {
                scatter(stage, columns: ng, columnBase: col0, segments: seg + 4 * s0, segmentCount: s1 - s0, out: outBase,
                        residual: res, ho: ho, wo: wo)
            }
            s0 = s1
        }
        if gated {
            commit!.commit(StagedResults(conv: self, stage: stage, columns: p, stride: stageStride, segments: seg,
                                         segmentCount: segmentCount, out: outBase, residual: res, ho: ho, wo: wo))
        }
    }

    /// Columns per panel of OpenBLAS's sgemm kernel (the row-major N here is the kernel's M; 16 for its Haswell
    /// kernel). A remainder is computed by narrower edge kernels that cost more than a whole panel once it reaches
    /// `gemmPadFrom` columns. The own kernels mask their edges, so only the OpenBLAS path pads.
    static let gemmColumnQuantum = 16
    static let gemmPadFrom = 5

    /// GEMM width for `n` staged columns: rounded up to a whole panel when the remainder is `gemmPadFrom` or more.
    /// Only the tile passes pad: their GEMMs are narrow (tens of columns on stride-32 maps), a dense pass's
    /// remainder is a small fraction of it (figures in docs/measurements/).
    static func gemmColumns(_ n: Int) -> Int {
        let r = n % gemmColumnQuantum
        return r >= gemmPadFrom ? n + gemmColumnQuantum - r : n
    }

    /// Depthwise tile path: runs of one tile row at most this many pixels apart are computed as one segment.
    static let depthwiseGap = 8

    /// Whether tile passes on the OpenBLAS path round their GEMM width up with `gemmColumns` (the extra columns are
    /// zero and dropped; the results agree to float rounding). Off only to measure what it saves (`fpnstream bench
    /// ops --tiles`); not to be changed while the conv runs.
    public var padsNarrowGEMMs = true

    /// Dense passes on the own kernels gather im2col inside the GEMM's packing (no im2col matrix). Off only to
    /// measure or test the explicit im2col path; not to be changed while the conv runs.
    public var implicitIm2col = true

    /// `usesWinograd` when set; nil follows the process default.
    var winogradChoice: Bool?

    /// Tests force narrow chunks (many GEMMs per image) to exercise the chunking on small images.
    var chunkColumnsForTesting: Int?

    /// im2col scratch target in floats (16 MB) and the narrowest chunk worth a GEMM.
    static let scratchBudget = 1 << 22
    static let minChunkColumns = 1024

    /// cols[r, col - columnBase] for r = (c, ky, kx) and the output pixels of the segments (row stride `p`);
    /// zero where the tap falls in the padding.
    private func im2col(_ x: UnsafeMutablePointer<Float>, channels: Int, h: Int, w: Int,
                        segments seg: UnsafeMutablePointer<Int>, segmentCount: Int, columns p: Int, columnBase: Int = 0,
                        into cols: UnsafeMutablePointer<Float>) {
        let kh = kernel.h, kw = kernel.w, sh = stride.h, sw = stride.w
        let ph = padding.h, pw = padding.w, dh = dilation.h, dw = dilation.w
        let rows = channels * kh * kw
        // Per segment and tap column: the first input column and the valid output range [jlo, jhi) (0 <= ix0 +
        // j*sw < w), per segment and tap row the input row (-1: padding). Worked out once, not per channel: the
        // segments of scattered 2x2 tiles are 2 pixels long, where these divisions cost more than the copies.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: (3 * kw + kh) * segmentCount) { table in
            let xs = table.baseAddress!, ys = xs + 3 * kw * segmentCount
            for s in 0..<segmentCount {
                let oy = seg[4 * s], ox0 = seg[4 * s + 1], len = seg[4 * s + 2]
                for ky in 0..<kh {
                    let iy = oy * sh - ph + ky * dh
                    ys[s * kh + ky] = iy < 0 || iy >= h ? -1 : iy
                }
                for kx in 0..<kw {
                    let ix0 = ox0 * sw - pw + kx * dw
                    let jlo = ix0 >= 0 ? 0 : min(len, (-ix0 + sw - 1) / sw)
                    let jhi = ix0 >= w ? jlo : max(jlo, min(len, (w - 1 - ix0) / sw + 1))
                    let t = 3 * (s * kw + kx)
                    xs[t] = ix0; xs[t + 1] = jlo; xs[t + 2] = jhi
                }
            }
            let xt = UnsafePointer(xs), yt = UnsafePointer(ys)
            Parallel.forEach(rows, cost: rows * p) { range in
                for r in range {
                    let c = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw
                    let src = x + c * h * w
                    let dstRow = cols + r * p - columnBase
                    for s in 0..<segmentCount {
                        let len = seg[4 * s + 2]
                        let d = dstRow + seg[4 * s + 3]
                        let iy = yt[s * kh + ky]
                        if iy < 0 { d.update(repeating: 0, count: len); continue }
                        let row = src + iy * w
                        let t = 3 * (s * kw + kx)
                        let ix0 = xt[t], jlo = xt[t + 1], jhi = xt[t + 2]
                        if jlo > 0 { d.update(repeating: 0, count: jlo) }
                        if sw == 1 {
                            (d + jlo).update(from: row + ix0 + jlo, count: jhi - jlo)
                        } else {
                            var j = jlo, ix = ix0 + jlo * sw
                            while j < jhi { d[j] = row[ix]; j += 1; ix += sw }
                        }
                        if jhi < len { (d + jhi).update(repeating: 0, count: len - jhi) }
                    }
                }
            }
        }
    }

    /// Scatters staged `[outChannels, columns]` results to their output pixels, applying bias and activation.
    package func scatter(_ stage: UnsafeMutablePointer<Float>, columns p: Int, columnBase: Int, segments seg: UnsafeMutablePointer<Int>,
                         segmentCount: Int, out: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>?,
                         ho: Int, wo: Int) {
        let relu = activation == .relu
        withBias { bias in
            Parallel.forEach(outChannels, cost: outChannels * p) { range in
                for oc in range {
                    let b = bias?[oc] ?? 0
                    let src = stage + oc * p
                    for s in 0..<segmentCount {
                        let at = oc * ho * wo + seg[4 * s] * wo + seg[4 * s + 1]
                        let d = out + at, len = seg[4 * s + 2]
                        let v = src + seg[4 * s + 3] - columnBase
                        if let r = residual.map({ $0 + at }) {
                            for j in 0..<len { let t = v[j] + b + r[j]; d[j] = relu && t < 0 ? 0 : t }
                        } else if relu {
                            for j in 0..<len { let t = v[j] + b; d[j] = t > 0 ? t : 0 }
                        } else {
                            for j in 0..<len { d[j] = v[j] + b }
                        }
                    }
                }
            }
        }
    }

    /// True when `fpn_stem` computes this conv (a stride-2 conv reading a few channels, e.g. ResNet's 7x7 stem) on
    /// the chosen compute path.
    public var runsStemKernel: Bool { packed[0].path.isa.map(runsStemKernel) ?? false }

    func runsStemKernel(_ isa: Int32) -> Bool {
        groups == 1 && padding.h == padding.w && fpn_stem_supported(isa, Int32(inChannels), Int32(outChannels),
            Int32(kernel.h), Int32(kernel.w), Int32(stride.h), Int32(stride.w), Int32(dilation.h), Int32(dilation.w)) != 0
    }

    /// The stem kernel on one image's segments: the input split into even/odd columns and the weights transposed
    /// once per call (both small), then rows of segments over the cores.
    private func stem(_ isa: Int32, _ x: UnsafeMutablePointer<Float>, h: Int, w: Int, segments seg: UnsafeMutablePointer<Int>,
                      segmentCount: Int, out: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>?,
                      ho: Int, wo: Int, workspace: Workspace) {
        let wp = Int(fpn_stem_phase_width(Int32(wo), Int32(kernel.w)))
        let taps = inChannels * kernel.h * kernel.w
        let phases = workspace.scratch(inChannels * 2 * h * wp + taps * outChannels)
        let wt = phases + inChannels * 2 * h * wp
        fpn_stem_phases(x, Int32(inChannels), Int32(h), Int32(w), Int32(padding.w), Int32(wp), phases)
        fpn_stem_weights(weight.ptr, Int32(outChannels), Int32(taps), wt)
        let relu: Int32 = activation == .relu ? 1 : 0
        var pixels = 0
        for s in 0..<segmentCount { pixels += seg[4 * s + 2] }
        withBias { bias in
            Parallel.forEach(segmentCount, cost: pixels * outChannels * taps) { r in
                fpn_stem(isa, phases, Int32(inChannels), Int32(h), Int32(wp), seg, Int32(r.lowerBound),
                         Int32(r.upperBound), out, residual, Int32(outChannels), Int32(ho), Int32(wo), wt,
                         bias?.baseAddress, Int32(kernel.h), Int32(kernel.w), Int32(padding.h), relu)
            }
        }
    }

    /// Depthwise (one input channel per group): direct loops over the segments' output pixels, epilogue fused.
    private func depthwise(_ x: UnsafeMutablePointer<Float>, h: Int, w: Int, segments seg: UnsafeMutablePointer<Int>,
                           segmentCount: Int, out: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>?,
                           ho: Int, wo: Int) {
        withBias { bias in
            DepthwiseKernel.run(x, h: h, w: w, segments: seg, segmentCount: segmentCount, out: out, residual: residual,
                                ho: ho, wo: wo, weight: weight.ptr, bias: bias, outChannels: outChannels, groups: groups,
                                kernel: kernel, stride: stride, padding: padding, dilation: dilation,
                                relu: activation == .relu)
        }
    }

    package func withBias<R>(_ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
        if let bias { return bias.withUnsafeBufferPointer { body($0) } }
        return body(nil)
    }
}
