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

    /// Bilinear taps along one axis, structure of arrays: output index o reads source indices `i0[o]`, `i1[o]` with
    /// weights `w0[o]`, `w1[o]`.
    public struct BilinearTaps: Sendable {
        public var i0: [Int32], i1: [Int32], w0: [Float], w1: [Float]
        public init(i0: [Int32], i1: [Int32], w0: [Float], w1: [Float]) {
            precondition(i1.count == i0.count && w0.count == i0.count && w1.count == i0.count, "tap arrays differ in length")
            self.i0 = i0; self.i1 = i1; self.w0 = w0; self.w1 = w1
        }
        public var count: Int { i0.count }
    }

    /// A mask paste's resize: `out[r · columns.count + c]` = the bilinear value of the `size x size` row-major mask
    /// `src` at `rows` tap r and `columns` tap c (indices in `0..<size`), by ATen's small-output formula
    /// (`small`: h0·w0·i00 + h0·w1·i01 + h1·w0·i10 + h1·w1·i11, FMA-contracted left to right) or its generic one
    /// ((i00·w0 + i01·w1)·h0 + (i10·w0 + i11·w1)·h1). The same bits on every ISA.
    public static func pasteBilinear(_ src: UnsafePointer<Float>, size: Int, rows: BilinearTaps, columns: BilinearTaps,
                                     small: Bool, into out: UnsafeMutablePointer<Float>) {
        rows.i0.withUnsafeBufferPointer { yi0 in rows.i1.withUnsafeBufferPointer { yi1 in
        rows.w0.withUnsafeBufferPointer { yw0 in rows.w1.withUnsafeBufferPointer { yw1 in
        columns.i0.withUnsafeBufferPointer { xi0 in columns.i1.withUnsafeBufferPointer { xi1 in
        columns.w0.withUnsafeBufferPointer { xw0 in columns.w1.withUnsafeBufferPointer { xw1 in
            fpn_paste_bilinear(roiAlignISA, src, Int32(size), yi0.baseAddress, yi1.baseAddress, yw0.baseAddress,
                               yw1.baseAddress, Int32(rows.count), xi0.baseAddress, xi1.baseAddress, xw0.baseAddress,
                               xw1.baseAddress, Int32(columns.count), small ? 1 : 0, out)
        } } } } } } } }
    }

    /// `labels[i]` = the index of the largest of `planes` values `src[c · count + i]` (the first maximum wins, as
    /// `torch.argmax`; a NaN never takes a pixel), for `planes` ≤ 256 planes of `count` floats.
    public static func argmaxPlanes(_ src: UnsafePointer<Float>, planes: Int, count: Int,
                                    into labels: UnsafeMutablePointer<UInt8>) {
        precondition(planes >= 1 && planes <= 256, "argmax over \(planes) planes")
        fpn_argmax_planes(roiAlignISA, src, count, Int32(planes), labels)
    }

    /// Row-to-row changes of `lanes` (1...16) neighbouring columns of a row-major `Int32` map (`ids`: the first
    /// column's top, `stride` values per row): for each row y ≥ 1 where some lane differs from row y − 1, y goes to
    /// `rowsOut` and the changed lanes (bit j = column j) to `masksOut`. Returns how many (at most `rows` − 1). For
    /// column-major run-length encoding of a label map: one vector compare per row for 16 columns.
    public static func rowChanges(_ ids: UnsafePointer<Int32>, stride: Int, rows: Int, lanes: Int,
                                  rowsOut: UnsafeMutablePointer<Int32>, masksOut: UnsafeMutablePointer<UInt16>) -> Int {
        precondition(lanes >= 1 && lanes <= 16 && rows >= 1 && stride >= lanes, "rowChanges: \(lanes) lanes, stride \(stride)")
        return fpn_row_changes(roiAlignISA, ids, stride, Int32(rows), Int32(lanes), rowsOut, masksOut)
    }

    /// The panoptic merge's stuff areas: `hist[l]` += the number of pixels p < `count` with `ids[p] == 0` and
    /// `labels[p] == l` (`hist`: 256 counts).
    public static func voidLabelHistogram(ids: UnsafePointer<Int32>, labels: UnsafePointer<UInt8>, count: Int,
                                          into hist: UnsafeMutablePointer<Int>) {
        fpn_void_label_histogram(roiAlignISA, ids, labels, count, hist)
    }

    /// The panoptic merge's stuff ids: `ids[p] = table[labels[p]]` for every pixel p < `count` with `ids[p] == 0`
    /// (`table`: 256 ids).
    public static func selectStuff(ids: UnsafeMutablePointer<Int32>, labels: UnsafePointer<UInt8>, count: Int,
                                   table: UnsafePointer<Int32>) {
        fpn_stuff_select(roiAlignISA, ids, labels, count, table)
    }

    /// The ISA of the detection post-processing kernels here (RoIAlign, mask paste, argmax): the compute path's (a
    /// forced path holds here too), the CPU's best under OpenBLAS. Every ISA gives the same bits.
    static let roiAlignISA: Int32 = Compute.path.isa ?? fpn_best_isa()
}
