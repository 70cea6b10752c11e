import Foundation

/// Splits loops over the machine's cores with `DispatchQueue.concurrentPerform`; small loops run inline.
package enum Parallel {
    package static let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)

    /// Calls `body` on disjoint chunks covering `0..<count`. `cost` is the approximate work (in element
    /// operations) of the whole loop; below ~32K the loop runs on the calling thread (dispatch overhead wins).
    @inline(__always)
    package static func forEach(_ count: Int, cost: Int, _ body: (Range<Int>) -> Void) {
        if count <= 1 || cores == 1 || cost < 32_768 {
            if count > 0 { body(0..<count) }
            return
        }
        // A few chunks per core balance load when the other core is busy (shared machine).
        let chunks = min(count, cores * 4)
        withoutActuallyEscaping(body) { body in
            DispatchQueue.concurrentPerform(iterations: chunks) { i in
                let lo = count * i / chunks, hi = count * (i + 1) / chunks
                if lo < hi { body(lo..<hi) }
            }
        }
    }
}
