import CKernels
import Dispatch

/// The MobileNet inverted-residual block — 1x1 expand → depthwise k×k → 1x1 project (+ shortcut) — computed in
/// bands of output rows: each band's expanded rows and depthwise rows live in a few MB of scratch (a band keeps the
/// expanded rows it shares with the previous one), and only the block's input and output are full-size maps. Run conv by conv, a 1536x1152 MobileNetV2 input holds each
/// expanded map whole (6x the block's channels at full resolution, up to 170 MB), written once and read back.
///
/// Every output pixel gets the same multiplies and adds in the same order as the three convs run one after the
/// other (the GEMM's sum over channels does not depend on how many columns a product has; the depthwise taps
/// are summed in the same order, skipping the same padding), so the result is bit-identical to them.
public enum InvertedResidual {
    /// Whether `forward` takes these convs: `expand` (optional) is 1x1 like `project` (stride 1, unpadded, one
    /// group) or a network's image-reading stem that the direct stem kernel computes (`Conv2d.runsStemKernel`:
    /// stride 2, at most 4 input channels; MobileNetV2's first block, so the full-resolution stem output is never
    /// written whole); `depthwise` has one input channel per group, equal input and output channels, dilation 1
    /// and padding less than its kernel; the channel counts chain.
    public static func applies(expand: Conv2d?, depthwise dw: Conv2d, project: Conv2d) -> Bool {
        let pointwise = isPointwise
        let depthwiseOK = dw.groups > 1 && dw.groups == dw.inChannels && dw.outChannels == dw.inChannels
            && dw.dilation == Size2(1, 1) && dw.padding.h < dw.kernel.h && dw.padding.w < dw.kernel.w
        let chained = (expand?.outChannels ?? dw.inChannels) == dw.inChannels && dw.outChannels == project.inChannels
        return depthwiseOK && chained && pointwise(project) && (expand.map { pointwise($0) || $0.runsStemKernel } ?? true)
    }

    /// A 1x1, stride-1, unpadded, ungrouped conv on the GEMM.
    static func isPointwise(_ c: Conv2d) -> Bool {
        c.kernel == Size2(1, 1) && c.stride == Size2(1, 1) && c.padding == Size2(0, 0) && c.groups == 1
            && c.dilation == Size2(1, 1) && !c.packed.isEmpty
    }

    /// Budget of one band's scratch (expanded rows + depthwise rows). 1 MB and 4 MB ran alike on CenterFace.
    public static let defaultBandBytes = 4 << 20

    /// `project(depthwise(expand(x))) (+ residual)` into `out` (shape: `project.outputShape(depthwise.outputShape(x))`).
    /// `x` `[n, c, h, w]`; `residual` of the output shape (the block's shortcut, added before `project`'s
    /// activation) or nil. With `expand` nil the block starts at the depthwise conv. Scratch comes from `workspace`.
    /// `bandBytes` bounds the scratch a band uses (at least one output row is computed per band).
    public static func forward(expand: Conv2d?, depthwise dw: Conv2d, project: Conv2d, _ x: Tensor, residual: Tensor?,
                               into out: Tensor, workspace: Workspace, bandBytes: Int = defaultBandBytes) {
        precondition(applies(expand: expand, depthwise: dw, project: project), "not an inverted-residual block")
        let mid = expand?.outputShape(x.shape) ?? x.shape
        let dwShape = dw.outputShape(mid)
        let os = project.outputShape(dwShape)
        precondition(out.shape == os, "block output must be \(os), got \(out.shape)")
        x.checkValid(); out.checkValid()
        if let residual { precondition(residual.shape == os, "block residual must be \(os), got \(residual.shape)"); residual.checkValid() }

        let h = mid[2], w = mid[3], ce = dw.inChannels, ho = os[2], wo = os[3]
        let sh = dw.stride.h, kh = dw.kernel.h
        // Rows per band: the expanded rows a band reads ((rows - 1) * stride + kernel) plus its depthwise rows.
        let perRow = ce * (sh * w + wo) * 4
        let rows = max(1, min(ho, bandBytes / max(1, perRow)))
        let maxIn = (rows - 1) * sh + kh
        let perBand = ce * (maxIn * w + rows * wo)
        let bands = (ho + rows - 1) / rows
        // Each core takes a run of consecutive bands, so a band finds the expanded rows it shares with the previous
        // one already computed; the cores run their products alone, with no synchronisation inside a band.
        let tasks = bands * x.n
        let workers = min(Parallel.width, tasks)
        // A stem expand reads the image split into even and odd columns (per image, made once) with its weights
        // transposed, after the bands' scratch.
        let stemExpand = expand.flatMap { isPointwise($0) ? nil : $0 }
        let wp = stemExpand.map { Int(fpn_stem_phase_width(Int32(w), Int32($0.kernel.w))) } ?? 0
        let phasesPerImage = x.c * 2 * x.h * wp, taps = x.c * (stemExpand.map { $0.kernel.h * $0.kernel.w } ?? 0)
        let scratch = workspace.scratch(workers * perBand + (stemExpand == nil ? 0 : x.n * phasesPerImage + taps * ce))
        let ints = workspace.ints(workers * 4 * maxIn)
        var stem: Stem?
        if let s = stemExpand {
            let phases = scratch + workers * perBand, weights = phases + x.n * phasesPerImage
            for b in 0..<x.n {
                fpn_stem_phases(x.ptr + b * x.c * x.h * x.w, Int32(x.c), Int32(x.h), Int32(x.w), Int32(s.padding.w),
                                Int32(wp), phases + b * phasesPerImage)
            }
            fpn_stem_weights(s.weight.ptr, Int32(ce), Int32(taps), weights)
            stem = Stem(isa: s.packed[0].path.isa!, phases: phases, weights: weights, phasesPerImage: phasesPerImage,
                        inHeight: x.h, phaseWidth: wp)
        }
        let job = Band(expand: expand, depthwise: dw, project: project, h: h, w: w, ho: ho, wo: wo,
                       outChannels: os[1], rows: rows, maxIn: maxIn, stem: stem)
        let xs = x.ptr, o = out.ptr, rs = residual?.ptr, inPlane = x.c * x.h * x.w, outPlane = os[1] * ho * wo
        let run = { (worker: Int) in
            Parallel.withWidth(1) {
                var held = 0..<0
                var image = -1
                for i in (tasks * worker / workers)..<(tasks * (worker + 1) / workers) {
                    let b = i / bands
                    if b != image { held = 0..<0; image = b }
                    job.compute(rows: (i % bands) * rows, image: b, xin: xs + b * inPlane, out: o + b * outPlane,
                                residual: rs.map { $0 + b * outPlane }, scratch: scratch + worker * perBand,
                                segments: ints + worker * 4 * maxIn, held: &held)
                }
            }
        }
        if workers == 1 { run(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: run) }
    }

    /// The operands of a stem expand (`fpn_stem`): the images' column phases and the transposed weights.
    private struct Stem {
        let isa: Int32
        let phases: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>
        let phasesPerImage: Int, inHeight: Int, phaseWidth: Int
    }

    /// One band's work: output rows `q0 ..< q0 + rows` (clipped) of one image.
    private struct Band {
        let expand: Conv2d?, depthwise: Conv2d, project: Conv2d
        /// h, w: the depthwise conv's input (the expanded map).
        let h: Int, w: Int, ho: Int, wo: Int, outChannels: Int, rows: Int, maxIn: Int
        let stem: Stem?

        /// `held`: the input rows whose expanded values `scratch` holds (at its first rows), updated. `seg`: room
        /// for `maxIn` segments.
        func compute(rows q0: Int, image b: Int, xin: UnsafeMutablePointer<Float>, out o: UnsafeMutablePointer<Float>,
                     residual res: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
                     segments seg: UnsafeMutablePointer<Int>, held: inout Range<Int>) {
            let dw = depthwise, ce = dw.inChannels, sh = dw.stride.h, kh = dw.kernel.h, ph = dw.padding.h
            let midBand = scratch, dwBand = scratch + ce * maxIn * w
            let q1 = min(ho, q0 + rows), n = q1 - q0
            // Input rows of the depthwise conv this band reads, clipped to the image; the rows it would read
            // outside are padding, which the kernel skips as the full-size conv does.
            let i0 = max(0, q0 * sh - ph), i1 = min(h, (q1 - 1) * sh - ph + kh)
            let m = i1 - i0
            // The depthwise conv reads the band's expanded rows (band coordinates: output row r reads input row
            // r * stride - padTop; channel planes maxIn rows apart), or, with no expand, the block input in place
            // (image coordinates, output rows q0..<q1 written from dwBand - q0 rows on).
            let src: UnsafeMutablePointer<Float>, srcRows: Int, plane: Int, firstRow: Int, padTop: Int
            if let expand {
                // Rows the previous band computed move to the front; only the rest are multiplied.
                let keep = held.contains(i0) ? min(held.upperBound, i1) - i0 : 0
                if keep > 0 && i0 > held.lowerBound {
                    let shift = (i0 - held.lowerBound) * w
                    for c in 0..<ce { (midBand + c * maxIn * w).update(from: midBand + c * maxIn * w + shift, count: keep * w) }
                }
                if let stem {
                    // Expanded rows i0 + keep ..< i1 by the stem kernel, written at band row (row - i0): the output
                    // pointer moved back i0 rows, planes maxIn rows apart.
                    for r in 0..<(m - keep) {
                        seg[4 * r] = i0 + keep + r; seg[4 * r + 1] = 0; seg[4 * r + 2] = w; seg[4 * r + 3] = 0
                    }
                    expand.withBias { bias in
                        fpn_stem(stem.isa, stem.phases + b * stem.phasesPerImage, Int32(expand.inChannels),
                                 Int32(stem.inHeight), Int32(stem.phaseWidth), seg, 0, Int32(m - keep), midBand - i0 * w,
                                 nil, Int32(ce), Int32(maxIn), Int32(w), stem.weights, bias?.baseAddress,
                                 Int32(expand.kernel.h), Int32(expand.kernel.w), Int32(expand.padding.h),
                                 expand.activation == .relu ? 1 : 0)
                    }
                } else {
                    expand.withBias { bias in
                        Gemm.multiply(expand.packed[0], b: xin + (i0 + keep) * w, ldb: h * w, columns: (m - keep) * w,
                                      beta: 0, c: midBand + keep * w, ldc: maxIn * w, bias: bias?.baseAddress,
                                      relu: expand.activation == .relu)
                    }
                }
                held = i0..<i1
                (src, srcRows, plane, firstRow, padTop) = (midBand, m, maxIn * w, 0, ph - (q0 * sh - i0))
            } else {
                (src, srcRows, plane, firstRow, padTop) = (xin, h, h * w, q0, ph)
            }
            for r in 0..<n {
                seg[4 * r] = firstRow + r; seg[4 * r + 1] = 0; seg[4 * r + 2] = wo; seg[4 * r + 3] = r * wo
            }
            dw.withBias { bias in
                DepthwiseKernel.run(src, h: srcRows, w: w, planeStride: plane, segments: seg, segmentCount: n,
                                    out: dwBand - firstRow * wo, residual: nil, ho: n, wo: wo,
                                    weight: dw.weight.ptr, bias: bias, outChannels: ce, groups: ce,
                                    kernel: dw.kernel, stride: dw.stride, padding: Size2(padTop, dw.padding.w),
                                    dilation: dw.dilation, relu: dw.activation == .relu)
            }
            let dst = o + q0 * wo
            if let res {
                let src = res + q0 * wo
                for c in 0..<outChannels { (dst + c * ho * wo).update(from: src + c * ho * wo, count: n * wo) }
            }
            project.withBias { bias in
                Gemm.multiply(project.packed[0], b: dwBand, ldb: n * wo, columns: n * wo, beta: res == nil ? 0 : 1,
                              c: dst, ldc: ho * wo, bias: bias?.baseAddress, relu: project.activation == .relu)
            }
        }
    }
}
