import CKernels

extension Ops {
    /// A 128-bit digest of the bit patterns of `x` (position-weighted 32-bit lane sums, vectorised; the same on
    /// every ISA): equal rows give equal digests, and a change of any value, or a swap of two, changes it except by
    /// a coincidence of 2^-64 scale. Tells changed rows from unchanged ones; not a cryptographic hash.
    /// `isa`: the kernel to run (tests compare them; a path the CPU lacks runs the best one it has).
    public static func rowDigest(_ x: UnsafeBufferPointer<Float>, isa: ComputePath? = nil) -> (UInt64, UInt64) {
        var out: (UInt64, UInt64) = (0, 0)
        let level = (isa ?? Compute.path).isa ?? fpn_best_isa()
        withUnsafeMutableBytes(of: &out) { o in
            fpn_row_digest(level, x.baseAddress, x.count, o.baseAddress!.assumingMemoryBound(to: UInt64.self))
        }
        return out
    }
}
