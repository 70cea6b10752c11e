import CKernels

extension Ops {
    /// The accumulation step of RoIAlign for one box (torchvision's CPU kernel, aligned = false), vectorised for the
    /// CPU with the same bits as the scalar loop (plain multiplies and adds, no FMA).
    ///
    /// - Parameters:
    ///   - feature: `[height · width, channels]` floats (channels-last).
    ///   - positions: per sample 4 pixel indices (`y · width + x`: low-low, low-high, high-low, high-high), samples in
    ///     (bin, iy, ix) order, `bins · perBin · 4` of them.
    ///   - weights: the 4 bilinear weights of each sample, same layout (a skipped sample has weight 0 at index 0).
    ///   - scratch: `bins · channels` floats of workspace.
    ///   - output: `[channels, bins]`: per channel and bin, the in-order sum of the bin's samples
    ///     `((w0 f0 + w1 f1) + w2 f2) + w3 f3`, divided by `perBin`.
    public static func roiAlignPool(feature: UnsafePointer<Float>, channels: Int, positions: UnsafePointer<Int>,
                                    weights: UnsafePointer<Float>, bins: Int, perBin: Int,
                                    scratch: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>) {
        positions.withMemoryRebound(to: CLong.self, capacity: bins * perBin * 4) { pos in
            fpn_roi_align_pool(roiAlignISA, feature, Int32(channels), pos, weights, Int32(bins), Int32(perBin), scratch,
                               output)
        }
    }

    /// The RoIAlign kernel's ISA: the compute path's (a forced path holds here too), the CPU's best under OpenBLAS.
    /// Every ISA gives the same bits.
    static let roiAlignISA: Int32 = Compute.path.isa ?? fpn_best_isa()
}
